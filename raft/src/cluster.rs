//! The node-to-node listener: Raft's RPCs and what nodes ask of each other, over mutual TLS.
//!
//! | path | body → answer | who serves it |
//! |---|---|---|
//! | `/raft/append`, `/raft/vote`, `/raft/snapshot` | openraft's RPCs | every node |
//! | `/cluster/info` | [`InfoRequest`] → [`ClusterInfo`] | every node (the only path a node without a cluster name may call) |
//! | `/cluster/join` | [`JoinRequest`] → `Result<(), WireError>` | forwarded to the leader |
//! | `/cluster/write` | `Command` → `Result<CommandResponse, WireError>` | the leader |
//! | `/cluster/membership` | [`MembershipChange`] → `Result<(), WireError>` | the leader |
//! | `/cluster/read-index` | `()` → `Result<Option<u64>, WireError>` | the leader |
//!
//! A peer that fails the TLS handshake (no certificate, or one not signed by the cluster CA) is refused
//! and logged; a request naming another cluster is refused with 403 and logged.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::network::{decode_body, is_postcard, ClusterTls, CLUSTER_HEADER, MAX_BODY, POSTCARD};
use crate::node::{ReplicaNode, WriteError};
use crate::NodeId;

/// Asked by a node about to join.
#[derive(Serialize, Deserialize, Debug)]
pub struct InfoRequest {
    pub node_id: NodeId,
}

/// The answer to [`InfoRequest`].
#[derive(Serialize, Deserialize, Debug)]
pub struct ClusterInfo {
    pub cluster: String,
    pub leader: Option<NodeId>,
    /// The shared key-encryption key (hex), for a node that joins.
    pub secret: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct JoinRequest {
    pub node_id: NodeId,
    /// The joining node's Raft address.
    pub addr: String,
    /// Stay a learner instead of becoming a voter once caught up.
    pub learner: bool,
}

/// A change to the cluster's membership.
// No `#[serde(tag)]` here or in any other type that travels between nodes: postcard (the nodes' wire
// format) cannot read internally tagged or untagged enums.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum MembershipChange {
    /// Adds a non-voting member and waits until it has caught up.
    AddLearner { id: NodeId, addr: String },
    /// Makes a learner a voter.
    Promote { id: NodeId },
    /// Removes a voter or a learner.
    Remove { id: NodeId },
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
}

impl From<WriteError> for WireError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotLeader { .. } => WireError::NotLeader,
            WriteError::Unavailable(m) => WireError::Unavailable(m),
            WriteError::Timeout => WireError::Unavailable("the write was not committed in time".into()),
            WriteError::Invalid(m) => WireError::Invalid(m),
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

/// Accepts node-to-node connections until the task is aborted.
pub(crate) async fn serve(listener: tokio::net::TcpListener, tls: Arc<ClusterTls>, node: ReplicaNode) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("node-to-node listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let node = node.clone();
        tokio::spawn(async move {
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
            let service = hyper::service::service_fn(move |req| {
                let node = node.clone();
                async move { Ok::<_, Infallible>(handle(&node, req, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
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

async fn handle(node: &ReplicaNode, req: Request<Incoming>, peer: std::net::SocketAddr) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let cluster = req.headers().get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if path != "/cluster/info" && cluster != node.identity.cluster {
        tracing::warn!(%peer, %path, claimed = %cluster, "refused a request for another cluster");
        return answer(StatusCode::FORBIDDEN, b"\"not a member of this cluster\"".to_vec());
    }
    if req.method() != hyper::Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, Vec::new());
    }
    // The answer goes back in the request's format.
    let binary = is_postcard(req.headers().get(hyper::header::CONTENT_TYPE));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return answer(StatusCode::PAYLOAD_TOO_LARGE, format!("\"{e}\"").into_bytes()),
    };
    match path.as_str() {
        "/raft/append" => rpc(binary, &body, |r| node.raft.append_entries(r)).await,
        "/raft/vote" => rpc(binary, &body, |r| node.raft.vote(r)).await,
        "/raft/snapshot" => rpc(binary, &body, |r| node.raft.install_snapshot(r)).await,
        "/cluster/info" => {
            rpc(binary, &body, |r: InfoRequest| async move {
                tracing::info!(%peer, node = r.node_id, "a node asks to join");
                ClusterInfo {
                    cluster: node.identity.cluster.clone(),
                    leader: node.leader(),
                    secret: node.join_secret.read().unwrap_or_else(|p| p.into_inner()).clone(),
                }
            })
            .await
        }
        "/cluster/join" => {
            rpc(binary, &body, |r: JoinRequest| async move {
                tracing::info!(%peer, node = r.node_id, addr = %r.addr, learner = r.learner, "adding a node");
                let added = node.change_membership(MembershipChange::AddLearner { id: r.node_id, addr: r.addr }).await;
                let promoted = match added {
                    Ok(()) if !r.learner => node.change_membership(MembershipChange::Promote { id: r.node_id }).await,
                    other => other,
                };
                promoted.map_err(WireError::from)
            })
            .await
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
        _ => answer(StatusCode::NOT_FOUND, Vec::new()),
    }
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
        Err(e) => answer(StatusCode::BAD_REQUEST, format!("\"undecodable request: {e}\"").into_bytes()),
    }
}
