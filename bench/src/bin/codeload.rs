//! codeload: the load client of `bench/code.sh` — OAuth 2 authorization codes, obtained the way a browser
//! obtains them and redeemed the way a relying party redeems them, against any server that follows the
//! usual shape (Jeton's page contract, or node-oidc-provider with `bench/oidc-code/server.mjs`).
//!
//! ```text
//! codeload mint   --base URL -n 20000 --out codes.txt   [--per-session 10]
//! codeload redeem --base URL --codes codes.txt          [-c 64 -w 2 -d 10 --server-pid PID]
//! codeload signin --base URL                            [-c 64 -w 2 -d 10 --server-pid PID]
//! ```
//! Common: `--authorize-path /oauth/authorize`, `--token-path /oauth/token` (node-oidc-provider: `/auth`,
//! `/token`), `--client-id`, `--client-secret` (client_secret_basic), `--redirect-uri`, `--scope openid`,
//! `--users 100`, `--user-fmt 'user{:05}'`, `--pass-fmt 'secret{:05}'` (user n = 1..=users),
//! `--alg RS256` (every ID token must carry it; `--alg ''` accepts any), `--threads` (tokio workers; default:
//! the CPUs this process may run on).
//!
//! How a code is obtained (`mint`, and the first half of `signin`): GET the authorization endpoint
//! (response_type=code, PKCE S256, state, nonce) and follow redirects by hand, keeping cookies; a 200 page
//! holding `<form id="login-form">` is posted back with its hidden fields and the user's name and password,
//! one holding `<form id="consent-form">` with `decision=allow`; the redirect to the redirect URI is not
//! followed: the code is read from its `Location`. The cookie jar ignores cookie paths (one jar holds one
//! browser's cookies for one server, whose names do not repeat across paths).
//!
//! - `mint`: N codes, written one per line as `code code_verifier`. Each browser session (one sign-in)
//!   yields `--per-session` codes: after the sign-in, the authorization request again, answered straight
//!   with a code (single sign-on). Minting is not measured; it fails at the first error.
//! - `redeem`: closed loop, `-c` workers each with one request outstanding, taking codes from the file in
//!   order: POST the token endpoint (grant_type=authorization_code, code, redirect_uri, code_verifier,
//!   Basic client authentication); a success is a 200 whose JSON holds an `id_token` with the expected alg.
//!   When the codes run out before the measured window ends, the window ends there (`exhausted=1`).
//! - `signin`: closed loop of whole sign-ins, each with a fresh cookie jar: authorize, login page, POST the
//!   login form, authorize again, the code, then its redemption.
//!
//! `redeem` and `signin` warm up `-w` seconds, then measure `-d` seconds. Only operations started after
//! the warm-up and finished inside the window count; failures count whenever they end. Then one line:
//! `mode=.. c=.. threads=.. ok=.. err=.. rps=.. p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. window_s=..
//! exhausted=.. requests_per_op=.. cpu_s=.. load_us_per_op=.. server_cpu_s=.. server_us_per_op=..
//! other_cores=..`: `cpu_s` is this process's CPU time (user + system) in the window, `server_*` that of
//! `--server-pid` (read from `/proc` at the window's two ends), `other_cores` the busy CPU of everything
//! else on the machine in the window (should be about 0). Failures are listed by kind on stderr. Exit
//! status 1 if nothing succeeded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE,
};
use reqwest::{StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

const USAGE: &str =
    "usage: codeload mint|redeem|signin --base URL [options] (see the doc comment of src/bin/codeload.rs)";

/// Redirects followed for one code at most (Jeton: 3 requests, node-oidc-provider: 5).
const MAX_HOPS: usize = 12;

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().position(|a| a == name).and_then(|i| self.0.get(i + 1)).map(String::as_str)
    }
    fn text(&self, name: &str, default: &str) -> String {
        self.value(name).unwrap_or(default).to_string()
    }
    fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        self.value(name).map_or(Ok(default), |v| v.parse().map_err(|_| format!("{name} takes a number")))
    }
    fn seconds(&self, name: &str, default: f64) -> Result<f64, String> {
        match self.value(name).map(str::parse::<f64>) {
            None => Ok(default),
            Some(Ok(s)) if s >= 0.0 && s.is_finite() => Ok(s),
            Some(_) => Err(format!("{name} takes seconds")),
        }
    }
}

/// The server under test and the client registered at it.
struct Target {
    authorize: Url,
    token: Url,
    client_id: String,
    /// `Authorization: Basic …` of the client, made once.
    basic: HeaderValue,
    redirect_uri: String,
    scope: String,
    users: u64,
    user_fmt: String,
    pass_fmt: String,
    /// The `alg` every ID token must be signed with; `None`: any.
    alg: Option<String>,
}

impl Target {
    fn from_args(args: &Args) -> Result<Target, String> {
        let base =
            Url::parse(args.value("--base").ok_or("--base URL is required")?).map_err(|e| format!("--base: {e}"))?;
        let join = |flag: &str, default: &str| base.join(&args.text(flag, default)).map_err(|e| format!("{flag}: {e}"));
        let client_id = args.text("--client-id", "bench-code-client");
        let secret = args.text("--client-secret", "bench-code-secret-0123456789abcdef");
        let basic =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}")));
        let users = args.number("--users", 100)?;
        if users == 0 {
            return Err("--users must be at least 1".into());
        }
        Ok(Target {
            authorize: join("--authorize-path", "/oauth/authorize")?,
            token: join("--token-path", "/oauth/token")?,
            client_id,
            basic: HeaderValue::from_str(&basic).map_err(|e| format!("client credentials: {e}"))?,
            redirect_uri: args.text("--redirect-uri", "http://127.0.0.1:9/cb"),
            scope: args.text("--scope", "openid"),
            users,
            user_fmt: args.text("--user-fmt", "user{:05}"),
            pass_fmt: args.text("--pass-fmt", "secret{:05}"),
            alg: Some(args.text("--alg", "RS256")).filter(|a| !a.is_empty()),
        })
    }

    /// User `n` of 1..=users (wrapping), and its password.
    fn user(&self, n: u64) -> (String, String) {
        let n = n % self.users + 1;
        (numbered(&self.user_fmt, n), numbered(&self.pass_fmt, n))
    }
}

/// `user{:05}` with n = 7 → `user00007` (one zero-padded placeholder, or `{}`).
fn numbered(format: &str, n: u64) -> String {
    if let Some(start) = format.find("{:0") {
        if let Some(len) = format[start..].find('}') {
            let width: usize = format[start + 3..start + len].parse().unwrap_or(0);
            return format!("{}{:0width$}{}", &format[..start], n, &format[start + len + 1..]);
        }
    }
    format.replace("{}", &n.to_string())
}

/// A PKCE pair (RFC 7636, S256).
struct Pkce {
    verifier: String,
    challenge: String,
}

impl Pkce {
    fn new() -> Pkce {
        let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce { verifier, challenge }
    }
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>())
}

/// One browser's cookies for one server. Paths and domains are not kept (see the module doc).
#[derive(Default)]
struct CookieJar(Vec<(String, String)>);

impl CookieJar {
    fn absorb(&mut self, headers: &HeaderMap) {
        for line in headers.get_all(SET_COOKIE) {
            let Ok(line) = line.to_str() else { continue };
            let mut parts = line.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else { continue };
            let (name, value) = (name.trim(), value.trim());
            let removed = value.is_empty()
                || parts.any(|attribute| {
                    let a = attribute.trim().to_ascii_lowercase();
                    a == "max-age=0" || a.starts_with("max-age=-") || a.starts_with("expires=thu, 01 jan 1970")
                });
            self.0.retain(|(n, _)| n != name);
            if !removed {
                self.0.push((name.to_string(), value.to_string()));
            }
        }
    }

    fn header(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.0.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; "))
    }
}

/// A `<form>` of a page: its id, where it posts, and the values of its `<input>`s.
struct Form {
    id: String,
    action: String,
    fields: Vec<(String, String)>,
}

/// The forms of a server-rendered page. A plain scan, enough for the pages under test (well-formed,
/// attribute values quoted or bare, entities in values).
fn forms(html: &str) -> Vec<Form> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find("<form") {
        let body = &rest[at..];
        let end = body.find("</form>").unwrap_or(body.len());
        let (form_html, after) = (&body[..end], &body[end..]);
        let tag_end = form_html.find('>').unwrap_or(form_html.len());
        let attrs = attributes(&form_html[..tag_end]);
        let mut fields = Vec::new();
        let mut inner = &form_html[tag_end..];
        while let Some(i) = inner.find("<input") {
            let tail = &inner[i..];
            let close = tail.find('>').unwrap_or(tail.len());
            let a = attributes(&tail[..close]);
            if let Some(name) = a.get("name") {
                fields.push((name.clone(), a.get("value").cloned().unwrap_or_default()));
            }
            inner = &tail[close..];
        }
        found.push(Form {
            id: attrs.get("id").cloned().unwrap_or_default(),
            action: attrs.get("action").cloned().unwrap_or_default(),
            fields,
        });
        rest = after;
    }
    found
}

/// The attributes of one start tag (`<input id="a" value='b' disabled>`), names lower-cased, values unescaped.
fn attributes(tag: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let s = tag.trim_start_matches('<');
    // Skip the tag name.
    let mut rest = s.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() || rest.starts_with('>') {
            break;
        }
        let name_len = rest.find(|c: char| c.is_whitespace() || c == '=' || c == '>' || c == '/').unwrap_or(rest.len());
        if name_len == 0 {
            break;
        }
        let name = rest[..name_len].to_ascii_lowercase();
        rest = rest[name_len..].trim_start();
        let mut value = String::new();
        if let Some(after_eq) = rest.strip_prefix('=') {
            let after_eq = after_eq.trim_start();
            let (raw, tail) = match after_eq.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let inner = &after_eq[1..];
                    let close = inner.find(q).unwrap_or(inner.len());
                    (&inner[..close], inner.get(close + 1..).unwrap_or(""))
                }
                _ => {
                    let close = after_eq.find(|c: char| c.is_whitespace() || c == '>').unwrap_or(after_eq.len());
                    (&after_eq[..close], &after_eq[close..])
                }
            };
            value = unescape(raw);
            rest = tail;
        }
        out.insert(name, value);
    }
    out
}

/// HTML character references of attribute values: the five named ones and numeric ones.
fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(semi) = tail.find(';').filter(|&k| k <= 10) else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity.strip_prefix('#').and_then(|num| {
                let code = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => num.parse().ok(),
                };
                code.and_then(char::from_u32)
            }),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text of `<p id="error">…</p>` (or any element with that id), for a refused sign-in.
fn error_text(html: &str) -> String {
    let Some(at) = html.find("id=\"error\"") else { return String::new() };
    let after = &html[at..];
    let start = after.find('>').map_or(after.len(), |i| i + 1);
    let end = after[start..].find('<').map_or(after.len(), |i| start + i);
    after[start..end].trim().to_string()
}

/// What one HTTP step of the browser does next.
enum Step {
    Get(Url),
    Post(Url, String),
}

fn form_body(fields: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Why an operation failed; failures are counted by this text, so it names a kind, not an instance.
type Failure = String;

fn transport(stage: &str, e: &reqwest::Error) -> Failure {
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "broken body"
    } else {
        "transport error"
    };
    format!("{stage}: {kind}")
}

/// Follows the authorization request as a browser would, signing in as user `n` when asked, until the
/// redirect to the redirect URI; returns the code and how many HTTP requests it took.
async fn obtain_code(
    http: &reqwest::Client,
    t: &Target,
    jar: &mut CookieJar,
    n: u64,
    pkce: &Pkce,
) -> Result<(String, u32), Failure> {
    let state = random_token();
    let mut url = t.authorize.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &t.client_id)
        .append_pair("redirect_uri", &t.redirect_uri)
        .append_pair("scope", &t.scope)
        .append_pair("state", &state)
        .append_pair("nonce", &random_token())
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");
    let mut step = Step::Get(url);
    let mut signed_in = false;
    for hop in 1..=MAX_HOPS {
        // As a browser sends them: pages asked for as HTML, form posts with their Origin (CSRF defences
        // may check it).
        let (current, request) = match &step {
            Step::Get(u) => (u.clone(), http.get(u.clone())),
            Step::Post(u, body) => (
                u.clone(),
                http.post(u.clone())
                    .header(ORIGIN, u.origin().ascii_serialization())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body.clone()),
            ),
        };
        let request = request.header(ACCEPT, "text/html,application/xhtml+xml");
        let request = match jar.header() {
            Some(c) => request.header(COOKIE, c),
            None => request,
        };
        let response = request.send().await.map_err(|e| transport("authorize", &e))?;
        jar.absorb(response.headers());
        let status = response.status();
        let location = response.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
        let body = response.text().await.map_err(|e| transport("authorize", &e))?;
        if status.is_redirection() {
            let Some(location) = location else {
                return Err(format!("{status} without Location at {}", current.path()));
            };
            if location.starts_with(&t.redirect_uri) {
                let target =
                    Url::parse(&location).map_err(|_| "unparsable redirect to the redirect URI".to_string())?;
                let mut code = None;
                let mut returned_state = None;
                for (k, v) in target.query_pairs() {
                    match &*k {
                        "code" => code = Some(v.into_owned()),
                        "state" => returned_state = Some(v.into_owned()),
                        "error" => return Err(format!("authorization error {v}")),
                        _ => {}
                    }
                }
                if returned_state.as_deref() != Some(state.as_str()) {
                    return Err("state not returned unchanged".into());
                }
                return code.map(|c| (c, hop as u32)).ok_or_else(|| "redirect without a code".into());
            }
            let next = current.join(&location).map_err(|_| format!("bad Location at {}", current.path()))?;
            step = Step::Get(next);
            continue;
        }
        if status == StatusCode::NOT_FOUND {
            return Err(format!(
                "404 at {}: the server has no such endpoint (for Jeton: is the authorization code flow in this build?)",
                current.path()
            ));
        }
        if status != StatusCode::OK {
            return Err(format!("{status} at {}", current.path()));
        }
        let page = forms(&body);
        if let Some(login) = page.iter().find(|f| f.id == "login-form") {
            if signed_in {
                return Err(format!("sign-in refused: {:?}", error_text(&body)));
            }
            signed_in = true;
            let (user, password) = t.user(n);
            let mut fields: Vec<(String, String)> =
                login.fields.iter().filter(|(k, _)| k != "username" && k != "password").cloned().collect();
            fields.push(("username".into(), user));
            fields.push(("password".into(), password));
            let action = current.join(&login.action).map_err(|_| "bad login form action".to_string())?;
            step = Step::Post(action, form_body(&fields));
        } else if let Some(consent) = page.iter().find(|f| f.id == "consent-form") {
            let mut fields = consent.fields.clone();
            fields.push(("decision".into(), "allow".into()));
            let action = current.join(&consent.action).map_err(|_| "bad consent form action".to_string())?;
            step = Step::Post(action, form_body(&fields));
        } else {
            return Err(format!("200 page without a login or consent form at {}", current.path()));
        }
    }
    Err(format!("no code after {MAX_HOPS} requests"))
}

/// Redeems one code at the token endpoint; a success is a 200 with an `id_token` signed with `t.alg`.
async fn redeem(http: &reqwest::Client, t: &Target, code: &str, verifier: &str) -> Result<(), Failure> {
    let body = form_body(&[
        ("grant_type".into(), "authorization_code".into()),
        ("code".into(), code.into()),
        ("redirect_uri".into(), t.redirect_uri.clone()),
        ("code_verifier".into(), verifier.into()),
    ]);
    let response = http
        .post(t.token.clone())
        .header(AUTHORIZATION, t.basic.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| transport("token", &e))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| transport("token", &e))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if status != StatusCode::OK {
        let error = json.get("error").and_then(|e| e.as_str()).unwrap_or("no error code");
        return Err(format!("token: {status} {error}"));
    }
    let Some(id_token) = json.get("id_token").and_then(|v| v.as_str()) else {
        return Err("token: 200 without an id_token".into());
    };
    if let Some(expected) = &t.alg {
        let header = id_token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok());
        let alg = header.as_ref().and_then(|h| h.get("alg")).and_then(|a| a.as_str()).unwrap_or("none");
        if alg != expected {
            return Err(format!("token: id_token signed {alg}, not {expected}"));
        }
    }
    Ok(())
}

fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("codeload (jeton bench)")
        .http1_only()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------- mint

async fn mint(args: &Args, t: Arc<Target>) -> Result<(), String> {
    let total = args.number("-n", 20_000)? as usize;
    let per_session = args.number("--per-session", 10)?.max(1) as usize;
    let workers = args.number("-c", 16)?.max(1) as usize;
    let out = PathBuf::from(args.value("--out").ok_or("mint needs --out FILE")?);
    let http = http_client()?;
    let claimed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (http, t, claimed) = (http.clone(), t.clone(), claimed.clone());
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            let mut requests = 0u64;
            loop {
                let first = claimed.fetch_add(per_session, Ordering::Relaxed);
                if first >= total {
                    break;
                }
                let mut jar = CookieJar::default();
                let session = (first / per_session) as u64;
                for _ in first..(first + per_session).min(total) {
                    let pkce = Pkce::new();
                    let (code, hops) = obtain_code(&http, &t, &mut jar, session, &pkce).await?;
                    requests += u64::from(hops);
                    codes.push(format!("{code} {}\n", pkce.verifier));
                }
            }
            Ok::<_, Failure>((codes, requests))
        }));
    }
    let mut lines = String::new();
    let (mut minted, mut requests) = (0usize, 0u64);
    for task in tasks {
        let (codes, r) = task.await.map_err(|e| e.to_string())??;
        minted += codes.len();
        requests += r;
        lines.extend(codes);
    }
    let secs = started.elapsed().as_secs_f64();
    std::fs::write(&out, lines).map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "mode=mint ok={minted} sessions={} requests={requests} secs={secs:.2} codes_per_s={:.0}",
        minted.div_ceil(per_session),
        minted as f64 / secs
    );
    Ok(())
}

// ---------------------------------------------------------------- measured runs

/// CPU counters at one instant: this process, the server, the whole machine.
struct Snapshot {
    at: Instant,
    own_ticks: Option<u64>,
    server_ticks: Option<u64>,
    /// Busy and total ticks of all CPUs (/proc/stat `cpu` line).
    machine: Option<(u64, u64)>,
}

impl Snapshot {
    fn take(server: Option<u32>) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            own_ticks: process_ticks("/proc/self/stat"),
            server_ticks: server.and_then(|pid| process_ticks(&format!("/proc/{pid}/stat"))),
            machine: machine_ticks(),
        }
    }
}

/// utime + stime of a process (all threads), in clock ticks.
fn process_ticks(path: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    // After "pid (comm) " the state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// (busy, total) ticks over all CPUs; busy = user + nice + system + irq + softirq + steal.
fn machine_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some((busy, busy + v.get(3)? + v.get(4)?))
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn machine_cpus() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .map(|s| s.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count())
        .unwrap_or(1)
        .max(1) as f64
}

/// One finished operation, in µs since the run began.
struct Sample {
    start_us: u64,
    end_us: u64,
    ok: bool,
    requests: u32,
}

/// What the workers share: when to stop, and the window's end when the codes ran out early.
struct Run {
    began: Instant,
    stop: AtomicBool,
    exhausted: Notify,
    exhausted_at: Mutex<Option<Instant>>,
}

impl Run {
    fn since(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.began).as_micros() as u64
    }
}

/// Runs `-c` closed-loop workers (`op(worker, iteration)`), samples the CPU at the window's ends and
/// prints the summary line.
async fn measured<F, Fut>(args: &Args, mode: &str, op: F) -> Result<bool, String>
where
    F: Fn(usize, u64, Arc<Run>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u32, Failure>> + Send + 'static,
{
    let workers = args.number("-c", 64)?.max(1) as usize;
    let warm = Duration::from_secs_f64(args.seconds("-w", 2.0)?);
    let window = Duration::from_secs_f64(args.seconds("-d", 10.0)?);
    let server =
        args.value("--server-pid").map(|p| p.parse::<u32>().map_err(|_| "--server-pid takes a pid")).transpose()?;
    let run = Arc::new(Run {
        began: Instant::now(),
        stop: AtomicBool::new(false),
        exhausted: Notify::new(),
        exhausted_at: Mutex::new(None),
    });
    let op = Arc::new(op);
    let probe = {
        let run = run.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until((run.began + warm).into()).await;
            let first = Snapshot::take(server);
            tokio::select! {
                _ = tokio::time::sleep_until((run.began + warm + window).into()) => {}
                _ = run.exhausted.notified() => {}
            }
            let last = Snapshot::take(server);
            run.stop.store(true, Ordering::Relaxed);
            (first, last)
        })
    };
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (run, op) = (run.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut failures: HashMap<Failure, u64> = HashMap::new();
            let mut iteration = 0u64;
            while !run.stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let result = op(worker, iteration, run.clone()).await;
                iteration += 1;
                let end = Instant::now();
                let (ok, requests) = match result {
                    Ok(r) => (true, r),
                    Err(f) if f == EXHAUSTED => break,
                    Err(f) => {
                        *failures.entry(f).or_default() += 1;
                        (false, 0)
                    }
                };
                samples.push(Sample { start_us: run.since(start), end_us: run.since(end), ok, requests });
            }
            (samples, failures)
        }));
    }
    let (first, last) = probe.await.map_err(|e| e.to_string())?;
    let mut samples = Vec::new();
    let mut failures: HashMap<Failure, u64> = HashMap::new();
    for task in tasks {
        let (s, f) = task.await.map_err(|e| e.to_string())?;
        samples.extend(s);
        for (k, v) in f {
            *failures.entry(k).or_default() += v;
        }
    }
    let exhausted_at = *run.exhausted_at.lock().map_err(|_| "poisoned")?;
    if exhausted_at.is_some_and(|at| at < run.began + warm) {
        return Err("the codes ran out during the warm-up: mint more (-n) or warm up less (-w)".into());
    }
    let (from, to) = (run.since(first.at), run.since(last.at));
    let mut latencies = Vec::new();
    let (mut ok, mut err, mut requests) = (0u64, 0u64, 0u64);
    for s in &samples {
        if s.start_us < from {
            continue;
        }
        if !s.ok {
            err += 1;
        } else if s.end_us <= to {
            ok += 1;
            requests += u64::from(s.requests);
            latencies.push(s.end_us - s.start_us);
        }
    }
    latencies.sort_unstable();
    let quantile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        latencies[((latencies.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
    };
    let secs = last.at.duration_since(first.at).as_secs_f64().max(1e-9);
    let hz = clock_ticks_per_second();
    let delta = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b.saturating_sub(a) as f64 / hz);
    let own = delta(first.own_ticks, last.own_ticks);
    let srv = delta(first.server_ticks, last.server_ticks);
    let other = first.machine.zip(last.machine).map(|((b0, t0), (b1, t1))| {
        let busy = if t1 > t0 { (b1 - b0) as f64 / (t1 - t0) as f64 * machine_cpus() } else { 0.0 };
        (busy - (own.unwrap_or(0.0) + srv.unwrap_or(0.0)) / secs).max(0.0)
    });
    let per_op = |cpu: Option<f64>| match cpu {
        Some(c) if ok > 0 => c / ok as f64 * 1e6,
        _ => -1.0,
    };
    println!(
        "mode={mode} c={workers} threads={} ok={ok} err={err} rps={:.1} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3} \
         window_s={secs:.3} exhausted={} requests_per_op={:.1} cpu_s={:.2} load_us_per_op={:.1} server_cpu_s={:.2} \
         server_us_per_op={:.1} other_cores={:.2}",
        threads(args)?,
        ok as f64 / secs,
        quantile(0.50),
        quantile(0.90),
        quantile(0.99),
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        u8::from(exhausted_at.is_some()),
        if ok > 0 { requests as f64 / ok as f64 } else { 0.0 },
        own.unwrap_or(-1.0),
        per_op(own),
        srv.unwrap_or(-1.0),
        per_op(srv),
        other.unwrap_or(-1.0),
    );
    let mut kinds: Vec<_> = failures.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    for (kind, count) in kinds {
        eprintln!("failures: {count} x {kind}");
    }
    Ok(ok > 0)
}

/// What a worker answers when there is no code left to redeem.
const EXHAUSTED: &str = "no code left";

async fn redeem_codes(args: &Args, t: Arc<Target>) -> Result<bool, String> {
    let path = args.value("--codes").ok_or("redeem needs --codes FILE")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let codes: Arc<Vec<(String, String)>> =
        Arc::new(text.lines().filter_map(|l| l.split_once(' ')).map(|(c, v)| (c.to_string(), v.to_string())).collect());
    if codes.is_empty() {
        return Err(format!("{path}: no codes"));
    }
    let http = http_client()?;
    let next = Arc::new(AtomicUsize::new(0));
    measured(args, "redeem", move |_, _, run| {
        let (http, t, codes, next) = (http.clone(), t.clone(), codes.clone(), next.clone());
        async move {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((code, verifier)) = codes.get(i) else {
                if i == codes.len() {
                    if let Ok(mut at) = run.exhausted_at.lock() {
                        *at = Some(Instant::now());
                    }
                    run.exhausted.notify_one();
                }
                return Err(EXHAUSTED.to_string());
            };
            redeem(&http, &t, code, verifier).await.map(|()| 1)
        }
    })
    .await
}

async fn sign_ins(args: &Args, t: Arc<Target>) -> Result<bool, String> {
    let http = http_client()?;
    let workers = args.number("-c", 64)?.max(1);
    measured(args, "signin", move |worker, iteration, _| {
        let (http, t) = (http.clone(), t.clone());
        async move {
            let mut jar = CookieJar::default();
            let pkce = Pkce::new();
            let (code, hops) = obtain_code(&http, &t, &mut jar, iteration * workers + worker as u64, &pkce).await?;
            redeem(&http, &t, &code, &pkce.verifier).await?;
            Ok(hops + 1)
        }
    })
    .await
}

fn threads(args: &Args) -> Result<usize, String> {
    let default = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as u64;
    Ok(args.number("--threads", default)?.max(1) as usize)
}

fn main() -> ExitCode {
    let args = Args(std::env::args().skip(1).collect());
    let mode = args.0.first().cloned().unwrap_or_default();
    let run = || -> Result<bool, String> {
        let t = Arc::new(Target::from_args(&args)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads(&args)?)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            match mode.as_str() {
                "mint" => mint(&args, t).await.map(|()| true),
                "redeem" => redeem_codes(&args, t).await,
                "signin" => sign_ins(&args, t).await,
                _ => Err(USAGE.into()),
            }
        })
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("codeload {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_login_form_of_the_contract() {
        let html = r#"<form id="login-form" method="post" action="/login">
            <input id="username" name="username"><input id="password" name="password" type="password">
            <input type="hidden" name="csrf" value="a&amp;b"><input type=hidden name='request' value="x&#x2F;y">
            <button id="submit" type="submit">Sign in</button></form>"#;
        let f = forms(html);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].id.as_str(), f[0].action.as_str()), ("login-form", "/login"));
        assert!(f[0].fields.contains(&("csrf".into(), "a&b".into())));
        assert!(f[0].fields.contains(&("request".into(), "x/y".into())));
    }

    #[test]
    fn the_jar_drops_cleared_cookies() {
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("a=1; Path=/; HttpOnly"));
        headers.append(SET_COOKIE, HeaderValue::from_static("b=2; path=/auth/x"));
        let mut jar = CookieJar::default();
        jar.absorb(&headers);
        let mut cleared = HeaderMap::new();
        cleared.append(SET_COOKIE, HeaderValue::from_static("b=; expires=Thu, 01 Jan 1970 00:00:00 GMT"));
        jar.absorb(&cleared);
        assert_eq!(jar.header().as_deref(), Some("a=1"));
    }

    #[test]
    fn numbers_users_like_the_fixtures() {
        assert_eq!(numbered("user{:05}", 7), "user00007");
        assert_eq!(numbered("u{}", 7), "u7");
    }
}
