//! Three-node benchmarks on loopback, in one run:
//!
//! 1. **Replicated writes**: Jeton `add-user` through the admin API vs etcd `put` (three members, same
//!    fsync durability, JSON gateway) with the same HTTP client, the same concurrency and a value of the
//!    same size: throughput and p50/p99 commit latency.
//! 2. **Follower-served introspection** while the leader takes writes: throughput on an idle cluster vs
//!    under write load, once with the writes as fast as 16 writers can go (closed loop) and once paced at
//!    `--paced-writes` per second (default 1000).
//! 3. **Revocation propagation**: a token revoked on the leader, introspected on the two followers until it
//!    answers inactive: p50/p99 of that delay.
//!
//! With `--failed-logins`, only this instead: **failed sign-ins** on a follower (password grants of unknown
//! logins, so nothing is hashed and the timing floor is off): each is one replicated `RecordSigninFailure`
//! write, answered once written. Throughput, answer p50/p99 and CPU per failed sign-in on each node.
//!
//! ```text
//! cluster --bin target/perf/jeton [--etcd /usr/bin/etcd] [--seconds 10] [--concurrency 16] [--revocations 200]
//!         [--paced-writes 1000] [--read-connections 64] [--pin] [--failed-logins]
//! ```
//! `--pin` puts the measured follower (node 3, etcd member 3) alone on CPU 1 and the other two members on CPU 0
//! (`taskset`), as if the follower had a machine of its own. The load generator (this process) floats over
//! both CPUs for the write comparison; for the follower's introspection it is pinned to CPU 0 too, so that
//! CPU 1 is the follower's alone and what is measured is the follower, not its share of a core.
//!
//! CPU per write: each member's user + system CPU time (`/proc/PID/stat`) over the write phase, divided by
//! the writes acknowledged in it.
//! Output: `key=value` lines on stdout, a summary on stderr.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

const CLIENT_ID: &str = "bench-admin";
const CLIENT_SECRET: &str = "bench-admin-secret-0123456789";

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().position(|a| a == name).and_then(|i| self.0.get(i + 1)).map(String::as_str)
    }
    fn number(&self, name: &str, default: u64) -> u64 {
        self.value(name).and_then(|v| v.parse().ok()).unwrap_or(default)
    }
}

/// Child processes killed on drop.
struct Procs(Vec<Child>);

impl Procs {
    /// CPU seconds (user + system) each process has used so far.
    fn cpu_seconds(&self) -> Vec<f64> {
        self.0.iter().map(|c| cpu_seconds(c.id())).collect()
    }
}

/// User + system CPU seconds of process `pid` (fields 14 and 15 of `/proc/PID/stat`, in clock ticks).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The command name (field 2) may hold spaces; the fields after it follow its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Runs `f` and returns its result with the CPU seconds each of `procs` used meanwhile.
async fn with_cpu<T>(procs: &Procs, f: impl std::future::Future<Output = T>) -> (T, Vec<f64>) {
    let before = procs.cpu_seconds();
    let out = f.await;
    let used = procs.cpu_seconds().iter().zip(&before).map(|(a, b)| a - b).collect();
    (out, used)
}

/// CPU microseconds per operation of `run`, for each process of a [`with_cpu`] measurement.
fn per_op(used: &[f64], run: &Run) -> Vec<f64> {
    used.iter().map(|s| s * 1e6 / run.ops.max(1) as f64).collect()
}

fn show_cpu(per_op: &[f64]) -> String {
    per_op.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(" / ")
}

/// Pins every thread of this process to `cpus` (taskset's list syntax).
fn pin_self(cpus: &str) -> Result<(), String> {
    let pid = std::process::id().to_string();
    run(Path::new("taskset"), &["-a", "-c", "-p", cpus, &pid])
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn run(bin: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(bin).args(args).output().map_err(|e| format!("{}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!("{} {args:?}: {}", bin.display(), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

async fn wait_http(url: &str) -> Result<(), String> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{url} did not answer"))
}

/// Starts three Jeton nodes (node 1 first, 2 and 3 joining). Returns the processes and HTTP base URLs.
/// The command for member `i` (1-based) of three, pinned when asked (see `--pin`).
fn member_command(bin: &Path, i: usize, pin: bool) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(if i == 3 { "1" } else { "0" }).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

async fn start_jeton(bin: &Path, dir: &Path, pin: bool) -> Result<(Procs, Vec<String>), String> {
    let ca = dir.join("ca");
    let ca_s = ca.to_str().ok_or("path")?;
    run(bin, &["cluster", "ca", "--out", ca_s])?;
    let mut procs = Procs(Vec::new());
    let mut urls = Vec::new();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    // Every certificate (and join token) before node 1 starts: it admits the nodes of bootstrap.json.
    for i in 1..=3u16 {
        let (name, id) = (format!("n{i}"), i.to_string());
        run(
            bin,
            &[
                "cluster",
                "cert",
                "--ca-dir",
                ca_s,
                "--name",
                &name,
                "--node-id",
                &id,
                "--host",
                "127.0.0.1",
                "--out",
                ca_s,
            ],
        )?;
    }
    for i in 1..=3u16 {
        let (http, raft) = ports[i as usize - 1];
        let config = dir.join(format!("n{i}.toml"));
        let text = format!(
            "node_id = {i}\nissuer = \"http://bench.example\"\ndata_dir = \"{d}\"\n[http]\naddr = \"127.0.0.1:{http}\"\n\
             [raft]\naddr = \"127.0.0.1:{raft}\"\nheartbeat_ms = 100\nelection_timeout_min_ms = 1000\nelection_timeout_max_ms = 2000\n\
             [cluster]\nca = \"{ca_s}/ca.pem\"\ncert = \"{ca_s}/n{i}.pem\"\nkey = \"{ca_s}/n{i}-key.pem\"\n{join}\
             [security]\npassword_failure_floor_ms = 0\nip_failure_limit = 1000000000\n",
            d = dir.join(format!("data-{i}")).display(),
            join = if i == 1 {
                format!("bootstrap = \"{ca_s}/bootstrap.json\"\n")
            } else {
                format!("join = \"127.0.0.1:{}\"\njoin_token_file = \"{ca_s}/n{i}.join\"\n", ports[0].1)
            },
        );
        std::fs::write(&config, text).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join(format!("n{i}.log"))).map_err(|e| e.to_string())?;
        let child = member_command(bin, i as usize, pin)
            .args(["serve", "--config", config.to_str().ok_or("path")?])
            // Three nodes on one machine: each LDAP listener on a free port.
            .env("JETON_LDAP_ADDR", "127.0.0.1:0")
            .env("JETON_ADMIN_PASSWORD", "bench-admin-password")
            .env("JETON_ADMIN_CLIENT_ID", CLIENT_ID)
            .env("JETON_ADMIN_CLIENT_SECRET", CLIENT_SECRET)
            .env("JETON_LOG", "warn")
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        procs.0.push(child);
        let url = format!("http://127.0.0.1:{http}");
        wait_http(&format!("{url}/api/health")).await?;
        urls.push(url);
    }
    Ok((procs, urls))
}

/// Starts a three-member etcd cluster with its defaults (WAL fsync on every commit). Returns client URLs.
async fn start_etcd(bin: &Path, dir: &Path, pin: bool) -> Result<(Procs, Vec<String>), String> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> =
        ports.iter().enumerate().map(|(i, p)| format!("e{i}=http://127.0.0.1:{}", p.1)).collect();
    let mut procs = Procs(Vec::new());
    let mut urls = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("etcd-{i}.log"))).map_err(|e| e.to_string())?;
        let child = member_command(bin, i + 1, pin)
            .args([
                "--name",
                &format!("e{i}"),
                "--data-dir",
                dir.join(format!("etcd-{i}")).to_str().ok_or("path")?,
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--log-level",
                "error",
            ])
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        procs.0.push(child);
        urls.push(format!("http://127.0.0.1:{client}"));
    }
    for u in &urls {
        wait_http(&format!("{u}/health")).await?;
    }
    Ok((procs, urls))
}

/// Latencies and count of a closed-loop run.
struct Run {
    ops: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
    fn pct(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p) as f64 / 1000.0
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `concurrency` tasks send requests made by `make(worker, seq)` for `seconds`, each as soon as the previous
/// one is answered; a request counts when its status is a success.
async fn closed_loop<F>(concurrency: u64, seconds: u64, make: F) -> Run
where
    F: Fn(&reqwest::Client, u64, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    paced_loop(concurrency, seconds, None, make).await
}

/// As [`closed_loop`], but with `rate`, at most `rate` requests per second in all: request `seq` of
/// worker `w` is not sent before `start + (seq * concurrency + w) / rate` (a worker that falls behind
/// sends at once, so the achieved rate shows whether the server kept up).
async fn paced_loop<F>(concurrency: u64, seconds: u64, rate: Option<f64>, make: F) -> Run
where
    F: Fn(&reqwest::Client, u64, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (make, stop, errors) = (make.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
            let mut lat = Vec::new();
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some(rate) = rate {
                    let due = start + Duration::from_secs_f64((seq * concurrency + w) as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                match make(&client, w, seq).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seq += 1;
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let seconds = start.elapsed().as_secs_f64();
    all.sort_unstable();
    Run { ops: all.len() as u64, errors: errors.load(Ordering::Relaxed), seconds, latencies_us: all }
}

/// A user record of realistic size (the JSON sent is ~300 bytes).
fn user_body(worker: u64, seq: u64) -> Value {
    json!({
        "owner": "bench", "name": format!("u-{worker}-{seq}"), "displayName": format!("Bench User {worker} {seq}"),
        "email": format!("u-{worker}-{seq}@bench.example"), "phone": "+15550000000", "type": "normal-user",
    })
}

async fn jeton_writes(url: &str, concurrency: u64, seconds: u64, rate: Option<f64>, tag: &str) -> Run {
    let url = format!("{url}/api/add-user");
    let tag = tag.to_string();
    paced_loop(concurrency, seconds, rate, move |c, w, s| {
        let mut body = user_body(w, s);
        body["name"] = json!(format!("{tag}-{w}-{s}"));
        c.post(&url).basic_auth(CLIENT_ID, Some(CLIENT_SECRET)).json(&body)
    })
    .await
}

async fn etcd_puts(url: &str, concurrency: u64, seconds: u64) -> Run {
    let url = format!("{url}/v3/kv/put");
    let b64 = base64::engine::general_purpose::STANDARD;
    closed_loop(concurrency, seconds, move |c, w, s| {
        let key = format!("/users/bench/u-{w}-{s}");
        let value = user_body(w, s).to_string();
        c.post(&url).json(&json!({"key": b64.encode(key), "value": b64.encode(value)}))
    })
    .await
}

/// POSTs a form with the admin application's Basic credentials and decodes the JSON answer.
async fn post_form(client: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Result<Value, String> {
    let r = client.post(url).basic_auth(CLIENT_ID, Some(CLIENT_SECRET)).form(form).send().await;
    r.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())
}

async fn token(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let v = post_form(client, &format!("{url}/oauth/token"), &[("grant_type", "client_credentials")]).await?;
    v["access_token"].as_str().map(str::to_string).ok_or_else(|| format!("no token: {v}"))
}

async fn active(client: &reqwest::Client, url: &str, token: &str) -> Result<bool, String> {
    let v = post_form(client, &format!("{url}/oauth/introspect"), &[("token", token)]).await?;
    Ok(v["active"] == json!(true))
}

/// Introspection of `token` on `url` by wrk (`concurrency` connections, keep-alive) for `seconds`: a load
/// generator much lighter per request than this process's HTTP client, so that it is the server that is
/// measured. Pinned with this process when it is.
async fn introspection_load(dir: &Path, url: &str, token: &str, concurrency: u64, seconds: u64) -> Result<Run, String> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let script = dir.join("introspect.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"token={token}\"\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
             wrk.headers[\"Authorization\"] = \"Basic {basic}\"\n\
             done = function(s, l, r)\n  local e = s.errors\n  io.write(string.format(\"WRKRESULT %d %d %d\\n\", \
             s.requests, s.duration, e.status + e.connect + e.read + e.write + e.timeout))\nend\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string();
    let args = [
        format!("-t{threads}"),
        format!("-c{concurrency}"),
        format!("-d{seconds}s"),
        "--timeout".into(),
        "5s".into(),
        "-s".into(),
        script.to_string_lossy().into_owned(),
        format!("{url}/oauth/introspect"),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new("wrk").args(&args).output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("WRKRESULT ")).ok_or_else(|| format!("wrk: {text}"))?;
    let n: Vec<u64> = line.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let [requests, duration_us, errors] = n[..] else { return Err(format!("wrk: {line}")) };
    Ok(Run {
        ops: requests - errors.min(requests),
        errors,
        seconds: duration_us as f64 / 1e6,
        latencies_us: Vec::new(),
    })
}

/// Failed sign-ins on a follower, each a replicated write (see the module documentation).
async fn failed_logins(bin: &Path, dir: &Path, pin: bool, concurrency: u64, seconds: u64) -> Result<(), String> {
    let (procs, urls) = start_jeton(bin, dir, pin).await?;
    let client = reqwest::Client::new();
    for (api, body) in [
        ("add-organization", json!({"owner": "admin", "name": "bench", "passwordType": "bcrypt"})),
        (
            "add-application",
            json!({"owner": "admin", "name": "app-bench", "organization": "bench", "clientId": "bench-app",
                   "clientSecret": "bench-app-secret-0123456789", "grantTypes": ["password"]}),
        ),
    ] {
        let r = client
            .post(format!("{}/api/{api}", urls[0]))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("{api}: {}", r.status()));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let follower = urls[2].clone();
    let stop = Arc::new(AtomicBool::new(false));
    let run = async {
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|w| {
                let (url, stop) = (format!("{follower}/oauth/token"), stop.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let (mut lat, mut errors) = (Vec::new(), 0u64);
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let login = format!("ghost-{w}-{seq}");
                        let form = [("grant_type", "password"), ("username", login.as_str()), ("password", "x")];
                        let t = Instant::now();
                        match client
                            .post(&url)
                            .basic_auth("bench-app", Some("bench-app-secret-0123456789"))
                            .form(&form)
                            .send()
                            .await
                        {
                            Ok(r) if r.status() == 400 => lat.push(t.elapsed().as_micros() as u64),
                            _ => errors += 1,
                        }
                        seq += 1;
                    }
                    (lat, errors)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let (mut all, mut errors) = (Vec::new(), 0);
        for w in workers {
            let (lat, e) = w.await.unwrap_or_default();
            all.extend(lat);
            errors += e;
        }
        all.sort_unstable();
        Run { ops: all.len() as u64, errors, seconds: started.elapsed().as_secs_f64(), latencies_us: all }
    };
    let (r, used) = with_cpu(&procs, run).await;
    let cpu = per_op(&used, &r);
    let entries = client.get(format!("{}/metrics", urls[0])).send().await.map_err(|e| e.to_string())?;
    let text = entries.text().await.map_err(|e| e.to_string())?;
    let applied = text
        .lines()
        .find_map(|l| l.strip_prefix("jeton_raft_applied_index "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    println!("failed_logins_per_s={:.0}", r.rate());
    println!("failed_login_p50_ms={:.2}", r.pct(0.5));
    println!("failed_login_p99_ms={:.2}", r.pct(0.99));
    println!("failed_login_cpu_us={}", show_cpu(&cpu));
    println!("failed_login_errors={}", r.errors);
    println!("raft_applied_index={applied:.0}");
    eprintln!(
        "failed sign-ins on a follower: {:.0}/s, answer p50 {:.2} ms p99 {:.2} ms, CPU µs per failed sign-in \
         (node 1 / 2 / 3) {}, {} errors; {} sign-ins in {applied:.0} log entries (group commit)",
        r.rate(),
        r.pct(0.5),
        r.pct(0.99),
        show_cpu(&cpu),
        r.errors,
        r.ops
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match real_main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> Result<(), String> {
    let args = Args(std::env::args().skip(1).collect());
    let bin = PathBuf::from(args.value("--bin").ok_or("--bin PATH/TO/jeton is required")?);
    let etcd = PathBuf::from(args.value("--etcd").unwrap_or("/usr/bin/etcd"));
    let seconds = args.number("--seconds", 10);
    let concurrency = args.number("--concurrency", 16);
    let revocations = args.number("--revocations", 200);
    let paced = args.number("--paced-writes", 1000) as f64;
    let readers = args.number("--read-connections", 64);
    let pin = args.0.iter().any(|a| a == "--pin");
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let client = reqwest::Client::new();
    if args.0.iter().any(|a| a == "--failed-logins") {
        return failed_logins(&bin, tmp.path(), pin, concurrency, seconds).await;
    }

    // 1. Replicated writes, Jeton then etcd, same client, same concurrency.
    let (jeton_procs, urls) = start_jeton(&bin, tmp.path(), pin).await?;
    let r = client
        .post(format!("{}/api/add-organization", urls[0]))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .json(&json!({"owner": "admin", "name": "bench"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("add-organization: {}", r.status()));
    }
    let (jw, used) = with_cpu(&jeton_procs, jeton_writes(&urls[0], concurrency, seconds, None, "w")).await;
    let jeton_cpu = per_op(&used, &jw);
    println!("jeton_writes_per_s={:.0}", jw.rate());
    println!("jeton_cpu_us_per_write={}", show_cpu(&jeton_cpu));
    println!("jeton_write_p50_ms={:.2}", jw.pct(0.5));
    println!("jeton_write_p99_ms={:.2}", jw.pct(0.99));
    println!("jeton_write_errors={}", jw.errors);
    let etcd_result = match start_etcd(&etcd, tmp.path(), pin).await {
        Ok((etcd_procs, eurls)) => {
            let (ew, used) = with_cpu(&etcd_procs, etcd_puts(&eurls[0], concurrency, seconds)).await;
            let etcd_cpu = per_op(&used, &ew);
            drop(etcd_procs);
            println!("etcd_puts_per_s={:.0}", ew.rate());
            println!("etcd_cpu_us_per_put={}", show_cpu(&etcd_cpu));
            println!("etcd_put_p50_ms={:.2}", ew.pct(0.5));
            println!("etcd_put_p99_ms={:.2}", ew.pct(0.99));
            println!("etcd_put_errors={}", ew.errors);
            Some((ew, etcd_cpu))
        }
        Err(e) => {
            eprintln!("etcd not measured: {e}");
            None
        }
    };

    // 2. Introspection on a follower (node 3): idle, then with the leader taking writes, closed loop and
    //    paced. Pinned runs keep CPU 1 for the follower alone from here on.
    if pin {
        pin_self("0")?;
    }
    let t = token(&client, &urls[0]).await?;
    let follower = urls[2].clone();
    let _ = active(&client, &follower, &t).await?;
    // Cores the follower (node 3) kept busy during a run.
    let follower_cores = |used: &[f64], run: &Run| used[2] / run.seconds;
    let (idle, used) = with_cpu(&jeton_procs, introspection_load(tmp.path(), &follower, &t, readers, seconds)).await;
    let idle = idle?;
    let idle_cores = follower_cores(&used, &idle);
    let under = |rate: Option<f64>, tag: &'static str| {
        let (leader, follower, t, dir) = (urls[0].clone(), follower.clone(), t.clone(), tmp.path().to_path_buf());
        let procs = &jeton_procs;
        async move {
            let writer = tokio::spawn(async move { jeton_writes(&leader, concurrency, seconds + 1, rate, tag).await });
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (busy, used) = with_cpu(procs, introspection_load(&dir, &follower, &t, readers, seconds)).await;
            let busy = busy?;
            let cores = follower_cores(&used, &busy);
            let background = writer.await.map_err(|e| e.to_string())?;
            Ok::<_, String>((busy, background, cores))
        }
    };
    let (busy, background, busy_cores) = under(None, "load").await?;
    let (paced_busy, paced_background, paced_cores) = under(Some(paced), "paced").await?;
    println!("follower_cores_idle={idle_cores:.2}");
    println!("follower_cores_under_writes={busy_cores:.2}");
    println!("follower_cores_under_paced_writes={paced_cores:.2}");
    println!("follower_introspect_idle_per_s={:.0}", idle.rate());
    println!("follower_introspect_under_writes_per_s={:.0}", busy.rate());
    println!("follower_introspect_ratio={:.2}", busy.rate() / idle.rate());
    println!("background_writes_per_s={:.0}", background.rate());
    println!("follower_introspect_under_paced_writes_per_s={:.0}", paced_busy.rate());
    println!("follower_introspect_paced_ratio={:.2}", paced_busy.rate() / idle.rate());
    println!("paced_writes_per_s={:.0}", paced_background.rate());

    // 3. Revocation propagation to the followers.
    // From sending the revocation to the leader, and from its acknowledgement, until a follower answers
    // inactive (follower polled back to back).
    let mut delays = Vec::new();
    let mut after_ack = Vec::new();
    for _ in 0..revocations {
        let t = token(&client, &urls[0]).await?;
        for f in &urls[1..] {
            if !active(&client, f, &t).await? {
                return Err("a fresh token is inactive on a follower".into());
            }
        }
        let t0 = Instant::now();
        let r = client
            .post(format!("{}/oauth/revoke", urls[0]))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", t.as_str())])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("revoke: {}", r.status()));
        }
        let acked = t0.elapsed();
        for f in &urls[1..] {
            loop {
                if !active(&client, f, &t).await? {
                    delays.push(t0.elapsed().as_micros() as u64);
                    after_ack.push((t0.elapsed() - acked).as_micros() as u64);
                    break;
                }
                if t0.elapsed() > Duration::from_secs(10) {
                    return Err("a revocation did not reach a follower within 10 s".into());
                }
            }
        }
    }
    delays.sort_unstable();
    after_ack.sort_unstable();
    println!("revocation_propagation_p50_ms={:.2}", percentile(&delays, 0.5) as f64 / 1000.0);
    println!("revocation_propagation_p99_ms={:.2}", percentile(&delays, 0.99) as f64 / 1000.0);
    println!("revocation_after_ack_p50_ms={:.2}", percentile(&after_ack, 0.5) as f64 / 1000.0);
    println!("revocation_after_ack_p99_ms={:.2}", percentile(&after_ack, 0.99) as f64 / 1000.0);
    drop(jeton_procs);

    eprintln!(
        "writes: jeton {:.0}/s p50 {:.2} ms p99 {:.2} ms, CPU µs per write {}{}",
        jw.rate(),
        jw.pct(0.5),
        jw.pct(0.99),
        show_cpu(&jeton_cpu),
        etcd_result
            .map(|(e, cpu)| format!(
                " | etcd {:.0}/s p50 {:.2} ms p99 {:.2} ms, CPU µs per put {} | ratio {:.2}",
                e.rate(),
                e.pct(0.5),
                e.pct(0.99),
                show_cpu(&cpu),
                jw.rate() / e.rate()
            ))
            .unwrap_or_default()
    );
    eprintln!(
        "follower introspection: idle {:.0}/s ({idle_cores:.2} cores busy); leader under closed-loop writes {:.0}/s \
         ({:.0} writes/s, {busy_cores:.2} cores): ratio {:.2}; under paced writes {:.0}/s ({:.0} writes/s, \
         {paced_cores:.2} cores): ratio {:.2}",
        idle.rate(),
        busy.rate(),
        background.rate(),
        busy.rate() / idle.rate(),
        paced_busy.rate(),
        paced_background.rate(),
        paced_busy.rate() / idle.rate()
    );
    eprintln!(
        "revocation sent → inactive on a follower: p50 {:.2} ms, p99 {:.2} ms; after the revocation's answer: p50 {:.2} ms, p99 {:.2} ms ({} samples)",
        percentile(&delays, 0.5) as f64 / 1000.0,
        percentile(&delays, 0.99) as f64 / 1000.0,
        percentile(&after_ack, 0.5) as f64 / 1000.0,
        percentile(&after_ack, 0.99) as f64 / 1000.0,
        delays.len()
    );
    Ok(())
}
