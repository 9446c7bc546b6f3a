//! RADIUS accounting sessions, read only: `get-radius-accountings` (an organization's sessions, newest
//! first, paged; optionally one user's) and `get-radius-accounting` (one session). Casdoor stores the same
//! rows (`radius_accounting`) but serves no API for them: the paths follow its naming, and the JSON keeps the
//! field names and types of its `RadiusAccounting` struct, plus a few of Jeton's own.
//!
//! The sessions are written by the RADIUS listener (`Command::RecordAccounting`), never here.

use jeton_raft::model::AccountingSession;
use jeton_raft::RaftError;
use serde_json::{json, Value};

use super::{fail, ok, ok2, AdminReply, Page};
use crate::clock::rfc3339;
use crate::service::Edge;

/// Sessions answered when the request names no page (the largest page there is): an organization can have
/// millions, and the total in `data2` says when there are more.
const UNPAGED: usize = 1000;

/// Go's zero `time.Time` as JSON: what Casdoor shows for a time never set (a session not stopped yet), and
/// what its struct decodes.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time(unix: i64) -> String {
    if unix <= 0 {
        return GO_ZERO_TIME.to_string();
    }
    rfc3339(unix)
}

/// A session as the admin API shows it: Casdoor's `RadiusAccounting` fields (its `name` is
/// `<nas client>/<session id>` here, so `id` = `owner/name` finds it), then Jeton's own.
pub(crate) fn accounting_view(s: &AccountingSession) -> Value {
    json!({
        "owner": s.organization,
        "name": format!("{}/{}", s.nas_client, s.acct_session_id),
        "createdTime": time(s.start_time),
        "username": s.user_name,
        "serviceType": s.service_type.unwrap_or(0),
        "nasId": s.nas_identifier,
        "nasIpAddr": s.nas_ip_address,
        "nasPortId": s.nas_port_id,
        "nasPortType": s.nas_port_type.unwrap_or(0),
        "nasPort": s.nas_port.unwrap_or(0),
        "framedIpAddr": s.framed_ip_address,
        "framedIpNetmask": s.framed_ip_netmask,
        "acctSessionId": s.acct_session_id,
        "acctSessionTime": s.session_time,
        "acctInputTotal": s.input_octets,
        "acctOutputTotal": s.output_octets,
        "acctInputPackets": s.input_packets,
        "acctOutputPackets": s.output_packets,
        "acctTerminateCause": s.terminate_cause.unwrap_or(0),
        "lastUpdate": time(s.last_update),
        "acctStartTime": time(s.start_time),
        "acctStopTime": time(s.stop_time),
        "nasClient": s.nas_client,
        "acctMultiSessionId": s.acct_multi_session_id,
        "acctStatusType": s.status.as_str(),
        "callingStationId": s.calling_station_id,
        "calledStationId": s.called_station_id,
        "eventCount": s.event_count,
    })
}

impl Edge {
    /// `GET /api/get-radius-accountings?owner=ORG[&user=LOGIN][&p=N&pageSize=M]`: newest (by start time)
    /// first, the total in `data2`.
    pub(super) fn radius_accountings(&self, owner: &str, user: &str, page: Option<Page>) -> AdminReply {
        if owner.is_empty() {
            return fail(400, "owner is required");
        }
        let (offset, limit) = page.map(|p| ((p.number - 1).saturating_mul(p.size), p.size)).unwrap_or((0, UNPAGED));
        let read = if user.is_empty() {
            self.store.accounting_sessions(owner, offset, limit)
        } else {
            self.store.accounting_sessions_of_user(owner, user, offset, limit)
        };
        let views = read.and_then(|page| {
            let views = page
                .sessions
                .iter()
                .map(|r| r.to_owned().map(|s| accounting_view(&s)))
                .collect::<Result<Vec<Value>, RaftError>>()?;
            Ok((views, page.total))
        });
        match views {
            Ok((views, total)) => ok2(Value::Array(views), json!(total)),
            Err(e) => {
                tracing::error!("admin radius accountings: {e}");
                fail(500, "internal error")
            }
        }
    }

    /// `GET /api/get-radius-accounting?id=ORG/NAS-CLIENT/SESSION-ID` (the session id may contain `/`): the
    /// session, or `data: null` when there is none in that organization.
    pub(super) fn radius_accounting(&self, id: &str) -> AdminReply {
        let mut parts = id.splitn(3, '/');
        let (Some(owner), Some(nas), Some(session)) = (parts.next(), parts.next(), parts.next()) else {
            return fail(400, "id must be owner/nasClient/acctSessionId");
        };
        if owner.is_empty() || nas.is_empty() || session.is_empty() {
            return fail(400, "id must be owner/nasClient/acctSessionId");
        }
        match self.store.accounting_session(nas, session).and_then(|r| r.map(|r| r.to_owned()).transpose()) {
            Ok(Some(s)) if s.organization == owner => ok(accounting_view(&s)),
            Ok(_) => ok(Value::Null),
            Err(e) => {
                tracing::error!("admin radius accounting: {e}");
                fail(500, "internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The endpoints over a real single-node state (sled + openraft in a temporary directory), with
    //! sessions written as the RADIUS listener writes them (`Edge::write`), read through the admin gate.

    use std::sync::Arc;

    use jeton_raft::model::{AccountingEvent, AccountingStatus, Application, Organization};
    use jeton_raft::node::RaftSettings;
    use jeton_raft::{Command, Outcome, PutMode, ReplicaNode};
    use serde_json::{json, Value};

    use crate::http::admin::{AdminAuth, AdminReply};
    use crate::keys::Kek;
    use crate::metrics::Metrics;
    use crate::oauth::Params;
    use crate::secrets::sha256;
    use crate::{Edge, EdgeConfig};

    const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn app(name: &str, client_id: &str, secret: &str) -> Command {
        let app = Application {
            owner: "admin".into(),
            name: name.into(),
            organization: "built-in".into(),
            client_id: client_id.into(),
            client_secret_digest: sha256(secret.as_bytes()).to_vec(),
            ..Default::default()
        };
        Command::PutApplication { app, mode: PutMode::Create }
    }

    fn org(name: &str) -> Command {
        Command::PutOrganization {
            org: Organization { name: name.into(), ..Default::default() },
            mode: PutMode::Create,
        }
    }

    /// A node with the admin application (`admin-client`), another application (`other-client`) and the
    /// organizations built-in, acme and other.
    async fn start() -> (Arc<Edge>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = ReplicaNode::start(
            &dir.path().join("data"),
            1,
            "127.0.0.1:1",
            &RaftSettings::default(),
            Default::default(),
        )
        .await
        .expect("node");
        let commands = vec![
            org("built-in"),
            org("acme"),
            org("other"),
            app("app-built-in", "admin-client", "admin-secret"),
            app("app-other", "other-client", "other-secret"),
        ];
        assert_eq!(node.write(Command::Batch { commands }).await.expect("write").outcome, Outcome::Applied);
        let edge = Edge::new(node, Kek::from_hex(KEK).expect("kek"), EdgeConfig::default(), Metrics::disabled())
            .expect("edge");
        (edge, dir)
    }

    /// Calls an admin path as the front end does: the gate, then the call.
    async fn call(edge: &Edge, path_and_query: &str, basic: Option<(&str, &str)>) -> AdminReply {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let params: Params = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
        match edge.admin_gate(path, "GET", &AdminAuth { bearer: None, basic }) {
            Ok(grant) => edge.admin(grant, &params, b"").await,
            Err(refused) => refused,
        }
    }

    async fn get(edge: &Edge, path_and_query: &str) -> Value {
        let r = call(edge, path_and_query, Some(("admin-client", "admin-secret"))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    fn event(status: AccountingStatus, org: &str, user: &str, id: &str, at: i64) -> AccountingEvent {
        AccountingEvent {
            status,
            event_time: at,
            nas_client: "nas-1".into(),
            acct_session_id: id.into(),
            organization: org.into(),
            user_name: user.into(),
            ..Default::default()
        }
    }

    async fn record(edge: &Edge, event: AccountingEvent) -> Outcome {
        edge.write(Command::RecordAccounting { event }).await.expect("write")
    }

    #[tokio::test]
    async fn sessions_are_listed_newest_first_paged_and_read_one_by_one() {
        use AccountingStatus::*;
        let (edge, _dir) = start().await;
        let mut start = event(Start, "acme", "alice", "s/1", 1_700_000_000);
        start.framed_ip_address = "10.0.0.7".into();
        start.nas_port = Some(12);
        assert_eq!(record(&edge, start).await, Outcome::Applied);
        let mut stop = event(Stop, "acme", "alice", "s/1", 1_700_000_300);
        (stop.session_time, stop.terminate_cause) = (300, Some(1));
        stop.input_octets = AccountingEvent::octets(10, 1);
        stop.output_octets = AccountingEvent::octets(20, 0);
        assert_eq!(record(&edge, stop).await, Outcome::Applied);
        assert_eq!(record(&edge, event(Start, "acme", "bob", "s2", 1_700_000_100)).await, Outcome::Applied);
        assert_eq!(record(&edge, event(Start, "other", "carol", "s3", 1_700_000_200)).await, Outcome::Applied);
        let refused = record(&edge, event(Start, "acme", "alice", "", 1_700_000_400)).await;
        assert!(matches!(refused, Outcome::Invalid(_)), "{refused:?}");

        let v = get(&edge, "get-radius-accountings?owner=acme").await;
        assert_eq!((v["status"].as_str(), &v["data2"]), (Some("ok"), &json!(2)), "{v}");
        let names: Vec<&str> = v["data"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(names, ["nas-1/s2", "nas-1/s/1"], "newest first");
        let alice = &v["data"][1];
        assert_eq!(alice["owner"], "acme");
        assert_eq!(alice["username"], "alice");
        assert_eq!(alice["acctSessionId"], "s/1");
        assert_eq!(alice["acctStatusType"], "Stop");
        assert_eq!(alice["acctInputTotal"], 4_294_967_306u64);
        assert_eq!(alice["acctOutputTotal"], 20);
        assert_eq!(alice["acctSessionTime"], 300);
        assert_eq!(alice["acctTerminateCause"], 1);
        assert_eq!(alice["framedIpAddr"], "10.0.0.7");
        assert_eq!(alice["nasPort"], 12);
        assert_eq!(alice["acctStartTime"], "2023-11-14T22:13:20Z");
        assert_eq!(alice["acctStopTime"], "2023-11-14T22:18:20Z");
        assert_eq!(alice["eventCount"], 2);
        assert_eq!(v["data"][0]["acctStopTime"], super::GO_ZERO_TIME, "still open");

        let v = get(&edge, "get-radius-accountings?owner=acme&p=2&pageSize=1").await;
        assert_eq!(
            (v["data"].as_array().unwrap().len(), &v["data"][0]["name"], &v["data2"]),
            (1, &json!("nas-1/s/1"), &json!(2))
        );
        let v = get(&edge, "get-radius-accountings?owner=acme&user=bob").await;
        assert_eq!(
            (v["data"].as_array().unwrap().len(), &v["data"][0]["username"], &v["data2"]),
            (1, &json!("bob"), &json!(1))
        );
        let v = get(&edge, "get-radius-accountings?owner=nowhere").await;
        assert_eq!((&v["data"], &v["data2"]), (&json!([]), &json!(0)));

        let v = get(&edge, "get-radius-accounting?id=acme/nas-1/s/1").await;
        assert_eq!((&v["data"]["name"], &v["data"]["username"]), (&json!("nas-1/s/1"), &json!("alice")));
        let v = get(&edge, "get-radius-accounting?id=other/nas-1/s/1").await;
        assert_eq!(v["data"], Value::Null, "another organization's session is not found through this one");
        let v = get(&edge, "get-radius-accounting?id=acme/nas-2/s/1").await;
        assert_eq!(v["data"], Value::Null);

        for bad in
            ["get-radius-accountings", "get-radius-accountings?owner=acme&p=0", "get-radius-accounting?id=acme/nas-1"]
        {
            let r = call(&edge, bad, Some(("admin-client", "admin-secret"))).await;
            assert_eq!((r.status, r.body["status"].as_str()), (400, Some("error")), "{bad}: {}", r.body);
        }
    }

    #[tokio::test]
    async fn only_administrators_read_sessions() {
        let (edge, _dir) = start().await;
        assert_eq!(record(&edge, event(AccountingStatus::Start, "acme", "alice", "s1", 100)).await, Outcome::Applied);
        for path in ["get-radius-accountings?owner=acme", "get-radius-accounting?id=acme/nas-1/s1"] {
            let r = call(&edge, path, Some(("other-client", "other-secret"))).await;
            assert_eq!(r.status, 403, "{path}: another application");
            let r = call(&edge, path, Some(("admin-client", "wrong-secret"))).await;
            assert_eq!(r.status, 401, "{path}: a wrong secret");
            let r = call(&edge, path, None).await;
            assert_eq!(r.status, 401, "{path}: no credentials");
            assert!(r.body["data"].is_null());
        }
        // Read paths answer GET (or POST, as some SDKs send reads) only.
        let refused = edge.admin_gate(
            "get-radius-accountings",
            "PUT",
            &AdminAuth { bearer: None, basic: Some(("admin-client", "admin-secret")) },
        );
        assert_eq!(refused.err().map(|r| r.status), Some(405));
    }
}
