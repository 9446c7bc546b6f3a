//! `/api/health`: whether the node lives, serves from its state, and could commit a write now.

use hyper::header::{HeaderValue, CACHE_CONTROL};
use serde_json::json;

use super::decode::form_pairs;
use super::{json_reply, Reply};
use crate::service::Edge;

/// Which question `/api/health` answers.
#[derive(Clone, Copy, PartialEq, Debug)]
enum HealthCheck {
    /// `?live`: the process works (a removed node too: restarting it would not change that).
    Live,
    /// No query, or `?ready`: the node serves from its state (with or without a quorum); not removed.
    Ready,
    /// `?writable`: a write could be committed now (a leader is known and reachable).
    Writable,
}

impl HealthCheck {
    fn from_query(query: Option<&str>) -> HealthCheck {
        let mut check = HealthCheck::Ready;
        for (key, _) in form_pairs(query.unwrap_or_default()) {
            match key.as_str() {
                "live" => check = HealthCheck::Live,
                "writable" => check = HealthCheck::Writable,
                _ => {}
            }
        }
        check
    }
}

/// `/api/health`: 200 when the asked check holds, 503 when not; the body always reports all three.
pub(super) fn health(edge: &Edge, query: Option<&str>) -> Reply {
    let check = HealthCheck::from_query(query);
    let removed = edge.node.is_removed();
    let writable = edge.node.has_quorum();
    let m = edge.node.raft.metrics().borrow().clone();
    // Raft stopped by itself (a storage failure): reads still work, but only a restart brings writes back.
    let raft_failed = m.running_state.is_err() && !removed;
    let live = !raft_failed;
    let ready = live && !removed;
    let status = match (removed, raft_failed, writable) {
        (true, _, _) => "removed",
        (_, true, _) => "failed",
        (_, _, true) => "ok",
        // Serving from its own state; writes are refused until a quorum is back.
        _ => "degraded",
    };
    let ok = match check {
        HealthCheck::Live => live,
        HealthCheck::Ready => ready,
        HealthCheck::Writable => ready && writable,
    };
    let body = json!({
        "status": status,
        "live": live,
        "ready": ready,
        "writable": writable,
        "removed": removed,
        "nodeId": edge.node.id,
        "leader": m.current_leader,
        "term": m.current_term,
        "appliedIndex": m.last_applied.map(|l| l.index),
    });
    let mut r = json_reply(if ok { 200 } else { 503 }, body.to_string());
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_queries_pick_the_check() {
        assert_eq!(HealthCheck::from_query(None), HealthCheck::Ready);
        assert_eq!(HealthCheck::from_query(Some("ready")), HealthCheck::Ready);
        assert_eq!(HealthCheck::from_query(Some("live")), HealthCheck::Live);
        assert_eq!(HealthCheck::from_query(Some("writable")), HealthCheck::Writable);
        assert_eq!(HealthCheck::from_query(Some("writable=1")), HealthCheck::Writable);
        assert_eq!(HealthCheck::from_query(Some("other")), HealthCheck::Ready);
    }
}
