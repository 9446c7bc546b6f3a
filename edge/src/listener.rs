//! What every listener shares: the connection limit (overall and per client address), accepting with a
//! back-off when the system runs out of descriptors, stopping on the shutdown signal, draining the open
//! connections, and the TLS handshake with its timeout.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Admits connections into a listener: at most `max_connections` open at once (further clients wait in
/// the kernel's backlog), at most `max_per_address` from one address (further ones are closed at once).
pub(crate) struct Gate {
    slots: Arc<Semaphore>,
    per_address: Arc<AddressSlots>,
    max_connections: usize,
}

/// A connection's place in the [`Gate`]; dropping it (when the connection ends) frees it.
pub(crate) struct Admitted {
    _slot: OwnedSemaphorePermit,
    _address: AddressSlot,
}

impl Gate {
    pub(crate) fn new(max_connections: usize, max_per_address: usize) -> Gate {
        let max_connections = max_connections.max(1);
        Gate {
            slots: Arc::new(Semaphore::new(max_connections)),
            per_address: Arc::new(AddressSlots::new(max_per_address)),
            max_connections,
        }
    }

    /// The next admitted connection, or `None` once `shutdown` has resolved. `kind` names the listener in
    /// the logs and metrics.
    pub(crate) async fn accept<S: Future<Output = ()>>(
        &self,
        listener: &TcpListener,
        mut shutdown: Pin<&mut S>,
        metrics: &Metrics,
        kind: &'static str,
    ) -> Option<(TcpStream, SocketAddr, Admitted)> {
        loop {
            let permit = tokio::select! {
                p = self.slots.clone().acquire_owned() => p.ok()?,
                _ = shutdown.as_mut() => return None,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(listener = kind, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.as_mut() => return None,
            };
            // One address may not take every slot: past its limit the connection is closed unanswered (a
            // TLS handshake or an answer would spend on it what the limit is there to save).
            let Some(address) = self.per_address.take(peer.ip()) else {
                metrics.connection_refused(kind);
                tracing::debug!(listener = kind, %peer, "connection refused: too many open connections from this address");
                continue;
            };
            let _ = stream.set_nodelay(true);
            return Some((stream, peer, Admitted { _slot: permit, _address: address }));
        }
    }

    /// Waits until every admitted connection has ended, or `grace` has passed (then says so).
    pub(crate) async fn drain(&self, grace: Duration, kind: &'static str) {
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, self.slots.acquire_many(all)).await.is_err() {
            tracing::warn!(listener = kind, "some connections did not finish in time");
        }
    }
}

/// The server side of a TLS handshake, given `timeout` to finish; `None` (logged) when it fails.
pub(crate) async fn tls_handshake<IO>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: IO,
    timeout: Duration,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<IO>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Open connections per client address, each below the limit.
struct AddressSlots {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of an address; dropping it frees the slot.
struct AddressSlot {
    slots: Arc<AddressSlots>,
    ip: IpAddr,
}

impl AddressSlots {
    fn new(limit: usize) -> AddressSlots {
        AddressSlots { limit: limit.max(1), open: Mutex::new(HashMap::new()) }
    }

    /// A slot for a new connection from `ip`, or `None` when it has `limit` open already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot { slots: self.clone(), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_connection_limit() {
        let slots = Arc::new(AddressSlots::new(2));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let first = slots.take(a).expect("1st");
        let _second = slots.take(a).expect("2nd");
        assert!(slots.take(a).is_none(), "a third from the same address");
        let _other = slots.take(b).expect("another address is not affected");
        drop(first);
        assert!(slots.take(a).is_some(), "a slot frees when its connection ends");
    }
}
