//! The RADIUS server against a running node holding the Casdoor fixtures (COMPAT §10, imported from
//! PostgreSQL as in tests/e2e/import.rs), driven with FreeRADIUS' `radclient` (Debian's freeradius-utils, run
//! as a process; it fills in the Message-Authenticator and CHAP-Password itself, and checks the reply's
//! authenticators with the secret) and with tests/e2e/radius/client.py, a RADIUS client written for these
//! tests from the RFCs (Python's hashlib and hmac, PyCryptodome's MD4 and DES for MS-CHAPv2), for what
//! `radclient` cannot do: a wrong Message-Authenticator, the same datagram twice from one socket, MS-CHAPv2
//! with its authenticator response and MPPE keys checked. Malformed datagrams are written on raw UDP sockets.
//! What was dropped is read back from `/metrics` as well: silence alone could be a slow answer.
//!
//! Needs tests/e2e/radius/install.sh and PostgreSQL (as tests/e2e/import.rs).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tokio::net::UdpSocket;

use crate::harness::{free_port, Node, ADMIN_PASSWORD};

/// The secret of the NAS client 127.0.0.1 ("local").
const SECRET: &str = "e2e-radius-secret";
/// The secret of 127.0.0.3 ("acme-nas", organization acme).
const ACME_SECRET: &str = "acme-nas-secret";
/// The secret of 127.0.0.4 ("legacy", no Message-Authenticator required, organization acme).
const LEGACY_SECRET: &str = "legacy-nas-secret";

/// The configuration most tests run with: four NAS clients, of which only the loopback ones can send
/// here (10.0.0.0/8 cannot), and reply attributes for acme's groups and roles.
const CONFIG: &str = r#"
[radius]
# The fixtures' default is Casdoor's; said here as the tests depend on it.
default_organization = "built-in"

[[radius.clients]]
name = "local"
address = "127.0.0.1"
secret = "e2e-radius-secret"

[[radius.clients]]
name = "acme-nas"
address = "127.0.0.3/32"
secret = "acme-nas-secret"
organization = "acme"

[[radius.clients]]
name = "legacy"
address = "127.0.0.4"
secret = "legacy-nas-secret"
require_message_authenticator = false
organization = "acme"

[[radius.clients]]
name = "far"
address = "10.0.0.0/8"
secret = "far-away-secret"

[[radius.replies]]
organization = "acme"
group = "engineering"
attributes = { "Filter-Id" = "engineering", "Session-Timeout" = "3600" }

[[radius.replies]]
organization = "acme"
group = "sales"
attributes = { "Filter-Id" = "sales" }

# Roles held directly, through a group (bob: engineering is in role-engineers) or through a sub-role
# (role-staff has role-engineers and role-admins).
[[radius.replies]]
organization = "acme"
role = "role-engineers"
attributes = { "Vendor-9-1" = "shell:priv-lvl=7" }

[[radius.replies]]
organization = "acme"
role = "role-staff"
attributes = { "Idle-Timeout" = "900" }

[[radius.replies]]
organization = "acme"
role = "role-admins"
attributes = { "Vendor-9-1" = "shell:priv-lvl=15", "Reply-Message" = "welcome, administrator" }
"#;

/// acme/alice's TOTP secret in the fixtures (`user.totp_secret`, preferred_mfa_type `app`).
const ALICE_TOTP: &str = "U3433O7KTOTY5VIQDDMVJQY5L3DNFQJI";

/// A node with the Casdoor fixtures imported and RADIUS listeners on free ports.
struct Server {
    node: Node,
    /// `127.0.0.1:<port>` of authentication.
    auth: String,
    /// `127.0.0.1:<port>` of accounting.
    acct: String,
    _tmp: tempfile::TempDir,
}

impl Server {
    /// Starts a node with `config` as its config file, imports the fixtures into it.
    async fn start(tag: &str, config: &str) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("jeton.toml");
        std::fs::write(&path, config).expect("config file");
        let auth = format!("127.0.0.1:{}", free_udp_port());
        let acct = format!("127.0.0.1:{}", free_udp_port());
        let path = path.to_string_lossy().into_owned();
        let args = ["--config", &path, "--radius-addr", &auth, "--radius-acct-addr", &acct];
        let node = Node::start_in(&tmp.path().join("data"), free_port(), &args).await;
        crate::import::import_fixtures_into(&node, &format!("radius_{tag}"));
        Server { node, auth, acct, _tmp: tmp }
    }

    /// `radclient` on the authentication port as the NAS "local".
    fn auth(&self, lines: &[String]) -> Radclient {
        radclient(&self.auth, "auth", SECRET, lines, ANSWERED)
    }

    /// [`Server::auth`] where no answer is expected: a short wait.
    fn auth_dropped(&self, secret: &str, lines: &[String]) -> Radclient {
        radclient(&self.auth, "auth", secret, lines, DROPPED)
    }

    /// The Python client on the authentication port.
    fn python(&self, secret: &str, args: &[&str]) -> Value {
        let mut all = vec![self.auth.as_str(), secret];
        all.extend(args);
        python(&all)
    }

    /// The value of `jeton_radius_requests_total{nas, outcome}`.
    async fn requests(&self, nas: &str, outcome: &str) -> f64 {
        sample(&self.node, "jeton_radius_requests_total", &[("nas", nas), ("outcome", outcome)]).await
    }

    /// The value of `jeton_radius_drops_total{nas, reason}`.
    async fn drops(&self, nas: &str, reason: &str) -> f64 {
        sample(&self.node, "jeton_radius_drops_total", &[("nas", nas), ("reason", reason)]).await
    }

    /// All of `nas`'s drops, whatever the reason.
    async fn all_drops(&self, nas: &str) -> f64 {
        sample(&self.node, "jeton_radius_drops_total", &[("nas", nas)]).await
    }
}

/// A UDP port on 127.0.0.1 for a listener: [`free_port`]'s (never handed out twice in this process, below
/// the ephemeral range), checked free for UDP too.
fn free_udp_port() -> u16 {
    loop {
        let port = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Seconds `radclient` waits for an answer that should come: long enough for a slow hash on a busy machine
/// (and the failure floor of a Reject); answers come at once, so this costs nothing when they do.
const ANSWERED: &str = "5";
/// Seconds it waits where the packet should be dropped (whether it was is read from `/metrics` too).
const DROPPED: &str = "0.7";

/// What `radclient -x` printed.
#[derive(Debug)]
struct Radclient {
    /// The reply's code (`Access-Accept`, ...), or `None` when nothing (valid) came back.
    code: Option<String>,
    /// The reply's attributes, as `radclient` decoded them (strings keep their quotes off).
    attributes: Vec<(String, String)>,
    output: String,
}

impl Radclient {
    /// Fails when the reply has a Vendor-Specific attribute `radclient` could not decode (it prints those
    /// as `Attr-26 = 0x...`): not a vendor id and sub-attributes (RFC 2865 §5.26).
    fn assert_vendor_attributes_decoded(&self) {
        assert!(
            self.all("Attr-26").is_empty(),
            "a Vendor-Specific attribute radclient cannot decode (RFC 2865 §5.26 framing): {}",
            self.output
        );
    }

    /// The values of attribute `name`.
    fn all(&self, name: &str) -> Vec<&str> {
        self.attributes.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The only value of attribute `name`, if any.
    fn get(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} more than once: {}", self.output);
        all.first().copied()
    }

    /// The attribute names of the reply, sorted.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.attributes.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names
    }

    fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// Runs `radclient -x` once (no retry) against `server` with the attribute `lines`.
fn radclient(server: &str, command: &str, secret: &str, lines: &[String], timeout: &str) -> Radclient {
    use std::io::Write;
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", timeout, server, command, secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run radclient (tests/e2e/radius/install.sh installs it)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(lines.join("\n").as_bytes()).expect("write attributes");
    stdin.write_all(b"\n").expect("write attributes");
    drop(stdin);
    let out = child.wait_with_output().expect("radclient");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let output = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let mut code = None;
    let mut attributes = Vec::new();
    let mut in_reply = false;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("Received ") {
            code = rest.split_whitespace().next().map(str::to_string);
            in_reply = true;
        } else if let (true, Some(attr)) = (in_reply, line.strip_prefix('\t')) {
            if let Some((name, value)) = attr.split_once(" = ") {
                let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
                attributes.push((name.to_string(), value.to_string()));
            }
        } else {
            in_reply = false;
        }
    }
    Radclient { code, attributes, output }
}

/// `Name = "value"` for `radclient`, the value quoted.
fn text(name: &str, value: &str) -> String {
    format!("{name} = \"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The attribute that makes `radclient` add a Message-Authenticator (it computes the value).
fn with_ma() -> String {
    "Message-Authenticator = 0x00".to_string()
}

/// The attribute that makes `radclient` send from `ip` (a loopback address other than 127.0.0.1).
fn from(ip: &str) -> String {
    format!("Packet-Src-IP-Address = {ip}")
}

/// A PAP Access-Request with a Message-Authenticator, the organization in Class (none when empty).
fn pap(org: &str, user: &str, password: &str) -> Vec<String> {
    let mut lines = vec![text("User-Name", user), text("User-Password", password), with_ma()];
    if !org.is_empty() {
        lines.push(text("Class", org));
    }
    lines
}

/// A CHAP Access-Request (`radclient` computes CHAP-Password from the password in clear, with the Request
/// Authenticator as the challenge) with a Message-Authenticator.
fn chap(org: &str, user: &str, password: &str) -> Vec<String> {
    vec![text("User-Name", user), text("CHAP-Password", password), text("Class", org), with_ma()]
}

/// The Python interpreter that has PyCryptodome: Debian's, where tests/e2e/radius/install.sh puts it.
fn python_interpreter() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs tests/e2e/radius/client.py with `args`; its JSON output.
fn python(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/radius/client.py");
    let out = Command::new(python_interpreter())
        .arg(script)
        .args(args)
        .output()
        .expect("run tests/e2e/radius/client.py (tests/e2e/radius/install.sh installs what it needs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client.py {args:?} failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("client.py printed no JSON ({e}): {stdout}"))
}

/// The current TOTP code of `secret` (RFC 6238, computed by client.py), `offset` steps of 30 s from now.
/// Also what tests/e2e/browser.rs types into the TOTP page.
pub(crate) fn totp(secret: &str, offset: i64) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/radius/client.py");
    let out = Command::new(python_interpreter())
        .args([script, "totp", secret, "--step-offset", &offset.to_string()])
        .output()
        .expect("run client.py totp");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(code.len(), 6, "{code}");
    code
}

/// The replies client.py received.
fn replies(v: &Value) -> &Vec<Value> {
    v["replies"].as_array().expect("replies")
}

/// Checks that a reply client.py decoded is signed right, as RFC 2865 §3 and RFC 3579 §3.2 say, with the
/// Message-Authenticator first, and answers the request it was sent for.
fn assert_signed(reply: &Value) {
    assert_eq!(reply["response_authenticator"], "ok", "{reply}");
    assert_eq!(reply["message_authenticator"], "ok", "{reply}");
    assert_eq!(reply["message_authenticator_first"], true, "{reply}");
    assert_eq!(reply["identifier_matches"], true, "{reply}");
    assert_eq!(
        reply["vendor_specific_ok"], true,
        "a Vendor-Specific attribute is not a vendor id and sub-attributes (RFC 2865 §5.26): {reply}"
    );
}

/// The attribute types of a reply client.py decoded.
fn types(reply: &Value) -> Vec<u64> {
    reply["attributes"].as_array().expect("attributes").iter().map(|a| a[0].as_u64().expect("type")).collect()
}

/// The sum of the samples of `name` in the node's `/metrics` (Prometheus text) that have these labels
/// (and maybe others), whatever their order; 0 when there is none (a counter not yet counted).
async fn sample(node: &Node, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = node.http.get(node.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let Some(rest) = rest.strip_prefix('{') else { continue };
        let Some((inside, value)) = rest.split_once('}') else { continue };
        let have: BTreeMap<&str, &str> =
            inside.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k, v.trim_matches('"'))).collect();
        if labels.iter().all(|(k, v)| have.get(k) == Some(v)) {
            sum += value.trim().parse::<f64>().expect("sample value");
        }
    }
    sum
}

/// Password of a fixture user (seed-passwords.json).
fn password(owner: &str, name: &str) -> String {
    let seed = crate::import::seed_passwords();
    seed["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["owner"] == owner && u["name"] == name)
        .and_then(|u| u["password"].as_str())
        .unwrap_or_else(|| panic!("{owner}/{name} not in seed-passwords.json"))
        .to_string()
}

#[tokio::test]
async fn pap_accepts_imported_users_of_every_scheme_with_the_organization_from_class_client_or_default() {
    let s = Server::start("pap", CONFIG).await;
    // One user per scheme of the fixtures (COMPAT §10.2), the organization in Class (Casdoor's convention).
    let users = [
        ("acme", "heidi"),   // plain
        ("acme", "erin"),    // salt (SHA-256)
        ("acme", "frank"),   // sha512-salt
        ("acme", "grace"),   // md5-salt, spaces in the password
        ("acme", "trent"),   // md5-salt legacy double hash, no salt
        ("acme", "carol"),   // pbkdf2-salt
        ("acme", "dave"),    // pbkdf2-django
        ("acme", "bob"),     // argon2id
        ("acme", "victor"),  // bcrypt $2y$
        ("acme", "ivan"),    // no type: the organization's (bcrypt)
        ("globex", "kenji"), // sha512-salt with the organization's salt
        ("globex", "zoe"),   // argon2id, non-ASCII password
    ];
    for (org, user) in users {
        let r = s.auth(&pap(org, user, &password(org, user)));
        assert!(r.is("Access-Accept"), "{org}/{user}: {}", r.output);
        // radclient checked the Response Authenticator and the Message-Authenticator (it drops a reply
        // whose Message-Authenticator is wrong); the Accept has one.
        assert_eq!(r.all("Message-Authenticator").len(), 1, "{org}/{user}: {}", r.output);
    }
    assert_eq!(s.requests("local", "accept").await, users.len() as f64);

    // Without Class: the client's organization (127.0.0.3 is acme's NAS)...
    let mut lines = pap("", "heidi", "heidi-plain-text");
    lines.push(from("127.0.0.3"));
    let r = radclient(&s.auth, "auth", ACME_SECRET, &lines, ANSWERED);
    assert!(r.is("Access-Accept"), "{}", r.output);
    assert_eq!(s.requests("acme-nas", "accept").await, 1.0);
    // ...where Class still wins.
    let mut lines = pap("globex", "kenji", &password("globex", "kenji"));
    lines.push(from("127.0.0.3"));
    let r = radclient(&s.auth, "auth", ACME_SECRET, &lines, ANSWERED);
    assert!(r.is("Access-Accept"), "{}", r.output);
    let mut lines = pap("", "kenji", &password("globex", "kenji"));
    lines.push(from("127.0.0.3"));
    let r = radclient(&s.auth, "auth", ACME_SECRET, &lines, ANSWERED);
    assert!(r.is("Access-Reject"), "kenji is no acme user: {}", r.output);

    // ...else the default organization (built-in): acme's heidi is not found there, the node's own
    // administrator is.
    let r = s.auth(&pap("", "heidi", "heidi-plain-text"));
    assert!(r.is("Access-Reject"), "{}", r.output);
    let r = s.auth(&pap("", "admin", ADMIN_PASSWORD));
    assert!(r.is("Access-Accept"), "{}", r.output);

    // `radtest`, the other tool of freeradius-utils (PAP with a Message-Authenticator, no Class: the default
    // organization).
    let radtest = |user: &str, password: &str| {
        let out = Command::new("radtest")
            .args([user, password, &s.auth, "0", SECRET, "0", "127.0.0.1"])
            .output()
            .expect("run radtest (tests/e2e/radius/install.sh installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = radtest("admin", ADMIN_PASSWORD);
    assert!(out.contains("Received Access-Accept"), "{out}");
    let out = radtest("admin", "not-the-password");
    assert!(out.contains("Received Access-Reject"), "{out}");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_reject() {
    let s = Server::start("reject", CONFIG).await;
    let wrong = s.auth(&pap("acme", "ivan", "not-IvanFallback1"));
    let unknown = s.auth(&pap("acme", "nobody-here", "IvanFallback1"));
    let unknown_org = s.auth(&pap("no-such-org", "ivan", "IvanFallback1"));
    for r in [&wrong, &unknown, &unknown_org] {
        assert!(r.is("Access-Reject"), "{}", r.output);
        // Nothing says which it was: the Message-Authenticator and nothing else.
        assert_eq!(r.names(), ["Message-Authenticator"], "{}", r.output);
    }
    // Python's client sees the same shape, signed.
    for (user, pw) in [("ivan", "wrong-password"), ("nobody-here", "wrong-password")] {
        let v = s.python(SECRET, &["pap", user, pw, "--class", "acme"]);
        let replies = replies(&v);
        assert_eq!(replies.len(), 1, "{v}");
        assert_eq!(replies[0]["code"], 3, "{v}");
        assert_signed(&replies[0]);
        assert_eq!(types(&replies[0]), [80], "{v}");
    }
    // The right password afterwards still works (a few failures lock nobody out).
    assert!(s.auth(&pap("acme", "ivan", "IvanFallback1")).is("Access-Accept"));

    // Users who cannot sign in, whatever their password: forbidden, (soft-)deleted, without a password.
    for (user, pw) in
        [("judy", "Judy-Forbidden-1"), ("mallory", "Mallory-Deleted-1"), ("niaj", "anything"), ("walter", "x")]
    {
        let r = s.auth(&pap("acme", user, pw));
        assert!(r.is("Access-Reject"), "acme/{user}: {}", r.output);
        assert_eq!(r.get("Reply-Message"), None, "acme/{user}: {}", r.output);
    }
    assert_eq!(s.requests("local", "reject").await, 9.0);
    assert_eq!(s.requests("local", "accept").await, 1.0);

    // The password service's lockout applies: after five failures the right password is refused too, and
    // the Reject says why.
    for _ in 0..5 {
        assert!(s.auth(&pap("acme", "sybil", "not-sybil")).is("Access-Reject"));
    }
    let r = s.auth(&pap("acme", "sybil", "sybil-Sha256"));
    assert!(r.is("Access-Reject"), "{}", r.output);
    assert!(r.get("Reply-Message").is_some_and(|m| m.contains("locked")), "{}", r.output);
}

#[tokio::test]
async fn requests_without_a_valid_message_authenticator_or_from_an_unknown_nas_are_dropped_and_counted() {
    let s = Server::start("drops", CONFIG).await;
    let heidi = || pap("acme", "heidi", "heidi-plain-text");

    // The control: Python's client, right secret and Message-Authenticator, is answered.
    let v = s.python(SECRET, &["pap", "heidi", "heidi-plain-text", "--class", "acme"]);
    assert_eq!(replies(&v).len(), 1, "{v}");
    assert_eq!(replies(&v)[0]["code"], 2, "{v}");
    assert_signed(&replies(&v)[0]);

    // No Message-Authenticator (required by default).
    let no_ma = vec![text("User-Name", "heidi"), text("User-Password", "heidi-plain-text"), text("Class", "acme")];
    let r = s.auth_dropped(SECRET, &no_ma);
    assert_eq!(r.code, None, "{}", r.output);
    assert_eq!(s.drops("local", "no_message_authenticator").await, 1.0);

    // A wrong Message-Authenticator (one bit off).
    let v =
        s.python(SECRET, &["pap", "heidi", "heidi-plain-text", "--class", "acme", "--ma", "bad", "--timeout", DROPPED]);
    assert_eq!(replies(&v).len(), 0, "{v}");
    assert_eq!(s.drops("local", "bad_message_authenticator").await, 1.0);

    // A wrong secret: the Message-Authenticator does not check out.
    let r = s.auth_dropped("not-the-secret", &heidi());
    assert_eq!(r.code, None, "{}", r.output);
    assert_eq!(s.drops("local", "bad_message_authenticator").await, 2.0);

    // From an address no client has (127.0.0.2; the 10.0.0.0/8 client does not cover it), with any of the
    // configured secrets.
    for secret in [SECRET, ACME_SECRET, "far-away-secret"] {
        let mut lines = heidi();
        lines.push(from("127.0.0.2"));
        let r = s.auth_dropped(secret, &lines);
        assert_eq!(r.code, None, "{}", r.output);
    }
    assert_eq!(s.drops("unknown", "unknown_client").await, 3.0);
    // Logged, but not once per packet (a flood would flood the log).
    let logged = s.node.output().lines().filter(|l| l.contains("127.0.0.2")).count();
    assert_eq!(logged, 1, "{}", s.node.output());

    // The legacy client may leave the Message-Authenticator out; its reply carries one all the same...
    let mut lines = no_ma.clone();
    lines.push(from("127.0.0.4"));
    let r = radclient(&s.auth, "auth", LEGACY_SECRET, &lines, ANSWERED);
    assert!(r.is("Access-Accept"), "{}", r.output);
    assert_eq!(r.all("Message-Authenticator").len(), 1, "{}", r.output);
    // ...but a wrong one is still dropped.
    let v = python(&[
        &s.auth,
        LEGACY_SECRET,
        "pap",
        "heidi",
        "heidi-plain-text",
        "--ma",
        "bad",
        "--bind",
        "127.0.0.4",
        "--timeout",
        DROPPED,
    ]);
    assert_eq!(replies(&v).len(), 0, "{v}");
    assert_eq!(s.drops("legacy", "bad_message_authenticator").await, 1.0);
    // A right one from there: answered, signed (the organization is the client's, acme).
    let v = python(&[&s.auth, LEGACY_SECRET, "pap", "heidi", "heidi-plain-text", "--bind", "127.0.0.4"]);
    assert_eq!(replies(&v).len(), 1, "{v}");
    assert_eq!(replies(&v)[0]["code"], 2, "{v}");
    assert_signed(&replies(&v)[0]);

    // What was dropped was not answered, nor counted as answered.
    assert_eq!(s.requests("local", "accept").await, 1.0);
    assert_eq!(s.requests("local", "reject").await, 0.0);
    assert_eq!(s.requests("legacy", "accept").await, 2.0);
    // Each NAS has its own counters, the one that sent nothing too.
    assert_eq!(s.drops("far", "bad_message_authenticator").await, 0.0);
    assert!(s.node.output().contains("BlastRADIUS"), "no warning about the legacy client: {}", s.node.output());
}

/// A NAS sends again the moment it misses a reply: the retransmission, even one crossing the reply, gets
/// the same bytes (the reply is kept before it is sent). Retransmitted the moment the reply is in, several
/// times, for fast and slow hashes.
#[tokio::test]
async fn a_retransmission_gets_the_byte_identical_reply_without_a_second_check() {
    let s = Server::start("retransmit", CONFIG).await;
    // The same datagram twice from the same socket, the second sent as soon as the reply to the first is in:
    // Accepts (plain, bcrypt, argon2id: a second check would take time and count again), then a Reject.
    let mut cases = vec![("heidi", "heidi-plain-text", 2); 4];
    cases.extend([("victor", "Victor$PHP12", 2); 4]);
    cases.extend([("bob", "hunter2-Bob", 2); 2]);
    cases.push(("ivan", "wrong password", 3));
    for (user, pw, code) in &cases {
        let v = s.python(SECRET, &["pap", user, pw, "--class", "acme", "--twice"]);
        let r = replies(&v);
        assert_eq!(r.first().map(|r| r["code"].clone()), Some((*code).into()), "{v}");
        assert_signed(&r[0]);
        if r.len() != 2 {
            let in_progress = s.drops("local", "duplicate_in_progress").await;
            panic!(
                "the retransmission of {user}'s request, sent after its reply came, got no reply \
                 ({in_progress} dropped as duplicate_in_progress: the reply is recorded after it is sent): {v}"
            );
        }
        assert_eq!(r[0]["hex"], r[1]["hex"], "the retransmission got another reply: {v}");
    }
    assert_eq!(s.requests("local", "accept").await, 10.0);
    assert_eq!(s.requests("local", "reject").await, 1.0);
    assert_eq!(s.requests("local", "duplicate").await, cases.len() as f64);

    // A new request (another Request Authenticator) for the same user is checked anew, with its own reply.
    let a = s.python(SECRET, &["pap", "victor", "Victor$PHP12", "--class", "acme"]);
    let b = s.python(SECRET, &["pap", "victor", "Victor$PHP12", "--class", "acme"]);
    assert_eq!(replies(&a)[0]["code"], 2, "{a}");
    assert_eq!(replies(&b)[0]["code"], 2, "{b}");
    assert_ne!(replies(&a)[0]["hex"], replies(&b)[0]["hex"]);
    assert_eq!(s.requests("local", "accept").await, 12.0);
    assert_eq!(s.requests("local", "duplicate").await, cases.len() as f64);
}

#[tokio::test]
async fn chap_works_for_passwords_stored_in_clear_and_says_why_not_for_hashed_ones() {
    let s = Server::start("chap", CONFIG).await;
    let r = s.auth(&chap("acme", "heidi", "heidi-plain-text"));
    assert!(r.is("Access-Accept"), "{}", r.output);
    let r = s.auth(&chap("acme", "heidi", "heidi-plain-text!"));
    assert!(r.is("Access-Reject"), "{}", r.output);
    assert_eq!(r.get("Reply-Message"), None, "{}", r.output);
    // A separate CHAP-Challenge (RFC 2865 §5.40) instead of the Request Authenticator: radclient computes
    // CHAP-Password with it.
    let mut lines = chap("acme", "heidi", "heidi-plain-text");
    lines.push("CHAP-Challenge = 0x0123456789abcdeffedcba9876543210".into());
    let r = s.auth(&lines);
    assert!(r.is("Access-Accept"), "{}", r.output);

    // A bcrypt user: CHAP cannot be checked against a hash, and the Reject says so.
    let r = s.auth(&chap("acme", "victor", "Victor$PHP12"));
    assert!(r.is("Access-Reject"), "{}", r.output);
    let message = r.get("Reply-Message").unwrap_or_else(|| panic!("no Reply-Message: {}", r.output));
    assert!(message.contains("clear"), "{message}");
    // PAP still works for them.
    assert!(s.auth(&pap("acme", "victor", "Victor$PHP12")).is("Access-Accept"));
    assert_eq!(s.requests("local", "accept").await, 3.0);
    assert_eq!(s.requests("local", "reject").await, 2.0);
}

/// Vendor-Specific attributes carry the vendor id and one sub-attribute each (RFC 2865 §5.26), checked
/// on every reply.
#[tokio::test]
async fn mschapv2_accept_carries_the_authenticator_response_and_mppe_keys() {
    let s = Server::start("mschapv2", CONFIG).await;
    let v = s.python(SECRET, &["mschapv2", "heidi", "heidi-plain-text", "--class", "acme"]);
    let r = replies(&v);
    assert_eq!(r.len(), 1, "{v}");
    assert_eq!(r[0]["code"], 2, "{v}");
    assert_signed(&r[0]);
    let m = &r[0]["mschapv2"];
    // MS-CHAP2-Success: the authenticator response RFC 2759 §8.7 computes from the password, for this
    // request's identifier.
    assert_eq!(m["authenticator_response_ok"], true, "{v}");
    assert_eq!(m["success_ident_matches"], true, "{v}");
    // MS-MPPE-Send-Key and -Recv-Key decrypt (RFC 2548 §2.4) to the keys of RFC 3079 §3.3.
    assert_eq!(m["send_key_ok"], true, "{v}");
    assert_eq!(m["recv_key_ok"], true, "{v}");
    assert_eq!(m["send_key_salt_high_bit"], true, "{v}");
    assert_eq!(m["recv_key_salt_high_bit"], true, "{v}");
    assert_eq!(m["salts_differ"], true, "{v}");
    assert_ne!(m["send_key"], m["recv_key"], "{v}");

    // A wrong password: a Reject, without a success or keys.
    let v = s.python(SECRET, &["mschapv2", "heidi", "heidi-plain-text-not", "--class", "acme"]);
    let r = replies(&v);
    assert_eq!(r[0]["code"], 3, "{v}");
    assert_signed(&r[0]);
    assert_eq!(r[0]["vendor"], serde_json::json!([]), "{v}");

    // A hashed password (argon2id): Reject with a Reply-Message (type 18) that says why.
    let v = s.python(SECRET, &["mschapv2", "bob", "hunter2-Bob", "--class", "acme"]);
    let r = replies(&v);
    assert_eq!(r[0]["code"], 3, "{v}");
    assert!(types(&r[0]).contains(&18), "no Reply-Message: {v}");
    assert_eq!(r[0]["vendor"], serde_json::json!([]), "{v}");
    assert_eq!(s.requests("local", "accept").await, 1.0);
    assert_eq!(s.requests("local", "reject").await, 2.0);
}

/// The State of an Access-Challenge as radclient prints it (`0x...`).
fn state_of(r: &Radclient) -> String {
    r.get("State").unwrap_or_else(|| panic!("no State: {}", r.output)).to_string()
}

/// An Access-Request answering a challenge: its State and the code as User-Password.
fn answer(user: &str, state: &str, code: &str) -> Vec<String> {
    let mut lines = pap("acme", user, code);
    lines.push(format!("State = {state}"));
    lines
}

/// Vendor-Specific attributes carry the vendor id and one sub-attribute each (RFC 2865 §5.26), checked
/// on every reply.
#[tokio::test]
async fn totp_users_get_a_challenge_whose_state_is_bound_and_single_use() {
    let s = Server::start("totp", CONFIG).await;
    let alice = password("acme", "alice");
    let challenge = || {
        let r = s.auth(&pap("acme", "alice", &alice));
        assert!(r.is("Access-Challenge"), "{}", r.output);
        assert!(r.get("Reply-Message").is_some_and(|m| !m.is_empty()), "{}", r.output);
        state_of(&r)
    };
    // A wrong password gets no challenge.
    let r = s.auth(&pap("acme", "alice", "not-alice"));
    assert!(r.is("Access-Reject"), "{}", r.output);
    assert_eq!(r.get("State"), None, "{}", r.output);

    // The password, then the code: an Accept with alice's attributes (group sales, role role-admins).
    let first = challenge();
    let r = s.auth(&answer("alice", &first, &totp(ALICE_TOTP, 0)));
    assert!(r.is("Access-Accept"), "{}", r.output);
    r.assert_vendor_attributes_decoded();
    assert_eq!(r.get("Filter-Id"), Some("sales"), "{}", r.output);
    assert_eq!(r.get("Idle-Timeout"), Some("900"), "role-staff through role-admins: {}", r.output);
    assert_eq!(r.get("Cisco-AVPair"), Some("shell:priv-lvl=15"), "{}", r.output);
    assert_eq!(r.get("Reply-Message"), Some("welcome, administrator"), "{}", r.output);
    assert_eq!(r.get("Session-Timeout"), None, "{}", r.output);
    // The same State again, with the same code or the next one: refused.
    for offset in [0, 1] {
        let r = s.auth(&answer("alice", &first, &totp(ALICE_TOTP, offset)));
        assert!(r.is("Access-Reject"), "replayed State, code offset {offset}: {}", r.output);
    }

    // A wrong code uses the State up: the right one after it is refused.
    let second = challenge();
    let wrong = format!("{:06}", (totp(ALICE_TOTP, 0).parse::<u32>().expect("code") + 1) % 1_000_000);
    assert!(s.auth(&answer("alice", &second, &wrong)).is("Access-Reject"));
    assert!(s.auth(&answer("alice", &second, &totp(ALICE_TOTP, 1))).is("Access-Reject"));

    // Another User-Name with alice's State: refused (and the State is gone).
    let third = challenge();
    let r = s.auth(&answer("bob", &third, &totp(ALICE_TOTP, 1)));
    assert!(r.is("Access-Reject"), "{}", r.output);
    assert!(s.auth(&answer("alice", &third, &totp(ALICE_TOTP, 1))).is("Access-Reject"));

    // A State this node never issued: refused, though the code is right.
    let r = s.auth(&answer("alice", "0x00112233445566778899aabbccddeeff", &totp(ALICE_TOTP, 1)));
    assert!(r.is("Access-Reject"), "{}", r.output);

    // A State answered through another NAS: refused.
    let fourth = challenge();
    let mut lines = answer("alice", &fourth, &totp(ALICE_TOTP, 1));
    lines.push(from("127.0.0.3"));
    let r = radclient(&s.auth, "auth", ACME_SECRET, &lines, ANSWERED);
    assert!(r.is("Access-Reject"), "{}", r.output);

    // The control: a fresh State with the next step's code (newer than the one used) is accepted, so what
    // refused the answers above was the State.
    let fifth = challenge();
    let r = s.auth(&answer("alice", &fifth, &totp(ALICE_TOTP, 1)));
    assert!(r.is("Access-Accept"), "{}", r.output);
    assert_eq!(s.requests("local", "challenge").await, 5.0);
    assert_eq!(s.requests("local", "accept").await, 2.0);

    // MFA that RADIUS cannot ask for (email: peggy, SMS: sam): a Reject that says why, after the right
    // password.
    for user in ["peggy", "sam"] {
        let r = s.auth(&pap("acme", user, &password("acme", user)));
        assert!(r.is("Access-Reject"), "acme/{user}: {}", r.output);
        assert!(r.get("Reply-Message").is_some_and(|m| !m.is_empty()), "acme/{user}: {}", r.output);
        assert_eq!(r.get("State"), None, "acme/{user}: {}", r.output);
    }
}

/// Vendor-Specific attributes carry the vendor id and one sub-attribute each (RFC 2865 §5.26), checked
/// on every reply.
#[tokio::test]
async fn reply_attributes_come_from_the_users_groups_and_roles() {
    let s = Server::start("replies", CONFIG).await;
    // bob (groups engineering and platform: role-engineers through the group) and carol (group engineering,
    // role-engineers herself); both hold role-staff through role-engineers.
    for user in ["bob", "carol"] {
        let r = s.auth(&pap("acme", user, &password("acme", user)));
        assert!(r.is("Access-Accept"), "acme/{user}: {}", r.output);
        r.assert_vendor_attributes_decoded();
        assert_eq!(r.get("Filter-Id"), Some("engineering"), "acme/{user}: {}", r.output);
        assert_eq!(r.get("Session-Timeout"), Some("3600"), "acme/{user}: {}", r.output);
        assert_eq!(r.get("Cisco-AVPair"), Some("shell:priv-lvl=7"), "acme/{user}: {}", r.output);
        assert_eq!(r.get("Idle-Timeout"), Some("900"), "acme/{user}: {}", r.output);
        assert_eq!(r.get("Reply-Message"), None, "acme/{user}: {}", r.output);
    }
    // heidi is in no group; kenji is in globex, which maps nothing.
    for (org, user) in [("acme", "heidi"), ("globex", "kenji")] {
        let r = s.auth(&pap(org, user, &password(org, user)));
        assert!(r.is("Access-Accept"), "{org}/{user}: {}", r.output);
        assert_eq!(r.names(), ["Message-Authenticator"], "{org}/{user}: {}", r.output);
    }
}

#[tokio::test]
async fn status_server_is_answered_on_both_ports() {
    // One more client, whose secret is read from a file.
    let secrets = tempfile::tempdir().expect("tempdir");
    let file = secrets.path().join("nas5.secret");
    std::fs::write(&file, "secret-from-a-file\n").expect("secret file");
    let config = format!(
        "{CONFIG}\n[[radius.clients]]\nname = \"filed\"\naddress = \"127.0.0.5\"\nsecret_file = \"{}\"\n",
        file.display()
    );
    let s = Server::start("status", &config).await;
    let r = radclient(&s.auth, "status", "secret-from-a-file", &[with_ma(), from("127.0.0.5")], ANSWERED);
    assert!(r.is("Access-Accept"), "{}", r.output);
    assert_eq!(s.requests("filed", "status").await, 1.0);
    let r = radclient(&s.auth, "status", SECRET, &[with_ma()], ANSWERED);
    assert!(r.is("Access-Accept"), "{}", r.output);
    assert_eq!(r.all("Message-Authenticator").len(), 1, "{}", r.output);
    let r = radclient(&s.acct, "status", SECRET, &[with_ma()], ANSWERED);
    assert!(r.is("Accounting-Response"), "{}", r.output);
    assert_eq!(r.all("Message-Authenticator").len(), 1, "{}", r.output);
    assert_eq!(s.requests("local", "status").await, 2.0);
    // Without a Message-Authenticator (RFC 5997 §3 requires one), or with a wrong secret: dropped.
    let r = radclient(&s.auth, "status", SECRET, &[text("NAS-Identifier", "switch-1")], DROPPED);
    assert_eq!(r.code, None, "{}", r.output);
    let r = radclient(&s.auth, "status", "not-the-secret", &[with_ma()], DROPPED);
    assert_eq!(r.code, None, "{}", r.output);
    assert_eq!(s.requests("local", "status").await, 2.0);
    assert_eq!(s.drops("local", "no_message_authenticator").await, 1.0);
    assert_eq!(s.drops("local", "bad_message_authenticator").await, 1.0);
}

#[tokio::test]
async fn malformed_datagrams_are_dropped_and_a_valid_request_after_them_is_answered() {
    let s = Server::start("malformed", CONFIG).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp socket");
    let mut header_too_long = vec![1u8, 7, 0, 200];
    header_too_long.extend([0x55; 16]);
    header_too_long.extend([1, 7, b'h', b'e', b'i', b'd', b'i']);
    let mut below_header = vec![1u8, 8, 0, 10];
    below_header.extend([0; 16]);
    // An attribute whose length runs past the end of the packet (Length itself is right).
    let mut bad_attribute = vec![1u8, 9, 0, 24];
    bad_attribute.extend([0x11; 16]);
    bad_attribute.extend([1, 40, b'x', b'y']);
    let datagrams: Vec<Vec<u8>> = vec![
        b"garbage".to_vec(),
        header_too_long,
        below_header,
        bad_attribute,
        vec![1u8; 20],   // Length 257 in a 20-byte datagram
        vec![0u8; 5000], // larger than any packet
        Vec::new(),      // empty
    ];
    for d in &datagrams {
        socket.send_to(d, &s.auth).await.expect("send");
    }
    // Nothing comes back.
    let mut buf = [0u8; 4096];
    let got = tokio::time::timeout(Duration::from_millis(700), socket.recv_from(&mut buf)).await;
    assert!(got.is_err(), "a malformed datagram was answered: {got:?}");
    // Then a valid request from the same address: answered.
    let r = s.auth(&pap("acme", "heidi", "heidi-plain-text"));
    assert!(r.is("Access-Accept"), "{}", r.output);
    // Every datagram was dropped, counted as malformed (the one with a broken attribute may be counted for
    // its missing Message-Authenticator instead: it has none either).
    assert_eq!(s.all_drops("local").await, datagrams.len() as f64);
    let malformed = s.drops("local", "malformed").await;
    assert!(malformed >= (datagrams.len() - 1) as f64, "{malformed} malformed drops of {}", datagrams.len());
    // The same on the accounting port.
    for d in &datagrams {
        socket.send_to(d, &s.acct).await.expect("send");
    }
    let got = tokio::time::timeout(Duration::from_millis(700), socket.recv_from(&mut buf)).await;
    assert!(got.is_err(), "a malformed datagram was answered on the accounting port: {got:?}");
    assert_eq!(s.all_drops("local").await, 2.0 * datagrams.len() as f64);
    let r = radclient(&s.acct, "status", SECRET, &[with_ma()], ANSWERED);
    assert!(r.is("Accounting-Response"), "{}", r.output);
    assert!(s.node.output().lines().all(|l| !l.contains("panicked")), "{}", s.node.output());
}

/// An Accounting-Request of session `id` for acme's heidi, with these further attribute lines.
fn accounting(status: &str, id: &str, more: &[&str]) -> Vec<String> {
    let mut lines = vec![
        format!("Acct-Status-Type = {status}"),
        text("Acct-Session-Id", id),
        text("User-Name", "heidi"),
        text("Class", "acme"),
        "NAS-IP-Address = 127.0.0.1".to_string(),
        text("NAS-Identifier", "switch-1"),
        "NAS-Port = 7".to_string(),
        "Framed-IP-Address = 10.1.2.3".to_string(),
        text("Calling-Station-Id", "00-11-22-33-44-55"),
    ];
    lines.extend(more.iter().map(|l| l.to_string()));
    lines
}

#[tokio::test]
async fn accounting_start_update_and_stop_are_acknowledged_and_read_back_through_the_admin_api() {
    let s = Server::start("accounting", CONFIG).await;
    let acct = |lines: &[String]| radclient(&s.acct, "acct", SECRET, lines, ANSWERED);
    let r = acct(&accounting("Start", "e2e-session-1", &[]));
    assert!(r.is("Accounting-Response"), "{}", r.output);
    let r = acct(&accounting(
        "Interim-Update",
        "e2e-session-1",
        &["Acct-Session-Time = 30", "Acct-Input-Octets = 1000", "Acct-Input-Gigawords = 1", "Acct-Output-Octets = 99"],
    ));
    assert!(r.is("Accounting-Response"), "{}", r.output);
    // Counters past 4 GiB: Acct-Input-Gigawords (RFC 2869 §5.1) holds the high 32 bits.
    let r = acct(&accounting(
        "Stop",
        "e2e-session-1",
        &[
            "Acct-Session-Time = 60",
            "Acct-Input-Octets = 5",
            "Acct-Input-Gigawords = 2",
            "Acct-Output-Octets = 123456",
            "Acct-Input-Packets = 10",
            "Acct-Output-Packets = 20",
            "Acct-Terminate-Cause = User-Request",
        ],
    ));
    assert!(r.is("Accounting-Response"), "{}", r.output);
    assert_eq!(s.requests("local", "accounting").await, 3.0);

    // A forged one (wrong secret: its Request Authenticator does not check out) is dropped, not recorded.
    let r = radclient(&s.acct, "acct", "not-the-secret", &accounting("Start", "e2e-forged", &[]), DROPPED);
    assert_eq!(r.code, None, "{}", r.output);
    assert_eq!(s.drops("local", "bad_authenticator").await, 1.0);
    // An Access-Request on the accounting port is no accounting.
    let r = radclient(&s.acct, "auth", SECRET, &pap("acme", "heidi", "heidi-plain-text"), DROPPED);
    assert_eq!(r.code, None, "{}", r.output);

    // Acknowledged means recorded (RFC 2866 §2): the admin API has the session at once.
    let (status, v) = s.node.admin_get("get-radius-accountings?owner=acme").await;
    assert_eq!(status, 200, "{v}");
    let sessions = v["data"].as_array().unwrap_or_else(|| panic!("no data: {v}"));
    assert_eq!(sessions.len(), 1, "{v}");
    assert_eq!(v["data2"], 1, "{v}");
    let session = &sessions[0];
    let expect = [
        ("owner", serde_json::json!("acme")),
        ("name", serde_json::json!("local/e2e-session-1")),
        ("username", serde_json::json!("heidi")),
        ("acctSessionId", serde_json::json!("e2e-session-1")),
        ("acctStatusType", serde_json::json!("Stop")),
        ("acctSessionTime", serde_json::json!(60)),
        ("acctInputTotal", serde_json::json!((2u64 << 32) + 5)),
        ("acctOutputTotal", serde_json::json!(123456)),
        ("acctInputPackets", serde_json::json!(10)),
        ("acctOutputPackets", serde_json::json!(20)),
        ("acctTerminateCause", serde_json::json!(1)),
        ("nasClient", serde_json::json!("local")),
        ("nasId", serde_json::json!("switch-1")),
        ("nasIpAddr", serde_json::json!("127.0.0.1")),
        ("nasPort", serde_json::json!(7)),
        ("framedIpAddr", serde_json::json!("10.1.2.3")),
        ("callingStationId", serde_json::json!("00-11-22-33-44-55")),
        ("eventCount", serde_json::json!(3)),
    ];
    for (field, want) in expect {
        assert_eq!(session[field], want, "{field} in {session}");
    }
    assert_ne!(session["acctStopTime"], "0001-01-01T00:00:00Z", "{session}");
    assert_ne!(session["acctStartTime"], "0001-01-01T00:00:00Z", "{session}");

    // One session by its id, and per user.
    let (status, one) = s.node.admin_get("get-radius-accounting?id=acme/local/e2e-session-1").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["data"], *session, "{one}");
    let (_, heidi) = s.node.admin_get("get-radius-accountings?owner=acme&user=heidi").await;
    assert_eq!(heidi["data"].as_array().map(Vec::len), Some(1), "{heidi}");
    let (_, bob) = s.node.admin_get("get-radius-accountings?owner=acme&user=bob").await;
    assert_eq!(bob["data"], serde_json::json!([]), "{bob}");
}

/// Past `max_in_flight` requests are dropped (the NAS retransmits), never queued: with room for one,
/// eight bcrypt checks (tens of milliseconds each) sent at once get one answer at least, and drops
/// counted as `overload`.
#[tokio::test]
async fn requests_beyond_max_in_flight_are_dropped_not_queued() {
    let config = CONFIG.replacen("[radius]\n", "[radius]\nmax_in_flight = 1\n", 1);
    assert_ne!(config, CONFIG);
    let s = Server::start("overload", &config).await;
    let one = pap("acme", "ivan", "IvanFallback1").join("\n");
    let input = vec![one; 8].join("\n\n");
    let mut child = Command::new("radclient")
        .args(["-p", "8", "-r", "1", "-t", "2", &s.auth, "auth", SECRET])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("radclient");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
    }
    let out = child.wait_with_output().expect("radclient");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(s.requests("local", "accept").await >= 1.0, "one was worked on: {text}");
    assert!(s.drops("local", "overload").await >= 1.0, "the others were dropped as overload: {text}");
    let answered = text.matches("Received Access-").count();
    assert!((1..8).contains(&answered), "some answered, not all: {text}");
}
