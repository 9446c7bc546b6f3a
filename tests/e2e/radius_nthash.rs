//! NT-hash credentials over RADIUS: MS-CHAPv2 for users whose passwords are stored as bcrypt hashes, in an
//! organization that opted in (`[radius] nt_hash_organizations`). MS-CHAPv2 is spoken by
//! tests/e2e/radius/client.py (the independent client of tests/e2e/radius.rs, written from the RFCs: it
//! checks the authenticator response and decrypts the MPPE keys, comparing them with those RFC 3079 derives
//! from the password), PAP by it too, and the OAuth password grant over HTTP.
//!
//! Needs tests/e2e/radius/install.sh (PyCryptodome for the client).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{free_port, Node};

const SECRET: &str = "nthash-radius-secret";

/// acme opts in; globex does not.
const CONFIG: &str = r#"
[radius]
default_organization = "acme"
nt_hash_organizations = ["acme"]

[[radius.clients]]
name = "local"
address = "127.0.0.1"
secret = "nthash-radius-secret"
"#;

/// Code of an Access-Accept and an Access-Reject.
const ACCEPT: u64 = 2;
const REJECT: u64 = 3;
/// Reply-Message.
const REPLY_MESSAGE: u64 = 18;

struct Server {
    node: Node,
    /// `127.0.0.1:<port>` of authentication.
    auth: String,
    _tmp: tempfile::TempDir,
}

/// A UDP port on 127.0.0.1 that is free now.
fn free_udp_port() -> u16 {
    loop {
        let port = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Server {
    /// A node with `CONFIG`, the organizations acme and globex (bcrypt), an application of each for the
    /// password grant, and bcrypt users acme/alice, acme/bob and globex/gina.
    async fn start() -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("jeton.toml");
        std::fs::write(&path, CONFIG).expect("config file");
        let auth = format!("127.0.0.1:{}", free_udp_port());
        let acct = format!("127.0.0.1:{}", free_udp_port());
        let path = path.to_string_lossy().into_owned();
        let args = ["--config", &path, "--radius-addr", &auth, "--radius-acct-addr", &acct];
        let node = Node::start_in(&tmp.path().join("data"), free_port(), &args).await;
        for org in ["acme", "globex"] {
            let body = json!({"owner": "admin", "name": org, "passwordType": "bcrypt"});
            let (s, v) = node.admin_post("add-organization", body).await;
            assert_eq!(s, 200, "{v}");
            let body = json!({
                "owner": "admin", "name": format!("app-{org}"), "organization": org,
                "clientId": format!("{org}-client"), "clientSecret": format!("{org}-secret-0123456789"),
                "grantTypes": ["password"], "expireInHours": 1,
            });
            let (s, v) = node.admin_post("add-application", body).await;
            assert_eq!(s, 200, "{v}");
        }
        for (org, name, password) in [
            ("acme", "alice", "Alice-Password-1"),
            ("acme", "bob", "Bob-Password-1"),
            ("globex", "gina", "Gina-Password-1"),
        ] {
            let (s, v) = node.admin_post("add-user", json!({"owner": org, "name": name, "password": password})).await;
            assert_eq!(s, 200, "{v}");
            let (_, v) = node.admin_get(&format!("get-user?id={org}/{name}")).await;
            assert_eq!(v["data"]["passwordType"], "bcrypt", "{v}");
        }
        Server { node, auth, _tmp: tmp }
    }

    /// client.py against the authentication port: `mode` (pap, mschapv2) for `org`/`user`; the one reply.
    fn radius(&self, mode: &str, org: &str, user: &str, password: &str) -> Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/radius/client.py");
        assert!(Path::new(script).exists(), "{script} missing: it comes with tests/e2e/radius.rs");
        let out = Command::new(python())
            .args([script, &self.auth, SECRET, mode, user, password, "--class", org])
            .output()
            .expect("run tests/e2e/radius/client.py (tests/e2e/radius/install.sh installs what it needs)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "client.py {mode} {user}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let v: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("client.py printed no JSON ({e}): {stdout}"));
        let replies = v["replies"].as_array().expect("replies");
        assert_eq!(replies.len(), 1, "one reply: {v}");
        let reply = replies[0].clone();
        // Every reply is signed, whatever it says.
        assert_eq!(reply["response_authenticator"], "ok", "{reply}");
        assert_eq!(reply["message_authenticator"], "ok", "{reply}");
        reply
    }

    /// MS-CHAPv2 until it is accepted (the credential is written in the background after the sign-in), at
    /// most 10 s; the Accept.
    async fn mschapv2_accepted(&self, org: &str, user: &str, password: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = self.radius("mschapv2", org, user, password);
            if reply["code"] == ACCEPT {
                return reply;
            }
            assert!(Instant::now() < deadline, "{org}/{user}: MS-CHAPv2 still refused: {reply}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn password_grant(&self, org: &str, user: &str, password: &str) -> (u16, Value) {
        self.node.password_grant(&format!("{org}-client"), &format!("{org}-secret-0123456789"), user, password).await
    }
}

/// Debian's python3 when there is one (install.sh puts PyCryptodome there), else the one on the path.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The Reply-Message of a reply, if it has one.
fn reply_message(reply: &Value) -> Option<String> {
    reply["attributes"].as_array().expect("attributes").iter().find(|a| a[0] == REPLY_MESSAGE).map(|a| {
        let hex = a[1].as_str().expect("hex").as_bytes();
        let bytes: Vec<u8> = hex
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex"))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A Reject that says the account has no credential MS-CHAPv2 can use.
fn refused_for_want_of_a_credential(reply: &Value) -> bool {
    reply["code"] == REJECT && reply_message(reply).is_some_and(|m| m.contains("NT-hash credential"))
}

/// An MS-CHAPv2 Accept whose MS-CHAP2-Success and MPPE keys the client checked against the password.
fn assert_mschapv2_accept(reply: &Value) {
    assert_eq!(reply["code"], ACCEPT, "{reply}");
    let m = &reply["mschapv2"];
    assert_eq!(m["success_ident_matches"], true, "{reply}");
    assert_eq!(m["authenticator_response_ok"], true, "MS-CHAP2-Success: {reply}");
    assert_eq!(m["send_key_ok"], true, "MS-MPPE-Send-Key: {reply}");
    assert_eq!(m["recv_key_ok"], true, "MS-MPPE-Recv-Key: {reply}");
    assert_eq!(m["salts_differ"], true, "{reply}");
}

/// The NT hash of `password` in lower-case hex, computed by Python (PyCryptodome's MD4), for looking for
/// it where it must not be.
fn nt_hash_hex(password: &str) -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "import sys\ntry:\n from Cryptodome.Hash import MD4\nexcept ImportError:\n from Crypto.Hash import MD4\n\
             print(MD4.new(sys.argv[1].encode('utf-16-le')).hexdigest())",
            password,
        ])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hex = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(hex.len(), 32, "{hex}");
    hex
}

/// A bcrypt user of an organization that opted in: MS-CHAPv2 is refused (saying why) until one PAP
/// Access-Accept derives the credential, then accepted with MPPE keys the client verifies, and refused for
/// a wrong password. A new password set through the admin API drops the credential: MS-CHAPv2 is refused
/// again, for the old and the new password, until a sign-in with the new one. An OAuth password grant
/// derives it as well. A user of an organization that did not opt in stays refused after signing in.
/// Nothing shows the credential: not the admin API, not the log.
#[tokio::test(flavor = "multi_thread")]
async fn mschapv2_for_bcrypt_users_after_a_password_sign_in() {
    let s = Server::start().await;

    // Before any sign-in: refused, with a Reply-Message that says why (and the same for an unknown login).
    let before = s.radius("mschapv2", "acme", "alice", "Alice-Password-1");
    assert!(refused_for_want_of_a_credential(&before), "{before}");
    let nobody = s.radius("mschapv2", "acme", "nobody", "Nobody-Password-1");
    assert!(refused_for_want_of_a_credential(&nobody), "{nobody}");

    // One PAP Accept, and MS-CHAPv2 works, with the keys of alice's password.
    let pap = s.radius("pap", "acme", "alice", "Alice-Password-1");
    assert_eq!(pap["code"], ACCEPT, "{pap}");
    let accept = s.mschapv2_accepted("acme", "alice", "Alice-Password-1").await;
    assert_mschapv2_accept(&accept);
    let wrong = s.radius("mschapv2", "acme", "alice", "Alice-Password-2");
    assert_eq!(wrong["code"], REJECT, "{wrong}");
    assert_eq!(reply_message(&wrong), None, "a wrong password is rejected like any other: {wrong}");
    assert_mschapv2_accept(&s.radius("mschapv2", "acme", "alice", "Alice-Password-1"));

    // The admin API sets a new password: the credential goes with the old one.
    let (_, v) = s.node.admin_get("get-user?id=acme/alice").await;
    let mut alice = v["data"].clone();
    let text = alice.to_string().to_lowercase();
    assert!(!text.contains("ntcredential") && !text.contains("nthash"), "the admin API shows no credential: {text}");
    // A password in clear, without a passwordType: the node hashes it (bcrypt, acme's scheme).
    alice["password"] = json!("Alice-Password-2");
    alice["passwordType"] = json!("");
    let (status, v) = s.node.admin_post("update-user?id=acme/alice", alice).await;
    assert_eq!(status, 200, "{v}");
    for password in ["Alice-Password-1", "Alice-Password-2"] {
        let r = s.radius("mschapv2", "acme", "alice", password);
        assert!(refused_for_want_of_a_credential(&r), "{password}: {r}");
    }
    // The next sign-in with the new password derives the new credential.
    let pap = s.radius("pap", "acme", "alice", "Alice-Password-2");
    assert_eq!(pap["code"], ACCEPT, "{pap}");
    assert_mschapv2_accept(&s.mschapv2_accepted("acme", "alice", "Alice-Password-2").await);
    let old = s.radius("mschapv2", "acme", "alice", "Alice-Password-1");
    assert_eq!((old["code"].as_u64(), reply_message(&old)), (Some(REJECT), None), "{old}");

    // An OAuth password grant derives it too.
    assert!(refused_for_want_of_a_credential(&s.radius("mschapv2", "acme", "bob", "Bob-Password-1")));
    let (status, v) = s.password_grant("acme", "bob", "Bob-Password-1").await;
    assert_eq!(status, 200, "{v}");
    assert_mschapv2_accept(&s.mschapv2_accepted("acme", "bob", "Bob-Password-1").await);

    // globex did not opt in: signing in (PAP, password grant) changes nothing.
    let pap = s.radius("pap", "globex", "gina", "Gina-Password-1");
    assert_eq!(pap["code"], ACCEPT, "{pap}");
    let (status, v) = s.password_grant("globex", "gina", "Gina-Password-1").await;
    assert_eq!(status, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = s.radius("mschapv2", "globex", "gina", "Gina-Password-1");
    assert!(refused_for_want_of_a_credential(&r), "{r}");

    // Refusals for want of a credential are not failed sign-ins: more of them than the lockout limit (5)
    // leave the account open.
    for _ in 0..6 {
        assert!(refused_for_want_of_a_credential(&s.radius("mschapv2", "globex", "gina", "Gina-Password-1")));
    }
    let pap = s.radius("pap", "globex", "gina", "Gina-Password-1");
    assert_eq!(pap["code"], ACCEPT, "not locked: {pap}");

    // The log never holds an NT hash.
    let log = s.node.output().to_lowercase();
    for password in ["Alice-Password-1", "Alice-Password-2", "Bob-Password-1"] {
        assert!(!log.contains(&nt_hash_hex(password)), "the NT hash of {password} is in the log");
    }
}
