//! Joins and learners: nodes that join at once, a node is a voter only once it has caught up, `promote`
//! checks that, `add-learner` waits for it, and a node started outside the cluster is told so while the
//! leader keeps its log short.

use std::path::PathBuf;
use std::process::{Child, Stdio};

use super::*;
use crate::harness::spawn_with_env;

/// Starts `jeton serve` for node `id` as [`Cluster::start`] does (joining through `join`), with more
/// environment variables, without waiting for it to be ready.
fn spawn_node(c: &Cluster, id: u8, join: Option<u8>, extra: &[&str], env: &[(&str, &str)]) -> (Child, PathBuf) {
    let mut args = vec!["--config".to_string(), c.config(id, 10_000).display().to_string()];
    if let Some(j) = join {
        args.extend(["--join".to_string(), c.raft_addr(j)]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_with_env(&c.data_dir(id), c.ports[id as usize - 1].0, &args, env)
}

/// Waits until node `id` has adopted node `child` (spawned by [`spawn_node`]) as ready.
async fn adopt(c: &mut Cluster, id: u8, (child, log): (Child, PathBuf)) {
    let node = Node::adopt(child, c.ports[id as usize - 1].0, &c.data_dir(id), log).await;
    c.nodes[id as usize - 1] = Some(node);
}

/// The ids of `key` (`voters` or `learners`) in a status.
fn ids(status: &Value, key: &str) -> Vec<u64> {
    status[key].as_array().expect("members").iter().filter_map(|m| m["id"].as_u64()).collect()
}

/// Node `id`'s status once `done` holds for it, or after 30 s.
async fn status_within_30s(c: &Cluster, id: u8, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = c.status(id).await;
        if done(&status) || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `jeton cluster …` against node `via`'s admin API, with the test's admin credentials.
fn cluster_cli(c: &Cluster, via: u8, args: &[&str]) -> std::process::Output {
    let url = c.node(via).base.clone();
    let mut all = vec!["cluster", args[0], "--url", &url];
    all.extend(&args[1..]);
    jeton(&all)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_joining_at_once_both_become_voters() {
    let mut c = Cluster::new(3).await;
    c.start(1, None, &[]).await;
    // Nobody reaches node 2 until node 3 is a voter: node 2's join stays under way (a learner that has not
    // caught up) while node 3 joins, and goes through. Before, node 2 was made a voter at once, and node 3
    // failed with "the cluster is already undergoing a configuration change".
    c.proxy.deafen(2);
    let two = spawn_node(&c, 2, Some(1), &[], &[]);
    let member = |s: &Value| ids(s, "learners").contains(&2) || ids(s, "voters").contains(&2);
    let status = status_within_30s(&c, 1, member).await;
    assert_eq!(ids(&status, "learners"), [2], "node 2 is a learner until it has caught up: {status}");
    let three = spawn_node(&c, 3, Some(1), &[], &[]);
    let status = status_within_30s(&c, 1, |s| ids(s, "voters") == [1, 3]).await;
    assert_eq!(ids(&status, "voters"), [1, 3], "node 3 did not become a voter: {status}");
    assert_eq!(ids(&status, "learners"), [2], "{status}");
    c.proxy.heal();
    adopt(&mut c, 3, three).await;
    adopt(&mut c, 2, two).await;
    c.wait_for_voters(1, &[1, 2, 3]).await;
    let mut want = BTreeSet::new();
    for id in 1..=3 {
        let name = format!("written-on-{id}");
        let (s, v) = c.add_org(id, &name).await;
        assert_eq!(s, 200, "{v}");
        want.insert(name);
    }
    for id in 1..=3 {
        wait_for_orgs(c.node(id), &want).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_that_fails_midway_leaves_no_voter() {
    let mut c = Cluster::new(5).await;
    c.raft_extra = "catch_up_timeout_secs = 3".into();
    c.start(1, None, &[]).await;
    c.start(2, Some(1), &[]).await;
    c.start(3, Some(1), &[]).await;
    for i in 0..20 {
        let (s, v) = c.add_org(1, &format!("before-{i}")).await;
        assert_eq!(s, 200, "{v}");
    }
    // Nobody reaches node 4: it never catches up. Its join fails, saying why, and it stays a learner.
    c.proxy.deafen(4);
    let err = c.serve_fails(4, Some(1), None);
    assert!(err.contains("node 4 has not caught up: its matched log index is none"), "{err}");
    assert!(err.contains("It stays a learner, not a voter"), "{err}");
    let status = c.status(1).await;
    assert_eq!(ids(&status, "voters"), [1, 2, 3], "{status}");
    assert_eq!(ids(&status, "learners"), [4], "{status}");

    // Node 5 dies while it is catching up.
    c.proxy.deafen(5);
    let (mut five, _) = spawn_node(&c, 5, Some(1), &[], &[]);
    let status = status_within_30s(&c, 1, |s| ids(s, "learners").contains(&5) || ids(s, "voters").contains(&5)).await;
    assert_eq!(ids(&status, "voters"), [1, 2, 3], "node 5 became a voter before it caught up: {status}");
    assert!(ids(&status, "learners").contains(&5), "{status}");
    five.kill().unwrap();
    five.wait().unwrap();
    c.proxy.heal();
    // Longer than the leader waits for it to catch up: it never becomes a voter.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let status = c.status(1).await;
        assert_eq!(ids(&status, "voters"), [1, 2, 3], "{status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Writes commit on the three voters.
    for via in 1..=3 {
        let (s, v) = c.add_org(via, &format!("after-{via}")).await;
        assert_eq!(s, 200, "{v}");
    }
    // The operator removes the two learners.
    for id in ["4", "5"] {
        let out = cluster_cli(&c, 2, &["remove", "--id", id]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    c.wait_for_voters(1, &[1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_learner_waits_until_caught_up_and_promote_refuses_a_learner_behind() {
    let mut c = Cluster::new(4).await;
    c.raft_extra = "catch_up_timeout_secs = 8".into();
    c.start(1, None, &[]).await;
    c.start(2, Some(1), &[]).await;
    for i in 0..20 {
        let (s, v) = c.add_org(2, &format!("org-{i}")).await;
        assert_eq!(s, 200, "{v}");
    }
    // add-learner returns once the learner has caught up: node 3, admitted, is started with --join,
    // --learner and its token (as the README shows) while add-learner waits.
    let token = c.admit(1, 3);
    let url = c.node(1).base.clone();
    let add = crate::harness::jeton_command()
        .args(["cluster", "add-learner", "--url", &url, "--id", "3", "--addr", &c.raft_addr(3)])
        .env("JETON_ADMIN_CLIENT_ID", ADMIN_CLIENT_ID)
        .env("JETON_ADMIN_CLIENT_SECRET", ADMIN_CLIENT_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run jeton");
    let three = spawn_node(&c, 3, Some(1), &["--learner"], &[("JETON_JOIN_TOKEN", &token)]);
    adopt(&mut c, 3, three).await;
    let out = tokio::task::spawn_blocking(move || add.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("waiting until it has caught up"), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("add-learner prints the status");
    assert_eq!(ids(&answer, "learners"), [3], "{answer}");
    let leader = c.status(1).await;
    let matched = leader["replication"]["3"].as_u64().expect("node 3 has a matched index");
    let last = leader["lastLogIndex"].as_u64().unwrap();
    assert!(last - matched <= 100, "node 3 is {} entries behind: {leader}", last - matched);
    assert_eq!(c.status(3).await["state"], "Learner");

    // Node 4 is added but never started: add-learner fails, saying why, and node 4 stays a learner.
    let out = cluster_cli(&c, 2, &["add-learner", "--id", "4", "--addr", &c.raft_addr(4)]);
    assert!(!out.status.success(), "add-learner returned before node 4 caught up");
    let err = stderr(&out);
    assert!(err.contains("node 4 has not caught up: its matched log index is none"), "{err}");
    assert!(err.contains("after 8 s") && err.contains("It stays a learner"), "{err}");
    let status = c.status(1).await;
    assert_eq!((ids(&status, "voters"), ids(&status, "learners")), (vec![1, 2], vec![3, 4]), "{status}");

    // Promote refuses node 4, saying why; node 3, caught up, is promoted.
    let out = cluster_cli(&c, 2, &["promote", "--id", "4"]);
    assert!(!out.status.success(), "node 4 was promoted although it has nothing");
    let err = stderr(&out);
    assert!(err.contains("409"), "{err}");
    assert!(err.contains("node 4 has not caught up: its matched log index is none"), "{err}");
    assert!(err.contains("the leader's last index is") && err.contains("--force"), "{err}");
    let out = cluster_cli(&c, 2, &["promote", "--id", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = status_within_30s(&c, 1, |s| ids(s, "voters") == [1, 2, 3]).await;
    assert_eq!((ids(&status, "voters"), ids(&status, "learners")), (vec![1, 2, 3], vec![4]), "{status}");

    // --force promotes it anyway (three of the four voters answer), and remove takes it out again.
    let out = cluster_cli(&c, 1, &["promote", "--id", "4", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = status_within_30s(&c, 1, |s| ids(s, "voters") == [1, 2, 3, 4]).await;
    assert_eq!(ids(&status, "voters"), [1, 2, 3, 4], "{status}");
    let (s, v) = c.add_org(3, "with-a-forced-voter").await;
    assert_eq!(s, 200, "{v}");
    let out = cluster_cli(&c, 1, &["remove", "--id", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_for_voters(1, &[1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_started_outside_the_cluster_is_told_so_once_and_the_leader_logs_little() {
    let mut c = Cluster::new(3).await;
    c.raft_extra = "catch_up_timeout_secs = 2".into();
    c.start(1, None, &[]).await;
    // Node 2 starts without --join: it forms a cluster of its own, of the same name (its config names the
    // bootstrap file).
    c.start(2, None, &[]).await;
    // Node 3 too, without the bootstrap file: a cluster of another name.
    let text = std::fs::read_to_string(c.config(3, 10_000)).unwrap();
    let text: String = text.lines().filter(|l| !l.starts_with("bootstrap")).map(|l| format!("{l}\n")).collect();
    let config = c.tmp.path().join("node-3-alone.toml");
    std::fs::write(&config, text).unwrap();
    let node = Node::start_in(&c.data_dir(3), c.ports[2].0, &["--config", config.to_str().unwrap()]).await;
    c.nodes[2] = Some(node);

    // An administrator adds both as learners: they never catch up, and add-learner says why.
    for id in [2u8, 3] {
        let out = cluster_cli(&c, 1, &["add-learner", "--id", &id.to_string(), "--addr", &c.raft_addr(id)]);
        assert!(!out.status.success(), "node {id} caught up");
        let err = stderr(&out);
        assert!(err.contains(&format!("node {id} has not caught up")), "{err}");
        assert!(err.contains("the leader's last request to it failed") && err.contains("403"), "{err}");
    }
    // The leader keeps asking them, with back-off: a few lines in its log, not thousands a second.
    let before = c.node(1).output().lines().count();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let log = c.node(1).output();
    let grown = log.lines().count() - before;
    assert!(
        grown < 60,
        "the leader logged {grown} lines in 6 s: {}",
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    // The leader says once what the refusals mean; each outside node says once why it refuses.
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.node(1).output().matches("refuses its Raft requests").count() < 2 {
        assert!(Instant::now() < deadline, "the leader never explained: {}", c.node(1).output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in [2u8, 3] {
        let log = c.node(1).output();
        assert_eq!(log.matches(&format!("node {id} at ")).count(), 1, "{log}");
    }
    let told = c.node(2).output();
    assert_eq!(told.matches("as to a member of its cluster").count(), 1, "{told}");
    assert!(told.contains("started outside it (without --join"), "{told}");
    let told = c.node(3).output();
    assert_eq!(told.matches("that cluster counts this node (node 3) as a member").count(), 1, "{told}");
    // They keep serving their own clusters; the administrator removes them from this one.
    for id in ["2", "3"] {
        let out = cluster_cli(&c, 1, &["remove", "--id", id]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    c.wait_for_voters(1, &[1]).await;
}
