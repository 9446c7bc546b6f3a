//! Chaos, in one bounded test: writes run through every node while, round after round, a random node is
//! killed with SIGKILL (the leader included), another is cut off by the proxy, the cut heals and the killed
//! node starts again with the command line it first had (its `--join` included). At the end every
//! acknowledged write is on every node exactly once, no node acknowledged a write while it was cut off from
//! the others, and every node was killed at least once and came back on its own.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{org_names, Cluster};
use crate::harness::{ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET};

const ROUNDS: usize = 10;
const SNAPSHOT_EVERY: u64 = 500;

/// One answered write: which node answered, when it was sent and when the answer came.
struct Answer {
    name: String,
    via: u8,
    sent: Instant,
    answered: Instant,
    status: u16,
    body: String,
}

/// A small deterministic generator; the seed is printed so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

fn join_of(id: u8) -> Option<u8> {
    (id != 1).then_some(1)
}

/// Writes `chaos-{via}-{n}` organizations through node `via` until `stop`, recording every answer.
async fn writer(base: String, via: u8, stop: Arc<AtomicBool>, answers: Arc<Mutex<Vec<Answer>>>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let name = format!("chaos-{via}-{n:05}");
        let sent = Instant::now();
        let answer = http
            .post(format!("{base}/api/add-organization"))
            .basic_auth(ADMIN_CLIENT_ID, Some(ADMIN_CLIENT_SECRET))
            .json(&json!({"owner": "admin", "name": name}))
            .send()
            .await;
        if let Ok(r) = answer {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            answers.lock().unwrap().push(Answer { name, via, sent, answered: Instant::now(), status, body });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader as node `id` sees it, if it answers and knows one.
async fn leader_seen_by(c: &Cluster, id: u8) -> Option<u8> {
    let node = c.nodes[id as usize - 1].as_ref()?;
    let (s, v) = node.admin_get("get-cluster-status").await;
    (s == 200).then(|| v["data"]["leader"].as_u64().map(|l| l as u8)).flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_kills_partitions_and_restarts_lose_no_acknowledged_write() {
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("chaos seed {seed} (CHAOS_SEED={seed} replays the schedule)");
    let mut rng = Rng(seed);
    let mut c = Cluster::three(SNAPSHOT_EVERY).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (1..=3u8)
        .map(|via| tokio::spawn(writer(c.node(via).base.clone(), via, stop.clone(), answers.clone())))
        .collect();

    // Every node is killed at least once: the first three rounds take them in a random order.
    let mut first: Vec<u8> = vec![1, 2, 3];
    for i in (1..first.len()).rev() {
        first.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut killed = BTreeSet::new();
    // (node, cut at, healed at)
    let mut cuts: Vec<(u8, Instant, Instant)> = Vec::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let victim = match first.get(round) {
            Some(id) => *id,
            // Every third round from then on aims at the leader.
            None if round % 3 == 0 => {
                let mut leader = None;
                for id in 1..=3 {
                    if let Some(l) = leader_seen_by(&c, id).await {
                        leader = Some(l);
                        break;
                    }
                }
                leader.unwrap_or(rng.below(3) as u8 + 1)
            }
            None => rng.below(3) as u8 + 1,
        };
        let cut = rng.below(3) as u8 + 1;
        eprintln!("round {round}: kill -9 node {victim}, cut node {cut}");
        c.nodes[victim as usize - 1].take().expect("running").kill();
        killed.insert(victim);
        tokio::time::sleep(rng.millis(500, 2_000)).await;
        c.proxy.partition(cut);
        let cut_at = Instant::now();
        tokio::time::sleep(rng.millis(1_000, 3_000)).await;
        // Back with the command line it started with, whichever nodes are reachable.
        c.start_with(victim, join_of(victim), &[], SNAPSHOT_EVERY).await;
        tokio::time::sleep(rng.millis(500, 2_000)).await;
        c.proxy.heal();
        cuts.push((cut, cut_at, Instant::now()));
        tokio::time::sleep(rng.millis(2_000, 4_000)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    eprintln!("{ROUNDS} rounds in {:?}", started.elapsed());

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let acknowledged: BTreeSet<String> = answers.iter().filter(|a| a.status == 200).map(|a| a.name.clone()).collect();
    let refused = answers.iter().filter(|a| a.status != 200).count();
    eprintln!("{} writes acknowledged, {refused} refused", acknowledged.len());
    assert!(acknowledged.len() > 100, "too few writes went through to prove anything: {}", acknowledged.len());
    // Every name is sent once: "already exists" for one means a write was applied twice.
    for a in &answers {
        assert!(a.status == 200 || a.status == 503, "node {} answered {} for {}: {}", a.via, a.status, a.name, a.body);
        if a.status == 503 {
            let msg: Value = serde_json::from_str(&a.body).unwrap_or_default();
            assert!(msg["msg"].as_str().is_some_and(|m| !m.is_empty()), "a refusal without its reason: {}", a.body);
        }
    }
    // No node acknowledged a write it received while it was cut off from the majority.
    for a in answers.iter().filter(|a| a.status == 200) {
        for (node, from, to) in &cuts {
            assert!(
                !(a.via == *node && a.sent >= *from && a.answered <= *to),
                "node {node} acknowledged {} while it was cut off",
                a.name
            );
        }
    }
    assert_eq!(killed, BTreeSet::from([1, 2, 3]), "every node is killed at least once");

    // All three came back on their own; they converge on the same state holding every acknowledged write once.
    c.leader().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lists = Vec::new();
    for id in 1..=3 {
        loop {
            let names = org_names(c.node(id)).await;
            let have: BTreeSet<&String> = names.iter().collect();
            assert_eq!(have.len(), names.len(), "node {id} lists an organization twice");
            let missing: Vec<&String> = acknowledged.iter().filter(|n| !have.contains(n)).collect();
            if missing.is_empty() {
                lists.push(have.into_iter().cloned().collect::<BTreeSet<String>>());
                break;
            }
            assert!(Instant::now() < deadline, "node {id} misses {} acknowledged writes: {missing:?}", missing.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The same set everywhere (acknowledged writes, and any whose answer was lost with a killed node).
    let deadline = Instant::now() + Duration::from_secs(30);
    while lists.windows(2).any(|w| w[0] != w[1]) {
        assert!(Instant::now() < deadline, "nodes disagree on the organizations");
        tokio::time::sleep(Duration::from_millis(200)).await;
        lists.clear();
        for id in 1..=3 {
            lists.push(org_names(c.node(id)).await.into_iter().collect());
        }
    }
    // And the cluster still takes writes through every node.
    for id in 1..=3 {
        let (s, v) = c.add_org(id, &format!("after-chaos-{id}")).await;
        assert_eq!(s, 200, "node {id}: {v}");
    }
}
