//! Start-up with a large state: how long until a node with N users serves, and how much memory it holds.
//!
//! ```text
//! startup populate --data-dir DIR --users 1000000     # writes the state through Raft, like the admin API would
//! startup measure  --data-dir DIR --bin target/perf/jeton [--port 18401]
//! ```
//! `measure` starts the real binary on the populated data dir, polls `/api/health` until it answers 200,
//! and reports the time to that answer and the process's resident memory (VmRSS, VmHWM), then again after a
//! burst of token and introspection requests. Output: `key=value` lines.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use jeton_edge::keys::{self, Alg, Kek};
use jeton_edge::service::sha256;
use jeton_raft::model::{Application, Organization, User};
use jeton_raft::node::RaftSettings;
use jeton_raft::{Command, Outcome, PutMode, ReplicaNode};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(arg(&args, "--data-dir").unwrap_or_else(|| "startup-data".into()));
    match args.get(1).map(String::as_str) {
        Some("populate") => {
            let users: usize = arg(&args, "--users").and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
            populate(&dir, users);
        }
        Some("measure") => {
            let bin = arg(&args, "--bin").unwrap_or_else(|| "target/perf/jeton".into());
            let port: u16 = arg(&args, "--port").and_then(|p| p.parse().ok()).unwrap_or(18401);
            measure(&dir, Path::new(&bin), port);
        }
        _ => {
            eprintln!("usage: startup populate --data-dir DIR --users N | startup measure --data-dir DIR --bin JETON [--port P]");
            std::process::exit(2);
        }
    }
}

pub const CLIENT_ID: &str = "startup-admin";
pub const CLIENT_SECRET: &str = "startup-admin-secret-0123456789";

fn populate(dir: &Path, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let started = Instant::now();
        let node = ReplicaNode::start(dir, 1, "127.0.0.1:1", &RaftSettings::default()).await.expect("node");
        let kek = Kek::load_or_create(&dir.join("kek")).expect("kek");
        let key = keys::generate(Alg::EdDSA, "startup-eddsa", "admin", &kek, 1).expect("key");
        let base = vec![
            Command::PutSigningKey { key, mode: PutMode::Create },
            Command::PutOrganization {
                org: Organization { name: "built-in".into(), password_type: "argon2id".into(), ..Default::default() },
                mode: PutMode::Create,
            },
            Command::PutOrganization {
                org: Organization { name: "bench".into(), password_type: "argon2id".into(), ..Default::default() },
                mode: PutMode::Create,
            },
            Command::PutApplication {
                app: Application {
                    owner: "admin".into(),
                    name: "app-built-in".into(),
                    organization: "built-in".into(),
                    client_id: CLIENT_ID.into(),
                    client_secret_digest: sha256(CLIENT_SECRET.as_bytes()).to_vec(),
                    grant_types: vec!["client_credentials".into()],
                    token_format: "JWT-Standard".into(),
                    cert: "startup-eddsa".into(),
                    expire_in_hours: 1.0,
                    ..Default::default()
                },
                mode: PutMode::Create,
            },
        ];
        assert_eq!(node.write(Command::Batch { commands: base }).await.expect("write").outcome, Outcome::Applied);
        let batch = 2000;
        let mut written = 0;
        while written < n {
            let commands: Vec<Command> = (written..(written + batch).min(n))
                .map(|i| Command::PutUser { user: user(i), mode: PutMode::Create })
                .collect();
            let outcome = node.write(Command::Batch { commands }).await.expect("write").outcome;
            assert_eq!(outcome, Outcome::Applied);
            written = (written + batch).min(n);
            if written % 100_000 == 0 || written == n {
                eprintln!("{written} users, {:.1} s", started.elapsed().as_secs_f64());
            }
        }
        node.shutdown().await;
        println!("populate_users={n}");
        println!("populate_seconds={:.1}", started.elapsed().as_secs_f64());
        println!("data_dir_bytes={}", dir_size(dir));
    });
}

fn user(i: usize) -> User {
    User {
        owner: "bench".into(),
        name: format!("user{i:07}"),
        id: format!("00000000-0000-4000-8000-{i:012}"),
        created_time: "2026-11-20T08:00:00Z".into(),
        r#type: "normal-user".into(),
        // A real argon2id hash shape; nobody signs in during this measurement.
        password: "$argon2id$v=19$m=65536,t=1,p=2$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM"
            .into(),
        password_type: "argon2id".into(),
        password_salt: "a1b2c3d4e5f6a7b8c9d0".into(),
        display_name: format!("User {i}"),
        email: format!("user{i:07}@bench.example"),
        email_verified: true,
        groups: vec!["bench/staff".into()],
        ..Default::default()
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

/// A minimal HTTP/1.1 request on a fresh connection; returns (status, body).
fn http(port: u16, request: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
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
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

fn measure(dir: &Path, bin: &Path, port: u16) {
    let started = Instant::now();
    let mut child = Process::new(bin)
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env("JETON_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn jeton");
    let health = "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    loop {
        if let Some((200, _)) = http(port, health) {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("jeton did not serve within 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let ready = started.elapsed();
    let (rss, hwm) = memory(child.id());
    println!("ready_ms={}", ready.as_millis());
    println!("rss_ready_kib={rss}");
    println!("hwm_ready_kib={hwm}");
    // A burst of real work: mint tokens and introspect them.
    let basic = base64_basic(CLIENT_ID, CLIENT_SECRET);
    let mut ok = 0;
    for _ in 0..100 {
        if let Some((200, body)) = post(port, "/oauth/token", "grant_type=client_credentials", &basic) {
            let token = body
                .split("\"access_token\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_default()
                .to_string();
            if let Some((200, b)) = post(port, "/oauth/introspect", &format!("token={token}"), &basic) {
                ok += usize::from(b.contains("\"active\":true"));
            }
        }
    }
    let (rss2, hwm2) = memory(child.id());
    println!("introspected_active={ok}");
    println!("rss_after_work_kib={rss2}");
    println!("hwm_after_work_kib={hwm2}");
    let _ = Process::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    eprintln!(
        "summary: serving after {:.2} s, RSS {:.0} MiB (peak {:.0} MiB), after 100 token+introspect: RSS {:.0} MiB (peak {:.0} MiB), {ok}/100 active",
        ready.as_secs_f64(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        rss2 as f64 / 1024.0,
        hwm2 as f64 / 1024.0
    );
}

fn base64_basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}
