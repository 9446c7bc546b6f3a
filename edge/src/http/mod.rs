//! The HTTP front end: hyper (HTTP/1.1 and HTTP/2) over TCP or rustls, routing, request decoding and
//! response encoding. Bad input ends here with the protocol's own error; the services behind it
//! ([`crate::oauth`], [`crate::import`], the [`Edge`] the admin API writes through) never see a socket.
//!
//! Every connection has a bounded request size, a header-read timeout, a body-read timeout, an idle timeout
//! (HTTP/1 keep-alive and HTTP/2 alike: a connection with no request in progress for that long is closed,
//! gracefully), a slot in the connection limit and one in its address's limit; shutdown is graceful.
//!
//! This file holds the listener, the one route table (`route`) and the reply helpers; `decode` reads
//! bodies, parameters and credentials; `oauth`, `discovery` and `health` are the endpoints of those names;
//! [`admin`] is the Casdoor-compatible admin API (its path table, caller check, envelope and paging, with
//! one file per object kind).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::OAuthError;
use crate::service::Edge;

pub mod admin;
pub(crate) mod decode;
mod discovery;
mod health;
mod oauth;
mod pages;

use decode::announces_body;
pub use decode::parse_form;
use discovery::Discovery;
use health::health;
use oauth::{device_authorization, introspect, revoke, token, userinfo, Path};

/// Settings of the HTTP listener.
#[derive(Clone)]
pub struct HttpSettings {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub max_connections: usize,
    /// Open connections from one client address at most; further ones are closed at once.
    pub max_connections_per_address: usize,
    /// Time to receive a request's headers.
    pub header_timeout: Duration,
    /// How long a connection with no request in progress stays open (HTTP/1 keep-alive and HTTP/2).
    pub idle_timeout: Duration,
    /// Time to receive a request's body.
    pub body_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            tls: None,
            max_connections: 10_000,
            max_connections_per_address: 256,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

type Reply = Response<Full<Bytes>>;

/// Serves HTTP until `shutdown` resolves, then drains connections.
pub async fn serve(
    edge: Arc<Edge>,
    listener: TcpListener,
    settings: HttpSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let discovery = Arc::new(Discovery::new(&edge.config.issuer));
    // HTTP/1.1 on plain TCP; over TLS, HTTP/2 when the client negotiates it with ALPN.
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2.timer(TokioTimer::new()).max_concurrent_streams(256).keep_alive_interval(settings.header_timeout);
    // Connections watch this to close gracefully at shutdown; every connection holds a slot of `slots`
    // until it ends, so getting all slots back means every connection has finished.
    let (stopping, stop_watch) = watch::channel(false);
    let gate = crate::listener::Gate::new(settings.max_connections, settings.max_connections_per_address);
    let tls = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    while let Some((stream, peer, admitted)) = gate.accept(&listener, shutdown.as_mut(), &edge.metrics, "http").await {
        let edge = edge.clone();
        let discovery = discovery.clone();
        let (http1, http2) = (http1.clone(), http2.clone());
        let stop = stop_watch.clone();
        let tls = tls.clone();
        let (header_timeout, body_timeout, idle) =
            (settings.header_timeout, settings.body_timeout, settings.idle_timeout);
        tokio::spawn(async move {
            let _admitted = admitted;
            let activity = Arc::new(Activity::new());
            let svc = {
                let activity = activity.clone();
                hyper::service::service_fn(move |req| {
                    let edge = edge.clone();
                    let discovery = discovery.clone();
                    let busy = activity.begin();
                    async move {
                        let reply = handle(&edge, &discovery, peer, req, body_timeout).await;
                        drop(busy);
                        Ok::<_, Infallible>(reply)
                    }
                })
            };
            let result = match tls {
                Some(acceptor) => {
                    let Some(tls_stream) =
                        crate::listener::tls_handshake(&acceptor, stream, header_timeout, peer).await
                    else {
                        return;
                    };
                    if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        let conn = http2.serve_connection(TokioIo::new(tls_stream), svc);
                        drive(conn, &activity, idle, stop).await
                    } else {
                        let conn = http1.serve_connection(TokioIo::new(tls_stream), svc);
                        drive(conn, &activity, idle, stop).await
                    }
                }
                None => drive(http1.serve_connection(TokioIo::new(stream), svc), &activity, idle, stop).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    tracing::info!("HTTP listener stopping; draining connections");
    let _ = stopping.send(true);
    gate.drain(settings.shutdown_grace, "http").await;
}

/// Requests in progress on one connection, and when the last one ended: what its idle timer reads.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` at which the last request ended (0: none yet).
    last_end_ms: AtomicU64,
}

/// A request in progress; ending it (dropping this, also when the request is abandoned) restarts the idle
/// clock.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Activity {
        Activity { started: Instant::now(), in_flight: AtomicUsize::new(0), last_end_ms: AtomicU64::new(0) }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// When the connection will have been idle for `idle`, as things stand; `None` while a request runs.
    fn idle_deadline(&self, idle: Duration) -> Option<tokio::time::Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = self.started + Duration::from_millis(self.last_end_ms.load(Ordering::SeqCst));
        Some(tokio::time::Instant::from_std(last + idle))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_end_ms.store(ms, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one connection (HTTP/1 or HTTP/2) until it ends. It is closed gracefully — HTTP/2 sends GOAWAY,
/// HTTP/1 finishes the response in progress — once no request has been in progress for `idle`, or when
/// the listener stops. hyper closes neither an idle HTTP/2 connection (its keep-alive only pings) nor,
/// reliably, an HTTP/1 one that is between requests.
async fn drive<C>(conn: C, activity: &Activity, idle: Duration, mut stop: watch::Receiver<bool>) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        // While a request runs there is no deadline yet; look again one idle period later.
        let deadline = activity.idle_deadline(idle).unwrap_or_else(|| tokio::time::Instant::now() + idle);
        tokio::select! {
            result = conn.as_mut() => return result,
            _ = tokio::time::sleep_until(deadline), if !closing => {
                if activity.idle_deadline(idle).is_some_and(|d| d <= tokio::time::Instant::now()) {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

fn reply(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_reply(status: u16, body: impl Into<Bytes>) -> Reply {
    reply(status, "application/json", body)
}

/// Token-endpoint answers must not be cached (RFC 6749 §5.1).
fn no_store(mut r: Reply) -> Reply {
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn oauth_error(e: &OAuthError) -> Reply {
    let mut r = no_store(json_reply(e.status, e.body()));
    if e.status == 401 {
        r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"jeton\""));
    }
    if e.status == 413 || e.status == 408 {
        // The rest of the body was not read: the connection cannot carry another request.
        r.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Casdoor's error envelope (HTTP 200, as Casdoor SDKs expect from `/api/userinfo`).
fn casdoor_error(msg: &str) -> Reply {
    json_reply(200, json!({"status": "error", "msg": msg, "data": null, "data2": null}).to_string())
}

async fn handle(
    edge: &Edge,
    discovery: &Discovery,
    peer: SocketAddr,
    req: Request<Incoming>,
    body_timeout: Duration,
) -> Reply {
    let started = Instant::now();
    let (endpoint, response) = route(edge, discovery, peer.ip(), req, body_timeout).await;
    edge.metrics.request(endpoint, response.status().as_u16(), started.elapsed());
    response
}

async fn route(
    edge: &Edge,
    discovery: &Discovery,
    ip: IpAddr,
    req: Request<Incoming>,
    timeout: Duration,
) -> (&'static str, Reply) {
    let limit = edge.config.max_body_bytes;
    let method = req.method().clone();
    let uri = req.uri().clone();
    if edge.node.is_removed() && !(method == Method::GET && matches!(uri.path(), "/api/health" | "/metrics")) {
        return ("other", removed(req.headers()));
    }
    match (&method, uri.path()) {
        (&Method::GET, "/.well-known/jwks") | (&Method::GET, "/.well-known/jwks.json") => {
            let mut r = json_reply(200, edge.keyring.jwks());
            r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            ("jwks", r)
        }
        (&Method::POST, "/oauth/introspect") => ("introspect", introspect(edge, req, limit, timeout, false).await),
        (&Method::POST, "/api/login/oauth/introspect") => {
            ("introspect", introspect(edge, req, limit, timeout, true).await)
        }
        (&Method::POST, "/oauth/token") => ("token", Box::pin(token(edge, req, limit, timeout, ip, Path::Ours)).await),
        (&Method::POST, "/api/login/oauth/access_token") => {
            ("token", Box::pin(token(edge, req, limit, timeout, ip, Path::Casdoor)).await)
        }
        (&Method::POST, "/api/login/oauth/refresh_token") => {
            ("token", Box::pin(token(edge, req, limit, timeout, ip, Path::CasdoorRefresh)).await)
        }
        (&Method::POST, "/oauth/device_authorization") => {
            ("device_authorization", Box::pin(device_authorization(edge, req, limit, timeout, false)).await)
        }
        (&Method::POST, "/api/device-auth") => {
            ("device_authorization", Box::pin(device_authorization(edge, req, limit, timeout, true)).await)
        }
        (&Method::POST, "/oauth/revoke") => ("revoke", Box::pin(revoke(edge, req, limit, timeout)).await),
        (&Method::GET | &Method::POST, "/oauth/userinfo") => {
            ("userinfo", Box::pin(userinfo(edge, req, limit, timeout, false)).await)
        }
        (&Method::GET | &Method::POST, "/api/userinfo") => {
            ("userinfo", Box::pin(userinfo(edge, req, limit, timeout, true)).await)
        }
        (&Method::GET, "/.well-known/openid-configuration")
        | (&Method::GET, "/.well-known/oauth-authorization-server") => {
            ("discovery", json_reply(200, discovery.openid.clone()))
        }
        (&Method::GET | &Method::POST, "/oauth/authorize")
        | (&Method::GET | &Method::POST, "/login/oauth/authorize") => {
            ("authorize", Box::pin(pages::authorize(edge, req, limit, timeout, ip)).await)
        }
        (&Method::POST, "/login") => ("login", Box::pin(pages::login(edge, req, limit, timeout, ip)).await),
        (&Method::POST, "/login/totp") => ("login", Box::pin(pages::login_totp(edge, req, limit, timeout, ip)).await),
        (&Method::POST, "/login/totp/enrol") => {
            ("login", Box::pin(pages::login_enrol(edge, req, limit, timeout, ip)).await)
        }
        (&Method::POST, "/login/continue") => {
            ("login", Box::pin(pages::login_continue(edge, req, limit, timeout, ip)).await)
        }
        (&Method::GET | &Method::POST, "/account") => {
            ("account", Box::pin(pages::account(edge, req, limit, timeout, ip)).await)
        }
        (&Method::GET | &Method::POST, "/account/totp") => {
            ("account", Box::pin(pages::account_totp(edge, req, limit, timeout, ip)).await)
        }
        (&Method::POST, "/consent") => ("consent", Box::pin(pages::consent(edge, req, limit, timeout, ip)).await),
        (&Method::POST, "/passkey/login/options") => {
            ("passkey", Box::pin(pages::passkey_sign_in_options(edge, req, limit, timeout, ip)).await)
        }
        (&Method::POST, "/passkey/login") => {
            ("login", Box::pin(pages::passkey_sign_in(edge, req, limit, timeout, ip)).await)
        }
        (&Method::GET, "/account/passkeys") => {
            ("account", Box::pin(pages::account_passkeys(edge, req, limit, timeout, ip)).await)
        }
        (&Method::POST, "/account/passkeys/options") => {
            ("passkey", Box::pin(pages::passkey_registration_options(edge, req, limit, timeout, ip)).await)
        }
        (&Method::POST, "/account/passkeys") => {
            ("account", Box::pin(pages::register_passkey(edge, req, limit, timeout, ip)).await)
        }
        (&Method::POST, "/account/passkeys/delete") => {
            ("account", Box::pin(pages::remove_passkey(edge, req, limit, timeout, ip)).await)
        }
        (&Method::GET | &Method::POST, "/device") => {
            ("device", Box::pin(pages::device(edge, req, limit, timeout, ip)).await)
        }
        (&Method::GET | &Method::POST, "/oauth/logout") | (&Method::GET | &Method::POST, "/api/logout") => {
            ("logout", Box::pin(pages::logout(edge, req, limit, timeout, ip)).await)
        }
        (&Method::GET, p) if p.starts_with("/assets/") => match pages::asset(p) {
            Some(r) => ("asset", r),
            None => ("other", json_reply(404, r#"{"error":"not_found"}"#)),
        },
        (&Method::GET, "/api/health") => ("health", health(edge, uri.query())),
        (&Method::GET, "/metrics") => {
            ("metrics", reply(200, "text/plain; version=0.0.4", edge.metrics.render(&edge.node)))
        }
        // Rare and with large futures: boxed, so every request's future stays small (it is moved around).
        (_, p) if p.starts_with("/api/") => ("admin", Box::pin(admin::handle(edge, req, limit, timeout)).await),
        _ => ("other", json_reply(404, r#"{"error":"not_found"}"#)),
    }
}

/// What a removed node answers on every path but its health and metrics: 503, with the reason in both the
/// OAuth shape (`error`, `error_description`) and Casdoor's (`status`, `msg`), since it may be either.
fn removed(headers: &hyper::HeaderMap) -> Reply {
    const WHY: &str = "removed from the cluster";
    let body = json!({"error": "temporarily_unavailable", "error_description": WHY, "status": "error", "msg": WHY});
    let mut r = no_store(json_reply(503, body.to_string()));
    if announces_body(headers) {
        // The body was not read: the connection cannot carry another request.
        r.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}
