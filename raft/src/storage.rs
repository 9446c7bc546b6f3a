//! openraft storage on sled: the log store and the state machine.
//!
//! Trees of the node's sled database:
//! - `raft_log`: log entries by big-endian index ([`encode_entry`]: a format byte, then postcard; entries
//!   written by earlier versions are JSON and still read);
//! - `raft_meta`: vote, committed log id, last purged log id;
//! - `state` (or `state.<generation>`, see [`crate::store`]): the identity state, with the applied log id
//!   and membership written in the same batch as the changes of each applied entry (crash-consistent);
//!
//! Snapshots are files beside the database (see [`SnapshotDir`]).
//!
//! Durability: a log append returns only after sled has flushed it to disk (fsync).

use std::fmt::Debug;
use std::io::{Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};

use crate::apply::Pending;
use crate::command::CommandResponse;
use crate::model::User;
use crate::store::{key, validate_value, Change, Store, Stored};
use crate::{Entry, Node, NodeId, RaftError, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn io_read(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(&e).into()
}
fn io_write(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(&e).into()
}

/// The first byte of a log entry in the binary format. JSON entries (earlier versions) start with `{`.
const ENTRY_POSTCARD: u8 = 1;

/// A log entry as stored: [`ENTRY_POSTCARD`], then the entry in postcard (compact, no field names: a
/// batch of a thousand users is about a third of its JSON and much cheaper to write and read back).
pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(entry, vec![ENTRY_POSTCARD])
}

/// Reads a stored log entry, in either format.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, RaftError> {
    match bytes.split_first() {
        Some((&ENTRY_POSTCARD, rest)) => postcard::from_bytes(rest).map_err(|e| RaftError::Corrupt(e.to_string())),
        _ => serde_json::from_slice(bytes).map_err(|e| RaftError::Corrupt(e.to_string())),
    }
}

/// Only the log id of a stored entry (postcard puts it first, so the payload is not decoded).
fn decode_entry_log_id(bytes: &[u8]) -> Result<LogId<NodeId>, RaftError> {
    match bytes.split_first() {
        Some((&ENTRY_POSTCARD, rest)) => postcard::take_from_bytes::<LogId<NodeId>>(rest)
            .map(|(id, _)| id)
            .map_err(|e| RaftError::Corrupt(e.to_string())),
        _ => decode_entry(bytes).map(|e| e.log_id),
    }
}

/// Reads the applied log id kept in the `state` tree.
pub(crate) fn read_applied(state: &sled::Tree) -> Result<Option<LogId<NodeId>>, RaftError> {
    match state.get(key::META_APPLIED)? {
        Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(|e| RaftError::Corrupt(e.to_string()))?)),
        None => Ok(None),
    }
}

/// The Raft log on sled.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    pub fn open(db: &sled::Db) -> Result<LogStore, RaftError> {
        Ok(LogStore { db: db.clone(), log: db.open_tree("raft_log")?, meta: db.open_tree("raft_meta")? })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, k: &str) -> StorageResult<Option<T>> {
        match self.meta.get(k).map_err(io_read)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(io_read)?)),
            None => Ok(None),
        }
    }

    async fn put_meta<T: serde::Serialize>(&self, k: &str, v: &T) -> StorageResult<()> {
        let bytes = serde_json::to_vec(v).map_err(io_write)?;
        self.meta.insert(k, bytes).map_err(io_write)?;
        self.db.flush_async().await.map_err(io_write)?;
        Ok(())
    }

    /// Whether this log holds any Raft state — a vote or entries, kept or purged — as openraft's
    /// `is_initialized` counts it: the node is a member of a cluster (or was).
    pub fn holds_raft_state(&self) -> Result<bool, RaftError> {
        Ok(self.meta.contains_key("vote")? || self.meta.contains_key("last_purged")? || !self.log.is_empty())
    }

    /// Number of entries currently in the log (metrics, tests).
    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for item in self.log.range(start.to_be_bytes()..) {
            let (k, v) = item.map_err(io_read)?;
            let idx =
                u64::from_be_bytes(k.as_ref().try_into().map_err(|_| io_read(RaftError::Corrupt("log key".into())))?);
            if !range.contains(&idx) {
                break;
            }
            out.push(decode_entry(&v).map_err(|e| StorageError::from(StorageIOError::read_logs(&e)))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_meta("last_purged")?;
        let last = match self.log.last().map_err(io_read)? {
            Some((_, v)) => Some(decode_entry_log_id(&v).map_err(io_read)?),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.put_meta("vote", vote).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.get_meta("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        // The committed id is a hint that lets a restarted node apply up to it at once; no fsync needed.
        let bytes = serde_json::to_vec(&committed).map_err(io_write)?;
        self.meta.insert("committed", bytes).map_err(io_write)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>("committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = encode_entry(&entry).map_err(|e| StorageError::from(StorageIOError::write_logs(&e)))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), bytes);
        }
        self.log.apply_batch(batch).map_err(|e| StorageError::from(StorageIOError::write_logs(&e)))?;
        let flushed = self.db.flush_async().await.map(|_| ()).map_err(std::io::Error::other);
        callback.log_io_completed(flushed);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        for k in self.log.range(log_id.index.to_be_bytes()..).keys() {
            batch.remove(k.map_err(io_read)?);
        }
        self.log.apply_batch(batch).map_err(io_write)?;
        self.db.flush_async().await.map_err(io_write)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.put_meta("last_purged", &log_id).await?;
        let mut batch = sled::Batch::default();
        for k in self.log.range(..=log_id.index.to_be_bytes()).keys() {
            batch.remove(k.map_err(io_read)?);
        }
        self.log.apply_batch(batch).map_err(io_write)?;
        Ok(())
    }
}

/// The state machine: applies committed entries to the `state` tree.
#[derive(Clone)]
pub struct StateMachine {
    store: Store,
    snapshots: Arc<SnapshotDir>,
    /// Applying takes it for writing, building a snapshot for reading: sled has no snapshot isolation,
    /// and a snapshot must hold exactly the state at its applied log id.
    consistency: Arc<std::sync::RwLock<()>>,
}

/// Snapshots live as plain files next to the database, never inside sled: a snapshot holds the whole state
/// (about a gigabyte for a million users), and sled would read such a value whole (and check its CRC) at
/// start-up. Files are streamed: built record by record, sent and received in chunks, installed pair by pair.
///
/// Layout of `<data dir>/snapshots/`: `current.json` (the meta of the current snapshot, replaced atomically),
/// `<snapshot id>.snap` (its data), `incoming-*.snap` (a snapshot being received), `*.tmp` (being written).
pub struct SnapshotDir {
    dir: PathBuf,
    /// The file a snapshot from the leader is being received into.
    receiving: std::sync::Mutex<Option<PathBuf>>,
}

const CURRENT: &str = "current.json";

/// Whether `id` has the form of the snapshot ids this node generates ([`StateMachine::build`]):
/// `T<term>-N<node>-<index>-<nanos>`, or `0-0-<nanos>` for a state nothing was applied to yet. A snapshot
/// id from a peer becomes a file name: anything else (`..`, `/`, any other character) is refused.
pub(crate) fn is_snapshot_id(id: &str) -> bool {
    fn number(s: &str) -> bool {
        !s.is_empty() && s.len() <= 39 && s.bytes().all(|b| b.is_ascii_digit())
    }
    let parts: Vec<&str> = id.split('-').collect();
    match parts.as_slice() {
        [term, node, index, nanos] => {
            term.strip_prefix('T').is_some_and(number)
                && node.strip_prefix('N').is_some_and(number)
                && number(index)
                && number(nanos)
        }
        ["0", "0", nanos] => number(nanos),
        _ => false,
    }
}

fn check_snapshot_id(id: &str) -> std::io::Result<()> {
    if is_snapshot_id(id) {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("refused snapshot id {:?}: not of the form this node generates", id.escape_debug().to_string()),
        ))
    }
}

/// A snapshot is installed in sled batches of at most this many records and bytes, so memory stays
/// bounded whatever the size of the state (see [`StateMachine::install`]). Small on purpose: sled holds
/// an epoch guard for a whole batch, and a snapshot's records come in key order, so every insert of a
/// batch copies the same growing node and none of the copies is freed before the batch ends. Measured
/// with 1,000,000 users (`bench/src/bin/snapinstall.rs`): 1,000 records a batch peaked at 290 MiB,
/// 2,000 at 446 MiB, 4,000 at 2.6 GiB, 10,000 at 4.9–6.3 GiB.
const INSTALL_CHUNK_RECORDS: usize = 1_000;
const INSTALL_CHUNK_BYTES: usize = 4 << 20;

impl SnapshotDir {
    fn open(dir: PathBuf) -> Result<SnapshotDir, RaftError> {
        std::fs::create_dir_all(&dir).map_err(|e| RaftError::Start(format!("cannot create {}: {e}", dir.display())))?;
        let snapshots = SnapshotDir { dir, receiving: Default::default() };
        // Leftovers of an interrupted build or transfer.
        snapshots.remove_except(snapshots.current_meta().ok().flatten().map(|m| m.snapshot_id).as_deref());
        Ok(snapshots)
    }

    /// The data file of a snapshot. Snapshot ids come from the leader too: only ids of the form this
    /// node generates ([`is_snapshot_id`]) become file names.
    fn data_path(&self, snapshot_id: &str) -> std::io::Result<PathBuf> {
        check_snapshot_id(snapshot_id)?;
        Ok(self.dir.join(format!("{snapshot_id}.snap")))
    }

    fn current_meta(&self) -> std::io::Result<Option<SnapshotMeta<NodeId, Node>>> {
        match std::fs::read(self.dir.join(CURRENT)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes `data` (a finished, fsynced file in this dir) the current snapshot and drops the others.
    fn publish(&self, meta: &SnapshotMeta<NodeId, Node>, data: &Path) -> std::io::Result<()> {
        let target = self.data_path(&meta.snapshot_id)?;
        if data != target {
            std::fs::rename(data, &target)?;
        }
        let tmp = self.dir.join("current.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(meta).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(CURRENT))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.remove_except(Some(&meta.snapshot_id));
        Ok(())
    }

    /// Removes every snapshot file but the named one (best effort: a file left behind is only disk space).
    fn remove_except(&self, keep: Option<&str>) {
        let keep = keep.map(|id| format!("{id}.snap"));
        let receiving = self.receiving.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = (name.ends_with(".snap") || name.ends_with(".tmp"))
                && Some(&name) != keep.as_ref()
                && Some(entry.path()) != receiving;
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl StateMachine {
    /// `snapshot_dir` holds the snapshot files (see [`SnapshotDir`]).
    pub fn open(db: &sled::Db, store: Store, snapshot_dir: PathBuf) -> Result<StateMachine, RaftError> {
        // Data dirs of earlier builds kept the snapshot inside sled; Raft builds a new one when due.
        if db.tree_names().iter().any(|n| n.as_ref() == b"snapshot") {
            db.drop_tree("snapshot")?;
        }
        Ok(StateMachine {
            store,
            snapshots: Arc::new(SnapshotDir::open(snapshot_dir)?),
            consistency: Default::default(),
        })
    }

    fn membership(&self, state: &sled::Tree) -> StorageResult<StoredMembership<NodeId, Node>> {
        match state.get(key::META_MEMBERSHIP).map_err(io_read)? {
            Some(v) => serde_json::from_slice(&v).map_err(io_read),
            None => Ok(StoredMembership::default()),
        }
    }

    /// Writes every state record (not the Raft bookkeeping) as length-prefixed key/value pairs.
    fn dump_state(state: &sled::Tree, out: &mut impl Write) -> std::io::Result<()> {
        for item in state.iter() {
            let (k, v) = item.map_err(std::io::Error::other)?;
            // Raft bookkeeping goes in the snapshot's meta; the directory indexes are rebuilt from the users.
            if k.starts_with(key::META) || key::DIRECTORY_INDEXES.iter().any(|p| k.starts_with(p)) {
                continue;
            }
            out.write_all(&(k.len() as u32).to_be_bytes())?;
            out.write_all(&k)?;
            out.write_all(&(v.len() as u32).to_be_bytes())?;
            out.write_all(&v)?;
        }
        Ok(())
    }

    /// Builds a snapshot file of the state at the applied log id; returns its meta and path.
    fn build(&self) -> StorageResult<(SnapshotMeta<NodeId, Node>, PathBuf)> {
        let _consistent = self.consistency.read().unwrap_or_else(|p| p.into_inner());
        let state = self.store.state();
        let applied = read_applied(&state).map_err(io_read)?;
        let membership = self.membership(&state)?;
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, now_nanos()),
            None => format!("0-0-{}", now_nanos()),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        let tmp = self.snapshots.dir.join(format!("{}.tmp", meta.snapshot_id));
        let write = || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
            Self::dump_state(&state, &mut out)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(StorageIOError::write_snapshot(Some(meta.signature()), &e).into());
        }
        Ok((meta, tmp))
    }
}

/// Reads length-prefixed key/value pairs from snapshot data, validating every record archive, and hands each
/// to `each`. Reads at most one record at a time into memory.
pub(crate) fn read_snapshot(
    data: &mut impl Read,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<(), RaftError>,
) -> Result<u64, RaftError> {
    fn take(data: &mut impl Read, buf: &mut Vec<u8>, first: bool) -> Result<bool, RaftError> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match data.read(&mut len[got..]) {
                Ok(0) if first && got == 0 => return Ok(false),
                Ok(0) => return Err(RaftError::Corrupt("truncated snapshot".into())),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RaftError::Corrupt(format!("reading snapshot: {e}"))),
            }
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_SNAPSHOT_ITEM {
            return Err(RaftError::Corrupt(format!("snapshot item of {len} bytes")));
        }
        buf.resize(len, 0);
        data.read_exact(buf).map_err(|_| RaftError::Corrupt("truncated snapshot".into()))?;
        Ok(true)
    }
    let (mut k, mut v) = (Vec::new(), Vec::new());
    let mut count = 0;
    while take(data, &mut k, true)? {
        take(data, &mut v, false)?;
        if k.starts_with(key::META) {
            return Err(RaftError::Corrupt("snapshot contains raft bookkeeping".into()));
        }
        validate_value(&k, &v)?;
        each(&k, &v)?;
        count += 1;
    }
    Ok(count)
}

/// No record comes near this; a larger length prefix is corruption, not something to allocate.
const MAX_SNAPSHOT_ITEM: usize = 64 << 20;

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let sm = self.clone();
        // Reading the whole state and writing the file is blocking work.
        let (meta, path) = tokio::task::spawn_blocking(move || {
            let (meta, tmp) = sm.build()?;
            sm.snapshots
                .publish(&meta, &tmp)
                .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
            let path =
                sm.snapshots.data_path(&meta.snapshot_id).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            Ok::<_, StorageError<NodeId>>((meta, path))
        })
        .await
        .map_err(io_read)??;
        let file = tokio::fs::File::open(&path).await.map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        let state = self.store.state();
        Ok((read_applied(&state).map_err(io_read)?, self.membership(&state)?))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let consistency = self.consistency.clone();
        let _consistent = consistency.write().unwrap_or_else(|p| p.into_inner());
        let state = self.store.state();
        let mut pending = Pending::new(&state);
        let mut replies = Vec::new();
        let mut last = None;
        for entry in entries {
            last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => replies.push(CommandResponse::default()),
                EntryPayload::Normal(crate::Command::Each { commands }) => {
                    let outcomes =
                        pending.apply_each(&commands).map_err(|e| StorageIOError::apply(entry.log_id, &e))?;
                    replies.push(CommandResponse { outcome: crate::Outcome::Applied, outcomes });
                }
                EntryPayload::Normal(cmd) => {
                    let outcome = pending.apply(&cmd).map_err(|e| StorageIOError::apply(entry.log_id, &e))?;
                    if outcome != crate::Outcome::Applied {
                        tracing::debug!(kind = cmd.kind(), ?outcome, "command refused");
                    }
                    replies.push(CommandResponse { outcome, outcomes: Vec::new() });
                }
                EntryPayload::Membership(m) => {
                    pending.membership_changed(&m).map_err(|e| StorageIOError::apply(entry.log_id, &e))?;
                    let stored = StoredMembership::new(Some(entry.log_id), m);
                    pending.put_meta(key::META_MEMBERSHIP, serde_json::to_vec(&stored).map_err(io_write)?);
                    replies.push(CommandResponse::default());
                }
            }
        }
        if let Some(last) = last {
            pending.put_meta(key::META_APPLIED, serde_json::to_vec(&last).map_err(io_write)?);
        }
        let (batch, changes) = pending.into_batch();
        state.apply_batch(batch).map_err(io_write)?;
        for c in changes {
            self.store.broadcast(c);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<tokio::fs::File>> {
        let path = self.snapshots.dir.join(format!("incoming-{}.snap", now_nanos()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let previous = self.snapshots.receiving.lock().unwrap_or_else(|p| p.into_inner()).replace(path);
        if let Some(previous) = previous {
            let _ = std::fs::remove_file(previous);
        }
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        mut snapshot: Box<tokio::fs::File>,
    ) -> StorageResult<()> {
        let received = self.snapshots.receiving.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Err(e) = check_snapshot_id(&meta.snapshot_id) {
            if let Some(path) = received {
                let _ = std::fs::remove_file(path);
            }
            tracing::warn!("{e}");
            return Err(StorageIOError::read_snapshot(None, &e).into());
        }
        tokio::io::AsyncWriteExt::flush(&mut snapshot).await.map_err(io_write)?;
        let mut file = snapshot.into_std().await;
        let sm = self.clone();
        let meta_owned = meta.clone();
        let chunk = (INSTALL_CHUNK_RECORDS, INSTALL_CHUNK_BYTES);
        let installed =
            tokio::task::spawn_blocking(move || sm.install(&meta_owned, &mut file, received.as_deref(), chunk))
                .await
                .map_err(io_write)?;
        let batches = installed.map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(snapshot = %meta.snapshot_id, batches, "installed a snapshot");
        self.store.db.flush_async().await.map_err(io_write)?;
        self.store.broadcast(Change::Everything);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let Some(meta) = self.snapshots.current_meta().map_err(|e| StorageIOError::read_snapshot(None, &e))? else {
            return Ok(None);
        };
        let path = self.snapshots.data_path(&meta.snapshot_id).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        match tokio::fs::File::open(path).await {
            Ok(file) => Ok(Some(Snapshot { meta, snapshot: Box::new(file) })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageIOError::read_snapshot(Some(meta.signature()), &e).into()),
        }
    }
}

impl StateMachine {
    /// Replaces the whole state with a snapshot's. The new state is written into a fresh tree in bounded
    /// batches ([`INSTALL_CHUNK_RECORDS`], [`INSTALL_CHUNK_BYTES`]) while the current state keeps serving,
    /// then becomes the live state in one step ([`Store::switch_state`]): a snapshot that fails validation
    /// half-way, or a crash during the install, leaves the previous state in place, whole (the fresh tree
    /// is dropped, at the latest at the next start). `received` is the snapshot file's path when it came
    /// from the leader (it becomes the current snapshot). Returns the number of batches written.
    fn install(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        file: &mut std::fs::File,
        received: Option<&Path>,
        chunk: (usize, usize),
    ) -> Result<usize, std::io::Error> {
        use std::io::Seek;
        check_snapshot_id(&meta.snapshot_id)?;
        file.sync_all()?;
        file.seek(std::io::SeekFrom::Start(0))?;
        let next = self.store.new_state_tree().map_err(std::io::Error::other)?;
        let mut batches = 0;
        let written = (|| -> Result<(), RaftError> {
            let mut reader = std::io::BufReader::with_capacity(1 << 20, &mut *file);
            let (mut batch, mut records, mut bytes) = (sled::Batch::default(), 0, 0);
            read_snapshot(&mut reader, |k, v| {
                // Directory indexes are derived from the users (a snapshot from an older node may lack them,
                // and none may carry entries its users do not justify).
                if key::DIRECTORY_INDEXES.iter().any(|p| k.starts_with(p)) {
                    return Ok(());
                }
                if k.starts_with(key::USER) {
                    for (ik, primary) in crate::store::directory_index_entries(&User::decode(v)?) {
                        records += 1;
                        bytes += ik.len() + primary.len();
                        batch.insert(ik, primary);
                    }
                }
                batch.insert(k, v);
                records += 1;
                bytes += k.len() + v.len();
                if records >= chunk.0 || bytes >= chunk.1 {
                    next.apply_batch(std::mem::take(&mut batch))?;
                    batches += 1;
                    (records, bytes) = (0, 0);
                }
                Ok(())
            })?;
            let corrupt = |e: serde_json::Error| RaftError::Corrupt(e.to_string());
            batch.insert(key::META_APPLIED, serde_json::to_vec(&meta.last_log_id).map_err(corrupt)?);
            batch.insert(key::META_MEMBERSHIP, serde_json::to_vec(&meta.last_membership).map_err(corrupt)?);
            batch.insert(key::META_DIRECTORY_INDEX, b"1".to_vec());
            batch.insert(key::META_RECORD_FORMAT, crate::store::RECORD_FORMAT.to_vec());
            next.apply_batch(batch)?;
            batches += 1;
            Ok(())
        })();
        if let Err(e) = written {
            self.store.discard_state_tree(next);
            return Err(std::io::Error::other(e));
        }
        {
            // No entry is applied to the old tree after this: apply takes the same lock.
            let _consistent = self.consistency.write().unwrap_or_else(|p| p.into_inner());
            self.store.switch_state(next).map_err(std::io::Error::other)?;
        }
        match received {
            Some(path) => self.snapshots.publish(meta, path)?,
            None => {
                // Installed from a file that is not ours to keep: keep a copy as the current snapshot.
                let copy = self.snapshots.dir.join(format!("{}.tmp", meta.snapshot_id));
                file.seek(std::io::SeekFrom::Start(0))?;
                let mut out = std::fs::File::create(&copy)?;
                std::io::copy(file, &mut out)?;
                out.sync_all()?;
                self.snapshots.publish(meta, &copy)?;
            }
        }
        Ok(batches)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use openraft::{CommittedLeaderId, Entry as RaftEntry};

    use super::*;
    use crate::command::{Command, Outcome, PutMode};
    use crate::model::{
        AccountingEvent, AccountingStatus, Application, Group, NtCredential, Organization, RefreshState, RefreshToken,
        Revocation, User,
    };

    fn entry(index: u64, cmd: Command) -> Entry {
        RaftEntry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(cmd) }
    }

    fn machine(dir: &std::path::Path) -> (StateMachine, Store) {
        let db = sled::Config::new().path(dir.join("db")).temporary(false).open().unwrap();
        let store = Store::open(&db).unwrap();
        (StateMachine::open(&db, store.clone(), dir.join("snapshots")).unwrap(), store)
    }

    pub(crate) fn org(name: &str) -> Command {
        Command::PutOrganization {
            org: Organization { name: name.into(), ..Default::default() },
            mode: PutMode::Create,
        }
    }

    pub(crate) fn user(owner: &str, name: &str, id: &str) -> Command {
        Command::PutUser {
            user: User {
                owner: owner.into(),
                name: name.into(),
                id: id.into(),
                email: format!("{name}@x.example"),
                ..Default::default()
            },
            mode: PutMode::Create,
        }
    }

    #[tokio::test]
    async fn applies_commands_with_indexes_and_the_applied_id_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, store) = machine(dir.path());
        let replies = sm
            .apply(vec![
                entry(1, org("acme")),
                entry(2, user("acme", "alice", "u-1")),
                entry(3, user("acme", "alice", "u-2")),
            ])
            .await
            .unwrap();
        assert_eq!(replies[0].outcome, Outcome::Applied);
        assert_eq!(replies[1].outcome, Outcome::Applied);
        assert!(matches!(replies[2].outcome, Outcome::Conflict(_)), "{:?}", replies[2]);
        assert_eq!(store.applied_index().unwrap(), Some(3));
        let alice = store.user("acme", "alice").unwrap().unwrap();
        assert_eq!(alice.get().id.as_str(), "u-1");
        assert_eq!(store.user_by_id("u-1").unwrap().unwrap().get().name.as_str(), "alice");
        assert_eq!(store.user_by_email("acme", "ALICE@x.example").unwrap().unwrap().get().name.as_str(), "alice");
        assert!(store.user_by_id("u-2").unwrap().is_none(), "the refused command left nothing behind");
        // A user of an unknown organization is refused.
        let r = sm.apply(vec![entry(4, user("nowhere", "bob", "u-3"))]).await.unwrap();
        assert!(matches!(r[0].outcome, Outcome::Invalid(_)));
    }

    #[tokio::test]
    async fn a_failing_batch_is_undone_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, store) = machine(dir.path());
        sm.apply(vec![entry(1, org("acme"))]).await.unwrap();
        let batch = Command::Batch { commands: vec![user("acme", "carol", "u-c"), user("acme", "carol", "u-d")] };
        let r = sm.apply(vec![entry(2, batch)]).await.unwrap();
        assert!(matches!(r[0].outcome, Outcome::Conflict(_)));
        assert!(store.user("acme", "carol").unwrap().is_none(), "half of a batch must not stay applied");
        assert_eq!(store.applied_index().unwrap(), Some(2), "the entry still counts as applied");
    }

    #[tokio::test]
    async fn each_judges_every_command_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, store) = machine(dir.path());
        sm.apply(vec![entry(1, org("acme"))]).await.unwrap();
        let each = Command::Each {
            commands: vec![
                user("acme", "dave", "u-d"),
                user("nowhere", "erin", "u-e"),
                user("acme", "dave", "u-x"),
                user("acme", "frank", "u-f"),
            ],
        };
        let r = sm.apply(vec![entry(2, each)]).await.unwrap();
        assert_eq!(r[0].outcome, Outcome::Applied);
        assert_eq!(r[0].outcomes.len(), 4);
        assert_eq!(r[0].outcomes[0], Outcome::Applied);
        assert!(matches!(r[0].outcomes[1], Outcome::Invalid(_)), "{:?}", r[0].outcomes);
        assert!(matches!(r[0].outcomes[2], Outcome::Conflict(_)), "{:?}", r[0].outcomes);
        assert_eq!(r[0].outcomes[3], Outcome::Applied);
        assert_eq!(store.user("acme", "dave").unwrap().unwrap().get().id.as_str(), "u-d");
        assert!(store.user_by_id("u-x").unwrap().is_none(), "a refused command leaves nothing behind");
        assert!(store.user("acme", "frank").unwrap().is_some());
        assert!(store.user("nowhere", "erin").unwrap().is_none());
    }

    #[test]
    fn log_entries_are_binary_and_json_entries_still_read() {
        let e = entry(7, user("acme", "gina", "u-g"));
        let bytes = encode_entry(&e).unwrap();
        assert_eq!(bytes[0], ENTRY_POSTCARD);
        assert_eq!(decode_entry(&bytes).unwrap(), e);
        assert_eq!(decode_entry_log_id(&bytes).unwrap(), e.log_id);
        let json = serde_json::to_vec(&e).unwrap();
        assert_eq!(decode_entry(&json).unwrap(), e, "entries written by earlier versions");
        assert_eq!(decode_entry_log_id(&json).unwrap(), e.log_id);
        assert!(decode_entry(&bytes[..bytes.len() / 2]).is_err(), "a torn entry is an error, not a panic");
    }

    #[tokio::test]
    async fn refresh_reuse_revokes_the_family_and_its_access_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, store) = machine(dir.path());
        let t = |id: &str, access: &str| RefreshToken {
            id: id.into(),
            family: "f1".into(),
            application: "app".into(),
            user: "acme/alice".into(),
            expires_at: 2_000,
            access_jti: access.into(),
            access_expires_at: 1_500,
            ..Default::default()
        };
        sm.apply(vec![entry(1, Command::IssueRefreshToken { token: t("r1", "a1") })]).await.unwrap();
        let r = sm
            .apply(vec![entry(2, Command::RotateRefreshToken { old_id: "r1".into(), new: t("r2", "a2"), now: 100 })])
            .await
            .unwrap();
        assert_eq!(r[0].outcome, Outcome::Applied);
        let r = sm
            .apply(vec![entry(3, Command::RotateRefreshToken { old_id: "r1".into(), new: t("r3", "a3"), now: 101 })])
            .await
            .unwrap();
        assert_eq!(r[0].outcome, Outcome::Reused);
        assert!(store.refresh_token("r3").unwrap().is_none());
        for id in ["r1", "r2"] {
            let rec = store.refresh_token(id).unwrap().unwrap().to_owned().unwrap();
            assert_eq!(rec.state, RefreshState::Revoked, "{id}");
        }
        assert!(store.is_revoked("a1").unwrap() && store.is_revoked("a2").unwrap());
        // Pruning after expiry drops revocations and refresh tokens.
        sm.apply(vec![entry(4, Command::Prune { now: 3_000 })]).await.unwrap();
        assert!(!store.is_revoked("a1").unwrap());
        assert!(store.refresh_token("r1").unwrap().is_none());
    }

    /// Failed sign-ins are state like any other: counted by the state machine, locked at the limit, reset
    /// by a success, pruned once forgotten, and still there after the database is reopened.
    #[tokio::test]
    async fn signin_failures_count_lock_reset_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let fail =
            |now: i64| Command::RecordSigninFailure { account: "user:u1".into(), now, limit: 2, frozen_secs: 60 };
        for cmd in [fail(100), Command::ResetSigninFailures { account: "user:u1".into() }] {
            let e = entry(1, cmd);
            assert_eq!(decode_entry(&encode_entry(&e).unwrap()).unwrap().payload, e.payload, "log entry round trip");
        }
        {
            let (mut sm, store) = machine(dir.path());
            let r = sm.apply(vec![entry(1, fail(100)), entry(2, fail(110))]).await.unwrap();
            assert_eq!((&r[0].outcome, &r[1].outcome), (&Outcome::Applied, &Outcome::Applied));
            let rec = store.signin_failures("user:u1").unwrap().unwrap().to_owned().unwrap();
            assert_eq!((rec.count, rec.locked_until), (2, 170));
            let r = sm.apply(vec![entry(3, Command::ResetSigninFailures { account: "user:u1".into() })]).await.unwrap();
            assert_eq!(r[0].outcome, Outcome::Applied);
            assert!(store.signin_failures("user:u1").unwrap().is_none());
            sm.apply(vec![entry(4, fail(200))]).await.unwrap();
            let bad = Command::RecordSigninFailure { account: String::new(), now: 1, limit: 1, frozen_secs: 1 };
            assert!(matches!(sm.apply(vec![entry(5, bad)]).await.unwrap()[0].outcome, Outcome::Invalid(_)));
        }
        let (mut sm, store) = machine(dir.path());
        assert_eq!(store.signin_failures("user:u1").unwrap().unwrap().get().count, 1, "kept across a reopen");
        sm.apply(vec![entry(6, Command::Prune { now: 259 })]).await.unwrap();
        assert!(store.signin_failures("user:u1").unwrap().is_some(), "not forgotten yet");
        sm.apply(vec![entry(7, Command::Prune { now: 260 })]).await.unwrap();
        assert!(store.signin_failures("user:u1").unwrap().is_none(), "pruned once forgotten");
    }

    #[tokio::test]
    async fn tiny_records_stored_inline_by_sled_read_back() {
        // sled keeps values of 22 bytes or less inline and unaligned; rkyv's `unaligned` format reads them.
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, store) = machine(dir.path());
        sm.apply(vec![
            entry(1, org("o")),
            entry(
                2,
                Command::PutGroup {
                    group: Group { owner: "o".into(), name: "g".into(), ..Default::default() },
                    mode: PutMode::Create,
                },
            ),
        ])
        .await
        .unwrap();
        sm.apply(vec![entry(
            3,
            Command::Revoke { revocation: Revocation { jti: "j".into(), expires_at: 9, revoked_at: 1 } },
        )])
        .await
        .unwrap();
        let raw = store.state().get(crate::store::key::revocation("j")).unwrap().unwrap();
        assert!(raw.len() <= 64, "a small archive: {} bytes", raw.len());
        let rev = store.revocation("j").unwrap().unwrap();
        assert_eq!(rev.get().expires_at.to_native(), 9);
        assert_eq!(store.group("o", "g").unwrap().unwrap().get().name.as_str(), "g");
        assert_eq!(store.organization("o").unwrap().unwrap().get().name.as_str(), "o");
    }

    /// A PutNtCredential for the user a PutUser command writes, bound to that user's password.
    pub(crate) fn nt_credential_of(put_user: &Command, sealed: &[u8]) -> Command {
        let Command::PutUser { user, .. } = put_user else { panic!("not a PutUser: {put_user:?}") };
        Command::PutNtCredential {
            credential: NtCredential {
                user_id: user.id.clone(),
                sealed: sealed.to_vec(),
                for_password: NtCredential::binding(user),
            },
        }
    }

    fn with_password(cmd: Command, password: &str, mode: PutMode) -> Command {
        let Command::PutUser { mut user, .. } = cmd else { panic!("not a PutUser") };
        (user.password, user.password_type) = (password.into(), "bcrypt".into());
        Command::PutUser { user, mode }
    }

    /// NT-hash credentials are stored only for an existing user and their current password, replaced by a
    /// newer one, kept while the password stays, and dropped when it changes, when the user changes id, is
    /// soft-deleted or deleted, or when their organization is deleted.
    #[tokio::test]
    async fn nt_credentials_follow_their_user_and_password() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, store) = machine(dir.path());
        let alice = with_password(user("acme", "alice", "u-1"), "$2a$10$first", PutMode::Create);
        let bob = with_password(user("acme", "bob", "u-2"), "$2a$10$bob", PutMode::Create);
        let mut n = 0;
        macro_rules! apply {
            ($cmd:expr) => {{
                n += 1;
                let e = entry(n, $cmd);
                // Every command here also travels through the log.
                assert_eq!(decode_entry(&encode_entry(&e).unwrap()).unwrap(), e);
                sm.apply(vec![e]).await.unwrap().remove(0).outcome
            }};
        }
        for cmd in [org("acme"), org("other"), alice.clone(), bob.clone()] {
            assert_eq!(apply!(cmd), Outcome::Applied);
        }
        let stored = |id: &str| store.nt_credential(id).unwrap().map(|r| r.to_owned().unwrap());
        assert_eq!(apply!(nt_credential_of(&alice, &[1; 44])), Outcome::Applied);
        let c = stored("u-1").expect("stored");
        assert_eq!((c.user_id.as_str(), c.sealed.as_slice()), ("u-1", &[1u8; 44][..]));

        // Refused: no such user, a binding of another password, malformed.
        let ghost = with_password(user("acme", "ghost", "u-9"), "$2a$10$x", PutMode::Create);
        assert!(matches!(apply!(nt_credential_of(&ghost, &[1; 44])), Outcome::NotFound(_)));
        let stale = with_password(alice.clone(), "$2a$10$other", PutMode::Update);
        assert!(matches!(apply!(nt_credential_of(&stale, &[2; 44])), Outcome::Conflict(_)));
        let bad = |f: &dyn Fn(&mut NtCredential)| {
            let mut cmd = nt_credential_of(&bob, &[3; 44]);
            if let Command::PutNtCredential { credential } = &mut cmd {
                f(credential);
            }
            cmd
        };
        for cmd in [
            bad(&|c| c.user_id.clear()),
            bad(&|c| c.user_id = "u-2\0x".into()),
            bad(&|c| c.sealed.clear()),
            bad(&|c| c.sealed = vec![0; crate::model::MAX_SEALED_NT_CREDENTIAL + 1]),
        ] {
            assert!(matches!(apply!(cmd), Outcome::Invalid(_)));
        }
        assert!(stored("u-2").is_none() && stored("u-9").is_none());
        assert_eq!(stored("u-1").expect("kept").sealed, vec![1; 44], "refusals change nothing");

        // A newer credential replaces the older; a change to anything but the password keeps it.
        assert_eq!(apply!(nt_credential_of(&alice, &[4; 44])), Outcome::Applied);
        let Command::PutUser { user: mut renamed, .. } = alice.clone() else { unreachable!() };
        renamed.display_name = "Alice A.".into();
        let renamed = Command::PutUser { user: renamed, mode: PutMode::Update };
        assert_eq!(apply!(renamed), Outcome::Applied);
        assert_eq!(stored("u-1").expect("kept").sealed, vec![4; 44]);
        // A new password drops it, and the stale one cannot come back.
        assert_eq!(apply!(stale.clone()), Outcome::Applied);
        assert!(stored("u-1").is_none(), "dropped with the password it was derived under");
        assert!(matches!(apply!(nt_credential_of(&alice, &[5; 44])), Outcome::Conflict(_)));
        assert_eq!(apply!(nt_credential_of(&stale, &[6; 44])), Outcome::Applied);
        // A soft deletion drops it too, and a deleted user gets none.
        let Command::PutUser { user: mut gone, .. } = stale.clone() else { unreachable!() };
        gone.is_deleted = true;
        let gone = Command::PutUser { user: gone, mode: PutMode::Update };
        assert_eq!(apply!(gone.clone()), Outcome::Applied);
        assert!(stored("u-1").is_none());
        assert!(matches!(apply!(nt_credential_of(&gone, &[7; 44])), Outcome::Invalid(_)));
        // Back again, then deleted for good.
        assert_eq!(apply!(stale.clone()), Outcome::Applied);
        assert_eq!(apply!(nt_credential_of(&stale, &[8; 44])), Outcome::Applied);
        let delete = Command::DeleteUser { owner: "acme".into(), name: "alice".into() };
        assert_eq!(apply!(delete), Outcome::Applied);
        assert!(stored("u-1").is_none(), "deleted with the user");

        // bob under a new id (an upsert by name): the old id's credential goes.
        assert_eq!(apply!(nt_credential_of(&bob, &[9; 44])), Outcome::Applied);
        let Command::PutUser { user: mut new_id, .. } = bob.clone() else { unreachable!() };
        new_id.id = "u-3".into();
        let new_id = Command::PutUser { user: new_id, mode: PutMode::Upsert };
        assert_eq!(apply!(new_id.clone()), Outcome::Applied);
        assert!(stored("u-2").is_none());
        // Deleting the organization removes its users' credentials.
        assert_eq!(apply!(nt_credential_of(&new_id, &[10; 44])), Outcome::Applied);
        assert_eq!(store.count(crate::store::key::NT_CREDENTIAL), 1);
        assert_eq!(apply!(Command::DeleteOrganization { name: "acme".into() }), Outcome::Applied);
        assert_eq!(store.count(crate::store::key::NT_CREDENTIAL), 0);
    }

    pub(crate) fn accounting(status: AccountingStatus, nas: &str, id: &str, user: &str, at: i64) -> Command {
        Command::RecordAccounting {
            event: AccountingEvent {
                status,
                event_time: at,
                nas_client: nas.into(),
                acct_session_id: id.into(),
                organization: "acme".into(),
                user_name: user.into(),
                session_time: 10,
                input_octets: AccountingEvent::octets(7, 1),
                ..Default::default()
            },
        }
    }

    fn ids(page: &crate::store::AccountingPage) -> Vec<String> {
        page.sessions.iter().map(|r| r.get().acct_session_id.as_str().to_string()).collect()
    }

    /// Sessions are keyed by NAS client and session id, listed per organization and per user newest first
    /// with paging, closed by their NAS's restart, pruned by age with their index entries, and removed with
    /// their organization.
    #[tokio::test]
    async fn accounting_sessions_are_recorded_listed_closed_and_pruned() {
        use AccountingStatus::*;
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, store) = machine(dir.path());
        let mut commands = vec![org("acme"), org("other")];
        commands.push(accounting(Start, "nas-1", "a", "alice", 100));
        commands.push(accounting(Start, "nas-1", "b", "bob", 200));
        commands.push(accounting(Start, "nas-2", "a", "alice", 300));
        commands.push(accounting(InterimUpdate, "nas-1", "a", "alice", 400));
        commands.push(accounting(Stop, "nas-1", "b", "bob", 500));
        let entries: Vec<Entry> = commands.into_iter().enumerate().map(|(i, c)| entry(i as u64 + 1, c)).collect();
        let r = sm.apply(entries).await.unwrap();
        assert!(r.iter().all(|r| r.outcome == Outcome::Applied), "{r:?}");

        let a1 = store.accounting_session("nas-1", "a").unwrap().unwrap().to_owned().unwrap();
        assert_eq!((a1.status, a1.event_count, a1.start_time, a1.last_update), (InterimUpdate, 2, 100, 400));
        assert_eq!(a1.input_octets, 4_294_967_303);
        assert!(store.accounting_session("nas-3", "a").unwrap().is_none());
        // The same session id from another NAS is another session.
        assert_eq!(store.accounting_session("nas-2", "a").unwrap().unwrap().get().start_time.to_native(), 300);

        let all = store.accounting_sessions("acme", 0, 100).unwrap();
        assert_eq!(all.total, 3);
        let nas: Vec<String> = all.sessions.iter().map(|r| r.get().nas_client.as_str().to_string()).collect();
        assert_eq!(
            (ids(&all), nas),
            (vec!["a".into(), "b".into(), "a".into()], vec!["nas-2".into(), "nas-1".into(), "nas-1".into()])
        );
        let page = store.accounting_sessions("acme", 1, 1).unwrap();
        assert_eq!((page.total, ids(&page)), (3, vec!["b".to_string()]));
        let past_the_end = store.accounting_sessions("acme", 3, 10).unwrap();
        assert_eq!((past_the_end.total, past_the_end.sessions.len()), (3, 0));
        assert_eq!(store.accounting_sessions("other", 0, 10).unwrap().total, 0);
        let alice = store.accounting_sessions_of_user("acme", "alice", 0, 10).unwrap();
        assert_eq!((alice.total, alice.sessions.len()), (2, 2));
        assert_eq!(store.accounting_sessions_of_user("acme", "bob", 0, 10).unwrap().total, 1);
        assert_eq!(store.accounting_sessions_of_user("acme", "al", 0, 10).unwrap().total, 0, "no prefix match");

        // A late Start moves the session in the start-time order; the old index entries go.
        sm.apply(vec![entry(10, accounting(Start, "nas-1", "b", "bob", 50))]).await.unwrap();
        let all = store.accounting_sessions("acme", 0, 100).unwrap();
        assert_eq!(ids(&all), ["a", "a", "b"]);
        assert_eq!(store.count(crate::store::key::ACCOUNTING_BY_ORG), 3);

        // nas-1 restarts at 450: its open session (a, last heard of at 400) ends; b had already stopped.
        let on = Command::RecordAccounting {
            event: AccountingEvent {
                status: AccountingOn,
                event_time: 450,
                nas_client: "nas-1".into(),
                ..Default::default()
            },
        };
        assert_eq!(sm.apply(vec![entry(11, on)]).await.unwrap()[0].outcome, Outcome::Applied);
        let a1 = store.accounting_session("nas-1", "a").unwrap().unwrap().to_owned().unwrap();
        assert_eq!((a1.status, a1.stop_time), (AccountingOn, 450));
        let b1 = store.accounting_session("nas-1", "b").unwrap().unwrap().to_owned().unwrap();
        assert_eq!((b1.status, b1.stop_time), (Stop, 500));
        let a2 = store.accounting_session("nas-2", "a").unwrap().unwrap().to_owned().unwrap();
        assert_eq!(a2.stop_time, 0, "another NAS's session stays open");

        // Retention: sessions whose latest event is older than 460 go (nas-1/a at 450, nas-2/a at 300), at
        // most `limit` a command, oldest first; their index entries go with them.
        sm.apply(vec![entry(12, Command::PruneAccounting { before: 460, limit: 1 })]).await.unwrap();
        assert!(store.accounting_session("nas-2", "a").unwrap().is_none(), "the oldest first");
        assert!(store.accounting_session("nas-1", "a").unwrap().is_some());
        sm.apply(vec![entry(13, Command::PruneAccounting { before: 460, limit: 100 })]).await.unwrap();
        assert!(store.accounting_session("nas-1", "a").unwrap().is_none());
        assert!(store.accounting_session("nas-1", "b").unwrap().is_some(), "its Stop at 500 is within");
        assert_eq!(store.accounting_sessions("acme", 0, 10).unwrap().total, 1);
        assert_eq!(store.accounting_sessions_of_user("acme", "alice", 0, 10).unwrap().total, 0);
        assert_eq!(store.count(crate::store::key::ACCOUNTING_BY_AGE), 1);

        // Deleting the organization removes its sessions and every index entry.
        sm.apply(vec![entry(14, Command::DeleteOrganization { name: "acme".into() })]).await.unwrap();
        for prefix in [
            crate::store::key::ACCOUNTING,
            crate::store::key::ACCOUNTING_BY_ORG,
            crate::store::key::ACCOUNTING_BY_USER,
            crate::store::key::ACCOUNTING_BY_AGE,
        ] {
            assert_eq!(store.count(prefix), 0, "{:?}", String::from_utf8_lossy(prefix));
        }
    }

    /// Malformed events are refused like any other invalid command, and leave nothing behind.
    #[tokio::test]
    async fn malformed_accounting_events_are_refused() {
        use AccountingStatus::*;
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, store) = machine(dir.path());
        sm.apply(vec![entry(1, org("acme"))]).await.unwrap();
        let with = |f: &dyn Fn(&mut AccountingEvent)| {
            let mut cmd = accounting(InterimUpdate, "nas-1", "s", "alice", 100);
            if let Command::RecordAccounting { event } = &mut cmd {
                f(event);
            }
            cmd
        };
        let bad = [
            with(&|e| e.acct_session_id.clear()),
            with(&|e| {
                e.status = Start;
                e.acct_session_id.clear();
            }),
            with(&|e| {
                e.status = Stop;
                e.acct_session_id.clear();
            }),
            with(&|e| e.organization = "nowhere".into()),
            with(&|e| e.organization.clear()),
            with(&|e| e.nas_client.clear()),
            with(&|e| e.nas_client = "a/b".into()),
            with(&|e| e.acct_session_id = "a\0b".into()),
            with(&|e| e.user_name = "al\0ice".into()),
            with(&|e| e.calling_station_id = "x".repeat(254)),
            with(&|e| e.event_time = 0),
            with(&|e| e.event_time = -5),
        ];
        let n = bad.len() as u64;
        let entries: Vec<Entry> = bad.into_iter().enumerate().map(|(i, c)| entry(i as u64 + 2, c)).collect();
        for r in sm.apply(entries).await.unwrap() {
            assert!(matches!(r.outcome, Outcome::Invalid(_)), "{r:?}");
        }
        assert_eq!(store.count(crate::store::key::ACCOUNTING), 0);
        assert_eq!(store.count(crate::store::key::ACCOUNTING_BY_AGE), 0);
        // At the limits: 253 bytes, and Accounting-On without a session id or organization.
        let on = Command::RecordAccounting {
            event: AccountingEvent {
                status: AccountingOn,
                event_time: 5,
                nas_client: "nas-1".into(),
                ..Default::default()
            },
        };
        let good = [with(&|e| e.calling_station_id = "x".repeat(253)), on];
        let entries: Vec<Entry> = good.into_iter().enumerate().map(|(i, c)| entry(n + 2 + i as u64, c)).collect();
        for r in sm.apply(entries).await.unwrap() {
            assert_eq!(r.outcome, Outcome::Applied);
        }
        assert_eq!(store.count(crate::store::key::ACCOUNTING), 1);
        // A log entry of the command reads back the same.
        let e = entry(1, accounting(Stop, "nas-1", "s", "alice", 100));
        assert_eq!(decode_entry(&encode_entry(&e).unwrap()).unwrap(), e);
    }

    /// A data dir written before the directory indexes existed gets them when it is opened.
    #[tokio::test]
    async fn directory_indexes_are_built_for_older_data_dirs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut sm, store) = machine(dir.path());
            let mut alice = user("acme", "alice", "u-1");
            if let Command::PutUser { user, .. } = &mut alice {
                user.groups = vec!["acme/sales".into()];
            }
            sm.apply(vec![entry(1, org("acme")), entry(2, alice)]).await.unwrap();
            // What an older version left: no index entries, no marker.
            let state = store.state();
            for prefix in key::DIRECTORY_INDEXES {
                for k in state.scan_prefix(prefix).keys() {
                    state.remove(k.unwrap()).unwrap();
                }
            }
            state.remove(key::META_DIRECTORY_INDEX).unwrap();
            assert!(store.users_with_email("acme", "alice@x.example").unwrap().is_empty());
            store.db.flush().unwrap();
        }
        let (_sm, store) = machine(dir.path());
        assert_eq!(store.users_with_email("acme", "alice@x.example").unwrap().len(), 1);
        assert_eq!(store.group_members("acme", "sales").unwrap().len(), 1);
    }

    #[tokio::test]
    async fn snapshots_build_and_install_into_another_node() {
        let a = tempfile::tempdir().unwrap();
        let (mut sm, _) = machine(a.path());
        let app = Application {
            name: "app".into(),
            organization: "acme".into(),
            client_id: "cid".into(),
            ..Default::default()
        };
        sm.apply(vec![
            entry(1, org("acme")),
            entry(2, user("acme", "alice", "u-1")),
            entry(3, Command::PutApplication { app, mode: PutMode::Create }),
        ])
        .await
        .unwrap();
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(3));
        let data = std::fs::read(sm.snapshots.data_path(&snap.meta.snapshot_id).unwrap()).unwrap();
        let file_of = |bytes: &[u8]| {
            let path = a.path().join(format!("copy-{}", now_nanos()));
            std::fs::write(&path, bytes).unwrap();
            Box::new(tokio::fs::File::from_std(std::fs::File::open(path).unwrap()))
        };

        let b = tempfile::tempdir().unwrap();
        let (mut other, store) = machine(b.path());
        // Something the snapshot does not have must be gone after installing it.
        other.apply(vec![entry(1, org("stale"))]).await.unwrap();
        let mut changes = store.subscribe();
        let incoming = received(&mut other, &data).await;
        other.install_snapshot(&snap.meta, incoming).await.unwrap();
        assert_eq!(changes.recv().await.unwrap(), Change::Everything);
        assert!(store.organization("stale").unwrap().is_none());
        assert_eq!(store.user_by_id("u-1").unwrap().unwrap().get().name.as_str(), "alice");
        assert_eq!(store.application_by_client_id("cid").unwrap().unwrap().get().name.as_str(), "app");
        assert_eq!(store.applied_index().unwrap(), Some(3));
        // The directory indexes are not in the snapshot; they are rebuilt from its users.
        let mut index_entries = 0;
        read_snapshot(&mut &data[..], |k, _| {
            index_entries += key::DIRECTORY_INDEXES.iter().filter(|p| k.starts_with(p)).count();
            Ok(())
        })
        .unwrap();
        assert_eq!(index_entries, 0, "no index entry travels");
        assert_eq!(store.users_with_email("acme", "ALICE@x.example").unwrap().len(), 1);
        assert_eq!(store.users_named_ci("acme", "Alice").unwrap().len(), 1);
        let current = other.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, snap.meta.snapshot_id);
        assert_eq!(std::fs::read(other.snapshots.data_path(&snap.meta.snapshot_id).unwrap()).unwrap(), data);
        let files = std::fs::read_dir(b.path().join("snapshots")).unwrap().count();
        assert_eq!(files, 2, "the current meta and its data, nothing left of the transfer");

        // Corrupt data is refused and changes nothing.
        let mut bad = data.clone();
        let n = bad.len();
        bad[n - 3] ^= 0xff;
        bad.truncate(n - 1);
        assert!(other.install_snapshot(&snap.meta, file_of(&bad)).await.is_err());
        assert_eq!(store.user_by_id("u-1").unwrap().unwrap().get().name.as_str(), "alice");
    }

    /// A snapshot carries a record of every table (and the indexes kept with them): the installed state is
    /// the source state, key for key, and reads on it answer the same. A table added to the store without a
    /// record here fails this test.
    #[tokio::test]
    async fn a_snapshot_carries_every_table() {
        use crate::model::{AcceptedAlgorithms, AcceptedIssuer, Admission, CasbinModel, Permission, Role, SigningKey};
        let a = tempfile::tempdir().unwrap();
        let (mut sm, source) = machine(a.path());
        let commands = vec![
            org("acme"),
            user("acme", "alice", "u-1"),
            Command::PutSigningKey {
                key: SigningKey { kid: "k1".into(), algorithm: "RS256".into(), ..Default::default() },
                mode: PutMode::Create,
            },
            Command::PutAcceptedAlgorithms {
                accepted: AcceptedAlgorithms { kid: "k1".into(), algorithms: vec!["RS512".into()] },
                mode: PutMode::Create,
            },
            Command::PutApplication {
                app: Application {
                    name: "app".into(),
                    organization: "acme".into(),
                    client_id: "cid".into(),
                    cert: "k1".into(),
                    ..Default::default()
                },
                mode: PutMode::Create,
            },
            Command::PutAcceptedIssuer {
                accepted: AcceptedIssuer {
                    application: "app".into(),
                    issuer: "https://old".into(),
                    ..Default::default()
                },
                mode: PutMode::Create,
            },
            Command::PutRole {
                role: Role { owner: "acme".into(), name: "r".into(), ..Default::default() },
                mode: PutMode::Create,
            },
            Command::PutGroup {
                group: Group { owner: "acme".into(), name: "g".into(), ..Default::default() },
                mode: PutMode::Create,
            },
            Command::PutPermission {
                permission: Permission { owner: "acme".into(), name: "p".into(), ..Default::default() },
                mode: PutMode::Create,
            },
            Command::PutModel {
                model: CasbinModel { owner: "acme".into(), name: "m".into(), ..Default::default() },
                mode: PutMode::Create,
            },
            Command::IssueRefreshToken {
                token: RefreshToken { id: "r1".into(), family: "f1".into(), expires_at: 9_999, ..Default::default() },
            },
            Command::Revoke { revocation: Revocation { jti: "j1".into(), expires_at: 9_999, revoked_at: 1 } },
            Command::RecordSigninFailure { account: "user:u-1".into(), now: 100, limit: 5, frozen_secs: 60 },
            Command::AdmitNode {
                admission: Admission { node_id: 2, token_digest: "ab".repeat(32), expires_at: 9_999, created_at: 1 },
            },
            accounting(AccountingStatus::Start, "nas-1", "s-1", "alice", 100),
            accounting(AccountingStatus::InterimUpdate, "nas-1", "s-1", "alice", 160),
            nt_credential_of(&user("acme", "alice", "u-1"), &[7; 44]),
            Command::StartSession {
                session: crate::model::BrowserSession {
                    id: "s1".into(),
                    user_id: "u-1".into(),
                    expires_at: i64::MAX,
                    ..Default::default()
                },
            },
            Command::RedeemCode {
                redemption: crate::model::CodeRedemption {
                    code_id: "c1".into(),
                    expires_at: i64::MAX,
                    access_jti: "a1".into(),
                    ..Default::default()
                },
                refresh: None,
                now: 100,
                session_id: String::new(),
            },
            Command::PutConsent {
                consent: crate::model::Consent {
                    user_id: "u-1".into(),
                    application: "app".into(),
                    ..Default::default()
                },
            },
            Command::PutTotp {
                credential: crate::model::TotpCredential {
                    user_id: "u-1".into(),
                    sealed_secret: vec![1; 40],
                    ..Default::default()
                },
            },
            Command::PutPasskey {
                passkey: crate::model::Passkey {
                    user_id: "u-1".into(),
                    credential_id: "cred-1".into(),
                    ..Default::default()
                },
            },
            Command::StartDeviceAuthorization {
                authorization: crate::model::DeviceAuthorization {
                    device_code_digest: "d1".into(),
                    user_code: "BCDFGHJK".into(),
                    application: "app".into(),
                    expires_at: i64::MAX,
                    ..Default::default()
                },
            },
        ];
        let entries: Vec<Entry> = commands.into_iter().enumerate().map(|(i, c)| entry(i as u64 + 1, c)).collect();
        let replies = sm.apply(entries).await.unwrap();
        assert!(replies.iter().all(|r| r.outcome == Outcome::Applied), "{replies:?}");
        let state = |store: &Store| -> Vec<(Vec<u8>, Vec<u8>)> {
            store
                .state()
                .iter()
                .map(|kv| kv.unwrap())
                .filter(|(k, _)| !k.starts_with(key::META))
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect()
        };
        let before = state(&source);
        for prefix in crate::store::RECORD_PREFIXES {
            assert!(
                before.iter().any(|(k, _)| k.starts_with(prefix)),
                "no {:?} record in the test state: add one",
                String::from_utf8_lossy(prefix)
            );
        }
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let data = std::fs::read(sm.snapshots.data_path(&snap.meta.snapshot_id).unwrap()).unwrap();

        let b = tempfile::tempdir().unwrap();
        let (mut other, installed) = machine(b.path());
        let incoming = received(&mut other, &data).await;
        other.install_snapshot(&snap.meta, incoming).await.unwrap();
        assert!(state(&installed) == before, "the installed state differs from the source");
        let s = installed.accounting_session("nas-1", "s-1").unwrap().unwrap().to_owned().unwrap();
        assert_eq!(
            (s.status, s.start_time, s.last_update, s.event_count),
            (AccountingStatus::InterimUpdate, 100, 160, 2)
        );
        assert_eq!(installed.accounting_sessions("acme", 0, 10).unwrap().total, 1);
        assert_eq!(installed.accounting_sessions_of_user("acme", "alice", 0, 10).unwrap().total, 1);
        let credential = installed.nt_credential("u-1").unwrap().unwrap().to_owned().unwrap();
        assert_eq!(credential, source.nt_credential("u-1").unwrap().unwrap().to_owned().unwrap());
        assert_eq!(credential.sealed, vec![7; 44]);
        // The installed node goes on with the session from where the source was.
        other.apply(vec![entry(20, accounting(AccountingStatus::Stop, "nas-1", "s-1", "alice", 400))]).await.unwrap();
        let s = installed.accounting_session("nas-1", "s-1").unwrap().unwrap().to_owned().unwrap();
        assert_eq!((s.status, s.stop_time, s.event_count), (AccountingStatus::Stop, 400, 3));
    }

    /// A state machine with `n` users of `acme`, and a snapshot of it: (machine, its dir, the snapshot's
    /// meta, the snapshot's bytes).
    async fn snapshot_of_users(n: usize) -> (StateMachine, tempfile::TempDir, SnapshotMeta<NodeId, Node>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, _) = machine(dir.path());
        let mut entries = vec![entry(1, org("acme"))];
        let users = (0..n).map(|i| user("acme", &format!("user-{i:05}"), &format!("u-{i}"))).collect();
        entries.push(entry(2, Command::Batch { commands: users }));
        sm.apply(entries).await.unwrap();
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let data = std::fs::read(sm.snapshots.data_path(&snap.meta.snapshot_id).unwrap()).unwrap();
        (sm, dir, snap.meta, data)
    }

    /// Receives `data` the way a follower receives a snapshot from the leader: into a file of its own.
    async fn received(sm: &mut StateMachine, data: &[u8]) -> Box<tokio::fs::File> {
        let mut incoming = sm.begin_receiving_snapshot().await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut incoming, data).await.unwrap();
        incoming
    }

    fn state_trees(db: &sled::Db) -> Vec<String> {
        let mut names: Vec<String> = db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| n.starts_with("state"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn only_snapshot_ids_of_our_own_form_are_accepted() {
        for good in ["T3-N1-42-1732000000000000000", "0-0-1732000000000000000", "T0-N12-0-1"] {
            assert!(is_snapshot_id(good), "{good}");
        }
        for bad in [
            "",
            "..",
            "../x",
            "../../etc/passwd",
            "T3-N1-42-17/../../x",
            "T3-N1-42-1732000000000000000.snap",
            "T3-N1-42",
            "T3-N1-42-17-1",
            "t3-N1-42-17",
            "T-N1-42-17",
            "T3-N1--17",
            "T3-N1-42-17\0",
            "0-0-",
            "1-0-17",
            "T3-N1-42-1234567890123456789012345678901234567890",
            "T３-N1-42-17",
        ] {
            assert!(!is_snapshot_id(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_snapshot_id_from_a_peer_never_becomes_a_path_outside_the_snapshot_dir() {
        let (_sm, _a, meta, data) = snapshot_of_users(3).await;
        let b = tempfile::tempdir().unwrap();
        let (mut other, store) = machine(b.path());
        other.apply(vec![entry(1, org("kept"))]).await.unwrap();
        for evil in ["../../escaped", "../escaped", "x/../../escaped", "escaped"] {
            let mut meta = meta.clone();
            meta.snapshot_id = evil.to_string();
            let incoming = received(&mut other, &data).await;
            let err = other.install_snapshot(&meta, incoming).await.expect_err(evil);
            assert!(err.to_string().contains("snapshot id"), "{evil}: {err}");
        }
        assert!(!b.path().join("escaped.snap").exists() && !b.path().parent().unwrap().join("escaped.snap").exists());
        assert!(store.organization("kept").unwrap().is_some(), "a refused snapshot changes nothing");
        assert!(store.user_by_id("u-1").unwrap().is_none());
        let left: Vec<_> = std::fs::read_dir(b.path().join("snapshots")).unwrap().flatten().collect();
        assert!(left.is_empty(), "nothing of the refused transfers is left: {left:?}");
        // Its own id still installs.
        let incoming = received(&mut other, &data).await;
        other.install_snapshot(&meta, incoming).await.unwrap();
        assert!(store.user_by_id("u-1").unwrap().is_some());
    }

    #[tokio::test]
    async fn a_snapshot_installs_in_bounded_batches_into_a_fresh_tree() {
        let (_sm, _a, meta, data) = snapshot_of_users(1000).await;
        let b = tempfile::tempdir().unwrap();
        let (mut other, store) = machine(b.path());
        other.apply(vec![entry(1, org("stale"))]).await.unwrap();
        let path = b.path().join("incoming");
        std::fs::write(&path, &data).unwrap();
        let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        // Records of 1000 users with their two index entries each, 100 records a batch at most.
        let batches = other.install(&meta, &mut file, None, (100, usize::MAX)).unwrap();
        assert!(batches >= 30, "{batches} batches: the state went in as one");
        assert!(store.organization("stale").unwrap().is_none());
        assert_eq!(store.users("acme").count(), 1000);
        assert_eq!(store.user_by_id("u-999").unwrap().unwrap().get().name.as_str(), "user-00999");
        assert_eq!(store.applied_index().unwrap(), meta.last_log_id.map(|l| l.index));
        // The byte bound cuts batches too.
        let batches = other.install(&meta, &mut file, None, (usize::MAX, 4096)).unwrap();
        assert!(batches >= 30, "{batches} batches");
        // The state trees replaced are dropped once nobody reads them.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while state_trees(&store.db).len() > 1 {
            assert!(std::time::Instant::now() < deadline, "{:?}", state_trees(&store.db));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(state_trees(&store.db), vec!["state.2".to_string()]);
        assert_eq!(store.users("acme").count(), 1000);
    }

    #[tokio::test]
    async fn a_failed_or_interrupted_install_leaves_the_previous_state_whole() {
        let (_sm, _a, meta, data) = snapshot_of_users(500).await;
        let b = tempfile::tempdir().unwrap();
        {
            let (mut other, store) = machine(b.path());
            other.apply(vec![entry(1, org("before")), entry(2, user("before", "bob", "u-bob"))]).await.unwrap();
            // Cut short: batches were written before the damage is found.
            let bad = data[..data.len() - 3].to_vec();
            let path = b.path().join("bad");
            std::fs::write(&path, &bad).unwrap();
            let mut file = std::fs::File::open(&path).unwrap();
            assert!(other.install(&meta, &mut file, None, (50, usize::MAX)).is_err());
            assert!(store.user("before", "bob").unwrap().is_some(), "the previous state serves on");
            assert!(store.user_by_id("u-1").unwrap().is_none(), "nothing of the snapshot shows");
            assert_eq!(state_trees(&store.db), vec!["state".to_string()], "the unfinished tree is dropped");

            // A crash half-way: a replacement tree is partly written and never switched to.
            let next = store.new_state_tree().unwrap();
            read_snapshot(&mut &data[..data.len() / 2], |k, v| {
                next.insert(k, v)?;
                Ok(())
            })
            .ok();
            store.db.flush().unwrap();
            assert_eq!(state_trees(&store.db).len(), 2);
            // The process dies here: every handle is dropped without switching.
        }
        let (_other, store) = machine(b.path());
        assert!(store.user("before", "bob").unwrap().is_some(), "the previous state, whole, after the restart");
        assert!(store.user_by_id("u-1").unwrap().is_none());
        assert_eq!(store.applied_index().unwrap(), Some(2));
        assert_eq!(state_trees(&store.db), vec!["state".to_string()], "the leftover is dropped at start");
    }

    #[tokio::test]
    async fn admissions_are_used_up_by_joining_or_removal_and_pruned_when_expired() {
        use crate::admission::JoinToken;
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, store) = machine(dir.path());
        let membership = |ids: &[u64]| {
            let nodes: std::collections::BTreeMap<u64, Node> =
                ids.iter().map(|id| (*id, Node::new(format!("n{id}:1")))).collect();
            EntryPayload::Membership(openraft::Membership::new(vec![ids.iter().copied().collect()], nodes))
        };
        let at = |index, payload| RaftEntry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload };
        sm.apply(vec![at(1, membership(&[1]))]).await.unwrap();
        let admit = |id, expires_at| Command::AdmitNode {
            admission: crate::model::Admission { expires_at, ..JoinToken::generate("c", id).unwrap().admission(0, 0) },
        };
        let r = sm.apply(vec![entry(2, admit(2, 100)), entry(3, admit(3, 50))]).await.unwrap();
        assert_eq!((&r[0].outcome, &r[1].outcome), (&Outcome::Applied, &Outcome::Applied));
        assert!(store.admission(2).unwrap().is_some() && store.admission(3).unwrap().is_some());
        // Node 2 joins: its admission is used up; node 3's expires and is pruned.
        sm.apply(vec![at(4, membership(&[1, 2]))]).await.unwrap();
        assert!(store.admission(2).unwrap().is_none(), "a member's admission is used up");
        assert!(store.admission(3).unwrap().is_some());
        sm.apply(vec![entry(5, Command::Prune { now: 60 })]).await.unwrap();
        assert!(store.admission(3).unwrap().is_none(), "an expired admission is pruned");
        // An admission made while node 2 is a member does not outlive its removal.
        sm.apply(vec![entry(6, admit(2, 100))]).await.unwrap();
        assert!(store.admission(2).unwrap().is_some());
        sm.apply(vec![at(7, membership(&[1]))]).await.unwrap();
        assert!(store.admission(2).unwrap().is_none(), "removed: it needs a new admission to come back");
        let bad = |node_id, token_digest: &str| Command::AdmitNode {
            admission: crate::model::Admission { node_id, token_digest: token_digest.into(), ..Default::default() },
        };
        let r = sm
            .apply(vec![entry(8, bad(4, "x")), entry(9, bad(0, &"a".repeat(64))), entry(10, admit(2, 100))])
            .await
            .unwrap();
        assert!(matches!(r[0].outcome, Outcome::Invalid(_)), "{:?}", r[0]);
        assert!(matches!(r[1].outcome, Outcome::Invalid(_)), "{:?}", r[1]);
        assert_eq!(r[2].outcome, Outcome::Applied);
    }
}
