//! Starting and stopping real `jeton` nodes, and the clients the tests use.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

pub const ADMIN_PASSWORD: &str = "e2e-admin-password";
pub const ADMIN_CLIENT_ID: &str = "e2e-admin-client";
pub const ADMIN_CLIENT_SECRET: &str = "e2e-admin-secret-0123456789abcdef";

/// A loopback port for a server a test starts. Taken below the kernel's ephemeral range (32768–60999 by
/// default) so that no outgoing connection — the tests make thousands — can grab it between this call and
/// the server's bind, and never handed out twice in this process (every e2e test runs in it). The
/// starting point depends on the process id, so two test runs on one machine rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, std::process::id() % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN)
}

/// A running `jeton serve`, killed when dropped.
pub struct Node {
    child: Option<Child>,
    pub base: String,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub http: reqwest::Client,
    pub stdout_path: PathBuf,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("http client")
}

impl Node {
    /// A fresh node with a new data dir.
    pub async fn start() -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut node = Node::start_in(&dir, free_port(), &[]).await;
        node._tmp = Some(tmp);
        node
    }

    /// A node on an existing (or new) data dir, with extra `serve` arguments.
    pub async fn start_in(dir: &Path, port: u16, extra: &[&str]) -> Node {
        Node::start_with_env(dir, port, extra, &[]).await
    }

    /// [`Node::start_in`] with more (or other) environment variables.
    pub async fn start_with_env(dir: &Path, port: u16, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let (child, stdout_path) = spawn_with_env(dir, port, extra, env);
        Node::adopt(child, port, dir, stdout_path).await
    }

    /// A node started some other way (a script, a wrapper) that serves HTTP on `port`; waits until it is
    /// ready. Killed when dropped, like the others.
    pub async fn adopt(child: Child, port: u16, dir: &Path, stdout_path: PathBuf) -> Node {
        Node::adopt_when(child, port, dir, stdout_path, "/api/health").await
    }

    /// [`Node::adopt`], waiting until `health` (an `/api/health` check, e.g. `/api/health?live` for a node
    /// that serves but is not ready) answers 200.
    pub async fn adopt_when(child: Child, port: u16, dir: &Path, stdout_path: PathBuf, health: &str) -> Node {
        let mut node = Node {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            port,
            dir: dir.to_path_buf(),
            _tmp: None,
            http: client(),
            stdout_path,
        };
        node.wait_for(health).await;
        node
    }

    /// A fresh node started with a config file: `http` is put into its `[http]` section; with `tls` it serves
    /// HTTPS with a generated self-signed certificate (HTTP/2 when the client offers it with ALPN), and
    /// `base` and `http` speak HTTPS (accepting that certificate).
    pub async fn start_configured(http: &str, tls: bool) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let config = tmp.path().join("jeton.toml");
        std::fs::write(&config, format!("[http]\n{http}\n[tls]\nenabled = {tls}\nself_signed = {tls}\n"))
            .expect("config file");
        let port = free_port();
        let config = config.to_string_lossy().to_string();
        let (child, stdout_path) = spawn(&dir, port, &["--config", &config]);
        let scheme = if tls { "https" } else { "http" };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .tls_danger_accept_invalid_certs(tls)
            .build()
            .expect("http client");
        let mut node = Node {
            child: Some(child),
            base: format!("{scheme}://127.0.0.1:{port}"),
            port,
            dir,
            _tmp: Some(tmp),
            http,
            stdout_path,
        };
        node.wait_ready().await;
        node
    }

    async fn wait_ready(&mut self) {
        self.wait_for("/api/health").await
    }

    async fn wait_for(&mut self, health: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("jeton exited ({status}) before it became ready; output: {}", self.output());
            }
            if let Ok(r) = self.http.get(self.url(health)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "jeton did not become ready; output: {}", self.output());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// SIGKILL: the process dies on the spot, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Graceful stop (SIGTERM) and wait for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("jeton did not stop within 15 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// POST a form with HTTP Basic client credentials.
    pub async fn post_form_basic(&self, path: &str, id: &str, secret: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self.http.post(self.url(path)).basic_auth(id, Some(secret)).form(form).send().await.expect("request");
        response(r).await
    }

    /// A password grant at the token endpoint, client_secret_basic.
    pub async fn password_grant(&self, id: &str, secret: &str, user: &str, password: &str) -> (u16, Value) {
        self.post_form_basic(
            "/oauth/token",
            id,
            secret,
            &[("grant_type", "password"), ("username", user), ("password", password)],
        )
        .await
    }

    /// POST a form without client credentials in a header.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self.http.post(self.url(path)).form(form).send().await.expect("request");
        response(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        response(self.http.get(self.url(path)).send().await.expect("request")).await
    }

    /// client_credentials token of the admin application.
    pub async fn admin_token(&self) -> String {
        let (s, v) = self
            .post_form_basic(
                "/oauth/token",
                ADMIN_CLIENT_ID,
                ADMIN_CLIENT_SECRET,
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().expect("access_token").to_string()
    }

    /// An admin API call with the admin application's Basic credentials.
    pub async fn admin_post(&self, api: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/api/{api}")))
            .basic_auth(ADMIN_CLIENT_ID, Some(ADMIN_CLIENT_SECRET))
            .json(&body)
            .send()
            .await
            .expect("request");
        response(r).await
    }

    pub async fn admin_get(&self, api_and_query: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(&format!("/api/{api_and_query}")))
            .basic_auth(ADMIN_CLIENT_ID, Some(ADMIN_CLIENT_SECRET))
            .send()
            .await
            .expect("request");
        response(r).await
    }

    /// Creates an organization, an application for it and a user with a password. Returns (client_id,
    /// client_secret).
    pub async fn app_with_user(
        &self,
        org: &str,
        app: &str,
        extra_app: Value,
        user: &str,
        password: &str,
    ) -> (String, String) {
        let (s, v) = self
            .admin_post("add-organization", json!({"owner": "admin", "name": org, "passwordType": "argon2id"}))
            .await;
        assert_eq!(s, 200, "{v}");
        let secret = format!("{app}-secret-0123456789");
        let client_id = format!("{app}-client");
        let mut body = json!({
            "owner": "admin", "name": app, "organization": org, "clientId": client_id, "clientSecret": secret,
            "grantTypes": ["password", "client_credentials", "refresh_token"], "expireInHours": 1, "refreshExpireInHours": 24,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra_app.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (s, v) = self.admin_post("add-application", body).await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = self
            .admin_post("add-user", json!({"owner": org, "name": user, "password": password, "displayName": format!("User {user}"), "email": format!("{user}@{org}.example"), "emailVerified": true}))
            .await;
        assert_eq!(s, 200, "{v}");
        (client_id, secret)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns `jeton serve` with the test admin credentials; output goes to a file next to the data dir.
/// A `jeton` command. Its LDAP and RADIUS listeners take free ports (`JETON_LDAP_ADDR=127.0.0.1:0`, ...)
/// unless the test names them: many nodes run side by side here, and the default ports would be taken by
/// the first.
pub fn jeton_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jeton"));
    cmd.env("JETON_LDAP_ADDR", "127.0.0.1:0");
    cmd.env("JETON_RADIUS_ADDR", "127.0.0.1:0");
    cmd.env("JETON_RADIUS_ACCT_ADDR", "127.0.0.1:0");
    cmd
}

pub fn spawn(dir: &Path, port: u16, extra: &[&str]) -> (Child, PathBuf) {
    spawn_with_env(dir, port, extra, &[])
}

/// [`spawn`] with more (or other) environment variables.
pub fn spawn_with_env(dir: &Path, port: u16, extra: &[&str], env: &[(&str, &str)]) -> (Child, PathBuf) {
    std::fs::create_dir_all(dir.parent().unwrap_or(dir)).expect("parent dir");
    let out = dir.with_extension(format!("{port}.log"));
    let log = std::fs::File::create(&out).expect("log file");
    let child = crate::harness::jeton_command()
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{port}"))
        .args(extra)
        .env("JETON_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("JETON_ADMIN_CLIENT_ID", ADMIN_CLIENT_ID)
        .env("JETON_ADMIN_CLIENT_SECRET", ADMIN_CLIENT_SECRET)
        .env("JETON_LOG", "info")
        .envs(env.iter().copied())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn jeton");
    (child, out)
}

pub async fn response(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// Decodes a JWT's header without verifying.
pub fn jwt_header(token: &str) -> Value {
    let h = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("json")
}

/// Verifies an access token with jwt-simple against the node's published JWKS, and returns its claims.
pub async fn verify_with_jwks(node: &Node, token: &str) -> Value {
    assert_eq!(jwt_header(token)["typ"], "at+jwt", "RFC 9068 access tokens say typ at+jwt");
    verify_signed_claims(node, token, Some("at+jwt")).await
}

/// Verifies an OpenID Connect ID token the same way, and returns its claims (with `nonce`). Its `typ` is
/// `JWT` or absent, never `at+jwt`: an ID token must not pass for an access token at a resource server.
pub async fn verify_id_token_with_jwks(node: &Node, token: &str) -> Value {
    assert_ne!(jwt_header(token)["typ"], "at+jwt", "an ID token is not typed as an access token");
    verify_signed_claims(node, token, None).await
}

/// The claims of `token` once its signature checks out against the JWKS key its `kid` names and its
/// issuer is the node's; `typ`, when given, must be the header's.
async fn verify_signed_claims(node: &Node, token: &str, typ: Option<&str>) -> Value {
    let (s, jwks) = node.get("/.well-known/jwks").await;
    assert_eq!(s, 200);
    let header = jwt_header(token);
    let kid = header["kid"].as_str().expect("kid in header");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS {jwks}"));
    let b = |k: &str| URL_SAFE_NO_PAD.decode(jwk[k].as_str().expect("component")).expect("b64url");
    let opts = VerificationOptions {
        allowed_issuers: Some(HashSet::from_strings(&[&node.base])),
        required_signature_type: typ.map(String::from),
        ..Default::default()
    };
    let claims: JWTClaims<serde_json::Map<String, Value>> = match jwk["alg"].as_str().expect("alg") {
        "EdDSA" => Ed25519PublicKey::from_bytes(&b("x")).expect("ed key").verify_token(token, Some(opts)),
        "ES256" => {
            let mut point = vec![4u8];
            point.extend(b("x"));
            point.extend(b("y"));
            ES256PublicKey::from_bytes(&point).expect("ec key").verify_token(token, Some(opts))
        }
        "RS256" => RS256PublicKey::from_components(&b("n"), &b("e")).expect("rsa key").verify_token(token, Some(opts)),
        other => panic!("unexpected alg {other}"),
    }
    .unwrap_or_else(|e| panic!("token does not verify against the JWKS: {e}"));
    let mut v = serde_json::to_value(&claims.custom).expect("claims");
    v["iss"] = json!(claims.issuer);
    v["sub"] = json!(claims.subject);
    v["jti"] = json!(claims.jwt_id);
    if let Some(nonce) = claims.nonce {
        v["nonce"] = json!(nonce);
    }
    v["exp"] = json!(claims.expires_at.map(|t| t.as_secs()));
    v["iat"] = json!(claims.issued_at.map(|t| t.as_secs()));
    v["aud"] = match claims.audiences {
        Some(Audiences::AsSet(s)) => json!(s.into_iter().collect::<Vec<_>>()),
        Some(Audiences::AsString(s)) => json!([s]),
        None => Value::Null,
    };
    v
}
