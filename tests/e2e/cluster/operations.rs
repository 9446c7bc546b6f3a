//! Operating a cluster as the README's "Operations" section says: restarts in any order with the join
//! target down, a lone member serving without a quorum, health checks, removing a node, and the `cluster`
//! tools over HTTPS.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{jeton, metric, org_names, wait_for_orgs, Cluster};
use crate::harness::{spawn, Node, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET};

/// `jeton serve` for node `id` with its config and `extra` arguments, adopted once it answers `health`.
async fn serve(c: &Cluster, id: u8, extra: &[&str], health: &str) -> Node {
    let config = c.config(id, 10_000);
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let port = c.ports[id as usize - 1].0;
    let (child, log) = spawn(&c.data_dir(id), port, &args);
    Node::adopt_when(child, port, &c.data_dir(id), log, health).await
}

/// `GET /api/health` with a query (`""`, `"?live"`, `"?writable"`).
async fn health(node: &Node, query: &str) -> (u16, Value) {
    node.get(&format!("/api/health{query}")).await
}

/// Introspects `token` on `node` with the admin application's credentials.
async fn introspect(node: &Node, token: &str) -> (u16, Value) {
    node.post_form_basic("/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", token)]).await
}

/// Waits until `node`'s `/api/health{query}` answers `status`.
async fn wait_for_health(node: &Node, query: &str, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = health(node, query).await;
        if s == status {
            return v;
        }
        assert!(Instant::now() < deadline, "/api/health{query} did not become {status}: {s} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The path a probe (`livenessProbe`, `readinessProbe`, `startupProbe`) of `deploy/k8s/jeton.yaml` asks.
fn k8s_probe(probe: &str) -> String {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s/jeton.yaml")).unwrap();
    let mut lines = manifest.lines().skip_while(|l| l.trim() != format!("{probe}:"));
    let line = lines.find(|l| l.contains("path:")).unwrap_or_else(|| panic!("no {probe} in the manifest"));
    let path = line.split("path:").nth(1).unwrap().split(',').next().unwrap();
    path.trim().trim_matches('"').to_string()
}

fn stop_all(c: &mut Cluster) {
    for n in c.nodes.iter_mut().flatten() {
        n.stop();
    }
    for n in c.nodes.iter_mut() {
        *n = None;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn members_restart_with_their_join_target_down() {
    let mut c = Cluster::three(10_000).await;
    let (s, v) = c.add_org(3, "before-the-restart").await;
    assert_eq!(s, 200, "{v}");
    wait_for_orgs(c.node(2), &["before-the-restart".to_string()].into()).await;
    stop_all(&mut c);
    // Node 1, the join target every other node names (as conf/cluster and deploy/ do, permanently), stays
    // down. Nodes 2 and 3 start with `--join` node 1 all the same: members ignore it, and the two of them
    // are a quorum.
    c.start(3, Some(1), &[]).await;
    c.start(2, Some(1), &[]).await;
    for id in [2, 3] {
        let out = c.node(id).output();
        assert!(out.contains("the join target") && out.contains("is ignored"), "node {id}: {out}");
        assert!(!out.contains("cannot join"), "node {id}: {out}");
    }
    let leader = c.leader().await;
    assert!(leader == 2 || leader == 3, "leader {leader}");
    let (s, v) = c.add_org(3, "with-node-1-down").await;
    assert_eq!(s, 200, "{v}");
    assert!(org_names(c.node(2)).await.contains(&"before-the-restart".to_string()));
    // Node 1 comes back and catches up.
    c.start(1, None, &[]).await;
    wait_for_orgs(c.node(1), &["before-the-restart".to_string(), "with-node-1-down".to_string()].into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_stop_and_a_restart_in_reverse_order_bring_everything_back() {
    // The StatefulSet starts its pods together, so a full restart may bring them up in any order.
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s/jeton.yaml")).unwrap();
    assert!(manifest.contains("\n  podManagementPolicy: Parallel\n"), "deploy/k8s/jeton.yaml");
    let mut c = Cluster::three(10_000).await;
    let (s, v) = c.add_org(1, "kept-across-the-restart").await;
    assert_eq!(s, 200, "{v}");
    let token = c.node(2).admin_token().await;
    let want = ["kept-across-the-restart".to_string()].into();
    for id in 1..=3 {
        wait_for_orgs(c.node(id), &want).await;
    }
    stop_all(&mut c);
    // As they were first started (nodes 2 and 3 with --join node 1), in reverse order: node 3 comes up
    // alone, without a quorum, and serves; node 2 makes a quorum with it; node 1 comes last.
    c.start(3, Some(1), &[]).await;
    let (s, v) = health(c.node(3), "").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("degraded")), "{v}");
    c.start(2, Some(1), &[]).await;
    c.start(1, None, &[]).await;
    c.leader().await;
    for id in 1..=3 {
        wait_for_health(c.node(id), "?writable", 200).await;
        assert!(org_names(c.node(id)).await.contains(&"kept-across-the-restart".to_string()), "node {id}");
        let (s, v) = introspect(c.node(id), &token).await;
        assert_eq!((s, &v["active"]), (200, &json!(true)), "node {id}: {v}");
    }
    let (s, v) = c.add_org(3, "after-the-restart").await;
    assert_eq!(s, 200, "{v}");
    for id in 1..=3 {
        wait_for_orgs(c.node(id), &["after-the-restart".to_string()].into()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lone_member_serves_tokens_and_introspection_and_refuses_writes() {
    let mut c = Cluster::three(10_000).await;
    let (id, secret) =
        c.node(1).app_with_user("known-before", "app-known", json!({}), "frank", "Frank-Password-1").await;
    wait_for_orgs(c.node(3), &["known-before".to_string()].into()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.node(3).password_grant(&id, &secret, "frank", "Frank-Password-1").await.0 != 200 {
        assert!(Instant::now() < deadline, "node 3 does not know frank yet");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = c.node(3).admin_token().await;

    // Nodes 1 and 2 go: node 3 keeps running without a leader (and campaigns in vain), then restarts
    // alone. It starts, and serves.
    c.nodes[0].take().unwrap().stop();
    c.nodes[1].take().unwrap().stop();
    let v = wait_for_health(c.node(3), "?writable", 503).await;
    assert_eq!((v["status"].as_str(), &v["ready"]), (Some("degraded"), &json!(true)), "{v}");
    assert_eq!(health(c.node(3), "").await.0, 200, "still ready: it serves from its state");
    let (s, v) = introspect(c.node(3), &before).await;
    assert_eq!((s, &v["active"]), (200, &json!(true)), "{v}");
    c.nodes[2].take().unwrap().stop();
    c.start(3, None, &[]).await;
    let lone = c.node(3);
    let (s, v) = health(lone, "").await;
    assert_eq!(s, 200, "ready: it serves from its state: {v}");
    assert_eq!(
        (v["status"].as_str(), &v["writable"], &v["ready"]),
        (Some("degraded"), &json!(false), &json!(true)),
        "{v}"
    );
    assert_eq!(health(lone, "?live").await.0, 200);
    let (s, v) = health(lone, "?writable").await;
    assert_eq!((s, &v["leader"]), (503, &Value::Null), "{v}");
    assert_eq!(metric(lone, "jeton_raft_has_quorum").await, 0.0);
    // Kubernetes keeps it (liveness) and sends it clients (readiness).
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(lone.get(&k8s_probe(probe)).await.0, 200, "{probe}");
    }
    assert!(lone.output().contains("serving from this node's own state without a quorum"), "{}", lone.output());

    // Tokens, introspection, keys and reads from its own state.
    let fresh = lone.admin_token().await;
    for token in [&before, &fresh] {
        let (s, v) = introspect(lone, token).await;
        assert_eq!((s, &v["active"]), (200, &json!(true)), "{v}");
    }
    let (s, v) = lone.password_grant(&id, &secret, "frank", "Frank-Password-1").await;
    assert_eq!(s, 200, "a password grant: {v}");
    assert_eq!(v["refresh_token"], "", "no refresh token without a quorum to record it: {v}");
    let (s, jwks) = lone.get("/.well-known/jwks").await;
    assert!(s == 200 && jwks["keys"].as_array().is_some_and(|k| !k.is_empty()), "{s} {jwks}");
    assert!(org_names(lone).await.contains(&"known-before".to_string()));
    // Writes: 503 with the reason, and nothing written.
    let (s, v) = c.add_org(3, "without-a-quorum").await;
    assert_eq!(s, 503, "{v}");
    assert!(v["msg"].as_str().is_some_and(|m| m.contains("no quorum")), "{v}");
    let (s, v) =
        lone.post_form_basic("/oauth/revoke", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &fresh)]).await;
    assert_eq!((s, v["error"].as_str()), (503, Some("temporarily_unavailable")), "{v}");
    assert!(v["error_description"].as_str().is_some_and(|m| m.contains("no quorum")), "{v}");
    assert_eq!(health(lone, "?live").await.0, 200, "it never exits for lack of a leader");

    // A second member brings the quorum back: writable again.
    c.start(1, None, &[]).await;
    let v = wait_for_health(c.node(3), "?writable", 200).await;
    assert_eq!((v["status"].as_str(), &v["writable"]), (Some("ok"), &json!(true)), "{v}");
    assert_eq!(metric(c.node(3), "jeton_raft_has_quorum").await, 1.0);
    let (s, v) = c.add_org(3, "with-a-quorum").await;
    assert_eq!(s, 200, "{v}");
    assert!(!org_names(c.node(1)).await.contains(&"without-a-quorum".to_string()), "a refused write appeared");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_liveness_readiness_and_quorum_apart() {
    let node = Node::start().await;
    for query in ["", "?ready", "?live", "?writable"] {
        let (s, v) = health(&node, query).await;
        assert_eq!(s, 200, "{query}: {v}");
        assert_eq!(
            (v["status"].as_str(), &v["live"], &v["ready"], &v["writable"], &v["removed"]),
            (Some("ok"), &json!(true), &json!(true), &json!(true), &json!(false)),
            "{query}: {v}"
        );
    }
    assert_eq!(metric(&node, "jeton_raft_has_quorum").await, 1.0);
    assert_eq!(metric(&node, "jeton_node_removed").await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_node_stops_answering_and_stays_removed() {
    let mut c = Cluster::three(10_000).await;
    let token = c.node(3).admin_token().await;
    let (s, v) = introspect(c.node(3), &token).await;
    assert_eq!((s, &v["active"]), (200, &json!(true)), "{v}");

    // Removed with the CLI, through node 1. Once that returns, node 3 knows.
    let out = jeton(&["cluster", "remove", "--url", &c.node(1).base, "--id", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.wait_for_voters(1, &[1, 2]).await;
    let removed = c.node(3);
    let assert_removed = |s: u16, v: &Value, what: &str| {
        assert_eq!(s, 503, "{what}: {v}");
        assert!(v.to_string().contains("removed from the cluster"), "{what}: {v}");
        assert_ne!(v["active"], json!(true), "{what}: {v}");
    };
    let (s, v) = introspect(removed, &token).await;
    assert_removed(s, &v, "introspection");
    let (s, v) = removed
        .post_form_basic("/oauth/token", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("grant_type", "client_credentials")])
        .await;
    assert_removed(s, &v, "token");
    assert!(v.get("access_token").is_none());
    let (s, v) = removed.get("/.well-known/jwks").await;
    assert_removed(s, &v, "jwks");
    let (s, v) = removed.admin_get("get-organizations").await;
    assert_removed(s, &v, "admin read");
    let (s, v) = c.add_org(3, "on-the-removed-node").await;
    assert_removed(s, &v, "admin write");
    // Health says so; liveness holds (restarting would not change it).
    let (s, v) = health(removed, "").await;
    assert_eq!((s, v["status"].as_str(), &v["removed"]), (503, Some("removed"), &json!(true)), "{v}");
    assert_eq!(health(removed, "?live").await.0, 200);
    assert_eq!(health(removed, "?writable").await.0, 503);
    assert_eq!(metric(removed, "jeton_node_removed").await, 1.0);
    // Kubernetes keeps it running (a restart changes nothing) but sends it no clients.
    assert_eq!(removed.get(&k8s_probe("livenessProbe")).await.0, 200);
    assert_eq!(removed.get(&k8s_probe("readinessProbe")).await.0, 503);

    // The token is revoked after the removal: the removed node never says it is active.
    let (s, _) =
        c.node(1).post_form_basic("/oauth/revoke", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &token)]).await;
    assert_eq!(s, 200);
    // Revoked on the members (the revocation was applied on the leader when it was answered; node 2
    // follows moments later), while the removed node keeps answering 503.
    let deadline = Instant::now() + Duration::from_secs(10);
    for member in [1, 2] {
        while introspect(c.node(member), &token).await.1["active"] != json!(false) {
            assert!(Instant::now() < deadline, "node {member} still answers active after the revocation");
            let (s, v) = introspect(c.node(3), &token).await;
            assert_removed(s, &v, "introspection while the revocation spreads");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (s, v) = introspect(c.node(3), &token).await;
    assert_removed(s, &v, "introspection after the revocation");
    let (s, v) = c.add_org(1, "after-the-removal").await;
    assert_eq!(s, 200, "{v}");
    assert!(!org_names(c.node(2)).await.contains(&"on-the-removed-node".to_string()));
    let said = |node: &Node| node.output().matches("this node was removed from the cluster").count();
    assert_eq!(said(c.node(3)), 1, "logged once: {}", c.node(3).output());
    assert!(c.data_dir(3).join("removed.json").exists());

    // Restarted on its data dir (with its join target, as it was first started): still removed.
    c.nodes[2].take().unwrap().stop();
    let restarted = serve(&c, 3, &["--join", &c.raft_addr(1)], "/api/health?live").await;
    let (s, v) = health(&restarted, "").await;
    assert_eq!((s, v["status"].as_str()), (503, Some("removed")), "{v}");
    let (s, v) = introspect(&restarted, &token).await;
    assert_removed(s, &v, "introspection after a restart");
    assert!(restarted.output().contains("this node was removed from its cluster"), "{}", restarted.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_removed_while_down_finds_out_when_it_starts() {
    let mut c = Cluster::three(10_000).await;
    let token = c.node(3).admin_token().await;
    c.nodes[2].take().unwrap().stop();
    let (s, v) = c.node(1).admin_post("cluster-remove", json!({"id": 3})).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) =
        c.node(1).post_form_basic("/oauth/revoke", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &token)]).await;
    assert_eq!(s, 200);
    // Its state still names it a member and the token active; the members it asks at start tell it
    // otherwise before it serves anything.
    let node = serve(&c, 3, &[], "/api/health?live").await;
    let (s, v) = introspect(&node, &token).await;
    assert_eq!(s, 503, "{v}");
    assert_ne!(v["active"], json!(true), "{v}");
    let (s, v) = health(&node, "").await;
    assert_eq!((s, v["status"].as_str()), (503, Some("removed")), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_tools_speak_https_with_cacert() {
    let node = Node::start_configured("", true).await;
    let url = node.base.clone();
    let own_cert = node.dir.join("tls-cert.pem");
    assert!(url.starts_with("https://"), "{url}");
    let out = jeton(&["cluster", "status", "--url", &url, "--cacert", own_cert.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).expect("status prints JSON");
    assert_eq!(status["voters"].as_array().map(Vec::len), Some(1), "{status}");

    // Without --cacert the node's self-signed certificate is not trusted: one error line saying what to do.
    let out = jeton(&["cluster", "status", "--url", &url]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: cannot reach https://"), "{err}");
    assert!(err.contains("--cacert"), "{err}");
    assert_eq!(err.matches(&url).count(), 1, "the URL once: {err}");
    assert_eq!(err.matches("UnknownIssuer").count(), 1, "the cause once: {err}");

    // A certificate that did not sign the node's: refused, saying so.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let other_cert = node.dir.join("other-cert.pem");
    std::fs::write(&other_cert, other.cert.pem()).unwrap();
    let out = jeton(&["cluster", "status", "--url", &url, "--cacert", other_cert.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not signed by --cacert"), "{err}");
    // A file that holds no certificate.
    let out = jeton(&["cluster", "status", "--url", &url, "--cacert", node.dir.join("tls-key.pem").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no PEM certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_cut_off_while_it_was_removed_finds_out_once_it_reaches_the_members() {
    let c = Cluster::three(10_000).await;
    let token = c.node(3).admin_token().await;
    c.proxy.partition(3);
    // Removed while cut off: the leader cannot tell it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = c.node(1).admin_post("cluster-remove", json!({"id": 3})).await;
        if s == 200 {
            break;
        }
        // Node 3 may have been the leader: the others elect one first.
        assert!(Instant::now() < deadline, "{s} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, v) = health(c.node(3), "").await;
    assert_eq!(s, 200, "not told yet: {v}");
    c.proxy.heal();
    // It asks the members once it has heard from none for two election timeouts.
    let v = wait_for_health(c.node(3), "?live", 200).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !health(c.node(3), "").await.1["removed"].as_bool().unwrap_or(false) {
        assert!(Instant::now() < deadline, "node 3 never found out: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = introspect(c.node(3), &token).await;
    assert_eq!(s, 503, "{v}");
    assert!(c.node(3).output().contains("this node was removed from the cluster"), "{}", c.node(3).output());
}
