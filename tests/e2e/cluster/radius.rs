//! RADIUS on a three-node cluster: each node checks Access-Requests against its own replicated state, so a
//! user added (or a password changed) through one node is accepted on every other node as soon as that node
//! has applied the write. Driven with FreeRADIUS' `radclient` (tests/e2e/radius/install.sh).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use super::ldap::{user_on, wait_for_user};
use super::Cluster;
use crate::harness::free_port;

/// The quick-start secret (`--radius-secret`: a client 127.0.0.1) of every node.
const SECRET: &str = "cluster-radius-secret";

/// A PAP Access-Request for acme's `user` (Class acme) with a Message-Authenticator, through `radclient`:
/// the code of the reply (`Access-Accept`, ...), or what radclient printed when none came.
fn pap(addr: &str, user: &str, password: &str) -> Result<String, String> {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "5", addr, "auth", SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run radclient (tests/e2e/radius/install.sh installs it)");
    let lines = format!(
        "User-Name = \"{user}\"\nUser-Password = \"{password}\"\nClass = \"acme\"\nMessage-Authenticator = 0x00\n"
    );
    child.stdin.take().expect("stdin").write_all(lines.as_bytes()).expect("write attributes");
    let out = child.wait_with_output().expect("radclient");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Received ").and_then(|r| r.split_whitespace().next()).map(str::to_string))
        .ok_or_else(|| format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_added_on_one_node_is_accepted_over_radius_on_the_others() {
    let mut c = Cluster::new(3).await;
    let radius: Vec<String> = (0..3)
        .map(|_| loop {
            let port = free_port();
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                break format!("127.0.0.1:{port}");
            }
        })
        .collect();
    for id in 1..=3u8 {
        let join = if id == 1 { None } else { Some(1) };
        let args = ["--radius-addr", &radius[id as usize - 1], "--radius-secret", SECRET];
        c.start_with(id, join, &args, 10_000).await;
    }
    // Written through node 1, read on nodes 2 and 3 (whichever is the leader).
    let writer = 1u8;
    c.node(writer).app_with_user("acme", "app-acme", json!({}), "dora", "Dora-Password-1").await;
    let written = user_on(c.node(writer), "acme/dora", true).await;
    assert_eq!(written["name"], "dora", "{written}");

    for reader in 2..=3u8 {
        let addr = &radius[reader as usize - 1];
        wait_for_user(c.node(reader), "acme/dora", &written["updatedTime"]).await;
        // Applied: accepted at once, without retrying.
        assert_eq!(pap(addr, "dora", "Dora-Password-1"), Ok("Access-Accept".into()), "node {reader}");
    }
    // (Few wrong passwords in all: five would lock the account, on every node.)
    assert_eq!(pap(&radius[2], "dora", "Dora-Password-2"), Ok("Access-Reject".into()));

    // A new password, set through node 3: once applied, the new one is accepted on every node, and the old
    // one rejected.
    let mut u = user_on(c.node(3), "acme/dora", true).await;
    u["password"] = json!("Dora-Password-2");
    u["passwordType"] = json!("");
    let (s, v) = c.node(3).admin_post("update-user?id=acme/dora", u).await;
    assert_eq!(s, 200, "{v}");
    let changed = user_on(c.node(3), "acme/dora", true).await;
    for reader in 1..=3u8 {
        let addr = &radius[reader as usize - 1];
        wait_for_user(c.node(reader), "acme/dora", &changed["updatedTime"]).await;
        assert_eq!(pap(addr, "dora", "Dora-Password-2"), Ok("Access-Accept".into()), "new password, node {reader}");
    }
    assert_eq!(pap(&radius[0], "dora", "Dora-Password-1"), Ok("Access-Reject".into()), "old password");
}
