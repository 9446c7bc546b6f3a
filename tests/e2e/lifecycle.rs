//! The node's life: restart persistence, clear start-up errors, HTTPS, graceful stop.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn restart_keeps_everything() {
    // The issuer is fixed: a restart on another port must still accept the tokens it issued.
    let tmp = tempfile::tempdir().unwrap();
    let issuer = ["--issuer", "https://jeton.test"];
    let mut node = Node::start_in(&tmp.path().join("data"), free_port(), &issuer).await;
    let (id, secret) = node
        .app_with_user("acme", "app-acme", json!({"tokenSigningMethod": "RS256"}), "heidi", "Heidi-Password-1")
        .await;
    let (_, t) = node.password_grant(&id, &secret, "heidi", "Heidi-Password-1").await;
    let at = t["access_token"].as_str().unwrap().to_string();
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let revoked = node.admin_token().await;
    let (s, _) =
        node.post_form_basic("/oauth/revoke", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &revoked)]).await;
    assert_eq!(s, 200);
    let jwks_before = node.get("/.well-known/jwks").await.1;

    let dir = node.dir.clone();
    node.stop();
    assert!(node.output().contains("jeton stopped"), "graceful stop: {}", node.output());

    let node = Node::start_in(&dir, free_port(), &issuer).await;
    assert!(!node.output().contains("first start"), "a restart does not bootstrap again");
    assert_eq!(node.get("/.well-known/jwks").await.1, jwks_before, "same keys after restart");
    let (_, v) = node.post_form_basic("/oauth/introspect", &id, &secret, &[("token", &at)]).await;
    assert_eq!(v["active"], true, "a token from before the restart is still valid: {v}");
    let (_, v) =
        node.post_form_basic("/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &revoked)]).await;
    assert_eq!(v, json!({"active": false}), "revocations survive a restart");
    let (s, v) = node
        .post_form_basic("/oauth/token", &id, &secret, &[("grant_type", "refresh_token"), ("refresh_token", &rt)])
        .await;
    assert_eq!(s, 200, "refresh state survives a restart: {v}");
    let (s, v) = node.password_grant(&id, &secret, "heidi", "Heidi-Password-1").await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = node.admin_get("get-user?id=acme/heidi").await;
    assert_eq!(v["data"]["name"], "heidi");
}

fn run_jeton(args: &[&str]) -> (i32, String) {
    run_jeton_with(args, &[])
}

/// `jeton serve` on `dir` and a free port, with `extra` arguments, run to its end (a start that fails).
fn serve_once(dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["serve", "--data-dir", dir.to_str().unwrap(), "--http-addr", &addr];
    args.extend_from_slice(extra);
    run_jeton_with(&args, env)
}

/// `jeton ARGS` with more (or other) environment variables: (exit code, stdout and stderr).
fn run_jeton_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = crate::harness::jeton_command()
        .args(args)
        .env("JETON_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run jeton");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn start_up_errors_are_clear() {
    // A taken port.
    let node = Node::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    let (code, text) = run_jeton(&[
        "serve",
        "--data-dir",
        other.to_str().unwrap(),
        "--http-addr",
        &format!("127.0.0.1:{}", node.port),
    ]);
    assert_ne!(code, 0);
    assert!(text.contains("already in use"), "{text}");
    assert!(!text.contains("panicked"), "{text}");

    // A data dir of another node.
    let (code, text) = serve_once(&node.dir, &["--node-id", "7"], &[]);
    assert_ne!(code, 0);
    assert!(text.contains("belongs to node 1"), "{text}");

    // A data dir whose database is gone or damaged is refused, not silently started afresh.
    let mut stopped = Node::start().await;
    stopped.stop();
    let damaged = tmp.path().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    for f in ["identity.json", "kek"] {
        std::fs::copy(stopped.dir.join(f), damaged.join(f)).unwrap();
    }
    let (code, text) = run_jeton(&[
        "serve",
        "--data-dir",
        damaged.to_str().unwrap(),
        "--http-addr",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("holds no Raft state"), "{text}");
    let db = stopped.dir.join("db").join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    for (i, b) in bytes.iter_mut().enumerate() {
        if i % 4096 >= 64 {
            *b ^= 0x5a;
        }
    }
    std::fs::write(&db, bytes).unwrap();
    let (code, text) = run_jeton(&[
        "serve",
        "--data-dir",
        stopped.dir.to_str().unwrap(),
        "--http-addr",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    assert_ne!(code, 0, "a corrupt database must not start: {text}");
    assert!(text.contains("holds no Raft state") || text.contains("cannot open data dir"), "{text}");
    assert!(!text.contains("created organization"), "{text}");

    // A bad config file and a bad flag value.
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "no_such_setting = true\n").unwrap();
    let (code, text) = run_jeton(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(text.contains("invalid config file") && text.contains("no_such_setting"), "{text}");
    let (code, text) = run_jeton(&["serve", "--http-addr", "not-an-address", "--data-dir", other.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(text.contains("http.addr"), "{text}");
    let (code, text) = run_jeton(&["serve", "--config", "/no/such/file.toml"]);
    assert_ne!(code, 0);
    assert!(text.contains("cannot read config file"), "{text}");
}

#[tokio::test]
async fn https_with_a_self_signed_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let cfg = tmp.path().join("tls.toml");
    std::fs::write(&cfg, "[tls]\nenabled = true\nself_signed = true\n").unwrap();
    let port = free_port();
    let (mut child, log) = spawn(&dir, port, &["--config", cfg.to_str().unwrap()]);
    let cert_path = dir.join("tls-cert.pem");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cert_path.exists() {
        assert!(std::time::Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cert = reqwest::Certificate::from_pem(&std::fs::read(&cert_path).unwrap()).unwrap();
    let https = reqwest::Client::builder().tls_certs_only([cert]).build().unwrap();
    let url = format!("https://localhost:{port}");
    let mut ok = false;
    for _ in 0..300 {
        if let Ok(r) = https.get(format!("{url}/api/health")).send().await {
            ok = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "HTTPS health check failed: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let r = https
        .post(format!("{url}/oauth/token"))
        .basic_auth(ADMIN_CLIENT_ID, Some(ADMIN_CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["access_token"].is_string());
    // Plain HTTP to the TLS port gets nothing.
    assert!(client()
        .get(format!("http://127.0.0.1:{port}/api/health"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true));
    let _ = child.kill();
    let _ = child.wait();
}

/// `JETON_ADMIN_*` act only on the first start: a later start with other values says so, once per
/// variable, without printing any value; a start with the stored values says nothing.
#[tokio::test]
async fn admin_env_on_a_later_start_is_reported_as_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut node = Node::start_in(&dir, free_port(), &[]).await;
    node.stop();

    let (password, id, secret) = ("Other-Admin-Password-7", "other-admin-client", "other-admin-secret-0123456789");
    let other =
        [("JETON_ADMIN_PASSWORD", password), ("JETON_ADMIN_CLIENT_ID", id), ("JETON_ADMIN_CLIENT_SECRET", secret)];
    let mut node = Node::start_with_env(&dir, free_port(), &[], &other).await;
    let out = node.output();
    for var in ["JETON_ADMIN_PASSWORD", "JETON_ADMIN_CLIENT_ID", "JETON_ADMIN_CLIENT_SECRET"] {
        let lines = out.lines().filter(|l| l.contains("WARN") && l.contains(var)).count();
        assert_eq!(lines, 1, "one warning about {var}: {out}");
    }
    assert!(out.contains("only on the first start"), "{out}");
    for value in [password, id, secret] {
        assert!(!out.contains(value), "a JETON_ADMIN_* value was logged: {out}");
    }
    // The stored credentials still rule.
    let (s, v) = node.password_grant(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, "admin", ADMIN_PASSWORD).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = node.password_grant(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, "admin", password).await;
    assert_ne!(s, 200);
    node.stop();

    // The same values as stored (the harness's): no warning.
    let node = Node::start_in(&dir, free_port(), &[]).await;
    assert!(!node.output().contains("JETON_ADMIN_"), "{}", node.output());
}

/// Logs written to a file or a pipe (journald, `docker logs`) carry no terminal colour codes.
#[tokio::test]
async fn logs_are_plain_text_without_a_terminal() {
    let node = Node::start().await;
    let out = node.output();
    assert!(out.contains("jeton serving"), "{out}");
    assert!(!out.contains('\u{1b}'), "ANSI escape codes in a log file: {out:?}");
}

/// A second process on a data dir in use is told so; a start that fails prints its one error line and
/// nothing else (no openraft "error reporting metrics" from a Raft dropped while running), and a bad
/// `JETON_KEK` or `JETON_ADMIN_CLIENT_SECRET` is refused before the data dir is created.
#[tokio::test]
async fn failed_starts_say_why_in_one_line() {
    let node = Node::start().await;
    let (code, text) = serve_once(&node.dir, &[], &[]);
    assert_ne!(code, 0);
    assert!(text.contains("is in use by another jeton process"), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    for (var, value, says) in
        [("JETON_KEK", "not-a-key", "JETON_KEK"), ("JETON_ADMIN_CLIENT_SECRET", "short", "at least 16 characters")]
    {
        // The spurious line came from a race at exit; a few tries catch it.
        for attempt in 0..6 {
            let dir = tmp.path().join(format!("{var}-{attempt}"));
            let (code, text) = serve_once(&dir, &[], &[("JETON_LOG", "info"), (var, value)]);
            assert_ne!(code, 0, "{text}");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 1, "one line for a failed start ({var}): {text}");
            assert!(lines[0].starts_with("error: ") && lines[0].contains(says), "{text}");
            assert!(!dir.exists(), "{var} was refused after the data dir was created");
        }
    }
}
