//! openraft storage on sled: the log store and the state machine.
//!
//! Trees of the node's sled database:
//! - `raft_log`: log entries by big-endian index (JSON);
//! - `raft_meta`: vote, committed log id, last purged log id;
//! - `state`: the identity state (see [`crate::store`]), with the applied log id and membership written
//!   in the same batch as the changes of each applied entry (crash-consistent);
//! - `snapshot`: the current snapshot (meta and data).
//!
//! Durability: a log append returns only after sled has flushed it to disk (fsync).

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};

use crate::apply::Pending;
use crate::command::CommandResponse;
use crate::store::{key, validate_value, Change, Store};
use crate::{Entry, Node, NodeId, RaftError, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn io_read(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(&e).into()
}
fn io_write(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(&e).into()
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
            out.push(serde_json::from_slice(&v).map_err(|e| StorageError::from(StorageIOError::read_logs(&e)))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_meta("last_purged")?;
        let last = match self.log.last().map_err(io_read)? {
            Some((_, v)) => {
                let e: Entry = serde_json::from_slice(&v).map_err(io_read)?;
                Some(e.log_id)
            }
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
            let bytes = serde_json::to_vec(&entry).map_err(|e| StorageError::from(StorageIOError::write_logs(&e)))?;
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
    snapshots: sled::Tree,
    /// Applying takes it for writing, building a snapshot for reading: sled has no snapshot isolation,
    /// and a snapshot must hold exactly the state at its applied log id.
    consistency: std::sync::Arc<std::sync::RwLock<()>>,
}

impl StateMachine {
    pub fn open(db: &sled::Db, store: Store) -> Result<StateMachine, RaftError> {
        Ok(StateMachine { store, snapshots: db.open_tree("snapshot")?, consistency: Default::default() })
    }

    fn membership(&self) -> StorageResult<StoredMembership<NodeId, Node>> {
        match self.store.state.get(key::META_MEMBERSHIP).map_err(io_read)? {
            Some(v) => serde_json::from_slice(&v).map_err(io_read),
            None => Ok(StoredMembership::default()),
        }
    }

    /// Serializes every state record (not the Raft bookkeeping) as length-prefixed key/value pairs.
    fn dump_state(&self) -> StorageResult<Vec<u8>> {
        let mut out = Vec::new();
        for item in self.store.state.iter() {
            let (k, v) = item.map_err(io_read)?;
            if k.starts_with(key::META) {
                continue;
            }
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(&k);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(&v);
        }
        Ok(out)
    }

    fn save_snapshot(&self, meta: &SnapshotMeta<NodeId, Node>, data: &[u8]) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        batch.insert("meta", serde_json::to_vec(meta).map_err(io_write)?);
        batch.insert("data", data);
        self.snapshots.apply_batch(batch).map_err(io_write)?;
        Ok(())
    }
}

/// Splits snapshot data into key/value pairs, validating every record archive.
/// Key/value pairs borrowed from snapshot data.
type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

fn parse_snapshot(data: &[u8]) -> Result<Pairs<'_>, RaftError> {
    let mut pairs = Vec::new();
    let mut rest = data;
    fn take<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], RaftError> {
        let (len, tail) =
            rest.split_first_chunk::<4>().ok_or_else(|| RaftError::Corrupt("truncated snapshot".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(RaftError::Corrupt("truncated snapshot".into()));
        }
        let (item, tail) = tail.split_at(len);
        *rest = tail;
        Ok(item)
    }
    while !rest.is_empty() {
        let k = take(&mut rest)?;
        let v = take(&mut rest)?;
        if k.starts_with(key::META) {
            return Err(RaftError::Corrupt("snapshot contains raft bookkeeping".into()));
        }
        validate_value(k, v)?;
        pairs.push((k, v));
    }
    Ok(pairs)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let store = self.clone();
        // Reading the whole state is blocking work.
        let (data, applied, membership) = tokio::task::spawn_blocking(move || -> StorageResult<_> {
            let _consistent = store.consistency.read().unwrap_or_else(|p| p.into_inner());
            let applied = read_applied(&store.store.state).map_err(io_read)?;
            let membership = store.membership()?;
            let data = store.dump_state()?;
            Ok((data, applied, membership))
        })
        .await
        .map_err(io_read)??;
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, now_nanos()),
            None => format!("--{}", now_nanos()),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        self.save_snapshot(&meta, &data)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        Ok((read_applied(&self.store.state).map_err(io_read)?, self.membership()?))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let consistency = self.consistency.clone();
        let _consistent = consistency.write().unwrap_or_else(|p| p.into_inner());
        let mut pending = Pending::new(&self.store.state);
        let mut replies = Vec::new();
        let mut last = None;
        for entry in entries {
            last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => replies.push(CommandResponse::default()),
                EntryPayload::Normal(cmd) => {
                    let outcome = pending.apply(&cmd).map_err(|e| StorageIOError::apply(entry.log_id, &e))?;
                    if outcome != crate::Outcome::Applied {
                        tracing::debug!(kind = cmd.kind(), ?outcome, "command refused");
                    }
                    replies.push(CommandResponse { outcome });
                }
                EntryPayload::Membership(m) => {
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
        self.store.state.apply_batch(batch).map_err(io_write)?;
        for c in changes {
            // No receiver is fine: nothing caches yet.
            let _ = self.store.changes.send(c);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let pairs = parse_snapshot(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // Replace the whole state in one batch: remove what the snapshot lacks, write what it has.
        let mut batch = sled::Batch::default();
        let incoming: std::collections::HashSet<&[u8]> = pairs.iter().map(|(k, _)| *k).collect();
        for k in self.store.state.iter().keys() {
            let k = k.map_err(io_read)?;
            if !incoming.contains(&k[..]) {
                batch.remove(k);
            }
        }
        for (k, v) in &pairs {
            batch.insert(*k, *v);
        }
        batch.insert(key::META_APPLIED, serde_json::to_vec(&meta.last_log_id).map_err(io_write)?);
        batch.insert(key::META_MEMBERSHIP, serde_json::to_vec(&meta.last_membership).map_err(io_write)?);
        self.store.state.apply_batch(batch).map_err(io_write)?;
        self.save_snapshot(meta, &data)?;
        self.store.db.flush_async().await.map_err(io_write)?;
        let _ = self.store.changes.send(Change::Everything);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let meta = self.snapshots.get("meta").map_err(io_read)?;
        let data = self.snapshots.get("data").map_err(io_read)?;
        match (meta, data) {
            (Some(meta), Some(data)) => {
                let meta: SnapshotMeta<NodeId, Node> = serde_json::from_slice(&meta).map_err(io_read)?;
                Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data.to_vec())) }))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry as RaftEntry};

    use super::*;
    use crate::command::{Command, Outcome, PutMode};
    use crate::model::{Application, Group, Organization, RefreshState, RefreshToken, Revocation, User};

    fn entry(index: u64, cmd: Command) -> Entry {
        RaftEntry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(cmd) }
    }

    fn machine(dir: &std::path::Path) -> (StateMachine, Store) {
        let db = sled::Config::new().path(dir).temporary(false).open().unwrap();
        let store = Store::open(&db).unwrap();
        (StateMachine::open(&db, store.clone()).unwrap(), store)
    }

    fn org(name: &str) -> Command {
        Command::PutOrganization {
            org: Organization { name: name.into(), ..Default::default() },
            mode: PutMode::Create,
        }
    }

    fn user(owner: &str, name: &str, id: &str) -> Command {
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
        let raw = store.state.get(crate::store::key::revocation("j")).unwrap().unwrap();
        assert!(raw.len() <= 64, "a small archive: {} bytes", raw.len());
        let rev = store.revocation("j").unwrap().unwrap();
        assert_eq!(rev.get().expires_at.to_native(), 9);
        assert_eq!(store.group("o", "g").unwrap().unwrap().get().name.as_str(), "g");
        assert_eq!(store.organization("o").unwrap().unwrap().get().name.as_str(), "o");
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
        let data = snap.snapshot.into_inner();

        let b = tempfile::tempdir().unwrap();
        let (mut other, store) = machine(b.path());
        // Something the snapshot does not have must be gone after installing it.
        other.apply(vec![entry(1, org("stale"))]).await.unwrap();
        let mut changes = store.subscribe();
        other.install_snapshot(&snap.meta, Box::new(Cursor::new(data.clone()))).await.unwrap();
        assert_eq!(changes.recv().await.unwrap(), Change::Everything);
        assert!(store.organization("stale").unwrap().is_none());
        assert_eq!(store.user_by_id("u-1").unwrap().unwrap().get().name.as_str(), "alice");
        assert_eq!(store.application_by_client_id("cid").unwrap().unwrap().get().name.as_str(), "app");
        assert_eq!(store.applied_index().unwrap(), Some(3));
        let current = other.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, snap.meta.snapshot_id);

        // Corrupt data is refused and changes nothing.
        let mut bad = data.clone();
        let n = bad.len();
        bad[n - 3] ^= 0xff;
        bad.truncate(n - 1);
        assert!(other.install_snapshot(&snap.meta, Box::new(Cursor::new(bad))).await.is_err());
        assert_eq!(store.user_by_id("u-1").unwrap().unwrap().get().name.as_str(), "alice");
    }
}
