//! The LDAP front end: `ldap3_proto`'s codec over tokio, LDAPS and StartTLS (RFC 4511 §4.14, RFC 4513)
//! with rustls, and the limits every listener has. It frames messages, keeps each connection's bind state
//! and hands operations to [`bind`] and [`search`], which map them onto the services (the password
//! service, [`crate::directory`]) and their answers back onto LDAP result codes.
//!
//! Limits: a connection limit (overall and per address, shared by both listeners), a message-size limit
//! (a larger message ends the connection), a time to receive each message (idle time included) and to
//! write each answer, a TLS handshake timeout. Malformed BER ends the connection with a Notice of
//! Disconnection (RFC 4511 §4.4.1). Operations on one connection are answered in order; an Abandon
//! arrives after the operation it names has been answered, so it has nothing left to stop.

mod ber;
pub(crate) mod bind;
pub(crate) mod search;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ldap3_proto::proto::{LdapExtendedResponse, LdapMsg, LdapOp, LdapResult, LdapResultCode};
use ldap3_proto::LdapCodec;

use ber::{Codec, Reply};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::codec::Framed;
use tokio_util::either::Either;

use crate::directory::{Directory, DirectoryConfig, Viewer};
use crate::listener::Gate;
use crate::service::Edge;

/// StartTLS (RFC 4511 §4.14.1).
const OID_STARTTLS: &str = "1.3.6.1.4.1.1466.20037";
/// Who am I? (RFC 4532).
const OID_WHOAMI: &str = ldap3_proto::proto::OID_WHOAMI;
/// Notice of Disconnection (RFC 4511 §4.4.1).
const OID_NOTICE_OF_DISCONNECTION: &str = "1.3.6.1.4.1.1466.20036";

/// Settings of the LDAP listeners.
#[derive(Clone)]
pub struct LdapSettings {
    /// Certificate for LDAPS and StartTLS; `None`: neither is offered.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Offer StartTLS on the plain listener (needs `tls`).
    pub starttls: bool,
    /// Refuse simple binds with a password over a connection without TLS (confidentialityRequired).
    pub require_confidentiality: bool,
    /// Written after `ou=<org>` in naming contexts and DNs (e.g. `dc=example,dc=com`).
    pub suffix: String,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// Largest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Time to receive each message, idle time before it included.
    pub read_timeout: Duration,
    /// Time to write each answer.
    pub write_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// Most entries one search (or one page) returns.
    pub size_limit: usize,
    pub time_limit: Duration,
    /// How long shutdown waits for connections to finish their operation.
    pub shutdown_grace: Duration,
}

impl Default for LdapSettings {
    fn default() -> Self {
        LdapSettings {
            tls: None,
            starttls: true,
            require_confidentiality: false,
            suffix: String::new(),
            max_connections: 4096,
            max_connections_per_address: 256,
            max_message_bytes: 64 * 1024,
            read_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            size_limit: 1000,
            time_limit: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What the connections share.
struct Shared {
    edge: Arc<Edge>,
    directory: Arc<Directory>,
    settings: LdapSettings,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A connection's stream: plain TCP, or TLS (from the first byte, or after StartTLS).
type Stream = Either<TcpStream, tokio_rustls::server::TlsStream<TcpStream>>;

/// One connection's state.
struct Session {
    peer: SocketAddr,
    /// Who the last successful bind established.
    viewer: Viewer,
    tls: bool,
}

/// What a connection does after answering an operation.
enum Next {
    Continue,
    Close,
    StartTls,
}

/// Serves LDAP on `plain` (StartTLS offered) and LDAPS on `ldaps`, until `shutdown` resolves; then stops
/// accepting, tells idle connections it is going away (Notice of Disconnection) and waits for the others
/// to finish their operation, up to the grace period.
pub async fn serve(
    edge: Arc<Edge>,
    plain: Option<TcpListener>,
    ldaps: Option<TcpListener>,
    settings: LdapSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let directory = Arc::new(Directory::new(
        edge.store.clone(),
        DirectoryConfig { admin_org: edge.config.admin_org.clone(), suffix: settings.suffix.clone() },
    ));
    let tls = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let gate = Arc::new(Gate::new(settings.max_connections, settings.max_connections_per_address));
    let shared = Arc::new(Shared { edge, directory, settings, tls });
    let (stopping, stop) = watch::channel(false);
    let run = |listener: Option<TcpListener>, implicit_tls: bool| {
        let (shared, gate, stop) = (shared.clone(), gate.clone(), stop.clone());
        async move {
            if let Some(listener) = listener {
                accept_loop(shared, gate, listener, implicit_tls, stop).await;
            }
        }
    };
    let plain_loop = tokio::spawn(run(plain, false));
    let ldaps_loop = tokio::spawn(run(ldaps, true));
    shutdown.await;
    tracing::info!("LDAP listeners stopping; draining connections");
    let _ = stopping.send(true);
    let _ = plain_loop.await;
    let _ = ldaps_loop.await;
    gate.drain(shared.settings.shutdown_grace, "ldap").await;
}

async fn accept_loop(
    shared: Arc<Shared>,
    gate: Arc<Gate>,
    listener: TcpListener,
    implicit_tls: bool,
    stop: watch::Receiver<bool>,
) {
    let stopped = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    tokio::pin!(stopped);
    while let Some((stream, peer, admitted)) =
        gate.accept(&listener, stopped.as_mut(), &shared.edge.metrics, "ldap").await
    {
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            let stream: Stream = if implicit_tls {
                let Some(acceptor) = &shared.tls else { return };
                let timeout = shared.settings.tls_handshake_timeout;
                match crate::listener::tls_handshake(acceptor, stream, timeout, peer).await {
                    Some(tls) => Either::Right(tls),
                    None => return,
                }
            } else {
                Either::Left(stream)
            };
            let session = Session { peer, viewer: Viewer::Anonymous, tls: implicit_tls };
            connection(&shared, stream, session, stop).await;
        });
    }
}

/// Runs one connection until the client unbinds or leaves, a limit ends it, or the server stops.
async fn connection(shared: &Shared, stream: Stream, mut session: Session, mut stop: watch::Receiver<bool>) {
    let codec = || Codec(LdapCodec::new(Some(shared.settings.max_message_bytes), None));
    let mut framed = Framed::new(stream, codec());
    loop {
        let msg = tokio::select! {
            next = tokio::time::timeout(shared.settings.read_timeout, framed.next()) => match next {
                Err(_) => {
                    tracing::debug!(peer = %session.peer, "LDAP connection closed: no message within the read timeout");
                    return;
                }
                Ok(None) => return,
                Ok(Some(Err(e))) => {
                    tracing::debug!(peer = %session.peer, "LDAP message refused: {e}");
                    let notice = notice_of_disconnection(LdapResultCode::ProtocolError, "malformed or oversized message");
                    let _ = send(shared, &mut framed, vec![notice.into()]).await;
                    return;
                }
                Ok(Some(Ok(msg))) => msg,
            },
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                let notice = notice_of_disconnection(LdapResultCode::Unavailable, "the server is shutting down");
                let _ = send(shared, &mut framed, vec![notice.into()]).await;
                return;
            }
        };
        let (replies, next) = operation(shared, &mut session, msg).await;
        if send(shared, &mut framed, replies).await.is_err() {
            return;
        }
        match next {
            Next::Continue => {}
            Next::Close => return,
            Next::StartTls => {
                let Some(acceptor) = &shared.tls else { return };
                let parts = framed.into_parts();
                // Anything the client sent after its StartTLS request, before the handshake, is a
                // protocol violation (RFC 4511 §4.14.1): it would be read as TLS.
                if !parts.read_buf.is_empty() {
                    return;
                }
                let Either::Left(tcp) = parts.io else { return };
                let timeout = shared.settings.tls_handshake_timeout;
                let Some(tls) = crate::listener::tls_handshake(acceptor, tcp, timeout, session.peer).await else {
                    return;
                };
                session.tls = true;
                framed = Framed::new(Either::Right(tls), codec());
            }
        }
    }
}

/// Writes answers within the write timeout.
async fn send(shared: &Shared, framed: &mut Framed<Stream, Codec>, replies: Vec<Reply>) -> Result<(), ()> {
    if replies.is_empty() {
        return Ok(());
    }
    let write = async {
        for r in replies {
            framed.feed(r).await?;
        }
        framed.flush().await
    };
    match tokio::time::timeout(shared.settings.write_timeout, write).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// An unsolicited Notice of Disconnection.
fn notice_of_disconnection(code: LdapResultCode, message: &str) -> LdapMsg {
    LdapMsg::new(
        0,
        LdapOp::ExtendedResponse(LdapExtendedResponse {
            res: result(code, message),
            name: Some(OID_NOTICE_OF_DISCONNECTION.to_string()),
            value: None,
        }),
    )
}

fn result(code: LdapResultCode, message: &str) -> LdapResult {
    LdapResult { code, matcheddn: String::new(), message: message.to_string(), referral: Vec::new() }
}

/// Answers one operation.
async fn operation(shared: &Shared, session: &mut Session, msg: LdapMsg) -> (Vec<Reply>, Next) {
    let started = Instant::now();
    let id = msg.msgid;
    let metrics = &shared.edge.metrics;
    let (label, out) = match msg.op {
        LdapOp::BindRequest(req) => {
            let res = bind::bind(shared, session, req).await;
            let reply = match res.saslcreds {
                None if res.res.matcheddn.is_empty() && res.res.referral.is_empty() => {
                    Reply::Encoded(ber::bind_done(id, res.res.code, &res.res.message))
                }
                _ => LdapMsg::new(id, LdapOp::BindResponse(res)).into(),
            };
            ("bind", (vec![reply], Next::Continue))
        }
        LdapOp::UnbindRequest => return (Vec::new(), Next::Close),
        LdapOp::AbandonRequest(_) => return (Vec::new(), Next::Continue),
        LdapOp::SearchRequest(req) => {
            ("search", (search::search(shared, session, id, req, msg.ctrl).await, Next::Continue))
        }
        LdapOp::CompareRequest(req) => {
            let res = search::compare(shared, session, req);
            ("compare", (vec![LdapMsg::new(id, LdapOp::CompareResult(res)).into()], Next::Continue))
        }
        LdapOp::ExtendedRequest(req) => match req.name.as_str() {
            OID_STARTTLS => ("starttls", starttls(shared, session, id)),
            OID_WHOAMI => {
                let dn = shared.directory.bound_dn(&session.viewer);
                let value = if dn.is_empty() { String::new() } else { format!("dn:{dn}") };
                let res = LdapExtendedResponse {
                    res: result(LdapResultCode::Success, ""),
                    name: None,
                    value: Some(value.into_bytes()),
                };
                ("whoami", (vec![LdapMsg::new(id, LdapOp::ExtendedResponse(res)).into()], Next::Continue))
            }
            other => {
                let res = LdapExtendedResponse {
                    res: result(LdapResultCode::ProtocolError, &format!("unsupported extended operation {other}")),
                    name: None,
                    value: None,
                };
                ("other", (vec![LdapMsg::new(id, LdapOp::ExtendedResponse(res)).into()], Next::Continue))
            }
        },
        LdapOp::AddRequest(_) => ("other", (read_only(id, LdapOp::AddResponse), Next::Continue)),
        LdapOp::ModifyRequest(_) => ("other", (read_only(id, LdapOp::ModifyResponse), Next::Continue)),
        LdapOp::DelRequest(_) => ("other", (read_only(id, LdapOp::DelResponse), Next::Continue)),
        LdapOp::ModifyDNRequest(_) => ("other", (read_only(id, LdapOp::ModifyDNResponse), Next::Continue)),
        // A response, or anything else a client never sends: end the connection.
        _ => {
            let notice = notice_of_disconnection(LdapResultCode::ProtocolError, "unexpected message from a client");
            return (vec![notice.into()], Next::Close);
        }
    };
    metrics.ldap_operation(label, started.elapsed());
    out
}

/// The answer to a write: the directory is read-only over LDAP (writes go through the admin API).
fn read_only(id: i32, op: impl FnOnce(LdapResult) -> LdapOp) -> Vec<Reply> {
    let res = result(LdapResultCode::UnwillingToPerform, "the directory is read-only over LDAP; use the admin API");
    vec![LdapMsg::new(id, op(res)).into()]
}

/// StartTLS: agreed (then the handshake follows) when TLS is configured and not already on.
fn starttls(shared: &Shared, session: &Session, id: i32) -> (Vec<Reply>, Next) {
    let (code, message, next) = if session.tls {
        (LdapResultCode::OperationsError, "TLS is already established", Next::Continue)
    } else if shared.tls.is_none() || !shared.settings.starttls {
        (LdapResultCode::Unavailable, "StartTLS is not offered here", Next::Continue)
    } else {
        (LdapResultCode::Success, "", Next::StartTls)
    };
    let res = LdapExtendedResponse { res: result(code, message), name: Some(OID_STARTTLS.to_string()), value: None };
    (vec![LdapMsg::new(id, LdapOp::ExtendedResponse(res)).into()], next)
}
