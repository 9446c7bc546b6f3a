//! Node-to-node transport: HTTP/1.1 over mutually authenticated TLS.
//!
//! Every node of a cluster holds a certificate signed by the cluster's CA and trusts only that CA, as a
//! server and as a client: a peer without such a certificate never gets past the handshake. Each request
//! also names the cluster (`x-jeton-cluster`), so two clusters sharing a CA cannot mix.
//!
//! The client side lives here ([`Network`] for openraft, [`Peers`] for everything else a node asks of
//! another: forwarded writes, membership changes, read indexes); the server side is [`crate::cluster`].
//! Bodies are JSON.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Node, NodeId, TypeConfig};

/// The header naming the cluster on every request between nodes.
pub const CLUSTER_HEADER: &str = "x-jeton-cluster";
/// Largest body exchanged between nodes (append batches, snapshot chunks).
pub const MAX_BODY: usize = 256 << 20;

/// Content type of binary RPC bodies (postcard): what nodes send each other. A JSON body
/// (`application/json`) is still understood, and answered in JSON.
pub const POSTCARD: &str = "application/x-jeton-postcard";

/// Whether a body of this content type is postcard (else JSON).
pub(crate) fn is_postcard(content_type: Option<&hyper::header::HeaderValue>) -> bool {
    content_type.is_some_and(|v| v.as_bytes() == POSTCARD.as_bytes())
}

/// Decodes an RPC body, postcard if `binary`, else JSON.
pub(crate) fn decode_body<T: DeserializeOwned>(binary: bool, body: &[u8]) -> Result<T, String> {
    if binary {
        postcard::from_bytes(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }
}

/// The mutual-TLS configuration of a node: its certificate, and the cluster CA it trusts.
pub struct ClusterTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
    /// The node id this node's certificate names (see [`certificate_node_id`]); `None` for a certificate
    /// made by an earlier `jeton cluster cert`, which a node refuses to start with.
    pub node_id: Option<NodeId>,
}

/// How a certificate names the node it was issued to: a subject alternative name URI `jeton:node:<id>`
/// (`jeton cluster cert --node-id`). The node-to-node listener takes a caller's id from it.
pub const NODE_URI_PREFIX: &str = "jeton:node:";

/// The node id a certificate names, if it names exactly one (a malformed or second, different id: none).
pub fn certificate_node_id(der: &[u8]) -> Option<NodeId> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if let Some(id) = uri.strip_prefix(NODE_URI_PREFIX) {
                let id = crate::admission::parse_node_id(id)?;
                if found.is_some_and(|f| f != id) {
                    return None;
                }
                found = Some(id);
            }
        }
    }
    found
}

impl ClusterTls {
    /// Loads the cluster CA certificate and this node's certificate chain and key (PEM files).
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<ClusterTls, String> {
        let read_certs = |p: &Path| -> Result<Vec<CertificateDer<'static>>, String> {
            let certs = CertificateDer::pem_file_iter(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("invalid PEM in {}: {e}", p.display()))?;
            if certs.is_empty() {
                return Err(format!("no certificate in {}", p.display()));
            }
            Ok(certs)
        };
        let ca_certs = read_certs(ca)?;
        let chain = read_certs(cert)?;
        let node_id = certificate_node_id(&chain[0]);
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in ca_certs {
            roots.add(c).map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
        }
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder(roots.clone())
            .build()
            .map_err(|e| format!("cluster CA: {e}"))?;
        let server = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("{} does not match its key: {e}", cert.display()))?;
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("node certificate: {e}"))?;
        Ok(ClusterTls { server: Arc::new(server), client: Arc::new(client), node_id })
    }
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be made: nothing of the request was sent, so it is safe to send it elsewhere.
    #[error("cannot reach node at {addr}: {reason}")]
    NotConnected { addr: String, reason: String },
    /// No answer: refused, timed out, TLS failure. The request may or may not have arrived.
    #[error("node at {addr} is unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The peer answered with an error.
    #[error("node at {addr} answered {status}: {message}")]
    Refused { addr: String, status: u16, message: String },
}

/// Calls to other nodes. Cheap to clone; connections are not pooled here (see [`PeerConnection`] for the
/// Raft streams, which keep theirs).
#[derive(Clone)]
pub struct Peers {
    tls: Option<Arc<ClusterTls>>,
    cluster: Arc<std::sync::RwLock<String>>,
    /// Outgoing connections leave from this address (the IP of our own Raft listener), so a peer sees
    /// where a connection comes from.
    bind_ip: Option<IpAddr>,
    /// Members Raft's requests currently fail to, and why (see [`Peers::last_failure`]).
    failures: Arc<Mutex<HashMap<NodeId, Failure>>>,
}

/// Raft's requests to a member have been failing since `since`.
struct Failure {
    since: Instant,
    reason: String,
    /// When a refusal by the member was last logged.
    logged: Option<Instant>,
}

/// A member that has refused Raft's requests for this long is logged (once every [`REFUSAL_LOG_EVERY`]):
/// a member that missed a membership change refuses for a moment too, until the others vouch for us.
const REFUSAL_LOGGED_AFTER: Duration = Duration::from_secs(5);
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(600);

type Sender = SendRequest<Full<Bytes>>;

impl Peers {
    pub fn new(tls: Option<Arc<ClusterTls>>, cluster: &str, bind_ip: Option<IpAddr>) -> Peers {
        Peers {
            tls,
            cluster: Arc::new(std::sync::RwLock::new(cluster.to_string())),
            bind_ip,
            failures: Default::default(),
        }
    }

    /// Why Raft's requests to member `id` fail, if they do.
    pub fn last_failure(&self, id: NodeId) -> Option<String> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).get(&id).map(|f| f.reason.clone())
    }

    /// Notes a failed Raft request to member `id`. A refusal (the member answers, but does not take this
    /// node for a member of its cluster) that lasts is logged, at most once every ten minutes: the member retries with
    /// back-off, and each attempt would say the same.
    fn note_failure(&self, id: NodeId, addr: &str, error: &CallError) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let failure = failures.entry(id).or_insert_with(|| Failure {
            since: Instant::now(),
            reason: String::new(),
            logged: None,
        });
        failure.reason = error.to_string();
        // 403: the member's listener does not take this node for a member of its cluster.
        let refused = matches!(error, CallError::Refused { status: 403, .. });
        if refused
            && failure.since.elapsed() >= REFUSAL_LOGGED_AFTER
            && failure.logged.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY)
        {
            failure.logged = Some(Instant::now());
            tracing::warn!(
                node = id,
                "node {id} at {addr}, a member of this cluster, refuses its Raft requests ({error}): it does not \
                 count this cluster's leader as its own. Was it started without --join, forming a cluster of its \
                 own? Restart it with --join, or remove it (`jeton cluster remove --id {id}`). Requests to it \
                 back off; logged once every 10 minutes"
            );
        }
    }

    /// Raft's requests to member `id` work (again).
    fn note_success(&self, id: NodeId) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn cluster(&self) -> String {
        self.cluster.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_cluster(&self, cluster: &str) {
        *self.cluster.write().unwrap_or_else(|p| p.into_inner()) = cluster.to_string();
    }

    async fn connect(&self, addr: &str) -> Result<Sender, CallError> {
        let unreachable = |reason: String| CallError::NotConnected { addr: addr.to_string(), reason };
        let tls = self.tls.as_ref().ok_or_else(|| {
            unreachable("this node has no cluster TLS configured ([cluster] ca, cert, key)".to_string())
        })?;
        let (host, _) = split_host(addr).ok_or_else(|| unreachable("not a host:port address".into()))?;
        let target: SocketAddr = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| unreachable(format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| unreachable("no address".into()))?;
        let socket = if target.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .map_err(|e| unreachable(e.to_string()))?;
        if let Some(ip) = self.bind_ip.filter(|ip| ip.is_ipv4() == target.is_ipv4() && !ip.is_unspecified()) {
            socket.bind(SocketAddr::new(ip, 0)).map_err(|e| unreachable(format!("cannot bind {ip}: {e}")))?;
        }
        let tcp = tokio::time::timeout(Duration::from_secs(3), socket.connect(target))
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.to_string()).map_err(|e| unreachable(e.to_string()))?;
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_rustls::TlsConnector::from(tls.client.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| unreachable("TLS handshake timed out".into()))?
        .map_err(|e| unreachable(format!("TLS: {e}")))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// POSTs `body` (postcard) to `path` on the node at `addr`, reusing `conn` when it is still open.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        conn: &mut Option<Sender>,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let unreachable = |reason: String| CallError::Unreachable { addr: addr.to_string(), reason };
        let bytes = postcard::to_stdvec(body).map_err(|e| unreachable(format!("encoding: {e}")))?;
        let exchange = async {
            let mut sender = match conn.take() {
                Some(s) if !s.is_closed() => s,
                _ => self.connect(addr).await?,
            };
            sender.ready().await.map_err(|e| unreachable(e.to_string()))?;
            let req = hyper::Request::post(path)
                .header(hyper::header::HOST, addr)
                .header(hyper::header::CONTENT_TYPE, POSTCARD)
                .header(CLUSTER_HEADER, self.cluster())
                .body(Full::new(Bytes::from(bytes)))
                .map_err(|e| unreachable(e.to_string()))?;
            let resp = sender.send_request(req).await.map_err(|e| unreachable(e.to_string()))?;
            let status = resp.status();
            let binary = is_postcard(resp.headers().get(hyper::header::CONTENT_TYPE));
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            *conn = Some(sender);
            if !status.is_success() {
                return Err(CallError::Refused {
                    addr: addr.to_string(),
                    status: status.as_u16(),
                    message: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            decode_body(binary, &body).map_err(|e| unreachable(format!("undecodable answer: {e}")))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => {
                *conn = None;
                Err(unreachable(format!("no answer within {} ms", timeout.as_millis())))
            }
        }
    }

    /// One call on a fresh connection.
    pub async fn call_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.call(&mut None, addr, path, body, timeout).await
    }
}

/// `host` and `port` of `host:port` or `[v6]:port`.
fn split_host(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host, port.parse().ok()?))
}

/// Creates openraft's connections to peers.
#[derive(Clone)]
pub struct Network {
    pub peers: Peers,
}

/// One peer, as openraft sees it: a kept-alive connection to its Raft listener.
pub struct PeerConnection {
    target: NodeId,
    addr: String,
    peers: Peers,
    conn: Option<Sender>,
    /// The last request failed (or none has been made yet): the next success clears the peer's failure.
    failing: bool,
    /// The last failure was the peer's refusal (see [`PeerConnection::backoff`]).
    refused: bool,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerConnection {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            conn: None,
            failing: true,
            refused: false,
        }
    }
}

impl PeerConnection {
    async fn rpc<Req, Resp, E>(
        &mut self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Result<Resp, RaftError<NodeId, E>>, CallError> =
            self.peers.call(&mut self.conn, &self.addr, path, req, option.hard_ttl()).await;
        let failure = match answer {
            Ok(answer) => {
                if std::mem::take(&mut self.failing) {
                    self.peers.note_success(self.target);
                }
                return answer.map_err(|remote| RPCError::RemoteError(RemoteError::new(self.target, remote)));
            }
            Err(e) => e,
        };
        self.failing = true;
        self.refused = matches!(failure, CallError::Refused { .. });
        self.peers.note_failure(self.target, &self.addr, &failure);
        // A refusal is reported as unreachable too: openraft retries other errors at once, and a peer that
        // refuses (not a member of this cluster there) would be asked, and logged, thousands of times a second.
        Err(RPCError::Unreachable(Unreachable::new(&failure)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.rpc("/raft/append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>> {
        self.rpc("/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.rpc("/raft/vote", &rpc, &option).await
    }

    /// How long openraft waits between attempts to a peer that fails: half a second while it cannot be
    /// reached (it is restarting, say), and 1, 2, 4, 8, then 10 s while it answers with a refusal.
    fn backoff(&self) -> Backoff {
        if self.refused {
            Backoff::new((0u32..).map(|i| Duration::from_secs(1u64 << i.min(4)).min(Duration::from_secs(10))))
        } else {
            Backoff::new(std::iter::repeat(Duration::from_millis(500)))
        }
    }
}

#[cfg(test)]
mod tests {
    /// A certificate as `jeton cluster cert` makes it, with these subject alternative names.
    fn certificate(names: Vec<rcgen::SanType>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["node.example".to_string()]).unwrap();
        params.subject_alt_names.extend(names);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_names_its_node_by_exactly_one_uri() {
        let uri = |s: &str| rcgen::SanType::URI(s.to_string().try_into().unwrap());
        assert_eq!(super::certificate_node_id(&certificate(vec![uri("jeton:node:3")])), Some(3));
        assert_eq!(
            super::certificate_node_id(&certificate(vec![uri("https://x.example/"), uri("jeton:node:12")])),
            Some(12)
        );
        for names in [
            vec![],
            vec![uri("jeton:node:")],
            vec![uri("jeton:node:0")],
            vec![uri("jeton:node:03")],
            vec![uri("jeton:node:3x")],
            vec![uri("jeton:node:-3")],
            vec![uri("jeton:node:3"), uri("jeton:node:4")],
        ] {
            assert_eq!(super::certificate_node_id(&certificate(names.clone())), None, "{names:?}");
        }
        assert_eq!(super::certificate_node_id(b"not a certificate"), None);
    }

    #[test]
    fn splits_host_and_port() {
        assert_eq!(super::split_host("127.0.0.1:7001"), Some(("127.0.0.1", 7001)));
        assert_eq!(super::split_host("[::1]:7001"), Some(("::1", 7001)));
        assert_eq!(super::split_host("node-1.example:7001"), Some(("node-1.example", 7001)));
        assert_eq!(super::split_host("node-1.example"), None);
    }

    /// Every body nodes send each other survives the binary wire format (postcard cannot read tagged or
    /// untagged enums; a type that needs one fails here, not in a running cluster).
    #[test]
    fn wire_types_round_trip_in_postcard() {
        use crate::cluster::{ClusterInfo, InfoRequest, JoinRequest, MembershipChange, WireError};
        use crate::{Command, CommandResponse, Outcome};
        use openraft::{BasicNode, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};
        use std::collections::{BTreeMap, BTreeSet};

        fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(v: &T) -> T {
            let bytes = postcard::to_stdvec(v).expect("encode");
            super::decode_body::<T>(true, &bytes).expect("decode")
        }
        for change in [
            MembershipChange::AddLearner { id: 4, addr: "10.0.0.4:7000".into() },
            MembershipChange::Promote { id: 4, force: true },
            MembershipChange::Remove { id: 1 },
        ] {
            assert_eq!(round_trip(&change), change);
        }
        for e in [WireError::Unavailable("no quorum".into()), WireError::NotCaughtUp("node 4: 3 of 90".into())] {
            let e: Result<(), WireError> = Err(e);
            assert_eq!(round_trip(&e), e);
        }
        let token = crate::admission::JoinToken::generate("c", 2).unwrap().secret;
        let info = round_trip(&InfoRequest { node_id: 2, token: Some(token.clone()) });
        assert_eq!((info.node_id, info.token.as_ref()), (2, Some(&token)));
        let info = round_trip(&ClusterInfo {
            cluster: "c".into(),
            leader: Some(1),
            secret: Some("ab".into()),
            members: vec![1, 3],
        });
        assert_eq!((info.cluster.as_str(), info.leader, info.secret.as_deref()), ("c", Some(1), Some("ab")));
        assert_eq!(info.members, vec![1, 3]);
        let join = round_trip(&JoinRequest { node_id: 3, addr: "a:1".into(), learner: true, token: None });
        assert!(join.learner && join.token.is_none());
        let change = MembershipChange::Join { id: 2, addr: "b:2".into(), token: Some(token), learner: true };
        assert_eq!(round_trip(&change), change);
        let admit =
            Command::AdmitNode { admission: crate::admission::JoinToken::generate("c", 5).unwrap().admission(10, 20) };
        assert_eq!(round_trip(&admit), admit);
        assert_eq!(round_trip(&7u64), 7);
        let cmd = Command::Each { commands: vec![Command::DeleteUser { owner: "acme".into(), name: "bob".into() }] };
        assert_eq!(round_trip(&cmd), cmd);
        let resp: Result<CommandResponse, WireError> =
            Ok(CommandResponse { outcome: Outcome::Applied, outcomes: vec![Outcome::Invalid("x".into())] });
        assert_eq!(round_trip(&resp), resp);

        let nodes: BTreeMap<u64, BasicNode> = [(1, BasicNode::new("a:1")), (2, BasicNode::new("b:2"))].into();
        let membership = Membership::new(vec![BTreeSet::from([1, 2])], nodes);
        let log_id = LogId::new(openraft::CommittedLeaderId::new(3, 1), 42);
        let entries: Vec<Entry<crate::TypeConfig>> = vec![
            Entry { log_id, payload: EntryPayload::Blank },
            Entry { log_id, payload: EntryPayload::Normal(cmd.clone()) },
            Entry { log_id, payload: EntryPayload::Membership(membership.clone()) },
        ];
        let append = openraft::raft::AppendEntriesRequest::<crate::TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id),
            leader_commit: Some(log_id),
            entries,
        };
        let back = round_trip(&append);
        assert_eq!(back.entries.len(), 3);
        assert_eq!(back.entries[1].payload, EntryPayload::Normal(cmd));
        let snapshot = openraft::raft::InstallSnapshotRequest::<crate::TypeConfig> {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta {
                last_log_id: Some(log_id),
                last_membership: StoredMembership::new(Some(log_id), membership),
                snapshot_id: "s".into(),
            },
            offset: 0,
            data: vec![1, 2, 3],
            done: true,
        };
        assert_eq!(round_trip(&snapshot).data, vec![1, 2, 3]);
        assert_eq!(round_trip(&openraft::raft::VoteRequest::new(Vote::new(4, 2), Some(log_id))).vote, Vote::new(4, 2));
    }

    /// Found by fuzzing (fuzz/fuzz_targets/node_bodies.rs): `Batch` and `Each` hold commands, and postcard
    /// has no depth limit, so a body of a few hundred kilobytes of commands nested in one another overflowed
    /// the stack of the task decoding it (a forwarded write, a log entry from the leader, or the node's own
    /// log on restart) and aborted the node. Decoding now refuses a command nested deeper than
    /// `command::MAX_NESTING`, in both formats. Run on a thread with a tokio worker's stack (2 MiB).
    #[test]
    fn deeply_nested_commands_are_refused_not_a_stack_overflow() {
        use crate::Command;
        let (batch, each, prune) = (24u8, 25u8, 23u8);
        assert_eq!(postcard::to_allocvec(&Command::Batch { commands: vec![] }).unwrap(), [batch, 0]);
        assert_eq!(postcard::to_allocvec(&Command::Each { commands: vec![] }).unwrap(), [each, 0]);
        assert_eq!(postcard::to_allocvec(&Command::Prune { now: 0 }).unwrap(), [prune, 0]);
        let nested = move |levels: usize, outer: u8| -> Vec<u8> {
            let mut body: Vec<u8> = (0..levels).flat_map(|i| [if i % 2 == 0 { outer } else { each }, 1]).collect();
            body.extend([prune, 0]);
            body
        };
        let decoded = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let deep = super::decode_body::<Command>(true, &nested(200_000, batch));
                let ok = super::decode_body::<Command>(true, &nested(crate::command::MAX_NESTING, batch));
                let too_deep = super::decode_body::<Command>(true, &nested(crate::command::MAX_NESTING + 1, batch));
                let json = format!(
                    "{}{{\"Prune\":{{\"now\":0}}}}{}",
                    "{\"Batch\":{\"commands\":[".repeat(100),
                    "]}}".repeat(100)
                );
                let deep_json = super::decode_body::<Command>(false, json.as_bytes());
                (deep.is_err(), ok.is_ok(), too_deep.is_err(), deep_json.is_err())
            })
            .expect("thread")
            .join()
            .expect("decoding ended");
        assert_eq!(decoded, (true, true, true, true));
    }
}
