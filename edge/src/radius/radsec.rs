//! RadSec: RADIUS over TLS (RFC 6614). Clients must present a certificate that chains to the configured
//! CA (checked by rustls during the handshake); the shared secret is the fixed `radsec` (§2.3). Packets are
//! framed by their Length field on the stream; each request is worked on in a task of its own (a slow hash
//! does not hold up the others of the connection) and replies are written as they are ready. Malformed
//! framing ends the connection (§2.6.1 leaves no way to resynchronise); a packet that fails its checks is
//! dropped as on UDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use super::{access, accounting, code, framed, Answer, Client, Shared, MAX_PACKET};

/// The shared secret of RadSec (RFC 6614 §2.3).
pub const SECRET: &[u8] = b"radsec";

/// Settings of the RadSec listener.
#[derive(Clone)]
pub struct RadSecSettings {
    /// Server certificate, and the client-certificate verifier of the configured CA.
    pub tls: Arc<rustls::ServerConfig>,
    /// Organization of requests without a Class attribute; empty: the server's default.
    pub organization: String,
    pub max_connections: usize,
    /// A connection with nothing to read for this long is closed.
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for RadSecSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadSecSettings")
            .field("organization", &self.organization)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// Accepts RadSec connections until told to stop.
pub(crate) async fn accept(
    shared: Arc<Shared>,
    listener: TcpListener,
    settings: RadSecSettings,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(settings.tls.clone());
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("RadSec accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "RadSec connection refused: too many connections");
            continue;
        };
        let (shared, acceptor, stop, idle) = (shared.clone(), acceptor.clone(), stop.clone(), settings.idle_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            connection(shared, acceptor, tcp, peer, idle, stop).await;
        });
    }
}

async fn connection(
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, "RadSec handshake refused: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "RadSec handshake timed out");
            return;
        }
    };
    let (mut reader, mut writer) = tokio::io::split(tls);
    let (replies, mut outbox) = mpsc::channel::<Vec<u8>>(64);
    let writing = tokio::spawn(async move {
        while let Some(reply) = outbox.recv().await {
            if writer.write_all(&reply).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let header = tokio::select! {
            r = tokio::time::timeout(idle, reader.read_exact(&mut buf[..4])) => r,
            _ = stop.changed() => break,
        };
        match header {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if !(20..=MAX_PACKET).contains(&length) {
            tracing::info!(%peer, length, "RadSec: impossible packet length, connection closed");
            break;
        }
        match tokio::time::timeout(Duration::from_secs(30), reader.read_exact(&mut buf[4..length])).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let Some(packet) = framed(&buf[..length]).map(<[u8]>::to_vec) else { break };
        let Some(client) = shared.radsec.as_ref() else { break };
        let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
            client.dropped(super::Drop::Overload, peer);
            continue;
        };
        let (shared, replies) = (shared.clone(), replies.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Some(client) = shared.radsec.as_ref() else { return };
            let started = std::time::Instant::now();
            let answer = request(&shared, client, &packet, peer).await;
            match answer {
                Answer::Reply(reply, outcome) => {
                    client.answered(outcome, started.elapsed());
                    let _ = replies.send(reply).await;
                }
                Answer::Drop(why) => client.dropped(why, peer),
            }
        });
    }
    drop(replies);
    let _ = writing.await;
}

/// Any request a RadSec connection carries: authentication and accounting share it (RFC 6614 §2.5).
async fn request(shared: &Shared, client: &Client, packet: &[u8], peer: SocketAddr) -> Answer {
    match packet[0] {
        code::ACCOUNTING_REQUEST => accounting::handle(shared, client, packet, peer).await,
        _ => access::handle(shared, client, packet, peer).await,
    }
}
