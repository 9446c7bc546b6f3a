//! Cluster membership over the admin API: adding a learner, promoting it, removing a node, and admitting a
//! node to join (its one-time join token).

use jeton_raft::cluster::MembershipChange;
use jeton_raft::{Command, Outcome, WriteError};
use serde_json::{json, Value};

use super::{fail, ok, to_value, write_failed, AdminReply, Op};
use crate::clock::now;
use crate::service::Edge;

impl Edge {
    /// `cluster-add-learner` (`{"id": N, "addr": "host:port"}`: answers once the learner has caught up),
    /// `cluster-promote` (`{"id": N, "force": false}`: refused with 409 while N has not caught up, unless
    /// forced) and `cluster-remove` (`{"id": N}`): membership changes, carried out by the leader.
    pub(super) async fn cluster_change(&self, op: Op, body: &Value) -> AdminReply {
        let Some(id) = body.get("id").and_then(Value::as_u64) else {
            return fail(400, "id (a node id) is required");
        };
        let change = match op {
            Op::AddLearner => match body.get("addr").and_then(Value::as_str) {
                Some(addr) if !addr.is_empty() => MembershipChange::AddLearner { id, addr: addr.to_string() },
                _ => return fail(400, "addr (the node's Raft address, host:port) is required"),
            },
            Op::Promote => match body.get("force") {
                None | Some(Value::Null) => MembershipChange::Promote { id, force: false },
                Some(Value::Bool(force)) => MembershipChange::Promote { id, force: *force },
                Some(_) => return fail(400, "force must be true or false"),
            },
            _ => MembershipChange::Remove { id },
        };
        match self.node.change_membership(change).await {
            Ok(()) => ok(to_value(&self.node.status())),
            Err(WriteError::Invalid(m)) => fail(400, m),
            Err(WriteError::NotCaughtUp(m)) => fail(409, m),
            Err(e) => write_failed(e.into()),
        }
    }

    /// `cluster-admit` (`{"id": N, "ttlHours": H}`, default 24 h): admits node N to join, and answers the
    /// one-time join token it needs (`data.token`; shown once, only its digest is stored).
    pub(super) async fn cluster_admit(&self, body: &Value) -> AdminReply {
        let Some(id) = body.get("id").and_then(Value::as_u64).filter(|id| *id > 0) else {
            return fail(400, "id (a node id, from 1) is required");
        };
        let hours = match body.get("ttlHours") {
            None | Some(Value::Null) => 24,
            Some(v) => match v.as_u64().filter(|h| (1..=24 * 30).contains(h)) {
                Some(h) => h,
                None => return fail(400, "ttlHours must be a whole number of hours from 1 to 720"),
            },
        };
        let token = match jeton_raft::admission::JoinToken::generate(&self.node.identity.cluster, id) {
            Ok(t) => t,
            Err(e) => return fail(500, e),
        };
        let admission = token.admission(now(), hours as i64 * 3600);
        let expires_at = admission.expires_at;
        match self.write(Command::AdmitNode { admission }).await {
            Ok(Outcome::Applied) => ok(json!({
                "id": id,
                "cluster": self.node.identity.cluster,
                "token": token.expose(),
                "expiresAt": expires_at,
            })),
            Ok(Outcome::Invalid(m)) => fail(400, m),
            Ok(other) => fail(400, format!("{other:?}")),
            Err(e) => write_failed(e),
        }
    }
}
