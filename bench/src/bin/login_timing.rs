//! How long a failed password sign-in takes to answer, per kind of failure: an unknown user, and a wrong
//! password for a user of each Casdoor scheme. With the timing floor every failure answers at the floor,
//! whatever the scheme; without it (`--floor-ms 0`) the answer time gives the scheme away and tells
//! unknown users from known ones.
//!
//! ```text
//! login_timing --bin target/release/jeton [--floor-ms 400] [--rounds 40]
//! ```
//! One `jeton serve` on a fresh data dir; one organization with a user per scheme (hashes made with
//! Jeton's own scheme code, as Casdoor writes them: bcrypt cost 10 and cost 12 as PHP writes, argon2id
//! m=64 MiB t=1 p=2, pbkdf2-django 260000 iterations) and an application whose lockout limit is out of
//! reach. Each round sends one wrong password per case, one request at a time, in a different order each
//! round; the time is from sending the request to the whole answer. A right password per scheme is timed
//! too (a success is not floored: its time is the check's own).
//! Output: a Markdown table (median, p10, p90, max in ms) on stdout.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use jeton_edge::password::{hash, Scheme};
use serde_json::{json, Value};

const CLIENT_ID: &str = "timing-admin";
const CLIENT_SECRET: &str = "timing-admin-secret-0123456789";
const APP_ID: &str = "timing-app";
const APP_SECRET: &str = "timing-app-secret-0123456789";
const PASSWORD: &str = "Right-Password-1";

/// The user of each case: its scheme and, where it is not Casdoor's, the bcrypt cost or argon2 memory
/// (KiB) of its hash; `None`: the unknown user.
const CASES: &[(&str, Option<(Scheme, u32)>)] = &[
    ("unknown user", None),
    ("plain", Some((Scheme::Plain, 0))),
    ("salt", Some((Scheme::Salt, 0))),
    ("md5-salt", Some((Scheme::Md5Salt, 0))),
    ("sha512-salt", Some((Scheme::Sha512Salt, 0))),
    ("pbkdf2-salt", Some((Scheme::Pbkdf2Salt, 0))),
    ("pbkdf2-django", Some((Scheme::Pbkdf2Django, 0))),
    ("bcrypt", Some((Scheme::Bcrypt, 10))),
    ("bcrypt cost 12", Some((Scheme::Bcrypt, 12))),
    ("argon2id", Some((Scheme::Argon2id, 0))),
    ("argon2id at the cost cap", Some((Scheme::Argon2id, 262_144))),
];

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().position(|a| a == name).and_then(|i| self.0.get(i + 1)).map(String::as_str)
    }
    fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        self.value(name).map_or(Ok(default), |v| v.parse().map_err(|_| format!("{name} takes a number")))
    }
}

/// The node, killed on drop.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> ExitCode {
    let args = Args(std::env::args().skip(1).collect());
    let Some(bin) = args.value("--bin").map(PathBuf::from) else {
        eprintln!("usage: login_timing --bin target/release/jeton [--floor-ms 400] [--rounds 40]");
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("login_timing: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args, &bin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("login_timing: {e}");
            ExitCode::FAILURE
        }
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn start(bin: &Path, dir: &Path, port: u16, floor_ms: u64) -> Result<Node, String> {
    let config = dir.join("jeton.toml");
    let text = format!(
        "[security]\npassword_failure_floor_ms = {floor_ms}\nip_failure_limit = 1000000\npassword_check_concurrency = 2\n"
    );
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env("JETON_ADMIN_PASSWORD", "timing-admin-password")
        .env("JETON_ADMIN_CLIENT_ID", CLIENT_ID)
        .env("JETON_ADMIN_CLIENT_SECRET", CLIENT_SECRET)
        .env("JETON_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok(Node(child))
}

async fn admin(http: &reqwest::Client, base: &str, api: &str, body: Value) -> Result<(), String> {
    let r = http
        .post(format!("{base}/api/{api}"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{api}: {status} {text}"))
    }
}

/// One password grant; its status and the time to the whole answer.
async fn sign_in(http: &reqwest::Client, base: &str, user: &str, password: &str) -> Result<(u16, Duration), String> {
    let started = Instant::now();
    let r = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[("grant_type", "password"), ("username", user), ("password", password)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    Ok((status, started.elapsed()))
}

fn user_name(case: &str) -> String {
    case.replace(' ', "-")
}

async fn run(args: &Args, bin: &Path) -> Result<(), String> {
    let floor_ms = args.number("--floor-ms", jeton_edge::passwords::DEFAULT_FAILURE_FLOOR_MS)?;
    let rounds = args.number("--rounds", 40)? as usize;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let _node = start(bin, dir.path(), port, floor_ms)?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http.get(format!("{base}/api/health")).send().await, Ok(r) if r.status().is_success()) {
        if Instant::now() > deadline {
            return Err("the node did not become ready".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    admin(&http, &base, "add-organization", json!({"owner": "admin", "name": "timing", "passwordType": "bcrypt"}))
        .await?;
    admin(
        &http,
        &base,
        "add-application",
        json!({"owner": "admin", "name": "app-timing", "organization": "timing", "clientId": APP_ID,
               "clientSecret": APP_SECRET, "grantTypes": ["password"], "expireInHours": 1,
               "failedSigninLimit": 1_000_000_000}),
    )
    .await?;
    for (case, scheme) in CASES {
        let Some((scheme, cost)) = *scheme else { continue };
        let salt = "a1b2c3d4e5f6a7b8c9d0";
        let stored = match (scheme, cost) {
            (_, 0) => hash(scheme, PASSWORD, salt).map_err(|e| e.to_string())?,
            (Scheme::Argon2id, memory_kib) => argon2_with_memory(PASSWORD, memory_kib)?,
            (_, cost) => bcrypt_with_cost(PASSWORD, cost)?,
        };
        let body = json!({"owner": "timing", "name": user_name(case), "password": stored,
                          "passwordType": scheme.as_str(), "passwordSalt": salt});
        admin(&http, &base, "add-user", body).await?;
    }

    // Warm-up: connections, caches, the allocator.
    for (case, _) in CASES {
        sign_in(&http, &base, &user_name(case), "warm-up-wrong").await?;
    }
    let mut failed: Vec<Vec<Duration>> = vec![Vec::new(); CASES.len()];
    let mut succeeded: Vec<Vec<Duration>> = vec![Vec::new(); CASES.len()];
    for round in 0..rounds {
        // A different order every round (a rotation), so no case always follows the same one.
        for k in 0..CASES.len() {
            let i = (k + round) % CASES.len();
            let user = user_name(CASES[i].0);
            let (s, t) = sign_in(&http, &base, &user, &format!("wrong-{round}")).await?;
            if s != 400 {
                return Err(format!("{user}: a wrong password answered {s}"));
            }
            failed[i].push(t);
            if CASES[i].1.is_some() && round % 4 == 0 {
                let (s, t) = sign_in(&http, &base, &user, PASSWORD).await?;
                if s != 200 {
                    return Err(format!("{user}: the right password answered {s}"));
                }
                succeeded[i].push(t);
            }
        }
    }

    println!("timing floor {floor_ms} ms, {rounds} rounds, one request at a time\n");
    println!("| case | wrong password: median | p10 | p90 | max | right password: median |");
    println!("|---|---|---|---|---|---|");
    for (i, (case, _)) in CASES.iter().enumerate() {
        let f = stats(&mut failed[i]);
        let ok =
            if succeeded[i].is_empty() { "—".to_string() } else { format!("{:.1}", stats(&mut succeeded[i])[0]) };
        println!("| {case} | {:.1} | {:.1} | {:.1} | {:.1} | {ok} |", f[0], f[1], f[2], f[3]);
    }
    Ok(())
}

/// bcrypt at another cost than the 10 Jeton writes (PHP imports carry 12), `$2a$`.
fn bcrypt_with_cost(password: &str, cost: u32) -> Result<String, String> {
    bcrypt::hash_with_result(password, cost)
        .map(|h| h.format_for_version(bcrypt::Version::TwoA))
        .map_err(|e| e.to_string())
}

/// argon2id with `m` = `memory_kib`, t=1, p=1 (at 256 MiB: exactly the cost cap of one check).
fn argon2_with_memory(password: &str, memory_kib: u32) -> Result<String, String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let salt = *b"timing-bench-slt";
    let params = argon2::Params::new(memory_kib, 1, 1, Some(32)).map_err(|e| e.to_string())?;
    let mut key = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(password.as_bytes(), &salt, &mut key)
        .map_err(|e| e.to_string())?;
    Ok(format!("$argon2id$v=19$m={memory_kib},t=1,p=1${}${}", b64.encode(salt), b64.encode(key)))
}

/// Median, p10, p90 and max in milliseconds.
fn stats(samples: &mut [Duration]) -> [f64; 4] {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    [at(0.5), at(0.1), at(0.9), ms(samples[samples.len() - 1])]
}
