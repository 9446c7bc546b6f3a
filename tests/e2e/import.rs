//! `jeton import casdoor` against the real thing: the Casdoor fixtures (COMPAT §10) loaded into a fresh
//! PostgreSQL / MariaDB database, imported into a running node (`--into`) or a data dir (`--data-dir`),
//! then used: every password scheme signs in, Casdoor-signed tokens introspect, imported client
//! credentials work, memberships show, a second run writes nothing, broken rows are reported (or abort
//! with `--strict`) and a dry run writes nothing.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres or root) and MariaDB/MySQL on
//! 127.0.0.1:3306 (root, empty password), with their command-line clients; `.ci/run` starts them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{self, Node, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/casdoor");
const CASDOOR_ISSUER: &str = "https://auth.example.com";

/// Imported applications: (name, client id, client secret).
const APP_ACME: (&str, &str) = ("80ad170f5388523bb018", "be6c0ac5cd33efd3317d4dc3bb1f2d46f0eb6151");
const APP_ACME_CLI: (&str, &str) = ("72154499962350a5138f", "076b9362e6f289f5f7ef77335ff8c031c2422af9");
const APP_BUILT_IN: (&str, &str) = ("62a948dbbf6465599a50", "520745cbc28753713081283c1c73f7d2cf655ed8");
const APP_GLOBEX: (&str, &str) = ("3f5257a41afb8530f5b6", "ededc45a111f55599de236e4d0c7f1702000aca2");
const APP_GLOBEX_CUSTOM: (&str, &str) = ("f8ce78fe8e7feaff5c19", "f569273cfb4ccfd06ca2f5fff495610d1e40a020");

/// A fresh Casdoor database with the fixtures loaded; dropped at the end.
struct CasdoorDb {
    kind: Kind,
    name: String,
    pg_user: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Postgres,
    MySql,
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl CasdoorDb {
    fn create(kind: Kind, tag: &str) -> CasdoorDb {
        let name = format!("casdoor_import_{tag}_{}", std::process::id());
        let pg_user = if kind == Kind::Postgres { pg_user() } else { String::new() };
        let db = CasdoorDb { kind, name, pg_user };
        match kind {
            Kind::Postgres => {
                db.psql("postgres", &format!("DROP DATABASE IF EXISTS {}", db.name));
                db.psql("postgres", &format!("CREATE DATABASE {}", db.name));
                for f in ["schema-postgres.sql", "seed-postgres.sql"] {
                    run_ok(
                        Command::new("psql")
                            .args([
                                "-h",
                                "127.0.0.1",
                                "-U",
                                &db.pg_user,
                                "-d",
                                &db.name,
                                "-q",
                                "-v",
                                "ON_ERROR_STOP=1",
                                "-f",
                            ])
                            .arg(Path::new(FIXTURES).join(f)),
                    );
                }
            }
            Kind::MySql => {
                db.mysql(
                    "",
                    &format!(
                        "DROP DATABASE IF EXISTS {0}; CREATE DATABASE {0} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
                        db.name
                    ),
                );
                for f in ["schema-mysql.sql", "seed-mysql.sql"] {
                    let file = std::fs::File::open(Path::new(FIXTURES).join(f)).expect("fixture");
                    run_ok(mysql_cmd().arg(&db.name).stdin(file));
                }
            }
        }
        db
    }

    fn url(&self) -> String {
        match self.kind {
            Kind::Postgres => format!("postgres://{}@127.0.0.1:5432/{}", self.pg_user, self.name),
            Kind::MySql => format!("mysql://root@127.0.0.1:3306/{}", self.name),
        }
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        run_ok(Command::new("psql").args([
            "-h",
            "127.0.0.1",
            "-U",
            &self.pg_user,
            "-d",
            db,
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]))
    }

    fn mysql(&self, db: &str, sql: &str) -> String {
        let mut c = mysql_cmd();
        c.args(["-N", "-B", "-e", sql]);
        if !db.is_empty() {
            c.arg(db);
        }
        run_ok(&mut c)
    }

    /// Runs SQL in this database and returns the output (one row per line, tab-separated).
    fn sql(&self, sql: &str) -> String {
        match self.kind {
            Kind::Postgres => self.psql(&self.name, sql),
            Kind::MySql => self.mysql(&self.name, sql),
        }
    }

    fn access_token(&self, token_name: &str) -> String {
        self.sql(&format!("SELECT access_token FROM token WHERE name = '{token_name}'")).trim().to_string()
    }
}

impl Drop for CasdoorDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.name);
        let _ = match self.kind {
            Kind::Postgres => Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", &self.pg_user, "-d", "postgres", "-q", "-c", &sql])
                .output(),
            Kind::MySql => mysql_cmd().args(["-e", &sql]).output(),
        };
    }
}

/// `postgres` if that role exists, else `root`.
fn pg_user() -> String {
    for user in ["postgres", "root"] {
        let ok = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", user, "-d", "postgres", "-At", "-c", "SELECT 1"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return user.to_string();
        }
    }
    panic!("PostgreSQL on 127.0.0.1:5432 accepts neither user postgres nor root (trust auth expected)");
}

fn mysql_cmd() -> Command {
    let client = if Command::new("mariadb").arg("--version").output().is_ok() { "mariadb" } else { "mysql" };
    let mut c = Command::new(client);
    c.args(["-h", "127.0.0.1", "-P", "3306", "-uroot", "--default-character-set=utf8mb4"]);
    c
}

/// Output of one `jeton import casdoor` run.
struct ImportRun {
    ok: bool,
    stdout: String,
    stderr: String,
    report: Value,
}

impl ImportRun {
    fn written(&self, kind: &str) -> u64 {
        self.report["written"][kind].as_u64().unwrap_or(0)
    }
    fn unchanged(&self, kind: &str) -> u64 {
        self.report["unchanged"][kind].as_u64().unwrap_or(0)
    }
    fn total_written(&self) -> u64 {
        self.report["written"].as_object().map(|m| m.values().filter_map(Value::as_u64).sum()).unwrap_or(0)
    }
    /// The target's administrators the import met: (table, key, replaced).
    fn administrators(&self) -> Vec<(&str, &str, bool)> {
        self.report["administrators"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        let f = |k: &str| x[k].as_str().unwrap_or_default();
                        (f("table"), f("key"), x["replaced"].as_bool().unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    fn skipped(&self) -> Vec<(String, String, String)> {
        self.report["skipped"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let f = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                        (f("table"), f("key"), f("reason"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn import(db: &CasdoorDb, args: &[&str], work: &Path) -> ImportRun {
    let report_path = work.join(format!("report-{}.json", uuid_like()));
    let out = crate::harness::jeton_command()
        .args(["import", "casdoor", "--from", &db.url(), "--report"])
        .arg(&report_path)
        .args(args)
        .env("JETON_LOG", "warn")
        .env_remove("JETON_ADMIN_CLIENT_ID")
        .env_remove("JETON_ADMIN_CLIENT_SECRET")
        .output()
        .expect("run jeton import");
    let report = std::fs::read(&report_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
    ImportRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    )
}

pub(crate) fn seed_passwords() -> Value {
    serde_json::from_slice(&std::fs::read(Path::new(FIXTURES).join("seed-passwords.json")).expect("seed-passwords"))
        .expect("json")
}

/// Password grant at Casdoor's token path, client_secret_post.
async fn login(node: &Node, app: (&str, &str), user: &str, password: &str, scope: &str) -> (u16, Value) {
    node.post_form(
        "/api/login/oauth/access_token",
        &[
            ("grant_type", "password"),
            ("client_id", app.0),
            ("client_secret", app.1),
            ("username", user),
            ("password", password),
            ("scope", scope),
        ],
    )
    .await
}

async fn introspect(node: &Node, app: (&str, &str), token: &str) -> Value {
    let (s, v) = node.post_form_basic("/api/login/oauth/introspect", app.0, app.1, &[("token", token)]).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Every user of seed-passwords.json: `ok` users sign in with their old password through their
/// organization's application, the others are refused. `built_in_app` is the app built-in users use.
/// `kept_admin`: the node kept its own `built-in/admin`, whose password this is (Casdoor's is refused).
async fn check_every_login(node: &Node, built_in_app: (&str, &str), kept_admin: Option<&str>) {
    let seed = seed_passwords();
    let mut schemes = std::collections::BTreeSet::new();
    for u in seed["users"].as_array().expect("users") {
        let f = |k: &str| u[k].as_str().unwrap_or_default();
        let app = match f("owner") {
            "acme" => APP_ACME,
            "globex" => APP_GLOBEX,
            _ => built_in_app,
        };
        let password = if f("password").is_empty() { "any-password" } else { f("password") };
        if let (Some(own), ("built-in", "admin")) = (kept_admin, (f("owner"), f("name"))) {
            let (s, v) = login(node, app, "admin", own, "").await;
            assert_eq!(s, 200, "the node's own administrator keeps its password: {v}");
            let (s, v) = login(node, app, "admin", password, "").await;
            assert_eq!(s, 400, "Casdoor's built-in/admin password does not open the kept administrator: {v}");
            continue;
        }
        let (s, v) = login(node, app, f("name"), password, "").await;
        if f("status") == "ok" {
            assert_eq!(s, 200, "{}/{} ({}) must sign in: {v}", f("owner"), f("name"), f("effective_password_type"));
            schemes.insert(f("effective_password_type").to_string());
            // A wrong password is still refused.
            let (s, _) = login(node, app, f("name"), &format!("{password}-wrong"), "").await;
            assert_eq!(s, 400, "{}/{} with a wrong password", f("owner"), f("name"));
        } else {
            assert_ne!(s, 200, "{}/{} is {} and must be refused: {v}", f("owner"), f("name"), f("status"));
        }
    }
    let all: std::collections::BTreeSet<String> =
        ["plain", "salt", "sha512-salt", "md5-salt", "bcrypt", "argon2id", "pbkdf2-salt", "pbkdf2-django"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    assert_eq!(schemes, all, "every Casdoor password scheme is exercised");
    // The organization's master password, checked with the organization's scheme and salt (COMPAT §4.3),
    // opens globex accounts whatever their own scheme: kenji (sha512-salt, as the organization), yuki
    // (salt).
    let m = &seed["master_passwords"][0];
    for user in ["kenji", "yuki"] {
        let (s, v) = login(node, APP_GLOBEX, user, m["password"].as_str().expect("master"), "").await;
        assert_eq!(s, 200, "master password for {user}: {v}");
    }
}

/// Casdoor-signed tokens: still-valid ones are active (ES256, ES512, client credentials), expired,
/// revoked and DPoP-bound ones are not.
async fn check_casdoor_tokens(node: &Node, db: &CasdoorDb) {
    let bob = db.access_token("524f879c-bb94-4f0b-88cb-bc02e7c12dd5");
    let v = introspect(node, APP_ACME_CLI, &bob).await;
    assert_eq!(v["active"], true, "bob's Casdoor token (ES256, until 2036): {v}");
    assert_eq!(v["iss"], CASDOOR_ISSUER);
    assert_eq!(v["username"], "bob");
    // Valid for 30 days from 2026-11-19: active until then, inactive after (either way, decided by its exp).
    let yuki = db.access_token("d6089d3d-1cfa-4308-96b2-7b84d9d51944");
    let v = introspect(node, APP_GLOBEX_CUSTOM, &yuki).await;
    let still_valid = exp_of(&yuki) > now();
    assert_eq!(v["active"], still_valid, "yuki's Casdoor JWT-Custom token (ES512): {v}");
    let cc = db.access_token("570ea69b-1bfc-4b3f-af4d-e70ae92ae770");
    let v = introspect(node, APP_ACME_CLI, &cc).await;
    assert_eq!(v["active"], true, "Casdoor client_credentials token: {v}");
    for (name, app, why) in [
        ("156eb552-0030-458f-a947-9dbe00965876", APP_GLOBEX, "expired (1.5 h, 2026-11-20)"),
        ("bb92c01b-e681-4f28-bdb4-a5b6dc8af4b2", APP_ACME_CLI, "DPoP-bound"),
        ("5df0112a-9597-4fda-92cb-00b68520004f", APP_ACME, "expired"),
    ] {
        let v = introspect(node, app, &db.access_token(name)).await;
        assert_eq!(v["active"], false, "token {name} is {why}: {v}");
    }
    // Changing a claim breaks the signature: inactive.
    let mut parts: Vec<String> = bob.split('.').map(str::to_string).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(&parts[1]).expect("b64")).expect("json");
    claims["iss"] = Value::String("https://evil.example".into());
    parts[1] = b64.encode(serde_json::to_vec(&claims).expect("json"));
    let v = introspect(node, APP_ACME_CLI, &parts.join(".")).await;
    assert_eq!(v["active"], false);
}

/// Foreign issuers are accepted per application, not in general: a token signed with the imported
/// `cert-built-in` key (the test holds the fixture's private key) is active with the node's own issuer, and
/// inactive with Casdoor's issuer for `app-built-in` (which had no live Casdoor token, so none was recorded)
/// or with any other issuer.
async fn check_issuer_acceptance(node: &Node) {
    use jwt_simple::prelude::*;
    let pem = std::fs::read_to_string(Path::new(FIXTURES).join("keys/cert-built-in.key")).expect("key");
    let key = RS256KeyPair::from_pem(&pem).expect("pkcs8 rsa").with_key_id("cert-built-in");
    let sign = |iss: &str| {
        let custom = serde_json::json!({"azp": APP_BUILT_IN.0, "scope": ""});
        let claims = Claims::with_custom_claims(custom, Duration::from_mins(10))
            .with_issuer(iss)
            .with_subject("admin/app-built-in")
            .with_jwt_id(format!("admin/{}", uuid_like()));
        key.sign(claims).expect("sign")
    };
    let v = introspect(node, APP_BUILT_IN, &sign(&node.base)).await;
    assert_eq!(v["active"], true, "own issuer, imported key: {v}");
    for iss in [CASDOOR_ISSUER, "https://evil.example"] {
        let v = introspect(node, APP_BUILT_IN, &sign(iss)).await;
        assert_eq!(v["active"], false, "issuer {iss} is not recorded for app-built-in: {v}");
    }
}

fn exp_of(token: &str) -> i64 {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("jwt");
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("b64"))
            .expect("json");
    claims["exp"].as_i64().expect("exp")
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Imported client credentials, memberships and keys.
async fn check_apps_and_memberships(node: &Node) {
    let (s, v) = node
        .post_form_basic(
            "/api/login/oauth/access_token",
            APP_ACME_CLI.0,
            APP_ACME_CLI.1,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(s, 200, "client_credentials with app-acme-cli's Casdoor id/secret: {v}");
    let at = v["access_token"].as_str().expect("access_token");
    assert_eq!(harness::jwt_header(at)["kid"], "cert-acme-es256", "signed with the imported cert, same kid");
    assert_eq!(harness::jwt_header(at)["alg"], "ES256");
    let (s, _) = node
        .post_form_basic(
            "/api/login/oauth/access_token",
            APP_ACME_CLI.0,
            "wrong-secret",
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(s, 401);
    // JWKS keeps Casdoor's kids; the SSL cert is not a signing key.
    let (_, jwks) = node.get("/.well-known/jwks").await;
    let kids: Vec<&str> = jwks["keys"].as_array().expect("keys").iter().filter_map(|k| k["kid"].as_str()).collect();
    for kid in ["cert-acme-rs512", "cert-acme-es256", "cert-globex-es384", "cert-globex-es512", "cert-built-in"] {
        assert!(kids.contains(&kid), "{kid} in JWKS {kids:?}");
    }
    assert!(!kids.contains(&"portal.acme.example"));
    // Groups and roles: userinfo of bob (two groups) and carol (role-engineers, and role-staff above it).
    let (s, v) = login(node, APP_ACME, "bob", "hunter2-Bob", "openid profile").await;
    assert_eq!(s, 200, "{v}");
    let (s, info) = get_bearer(node, "/oauth/userinfo", v["access_token"].as_str().expect("at")).await;
    assert_eq!(s, 200, "{info}");
    let groups: Vec<&str> = info["groups"].as_array().expect("groups").iter().filter_map(Value::as_str).collect();
    assert_eq!(groups, ["acme/engineering", "acme/platform"], "{info}");
    let (s, v) = login(node, APP_ACME, "carol", "Carol_pass_99", "openid profile").await;
    assert_eq!(s, 200, "{v}");
    let (_, info) = get_bearer(node, "/oauth/userinfo", v["access_token"].as_str().expect("at")).await;
    let roles: Vec<&str> = info["roles"].as_array().expect("roles").iter().filter_map(Value::as_str).collect();
    assert!(roles.contains(&"role-engineers") && roles.contains(&"role-staff"), "{info}");
    // A forbidden user stays forbidden, a deleted one deleted (admin API).
    let (_, judy) = admin_get(node, "get-user?id=acme/judy").await;
    assert_eq!(judy["data"]["isForbidden"], true, "{judy}");
    let (_, mallory) = admin_get(node, "get-user?id=acme/mallory").await;
    assert_eq!(mallory["data"]["isDeleted"], true, "{mallory}");
    let (_, group) = admin_get(node, "get-group?id=acme/platform").await;
    assert_eq!(group["data"]["parentId"], "engineering", "{group}");
}

async fn get_bearer(node: &Node, path: &str, token: &str) -> (u16, Value) {
    harness::response(node.http.get(node.url(path)).bearer_auth(token).send().await.expect("request")).await
}

/// Admin GET with whichever admin credentials the node has (`ADMIN_*` for a bootstrapped node, Casdoor's
/// app-built-in after a data-dir import).
async fn admin_get(node: &Node, api: &str) -> (u16, Value) {
    for (id, secret) in [(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET), APP_BUILT_IN] {
        let r =
            node.http.get(node.url(&format!("/api/{api}"))).basic_auth(id, Some(secret)).send().await.expect("request");
        let (s, v) = harness::response(r).await;
        if s != 401 {
            return (s, v);
        }
    }
    panic!("no admin credentials work for {api}");
}

fn into_args(node: &Node) -> Vec<String> {
    vec![
        "--into".into(),
        node.base.clone(),
        "--client-id".into(),
        ADMIN_CLIENT_ID.into(),
        "--client-secret".into(),
        ADMIN_CLIENT_SECRET.into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Loads the Casdoor fixtures into a fresh PostgreSQL database and imports them into `node`, which keeps
/// its own administrators (built-in/admin signs in with [`harness::ADMIN_PASSWORD`]): for the other areas'
/// tests that need a node holding Casdoor's data (tests/e2e/ldap.rs). The database is dropped afterwards.
pub(crate) fn import_fixtures_into(node: &Node, tag: &str) {
    let db = CasdoorDb::create(Kind::Postgres, tag);
    let work = tempfile::tempdir().expect("tempdir");
    let args = into_args(node);
    let r = import(&db, &strs(&args), work.path());
    assert!(r.ok, "import failed: {}\n{}", r.stdout, r.stderr);
    assert_eq!(r.written("put_user"), 29, "{}", r.stdout);
    assert_eq!(r.written("put_group"), 5, "{}", r.stdout);
}

#[tokio::test]
async fn import_postgres_into_running_node() {
    let db = CasdoorDb::create(Kind::Postgres, "pg_into");
    let work = tempfile::tempdir().expect("tempdir");
    let node = Node::start().await;

    // A dry run first: it says what it would write and writes nothing.
    let args = into_args(&node);
    let mut dry = strs(&args);
    dry.push("--dry-run");
    let r = import(&db, &dry, work.path());
    assert!(r.ok, "dry run failed: {}\n{}", r.stdout, r.stderr);
    // Casdoor's built-in/admin would replace the node's own: it is kept, so 29 of the 30 users.
    assert_eq!(r.written("put_user"), 29, "{}", r.stdout);
    assert!(r.stdout.contains("would write put_user acme/alice (user)"), "{}", r.stdout);
    let (_, users) = admin_get(&node, "get-users?owner=acme").await;
    assert_eq!(users["data"], Value::Array(vec![]), "the dry run wrote nothing: {users}");

    // --strict: the rows kept out by design (the node's administrators) are no errors.
    let mut strict = strs(&args);
    strict.push("--strict");
    let r = import(&db, &strict, work.path());
    assert!(r.ok, "import failed: {}\n{}", r.stdout, r.stderr);
    assert_eq!(r.written("put_organization"), 3, "{}", r.stdout);
    assert_eq!(r.written("put_user"), 29, "{}", r.stdout);
    assert_eq!(r.written("put_signing_key"), 5, "{}", r.stdout);
    assert_eq!(r.written("put_group"), 5, "{}", r.stdout);
    assert_eq!(r.written("put_role"), 5, "{}", r.stdout);
    assert_eq!(r.written("put_permission"), 7, "{}", r.stdout);
    assert_eq!(r.written("put_model"), 4, "{}", r.stdout);
    assert!(r.written("revoke") >= 1, "the DPoP-bound token is revoked: {}", r.stdout);
    assert!(r.written("put_accepted_issuer") >= 1, "{}", r.stdout);
    // alice's TOTP secret (MFA `app`) becomes a sealed TOTP factor; her record keeps none.
    let totp_factors = r.written("put_totp");
    assert!(totp_factors >= 1, "{}", r.stdout);
    let (_, alice) = admin_get(&node, "get-user?id=acme/alice").await;
    assert_eq!(
        (alice["data"]["totpSecret"].as_str(), alice["data"]["preferredMfaType"].as_str()),
        (Some(""), Some("app"))
    );
    // Casdoor's app-built-in and built-in/admin would replace this node's own administrators: kept, and
    // said so (not as errors).
    assert_eq!(r.written("put_application"), 4, "{}", r.stdout);
    assert!(r.skipped().is_empty(), "{:?}", r.skipped());
    assert_eq!(r.administrators(), [("application", "app-built-in", false), ("user", "built-in/admin", false)]);
    assert!(r.stdout.contains("record kind"), "summary table: {}", r.stdout);
    assert!(r.stdout.contains("kept") && r.stdout.contains("--replace-admin"), "{}", r.stdout);

    // Built-in users sign in through this node's admin application; its administrator kept its password.
    check_every_login(&node, (ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET), Some(harness::ADMIN_PASSWORD)).await;
    check_casdoor_tokens(&node, &db).await;
    check_apps_and_memberships(&node).await;

    // Again: nothing changes.
    let r = import(&db, &strs(&args), work.path());
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.total_written(), 0, "second run writes nothing: {}", r.stdout);
    assert_eq!(r.unchanged("put_user"), 29, "{}", r.stdout);
    assert_eq!(r.unchanged("put_signing_key"), 5, "{}", r.stdout);
    assert_eq!(r.unchanged("put_totp"), totp_factors, "the same secrets again: {}", r.stdout);

    // Asked for: Casdoor's built-in/admin replaces the node's (the admin application stays: the import
    // runs with its credentials), and the report says so.
    let mut replace = strs(&args);
    replace.push("--replace-admin");
    let r = import(&db, &replace, work.path());
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.written("put_user"), 1, "{}", r.stdout);
    assert_eq!(r.administrators(), [("application", "app-built-in", false), ("user", "built-in/admin", true)]);
    assert!(r.stdout.contains("replaced"), "{}", r.stdout);
    let (s, v) = login(&node, (ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET), "admin", "123", "").await;
    assert_eq!(s, 200, "Casdoor's administrator password now: {v}");
    let (s, _) = login(&node, (ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET), "admin", harness::ADMIN_PASSWORD, "").await;
    assert_eq!(s, 400, "the replaced password no longer works");
}

#[tokio::test]
async fn import_mysql_into_data_dir() {
    let db = CasdoorDb::create(Kind::MySql, "my_dir");
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("data");
    let dir_s = dir.to_string_lossy().into_owned();

    // A dry run into a data dir that does not exist yet creates nothing.
    let r = import(&db, &["--data-dir", &dir_s, "--dry-run"], work.path());
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.written("put_user"), 30);
    assert!(!dir.exists(), "a dry run created the data dir");

    let r = import(&db, &["--data-dir", &dir_s], work.path());
    assert!(r.ok, "import failed: {}\n{}", r.stdout, r.stderr);
    assert_eq!(r.written("put_user"), 30, "{}", r.stdout);
    assert_eq!(r.written("put_application"), 5, "{}", r.stdout);
    assert_eq!(r.written("put_signing_key"), 5, "{}", r.stdout);
    assert!(r.skipped().is_empty(), "{:?}", r.skipped());
    assert!(dir.join("kek").exists(), "the key-encryption key lives in the data dir");

    // Interrupted or repeated: a second run writes nothing.
    let r = import(&db, &["--data-dir", &dir_s], work.path());
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.total_written(), 0, "{}", r.stdout);
    assert_eq!(r.unchanged("put_user"), 30);

    // The node starts on the imported state: Casdoor's built-in organization and app-built-in are its own.
    let mut node = Node::start_in(&dir, harness::free_port(), &[]).await;
    check_every_login(&node, APP_BUILT_IN, None).await;
    check_casdoor_tokens(&node, &db).await;
    check_apps_and_memberships(&node).await;
    check_issuer_acceptance(&node).await;
    // Casdoor's built-in admin is a global administrator here too.
    let (s, v) = login(&node, APP_BUILT_IN, "admin", "123", "").await;
    assert_eq!(s, 200, "{v}");
    let r = node
        .http
        .get(node.url("/api/get-organizations?owner=admin"))
        .bearer_auth(v["access_token"].as_str().expect("at"))
        .send()
        .await
        .expect("request");
    let (s, orgs) = harness::response(r).await;
    assert_eq!(s, 200, "{orgs}");
    assert_eq!(orgs["data"].as_array().map(Vec::len), Some(3));
    let _ = APP_GLOBEX_CUSTOM;
    node.stop();
}

/// Casdoor signs with the algorithm its *application* names, whatever the cert row says (COMPAT §5.2, §11.7):
/// `app-acme`'s method made RS384, which Casdoor signs as RS256 with `cert-acme-rs512` (row: RS512), and
/// `app-acme-cli` moved to the same cert with RS512. After the import, tokens signed as Casdoor signed
/// them (here with the fixture's private key and jwt-simple) verify with both algorithms; algorithms no
/// application produced stay inactive.
#[tokio::test]
async fn casdoor_tokens_verify_with_the_algorithms_their_applications_signed_with() {
    use jwt_simple::prelude::*;
    let db = CasdoorDb::create(Kind::Postgres, "pg_algs");
    db.sql(
        "UPDATE application SET token_signing_method = 'RS384' WHERE name = 'app-acme'; \
         UPDATE application SET cert = 'cert-acme-rs512', token_signing_method = 'RS512' WHERE name = 'app-acme-cli'",
    );
    let work = tempfile::tempdir().expect("tempdir");
    let node = Node::start().await;
    let mut args = into_args(&node);
    args.extend(["--casdoor-issuer".to_string(), CASDOOR_ISSUER.to_string()]);
    let r = import(&db, &strs(&args), work.path());
    assert!(r.ok, "import failed: {}\n{}", r.stdout, r.stderr);
    assert_eq!(r.written("put_signing_key"), 5, "{}", r.stdout);

    let pem = std::fs::read_to_string(Path::new(FIXTURES).join("keys/cert-acme-rs512.key")).expect("key");
    // alice of app-acme and the client credentials of app-acme-cli, as Casdoor's tokens say them.
    let claims = |app: (&str, &str), sub: &str| {
        let custom = json!({"owner": "acme", "tokenType": "access-token", "azp": app.0, "scope": "openid"});
        Claims::with_custom_claims(custom, Duration::from_hours(1))
            .with_issuer(CASDOOR_ISSUER)
            .with_subject(sub)
            .with_audience(app.0)
            .with_jwt_id(format!("admin/{}", uuid_like()))
    };
    let alice = || claims(APP_ACME, "32766f6c-4771-4a52-9a85-410584f6bf4d");
    let cli = || claims(APP_ACME_CLI, "admin/app-acme-cli");
    let kid = "cert-acme-rs512";
    let rs256 = RS256KeyPair::from_pem(&pem).expect("rsa key").with_key_id(kid);
    let rs512 = RS512KeyPair::from_pem(&pem).expect("rsa key").with_key_id(kid);
    let rs384 = RS384KeyPair::from_pem(&pem).expect("rsa key").with_key_id(kid);
    let ps256 = PS256KeyPair::from_pem(&pem).expect("rsa key").with_key_id(kid);

    let token = rs256.sign(alice()).expect("sign");
    let v = introspect(&node, APP_ACME, &token).await;
    assert_eq!(v["active"], true, "RS256, as Casdoor signed for app-acme, whose cert row says RS512: {v}");
    assert_eq!(v["username"], "alice", "{v}");
    let v = introspect(&node, APP_ACME_CLI, &rs512.sign(cli()).expect("sign")).await;
    assert_eq!(v["active"], true, "RS512, as Casdoor signed for app-acme-cli with the same cert: {v}");
    for (alg, token) in [("RS384", rs384.sign(alice()).expect("sign")), ("PS256", ps256.sign(alice()).expect("sign"))] {
        let v = introspect(&node, APP_ACME, &token).await;
        assert_eq!(v, json!({"active": false}), "{alg}: no application signed with it in Casdoor");
    }

    // Stored with each imported key: what its applications signed with.
    assert_eq!(r.written("put_accepted_algorithms"), 5, "{}", r.stdout);
    // Jeton signs with one of them: the row's, since an application used it; its own tokens verify.
    let (_, jwks) = node.get("/.well-known/jwks").await;
    let jwk = jwks["keys"].as_array().expect("keys").iter().find(|k| k["kid"] == kid).cloned().expect("key in JWKS");
    assert_eq!(jwk["alg"], "RS512", "{jwk}");
    let (s, v) = login(&node, APP_ACME, "bob", "hunter2-Bob", "openid").await;
    assert_eq!(s, 200, "{v}");
    let at = v["access_token"].as_str().expect("at");
    assert_eq!(harness::jwt_header(at)["alg"], "RS512");
    assert_eq!(introspect(&node, APP_ACME, at).await["active"], true);

    // Again: nothing changes.
    let r = import(&db, &strs(&args), work.path());
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.total_written(), 0, "second run writes nothing: {}", r.stdout);
    assert_eq!(r.unchanged("put_accepted_algorithms"), 5, "{}", r.stdout);
}

#[tokio::test]
async fn broken_rows_are_reported_and_strict_aborts() {
    let db = CasdoorDb::create(Kind::Postgres, "pg_broken");
    let work = tempfile::tempdir().expect("tempdir");
    // A user with an unknown password scheme (imported without a password), one in an organization that
    // does not exist, and a policy of a permission that does not exist.
    db.sql(
        "INSERT INTO \"user\" (owner, name, id, password, password_type, created_time) VALUES \
         ('acme', 'mystery', 'f0000000-0000-4000-8000-000000000001', 'x', 'sha3-unknown', '2026-01-01T00:00:00Z'), \
         ('nowhere', 'ghost', 'f0000000-0000-4000-8000-000000000002', 'pw', 'plain', '2026-01-01T00:00:00Z'); \
         INSERT INTO permission_rule (ptype, v0, v1, v2, v3, v4, v5) VALUES ('p', 'acme/alice', 'x', 'Read', 'allow', '', 'acme/no-such-permission')",
    );
    let dir = work.path().join("data");
    let dir_s = dir.to_string_lossy().into_owned();
    let r = import(&db, &["--data-dir", &dir_s], work.path());
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let skipped = r.skipped();
    assert!(!skipped.iter().any(|(_, k, _)| k == "acme/mystery"), "{skipped:?}");
    assert_eq!(r.report["passwordsDropped"][0]["key"], "acme/mystery", "{}", r.report);
    assert!(r.report["passwordsDropped"][0]["reason"].as_str().unwrap_or_default().contains("sha3-unknown"));
    assert!(
        skipped.iter().any(|(t, k, why)| t == "user" && k == "nowhere/ghost" && why.contains("not imported")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|(t, _, why)| t == "permission_rule" && why.contains("no-such-permission")),
        "{skipped:?}"
    );
    assert_eq!(r.written("put_user"), 31, "the good rows are imported: {}", r.stdout);
    assert!(r.stdout.contains("nowhere/ghost"), "the summary names skipped rows: {}", r.stdout);
    assert!(r.stdout.contains("acme/mystery"), "and users imported without their password: {}", r.stdout);

    // --strict: every row is checked first; rows in error stop the run before anything is written, and
    // all of them are listed, each once.
    let dir2 = work.path().join("data-strict");
    let r = import(&db, &["--data-dir", &dir2.to_string_lossy(), "--strict"], work.path());
    assert!(!r.ok, "--strict must fail: {}", r.stdout);
    assert!(r.stderr.contains("--strict") && r.stderr.contains("nothing was written"), "{}", r.stderr);
    assert_eq!(r.skipped().len(), 2, "{:?}", r.skipped());
    assert_eq!(r.stdout.matches("nowhere/ghost").count(), 1, "{}", r.stdout);
    assert!(!r.stderr.contains("nowhere/ghost"), "the error does not repeat the rows: {}", r.stderr);
    assert!(!dir2.exists(), "a --strict run that fails its check creates no data dir");
    // A strict dry run lists every row in error too, not only the first.
    let r = import(&db, &["--dry-run", "--strict"], work.path());
    assert!(!r.ok, "--strict must fail: {}", r.stdout);
    assert_eq!(r.skipped().len(), 2, "{:?}", r.skipped());
    // The same into a running node: the node is left as it was.
    let node = Node::start().await;
    let node_args = into_args(&node);
    let mut strict = strs(&node_args);
    strict.push("--strict");
    let r = import(&db, &strict, work.path());
    assert!(!r.ok, "--strict must fail: {}", r.stdout);
    assert_eq!(r.skipped().len(), 2, "{:?}", r.skipped());
    let (_, v) = node.admin_get("get-organizations?owner=admin").await;
    let orgs: Vec<&str> = v["data"].as_array().expect("list").iter().filter_map(|o| o["name"].as_str()).collect();
    assert_eq!(orgs, ["built-in"], "nothing was written: {v}");

    // Credentials in the database URL never show.
    let db_url_with_password = db.url().replace("@127.0.0.1", ":s3cr3t-pw@127.0.0.1:1").replace(":5432", "");
    let out = crate::harness::jeton_command()
        .args(["import", "casdoor", "--dry-run", "--from", &db_url_with_password])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("s3cr3t-pw"), "password leaked: {all}");

    // A dry run alone prints what it would write.
    let r = import(&db, &["--dry-run"], work.path());
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("would write put_signing_key admin/cert-acme-es256 (cert)"), "{}", r.stdout);
    let _: PathBuf = dir;
}

/// An import killed midway (as by a crash or Ctrl-C) leaves a consistent data dir, and running it again
/// writes exactly what is missing: with several batches in flight, nothing is lost or written twice.
#[tokio::test]
async fn an_interrupted_import_continues() {
    const GENERATED: u64 = 100_000;
    let db = CasdoorDb::create(Kind::Postgres, "resume");
    run_ok(
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", &db.pg_user, "-d", &db.name, "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-v", &format!("users={GENERATED}"), "-f"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/casdoor/generate.sql")),
    );
    let total: u64 = db.sql("SELECT count(*) FROM \"user\"").trim().parse().expect("count");
    assert!(total > GENERATED, "{total}");
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("data");

    // Killed (SIGKILL) once part of the users is written.
    let mut child = crate::harness::jeton_command()
        .args(["import", "casdoor", "--quiet", "--from", &db.url(), "--data-dir"])
        .arg(&dir)
        .env("JETON_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run jeton import");
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let finished = child.try_wait().expect("wait").is_some();
    let _ = child.kill();
    let _ = child.wait();
    assert!(!finished, "the first run finished within 2 s: nothing was interrupted (make GENERATED larger)");

    // Run again: it continues. Some users were already there, the rest is written now.
    let r = import(&db, &["--data-dir", &dir.to_string_lossy()], work.path());
    assert!(r.ok, "the second run failed: {}\n{}", r.stdout, r.stderr);
    assert_eq!(r.written("put_user") + r.unchanged("put_user"), total, "{}", r.report);
    assert!(r.unchanged("put_user") > 0, "the killed run wrote no user before 2 s: {}", r.report);
    assert!(r.written("put_user") > 0, "the killed run had written everything: {}", r.report);
    assert!(r.skipped().is_empty(), "{:?}", r.skipped());

    // And a third run finds every user stored as it is in Casdoor.
    let r = import(&db, &["--data-dir", &dir.to_string_lossy()], work.path());
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.total_written(), 0, "{}", r.report);
    assert_eq!(r.unchanged("put_user"), total);
}

/// Numbered apply requests (what `--into` sends, two at a time): a batch number that already went is
/// refused with 409 and changes nothing; another import's numbering is its own.
#[tokio::test]
async fn apply_requests_of_one_import_go_in_their_order() {
    let node = Node::start().await;
    let org = |name: &str| json!({"command": {"PutOrganization": {"org": {"owner": "admin", "name": name}, "mode": "Create"}}});
    let (s, v) = node.admin_post("jeton/apply", json!({"items": [org("ordered-a")], "run": "run-1", "seq": 0})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["written"]["put_organization"], 1, "{v}");
    let (s, v) = node.admin_post("jeton/apply", json!({"items": [org("ordered-b")], "run": "run-1", "seq": 0})).await;
    assert_eq!(s, 409, "a batch number that already went: {v}");
    let (_, v) = node.admin_get("get-organization?id=admin/ordered-b").await;
    assert_eq!(v["data"], Value::Null, "the refused batch wrote nothing: {v}");
    let (s, v) = node.admin_post("jeton/apply", json!({"items": [org("ordered-b")], "run": "run-1", "seq": 1})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.admin_post("jeton/apply", json!({"items": [org("ordered-c")], "run": "run-2", "seq": 0})).await;
    assert_eq!(s, 200, "another import starts at 0: {v}");
    for name in ["ordered-a", "ordered-b", "ordered-c"] {
        let (_, v) = node.admin_get(&format!("get-organization?id=admin/{name}")).await;
        assert_eq!(v["data"]["name"], name, "{v}");
    }
}

/// `jeton import casdoor` with its default logging, output captured: (success, stdout, stderr).
fn run_import(args: &[&str]) -> (bool, String, String) {
    let out = crate::harness::jeton_command()
        .args(["import", "casdoor"])
        .args(args)
        .env_remove("JETON_LOG")
        .output()
        .expect("run jeton import");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// An import that would match nothing — an unknown `--org`, a wrong `--table-prefix`, a database without
/// Casdoor's tables — fails before it reads or writes anything, saying why, in one line and with no empty
/// summary table; so do a node that cannot be used and a data dir held by a running node.
#[tokio::test]
async fn an_import_that_matches_nothing_says_why() {
    let db = CasdoorDb::create(Kind::MySql, "nothing");
    let empty =
        CasdoorDb { kind: Kind::Postgres, name: format!("casdoor_empty_{}", std::process::id()), pg_user: pg_user() };
    empty.psql("postgres", &format!("DROP DATABASE IF EXISTS {}", empty.name));
    empty.psql("postgres", &format!("CREATE DATABASE {}", empty.name));
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("data");
    let dir_s = dir.to_string_lossy().into_owned();
    let node = Node::start().await;
    let (url, empty_url) = (db.url(), empty.url());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--from", &url, "--data-dir", &dir_s, "--org", "acme", "--org", "no-such-org"], "no-such-org"),
        (vec!["--from", &url, "--data-dir", &dir_s, "--table-prefix", "cd_"], "cd_organization"),
        (vec!["--from", &url, "--dry-run", "--table-prefix", "cd_"], "leave out --table-prefix"),
        (vec!["--from", &empty_url, "--data-dir", &dir_s], "no table organization"),
        (
            vec![
                "--from",
                &url,
                "--into",
                &node.base,
                "--client-id",
                ADMIN_CLIENT_ID,
                "--client-secret",
                "wrong-secret-0123456789",
            ],
            "401",
        ),
        (vec!["--from", &url, "--data-dir", node.dir.to_str().expect("dir")], "in use by another jeton process"),
    ];
    for (args, says) in cases {
        let (ok, stdout, stderr) = run_import(&args);
        assert!(!ok, "{args:?} must fail: {stdout}{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one error line: {stderr}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(says), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}: no summary before the error");
    }
    assert!(!dir.exists(), "a refused import created the data dir");
    let (_, v) = node.admin_get("get-organizations?owner=admin").await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1), "nothing was written into the node: {v}");
}

/// Without a terminal, progress is a log line per table (and every few seconds within a long one) with
/// rows done out of the total and rows per second; `--quiet` prints nothing but errors.
#[tokio::test]
async fn progress_is_logged_without_a_terminal_and_quiet_prints_only_errors() {
    let db = CasdoorDb::create(Kind::Postgres, "progress");
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("data").to_string_lossy().into_owned();
    let (ok, stdout, stderr) = run_import(&["--from", &db.url(), "--data-dir", &dir]);
    assert!(ok, "{stdout}{stderr}");
    let line = stderr.lines().find(|l| l.contains("importing user:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("30 rows in") && line.contains("rows/s"), "{line}");
    assert!(!stderr.contains('\u{1b}'), "no terminal codes: {stderr:?}");
    assert!(stdout.contains("record kind"), "{stdout}");

    let (ok, stdout, stderr) = run_import(&["--from", &db.url(), "--data-dir", &dir, "--quiet"]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", ""), "--quiet prints nothing when all goes well");
    let (ok, stdout, stderr) = run_import(&["--from", &db.url(), "--data-dir", &dir, "--quiet", "--org", "nope"]);
    assert!(!ok);
    assert_eq!(stdout, "");
    assert!(stderr.starts_with("error: ") && stderr.lines().count() == 1, "{stderr}");
}

/// A 255-character user name that is not ASCII (510 bytes): Casdoor's `varchar(255)` counts characters.
fn long_name() -> String {
    "ü".repeat(200) + &"名".repeat(55)
}

/// Users Casdoor keeps although this node cannot check their password, added to the fixtures: an unknown
/// scheme (`quentin`, in a group), an argon2 hash over the cost cap (`hugo`), an empty scheme in an
/// organization that has none (`nopass/kim`), and a user with a 255-character non-ASCII name.
fn add_users_without_a_usable_password(db: &CasdoorDb) {
    let (q, now) = (if db.kind == Kind::Postgres { "\"" } else { "`" }, "2026-01-01T00:00:00Z");
    let huge = "$argon2id$v=19$m=2097152,t=1,p=4$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM";
    db.sql(&format!(
        "INSERT INTO organization (owner, name, created_time, password_type) VALUES ('admin', 'nopass', '{now}', ''); \
         INSERT INTO {q}user{q} (owner, name, id, password, password_type, password_salt, {q}groups{q}, created_time) VALUES \
         ('acme', 'quentin', 'f0000000-0000-4000-8000-00000000000a', '2fd4e1c67a2d28fced849ee1bb76e7391b93eb12', 'sha1', 'x', '[\"acme/engineering\"]', '{now}'), \
         ('acme', 'hugo', 'f0000000-0000-4000-8000-00000000000b', '{huge}', 'argon2id', '', '[]', '{now}'), \
         ('nopass', 'kim', 'f0000000-0000-4000-8000-00000000000c', 'Kim-Plain-1', '', '', '[]', '{now}'), \
         ('acme', '{long}', 'f0000000-0000-4000-8000-00000000000d', 'Long-Name-1', 'plain', '', '[]', '{now}')",
        long = long_name(),
    ));
}

/// Users whose password cannot be checked are imported without one and reported (per user, with the
/// reason); an admin then sets a password (plaintext, hashed with the organization's scheme) and they sign
/// in. A 255-character non-ASCII name is imported whole and signs in.
async fn users_without_a_usable_password_are_imported(kind: Kind, tag: &str) {
    let db = CasdoorDb::create(kind, tag);
    add_users_without_a_usable_password(&db);
    let work = tempfile::tempdir().expect("tempdir");
    let node = Node::start().await;
    let args = into_args(&node);
    let r = import(&db, &strs(&args), work.path());
    assert!(r.ok, "import failed: {}\n{}", r.stdout, r.stderr);
    // Casdoor's built-in/admin is kept out: the node keeps its own administrator.
    assert_eq!(r.written("put_user"), 33, "30 fixture users and the 4 added, less built-in/admin: {}", r.stdout);
    let skipped = r.skipped();
    assert!(!skipped.iter().any(|(t, _, _)| t == "user"), "no user is skipped: {skipped:?}");
    let dropped: Vec<(String, String)> = r.report["passwordsDropped"]
        .as_array()
        .expect("passwordsDropped in the report")
        .iter()
        .map(|d| {
            (d["key"].as_str().unwrap_or_default().to_string(), d["reason"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let reason = |key: &str| dropped.iter().find(|(k, _)| k == key).map(|(_, r)| r.clone()).unwrap_or_default();
    assert!(reason("acme/quentin").contains("sha1"), "{dropped:?}");
    assert!(reason("acme/hugo").contains("over the cap"), "{dropped:?}");
    assert!(reason("nopass/kim").contains("not a password scheme"), "{dropped:?}");
    assert_eq!(dropped.len(), 3, "{dropped:?}");
    assert_eq!(r.report["passwordsDroppedCount"], 3);
    assert!(r.stdout.contains("imported without their password: 3"), "{}", r.stdout);

    // They exist: in lists, with their groups, and with no password.
    let (_, users) = node.admin_get("get-users?owner=acme").await;
    let names: Vec<&str> = users["data"].as_array().expect("users").iter().filter_map(|u| u["name"].as_str()).collect();
    assert!(names.contains(&"quentin") && names.contains(&"hugo"), "{names:?}");
    let (_, quentin) = node.admin_get("get-user?id=acme/quentin").await;
    assert_eq!(quentin["data"]["groups"], json!(["acme/engineering"]), "{quentin}");
    assert_eq!(quentin["data"]["password"], "", "no usable password: {quentin}");
    let (s, v) = login(&node, APP_ACME, "quentin", "The quick brown fox jumps over the lazy dog", "").await;
    assert_eq!(s, 400, "{v}");

    // An admin sets a password (what get-user shows, with a plaintext password): hashed with the
    // organization's scheme (acme: bcrypt), and it signs in; in an organization without a scheme, argon2id.
    for (id, scheme) in [("acme/quentin", "bcrypt"), ("nopass/kim", "argon2id")] {
        let (_, user) = node.admin_get(&format!("get-user?id={id}")).await;
        let mut u = user["data"].clone();
        u["password"] = json!("Set-By-Admin-1");
        let (s, v) = node.admin_post("update-user", u).await;
        assert_eq!(s, 200, "{id}: {v}");
        let (_, user) = node.admin_get(&format!("get-user?id={id}")).await;
        assert_eq!(user["data"]["passwordType"], scheme, "{user}");
    }
    let (s, v) = login(&node, APP_ACME, "quentin", "Set-By-Admin-1", "").await;
    assert_eq!(s, 200, "{v}");

    // The 255-character name: imported whole, found, and it signs in.
    let long = long_name();
    assert_eq!(long.chars().count(), 255);
    let id = format!("acme/{long}");
    let url = reqwest::Url::parse_with_params(&node.url("/api/get-user"), &[("id", id.as_str())]).expect("url");
    let r = node.http.get(url).basic_auth(ADMIN_CLIENT_ID, Some(ADMIN_CLIENT_SECRET)).send().await.expect("request");
    let (s, v) = harness::response(r).await;
    assert_eq!((s, v["data"]["name"].as_str()), (200, Some(long.as_str())), "{v}");
    let (s, v) = login(&node, APP_ACME, &long, "Long-Name-1", "").await;
    assert_eq!(s, 200, "{v}");

    // Again: the import is a sync, so the two users whose password the admin set are put back as Casdoor
    // has them; everything else is unchanged (and built-in/admin kept out again).
    let r = import(&db, &strs(&args), work.path());
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.written("put_user"), 2, "{}", r.stdout);
    assert_eq!(r.unchanged("put_user"), 31, "{}", r.stdout);
}

#[tokio::test]
async fn users_without_a_usable_password_are_imported_from_postgres() {
    users_without_a_usable_password_are_imported(Kind::Postgres, "pg_nopw").await;
}

#[tokio::test]
async fn users_without_a_usable_password_are_imported_from_mariadb() {
    users_without_a_usable_password_are_imported(Kind::MySql, "my_nopw").await;
}
