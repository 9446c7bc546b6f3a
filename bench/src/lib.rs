//! Shared set-up of the benches: a real single-node Jeton state (sled + openraft) in a temporary
//! directory, with an organization, [`USERS`] realistic users, an EdDSA application and one key per
//! algorithm.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jeton_edge::builtin::{self, BuiltIn};
use jeton_edge::claims::{self, Subject, TokenFrame};
use jeton_edge::clock::now;
use jeton_edge::keys::{self, Alg, Kek, LoadedKey};
use jeton_edge::metrics::Metrics;
use jeton_edge::oauth::{ClientAuth, Params};
use jeton_edge::passwords::schemes::{self, Scheme};
use jeton_edge::secrets::sha256;
use jeton_edge::{Edge, EdgeConfig};
use jeton_raft::model::{Application, Organization, User};
use jeton_raft::node::RaftSettings;
use jeton_raft::{Command, Outcome, PutMode, ReplicaNode};

/// Issuer of every bench token (the edge only accepts tokens of its own issuer).
pub const ISSUER: &str = "https://jeton.bench";
pub const ORG: &str = "bench";
pub const CLIENT_ID: &str = "bench-client";
pub const CLIENT_SECRET: &str = "bench-secret-0123456789";
/// Users in the fixture. User tokens rotate over them, so that no user piles up more live tokens than a
/// real one would (the edge keeps a per-user index of cached introspection answers, capped per user).
pub const USERS: u64 = 2000;

/// An argon2id hash in the PHC format Casdoor stores. Nothing signs in during the benches, so it only has to
/// look (and weigh) like a real one.
pub const PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM";

/// A node with data to measure against.
pub struct Fixture {
    /// Runs the node's Raft tasks; the async service calls are driven with `block_on`.
    pub runtime: tokio::runtime::Runtime,
    pub edge: Arc<Edge>,
    pub app: Application,
    /// The fixture's users; `users[0]` is the one the `record` benches read.
    pub users: Vec<User>,
    kids: HashMap<&'static str, String>,
    /// Makes every minted user token distinct (a distinct `jti`, so a distinct introspection cache key).
    serial: AtomicU64,
    _dir: tempfile::TempDir,
}

/// A fixed key-encryption key: the keys are generated per run anyway.
const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

impl Fixture {
    pub fn new() -> Fixture {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let kek = || Kek::from_hex(KEK).expect("kek");
        let users: Vec<User> = (0..USERS).map(sample_user).collect();
        let (edge, app, kids) = runtime.block_on(async {
            let node = ReplicaNode::start(
                &dir.path().join("data"),
                1,
                "127.0.0.1:1",
                &RaftSettings::default(),
                Default::default(),
            )
            .await
            .expect("node");
            let mut commands = Vec::new();
            let mut kids = HashMap::new();
            for alg in Alg::GENERATED {
                let kid = format!("bench-{}", alg.as_str().to_lowercase());
                let key = keys::generate(alg, &kid, "admin", &kek(), now()).expect("key");
                commands.push(Command::PutSigningKey { key, mode: PutMode::Create });
                kids.insert(alg.as_str(), kid);
            }
            commands.push(Command::PutOrganization {
                org: Organization {
                    name: ORG.into(),
                    display_name: "Bench Inc.".into(),
                    password_type: "argon2id".into(),
                    ..Default::default()
                },
                mode: PutMode::Create,
            });
            commands.extend(users.iter().map(|u| Command::PutUser { user: u.clone(), mode: PutMode::Create }));
            let app = Application {
                owner: "admin".into(),
                name: "app-bench".into(),
                display_name: "Bench application".into(),
                organization: ORG.into(),
                client_id: CLIENT_ID.into(),
                client_secret_digest: sha256(CLIENT_SECRET.as_bytes()).to_vec(),
                redirect_uris: vec!["https://app.bench.example/callback".into()],
                grant_types: vec!["client_credentials".into(), "password".into(), "refresh_token".into()],
                token_format: "JWT-Standard".into(),
                cert: kids["EdDSA"].clone(),
                expire_in_hours: 1.0,
                ..Default::default()
            };
            commands.push(Command::PutApplication { app: app.clone(), mode: PutMode::Create });
            let outcome = node.write(Command::Batch { commands }).await.expect("write").outcome;
            assert_eq!(outcome, Outcome::Applied);
            let config = EdgeConfig { issuer: ISSUER.into(), ..Default::default() };
            let edge = Edge::new(node, kek(), config, Metrics::disabled()).expect("edge");
            (edge, app, kids)
        });
        Fixture { runtime, edge, app, users, kids, serial: AtomicU64::new(0), _dir: dir }
    }

    /// The loaded signing key of an algorithm.
    pub fn key(&self, alg: Alg) -> Arc<LoadedKey> {
        self.edge.keyring.get(&self.kids[alg.as_str()]).expect("key loaded")
    }

    /// The claims JSON of a user's access token as the password grant mints it (`JWT-Standard`, scope
    /// `openid profile email`), with a distinct `jti`, for the next user in turn.
    pub fn user_claims_json(&self) -> Vec<u8> {
        let n = self.serial.load(Ordering::Relaxed);
        self.user_claims_json_of((n % USERS) as usize)
    }

    /// The same for user `users[i]`.
    pub fn user_claims_json_of(&self, i: usize) -> Vec<u8> {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let jti = format!("admin/00000000-0000-4000-8000-{n:012}");
        let iat = now();
        let frame = TokenFrame {
            issuer: ISSUER,
            app: &self.app,
            scope: "openid profile email",
            nonce: "",
            jti: &jti,
            iat,
            exp: iat + 3600,
            token_type: claims::ACCESS,
        };
        let c = claims::build(&frame, &Subject { user: Some(&self.users[i]), roles: &[] });
        serde_json::to_vec(&c).expect("json")
    }

    /// A fresh access token of the next user in turn, signed with `alg`'s key.
    pub fn user_token(&self, alg: Alg) -> String {
        let key = self.key(alg);
        key.sign(&key.access_header, &self.user_claims_json()).expect("sign")
    }

    /// A fresh access token of user `users[i]`, signed with `alg`'s key.
    pub fn user_token_of(&self, alg: Alg, i: usize) -> String {
        let key = self.key(alg);
        key.sign(&key.access_header, &self.user_claims_json_of(i)).expect("sign")
    }

    /// One client_credentials grant through the token service; returns the access token (a fresh `jti`
    /// every time).
    pub fn client_credentials(&self) -> String {
        let params: Params = [("grant_type", "client_credentials")].into_iter().collect();
        let auth = ClientAuth { basic: Some((CLIENT_ID.into(), CLIENT_SECRET.into())), ..Default::default() };
        self.runtime.block_on(self.edge.token(&params, &auth, None)).expect("token").access_token
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

/// A realistic user of organization [`ORG`]: the fields a Casdoor import fills in, an argon2id hash,
/// two groups and a custom property. `i` makes name, id and email unique.
pub fn sample_user(i: u64) -> User {
    let (first, last) = FIRST_LAST[(i % FIRST_LAST.len() as u64) as usize];
    let name = format!("{}.{}{i}", first.to_lowercase(), last.to_lowercase());
    let mut u = User {
        owner: ORG.into(),
        id: format!("0b6a1b7e-7c1d-4a53-9d5c-{i:012x}"),
        created_time: "2026-11-20T08:00:00Z".into(),
        updated_time: "2026-11-21T09:30:00Z".into(),
        r#type: "normal-user".into(),
        password: PASSWORD_HASH.into(),
        password_type: "argon2id".into(),
        display_name: format!("{first} {last}"),
        first_name: first.into(),
        last_name: last.into(),
        avatar: format!("https://cdn.bench.example/avatars/{name}.png"),
        email: format!("{name}@bench.example"),
        email_verified: true,
        phone: format!("555{:07}", i % 10_000_000),
        country_code: "US".into(),
        region: "CA".into(),
        language: "en".into(),
        title: "Engineer".into(),
        affiliation: "Platform".into(),
        signup_application: "app-bench".into(),
        groups: vec![format!("{ORG}/engineering"), format!("{ORG}/platform")],
        name,
        ..Default::default()
    };
    u.properties.insert("department".into(), "platform".into());
    u.properties.insert("employeeNumber".into(), format!("E{i:07}"));
    u
}

const FIRST_LAST: [(&str, &str); 8] = [
    ("Alice", "Johnson"),
    ("Bob", "Smith"),
    ("Chloé", "Martin"),
    ("Dmitri", "Ivanov"),
    ("Emeka", "Okafor"),
    ("Fatima", "Haddad"),
    ("Grace", "Lee"),
    ("Hiro", "Tanaka"),
];

/// VmRSS and VmHWM of a process (this one without a pid), in KiB.
pub fn memory_kib(pid: Option<u32>) -> (u64, u64) {
    let path = pid.map(|p| format!("/proc/{p}/status")).unwrap_or_else(|| "/proc/self/status".into());
    let status = std::fs::read_to_string(path).unwrap_or_default();
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

/// `jeton serve`'s default names of the organization and application that hold the administrators
/// (`security.admin_org`, `security.admin_app`): with that organization present, the binary's first-start
/// bootstrap leaves a populated data dir alone.
pub const ADMIN_ORG: &str = "built-in";
pub const ADMIN_APP: &str = "app-built-in";

/// What `jeton serve` creates on first start (the same builder), with fixed credentials for the admin
/// application. The admin user's password is not a hash of anything known: nobody signs in as them.
pub fn built_in_commands(kek: &Kek, client_id: &str, client_secret: &str) -> Result<Vec<Command>, String> {
    builtin::commands(
        kek,
        BuiltIn {
            admin_org: ADMIN_ORG,
            admin_app: ADMIN_APP,
            client_id,
            client_secret,
            password_hash: PASSWORD_HASH.into(),
            password_salt: String::new(),
            admin_user_id: "00000000-0000-4000-8000-00000000ad01".into(),
            created: "2026-11-20T08:00:00Z".into(),
            now: now(),
            kid_suffix: "bench",
        },
    )
    .map_err(|e| e.to_string())
}

/// Writes one command through Raft and waits until it is applied; a refusal is an error.
pub async fn apply(node: &ReplicaNode, cmd: Command) -> Result<(), String> {
    match node.write(cmd).await.map_err(|e| format!("write: {e}"))?.outcome {
        Outcome::Applied => Ok(()),
        other => Err(format!("the state machine refused a batch: {other:?}")),
    }
}

/// Writes `count` users made by `user(i)` (`i` in `0..count`) in batches of `batch`, as an import does,
/// reporting progress on stderr every 5 s. The first user `user` fails to make is the error.
pub async fn write_users(
    node: &ReplicaNode,
    count: u64,
    batch: u64,
    user: impl Fn(u64) -> Result<User, String>,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut last_report = started;
    let mut written = 0u64;
    while written < count {
        let end = (written + batch.max(1)).min(count);
        let commands = (written..end)
            .map(|i| Ok(Command::PutUser { user: user(i)?, mode: PutMode::Create }))
            .collect::<Result<_, String>>()?;
        apply(node, Command::Batch { commands }).await?;
        written = end;
        if last_report.elapsed() >= std::time::Duration::from_secs(5) || written == count {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "populate: {written}/{count} users ({:.0} %), {secs:.1} s, {:.0} users/s",
                100.0 * written as f64 / count as f64,
                written as f64 / secs
            );
            last_report = std::time::Instant::now();
        }
    }
    Ok(())
}

/// One organization of a directory data set (`ldapdata`, `radiusdata`): its name, the scheme its users'
/// passwords are stored in, how many users it has (`user1`… / `secret1`…, the number zero-padded to
/// `digits`).
pub struct BenchOrg {
    pub name: &'static str,
    pub scheme: Scheme,
    pub users: u64,
    pub digits: usize,
}

/// A user that every organization of a data set gets besides the numbered ones: name, password,
/// organization administrator or not.
pub struct ExtraUser {
    pub name: &'static str,
    pub password: &'static str,
    pub is_admin: bool,
}

/// Writes a new data dir that `jeton serve` serves as is: what its first start writes (built-in
/// organization, application and keys), then each organization of `orgs` with its `extra` users and its
/// numbered users, in batches of `batch`. `tool` names the caller in the organizations' display names and
/// in errors. Fails if `dir` already holds a node.
pub fn populate_orgs(dir: &Path, tool: &str, orgs: &[BenchOrg], extra: &[ExtraUser], batch: u64) -> Result<(), String> {
    if dir.join("db").exists() || dir.join("identity.json").exists() {
        return Err(format!("{} already holds a node; {tool} needs a new data dir", dir.display()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let node = ReplicaNode::start(dir, 1, "127.0.0.1:7001", &RaftSettings::default(), Default::default())
            .await
            .map_err(|e| format!("starting the node: {e}"))?;
        // The file `jeton serve` reads the key-encryption key from, so the binary can open the keys.
        let kek = Kek::load_or_create(&dir.join("kek")).map_err(|e| e.to_string())?;
        let mut commands =
            built_in_commands(&kek, &format!("{tool}-admin"), &format!("{tool}-admin-secret-0123456789"))?;
        for (n, org) in orgs.iter().enumerate() {
            commands.push(Command::PutOrganization {
                org: Organization {
                    name: org.name.into(),
                    display_name: format!("{tool} organization {}", org.name),
                    created_time: "2026-11-20T08:00:00Z".into(),
                    password_type: org.scheme.as_str().into(),
                    ..Default::default()
                },
                mode: PutMode::Create,
            });
            // Numbered past the users, so their ids are their own.
            for (k, extra) in extra.iter().enumerate() {
                let mut u = bench_org_user(org, n, org.users + k as u64, extra.name, extra.password)?;
                u.is_admin = extra.is_admin;
                commands.push(Command::PutUser { user: u, mode: PutMode::Create });
            }
        }
        apply(&node, Command::Batch { commands }).await?;
        for (n, org) in orgs.iter().enumerate() {
            eprintln!("populate: organization {} ({} users, {})", org.name, org.users, org.scheme.as_str());
            write_users(&node, org.users, batch, |i| {
                let k = i + 1;
                let name = format!("user{k:0width$}", width = org.digits);
                bench_org_user(org, n, i, &name, &format!("secret{k:0width$}", width = org.digits))
            })
            .await?;
        }
        node.shutdown().await;
        Ok::<(), String>(())
    })?;
    eprintln!("{tool}: done: {}", dir.display());
    Ok(())
}

/// User number `i` of organization number `n` of a data set: [`sample_user`] with this name, the password
/// hashed in the organization's scheme (a fresh salt each where the scheme keeps it apart), one group.
pub fn bench_org_user(org: &BenchOrg, n: usize, i: u64, name: &str, password: &str) -> Result<User, String> {
    let mut u = sample_user(i);
    let salt =
        if org.scheme.salt_inside() || org.scheme == Scheme::Plain { String::new() } else { schemes::new_salt() };
    u.owner = org.name.into();
    u.name = name.into();
    u.id = format!("0b6a1b7e-7c1d-4a53-{:04x}-{i:012x}", n + 1);
    u.email = format!("{name}@{}.bench.example", org.name);
    u.password_type = org.scheme.as_str().into();
    u.password = schemes::hash(org.scheme, password, &salt).map_err(|e| e.to_string())?;
    u.password_salt = salt;
    u.signup_application = String::new();
    u.groups = vec![format!("{}/engineering", org.name)];
    Ok(u)
}

/// The value after `--name` among a command line's arguments.
pub fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// The value after `--name` as a number of at least 1; `default` when the flag is absent.
pub fn count_arg(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match arg_value(args, name).map(|v| v.parse::<u64>()) {
        None => Ok(default),
        Some(Ok(n)) if n > 0 => Ok(n),
        Some(_) => Err(format!("{name} must be a number of at least 1")),
    }
}
