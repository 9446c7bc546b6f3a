//! A running replica: its sled database, its Raft instance, and the write path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::error::RaftError as OpenraftError;
use openraft::{BasicNode, SnapshotPolicy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::admission::{Bootstrap, JoinToken, TokenSecret};
use crate::cluster::{ClusterInfo, ClusterStatus, InfoRequest, JoinRequest, ListenerLimits, Member, WireError};
use crate::commit::GroupCommit;
use crate::network::{CallError, ClusterTls, Network, Peers};
use crate::removal::{Removal, Standing};
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
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// This node is not the leader (and, in a cluster of one, not yet elected).
    #[error("this node is not the leader{}", leader.map(|l| format!(" (leader: node {l})")).unwrap_or_default())]
    NotLeader { leader: Option<NodeId> },
    /// Raft stopped (storage failure or shutdown).
    #[error("replication stopped: {0}")]
    Fatal(String),
    #[error("no quorum: the write was not committed within 10 s (it is applied later if a quorum comes back)")]
    Timeout,
    /// The leader cannot be reached, or it cannot reach a quorum: nothing was written.
    #[error("no quorum: {0}")]
    Unavailable(String),
    /// The command was sent to the leader but no answer came back: it may or may not have been applied.
    #[error("the leader did not answer: {0} (the write may or may not have been applied)")]
    Unknown(String),
    /// The request is not acceptable (membership changes).
    #[error("{0}")]
    Invalid(String),
    /// A node has not caught up with the leader's log: it is not promoted (membership changes).
    #[error("{0}")]
    NotCaughtUp(String),
    /// This node is no longer a member: it writes nothing, and forwards nothing.
    #[error("removed from the cluster")]
    Removed,
}

/// One node of the cluster.
#[derive(Clone)]
pub struct ReplicaNode {
    pub id: NodeId,
    pub raft: Raft,
    pub store: Store,
    pub log: LogStore,
    pub identity: Identity,
    /// Calls to other nodes (forwarded writes, membership changes, read indexes).
    pub peers: Peers,
    /// Given to a node that joins through this one (the key-encryption key: every node must decrypt the
    /// signing keys in the replicated state). Travels only over the mutual-TLS channel.
    pub(crate) join_secret: Arc<std::sync::RwLock<Option<String>>>,
    /// What a node received from the cluster it joined (see `join_secret`).
    pub received_secret: Option<String>,
    /// While this node has no membership of its own (it is joining): the members the cluster named when
    /// it let it in, whose Raft RPCs it accepts.
    join_peers: Arc<BTreeSet<NodeId>>,
    /// Callers this node does not know as members, and what the members it knows said of them (see
    /// [`ReplicaNode::accepts_peer`]).
    vouches: Arc<Mutex<HashMap<NodeId, Vouch>>>,
    /// When a refused caller was last logged: at most once a minute each.
    refusals: Arc<Mutex<HashMap<NodeId, Instant>>>,
    /// Refusals explained to the log (a peer of another cluster, or one that counts this node as its
    /// member), by claimed cluster and caller: when each was last explained, at most once an hour.
    pub(crate) explained: Arc<Mutex<HashMap<Explained, Instant>>>,
    /// Membership changes on this node, when it leads, one at a time (see `crate::membership`).
    pub(crate) membership_turn: Arc<tokio::sync::Mutex<()>>,
    /// Whether this node was removed from the cluster, and how it finds out (see [`crate::removal`]).
    removal: Arc<Removal>,
    db: sled::Db,
    pub(crate) settings: RaftSettings,
    commits: GroupCommit,
    server: Option<Arc<tokio::task::JoinHandle<()>>>,
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
    /// A node has caught up when its last log index is at most this many entries behind the leader's.
    pub catch_up_lag: u64,
    /// How long a joining node or a new learner gets to catch up before its join fails and it stays a
    /// learner; a joining node waits this long, and a minute more, for the leader's answer.
    pub catch_up_timeout: Duration,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            snapshot_every: 10_000,
            heartbeat_ms: 250,
            election_timeout_ms: (1000, 2000),
            storage_cache_bytes: 64 << 20,
            catch_up_lag: 100,
            catch_up_timeout: Duration::from_secs(600),
        }
    }
}

/// A refusal explained to the log: the cluster the caller named, and the caller.
pub(crate) type Explained = (String, Option<NodeId>);

/// What the members a node knows said of a caller it does not know.
#[derive(Debug, Clone, Copy)]
enum Vouch {
    Asking(Instant),
    Member(Instant),
    Stranger(Instant),
}

/// How long a member's word that a caller is a member holds.
const VOUCH_HOLDS: Duration = Duration::from_secs(60);

/// How a node takes part in a cluster.
#[derive(Default)]
pub struct ClusterOptions {
    /// Mutual TLS between nodes. Without it the node can only be a cluster of one.
    pub tls: Option<Arc<ClusterTls>>,
    /// The node-to-node listener (bound by the caller, so a taken port is reported early). Needs `tls`.
    pub listener: Option<tokio::net::TcpListener>,
    /// Join the cluster of the node at this Raft address instead of starting a new cluster.
    pub join: Option<String>,
    /// With `join`: stay a non-voting learner.
    pub learner: bool,
    /// See [`ReplicaNode::join_secret`].
    pub join_secret: Option<String>,
    /// With `join`: the token that proves this node's admission and names the cluster. A node that is a
    /// member already (its data dir says which cluster) needs none.
    pub join_token: Option<JoinToken>,
    /// Without `join`, on the very first start: the name of the new cluster and the admissions of the nodes
    /// that will join it.
    pub bootstrap: Option<Bootstrap>,
    /// Limits of the node-to-node listener.
    pub limits: ListenerLimits,
}

/// Unix seconds (admission expiry).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Whether sled failed to open because another process holds the database's lock. sled 0.34 wraps the
/// `flock` failure (`EWOULDBLOCK`) in an `ErrorKind::Other` error whose text names it, with no OS code.
fn held_by_another_process(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.raw_os_error() == Some(11)
        || e.to_string().contains("could not acquire lock")
}

/// Stops Raft when [`ReplicaNode::start`] fails after starting it. Dropping the last handle instead stops
/// it too, but openraft then logs a spurious "error reporting metrics" as it goes.
struct StopOnError(Option<Raft>);

impl Drop for StopOnError {
    fn drop(&mut self) {
        if let (Some(raft), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
    }
}

/// Opens (or creates) the node's sled database in `dir/db`.
fn open_db(dir: &Path, settings: &RaftSettings) -> Result<sled::Db, RaftError> {
    sled::Config::new()
        .path(dir.join("db"))
        .cache_capacity(settings.storage_cache_bytes)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| match e {
            sled::Error::Io(io) if held_by_another_process(&io) => RaftError::Start(format!(
                "data dir {} is in use by another jeton process (a running node, or an import into it)",
                dir.display()
            )),
            other => RaftError::Start(format!("cannot open data dir {}: {other}", dir.display())),
        })
}

fn identity_path(dir: &Path) -> PathBuf {
    dir.join("identity.json")
}

/// How long a write may wait for a leader to be elected.
const LEADER_WAIT: Duration = Duration::from_secs(10);

impl ReplicaNode {
    /// Opens the node's data dir (creating it on first start) and starts Raft. A pristine node either
    /// becomes a cluster of one or, with `cluster.join`, asks an existing cluster to add it; either way this
    /// returns once the node knows a leader.
    pub async fn start(
        dir: &Path,
        id: NodeId,
        addr: &str,
        settings: &RaftSettings,
        cluster: ClusterOptions,
    ) -> Result<ReplicaNode, RaftError> {
        if let Some(tls) = &cluster.tls {
            match tls.node_id {
                None => {
                    return Err(RaftError::Start(format!(
                        "the cluster certificate names no node id (it was made by an earlier `jeton cluster \
                         cert`): re-issue it with `jeton cluster cert --node-id {id}`"
                    )))
                }
                Some(named) if named != id => {
                    return Err(RaftError::Start(format!(
                        "the cluster certificate is node {named}'s, but this is node {id}: use node {named}'s \
                         settings or this node's certificate"
                    )))
                }
                Some(_) => {}
            }
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| RaftError::Start(format!("cannot create data dir {}: {e}", dir.display())))?;
        let bind_ip = cluster.listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.ip());
        let peers = Peers::new(cluster.tls.clone(), "", bind_ip);
        let existed = identity_path(dir).exists();
        // A data dir that holds Raft state is a member's: Raft picks up where it was, and `join` (a config,
        // flag or JETON_JOIN that stays set for every start, as in deploy/) plays no part any more.
        if existed {
            // Another node's data dir is refused for that first (before its lock is taken).
            Self::check_identity(dir, id, None, None)?;
        }
        let early_db = if existed { Some(open_db(dir, settings)?) } else { None };
        let member = match &early_db {
            Some(db) => LogStore::open(db)?.holds_raft_state()?,
            None => false,
        };
        let join = match &cluster.join {
            Some(target) if member => {
                // A join token of another cluster says this data dir is not the one meant.
                Self::cluster_to_join(dir, id, cluster.join_token.as_ref())?;
                tracing::info!(
                    "this node is a member already (its data dir holds its cluster's state): the join target \
                     {target} is ignored"
                );
                None
            }
            other => other.clone(),
        };
        // A joining node learns the shared secret, and who the members are, from the node it joins.
        let mut received_secret = None;
        let mut join_peers = BTreeSet::new();
        let remote = match &join {
            Some(target) => {
                let expected = Self::cluster_to_join(dir, id, cluster.join_token.as_ref())?;
                peers.set_cluster(&expected);
                let token = cluster.join_token.as_ref().map(|t| t.secret.clone());
                let info = Self::ask_to_join(&peers, target, InfoRequest { node_id: id, token }).await?;
                received_secret = info.secret.clone();
                join_peers = info.members.into_iter().collect();
                Some(info.cluster)
            }
            None => None,
        };
        let new_name = cluster.bootstrap.as_ref().map(|b| b.cluster.as_str());
        let identity = Self::check_identity(dir, id, remote.as_deref(), new_name)?;
        peers.set_cluster(&identity.cluster);
        let removal = Arc::new(Removal::open(dir)?);
        let db = match early_db {
            Some(db) => db,
            None => open_db(dir, settings)?,
        };
        let store = Store::open(&db)?;
        let log = LogStore::open(&db)?;
        let sm = StateMachine::open(&db, store.clone(), dir.join("snapshots"))?;
        let config = openraft::Config {
            cluster_name: identity.cluster.clone(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_ms.0,
            election_timeout_max: settings.election_timeout_ms.1,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
            max_in_snapshot_log_to_keep: 100,
            // Entries can be whole import batches; keep one append request to a sane size.
            max_payload_entries: 64,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| RaftError::Start(format!("raft config: {e}")))?);
        let raft = Raft::new(id, config, Network { peers: peers.clone() }, log.clone(), sm)
            .await
            .map_err(|e| RaftError::Start(format!("raft: {e}")))?;
        let mut stop_on_error = StopOnError(Some(raft.clone()));
        let mut node = ReplicaNode {
            id,
            raft: raft.clone(),
            store,
            log,
            identity,
            peers,
            join_secret: Arc::new(std::sync::RwLock::new(cluster.join_secret)),
            received_secret,
            join_peers: Arc::new(join_peers),
            vouches: Default::default(),
            refusals: Default::default(),
            explained: Default::default(),
            membership_turn: Default::default(),
            removal,
            db,
            settings: settings.clone(),
            commits: GroupCommit::start(raft.clone()),
            server: None,
        };
        let listener = match (cluster.listener, cluster.tls) {
            (Some(listener), Some(tls)) => Some((listener, tls)),
            (Some(_), None) => return Err(RaftError::Start("a node-to-node listener needs cluster TLS".into())),
            _ => None,
        };
        if node.is_removed() {
            // Removed before (see `crate::removal`): no listener, no Raft; the edge answers 503.
            node.raft.shutdown().await.map_err(|e| RaftError::Start(format!("raft: {e}")))?;
            stop_on_error.0 = None;
            return Ok(node);
        }
        let initialized = node.raft.is_initialized().await.map_err(|e| RaftError::Start(e.to_string()))?;
        let creating = !initialized && join.is_none();
        if existed && creating {
            // A node that has started before always has Raft state (at least its own membership). Starting a
            // new cluster here would silently drop whatever the damaged database held.
            node.shutdown().await;
            return Err(RaftError::Start(format!(
                "data dir {} has started before but holds no Raft state: its database is missing or damaged. \
                 Restore it from a backup, or move it away and add this node again with --join",
                dir.display()
            )));
        }
        // A new cluster opens its listener only once its bootstrap admissions are written: a node that comes
        // to join before finds no listener (and tries again), never a cluster that does not know it yet.
        let mut listener = listener;
        if !creating {
            if let Some((l, tls)) = listener.take() {
                node.serve_peers(l, tls, cluster.limits.clone());
            }
        }
        match (&join, initialized) {
            (Some(target), false) => {
                let req = JoinRequest {
                    node_id: id,
                    addr: addr.to_string(),
                    learner: cluster.learner,
                    token: cluster.join_token.as_ref().map(|t| t.secret.clone()),
                };
                // The leader answers once this node has caught up (and is a voter, unless a learner), or
                // once it gave up waiting.
                let wait = settings.catch_up_timeout + crate::membership::ANSWER_MARGIN;
                let answer: Result<(), WireError> = node
                    .peers
                    .call_once(target, "/cluster/join", &req, wait)
                    .await
                    .map_err(|e| RaftError::Start(format!("joining through {target}: {e}")))?;
                answer.map_err(|e| RaftError::Start(format!("joining through {target}: {e}")))?;
                // Added means replicated, not yet applied here: serve only once the state is as new as the
                // leader's was at this point.
                node.linearizable_barrier()
                    .await
                    .map_err(|e| RaftError::Start(format!("catching up after joining: {e}")))?;
            }
            (None, false) => {
                let mut members = BTreeMap::new();
                members.insert(id, BasicNode { addr: addr.to_string() });
                node.raft.initialize(members).await.map_err(|e| RaftError::Start(format!("raft initialize: {e}")))?;
                node.wait_for_leader(Duration::from_secs(30)).await?;
                if let Some(bootstrap) = &cluster.bootstrap {
                    node.admit_bootstrap(bootstrap).await?;
                }
                if let Some((l, tls)) = listener.take() {
                    node.serve_peers(l, tls, cluster.limits.clone());
                }
            }
            // Already a member: Raft picks up where it was.
            (_, true) => node.resume().await,
        }
        node.spawn_standing_watch();
        stop_on_error.0 = None;
        Ok(node)
    }

    /// A member starting again: first asks the members it knows whether it still is one (a node removed
    /// while it was down must not serve its frozen state), then catches up with the leader if one answers
    /// within two election timeouts. Without a leader it serves what it can from its own state: reads,
    /// tokens, introspection; writes are refused with 503 until a quorum is back.
    async fn resume(&self) {
        self.check_standing().await;
        if self.is_removed() {
            return;
        }
        let wait = self.contact_timeout() + Duration::from_secs(1);
        let why = match tokio::time::timeout(wait, self.linearizable_barrier()).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no leader answered within {} ms", wait.as_millis()),
        };
        tracing::info!(
            "serving from this node's own state without a quorum ({why}): reads, tokens and introspection are \
             answered, writes are refused until a leader is reachable; it catches up when one is"
        );
    }

    /// How long without a call from a member (a follower hears from its leader every heartbeat) before
    /// this node counts itself cut off: two election timeouts.
    fn contact_timeout(&self) -> Duration {
        Duration::from_millis(2 * self.settings.election_timeout_ms.1)
    }

    fn serve_peers(&mut self, listener: tokio::net::TcpListener, tls: Arc<ClusterTls>, limits: ListenerLimits) {
        let server = tokio::spawn(crate::cluster::serve(listener, tls, self.clone(), limits));
        self.server = Some(Arc::new(server));
    }

    /// The cluster a joining node names in its requests: the one its data dir belongs to, else the one its
    /// join token names.
    fn cluster_to_join(dir: &Path, id: NodeId, token: Option<&JoinToken>) -> Result<String, RaftError> {
        if let Some(t) = token.filter(|t| t.node_id != id) {
            return Err(RaftError::Start(format!("the join token is for node {}, but this is node {id}", t.node_id)));
        }
        let known = match std::fs::read(identity_path(dir)) {
            Ok(bytes) => Some(serde_json::from_slice::<Identity>(&bytes).map_err(|e| {
                RaftError::Start(format!("{} is not a jeton identity file: {e}", identity_path(dir).display()))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(RaftError::Start(format!("cannot read {}: {e}", identity_path(dir).display()))),
        };
        match (known, token) {
            (Some(identity), Some(t)) if identity.cluster != t.cluster => Err(RaftError::Start(format!(
                "data dir {} belongs to cluster {}, but the join token is for cluster {}; use an empty --data-dir to join",
                dir.display(),
                identity.cluster,
                t.cluster
            ))),
            (Some(identity), _) => Ok(identity.cluster),
            (None, Some(t)) => Ok(t.cluster.clone()),
            (None, None) => Err(RaftError::Start(format!(
                "joining needs a join token (cluster.join_token_file, or JETON_JOIN_TOKEN): an administrator makes \
                 one with `jeton cluster admit --id {id}`"
            ))),
        }
    }

    /// `/cluster/info` on the node to join, waiting up to 30 s for it to listen (it may be starting too).
    async fn ask_to_join(peers: &Peers, target: &str, req: InfoRequest) -> Result<ClusterInfo, RaftError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut waited = false;
        loop {
            match peers.call_once::<_, ClusterInfo>(target, "/cluster/info", &req, Duration::from_secs(10)).await {
                Ok(info) => return Ok(info),
                Err(e @ CallError::NotConnected { .. }) if tokio::time::Instant::now() < deadline => {
                    if !waited {
                        tracing::info!("waiting for {target} to listen: {e}");
                        waited = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(RaftError::Start(format!("cannot join {target}: {e}"))),
            }
        }
    }

    /// Writes the admissions of a new cluster's bootstrap file into its state.
    async fn admit_bootstrap(&self, bootstrap: &Bootstrap) -> Result<(), RaftError> {
        let commands: Vec<Command> = bootstrap
            .admissions_at(unix_now(), self.id)
            .into_iter()
            .map(|admission| Command::AdmitNode { admission })
            .collect();
        if commands.is_empty() {
            return Ok(());
        }
        let count = commands.len();
        let answer = self
            .write(Command::Each { commands })
            .await
            .map_err(|e| RaftError::Start(format!("writing the bootstrap admissions: {e}")))?;
        for refused in answer.outcomes.iter().filter(|o| **o != crate::Outcome::Applied) {
            tracing::warn!("a bootstrap admission was refused: {refused:?}");
        }
        tracing::info!(count, "admitted the nodes the bootstrap file names");
        Ok(())
    }

    /// Reads (or, on first start, writes) the data dir's identity and refuses a dir of another node. `remote`
    /// is the cluster a joining node was let into; `new_name` names a new cluster (else a random UUID).
    fn check_identity(
        dir: &Path,
        id: NodeId,
        remote: Option<&str>,
        new_name: Option<&str>,
    ) -> Result<Identity, RaftError> {
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
                if let Some(cluster) = remote.filter(|c| *c != identity.cluster) {
                    return Err(RaftError::Start(format!(
                        "data dir {} belongs to cluster {}, but the node to join is in cluster {cluster}; use an empty --data-dir to join",
                        dir.display(),
                        identity.cluster
                    )));
                }
                if let Some(name) = new_name.filter(|n| remote.is_none() && *n != identity.cluster) {
                    tracing::info!(
                        "the bootstrap file names cluster {name}, but this data dir belongs to cluster {}: ignored",
                        identity.cluster
                    );
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
                let cluster =
                    remote.or(new_name).map(str::to_string).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let identity = Identity { cluster, node_id: id };
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
                Err(_) => return Err(RaftError::Start(format!("no leader elected within {} s", timeout.as_secs()))),
            }
        }
    }

    /// Writes a command through Raft and returns the state machine's answer once it is applied on the leader.
    /// On a follower the command is forwarded to the leader; the caller sees one answer either way.
    pub async fn write(&self, cmd: Command) -> Result<CommandResponse, WriteError> {
        self.on_leader("/cluster/write", &cmd, || self.write_here(cmd.clone())).await
    }

    /// Proposes on this node, which must be the leader, together with the other writes waiting here
    /// (see [`GroupCommit`]).
    pub(crate) async fn write_here(&self, cmd: Command) -> Result<CommandResponse, WriteError> {
        self.check_quorum()?;
        self.commits.write(cmd).await
    }

    /// Proposes `cmd` on this node, which must be the leader, without waiting for it: returns once Raft has
    /// taken it, with a future of its response. Proposals are applied in the order they were made, so a
    /// caller can keep several in flight (an import into a data dir: the next batch is appended while the
    /// previous one is applied). Unlike [`ReplicaNode::write`], nothing is forwarded and nothing retried.
    pub async fn propose(
        &self,
        cmd: Command,
    ) -> Result<impl std::future::Future<Output = Result<CommandResponse, WriteError>> + Send + 'static, WriteError>
    {
        self.check_quorum()?;
        crate::commit::propose(&self.raft, cmd).await
    }

    /// A leader that has heard from no quorum for longer than an election timeout is most likely cut off:
    /// refuse at once instead of letting the write hang until it times out.
    pub(crate) fn check_quorum(&self) -> Result<(), WriteError> {
        if self.is_removed() {
            return Err(WriteError::Removed);
        }
        // Borrowed, not cloned: this runs on every write.
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow();
        self.leader_quorum(&metrics)
    }

    /// On the leader: whether it has heard from a quorum within two election timeouts.
    fn leader_quorum(&self, metrics: &openraft::RaftMetrics<NodeId, openraft::BasicNode>) -> Result<(), WriteError> {
        let voters = metrics.membership_config.membership().voter_ids().count();
        match metrics.millis_since_quorum_ack {
            Some(ms) if voters > 1 && ms > self.settings.election_timeout_ms.1 * 2 => {
                Err(WriteError::Unavailable(format!("the leader (this node) has not heard from a quorum for {ms} ms")))
            }
            _ => Ok(()),
        }
    }

    /// Whether a write could be committed now, as far as this node can tell: it knows a leader and has
    /// heard from it within two election timeouts — or, being the leader, has heard from a quorum. What
    /// `/api/health?writable` and the `jeton_raft_has_quorum` gauge report.
    pub fn has_quorum(&self) -> bool {
        if self.is_removed() {
            return false;
        }
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow();
        if metrics.running_state.is_err() {
            return false;
        }
        match metrics.current_leader {
            None => false,
            Some(leader) if leader == self.id => self.leader_quorum(&metrics).is_ok(),
            Some(_) => self.removal.since_contact() < self.contact_timeout(),
        }
    }

    /// Whether this node was removed from the cluster (it then answers 503 everywhere; see
    /// [`crate::removal`]).
    pub fn is_removed(&self) -> bool {
        self.removal.is_removed()
    }

    /// A member called this node's Raft listener.
    pub(crate) fn note_contact(&self) {
        self.removal.note_contact();
    }

    /// What this node knows of `caller`'s membership (`/cluster/standing`).
    pub(crate) fn standing_of(&self, caller: NodeId) -> Standing {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow();
        let stored = &metrics.membership_config;
        let log_id = *stored.log_id();
        Standing {
            member: stored.membership().get_node(&caller).is_some(),
            membership_index: log_id.map(|l| l.index),
            committed: log_id.is_some() && log_id <= metrics.last_applied,
        }
    }

    /// Takes a member's word on this node's standing (the leader that removed it, or an answer to
    /// [`ReplicaNode::check_standing`]): removed if it proves it. Returns whether this node is removed.
    pub(crate) fn consider_standing(&self, standing: Standing) -> bool {
        let own = self.raft.metrics().borrow().membership_config.log_id().map(|l| l.index);
        if standing.proves_removal(own) && self.removal.mark(&self.identity.cluster, self.id, standing.membership_index)
        {
            // Nothing more to replicate or vote on: Raft stops (the edge answers 503 from now on).
            let raft = self.raft.clone();
            tokio::spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
        self.is_removed()
    }

    /// Asks the other members this node knows where it stands, and stops serving if one of them proves
    /// it was removed. Members that do not answer within 3 s are not waited for.
    pub(crate) async fn check_standing(&self) {
        let Some(_turn) = self.removal.start_check() else {
            return;
        };
        if self.is_removed() {
            return;
        }
        let others: Vec<String> = {
            let receiver = self.raft.metrics();
            let metrics = receiver.borrow();
            let membership = metrics.membership_config.membership();
            if membership.get_node(&self.id).is_none() {
                // Not a member in its own eyes: a node still catching up after joining (its state may come
                // from before it was added), which a member that lags too would wrongly call removed.
                return;
            }
            membership.nodes().filter(|(id, _)| **id != self.id).map(|(_, n)| n.addr.clone()).collect()
        };
        let mut asks = tokio::task::JoinSet::new();
        for addr in others {
            let peers = self.peers.clone();
            asks.spawn(async move {
                peers.call_once::<(), Standing>(&addr, "/cluster/standing", &(), Duration::from_secs(3)).await
            });
        }
        while let Some(answer) = asks.join_next().await {
            if let Ok(Ok(standing)) = answer {
                if self.consider_standing(standing) {
                    return;
                }
            }
        }
    }

    /// Watches this node's standing until it stops: removed once it applies a membership that leaves it
    /// out after one that named it; and whenever no member has called it for
    /// [`ReplicaNode::contact_timeout`] (cut off, or removed while it was down), it asks the members.
    fn spawn_standing_watch(&self) {
        let node = self.clone();
        let task = tokio::spawn(async move {
            let quiet = node.contact_timeout();
            let mut metrics = node.raft.metrics();
            let mut was_member = false;
            let mut last_check = Instant::now();
            loop {
                let changed = tokio::time::timeout(quiet, metrics.changed()).await;
                if node.is_removed() || matches!(changed, Ok(Err(_))) {
                    return;
                }
                let applied = {
                    let m = metrics.borrow_and_update();
                    let stored = &m.membership_config;
                    let committed = stored.log_id().is_some() && *stored.log_id() <= m.last_applied;
                    committed
                        .then(|| (stored.membership().get_node(&node.id).is_some(), stored.log_id().map(|l| l.index)))
                };
                match applied {
                    Some((true, _)) => was_member = true,
                    Some((false, index)) if was_member => {
                        let standing = Standing { member: false, membership_index: index, committed: true };
                        node.consider_standing(standing);
                        continue;
                    }
                    _ => {}
                }
                let cut_off = node.leader() != Some(node.id) && node.removal.since_contact() >= quiet;
                if cut_off && last_check.elapsed() >= quiet {
                    last_check = Instant::now();
                    node.check_standing().await;
                }
            }
        });
        self.removal.set_watch(task.abort_handle());
    }

    /// Tells node `id`, just removed at `index`, that it is no longer a member: it stops serving at once
    /// rather than when it next asks. Best effort: a node that is down finds out at its next start.
    pub(crate) async fn tell_removed(&self, id: NodeId, addr: &str, index: u64) {
        let standing = Standing { member: false, membership_index: Some(index), committed: true };
        if id == self.id {
            self.consider_standing(standing);
            return;
        }
        match self.peers.call_once::<_, bool>(addr, "/cluster/removed", &standing, Duration::from_secs(3)).await {
            Ok(true) => tracing::info!(node = id, "the removed node stopped serving"),
            Ok(false) => {
                tracing::warn!(node = id, "the removed node did not take its removal: it finds out when it asks")
            }
            Err(e) => tracing::info!(node = id, "could not tell the removed node ({e}): it finds out when it asks"),
        }
    }

    /// Runs `here` if this node is the leader, or sends `body` to `path` on the leader. Retries while a leader
    /// is being elected and when the request provably did not arrive; never re-sends a request that may
    /// have been applied.
    async fn on_leader<B, T, F, Fut>(&self, path: &str, body: &B, here: F) -> Result<T, WriteError>
    where
        B: Serialize,
        T: DeserializeOwned,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, WriteError>>,
    {
        self.on_leader_within(path, body, Duration::from_secs(15), here).await
    }

    /// [`ReplicaNode::on_leader`], giving the leader `answer_within` to answer a forwarded request.
    pub(crate) async fn on_leader_within<B, T, F, Fut>(
        &self,
        path: &str,
        body: &B,
        answer_within: Duration,
        here: F,
    ) -> Result<T, WriteError>
    where
        B: Serialize,
        T: DeserializeOwned,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, WriteError>>,
    {
        if self.is_removed() {
            return Err(WriteError::Removed);
        }
        let mut deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut last_error = String::from("no leader is reachable (this node serves reads from its own state)");
        loop {
            let attempt = tokio::time::Instant::now();
            let leader = self.raft.metrics().borrow().current_leader;
            let retry = match leader {
                Some(l) if l == self.id => match here().await {
                    Err(WriteError::NotLeader { .. }) => true,
                    other => return other,
                },
                Some(l) => match self.leader_addr(l) {
                    None => true,
                    Some(addr) => {
                        let answer: Result<Result<T, WireError>, CallError> =
                            self.peers.call_once(&addr, path, body, answer_within).await;
                        match answer {
                            Ok(Ok(t)) => return Ok(t),
                            Ok(Err(WireError::NotLeader)) => true,
                            Ok(Err(e)) => return Err(e.into()),
                            Err(e @ CallError::NotConnected { .. }) => {
                                last_error = format!("leader node {l}: {e}");
                                true
                            }
                            Err(e @ CallError::Unreachable { .. }) => return Err(WriteError::Unknown(e.to_string())),
                            Err(e @ CallError::Refused { status, .. }) => {
                                if status == 403 {
                                    // The leader does not count this node as a member: it may have been
                                    // removed. Nothing was written.
                                    let node = self.clone();
                                    tokio::spawn(async move { node.check_standing().await });
                                }
                                return Err(WriteError::Unavailable(format!("the leader refused this node: {e}")));
                            }
                        }
                    }
                },
                None => true,
            };
            if attempt.elapsed() > LEADER_WAIT {
                // A long attempt (a membership change waiting for a node to catch up) that met a change of
                // leader: the new leader gets the usual time to be elected.
                deadline = tokio::time::Instant::now() + LEADER_WAIT;
            }
            if retry && tokio::time::Instant::now() < deadline {
                // Let the election (or the new leader's first heartbeat) happen.
                let mut metrics = self.raft.metrics();
                let _ = tokio::time::timeout(Duration::from_millis(200), metrics.changed()).await;
                continue;
            }
            return Err(WriteError::Unavailable(last_error));
        }
    }

    /// The Raft address of a member.
    fn leader_addr(&self, id: NodeId) -> Option<String> {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow();
        metrics.membership_config.membership().get_node(&id).map(|n| n.addr.clone())
    }

    /// Waits until this node has applied everything the leader had committed when asked: a read after this
    /// returns is linearizable. The hot paths never call it.
    pub async fn linearizable_barrier(&self) -> Result<(), WriteError> {
        let index: Option<u64> = self.on_leader("/cluster/read-index", &(), || self.read_index_here()).await?;
        if index.is_some() {
            self.raft
                .wait(Some(LEADER_WAIT))
                .applied_index_at_least(index, "linearizable read")
                .await
                .map_err(|e| WriteError::Unavailable(format!("catching up for a linearizable read: {e}")))?;
        }
        Ok(())
    }

    pub(crate) async fn read_index_here(&self) -> Result<Option<u64>, WriteError> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map(|l| l.index)),
            Err(OpenraftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(WriteError::NotLeader { leader: f.leader_id })
            }
            Err(OpenraftError::APIError(e)) => Err(WriteError::Unavailable(e.to_string())),
            Err(e) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    /// Whether `id` is a voter or a learner of the membership this node knows.
    pub fn is_member(&self, id: NodeId) -> bool {
        self.raft.metrics().borrow().membership_config.membership().get_node(&id).is_some()
    }

    /// The voters and learners of the membership this node knows.
    pub(crate) fn members(&self) -> Vec<NodeId> {
        self.raft.metrics().borrow().membership_config.membership().nodes().map(|(id, _)| *id).collect()
    }

    /// Whether a caller (its certificate's node id) may use Raft's RPCs and the leader's services here: a
    /// member of the membership this node knows; while this node has none yet (it is joining), one of the
    /// members the cluster named when it let it in; or a node that a majority of the voters this node knows
    /// say is a member (this node missed the membership change that added it, e.g. while it was cut off:
    /// that change needed a majority of those voters, so they know of it). That answer is asked in the
    /// background: the caller is refused until it comes, and Raft retries.
    pub(crate) fn accepts_peer(&self, id: NodeId) -> bool {
        let (voters, others): (usize, Vec<String>) = {
            let receiver = self.raft.metrics();
            let metrics = receiver.borrow();
            let membership = metrics.membership_config.membership();
            if membership.get_node(&id).is_some() {
                return true;
            }
            let others = membership
                .voter_ids()
                .filter(|v| *v != self.id)
                .filter_map(|v| membership.get_node(&v).map(|n| n.addr.clone()))
                .collect();
            (membership.voter_ids().count(), others)
        };
        if voters == 0 {
            return self.join_peers.contains(&id);
        }
        let mut vouches = self.vouches.lock().unwrap_or_else(PoisonError::into_inner);
        match vouches.get(&id) {
            Some(Vouch::Member(at)) if at.elapsed() < VOUCH_HOLDS => return true,
            Some(Vouch::Asking(at)) if at.elapsed() < Duration::from_secs(10) => return false,
            Some(Vouch::Stranger(at)) if at.elapsed() < Duration::from_secs(2) => return false,
            _ => {}
        }
        vouches.insert(id, Vouch::Asking(Instant::now()));
        let (peers, vouches) = (self.peers.clone(), self.vouches.clone());
        // A majority of the voters, without this node (which does not know the caller).
        let needed = voters / 2 + 1;
        tokio::spawn(async move {
            let mut asks = tokio::task::JoinSet::new();
            for addr in others {
                let peers = peers.clone();
                asks.spawn(async move {
                    peers.call_once::<NodeId, bool>(&addr, "/cluster/member", &id, Duration::from_secs(3)).await
                });
            }
            let mut yes = 0;
            while let Some(answer) = asks.join_next().await {
                yes += usize::from(matches!(answer, Ok(Ok(true))));
                if yes >= needed {
                    break;
                }
            }
            let vouch = if yes >= needed { Vouch::Member(Instant::now()) } else { Vouch::Stranger(Instant::now()) };
            vouches.lock().unwrap_or_else(PoisonError::into_inner).insert(id, vouch);
        });
        false
    }

    /// Whether the voters this node knows said, when last asked, that `id` is not a member (see
    /// [`ReplicaNode::accepts_peer`]).
    pub(crate) fn said_stranger(&self, id: NodeId) -> bool {
        matches!(self.vouches.lock().unwrap_or_else(PoisonError::into_inner).get(&id), Some(Vouch::Stranger(_)))
    }

    /// Whether a caller may learn the cluster's secret and join: its certificate names the node it asks
    /// for, and that node is a member already or its join token opens its admission.
    pub(crate) fn check_joining(
        &self,
        caller: NodeId,
        asks_for: NodeId,
        token: Option<&TokenSecret>,
    ) -> Result<(), String> {
        if caller != asks_for {
            return Err(format!("this certificate is node {caller}'s, not node {asks_for}'s"));
        }
        if self.is_member(caller) {
            return Ok(());
        }
        self.admission_opens(caller, token)
    }

    /// Whether `token` opens node `id`'s admission in this node's state.
    pub(crate) fn admission_opens(&self, id: NodeId, token: Option<&TokenSecret>) -> Result<(), String> {
        let not_admitted = || {
            format!(
                "node {id} is not admitted to this cluster: an administrator admits it with `jeton cluster admit \
                 --id {id}`, which makes the join token it needs"
            )
        };
        let admission = self
            .store
            .admission(id)
            .map_err(|e| format!("reading the admission of node {id}: {e}"))?
            .ok_or_else(not_admitted)?
            .to_owned()
            .map_err(|e| format!("reading the admission of node {id}: {e}"))?;
        let token = token.ok_or_else(not_admitted)?;
        token.opens(&admission, unix_now()).map_err(|why| format!("node {id}: {why}"))
    }

    /// Logs a refused caller, at most once a minute per node id (a removed node keeps calling).
    pub(crate) fn log_refusal(&self, caller: NodeId, peer: std::net::SocketAddr, path: &str) {
        let mut refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        if refusals.get(&caller).is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
            return;
        }
        refusals.insert(caller, Instant::now());
        tracing::warn!(%peer, node = caller, %path, "refused a node that is not a member (logged once a minute)");
    }

    /// Sets what this node hands to nodes joining through it (see `join_secret`).
    pub fn set_join_secret(&self, secret: &str) {
        *self.join_secret.write().unwrap_or_else(|p| p.into_inner()) = Some(secret.to_string());
    }

    /// What this node knows of the cluster.
    pub fn status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let member =
            |id: NodeId| Member { id, addr: membership.get_node(&id).map(|n| n.addr.clone()).unwrap_or_default() };
        ClusterStatus {
            cluster: self.identity.cluster.clone(),
            node_id: self.id,
            state: format!("{:?}", m.state),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            voters: membership.voter_ids().map(member).collect(),
            learners: membership.learner_ids().map(member).collect(),
            replication: m.replication.map(|r| r.into_iter().map(|(id, l)| (id, l.map(|l| l.index))).collect()),
        }
    }

    /// The current leader, as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Flushes and stops Raft and the node-to-node listener.
    pub async fn shutdown(&self) {
        self.removal.stop_watch();
        if let Some(server) = &self.server {
            server.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        if let Err(e) = self.db.flush_async().await {
            tracing::warn!("final flush: {e}");
        }
    }
}
