//! The node-to-node listener: Raft's RPCs and what nodes ask of each other, over mutual TLS.
//!
//! | path | body → answer | who may call it |
//! |---|---|---|
//! | `/raft/append`, `/raft/vote`, `/raft/snapshot` | openraft's RPCs | members |
//! | `/cluster/info` | [`InfoRequest`] → [`ClusterInfo`] | an admitted node (join token) or a member |
//! | `/cluster/join` | [`JoinRequest`] → `Result<(), WireError>` | an admitted node or a member; carried out by the leader |
//! | `/cluster/write` | `Command` → `Result<CommandResponse, WireError>` | members; served by the leader |
//! | `/cluster/membership` | [`MembershipChange`] → `Result<(), WireError>` | members; served by the leader |
//! | `/cluster/read-index` | `()` → `Result<Option<u64>, WireError>` | members; served by the leader |
//! | `/cluster/member` | `NodeId` → `bool` (is it a member here?) | members |
//! | `/cluster/standing` | `()` → [`Standing`] (is the caller a member here?) | any node of the cluster CA |
//! | `/cluster/removed` | [`Standing`] → `bool` (the leader that removed this node says so) | members |
//!
//! Who is calling comes from the certificate the TLS handshake verified: a peer without a certificate of
//! the cluster CA never gets past it (refused and logged), and the certificate's `jeton:node:<id>` name
//! ([`crate::network::certificate_node_id`]) is the caller's node id. Every request must name this node's
//! cluster (`x-jeton-cluster`, `/cluster/info` included), or it is refused with 403. "Members" are the
//! voters and learners of the membership this node knows; a node that is removed loses access to the log
//! and to the leader's services with its next request. A joining node, which has no membership yet,
//! accepts Raft's RPCs from the members the cluster named when it let it in; a member that has missed
//! membership changes asks the voters it knows about a caller it does not know ([`ReplicaNode::accepts_peer`]).
//!
//! Limits: at most [`ListenerLimits::max_connections`] connections at once (a connection past it is closed
//! at once), a TLS handshake within 10 s, request headers within [`ListenerLimits::idle_timeout`], which is
//! also how long a connection may stay idle; bodies up to [`MAX_BODY`] (Raft's paths, forwarded writes) or
//! [`SMALL_BODY`] (the others).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::admission::TokenSecret;
use crate::network::{decode_body, is_postcard, ClusterTls, CLUSTER_HEADER, MAX_BODY, POSTCARD};
use crate::node::{ReplicaNode, WriteError};
use crate::removal::Standing;
use crate::NodeId;

/// Largest body of the paths that carry no log entries or commands.
pub const SMALL_BODY: usize = 64 << 10;

/// Asked by a node about to join, or restarting with `join` set.
#[derive(Serialize, Deserialize, Debug)]
pub struct InfoRequest {
    pub node_id: NodeId,
    /// The secret of the node's join token; none for a node that is a member already.
    pub token: Option<TokenSecret>,
}

/// The answer to [`InfoRequest`].
#[derive(Serialize, Deserialize, Debug)]
pub struct ClusterInfo {
    pub cluster: String,
    pub leader: Option<NodeId>,
    /// The shared key-encryption key (hex), for a node that joins.
    pub secret: Option<String>,
    /// The members this node knows: a joining node accepts Raft's RPCs from them until it has a
    /// membership of its own.
    pub members: Vec<NodeId>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct JoinRequest {
    pub node_id: NodeId,
    /// The joining node's Raft address.
    pub addr: String,
    /// Stay a learner instead of becoming a voter once caught up.
    pub learner: bool,
    /// The secret of the node's join token; none for a node that is a member already.
    pub token: Option<TokenSecret>,
}

/// A change to the cluster's membership.
// No `#[serde(tag)]` here or in any other type that travels between nodes: postcard (the nodes' wire
// format) cannot read internally tagged or untagged enums.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum MembershipChange {
    /// Adds a non-voting member and waits until it has caught up (`raft.catch_up_timeout_secs`; it stays a
    /// learner if it has not). An administrator's add-learner: naming the id is the admission.
    AddLearner { id: NodeId, addr: String },
    /// Makes a learner a voter: refused while it has not caught up, unless `force`.
    Promote { id: NodeId, force: bool },
    /// Removes a voter or a learner.
    Remove { id: NodeId },
    /// A node joining: added as a learner if its join token opens its admission (a member already needs
    /// none: a join resumed after a restart), then made a voter once it has caught up, unless `learner`.
    /// A node that does not catch up in time stays a learner.
    Join { id: NodeId, addr: String, token: Option<TokenSecret>, learner: bool },
}

/// An error travelling back to the node that forwarded a request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error("not the leader")]
    NotLeader,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    NotCaughtUp(String),
}

impl From<WriteError> for WireError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotLeader { .. } => WireError::NotLeader,
            WriteError::Unavailable(m) => WireError::Unavailable(m),
            WriteError::Timeout => WireError::Unavailable("the write was not committed in time".into()),
            WriteError::Invalid(m) => WireError::Invalid(m),
            WriteError::NotCaughtUp(m) => WireError::NotCaughtUp(m),
            other => WireError::Failed(other.to_string()),
        }
    }
}

impl From<WireError> for WriteError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::NotLeader => WriteError::NotLeader { leader: None },
            WireError::Unavailable(m) => WriteError::Unavailable(m),
            WireError::Invalid(m) => WriteError::Invalid(m),
            WireError::Failed(m) => WriteError::Fatal(m),
            WireError::NotCaughtUp(m) => WriteError::NotCaughtUp(m),
        }
    }
}

/// A member of the cluster.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Member {
    pub id: NodeId,
    pub addr: String,
}

/// What a node knows of its cluster (`jeton cluster status`).
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub cluster: String,
    pub node_id: NodeId,
    /// Leader, Follower, Candidate or Learner.
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub voters: Vec<Member>,
    pub learners: Vec<Member>,
    /// On the leader: the last log index each member has (None: nothing yet).
    pub replication: Option<BTreeMap<NodeId, Option<u64>>>,
}

/// Time a peer gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits of the node-to-node listener (`raft.max_connections`, `raft.idle_timeout_secs`).
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Connections open at once, handshakes included; a connection past it is closed at once.
    pub max_connections: usize,
    /// Time to send a request's headers, which is also how long a connection may stay idle.
    pub idle_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits { max_connections: 512, idle_timeout: Duration::from_secs(60) }
    }
}

/// Accepts node-to-node connections until the task is aborted.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<ClusterTls>,
    node: ReplicaNode,
    limits: ListenerLimits,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("node-to-node listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once: a peer sees the failure now rather than after its own timeout.
            drop(tcp);
            if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                last_full_warning = Some(Instant::now());
                tracing::warn!(
                    %peer,
                    limit = limits.max_connections,
                    "node-to-node listener: connection limit reached, closing new connections"
                );
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let node = node.clone();
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, "refused a node-to-node connection: {e}");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "refused a node-to-node connection: no TLS handshake within 10 s");
                    return;
                }
            };
            // The handshake verified the certificate against the cluster CA; its node id is the caller's.
            let caller = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| crate::network::certificate_node_id(cert));
            let service = hyper::service::service_fn(move |req| {
                let node = node.clone();
                async move { Ok::<_, Infallible>(handle(&node, req, peer, caller).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(idle_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    answer_as(status, body, "application/json")
}

fn answer_as(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    resp
}

/// A refusal: 403 with the reason as a JSON string.
fn forbidden(reason: &str) -> Response<Full<Bytes>> {
    answer(StatusCode::FORBIDDEN, serde_json::to_vec(reason).unwrap_or_default())
}

/// The answer in the request's format: postcard for a postcard request, else JSON.
fn encoded<T: Serialize>(value: &T, binary: bool) -> Response<Full<Bytes>> {
    let body = if binary {
        postcard::to_stdvec(value).map_err(|e| e.to_string())
    } else {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    };
    match body {
        Ok(body) if binary => answer_as(StatusCode::OK, body, POSTCARD),
        Ok(body) => answer(StatusCode::OK, body),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, e.into_bytes()),
    }
}

/// Who may call a path: see the module documentation.
enum Access {
    /// Members only.
    Members,
    /// Joining nodes (checked by the handler against their admission) and members.
    Joining,
    /// Any node with a certificate of the cluster CA (it learns only about itself).
    Anyone,
}

async fn handle(
    node: &ReplicaNode,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    caller: Option<NodeId>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let cluster = req.headers().get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if cluster != node.identity.cluster {
        if node.explain_now(cluster, caller) {
            if path.starts_with("/raft/") {
                tracing::warn!(
                    %peer,
                    claimed = %cluster,
                    "node {} of cluster {cluster} sends Raft's requests to this node, which belongs to cluster {}: \
                     that cluster counts this node (node {}) as a member, but this node was started outside it \
                     (without --join, a node forms a cluster of its own). To make it a member there, stop it, move \
                     its data dir away and start it with --join and a join token (`jeton cluster admit --id {}` \
                     there); or remove it there (`jeton cluster remove --id {}`). Refused; logged once an hour",
                    caller.map_or_else(|| "?".to_string(), |c| c.to_string()),
                    node.identity.cluster,
                    node.id,
                    node.id,
                    node.id,
                );
            } else {
                tracing::warn!(%peer, %path, claimed = %cluster, "refused a request for another cluster (logged once an hour)");
            }
        }
        return forbidden(&format!("not a member of this cluster: node {} belongs to another cluster", node.id));
    }
    let Some(caller) = caller else {
        tracing::warn!(%peer, %path, "refused a request: the peer's certificate names no node id");
        return forbidden(
            "the certificate names no node id (made by an earlier `jeton cluster cert`): re-issue it with \
             `jeton cluster cert --node-id N`",
        );
    };
    let (access, limit) = match path.as_str() {
        "/raft/append" | "/raft/vote" | "/raft/snapshot" | "/cluster/write" | "/cluster/membership" => {
            (Access::Members, MAX_BODY)
        }
        "/cluster/read-index" | "/cluster/member" | "/cluster/removed" => (Access::Members, SMALL_BODY),
        "/cluster/info" | "/cluster/join" => (Access::Joining, SMALL_BODY),
        "/cluster/standing" => (Access::Anyone, SMALL_BODY),
        _ => return answer(StatusCode::NOT_FOUND, Vec::new()),
    };
    // A caller that is not a member here: what the voters said of it is looked up before `accepts_peer`,
    // which may ask them again.
    let stranger = matches!(access, Access::Members) && !node.is_member(caller) && node.said_stranger(caller);
    if matches!(access, Access::Members) && !node.accepts_peer(caller) {
        let replicating = matches!(path.as_str(), "/raft/append" | "/raft/snapshot");
        if replicating && stranger {
            // The caller leads a cluster that counts this node as a member: say so, not only that it was
            // refused.
            if node.explain_now(&node.identity.cluster, Some(caller)) {
                tracing::warn!(
                    %peer,
                    "node {caller} sends Raft's requests to this node (node {}) as to a member of its cluster, but \
                     the cluster this node knows does not count node {caller} as a member. If this node was meant \
                     to join node {caller}'s cluster, it was started outside it (without --join, a node forms a \
                     cluster of its own): stop it, move its data dir away and start it with --join and a join \
                     token. If node {caller} was removed from this cluster, it is refused until it stops. Logged \
                     once an hour",
                    node.id,
                );
            }
            return forbidden(&format!(
                "node {caller} is not a member of this cluster: node {} does not count it as one (was node {} \
                 started without --join, forming a cluster of its own?)",
                node.id, node.id
            ));
        }
        node.log_refusal(caller, peer, &path);
        return forbidden(&format!("node {caller} is not a member of this cluster"));
    }
    if path.starts_with("/raft/") {
        node.note_contact();
    }
    if req.method() != hyper::Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, Vec::new());
    }
    // The answer goes back in the request's format.
    let binary = is_postcard(req.headers().get(hyper::header::CONTENT_TYPE));
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return answer(StatusCode::PAYLOAD_TOO_LARGE, serde_json::to_vec(&e.to_string()).unwrap_or_default()),
    };
    match path.as_str() {
        "/raft/append" => rpc(binary, &body, |r| node.raft.append_entries(r)).await,
        "/raft/vote" => rpc(binary, &body, |r| node.raft.vote(r)).await,
        "/raft/snapshot" => {
            let r: openraft::raft::InstallSnapshotRequest<crate::TypeConfig> = match decode_body(binary, &body) {
                Ok(r) => r,
                Err(e) => return undecodable(&e),
            };
            // The id becomes a file name here: refused before it reaches the storage (which refuses it too).
            if !crate::storage::is_snapshot_id(&r.meta.snapshot_id) {
                tracing::warn!(%peer, node = caller, "refused a snapshot with the id {:?}", r.meta.snapshot_id);
                return answer(
                    StatusCode::BAD_REQUEST,
                    serde_json::to_vec("not a snapshot id this cluster generates").unwrap_or_default(),
                );
            }
            encoded(&node.raft.install_snapshot(r).await, binary)
        }
        "/cluster/info" => {
            let r: InfoRequest = match decode_body(binary, &body) {
                Ok(r) => r,
                Err(e) => return undecodable(&e),
            };
            if let Err(why) = node.check_joining(caller, r.node_id, r.token.as_ref()) {
                tracing::warn!(%peer, node = r.node_id, "refused a node asking to join: {why}");
                return forbidden(&why);
            }
            tracing::info!(%peer, node = r.node_id, "a node asks to join");
            let info = ClusterInfo {
                cluster: node.identity.cluster.clone(),
                leader: node.leader(),
                secret: node.join_secret.read().unwrap_or_else(|p| p.into_inner()).clone(),
                members: node.members(),
            };
            encoded(&info, binary)
        }
        "/cluster/join" => {
            let r: JoinRequest = match decode_body(binary, &body) {
                Ok(r) => r,
                Err(e) => return undecodable(&e),
            };
            if r.node_id != caller {
                return forbidden(&format!("this certificate is node {caller}'s, not node {}'s", r.node_id));
            }
            tracing::info!(%peer, node = r.node_id, addr = %r.addr, learner = r.learner, "adding a node");
            let join = MembershipChange::Join { id: r.node_id, addr: r.addr, token: r.token, learner: r.learner };
            encoded(&node.change_membership(join).await.map_err(WireError::from), binary)
        }
        "/cluster/write" => {
            rpc(binary, &body, |cmd| async move { node.write_here(cmd).await.map_err(WireError::from) }).await
        }
        "/cluster/membership" => {
            rpc(
                binary,
                &body,
                |change| async move { node.change_membership_here(change).await.map_err(WireError::from) },
            )
            .await
        }
        "/cluster/read-index" => {
            rpc(binary, &body, |()| async move { node.read_index_here().await.map_err(WireError::from) }).await
        }
        "/cluster/member" => rpc(binary, &body, |id: NodeId| async move { node.is_member(id) }).await,
        "/cluster/standing" => rpc(binary, &body, |()| async move { node.standing_of(caller) }).await,
        "/cluster/removed" => {
            rpc(binary, &body, |standing: Standing| async move {
                tracing::info!(%peer, node = caller, "a member says this node was removed: checking");
                node.consider_standing(standing)
            })
            .await
        }
        _ => answer(StatusCode::NOT_FOUND, Vec::new()),
    }
}

/// How often a node explains the same refusal again: a peer keeps retrying, with back-off.
const EXPLAIN_EVERY: Duration = Duration::from_secs(3600);

impl ReplicaNode {
    /// Whether to explain a refusal of `caller`, naming cluster `cluster`, to the log now: once an hour
    /// each (callers hold certificates of the cluster CA, so there are few; past 1,024 at once, none).
    fn explain_now(&self, cluster: &str, caller: Option<NodeId>) -> bool {
        let mut explained = self.explained.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (cluster.to_string(), caller);
        if explained.get(&key).is_some_and(|at| at.elapsed() < EXPLAIN_EVERY) {
            return false;
        }
        if explained.len() >= 1024 {
            explained.retain(|_, at| at.elapsed() < EXPLAIN_EVERY);
            if explained.len() >= 1024 {
                return false;
            }
        }
        explained.insert(key, Instant::now());
        true
    }
}

fn undecodable(e: &str) -> Response<Full<Bytes>> {
    answer(StatusCode::BAD_REQUEST, serde_json::to_vec(&format!("undecodable request: {e}")).unwrap_or_default())
}

/// Decodes the request, runs `f` and encodes what it returns as the answer (errors travel as values).
async fn rpc<Req, Resp, F, Fut>(binary: bool, body: &[u8], f: F) -> Response<Full<Bytes>>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    match decode_body::<Req>(binary, body) {
        Ok(req) => encoded(&f(req).await, binary),
        Err(e) => undecodable(&e),
    }
}
