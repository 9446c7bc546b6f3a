//! Jeton's replicated identity state.
//!
//! - [`model`]: the records (rkyv archives in sled, serde in the log and the admin API);
//! - [`command`]: [`Command`], the only way the state changes;
//! - [`store`]: the sled keyspace and the zero-copy reads of the hot paths;
//! - [`storage`]: openraft's log store and state machine on sled;
//! - [`network`]: node-to-node transport (client side), [`cluster`]: the node-to-node listener,
//!   [`admission`]: who may join (join tokens);
//! - [`node`]: starting a node and writing through Raft; `commit`: group commit of concurrent writes;
//!   `membership`: membership changes on the leader (one at a time; voters only once caught up).
//!   [`removal`]: how a node finds out it was removed from the cluster.
//! - `fuzzing` (hidden): the private decoders, for the fuzz targets in `fuzz/`.

// openraft's StorageError is large and imposed by its traits; boxing it at every call would only add noise.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod apply;
pub mod cluster;
pub mod command;
mod commit;
#[doc(hidden)]
pub mod fuzzing;
mod membership;
pub mod model;
pub mod network;
pub mod node;
pub mod removal;
pub mod storage;
pub mod store;

pub use command::{Command, CommandResponse, Outcome, PutMode};
pub use node::{ReplicaNode, WriteError};
pub use store::{Change, Record, Store};

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Entry = openraft::Entry<TypeConfig>;

openraft::declare_raft_types!(
    /// The openraft type configuration of Jeton.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;

/// Errors of the replicated state.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Start(String),
}
