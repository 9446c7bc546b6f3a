//! The RADIUS front end: Access-Request (PAP, CHAP, MS-CHAPv2, a TOTP second factor through
//! Access-Challenge), Status-Server (RFC 5997) and accounting (RFC 2866), over UDP with the `radius` crate's
//! packet decoding, and the Message-Authenticator (RFC 3579 §3.2) that the crate does not do, in [`crypto`].
//!
//! What arrives is checked before anything else looks at it: the sender must be a configured NAS client
//! (by address or network), the packet must be well formed, and its Message-Authenticator must be right —
//! required by default on every Access-Request and Status-Server (the BlastRADIUS mitigation,
//! CVE-2024-3596), relaxable per client for legacy gear. A packet that fails any of these is dropped,
//! counted and logged (rate-limited), never answered: a RADIUS client takes silence as "try again or try
//! another server", and an answer would help a forger. Every reply carries a Message-Authenticator and
//! its Response Authenticator.
//!
//! Each request runs in a task of its own, at most `max_in_flight` at once; beyond that, requests are
//! dropped (the NAS retransmits) rather than queued. A retransmission (same client address and port,
//! identifier and Request Authenticator, RFC 5080 §2.2.2) gets the byte-identical reply again without a
//! second password check; one that arrives while the first is still being worked on is dropped.
//!
//! Password checks go through the password service ([`crate::passwords`]), like OAuth and LDAP: lockout,
//! the timing floor, forbidden and deleted users. The per-address limit does not apply: the address is the
//! NAS's, shared by all its users.

pub mod access;
pub mod accounting;
pub mod crypto;
pub mod radsec;
mod recent;
mod reply;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, histogram, Counter, Histogram};
use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};

use crate::service::Edge;
pub(crate) use crypto::code;
use recent::{RequestKey, Seen};
pub use reply::{ReplyAttribute, ReplyRule, RuleMatch};

/// Largest RADIUS packet (RFC 2865 §3).
pub const MAX_PACKET: usize = 4096;

/// One NAS allowed to talk to this node.
#[derive(Clone)]
pub struct NasClient {
    /// Its name in logs and metrics (`nas` label).
    pub name: String,
    /// The addresses it sends from.
    pub network: ipnet::IpNet,
    pub secret: Vec<u8>,
    /// Drop Access-Requests without a Message-Authenticator (the default; turn off only for legacy gear
    /// that cannot send one: its requests can then be forged, CVE-2024-3596).
    pub require_message_authenticator: bool,
    /// Organization of requests without a Class attribute; empty: the server's default.
    pub organization: String,
}

impl std::fmt::Debug for NasClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NasClient")
            .field("name", &self.name)
            .field("network", &self.network)
            .field("secret", &"<hidden>")
            .field("require_message_authenticator", &self.require_message_authenticator)
            .field("organization", &self.organization)
            .finish()
    }
}

/// Settings of the RADIUS listeners.
#[derive(Clone, Debug)]
pub struct RadiusSettings {
    pub clients: Vec<NasClient>,
    /// Organization of requests without a Class attribute, when their client names none (Casdoor's
    /// `radiusDefaultOrganization`).
    pub default_organization: String,
    /// Attributes of an Access-Accept, by organization and the user's groups and roles.
    pub replies: Vec<ReplyRule>,
    /// How long an Access-Challenge's State can be answered.
    pub challenge_ttl: Duration,
    /// How long a reply is kept to answer a retransmission with.
    pub duplicate_window: Duration,
    /// Requests worked on at once; more are dropped.
    pub max_in_flight: usize,
}

impl Default for RadiusSettings {
    fn default() -> Self {
        RadiusSettings {
            clients: Vec::new(),
            default_organization: "built-in".into(),
            replies: Vec::new(),
            challenge_ttl: Duration::from_secs(120),
            duplicate_window: Duration::from_secs(10),
            max_in_flight: 4096,
        }
    }
}

/// Why a packet was dropped (the `reason` label of `jeton_radius_drops_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drop {
    UnknownClient,
    Malformed,
    NoMessageAuthenticator,
    BadMessageAuthenticator,
    BadAuthenticator,
    UnexpectedCode,
    Overload,
    InProgress,
    NotRecorded,
}

impl Drop {
    const ALL: [Drop; 9] = [
        Drop::UnknownClient,
        Drop::Malformed,
        Drop::NoMessageAuthenticator,
        Drop::BadMessageAuthenticator,
        Drop::BadAuthenticator,
        Drop::UnexpectedCode,
        Drop::Overload,
        Drop::InProgress,
        Drop::NotRecorded,
    ];

    fn label(self) -> &'static str {
        match self {
            Drop::UnknownClient => "unknown_client",
            Drop::Malformed => "malformed",
            Drop::NoMessageAuthenticator => "no_message_authenticator",
            Drop::BadMessageAuthenticator => "bad_message_authenticator",
            Drop::BadAuthenticator => "bad_authenticator",
            Drop::UnexpectedCode => "unexpected_code",
            Drop::Overload => "overload",
            Drop::InProgress => "duplicate_in_progress",
            Drop::NotRecorded => "not_recorded",
        }
    }
}

/// Outcome labels of `jeton_radius_requests_total`.
const OUTCOMES: [&str; 6] = ["accept", "reject", "challenge", "status", "accounting", "duplicate"];

/// One NAS's metric handles, registered once.
struct NasMetrics {
    outcomes: [Counter; 6],
    drops: [Counter; 9],
    latency: Histogram,
}

impl NasMetrics {
    fn new(nas: &str) -> NasMetrics {
        NasMetrics {
            outcomes: OUTCOMES
                .map(|o| counter!("jeton_radius_requests_total", "nas" => nas.to_string(), "outcome" => o)),
            drops: Drop::ALL
                .map(|d| counter!("jeton_radius_drops_total", "nas" => nas.to_string(), "reason" => d.label())),
            latency: histogram!("jeton_radius_request_seconds", "nas" => nas.to_string()),
        }
    }
}

/// A configured client with its metrics.
pub(crate) struct Client {
    pub(crate) nas: NasClient,
    metrics: NasMetrics,
}

/// What the listeners share.
pub(crate) struct Shared {
    pub(crate) edge: Arc<Edge>,
    pub(crate) settings: RadiusSettings,
    clients: Vec<Client>,
    /// Metrics of packets from no configured client.
    unknown: NasMetrics,
    unknown_logged: AtomicI64,
    unknown_since_log: AtomicU64,
    seen: recent::Recent,
    in_flight: Arc<Semaphore>,
    pub(crate) challenges: access::Challenges,
    /// The client every RadSec connection is (its certificate was checked during the handshake).
    radsec: Option<Client>,
}

impl Shared {
    fn new(edge: Arc<Edge>, settings: RadiusSettings, radsec: Option<&radsec::RadSecSettings>) -> Shared {
        let clients = settings
            .clients
            .iter()
            .map(|nas| {
                if !nas.require_message_authenticator {
                    tracing::warn!(
                        nas = %nas.name,
                        "RADIUS client accepted without Message-Authenticator: its Access-Requests can be forged \
                         (BlastRADIUS, CVE-2024-3596); turn require_message_authenticator back on once it sends one"
                    );
                }
                Client { metrics: NasMetrics::new(&nas.name), nas: nas.clone() }
            })
            .collect();
        Shared {
            challenges: access::Challenges::new(settings.challenge_ttl),
            seen: recent::Recent::new(settings.duplicate_window, 1_000_000),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            unknown: NasMetrics::new("unknown"),
            unknown_logged: AtomicI64::new(0),
            unknown_since_log: AtomicU64::new(0),
            radsec: radsec.map(|r| {
                let nas = NasClient {
                    name: "radsec".into(),
                    network: ipnet::IpNet::default(),
                    secret: radsec::SECRET.to_vec(),
                    // TLS protects the packets; the Message-Authenticator is checked when present.
                    require_message_authenticator: false,
                    organization: r.organization.clone(),
                };
                Client { metrics: NasMetrics::new(&nas.name), nas }
            }),
            clients,
            edge,
            settings,
        }
    }

    /// The client a packet from `ip` belongs to (its index in `clients`): the most specific network that
    /// holds it.
    fn client(&self, ip: IpAddr) -> Option<usize> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        (0..self.clients.len())
            .filter(|&i| self.clients[i].nas.network.contains(&ip))
            .max_by_key(|&i| self.clients[i].nas.network.prefix_len())
    }

    /// Counts and logs (at most once a minute) a packet from no configured client.
    fn unknown_client(&self, from: SocketAddr) {
        self.unknown.drops[0].increment(1);
        let missed = self.unknown_since_log.fetch_add(1, Ordering::Relaxed) + 1;
        let now = crate::clock::now();
        let last = self.unknown_logged.load(Ordering::Relaxed);
        if now - last >= 60
            && self.unknown_logged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.unknown_since_log.store(0, Ordering::Relaxed);
            tracing::warn!(%from, dropped = missed, "RADIUS packet from an address that is no configured client dropped");
        }
    }
}

impl Client {
    /// Checks a request's Message-Authenticator by the one rule of every listener: a wrong one is always
    /// dropped; a missing one is accepted only on an Accounting-Request (optional there, RFC 2869 §5.14)
    /// and on an Access-Request from a client that turned the requirement off. Status-Server always needs
    /// one (RFC 5997 §3).
    pub(crate) fn message_authenticated(&self, packet: &[u8]) -> Result<(), Drop> {
        match crypto::check_request(packet, &self.nas.secret) {
            Ok(crypto::MessageAuth::Valid) => Ok(()),
            Ok(crypto::MessageAuth::Absent)
                if packet[0] == code::ACCOUNTING_REQUEST
                    || (packet[0] == code::ACCESS_REQUEST && !self.nas.require_message_authenticator) =>
            {
                Ok(())
            }
            Ok(crypto::MessageAuth::Absent) => Err(Drop::NoMessageAuthenticator),
            Ok(crypto::MessageAuth::Invalid) => Err(Drop::BadMessageAuthenticator),
            Err(_) => Err(Drop::Malformed),
        }
    }

    pub(crate) fn dropped(&self, why: Drop, from: SocketAddr) {
        let i = Drop::ALL.iter().position(|d| *d == why).unwrap_or(0);
        self.metrics.drops[i].increment(1);
        match why {
            Drop::Overload | Drop::InProgress => {
                tracing::debug!(nas = %self.nas.name, %from, reason = why.label(), "RADIUS packet dropped")
            }
            _ => tracing::info!(nas = %self.nas.name, %from, reason = why.label(), "RADIUS packet dropped"),
        }
    }

    fn answered(&self, outcome: &'static str, elapsed: Duration) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.metrics.outcomes[i].increment(1);
        }
        self.metrics.latency.record(elapsed.as_secs_f64());
    }
}

/// Which listener a packet came in on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Port {
    Auth,
    Accounting,
}

/// What handling a request came to.
pub(crate) enum Answer {
    /// Send this (signed) reply; the label says what it was.
    Reply(Vec<u8>, &'static str),
    Drop(Drop),
}

/// The packet within a datagram, by its Length field; `None` when the datagram is no packet.
pub(crate) fn framed(datagram: &[u8]) -> Option<&[u8]> {
    if datagram.len() > MAX_PACKET {
        return None;
    }
    crypto::packet_len(datagram).ok().map(|length| &datagram[..length])
}

/// What the listener reads of a request, on arbitrary bytes (the fuzz target `radius`).
#[doc(hidden)]
pub fn decode_for_fuzzing(datagram: &[u8], secret: &[u8]) {
    let Some(packet) = framed(datagram) else { return };
    let Ok(request) = ::radius::core::packet::Packet::decode(packet, secret) else { return };
    access::read_for_fuzzing(&request);
    accounting::read_for_fuzzing(&request);
}

/// Serves RADIUS authentication on `auth`, accounting on `acct` and RadSec on `radsec` until `shutdown`
/// resolves, then stops receiving and lets the requests being worked on finish (up to 5 s).
pub async fn serve(
    edge: Arc<Edge>,
    auth: Option<UdpSocket>,
    acct: Option<UdpSocket>,
    radsec: Option<(tokio::net::TcpListener, radsec::RadSecSettings)>,
    settings: RadiusSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let shared = Arc::new(Shared::new(edge, settings, radsec.as_ref().map(|(_, s)| s)));
    let (stopping, stop) = watch::channel(false);
    let mut loops = Vec::new();
    if let Some((listener, settings)) = radsec {
        loops.push(tokio::spawn(radsec::accept(shared.clone(), listener, settings, stop.clone())));
    }
    // One receiving task per core on each socket: a datagram costs a system call to receive and one to
    // answer, which one task alone would serialise.
    let receivers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (socket, port) in [(auth, Port::Auth), (acct, Port::Accounting)] {
        if let Some(socket) = socket {
            let socket = Arc::new(socket);
            for _ in 0..receivers {
                loops.push(tokio::spawn(receive(shared.clone(), socket.clone(), port, stop.clone())));
            }
        }
    }
    shutdown.await;
    let _ = stopping.send(true);
    for l in loops {
        let _ = l.await;
    }
    let all = shared.settings.max_in_flight.max(1) as u32;
    let _ = tokio::time::timeout(Duration::from_secs(5), shared.in_flight.acquire_many(all)).await;
}

/// Receives on one socket until told to stop.
async fn receive(shared: Arc<Shared>, socket: Arc<UdpSocket>, port: Port, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; MAX_PACKET + 1];
    loop {
        let (len, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // ICMP port unreachable from an earlier reply and the like: nothing to do with this socket.
                    tracing::debug!("RADIUS receive: {e}");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let started = Instant::now();
        let Some(index) = shared.client(from.ip()) else {
            shared.unknown_client(from);
            continue;
        };
        let client = &shared.clients[index];
        // Octets past the Length field are padding (RFC 2865 §3) and are ignored; a Length past the end,
        // or below the header, is malformed.
        let Some(packet) = framed(&buf[..len]) else {
            client.dropped(Drop::Malformed, from);
            continue;
        };
        let Ok(authenticator) = crypto::authenticator(packet) else {
            client.dropped(Drop::Malformed, from);
            continue;
        };
        let key = RequestKey { from, port: port as u8, identifier: packet[1], authenticator };
        // Claimed in one step: of two receivers holding the same request, one works on it.
        if let Some(seen) = shared.seen.claim(&key) {
            match seen {
                Seen::Answered(reply) => {
                    // The same bytes again: a retransmission (whose reply was lost), answered the same way.
                    if let Err(e) = socket.send_to(&reply, from).await {
                        tracing::debug!(%from, "RADIUS send: {e}");
                    }
                    client.answered("duplicate", started.elapsed());
                }
                Seen::Working => client.dropped(Drop::InProgress, from),
            }
            continue;
        }
        let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
            shared.seen.forget(&key);
            client.dropped(Drop::Overload, from);
            continue;
        };
        let (shared, socket, packet) = (shared.clone(), socket.clone(), packet.to_vec());
        tokio::spawn(async move {
            let _permit = permit;
            let client = &shared.clients[index];
            let answer = match port {
                Port::Auth => access::handle(&shared, client, &packet, from).await,
                Port::Accounting => accounting::handle(&shared, client, &packet, from).await,
            };
            match answer {
                Answer::Reply(reply, outcome) => {
                    // Kept before it is sent: a retransmission that crosses the reply gets it too.
                    let reply: Arc<[u8]> = reply.into();
                    shared.seen.answered(key, reply.clone());
                    if let Err(e) = socket.send_to(&reply, from).await {
                        tracing::debug!(%from, "RADIUS send: {e}");
                    }
                    client.answered(outcome, started.elapsed());
                }
                Answer::Drop(why) => {
                    shared.seen.forget(&key);
                    client.dropped(why, from);
                }
            }
        });
    }
}
