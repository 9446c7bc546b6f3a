//! Start-up with a large state: how long until a node holding N users serves, and how much memory it holds.
//! The issue's target: with 1,000,000 users in state, the node starts serving in under 2 s with RSS under
//! 300 MB.
//!
//! ```text
//! startup populate --data-dir DIR [--users 1000000] [--batch 2000] [--snapshot]
//! startup measure  --data-dir DIR --bin PATH/TO/jeton [--port P] [--runs 3] [--drop-caches]
//! ```
//! `populate` starts a node on a new data dir, writes the built-in objects as `jeton serve`'s first start
//! does (three signing keys sealed with `DIR/kek`, organization, admin user, admin application) and then N
//! users through Raft in `Command::Batch`es, like an import; `--snapshot` then has Raft take a snapshot, as
//! a node does after `raft.snapshot_every` writes. `measure` starts the real binary on the data dir, polls
//! `GET /api/health` until it answers 200, and reports the time to that answer and the resident memory
//! (VmRSS, VmHWM) then and after 100 client_credentials grants each introspected once; then SIGTERM and
//! the time to exit. `--drop-caches` empties the kernel page cache before each start (root only), for a
//! cold start from disk.
//!
//! Output: `key=value` lines on stdout (per run: `run1_ready_ms=...`), a human summary on stderr.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitCode, Stdio};
use std::time::{Duration, Instant};

use jeton_bench::sample_user;
use jeton_edge::keys::Kek;
use jeton_raft::model::Organization;
use jeton_raft::node::RaftSettings;
use jeton_raft::{Command, PutMode, ReplicaNode};

/// The admin application's credentials, written by `populate` and used by `measure`.
const CLIENT_ID: &str = "startup-admin";
const CLIENT_SECRET: &str = "startup-admin-secret-0123456789";

const USAGE: &str = "usage:
  startup populate --data-dir DIR [--users 1000000] [--batch 2000] [--snapshot]
  startup measure  --data-dir DIR --bin PATH/TO/jeton [--port P] [--runs 3] [--drop-caches]";

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().position(|a| a == name).and_then(|i| self.0.get(i + 1)).map(String::as_str)
    }
    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("{name}: not a number: {v}")),
        }
    }
}

fn main() -> ExitCode {
    let args = Args(std::env::args().skip(1).collect());
    let result = match (args.0.first().map(String::as_str), args.value("--data-dir")) {
        (Some("populate"), Some(dir)) => populate(&args, Path::new(dir)),
        (Some("measure"), Some(dir)) => measure(&args, Path::new(dir)),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("startup: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// populate

fn populate(args: &Args, dir: &Path) -> Result<(), String> {
    let users: u64 = args.number("--users", 1_000_000)?;
    let batch: u64 = args.number("--batch", 2000)?;
    if batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    if dir.join("db").exists() || dir.join("identity.json").exists() {
        return Err(format!("{} already holds a node; populate needs a new data dir", dir.display()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let started = Instant::now();
        let node = ReplicaNode::start(dir, 1, "127.0.0.1:7001", &RaftSettings::default(), Default::default())
            .await
            .map_err(|e| format!("starting the node: {e}"))?;
        // The same file `jeton serve` reads the key-encryption key from, so the binary can open the keys.
        let kek = Kek::load_or_create(&dir.join("kek")).map_err(|e| e.to_string())?;
        let base = built_in_objects(&kek)?;
        jeton_bench::apply(&node, Command::Batch { commands: base }).await?;

        jeton_bench::write_users(&node, users, batch, |i| Ok(sample_user(i))).await?;
        let write_secs = started.elapsed().as_secs_f64();
        println!("populate_users={users}");
        println!("populate_batch={batch}");
        println!("populate_write_seconds={write_secs:.1}");
        println!("populate_users_per_second={:.0}", users as f64 / write_secs);
        println!("raft_log_entries={}", node.log.len());

        if args.flag("--snapshot") {
            let t = Instant::now();
            snapshot(&node).await?;
            println!("snapshot_seconds={:.1}", t.elapsed().as_secs_f64());
        }
        let t = Instant::now();
        node.shutdown().await;
        println!("shutdown_seconds={:.1}", t.elapsed().as_secs_f64());
        println!("populate_seconds={:.1}", started.elapsed().as_secs_f64());
        Ok::<(), String>(())
    })?;
    // The runtime is gone: sled has flushed and closed its files.
    drop(runtime);
    let size = dir_size(dir);
    println!("data_dir_bytes={size}");
    for (name, bytes) in dir_breakdown(dir) {
        println!("data_dir_entry_bytes.{name}={bytes}");
    }
    eprintln!("populate: done, data dir {} is {:.2} GB", dir.display(), size as f64 / 1e9);
    Ok(())
}

/// What `jeton serve` creates on first start, plus the organization the users go to.
fn built_in_objects(kek: &Kek) -> Result<Vec<Command>, String> {
    let mut commands = jeton_bench::built_in_commands(kek, CLIENT_ID, CLIENT_SECRET)?;
    commands.push(Command::PutOrganization {
        org: Organization {
            name: jeton_bench::ORG.into(),
            display_name: "Bench Inc.".into(),
            created_time: "2026-11-20T08:00:00Z".into(),
            password_type: "argon2id".into(),
            ..Default::default()
        },
        mode: PutMode::Create,
    });
    Ok(commands)
}

/// Has Raft build a snapshot of the whole state and waits until it is saved.
async fn snapshot(node: &ReplicaNode) -> Result<(), String> {
    let target = node.raft.metrics().borrow().last_applied.map(|l| l.index);
    node.raft.trigger().snapshot().await.map_err(|e| format!("snapshot: {e}"))?;
    let mut metrics = node.raft.metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        if metrics.borrow().snapshot.map(|l| l.index) >= target {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, metrics.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("raft stopped while snapshotting".into()),
            Err(_) => return Err("no snapshot within 600 s".into()),
        }
    }
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            total += if path.is_dir() { dir_size(&path) } else { e.metadata().map(|m| m.len()).unwrap_or(0) };
        }
    }
    total
}

/// Sizes of the entries of the data dir and of its sled database (`db/...`).
fn dir_breakdown(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (base, prefix) in [(dir.to_path_buf(), ""), (dir.join("db"), "db/")] {
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.flatten() {
                let path = e.path();
                if prefix.is_empty() && path.file_name().is_some_and(|n| n == "db") {
                    continue;
                }
                out.push((format!("{prefix}{}", e.file_name().to_string_lossy()), dir_size_or_len(&path)));
            }
        }
    }
    out.sort();
    out
}

fn dir_size_or_len(p: &Path) -> u64 {
    if p.is_dir() {
        dir_size(p)
    } else {
        p.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------------------
// measure

/// What one start of the binary came to.
struct Run {
    ready: Duration,
    rss_ready_kib: u64,
    hwm_ready_kib: u64,
    rss_work_kib: u64,
    hwm_work_kib: u64,
    introspected_active: usize,
    stop: Duration,
    exit: String,
}

fn measure(args: &Args, dir: &Path) -> Result<(), String> {
    let bin = PathBuf::from(args.value("--bin").ok_or("--bin PATH/TO/jeton is required")?);
    if !bin.is_file() {
        return Err(format!("{} is not a file", bin.display()));
    }
    if !dir.join("identity.json").is_file() {
        return Err(format!("{} is not a populated data dir (no identity.json)", dir.display()));
    }
    let runs: usize = args.number("--runs", 3)?;
    let drop_caches = args.flag("--drop-caches");
    println!("data_dir_bytes={}", dir_size(dir));
    println!("drop_caches={drop_caches}");
    let mut results = Vec::new();
    for i in 1..=runs {
        let port = match args.value("--port") {
            Some(p) => p.parse().map_err(|_| format!("--port: not a port: {p}"))?,
            None => free_port()?,
        };
        if drop_caches {
            // Written back first, so dropping leaves nothing of the data dir in memory.
            let _ = Process::new("sync").status();
            std::fs::write("/proc/sys/vm/drop_caches", "3")
                .map_err(|e| format!("--drop-caches needs root: /proc/sys/vm/drop_caches: {e}"))?;
        }
        let run = start_once(&bin, dir, port)?;
        println!("run{i}_ready_ms={}", run.ready.as_millis());
        println!("run{i}_rss_ready_kib={}", run.rss_ready_kib);
        println!("run{i}_hwm_ready_kib={}", run.hwm_ready_kib);
        println!("run{i}_introspected_active={}", run.introspected_active);
        println!("run{i}_rss_after_work_kib={}", run.rss_work_kib);
        println!("run{i}_hwm_after_work_kib={}", run.hwm_work_kib);
        println!("run{i}_stop_ms={}", run.stop.as_millis());
        println!("run{i}_exit={}", run.exit);
        eprintln!(
            "run {i}: serving after {:.2} s with RSS {} (peak {}); after 100 grants + introspections ({}/100 \
             active): RSS {} (peak {}); stopped {:.2} s after SIGTERM ({})",
            run.ready.as_secs_f64(),
            mib(run.rss_ready_kib),
            mib(run.hwm_ready_kib),
            run.introspected_active,
            mib(run.rss_work_kib),
            mib(run.hwm_work_kib),
            run.stop.as_secs_f64(),
            run.exit
        );
        results.push(run);
    }
    if results.is_empty() {
        return Ok(());
    }
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let ready = median(results.iter().map(|r| r.ready.as_millis() as u64).collect());
    let rss = median(results.iter().map(|r| r.rss_ready_kib).collect());
    let hwm = results.iter().map(|r| r.hwm_work_kib).max().unwrap_or(0);
    println!("median_ready_ms={ready}");
    println!("median_rss_ready_kib={rss}");
    println!("max_hwm_kib={hwm}");
    let first_ready = results[0].ready.as_millis() as u64;
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    eprintln!(
        "summary over {} starts: serving after {} ms (median; first start {} ms) — target < 2000 ms: {}; RSS \
         when serving {} (median), peak {} — target < 300 MB: {}",
        results.len(),
        ready,
        first_ready,
        met(results.iter().all(|r| r.ready < Duration::from_secs(2))),
        mib(rss),
        mib(hwm),
        met(results.iter().all(|r| r.hwm_work_kib * 1024 < 300_000_000)),
    );
    Ok(())
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// A port nobody listens on right now.
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Starts the binary, waits for it to serve, measures, stops it.
fn start_once(bin: &Path, dir: &Path, port: u16) -> Result<Run, String> {
    let started = Instant::now();
    let mut child = Process::new(bin)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env("JETON_LOG", std::env::var("JETON_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id();
    let result = (|| {
        // The binary binds its listener before opening the state, so a request sent early waits in the
        // accept queue and is answered as soon as the node serves.
        let health = "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        loop {
            if let Some((200, _)) = http(port, health) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("jeton exited before serving: {status}"));
            }
            if started.elapsed() > Duration::from_secs(300) {
                return Err("jeton did not serve within 300 s".to_string());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let ready = started.elapsed();
        let (rss_ready_kib, hwm_ready_kib) = jeton_bench::memory_kib(Some(pid));
        let basic = base64_basic(CLIENT_ID, CLIENT_SECRET);
        let mut introspected_active = 0;
        for _ in 0..100 {
            let Some((200, body)) = post(port, "/oauth/token", "grant_type=client_credentials", &basic) else {
                return Err("the client_credentials grant failed".to_string());
            };
            let token = json_string(&body, "access_token").unwrap_or_default();
            if let Some((200, b)) = post(port, "/oauth/introspect", &format!("token={token}"), &basic) {
                introspected_active += usize::from(b.starts_with(r#"{"active":true"#));
            }
        }
        let (rss_work_kib, hwm_work_kib) = jeton_bench::memory_kib(Some(pid));
        Ok((ready, rss_ready_kib, hwm_ready_kib, introspected_active, rss_work_kib, hwm_work_kib))
    })();
    let stopping = Instant::now();
    let exit = stop(&mut child);
    let stop = stopping.elapsed();
    let (ready, rss_ready_kib, hwm_ready_kib, introspected_active, rss_work_kib, hwm_work_kib) = result?;
    Ok(Run { ready, rss_ready_kib, hwm_ready_kib, rss_work_kib, hwm_work_kib, introspected_active, stop, exit })
}

/// SIGTERM, then up to 30 s for a graceful exit, then SIGKILL. Returns how it ended.
fn stop(child: &mut Child) -> String {
    let _ = Process::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string().replace(' ', "_"),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return "killed_after_30s".into();
            }
        }
    }
}

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
fn http(port: u16, request: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

fn post(port: u16, path: &str, body: &str, basic: &str) -> Option<(u16, String)> {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Basic {basic}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// A string field of a JSON object.
fn json_string(body: &str, field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get(field)?.as_str().map(str::to_string)
}

fn base64_basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}
