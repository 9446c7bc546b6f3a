//! A node that is no longer a member of its cluster: how it finds out, and what it keeps of it.
//!
//! A removed node's state stops changing (the leader no longer replicates to it), so it would answer from a
//! frozen copy: tokens revoked since would stay `active`. It finds out in one of three ways:
//! - the leader that committed its removal tells it at once (`/cluster/removed`), with the log index of the
//!   membership that no longer names it;
//! - on a restart, and whenever no member has called it for a while (no appends: cut off, or removed while
//!   it was down), it asks the members it knows where it stands (`/cluster/standing`);
//! - a forwarded write or read index the leader refuses because it is not a member makes it ask too.
//!
//! An answer counts only when it comes from a member of the membership this node knows, over mutual TLS,
//! and names a committed membership at least as new as the one this node has that leaves this node out:
//! committed entries are never lost, so that membership is the cluster's. A stale peer, or one that has
//! not heard of this node yet, proves nothing. Once removed, a node writes `removed.json` into its data
//! dir, stops Raft and answers 503 everywhere but its liveness check; a restart on that data dir stays
//! removed until the dir is wiped and the node joins again with a new admission.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// What a node knows of a caller's membership: the answer to `/cluster/standing`, and what the leader
/// sends to `/cluster/removed`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    /// Whether the membership the answering node knows names the caller (voter or learner).
    pub member: bool,
    /// The log index of that membership.
    pub membership_index: Option<u64>,
    /// Whether that membership is committed (applied on the answering node).
    pub committed: bool,
}

impl Standing {
    /// Whether this answer proves that a node whose own membership is at `own_index` was removed.
    pub fn proves_removal(&self, own_index: Option<u64>) -> bool {
        !self.member && self.committed && self.membership_index.is_some() && self.membership_index >= own_index
    }
}

/// `removed.json` in the data dir.
#[derive(Serialize, Deserialize, Debug)]
struct Marker {
    cluster: String,
    node_id: NodeId,
    /// The log index of the membership that no longer names this node.
    membership_index: Option<u64>,
    /// Unix seconds.
    at: i64,
}

const MARKER: &str = "removed.json";

/// What a node keeps of its standing in the cluster.
pub(crate) struct Removal {
    dir: PathBuf,
    removed: AtomicBool,
    /// When a member last called this node's Raft listener (appends, votes, snapshots), or when it started.
    last_contact: Mutex<Instant>,
    /// A standing check is running: another one waits for the next round.
    checking: AtomicBool,
    /// The task that checks this node's standing when nobody calls (stopped with the node).
    watch: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Removal {
    /// Reads the data dir's marker: a node removed before stays removed.
    pub(crate) fn open(dir: &Path) -> Result<Removal, crate::RaftError> {
        let path = dir.join(MARKER);
        let removed = match std::fs::read(&path) {
            Ok(bytes) => {
                let marker: Marker = serde_json::from_slice(&bytes).map_err(|e| {
                    crate::RaftError::Start(format!("{} is not a jeton removal marker: {e}", path.display()))
                })?;
                tracing::warn!(
                    cluster = %marker.cluster,
                    node = marker.node_id,
                    "this node was removed from its cluster (see {}): it answers 503 until its data dir is \
                     wiped and it joins again with a new admission",
                    path.display()
                );
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(crate::RaftError::Start(format!("cannot read {}: {e}", path.display()))),
        };
        Ok(Removal {
            dir: dir.to_path_buf(),
            removed: AtomicBool::new(removed),
            last_contact: Mutex::new(Instant::now()),
            checking: AtomicBool::new(false),
            watch: Mutex::new(None),
        })
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    /// Records the removal (once): the marker, then the flag every request looks at. Returns whether this
    /// call did it.
    pub(crate) fn mark(&self, cluster: &str, node_id: NodeId, membership_index: Option<u64>) -> bool {
        if self.removed.swap(true, Ordering::SeqCst) {
            return false;
        }
        let marker = Marker { cluster: cluster.to_string(), node_id, membership_index, at: crate::node::unix_now() };
        let path = self.dir.join(MARKER);
        let written = serde_json::to_vec_pretty(&marker)
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_durably(&path, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::error!(
                "cannot write {}: {e} (a restart would serve again until it finds out anew)",
                path.display()
            );
        }
        tracing::warn!(
            cluster,
            node = node_id,
            membership_index,
            "this node was removed from the cluster: it stops serving (503 \"removed from the cluster\") and \
             stays removed across restarts; wipe its data dir and admit it anew to add it again"
        );
        true
    }

    pub(crate) fn note_contact(&self) {
        *self.last_contact.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    pub(crate) fn since_contact(&self) -> Duration {
        self.last_contact.lock().unwrap_or_else(PoisonError::into_inner).elapsed()
    }

    /// Takes the right to run a standing check; `None` while one runs.
    pub(crate) fn start_check(&self) -> Option<CheckTurn<'_>> {
        (!self.checking.swap(true, Ordering::SeqCst)).then_some(CheckTurn(self))
    }

    pub(crate) fn set_watch(&self, task: tokio::task::AbortHandle) {
        *self.watch.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    pub(crate) fn stop_watch(&self) {
        if let Some(task) = self.watch.lock().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

/// A running standing check; the next may start once it is dropped.
pub(crate) struct CheckTurn<'a>(&'a Removal);

impl Drop for CheckTurn<'_> {
    fn drop(&mut self) {
        self.0.checking.store(false, Ordering::SeqCst);
    }
}

/// Writes a small file so that it survives a crash: a temporary file, fsynced, renamed over the target.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(member: bool, index: Option<u64>, committed: bool) -> Standing {
        Standing { member, membership_index: index, committed }
    }

    #[test]
    fn only_a_committed_membership_as_new_as_ours_proves_a_removal() {
        // The leader's committed membership at 12 leaves us out; ours is the joint one at 11, or 12 itself.
        assert!(standing(false, Some(12), true).proves_removal(Some(11)));
        assert!(standing(false, Some(12), true).proves_removal(Some(12)));
        // A member says we are in.
        assert!(!standing(true, Some(12), true).proves_removal(Some(11)));
        // Not committed there: it could still be undone.
        assert!(!standing(false, Some(12), false).proves_removal(Some(11)));
        // A stale peer (its membership is older than ours: it has not heard of us yet).
        assert!(!standing(false, Some(5), true).proves_removal(Some(11)));
        // A peer that knows no membership at all.
        assert!(!standing(false, None, true).proves_removal(None));
    }

    #[test]
    fn the_marker_survives_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let removal = Removal::open(tmp.path()).unwrap();
        assert!(!removal.is_removed());
        assert!(removal.mark("c", 3, Some(12)));
        assert!(!removal.mark("c", 3, Some(12)), "said once");
        assert!(removal.is_removed());
        assert!(Removal::open(tmp.path()).unwrap().is_removed());
        std::fs::write(tmp.path().join(MARKER), "not json").unwrap();
        assert!(Removal::open(tmp.path()).is_err(), "a damaged marker is an error, not a silent member");
    }
}
