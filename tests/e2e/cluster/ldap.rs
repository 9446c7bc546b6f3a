//! The LDAP directory of a three-node cluster: each node answers binds and searches from its own replicated
//! state, so a user added (or a password changed) through one node binds and is found on every other node
//! as soon as that node has applied the write.

use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchResult};
use serde_json::{json, Value};

use super::Cluster;
use crate::harness::{free_port, Node, ADMIN_PASSWORD};

/// `ldapwhoami -x` against `addr`: (exit status, what it printed).
fn whoami(addr: &str, dn: &str, password: &str) -> (i32, String) {
    let out = std::process::Command::new("ldapwhoami")
        .args(["-x", "-H", &format!("ldap://{addr}"), "-D", dn, "-w", password])
        .output()
        .expect("run ldapwhoami (tests/e2e/ldap/install.sh installs it)");
    let text = String::from_utf8_lossy(if out.status.success() { &out.stdout } else { &out.stderr });
    (out.status.code().unwrap_or(-1), text.trim().to_string())
}

/// A user as node `node` has it (its own state), or as the leader has it (`linearizable`).
pub(super) async fn user_on(node: &Node, id: &str, linearizable: bool) -> Value {
    let consistency = if linearizable { "&consistency=linearizable" } else { "" };
    let (s, v) = node.admin_get(&format!("get-user?id={id}{consistency}")).await;
    assert_eq!(s, 200, "{v}");
    v["data"].clone()
}

/// Waits until `node` has applied the write that gave user `id` this `updatedTime`.
pub(super) async fn wait_for_user(node: &Node, id: &str, updated: &Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while user_on(node, id, false).await["updatedTime"] != *updated {
        assert!(Instant::now() < deadline, "{} did not apply the write of {id}", node.base);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_added_on_one_node_binds_and_is_found_on_the_others() {
    let mut c = Cluster::new(3).await;
    let ldap: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    for id in 1..=3u8 {
        let join = if id == 1 { None } else { Some(1) };
        c.start_with(id, join, &["--ldap-addr", &ldap[id as usize - 1]], 10_000).await;
    }
    let leader = c.leader().await;
    // Written through a follower (forwarded to the leader), read on the two other nodes.
    let writer = (1..=3).find(|i| *i != leader).expect("a follower");
    c.node(writer).app_with_user("acme", "app-acme", json!({}), "dora", "Dora-Password-1").await;
    // The writer answers once the leader has applied the write; the others apply it when they do.
    let written = user_on(c.node(writer), "acme/dora", true).await;
    assert_eq!(written["name"], "dora", "{written}");

    for reader in (1..=3).filter(|i| *i != writer) {
        let node = c.node(reader);
        let addr = &ldap[reader as usize - 1];
        wait_for_user(node, "acme/dora", &written["updatedTime"]).await;
        // Applied: the bind works at once, without retrying.
        assert_eq!(
            whoami(addr, "cn=dora,ou=acme", "Dora-Password-1"),
            (0, "dn:uid=dora,ou=acme".to_string()),
            "node {reader}"
        );
        assert_eq!(whoami(addr, "uid=dora,ou=acme,dc=example,dc=com", "wrong").0, 49, "node {reader}");
        // And the global administrator finds the user there.
        let (conn, mut client) = LdapConnAsync::with_settings(
            LdapConnSettings::new().set_conn_timeout(Duration::from_secs(10)),
            &format!("ldap://{addr}"),
        )
        .await
        .expect("connect");
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        let r = client.simple_bind("cn=admin,ou=built-in", ADMIN_PASSWORD).await.expect("bind");
        assert_eq!(r.rc, 0, "node {reader}: {r:?}");
        let SearchResult(entries, r) = client
            .search("ou=acme", Scope::Subtree, "(mail=dora@acme.example)", vec!["uid", "mail"])
            .await
            .expect("search");
        assert_eq!(r.rc, 0, "node {reader}: {r:?}");
        let dns: Vec<String> = entries.into_iter().map(|e| SearchEntry::construct(e).dn).collect();
        assert_eq!(dns, ["uid=dora,ou=acme"], "node {reader}");
    }

    // A new password, set through another node: once applied, the old one fails and the new one binds.
    let changer = (1..=3).find(|i| *i != writer).expect("another node");
    let mut u = user_on(c.node(changer), "acme/dora", true).await;
    u["password"] = json!("Dora-Password-2");
    u["passwordType"] = json!("");
    let (s, v) = c.node(changer).admin_post("update-user?id=acme/dora", u).await;
    assert_eq!(s, 200, "{v}");
    let changed = user_on(c.node(changer), "acme/dora", true).await;
    for reader in 1..=3 {
        let addr = &ldap[reader as usize - 1];
        wait_for_user(c.node(reader), "acme/dora", &changed["updatedTime"]).await;
        assert_eq!(whoami(addr, "cn=dora,ou=acme", "Dora-Password-1").0, 49, "old password on node {reader}");
        assert_eq!(whoami(addr, "cn=dora,ou=acme", "Dora-Password-2").0, 0, "new password on node {reader}");
    }
}
