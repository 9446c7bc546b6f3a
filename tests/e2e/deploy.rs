//! The deploy files as they run: the container entrypoint's settings and StatefulSet identity (with a
//! stand-in binary that prints what it was given), three nodes brought up through the entrypoint on
//! loopback, and a config whose relative data dir is found as the systemd unit starts it.
//! (`deploy/check.sh` runs the static checks: shellcheck, systemd-analyze verify, kubernetes-validate.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const ENTRYPOINT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/entrypoint.sh");

/// Runs deploy/entrypoint.sh with `args` and only the given environment, with a stand-in jeton that
/// prints its JETON_* environment and arguments: (exit success, JETON_* variables, arguments, stderr).
fn entrypoint(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, Vec<(String, String)>, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let fake = dir.join("fake-jeton");
    std::fs::write(&fake, "#!/bin/sh\nenv | grep '^JETON_' | sort\necho \"ARGS $*\"\n").expect("fake jeton");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = Command::new("sh")
        .arg(ENTRYPOINT)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JETON_BIN", &fake)
        .envs(env.iter().copied())
        .output()
        .expect("run the entrypoint");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut vars = Vec::new();
    let mut argv = String::new();
    for line in stdout.lines() {
        if let Some(a) = line.strip_prefix("ARGS ") {
            argv = a.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            if k != "JETON_BIN" {
                vars.push((k.to_string(), v.to_string()));
            }
        }
    }
    (out.status.success(), vars, argv, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn var<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The image's defaults (data dir on the volume, HTTP on all interfaces) fill only what the config file
/// and the environment leave unset; a StatefulSet pod's identity comes from its name.
#[test]
fn entrypoint_defaults_never_override_a_mounted_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let full = tmp.path().join("full.toml");
    std::fs::write(&full, "data_dir = \"/srv/jeton\"\n[http]\naddr = \"127.0.0.1:9000\"\n[raft]\naddr = \"x:8001\"\n")
        .expect("config");
    let raft_only = tmp.path().join("raft-only.toml");
    std::fs::write(&raft_only, "[raft]\naddr = \"x:8001\"\n").expect("config");
    let (full_s, raft_only_s) = (full.to_str().expect("path"), raft_only.to_str().expect("path"));

    // No config: the image's defaults.
    let (ok, vars, args, err) = entrypoint(tmp.path(), &["serve"], &[]);
    assert!(ok, "{err}");
    assert_eq!(var(&vars, "JETON_DATA_DIR"), Some("/var/lib/jeton"), "{vars:?}");
    assert_eq!(var(&vars, "JETON_HTTP_ADDR"), Some("0.0.0.0:8000"), "{vars:?}");
    assert_eq!(args, "serve");
    // A config that sets both (as a flag, as --config=, or in JETON_CONFIG): neither is overridden.
    for (args, env) in [
        (vec!["serve", "--config", full_s], vec![]),
        (vec!["serve", &format!("--config={full_s}")], vec![]),
        (vec!["serve"], vec![("JETON_CONFIG", full_s)]),
    ] {
        let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
        let (ok, vars, _, err) = entrypoint(tmp.path(), &args, &env);
        assert!(ok, "{err}");
        assert_eq!(var(&vars, "JETON_DATA_DIR"), None, "{args:?}: {vars:?}");
        assert_eq!(var(&vars, "JETON_HTTP_ADDR"), None, "{args:?}: {vars:?}");
    }
    // A [raft] addr is not the HTTP address: that default still applies, as does the data dir's.
    let (_, vars, _, _) = entrypoint(tmp.path(), &["serve", "--config", raft_only_s], &[]);
    assert_eq!(var(&vars, "JETON_HTTP_ADDR"), Some("0.0.0.0:8000"), "{vars:?}");
    assert_eq!(var(&vars, "JETON_DATA_DIR"), Some("/var/lib/jeton"), "{vars:?}");
    // What the operator sets is kept.
    let (_, vars, _, _) = entrypoint(tmp.path(), &["serve"], &[("JETON_DATA_DIR", "/data")]);
    assert_eq!(var(&vars, "JETON_DATA_DIR"), Some("/data"), "{vars:?}");
    // Other commands pass through untouched.
    let (ok, vars, args, _) = entrypoint(tmp.path(), &["cluster", "status"], &[]);
    assert!(ok);
    assert!(vars.is_empty(), "{vars:?}");
    assert_eq!(args, "cluster status");

    // StatefulSet: pod jeton-2 is node 3 and joins through jeton-0; pod 0 joins nobody.
    let peers = [("JETON_PEER_SERVICE", "jeton-peers.jeton.svc.cluster.local")];
    let (ok, vars, _, err) = entrypoint(tmp.path(), &["serve"], &[peers[0], ("JETON_POD_NAME", "jeton-2")]);
    assert!(ok, "{err}");
    assert_eq!(var(&vars, "JETON_NODE_ID"), Some("3"));
    assert_eq!(var(&vars, "JETON_RAFT_ADDR"), Some("jeton-2.jeton-peers.jeton.svc.cluster.local:8001"));
    assert_eq!(var(&vars, "JETON_JOIN"), Some("jeton-0.jeton-peers.jeton.svc.cluster.local:8001"));
    let (_, vars, _, _) = entrypoint(tmp.path(), &["serve"], &[peers[0], ("JETON_POD_NAME", "jeton-0")]);
    assert_eq!((var(&vars, "JETON_NODE_ID"), var(&vars, "JETON_JOIN")), (Some("1"), None), "{vars:?}");
    let pattern = [peers[0], ("JETON_POD_NAME", "db-1"), ("JETON_PEER_ADDR_PATTERN", "10.0.0.{n}:7000")];
    let (_, vars, _, _) = entrypoint(tmp.path(), &["serve"], &pattern);
    assert_eq!(var(&vars, "JETON_RAFT_ADDR"), Some("10.0.0.2:7000"), "{vars:?}");
    assert_eq!(var(&vars, "JETON_JOIN"), Some("10.0.0.1:7000"), "{vars:?}");
    let (ok, _, _, err) = entrypoint(tmp.path(), &["serve"], &[peers[0], ("JETON_POD_NAME", "web")]);
    assert!(!ok && err.contains("does not end in -<ordinal>"), "{err}");
}

/// Starts `jeton serve` through deploy/entrypoint.sh as StatefulSet pod `pod`.
fn spawn_pod(pod: &str, config: &Path, dir: &Path, http: u16, pattern: &str) -> (Child, PathBuf) {
    std::fs::create_dir_all(dir.parent().expect("parent")).expect("dir");
    let log_path = dir.with_extension("log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = Command::new("sh")
        .arg(ENTRYPOINT)
        .args(["serve", "--config"])
        .arg(config)
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .env("JETON_BIN", env!("CARGO_BIN_EXE_jeton"))
        .env("JETON_LDAP_ADDR", "127.0.0.1:0")
        .env("JETON_PEER_SERVICE", "jeton-peers")
        .env("JETON_PEER_ADDR_PATTERN", pattern)
        .env("JETON_POD_NAME", pod)
        .env("JETON_DATA_DIR", dir)
        .env("JETON_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("JETON_ADMIN_CLIENT_ID", ADMIN_CLIENT_ID)
        .env("JETON_ADMIN_CLIENT_SECRET", ADMIN_CLIENT_SECRET)
        .env("JETON_LOG", "info")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the entrypoint");
    (child, log_path)
}

/// The entrypoint's logic for three pods on loopback (the pattern puts pod N on 127.0.0.N+1): jeton-0
/// starts the cluster, jeton-1 and jeton-2 join it one after the other, and all three end up voters at
/// the addresses the entrypoint derived; a member restarted through the entrypoint comes back, also while jeton-0 is down.
/// (Joins of two pods at once depend on the cluster's own join handling and are tested with the cluster.)
#[tokio::test]
async fn entrypoint_brings_up_three_nodes_on_loopback() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = tmp.path().join("ca");
    let run = |args: &[&str]| {
        let out = crate::harness::jeton_command().args(args).output().expect("run jeton");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ca_s = ca.to_str().expect("path");
    run(&["cluster", "ca", "--out", ca_s]);
    // One certificate per pod, naming its node id (as the compose file's certs service makes them).
    for n in 1..=3 {
        let (name, id, host) = (format!("node-{n}"), n.to_string(), format!("127.0.0.{n}"));
        run(&["cluster", "cert", "--ca-dir", ca_s, "--name", &name, "--node-id", &id, "--host", &host, "--out", ca_s]);
    }
    let raft_port = free_port();
    let https: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let pattern = format!("127.0.0.{{n}}:{raft_port}");
    let config = tmp.path().join("jeton.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"http://127.0.0.1:{}\"\n[raft]\nheartbeat_ms = 150\nelection_timeout_min_ms = 1000\n\
             election_timeout_max_ms = 2000\n[cluster]\nca = \"ca/ca.pem\"\ncert = \"ca/node-{{node_id}}.pem\"\n\
             key = \"ca/node-{{node_id}}-key.pem\"\nbootstrap = \"ca/bootstrap.json\"\n\
             join_token_file = \"ca/node-{{node_id}}.join\"\n",
            https[0]
        ),
    )
    .expect("config");
    let dir = |i: usize| tmp.path().join(format!("jeton-{i}"));
    let mut nodes = Vec::new();
    for (i, http) in https.iter().enumerate() {
        let (child, log) = spawn_pod(&format!("jeton-{i}"), &config, &dir(i), *http, &pattern);
        nodes.push(Node::adopt(child, *http, &dir(i), log).await);
    }
    let status = wait_for_voters(&nodes[0], 3).await;
    let mut voters: Vec<(u64, String)> = status["voters"]
        .as_array()
        .expect("voters")
        .iter()
        .map(|m| (m["id"].as_u64().expect("id"), m["addr"].as_str().expect("addr").to_string()))
        .collect();
    voters.sort();
    let expected: Vec<(u64, String)> = (1..=3).map(|n| (n, format!("127.0.0.{n}:{raft_port}"))).collect();
    assert_eq!(voters, expected, "{status}");
    for (i, node) in nodes.iter().enumerate() {
        let (s, v) = node.admin_get("get-cluster-status").await;
        assert_eq!((s, v["data"]["nodeId"].as_u64()), (200, Some(i as u64 + 1)), "{v}");
    }
    // A write on a joiner reaches the first pod.
    let (s, v) =
        nodes[2].admin_post("add-organization", serde_json::json!({"owner": "admin", "name": "via-pod-2"})).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = nodes[0].admin_get("get-organization?id=admin/via-pod-2&consistency=linearizable").await;
    assert_eq!(v["data"]["name"], "via-pod-2", "{v}");

    // jeton-1 restarted through the entrypoint (which names jeton-0 to join again) is a member still.
    nodes[1].stop();
    let (child, log) = spawn_pod("jeton-1", &config, &dir(1), https[1], &pattern);
    nodes[1] = Node::adopt(child, https[1], &dir(1), log).await;
    let (_, v) = nodes[1].admin_get("get-organization?id=admin/via-pod-2").await;
    assert_eq!(v["data"]["name"], "via-pod-2", "{v}");
    assert_eq!(wait_for_voters(&nodes[0], 3).await["voters"].as_array().map(Vec::len), Some(3));

    // And again with jeton-0, the pod it names to join, down: it ignores the join target and, with
    // jeton-2, keeps a quorum.
    nodes[0].stop();
    nodes[1].stop();
    let (child, log) = spawn_pod("jeton-1", &config, &dir(1), https[1], &pattern);
    nodes[1] = Node::adopt(child, https[1], &dir(1), log).await;
    assert!(nodes[1].output().contains("is ignored"), "{}", nodes[1].output());
    let (s, v) =
        nodes[1].admin_post("add-organization", serde_json::json!({"owner": "admin", "name": "without-pod-0"})).await;
    assert_eq!(s, 200, "{v}");
}

/// The cluster status of `node` once it lists `n` voters (a joiner is promoted once it has caught up).
async fn wait_for_voters(node: &Node, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = node.admin_get("get-cluster-status").await;
        if s == 200 && v["data"]["voters"].as_array().map(Vec::len) == Some(n) {
            return v["data"].clone();
        }
        assert!(Instant::now() < deadline, "not {n} voters after 60 s: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// As the systemd unit runs it — working directory elsewhere (`/` there), only `--config` given — a
/// relative data_dir in the config file is found beside the file, not in the working directory.
#[tokio::test]
async fn a_relative_data_dir_resolves_against_the_config_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let etc = tmp.path().join("etc");
    let elsewhere = tmp.path().join("cwd");
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::create_dir_all(&elsewhere).expect("cwd");
    let port = free_port();
    std::fs::write(etc.join("jeton.toml"), format!("data_dir = \"state\"\n[http]\naddr = \"127.0.0.1:{port}\"\n"))
        .expect("config");
    let log_path = tmp.path().join("jeton.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = crate::harness::jeton_command()
        .args(["serve", "--config"])
        .arg(etc.join("jeton.toml"))
        .current_dir(&elsewhere)
        .env("JETON_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("JETON_ADMIN_CLIENT_ID", ADMIN_CLIENT_ID)
        .env("JETON_ADMIN_CLIENT_SECRET", ADMIN_CLIENT_SECRET)
        .env_remove("JETON_DATA_DIR")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn jeton");
    let mut node = Node::adopt(child, port, &etc.join("state"), log_path).await;
    assert!(etc.join("state").join("identity.json").exists(), "data dir beside the config: {}", node.output());
    assert!(!elsewhere.join("state").exists(), "nothing in the working directory");
    node.stop();
}
