//! Node-to-node transport.
//!
//! A Jeton node today runs as a cluster of one: Raft never has a peer to call, and this factory is never
//! asked for a connection. Multi-node clustering (mutual-TLS transport, join, learners) is the open issue
//! "Jeton cluster"; until then any attempt to reach a peer fails with a clear `Unreachable` error instead of
//! pretending to send.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

use crate::{Node, NodeId, TypeConfig};

/// Creates connections to peers.
#[derive(Clone, Default)]
pub struct Network;

/// A connection to one peer.
pub struct PeerConnection {
    target: NodeId,
}

#[derive(Debug, thiserror::Error)]
#[error("node {0} is not reachable: this build of jeton runs single-node clusters only")]
struct NoTransport(NodeId);

impl PeerConnection {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, Node, E> {
        RPCError::Unreachable(Unreachable::new(&NoTransport(self.target)))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, _node: &Node) -> Self::Network {
        PeerConnection { target }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>> {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}
