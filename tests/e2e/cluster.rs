//! Clusters of real `jeton` processes on loopback: replication, forwarded writes, leader failure, partitions,
//! full restarts and membership changes; who the node-to-node listener lets in (admissions, removed nodes,
//! certificates, limits).
//!
//! Node `i` listens for its peers on `127.0.0.i` and reaches them from that address. Between the nodes sits
//! a TCP proxy owned by the test (the address in the membership is the proxy's), which can cut a node off in
//! both directions: connections to it and connections from its address.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{free_port, response, Node, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET};

/// Joins and learners (a child module: it uses this one's cluster harness).
mod joins;
/// The LDAP directory on every node: binds and searches after a write through another (a child module, as
/// joins).
mod ldap;
/// Restarts, quorum loss, removal, health and the cluster tools over TLS (a child module, as joins).
mod operations;
/// RADIUS on every node: Access-Requests after a write through another (a child module, as joins).
mod radius;
/// Browser sessions on every node: ended through one node, gone on the others (a child module, as joins).
mod sessions;
/// Browser sign-in across nodes: codes redeemed anywhere once, sessions and sign-out everywhere (a child
/// module, as joins).
mod signin;

/// A TCP proxy in front of each node's Raft listener, able to partition nodes.
#[derive(Clone, Default)]
struct Proxy {
    /// Nodes cut off from the others.
    cut: Arc<Mutex<HashSet<u8>>>,
    /// Nodes nobody can open a connection to (their own connections to others still work).
    deaf: Arc<Mutex<HashSet<u8>>>,
    /// Open relayed connections: (target node, source node, task).
    open: Arc<Mutex<Vec<(u8, u8, tokio::task::AbortHandle)>>>,
}

impl Proxy {
    /// Relays `127.0.0.{node}:{port}` → `127.0.0.{node}:{to}`.
    async fn relay(&self, node: u8, port: u16, to: u16) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.".to_string() + &node.to_string(), port))
            .await
            .expect("proxy listen");
        let proxy = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, peer)) = listener.accept().await else { continue };
                let source = match peer.ip() {
                    std::net::IpAddr::V4(ip) => ip.octets()[3],
                    _ => 0,
                };
                if proxy.is_cut(node) || proxy.is_cut(source) || proxy.deaf.lock().unwrap().contains(&node) {
                    continue; // dropped: the connection closes at once
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect((format!("127.0.0.{node}"), to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                proxy.open.lock().unwrap().push((node, source, task.abort_handle()));
            }
        });
    }

    fn is_cut(&self, node: u8) -> bool {
        self.cut.lock().unwrap().contains(&node)
    }

    /// Cuts `node` off: drops its open connections and refuses new ones, both ways.
    fn partition(&self, node: u8) {
        self.cut.lock().unwrap().insert(node);
        for (to, from, task) in self.open.lock().unwrap().iter() {
            if *to == node || *from == node {
                task.abort();
            }
        }
    }

    /// Nobody reaches `node` any more (open connections to it are dropped); it still reaches the others.
    fn deafen(&self, node: u8) {
        self.deaf.lock().unwrap().insert(node);
        for (to, _, task) in self.open.lock().unwrap().iter() {
            if *to == node {
                task.abort();
            }
        }
    }

    fn heal(&self) {
        self.cut.lock().unwrap().clear();
        self.deaf.lock().unwrap().clear();
    }
}

/// The files and addresses of one cluster.
struct Cluster {
    tmp: tempfile::TempDir,
    proxy: Proxy,
    issuer: String,
    nodes: Vec<Option<Node>>,
    /// Per node (index = id - 1): http port, raft listener port, proxy port.
    ports: Vec<(u16, u16, u16)>,
    /// Lines added to every node's `[raft]` section.
    raft_extra: String,
}

fn jeton(args: &[&str]) -> std::process::Output {
    crate::harness::jeton_command()
        .args(args)
        .env("JETON_ADMIN_CLIENT_ID", ADMIN_CLIENT_ID)
        .env("JETON_ADMIN_CLIENT_SECRET", ADMIN_CLIENT_SECRET)
        .output()
        .expect("run jeton")
}

impl Cluster {
    /// Files for up to `max` nodes; starts none.
    async fn new(max: u8) -> Cluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ca = tmp.path().join("ca");
        let out = jeton(&["cluster", "ca", "--out", ca.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let proxy = Proxy::default();
        let mut ports = Vec::new();
        for i in 1..=max {
            let host = format!("127.0.0.{i}");
            let out = jeton(&[
                "cluster",
                "cert",
                "--ca-dir",
                ca.to_str().unwrap(),
                "--name",
                &format!("node-{i}"),
                "--node-id",
                &i.to_string(),
                "--host",
                &host,
                "--out",
                ca.to_str().unwrap(),
            ]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let (http, raft, front) = (free_port(), free_port(), free_port());
            proxy.relay(i, front, raft).await;
            ports.push((http, raft, front));
        }
        let issuer = format!("http://127.0.0.1:{}", ports[0].0);
        Cluster { tmp, proxy, issuer, nodes: (0..max).map(|_| None).collect(), ports, raft_extra: String::new() }
    }

    fn raft_addr(&self, id: u8) -> String {
        format!("127.0.0.{id}:{}", self.ports[id as usize - 1].2)
    }

    fn data_dir(&self, id: u8) -> PathBuf {
        self.tmp.path().join(format!("node-{id}"))
    }

    fn config(&self, id: u8, snapshot_every: u64) -> PathBuf {
        let ca = self.tmp.path().join("ca");
        let (_, raft, _) = self.ports[id as usize - 1];
        let text = format!(
            r#"node_id = {id}
issuer = "{issuer}"
[raft]
addr = "{addr}"
listen = "127.0.0.{id}:{raft}"
heartbeat_ms = 150
election_timeout_min_ms = 1000
election_timeout_max_ms = 2000
snapshot_every = {snapshot_every}
{raft_extra}
[cluster]
ca = "{ca}/ca.pem"
cert = "{ca}/node-{{node_id}}.pem"
key = "{ca}/node-{{node_id}}-key.pem"
# Node 1 creates the cluster with the admissions `jeton cluster cert` wrote; the others join with theirs.
bootstrap = "{ca}/bootstrap.json"
join_token_file = "{ca}/node-{{node_id}}.join"
"#,
            issuer = self.issuer,
            addr = self.raft_addr(id),
            ca = ca.display(),
            raft_extra = self.raft_extra,
        );
        let path = self.tmp.path().join(format!("node-{id}.toml"));
        std::fs::write(&path, text).expect("config");
        path
    }

    /// Starts node `id`: the first node of a cluster, or one joining through `join`.
    async fn start(&mut self, id: u8, join: Option<u8>, extra: &[&str]) {
        self.start_with(id, join, extra, 10_000).await
    }

    async fn start_with(&mut self, id: u8, join: Option<u8>, extra: &[&str], snapshot_every: u64) {
        let config = self.config(id, snapshot_every);
        let mut args = vec!["--config".to_string(), config.display().to_string()];
        if let Some(j) = join {
            args.push("--join".into());
            args.push(self.raft_addr(j));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = Node::start_in(&self.data_dir(id), self.ports[id as usize - 1].0, &args).await;
        self.nodes[id as usize - 1] = Some(node);
    }

    /// A three-node cluster: node 1 starts it, 2 and 3 join.
    async fn three(snapshot_every: u64) -> Cluster {
        let mut c = Cluster::new(4).await;
        c.start_with(1, None, &[], snapshot_every).await;
        c.start_with(2, Some(1), &[], snapshot_every).await;
        c.start_with(3, Some(1), &[], snapshot_every).await;
        c
    }

    fn node(&self, id: u8) -> &Node {
        self.nodes[id as usize - 1].as_ref().expect("node running")
    }

    async fn status(&self, id: u8) -> Value {
        let (s, v) = self.node(id).admin_get("get-cluster-status").await;
        assert_eq!(s, 200, "{v}");
        v["data"].clone()
    }

    /// Node `id`'s status once `done` holds for it: a membership change is committed on the leader
    /// before every member has applied it.
    async fn status_when(&self, id: u8, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status(id).await;
            if done(&status) || Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader, once all running nodes agree on one.
    async fn leader(&self) -> u8 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut seen = BTreeSet::new();
            for (i, n) in self.nodes.iter().enumerate() {
                if n.is_some() {
                    seen.insert(self.status(i as u8 + 1).await["leader"].as_u64());
                }
            }
            if seen.len() == 1 {
                if let Some(Some(l)) = seen.into_iter().next() {
                    return l as u8;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every running node (SIGTERM) and starts the three again in `order`, until they agree on a
    /// leader.
    async fn restart_all(&mut self, order: [u8; 3]) {
        for n in self.nodes.iter_mut().flatten() {
            n.stop();
        }
        for id in order {
            let config = self.config(id, 10_000);
            let port = self.ports[id as usize - 1].0;
            let node = Node::start_in(&self.data_dir(id), port, &["--config", config.to_str().unwrap()]).await;
            self.nodes[id as usize - 1] = Some(node);
        }
        self.leader().await;
    }

    async fn add_org(&self, via: u8, name: &str) -> (u16, Value) {
        self.node(via).admin_post("add-organization", json!({"owner": "admin", "name": name})).await
    }

    fn ca_dir(&self) -> PathBuf {
        self.tmp.path().join("ca")
    }

    /// The name of the cluster node 1 creates (from the bootstrap file `jeton cluster ca` wrote).
    fn cluster_name(&self) -> String {
        let bootstrap: Value =
            serde_json::from_slice(&std::fs::read(self.ca_dir().join("bootstrap.json")).unwrap()).unwrap();
        bootstrap["cluster"].as_str().expect("cluster name").to_string()
    }

    /// Takes node `id` out of the bootstrap file: the new cluster will not have admitted it.
    fn drop_bootstrap_admission(&self, id: u64) {
        let path = self.ca_dir().join("bootstrap.json");
        let mut bootstrap: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        bootstrap["admissions"].as_array_mut().unwrap().retain(|a| a["nodeId"] != id);
        std::fs::write(&path, serde_json::to_vec(&bootstrap).unwrap()).unwrap();
    }

    /// The secret part of a join token.
    fn token_secret(token: &str) -> String {
        token.trim().rsplit(':').next().unwrap().to_string()
    }

    /// The join token `jeton cluster cert` wrote for node `id`.
    fn bootstrap_token(&self, id: u8) -> String {
        std::fs::read_to_string(self.ca_dir().join(format!("node-{id}.join"))).unwrap().trim().to_string()
    }

    /// `jeton cluster admit --id N` against node `via`: the new join token.
    fn admit(&self, via: u8, id: u8) -> String {
        let out = jeton(&["cluster", "admit", "--url", &self.node(via).base, "--id", &id.to_string()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let answer: Value = serde_json::from_slice(&out.stdout).expect("admit prints JSON");
        assert_eq!(answer["id"], id, "{answer}");
        answer["token"].as_str().expect("token").to_string()
    }

    /// Runs `jeton serve` for node `id` (joining through `join`), which must exit with an error; returns
    /// what it printed.
    fn serve_fails(&self, id: u8, join: Option<u8>, config: Option<&std::path::Path>) -> String {
        let default_config = self.config(id, 10_000);
        let config = config.unwrap_or(&default_config);
        let mut cmd = crate::harness::jeton_command();
        cmd.args(["serve", "--config", config.to_str().unwrap(), "--data-dir", self.data_dir(id).to_str().unwrap()])
            .args(["--http-addr", &format!("127.0.0.1:{}", self.ports[id as usize - 1].0)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(j) = join {
            cmd.args(["--join", &self.raft_addr(j)]);
        }
        let mut child = cmd.spawn().expect("run jeton");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                assert!(!status.success(), "node {id} started: {err}");
                return err;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node {id} neither started nor failed within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client of the node-to-node listeners presenting certificate `name` of the CA dir (mutual TLS), as a
    /// node does.
    fn peer_client(&self, name: &str) -> reqwest::Client {
        let read = |file: String| std::fs::read(self.ca_dir().join(file)).expect("PEM file");
        let mut identity = read(format!("{name}.pem"));
        identity.extend(read(format!("{name}-key.pem")));
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&read("ca.pem".into())).unwrap()])
            .identity(reqwest::Identity::from_pem(&identity).unwrap())
            .http1_only()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// POSTs JSON to node `to`'s node-to-node listener (directly, not through the proxy), naming `cluster`.
    async fn peer_post(
        &self,
        client: &reqwest::Client,
        to: u8,
        path: &str,
        cluster: &str,
        body: Value,
    ) -> (u16, Value) {
        let (_, raft, _) = self.ports[to as usize - 1];
        let r = client
            .post(format!("https://127.0.0.{to}:{raft}{path}"))
            .header("x-jeton-cluster", cluster)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} on node {to}: {e:?}"));
        response(r).await
    }

    /// Waits until node `id` lists exactly `voters` as voters and no learners.
    async fn wait_for_voters(&self, id: u8, voters: &[u64]) {
        let status = self
            .status_when(id, |s| {
                let ids: Vec<u64> = s["voters"].as_array().unwrap().iter().filter_map(|m| m["id"].as_u64()).collect();
                ids == voters && s["learners"].as_array().is_some_and(Vec::is_empty)
            })
            .await;
        let ids: Vec<u64> = status["voters"].as_array().unwrap().iter().filter_map(|m| m["id"].as_u64()).collect();
        assert_eq!(ids, voters, "node {id}: {status}");
    }
}

/// Organization names on a node.
async fn org_names(node: &Node) -> Vec<String> {
    let (s, v) = node.admin_get("get-organizations").await;
    assert_eq!(s, 200, "{v}");
    v["data"].as_array().expect("list").iter().map(|o| o["name"].as_str().unwrap_or_default().to_string()).collect()
}

/// Waits until `node` has every name in `want`.
async fn wait_for_orgs(node: &Node, want: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let have: BTreeSet<String> = org_names(node).await.into_iter().collect();
        if want.is_subset(&have) {
            return;
        }
        let missing: Vec<_> = want.difference(&have).collect();
        assert!(Instant::now() < deadline, "node at {} misses {missing:?}", node.base);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_replicate_forward_writes_and_revocations_reach_every_node() {
    let c = Cluster::three(10_000).await;
    let leader = c.leader().await;
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let status = c.status_when(follower, |s| s["voters"].as_array().map(Vec::len) == Some(3)).await;
    assert_eq!(status["voters"].as_array().map(Vec::len), Some(3), "{status}");

    // A write through a follower: one answer, and every node has it.
    let (s, v) = c.add_org(follower, "written-on-a-follower").await;
    assert_eq!(s, 200, "{v}");
    let want: BTreeSet<String> = ["written-on-a-follower".to_string()].into();
    for id in 1..=3 {
        wait_for_orgs(c.node(id), &want).await;
    }
    // A linearizable read on another follower sees it at once.
    let other = (1..=3).find(|i| *i != leader && *i != follower).unwrap();
    let (s, v) =
        c.node(other).admin_get("get-organization?id=admin/written-on-a-follower&consistency=linearizable").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["name"], "written-on-a-follower");

    // A token issued by one node introspects on the others; revoked on one, inactive everywhere.
    let token = c.node(follower).admin_token().await;
    for id in 1..=3 {
        let (s, v) = c
            .node(id)
            .post_form_basic("/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &token)])
            .await;
        assert_eq!((s, &v["active"]), (200, &json!(true)), "node {id}: {v}");
    }
    let (s, _) = c
        .node(other)
        .post_form_basic("/oauth/revoke", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &token)])
        .await;
    assert_eq!(s, 200);
    for id in 1..=3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, v) = c
                .node(id)
                .post_form_basic("/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &token)])
                .await;
            if v["active"] == json!(false) {
                break;
            }
            assert!(Instant::now() < deadline, "node {id} still answers active after the revocation");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The node-to-node listener refuses a client without a certificate of the cluster CA, and logs it.
    let stranger =
        reqwest::Client::builder().danger_accept_invalid_certs(true).timeout(Duration::from_secs(5)).build().unwrap();
    let (_, raft, _) = c.ports[0];
    let r = stranger.post(format!("https://127.0.0.1:{raft}/cluster/info")).body("{\"node_id\":9}").send().await;
    assert!(r.is_err(), "a peer without a client certificate got an answer: {r:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c.node(1).output().contains("refused a node-to-node connection") {
        assert!(Instant::now() < deadline, "the refusal was not logged: {}", c.node(1).output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut c = Cluster::three(10_000).await;
    let leader = c.leader().await;
    let writer = (1..=3).find(|i| *i != leader).unwrap();
    let mut acknowledged = BTreeSet::new();
    let mut killed_at = None;
    let mut first_after_kill = None;
    for i in 0..400 {
        let name = format!("stream-{i:04}");
        let (s, v) = c.add_org(writer, &name).await;
        match s {
            200 => {
                acknowledged.insert(name);
                if killed_at.is_some() && first_after_kill.is_none() {
                    first_after_kill = Some(Instant::now());
                }
            }
            // During the failover a write may be refused (503) — never half-done.
            503 => assert!(v["msg"].as_str().is_some(), "{v}"),
            _ => panic!("unexpected answer {s}: {v}"),
        }
        if i == 60 {
            c.nodes[leader as usize - 1].take().unwrap().kill();
            killed_at = Some(Instant::now());
        }
        if first_after_kill.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) && acknowledged.len() > 100 {
            break;
        }
    }
    let took = first_after_kill.expect("writes resumed after the leader died") - killed_at.unwrap();
    assert!(took < Duration::from_secs(15), "a new leader took {took:?} to accept writes");
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);

    // The old leader comes back on its data dir and catches up.
    c.start(leader, None, &[]).await;
    for id in 1..=3 {
        wait_for_orgs(c.node(id), &acknowledged).await;
        let names = org_names(c.node(id)).await;
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "node {id} lists an organization twice");
    }
    // Every node holds the same set (acknowledged ones and any whose answer was lost in the failover).
    let sets: Vec<Vec<String>> = futures_util::future::join_all((1..=3).map(|id| org_names(c.node(id)))).await;
    assert!(sets.windows(2).all(|w| w[0] == w[1]), "nodes disagree");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_node_refuses_writes_serves_reads_and_catches_up() {
    let c = Cluster::three(10_000).await;
    let leader = c.leader().await;
    let cut = (1..=3).rev().find(|i| *i != leader).unwrap();
    let majority = (1..=3).find(|i| *i != cut).unwrap();
    let token = c.node(cut).admin_token().await;

    c.proxy.partition(cut);
    // The majority keeps accepting writes.
    let (s, v) = c.add_org(majority, "during-the-partition").await;
    assert_eq!(s, 200, "{v}");
    // The minority refuses them with a clear error…
    let (s, v) = c.add_org(cut, "on-the-minority").await;
    assert_eq!(s, 503, "{v}");
    let msg = v["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("no quorum") || msg.contains("leader"), "{msg}");
    // …but serves tokens and introspection from its own state.
    c.node(cut).admin_token().await;
    let (s, v) = c
        .node(cut)
        .post_form_basic("/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &token)])
        .await;
    assert_eq!((s, &v["active"]), (200, &json!(true)), "{v}");
    assert!(!org_names(c.node(cut)).await.contains(&"during-the-partition".to_string()));

    c.proxy.heal();
    wait_for_orgs(c.node(cut), &["during-the-partition".to_string()].into()).await;
    assert!(!org_names(c.node(majority)).await.contains(&"on-the-minority".to_string()), "a refused write appeared");
    let (s, v) = c.add_org(cut, "after-healing").await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_cluster_restart_keeps_the_state() {
    let mut c = Cluster::three(10_000).await;
    let (s, v) = c.add_org(2, "before-restart").await;
    assert_eq!(s, 200, "{v}");
    wait_for_orgs(c.node(3), &["before-restart".to_string()].into()).await;
    // Restarted in another order; no --join needed: they are members already.
    c.restart_all([3, 1, 2]).await;
    for id in 1..=3 {
        assert!(org_names(c.node(id)).await.contains(&"before-restart".to_string()), "node {id}");
    }
    let (s, v) = c.add_org(1, "after-restart").await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn membership_changes_keep_the_cluster_serving() {
    // Snapshots every 20 entries: a node joining later catches up from a snapshot.
    let mut c = Cluster::three(20).await;
    let mut want = BTreeSet::new();
    for i in 0..150 {
        let name = format!("bulk-{i:03}");
        let (s, v) = c.add_org(1 + (i % 3) as u8, &name).await;
        assert_eq!(s, 200, "{v}");
        want.insert(name);
    }
    // A fourth node as a learner.
    c.start_with(4, Some(2), &["--learner"], 20).await;
    let status = c.status(4).await;
    assert_eq!(status["state"], "Learner", "{status}");
    assert!(status["learners"].as_array().unwrap().iter().any(|m| m["id"] == 4), "{status}");
    assert!(status["snapshotIndex"].as_u64().is_some(), "the learner did not catch up from a snapshot: {status}");
    wait_for_orgs(c.node(4), &want).await;

    // Promoted with the CLI, against another node's admin API.
    let url = c.node(3).base.clone();
    let out = jeton(&["cluster", "promote", "--url", &url, "--id", "4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = c.status_when(4, |s| s["voters"].as_array().map(Vec::len) == Some(4)).await;
    assert_eq!(status["voters"].as_array().map(Vec::len), Some(4), "{status}");
    let (s, v) = c.add_org(4, "written-on-node-4").await;
    assert_eq!(s, 200, "{v}");

    // Node 1 (which started the cluster) is removed over the admin API; the rest keep serving.
    let (s, v) = c.node(2).admin_post("cluster-remove", json!({"id": 1})).await;
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = c.status(4).await;
        let voters: Vec<u64> = status["voters"].as_array().unwrap().iter().filter_map(|m| m["id"].as_u64()).collect();
        if voters == vec![2, 3, 4] && status["leader"].as_u64().is_some_and(|l| l != 1) {
            break;
        }
        assert!(Instant::now() < deadline, "membership did not settle: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.nodes[0].as_mut().unwrap().stop();
    let (s, v) = c.add_org(3, "after-removal").await;
    assert_eq!(s, 200, "{v}");
    want.insert("after-removal".into());
    want.insert("written-on-node-4".into());
    for id in 2..=4 {
        wait_for_orgs(c.node(id), &want).await;
    }
    // Bad membership requests are refused and change nothing.
    let (s, v) = c.node(2).admin_post("cluster-promote", json!({"id": 77})).await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = c.node(2).admin_post("cluster-remove", json!({})).await;
    assert_eq!(s, 400);
    let out = jeton(&["cluster", "status", "--url", &c.node(2).base]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"voters\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn joining_needs_a_certificate_and_a_data_dir_of_another_cluster_is_refused() {
    let mut c = Cluster::new(2).await;
    c.start(1, None, &[]).await;
    // Node 2's data dir first belongs to a cluster of its own…
    let dir = c.data_dir(2);
    let port = c.ports[1].0;
    let mut alone = Node::start_in(&dir, port, &["--node-id", "2"]).await;
    alone.stop();
    // …so it cannot join cluster 1 with it.
    let config = c.config(2, 10_000);
    let out = crate::harness::jeton_command()
        .args(["serve", "--config", config.to_str().unwrap(), "--data-dir", dir.to_str().unwrap()])
        .args(["--http-addr", &format!("127.0.0.1:{port}"), "--join", &c.raft_addr(1)])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to cluster"), "{err}");
    // Joining without cluster TLS is refused before anything starts.
    let out = jeton(&["serve", "--data-dir", "/nonexistent/x", "--join", &c.raft_addr(1)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mutual TLS"));
}

/// A gauge or counter from a node's `/metrics` (Prometheus text).
async fn metric(node: &Node, name: &str) -> f64 {
    let text = node.http.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("/metrics has no {name}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_share_log_entries_and_each_gets_its_own_answer() {
    let c = Cluster::three(10_000).await;
    let leader = c.leader().await;
    let before = metric(c.node(leader), "jeton_raft_applied_index").await;
    // 60 writes at once through all three nodes: 40 names, 20 of them sent twice.
    let writes = (0..60u32).map(|i| {
        let name = format!("burst-{:02}", i % 40);
        let via = (i % 3 + 1) as u8;
        let c = &c;
        async move {
            let (s, v) = c.add_org(via, &name).await;
            (name, s, v)
        }
    });
    let answers = futures_util::future::join_all(writes).await;
    let mut by_name: std::collections::BTreeMap<String, Vec<u16>> = Default::default();
    for (name, s, v) in answers {
        assert!(s == 200 || s == 409, "{name}: {s} {v}");
        by_name.entry(name).or_default().push(s);
    }
    for (name, mut statuses) in by_name {
        statuses.sort_unstable();
        let want = if name.as_str() < "burst-20" { vec![200, 409] } else { vec![200] };
        assert_eq!(statuses, want, "{name}: exactly one of its writes is applied, a repeat is refused");
    }
    // Every acknowledged write is applied on the leader before it is answered; grouped, they took fewer
    // log entries than there were writes.
    let entries = metric(c.node(leader), "jeton_raft_applied_index").await - before;
    assert!(entries < 60.0, "60 concurrent writes took {entries} log entries: none were grouped");
    let want: BTreeSet<String> = (0..40).map(|i| format!("burst-{i:02}")).collect();
    for id in 1..=3 {
        wait_for_orgs(c.node(id), &want).await;
        let names = org_names(c.node(id)).await;
        assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len(), "node {id} lists an organization twice");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_info_names_the_cluster_and_the_key_goes_only_to_admitted_nodes() {
    let mut c = Cluster::new(3).await;
    // Node 3 holds a certificate of the cluster CA, but the cluster never admitted it.
    c.drop_bootstrap_admission(3);
    c.start(1, None, &[]).await;
    c.start(2, Some(1), &[]).await;
    let cluster = c.cluster_name();
    let node2 = c.peer_client("node-2");
    let node3 = c.peer_client("node-3");
    let unadmitted = Cluster::token_secret(&c.bootstrap_token(3));

    // A request that names another cluster is refused, /cluster/info included.
    let (s, v) =
        c.peer_post(&node3, 1, "/cluster/info", "another-cluster", json!({"node_id": 3, "token": unadmitted})).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = c.peer_post(&node2, 1, "/cluster/info", "another-cluster", json!({"node_id": 2, "token": null})).await;
    assert_eq!(s, 403, "even a member must name the cluster: {v}");
    // Naming this cluster, without a token or with one the cluster never admitted: no key.
    for token in [Value::Null, json!(unadmitted), json!("00".repeat(32))] {
        let (s, v) = c.peer_post(&node3, 1, "/cluster/info", &cluster, json!({"node_id": 3, "token": token})).await;
        assert_eq!(s, 403, "{v}");
        assert!(v.get("secret").is_none(), "{v}");
        assert!(v.as_str().unwrap_or_default().contains("not admitted"), "{v}");
    }
    // A certificate asks only for its own node id.
    let (s, v) = c.peer_post(&node3, 1, "/cluster/info", &cluster, json!({"node_id": 2, "token": null})).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = c.peer_post(&node2, 1, "/cluster/info", &cluster, json!({"node_id": 3, "token": unadmitted})).await;
    assert_eq!(s, 403, "{v}");
    // A member asking as itself gets the answer.
    let (s, v) = c.peer_post(&node2, 1, "/cluster/info", &cluster, json!({"node_id": 2, "token": null})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["secret"].as_str().is_some_and(|k| k.len() == 64), "{v}");
    assert_eq!(v["cluster"], cluster.as_str());

    // It cannot join either: not through the listener, not as a real node.
    let join = json!({"node_id": 3, "addr": c.raft_addr(3), "learner": false, "token": unadmitted});
    let (_, v) = c.peer_post(&node3, 1, "/cluster/join", &cluster, join).await;
    assert!(v.to_string().contains("not admitted"), "{v}");
    let err = c.serve_fails(3, Some(1), None);
    assert!(err.contains("not admitted"), "{err}");
    assert!(!c.data_dir(3).join("kek").exists(), "the refused node got the key-encryption key");
    c.wait_for_voters(1, &[1, 2]).await;

    // An administrator admits it: the token that comes back lets it in.
    let token = c.admit(2, 3);
    assert!(token.starts_with(&format!("jeton-join:{cluster}:3:")), "{token}");
    c.start(3, Some(1), &["--join-token", &token]).await;
    c.wait_for_voters(1, &[1, 2, 3]).await;
    let (s, v) = c.add_org(3, "written-by-the-admitted-node").await;
    assert_eq!(s, 200, "{v}");
    wait_for_orgs(c.node(1), &["written-by-the-admitted-node".to_string()].into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_node_is_refused_and_comes_back_only_with_a_new_admission() {
    let mut c = Cluster::three(10_000).await;
    let cluster = c.cluster_name();
    let node3 = c.peer_client("node-3");
    // As a member, node 3's certificate opens the leader's services and the log (a body that is not an
    // append request is read, and refused as such).
    let (s, v) = c.peer_post(&node3, 1, "/cluster/read-index", &cluster, Value::Null).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c.peer_post(&node3, 1, "/raft/append", &cluster, json!({"not": "an append"})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = c.peer_post(&node3, 1, "/cluster/read-index", "another-cluster", Value::Null).await;
    assert_eq!(s, 403, "{v}");

    let (s, v) = c.node(1).admin_post("cluster-remove", json!({"id": 3})).await;
    assert_eq!(s, 200, "{v}");
    c.wait_for_voters(1, &[1, 2]).await;
    c.wait_for_voters(2, &[1, 2]).await;
    c.nodes[2].take().unwrap().kill();
    // Its certificate, still signed by the cluster CA, opens neither the log nor the leader's services.
    for to in [1, 2] {
        for path in [
            "/raft/append",
            "/raft/vote",
            "/raft/snapshot",
            "/cluster/write",
            "/cluster/membership",
            "/cluster/read-index",
        ] {
            let (s, v) = c.peer_post(&node3, to, path, &cluster, json!({"not": "read"})).await;
            assert_eq!(s, 403, "{path} on node {to}: {v}");
            assert!(v.as_str().unwrap_or_default().contains("node 3 is not a member"), "{v}");
        }
    }
    let (s, v) = c.peer_post(&node3, 1, "/cluster/info", &cluster, json!({"node_id": 3, "token": null})).await;
    assert_eq!(s, 403, "{v}");
    // The token it joined with was used up: it cannot come back with it.
    std::fs::remove_dir_all(c.data_dir(3)).unwrap();
    let err = c.serve_fails(3, Some(1), None);
    assert!(err.contains("not admitted"), "{err}");
    c.wait_for_voters(1, &[1, 2]).await;

    // A new admission lets it back in, and its certificate works again.
    let token = c.admit(1, 3);
    c.start(3, Some(2), &["--join-token", &token]).await;
    c.wait_for_voters(1, &[1, 2, 3]).await;
    let (s, v) = c.add_org(1, "node-3-is-back").await;
    assert_eq!(s, 200, "{v}");
    wait_for_orgs(c.node(3), &["node-3-is-back".to_string()].into()).await;
    let (s, v) = c.peer_post(&node3, 1, "/cluster/read-index", &cluster, Value::Null).await;
    assert_eq!(s, 200, "{v}");
}

/// A certificate like the ones `jeton cluster cert` made before node ids: signed by the cluster CA, for
/// `127.0.0.{id}`, without a `jeton:node:` name.
fn certificate_without_node_id(ca_dir: &std::path::Path, name: &str, id: u8) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("ca-key.pem")).unwrap()).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(DnType::OrganizationName, "Jeton");
    ca.distinguished_name.push(DnType::CommonName, "Jeton cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let issuer = Issuer::new(ca, ca_key);
    let mut params = CertificateParams::new(vec![format!("127.0.0.{id}")]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(ca_dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(ca_dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_must_name_the_node_that_uses_it() {
    let mut c = Cluster::new(2).await;
    c.start(1, None, &[]).await;
    let cluster = c.cluster_name();
    let config_using = |cert: &str| {
        let text = std::fs::read_to_string(c.config(2, 10_000)).unwrap();
        let text = text.replace("node-{node_id}.pem", &format!("{cert}.pem"));
        let text = text.replace("node-{node_id}-key.pem", &format!("{cert}-key.pem"));
        let path = c.tmp.path().join(format!("node-2-with-{cert}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    // Node 2 started with node 1's certificate.
    let err = c.serve_fails(2, Some(1), Some(&config_using("node-1")));
    assert!(err.contains("certificate is node 1's"), "{err}");
    // A certificate from before node ids: refused at start, saying what to do…
    certificate_without_node_id(&c.ca_dir(), "old-2", 2);
    let err = c.serve_fails(2, Some(1), Some(&config_using("old-2")));
    assert!(err.contains("names no node id") && err.contains("--node-id 2"), "{err}");
    // …and by the listener, whatever it asks.
    let old = c.peer_client("old-2");
    for path in ["/cluster/info", "/raft/vote"] {
        let (s, v) = c.peer_post(&old, 1, path, &cluster, json!({"node_id": 2, "token": null})).await;
        assert_eq!(s, 403, "{v}");
        assert!(v.as_str().unwrap_or_default().contains("names no node id"), "{v}");
    }
    // With its own certificate, node 2 joins.
    c.start(2, Some(1), &[]).await;
    c.wait_for_voters(1, &[1, 2]).await;
}

/// Reads one HTTP/1.1 response (headers and a `content-length` body) from `stream`.
async fn read_response(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the connection closed before the answer: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_to_node_listener_limits_connections_and_closes_idle_ones() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = Cluster::new(1).await;
    c.raft_extra = "max_connections = 2\nidle_timeout_secs = 1\n".into();
    c.start(1, None, &[]).await;
    let cluster = c.cluster_name();
    let (_, raft, _) = c.ports[0];
    let node1 = c.peer_client("node-1");
    let read_index = |client: reqwest::Client| {
        let cluster = cluster.clone();
        async move {
            client
                .post(format!("https://127.0.0.1:{raft}/cluster/read-index"))
                .header("x-jeton-cluster", cluster)
                .json(&Value::Null)
                .send()
                .await
        }
    };
    let r = read_index(node1.clone()).await.expect("the listener answers");
    assert_eq!(r.status(), 200);

    // Two connections that say nothing hold both places (until their handshake times out, after 10 s)…
    let held: Vec<tokio::net::TcpStream> = vec![
        tokio::net::TcpStream::connect(("127.0.0.1", raft)).await.unwrap(),
        tokio::net::TcpStream::connect(("127.0.0.1", raft)).await.unwrap(),
    ];
    // …so a node's request finds the door closed…
    let fresh = c.peer_client("node-1");
    let r = read_index(fresh.clone()).await;
    assert!(r.is_err(), "a third connection was served: {r:?}");
    assert!(c.node(1).output().contains("connection limit reached"), "{}", c.node(1).output());
    // …until they are gone.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match read_index(fresh.clone()).await {
            Ok(r) if r.status() == 200 => break,
            other => assert!(Instant::now() < deadline, "the listener did not free its places: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A connection that stays idle is closed by the listener.
    let pem = |f: &str| std::fs::read(c.ca_dir().join(f)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem("ca.pem")) {
        roots.add(cert.unwrap()).unwrap();
    }
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<_> =
        rustls::pki_types::CertificateDer::pem_slice_iter(&pem("node-1.pem")).map(|c| c.unwrap()).collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem("node-1-key.pem")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    // The clients above keep their connections in their pools: gone with them, and the places are free.
    drop((node1, fresh));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tls = loop {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", raft)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        match connector.connect(name, tcp).await {
            Ok(tls) => break tls,
            Err(e) => assert!(Instant::now() < deadline, "handshake: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let request = format!(
        "POST /cluster/read-index HTTP/1.1\r\nhost: 127.0.0.1\r\nx-jeton-cluster: {cluster}\r\n\
         content-type: application/json\r\ncontent-length: 4\r\n\r\nnull"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let answer = read_response(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Kept alive after the answer, then closed once idle for a second.
    let mut rest = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(20), tls.read(&mut rest)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&rest[..n])),
        Err(_) => panic!("an idle node-to-node connection stayed open for 20 s"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_missed_a_join_learns_of_the_new_member_from_the_others() {
    let mut c = Cluster::three(10_000).await;
    let cluster = c.cluster_name();
    // Node 3 hears nothing from here on (no appends, no heartbeats), but can still call the others.
    c.proxy.deafen(3);
    c.start(4, Some(1), &[]).await;
    c.wait_for_voters(1, &[1, 2, 3, 4]).await;
    let voters =
        |s: &Value| -> Vec<u64> { s["voters"].as_array().unwrap().iter().filter_map(|m| m["id"].as_u64()).collect() };
    assert_eq!(voters(&c.status(3).await), vec![1, 2, 3], "node 3 must not know node 4 yet");
    // Node 4 calls node 3, which has never heard of it: refused at first, then let in on the word of the
    // members node 3 knows.
    let node4 = c.peer_client("node-4");
    let (s, v) = c.peer_post(&node4, 3, "/cluster/read-index", &cluster, Value::Null).await;
    assert_eq!(s, 403, "{v}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, v) = c.peer_post(&node4, 3, "/cluster/read-index", &cluster, Value::Null).await;
        if s == 200 {
            break;
        }
        assert_eq!(s, 403, "{v}");
        assert!(Instant::now() < deadline, "node 3 never let node 4 in: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(voters(&c.status(3).await), vec![1, 2, 3], "node 3 learned it from the others, not from the log");
    // A certificate of a node no member knows stays out, however often it asks.
    let ca = c.ca_dir();
    let ca = ca.to_str().unwrap();
    let out = jeton(&[
        "cluster",
        "cert",
        "--ca-dir",
        ca,
        "--name",
        "node-9",
        "--node-id",
        "9",
        "--host",
        "127.0.0.9",
        "--out",
        ca,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let node9 = c.peer_client("node-9");
    for _ in 0..10 {
        let (s, v) = c.peer_post(&node9, 3, "/cluster/read-index", &cluster, Value::Null).await;
        assert_eq!(s, 403, "{v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    c.proxy.heal();
    c.wait_for_voters(3, &[1, 2, 3, 4]).await;
}

/// Waits until every running node has applied what the leader has.
async fn all_caught_up(c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = c.leader().await;
    let target = metric(c.node(leader), "jeton_raft_applied_index").await;
    for (i, n) in c.nodes.iter().enumerate() {
        let Some(node) = n else { continue };
        while metric(node, "jeton_raft_applied_index").await < target {
            assert!(Instant::now() < deadline, "node {} did not catch up with the leader", i + 1);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Failed sign-ins are counted for the cluster, not per node: five wrong passwords spread over three nodes
/// lock the account on every node (per node, each would have seen two at most), a success after failures
/// starts the count again everywhere, and the lock survives a restart of the whole cluster.
#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_lock_the_account_on_every_node_and_survive_a_restart() {
    let mut c = Cluster::three(10_000).await;
    let leader = c.leader().await;
    let (id, secret) = c.node(leader).app_with_user("acme", "app-acme", json!({}), "frank", "Frank-Password-1").await;
    let (s, v) = c
        .node(leader)
        .admin_post("add-user", json!({"owner": "acme", "name": "grace", "password": "Grace-Password-1"}))
        .await;
    assert_eq!(s, 200, "{v}");
    all_caught_up(&c).await;

    // grace: four failures spread over the nodes, then a success: the count starts again from zero, so one
    // more failure does not lock her.
    for via in [1, 2, 3, 1] {
        let (s, v) = c.node(via).password_grant(&id, &secret, "grace", "wrong").await;
        assert_eq!(s, 400, "node {via}: {v}");
        all_caught_up(&c).await;
    }
    let (s, v) = c.node(3).password_grant(&id, &secret, "grace", "Grace-Password-1").await;
    assert_eq!(s, 200, "four failures are below the limit of five: {v}");
    all_caught_up(&c).await;
    let (s, _) = c.node(2).password_grant(&id, &secret, "grace", "wrong").await;
    assert_eq!(s, 400);
    all_caught_up(&c).await;
    let (s, v) = c.node(1).password_grant(&id, &secret, "grace", "Grace-Password-1").await;
    assert_eq!(s, 200, "the success reset the count on every node: {v}");

    // frank: five failures, two on node 1, two on node 2, one on node 3.
    for via in [1, 2, 3, 1, 2] {
        let (s, v) = c.node(via).password_grant(&id, &secret, "frank", "wrong").await;
        assert_eq!(s, 400, "node {via}: {v}");
        all_caught_up(&c).await;
    }
    for via in [3, 1, 2] {
        let (s, v) = c.node(via).password_grant(&id, &secret, "frank", "Frank-Password-1").await;
        assert_eq!(s, 429, "node {via} must refuse the locked account: {v}");
        assert!(v.get("access_token").is_none());
    }

    // The whole cluster restarts: the lock is state, not memory.
    c.restart_all([2, 3, 1]).await;
    for via in [1, 2, 3] {
        let (s, v) = c.node(via).password_grant(&id, &secret, "frank", "Frank-Password-1").await;
        assert_eq!(s, 429, "node {via} after the restart: {v}");
    }
    let (s, v) = c.node(1).password_grant(&id, &secret, "grace", "Grace-Password-1").await;
    assert_eq!(s, 200, "{v}");
}

mod chaos;
