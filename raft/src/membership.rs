//! Membership changes, carried out by the leader: joins, learners, promotions, removals.
//!
//! - **One at a time.** A change waits for its turn on the leader instead of failing because another one is
//!   under way (two nodes joining at once both get in), and one that meets a change a previous leader left
//!   uncommitted retries with back-off for up to [`CHANGE_PATIENCE`]. Nothing is pushed back to the operator.
//! - **A voter has caught up.** A node becomes a voter only once its matched log index is at most
//!   `raft.catch_up_lag` entries behind the leader's last index. A join and `add-learner` add the node as a
//!   learner and wait for that, up to `raft.catch_up_timeout_secs` and outside the turn (other changes go
//!   on meanwhile), logging its progress; a node that has not caught up by then stays a learner, never a
//!   voter, and the join fails with the reason. `promote` checks it without waiting, unless forced.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError as OpenraftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use tokio::time::Instant;

use crate::cluster::MembershipChange;
use crate::node::{ReplicaNode, WriteError};
use crate::NodeId;

/// How long a change retries while another one (left by a previous leader) is under way.
const CHANGE_PATIENCE: Duration = Duration::from_secs(30);
/// How long a change may take to commit once proposed (it needs a quorum of the old and the new voters).
const COMMIT_PATIENCE: Duration = Duration::from_secs(30);
/// How much longer than `catch_up_timeout` a caller waits for the leader's answer to a change.
pub(crate) const ANSWER_MARGIN: Duration = Duration::from_secs(60);
/// How often the leader logs the progress of a node catching up.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How far a node is behind the leader, from the leader's replication metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CatchUp {
    /// Its matched index is within `catch_up_lag` of the leader's last index.
    Done,
    /// `matched`: its last log index the leader knows it has (none: nothing yet).
    Behind { matched: Option<u64>, last: u64 },
    /// It is no longer a member.
    Gone,
    /// This node no longer leads.
    NotLeader,
}

impl ReplicaNode {
    /// Changes the membership through the leader (see the module documentation). A join or an add-learner
    /// returns once the node has caught up, or with the reason it has not.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), WriteError> {
        let answer_within = self.settings.catch_up_timeout + ANSWER_MARGIN;
        self.on_leader_within("/cluster/membership", &change, answer_within, || {
            self.change_membership_here(change.clone())
        })
        .await
    }

    /// Carries out a membership change on this node, which must be the leader.
    pub(crate) async fn change_membership_here(&self, change: MembershipChange) -> Result<(), WriteError> {
        self.check_quorum()?;
        match change {
            MembershipChange::Join { id, addr, token, learner } => {
                if self.is_voter(id) {
                    // A join resumed after a restart: it is in already.
                    return Ok(());
                }
                if !self.is_member(id) {
                    self.admission_opens(id, token.as_ref()).map_err(WriteError::Invalid)?;
                    self.add_learner(id, addr).await?;
                }
                self.wait_until_caught_up(id).await?;
                if learner {
                    return Ok(());
                }
                self.promote(id).await
            }
            MembershipChange::AddLearner { id, addr } => {
                if self.is_voter(id) {
                    return Err(WriteError::Invalid(format!("node {id} is already a voter")));
                }
                if !self.is_member(id) {
                    self.add_learner(id, addr).await?;
                }
                self.wait_until_caught_up(id).await
            }
            MembershipChange::Promote { id, force } => {
                if !self.is_member(id) {
                    return Err(WriteError::Invalid(format!("node {id} is not a member; add it as a learner first")));
                }
                if self.is_voter(id) {
                    return Ok(());
                }
                if !force {
                    match self.catch_up(id) {
                        CatchUp::Done => {}
                        CatchUp::Behind { matched, last } => {
                            return Err(WriteError::NotCaughtUp(format!(
                                "{}: promote it once it has caught up (`jeton cluster status` on the leader shows \
                                 its progress), or with --force",
                                self.behind(id, matched, last)
                            )))
                        }
                        CatchUp::Gone => return Err(WriteError::Invalid(format!("node {id} is not a member"))),
                        CatchUp::NotLeader => return Err(WriteError::NotLeader { leader: None }),
                    }
                }
                self.promote(id).await
            }
            MembershipChange::Remove { id } => {
                let (addr, voters) = {
                    let receiver = self.raft.metrics();
                    let metrics = receiver.borrow();
                    let membership = metrics.membership_config.membership();
                    (membership.get_node(&id).map(|n| n.addr.clone()), membership.voter_ids().collect::<BTreeSet<_>>())
                };
                let Some(addr) = addr else {
                    return Err(WriteError::Invalid(format!("node {id} is not a member")));
                };
                let gone = BTreeSet::from([id]);
                let index = if voters.contains(&id) {
                    if voters.len() == 1 {
                        return Err(WriteError::Invalid("cannot remove the last voter".into()));
                    }
                    self.change(ChangeMembers::RemoveVoters(gone), false).await?
                } else {
                    self.change(ChangeMembers::RemoveNodes(gone), false).await?
                };
                // It stops serving at once rather than when it next asks.
                self.tell_removed(id, &addr, index).await;
                Ok(())
            }
        }
    }

    fn is_voter(&self, id: NodeId) -> bool {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().any(|v| v == id)
    }

    async fn add_learner(&self, id: NodeId, addr: String) -> Result<(), WriteError> {
        tracing::info!(node = id, %addr, "adding node {id} as a learner");
        self.change(ChangeMembers::AddNodes(BTreeMap::from([(id, BasicNode { addr })])), true).await?;
        Ok(())
    }

    async fn promote(&self, id: NodeId) -> Result<(), WriteError> {
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true).await?;
        tracing::info!(node = id, "node {id} is a voter");
        Ok(())
    }

    /// Proposes a membership change when its turn comes, and waits until it is committed; the index of its
    /// log entry.
    async fn change(&self, changes: ChangeMembers<NodeId, BasicNode>, retain: bool) -> Result<u64, WriteError> {
        let _turn = self.membership_turn.lock().await;
        let deadline = Instant::now() + CHANGE_PATIENCE;
        let mut pause = Duration::from_millis(100);
        loop {
            let proposed = tokio::time::timeout(COMMIT_PATIENCE, self.raft.change_membership(changes.clone(), retain));
            match proposed.await {
                Ok(Ok(written)) => return Ok(written.log_id.index),
                Ok(Err(OpenraftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(e),
                )))) if Instant::now() + pause < deadline => {
                    tracing::debug!("a membership change waits for the one under way: {e}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Ok(Err(OpenraftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    return Err(WriteError::NotLeader { leader: f.leader_id })
                }
                Ok(Err(OpenraftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                    return Err(WriteError::Invalid(e.to_string()))
                }
                Ok(Err(e)) => return Err(WriteError::Fatal(e.to_string())),
                Err(_) => {
                    return Err(WriteError::Unavailable(format!(
                        "the membership change was not committed within {} s (it is applied later if a quorum \
                         of the old and the new voters answers)",
                        COMMIT_PATIENCE.as_secs()
                    )))
                }
            }
        }
    }

    /// How far node `id` is behind this node's log, which must be the leader's.
    fn catch_up(&self, id: NodeId) -> CatchUp {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow();
        if metrics.state != ServerState::Leader {
            return CatchUp::NotLeader;
        }
        if metrics.membership_config.membership().get_node(&id).is_none() {
            return CatchUp::Gone;
        }
        let matched = metrics.replication.as_ref().and_then(|r| r.get(&id)).and_then(|l| l.map(|l| l.index));
        let Some(last) = metrics.last_log_index else { return CatchUp::Done };
        match matched {
            Some(m) if last.saturating_sub(m) <= self.settings.catch_up_lag => CatchUp::Done,
            _ => CatchUp::Behind { matched, last },
        }
    }

    /// Why node `id` has not caught up, with what the leader last heard when reaching it failed.
    fn behind(&self, id: NodeId, matched: Option<u64>, last: u64) -> String {
        let matched = matched.map_or_else(|| "none (it has received nothing)".to_string(), |m| m.to_string());
        let mut why = format!(
            "node {id} has not caught up: its matched log index is {matched}, the leader's last index is {last} \
             (caught up is at most {} entries behind)",
            self.settings.catch_up_lag
        );
        if let Some(failure) = self.peers.last_failure(id) {
            why.push_str(&format!("; the leader's last request to it failed: {failure}"));
        }
        why
    }

    /// Waits until node `id`, a learner, has caught up with this node (the leader), logging its progress.
    async fn wait_until_caught_up(&self, id: NodeId) -> Result<(), WriteError> {
        let timeout = self.settings.catch_up_timeout;
        let started = Instant::now();
        let mut next_report = started + PROGRESS_EVERY;
        let mut metrics = self.raft.metrics();
        loop {
            let (matched, last) = match self.catch_up(id) {
                CatchUp::Done => {
                    tracing::info!(node = id, "node {id} has caught up");
                    return Ok(());
                }
                CatchUp::Gone => {
                    return Err(WriteError::Invalid(format!("node {id} was removed while it was catching up")))
                }
                CatchUp::NotLeader => return Err(WriteError::NotLeader { leader: None }),
                CatchUp::Behind { matched, last } => (matched, last),
            };
            let now = Instant::now();
            if now >= started + timeout {
                let why = self.behind(id, matched, last);
                tracing::warn!(node = id, "{why} after {} s: it stays a learner", timeout.as_secs());
                return Err(WriteError::NotCaughtUp(format!(
                    "{why} after {} s (raft.catch_up_timeout_secs). It stays a learner, not a voter: once it has \
                     caught up, promote it (`jeton cluster promote --id {id}`), or remove it (`jeton cluster \
                     remove --id {id}`)",
                    timeout.as_secs()
                )));
            }
            if now >= next_report {
                let matched = matched.map_or_else(|| "none".to_string(), |m| m.to_string());
                tracing::info!(node = id, "node {id} is catching up: matched log index {matched} of {last}");
                next_report = now + PROGRESS_EVERY;
            }
            let wake = next_report.min(started + timeout);
            if let Ok(Err(_)) = tokio::time::timeout_at(wake, metrics.changed()).await {
                return Err(WriteError::Fatal("raft stopped".into()));
            }
        }
    }
}
