//! A running replica: its sled database, its Raft instance, and the write path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError as OpenraftError};
use openraft::{BasicNode, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::network::Network;
use crate::storage::{LogStore, StateMachine};
use crate::store::Store;
use crate::{Command, CommandResponse, NodeId, Raft, RaftError};

/// Written once into a data dir: which cluster and node it belongs to.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Identity {
    pub cluster: String,
    pub node_id: NodeId,
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This node is not the leader (and, in a cluster of one, not yet elected).
    #[error("this node is not the leader{}", leader.map(|l| format!(" (leader: node {l})")).unwrap_or_default())]
    NotLeader { leader: Option<NodeId> },
    /// Raft stopped (storage failure or shutdown).
    #[error("replication stopped: {0}")]
    Fatal(String),
    #[error("write timed out")]
    Timeout,
}

/// One node of the cluster.
#[derive(Clone)]
pub struct ReplicaNode {
    pub id: NodeId,
    pub raft: Raft,
    pub store: Store,
    pub log: LogStore,
    pub identity: Identity,
    db: sled::Db,
}

/// Settings of the Raft instance.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// Entries between snapshots (log compaction).
    pub snapshot_every: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// sled's page cache, in bytes (sled defaults to 1 GiB).
    pub storage_cache_bytes: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            snapshot_every: 10_000,
            heartbeat_ms: 250,
            election_timeout_ms: (1000, 2000),
            storage_cache_bytes: 64 << 20,
        }
    }
}

fn identity_path(dir: &Path) -> PathBuf {
    dir.join("identity.json")
}

impl ReplicaNode {
    /// Opens the node's data dir (creating it on first start) and starts Raft. A pristine node becomes a
    /// cluster of one and waits until it is the leader.
    pub async fn start(dir: &Path, id: NodeId, addr: &str, settings: &RaftSettings) -> Result<ReplicaNode, RaftError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| RaftError::Start(format!("cannot create data dir {}: {e}", dir.display())))?;
        let identity = Self::check_identity(dir, id)?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(settings.storage_cache_bytes)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.raw_os_error() == Some(11) => {
                    RaftError::Start(format!("data dir {} is in use by another jeton process", dir.display()))
                }
                other => RaftError::Start(format!("cannot open data dir {}: {other}", dir.display())),
            })?;
        let store = Store::open(&db)?;
        let log = LogStore::open(&db)?;
        let sm = StateMachine::open(&db, store.clone())?;
        let config = openraft::Config {
            cluster_name: identity.cluster.clone(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_ms.0,
            election_timeout_max: settings.election_timeout_ms.1,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| RaftError::Start(format!("raft config: {e}")))?);
        let raft = Raft::new(id, config, Network, log.clone(), sm)
            .await
            .map_err(|e| RaftError::Start(format!("raft: {e}")))?;
        if !raft.is_initialized().await.map_err(|e| RaftError::Start(e.to_string()))? {
            let mut members = BTreeMap::new();
            members.insert(id, BasicNode { addr: addr.to_string() });
            raft.initialize(members).await.map_err(|e| RaftError::Start(format!("raft initialize: {e}")))?;
        }
        let node = ReplicaNode { id, raft, store, log, identity, db };
        node.wait_for_leader(Duration::from_secs(10)).await?;
        Ok(node)
    }

    /// Reads (or, on first start, writes) the data dir's identity and refuses a dir of another node.
    fn check_identity(dir: &Path, id: NodeId) -> Result<Identity, RaftError> {
        let path = identity_path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let identity: Identity = serde_json::from_slice(&bytes)
                    .map_err(|e| RaftError::Start(format!("{} is not a jeton identity file: {e}", path.display())))?;
                if identity.node_id != id {
                    return Err(RaftError::Start(format!(
                        "data dir {} belongs to node {} of cluster {}, not node {id}; use --node-id {} or another --data-dir",
                        dir.display(),
                        identity.node_id,
                        identity.cluster,
                        identity.node_id
                    )));
                }
                Ok(identity)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.join("db").exists() {
                    return Err(RaftError::Start(format!(
                        "data dir {} has a database but no identity.json: refusing to guess whose it is",
                        dir.display()
                    )));
                }
                let identity = Identity { cluster: uuid::Uuid::new_v4().to_string(), node_id: id };
                let bytes = serde_json::to_vec_pretty(&identity).map_err(|e| RaftError::Start(e.to_string()))?;
                std::fs::write(&path, bytes)
                    .map_err(|e| RaftError::Start(format!("cannot write {}: {e}", path.display())))?;
                Ok(identity)
            }
            Err(e) => Err(RaftError::Start(format!("cannot read {}: {e}", path.display()))),
        }
    }

    async fn wait_for_leader(&self, timeout: Duration) -> Result<(), RaftError> {
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if metrics.borrow().current_leader.is_some() {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(RaftError::Start("raft stopped while electing a leader".into())),
                Err(_) => return Err(RaftError::Start("no leader elected within 10 s".into())),
            }
        }
    }

    /// Writes a command through Raft and returns the state machine's answer once it is applied here.
    pub async fn write(&self, cmd: Command) -> Result<CommandResponse, WriteError> {
        let fut = self.raft.client_write(cmd);
        match tokio::time::timeout(Duration::from_secs(10), fut).await {
            Err(_) => Err(WriteError::Timeout),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(OpenraftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(WriteError::NotLeader { leader: f.leader_id })
            }
            Ok(Err(e)) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    /// The current leader, as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Flushes and stops Raft.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        if let Err(e) = self.db.flush_async().await {
            tracing::warn!("final flush: {e}");
        }
    }
}
