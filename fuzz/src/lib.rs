//! What the fuzz targets share: a real single-node Jeton state (sled + openraft in a temporary directory)
//! with an [`Edge`] on it, signing keys of every algorithm, the organizations, users and applications the
//! tokens name; and the splitting of a fuzz input into fields.
//!
//! The keys come from `keys.json` (written once by `examples/seeds.rs`, sealed with [`KEK`]), so the tokens
//! of the seed corpus verify in every fuzzing process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use jeton_edge::clock::now;
use jeton_edge::keys::{self, Alg, Kek, KeyImport, LoadedKey};
use jeton_edge::metrics::Metrics;
use jeton_edge::secrets::sha256;
use jeton_edge::service::ClientApp;
use jeton_edge::{Edge, EdgeConfig};
use jeton_raft::model::{
    AcceptedAlgorithms, AcceptedIssuer, Application, Group, Organization, Revocation, Role, SigningKey, User,
};
use jeton_raft::node::RaftSettings;
use jeton_raft::{Command, Outcome, PutMode, ReplicaNode};

/// The key-encryption key the keys of `keys.json` are sealed with (test keys: they sign nothing real).
pub const KEK: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
/// The issuer of the fixture's node.
pub const ISSUER: &str = "https://jeton.fuzz";
/// An issuer whose tokens one application accepts (tokens signed before an import).
pub const FOREIGN_ISSUER: &str = "https://casdoor.example";
/// A revoked `jti`.
pub const REVOKED_JTI: &str = "admin/00000000-0000-4000-8000-00000000dead";
/// Token lifetime of the fixture's applications: the seed tokens stay valid for decades.
const EXPIRE_IN_HOURS: f64 = 24.0 * 365.0 * 50.0;

pub fn kek() -> Kek {
    Kek::from_hex(KEK).expect("kek")
}

/// The fuzz crate's folder.
pub fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture file of the tests (`tests/fixtures/...`).
pub fn test_fixture(path: &str) -> String {
    let p = fuzz_dir().join("../tests/fixtures").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The keys of the fixture, one per algorithm: `(kid, algorithm, where the key comes from)`. Generated
/// keys for the algorithms Jeton generates; Casdoor's fixture certificates (imported) for the others.
const KEYS: &[(&str, Alg, Option<&str>)] = &[
    ("gen-eddsa", Alg::EdDSA, None),
    ("gen-es256", Alg::ES256, None),
    ("gen-rs256", Alg::RS256, None),
    ("imp-es384", Alg::ES384, Some("cert-globex-es384")),
    ("imp-es512", Alg::ES512, Some("cert-globex-es512")),
    ("imp-rs384", Alg::RS384, Some("cert-built-in")),
    ("imp-rs512", Alg::RS512, Some("cert-acme-rs512")),
    ("imp-ps256", Alg::PS256, Some("cert-built-in")),
    ("imp-ps384", Alg::PS384, Some("cert-acme-rs512")),
    ("imp-ps512", Alg::PS512, Some("cert-built-in")),
];

/// Algorithms the imported RS512 key also accepts (its applications signed with them elsewhere).
const RS512_ALSO: [&str; 2] = ["RS256", "PS256"];

/// The fixture's stored signing keys: from `keys.json`, or made (and written there) when it is missing.
pub fn signing_keys() -> Vec<SigningKey> {
    let path = fuzz_dir().join("keys.json");
    if let Ok(json) = std::fs::read(&path) {
        return serde_json::from_slice(&json).expect("keys.json");
    }
    let kek = kek();
    let created = 1_700_000_000;
    let made: Vec<SigningKey> = KEYS
        .iter()
        .map(|(kid, alg, cert)| match cert {
            None => keys::generate(*alg, kid, "admin", &kek, created).expect("generate"),
            Some(cert) => {
                let k = KeyImport {
                    kid: kid.to_string(),
                    owner: "admin".into(),
                    display_name: kid.to_string(),
                    algorithm: alg.as_str().into(),
                    created_at: created,
                    certificate: test_fixture(&format!("casdoor/keys/{cert}.pem")),
                    private_key: test_fixture(&format!("casdoor/keys/{cert}.key")),
                    accepted_algorithms: Vec::new(),
                };
                keys::import_pem(&k, &kek).expect("import")
            }
        })
        .collect();
    std::fs::write(&path, serde_json::to_vec_pretty(&made).expect("json")).expect("write keys.json");
    made
}

/// The client id and secret of the application that signs with key `kid`.
pub fn client_of(kid: &str) -> (String, String) {
    (format!("client-{kid}"), format!("secret-{kid}-0123456789"))
}

/// A user of the fixture: `(owner, name, password)`; passwords are stored with the cheap `salt` scheme.
pub const USERS: &[(&str, &str, &str)] =
    &[("built-in", "admin", "admin-password"), ("acme", "alice", "Alice#2024!"), ("globex", "hans", "Hans-Own-Salt-1")];

fn user(i: usize) -> User {
    let (owner, name, password) = USERS[i];
    let salt = format!("salt-of-{name}");
    User {
        owner: owner.into(),
        name: name.into(),
        id: format!("00000000-0000-4000-8000-{i:012}"),
        display_name: format!("User {name}"),
        email: format!("{name}@{owner}.example"),
        password: jeton_edge::password::hash(jeton_edge::password::Scheme::Salt, password, &salt).expect("hash"),
        password_type: "salt".into(),
        password_salt: salt,
        ..Default::default()
    }
}

/// The state every fuzzing process starts from.
pub fn commands() -> Vec<Command> {
    let mut commands: Vec<Command> =
        signing_keys().into_iter().map(|key| Command::PutSigningKey { key, mode: PutMode::Create }).collect();
    commands.push(Command::PutAcceptedAlgorithms {
        accepted: AcceptedAlgorithms {
            kid: "imp-rs512".into(),
            algorithms: RS512_ALSO.iter().map(|a| a.to_string()).collect(),
        },
        mode: PutMode::Create,
    });
    for (name, password_type, salt) in
        [("built-in", "argon2id", ""), ("acme", "bcrypt", ""), ("globex", "sha512-salt", "gl0b3xSalt2024")]
    {
        commands.push(Command::PutOrganization {
            org: Organization {
                name: name.into(),
                display_name: name.into(),
                password_type: password_type.into(),
                password_salt: salt.into(),
                ..Default::default()
            },
            mode: PutMode::Create,
        });
    }
    commands.extend((0..USERS.len()).map(|i| Command::PutUser { user: user(i), mode: PutMode::Create }));
    let formats = ["JWT", "JWT-Empty", "JWT-Standard", "JWT-Custom"];
    for (i, (kid, _, _)) in KEYS.iter().enumerate() {
        let (client_id, secret) = client_of(kid);
        commands.push(Command::PutApplication {
            app: Application {
                owner: "admin".into(),
                name: format!("app-{kid}"),
                display_name: format!("Application {kid}"),
                organization: if i % 2 == 0 { "acme" } else { "globex" }.into(),
                client_id,
                client_secret_digest: sha256(secret.as_bytes()).to_vec(),
                grant_types: vec!["client_credentials".into(), "password".into(), "refresh_token".into()],
                scopes: if i == 3 { vec!["openid".into(), "profile".into(), "email".into()] } else { Vec::new() },
                token_format: formats[i % formats.len()].into(),
                token_fields: if i == 7 { vec!["email".into(), "displayName".into()] } else { Vec::new() },
                cert: kid.to_string(),
                expire_in_hours: EXPIRE_IN_HOURS,
                refresh_expire_in_hours: EXPIRE_IN_HOURS,
                ..Default::default()
            },
            mode: PutMode::Create,
        });
    }
    // The administration application (in the admin organization).
    let (client_id, secret) = client_of("admin");
    commands.push(Command::PutApplication {
        app: Application {
            owner: "admin".into(),
            name: "app-built-in".into(),
            organization: "built-in".into(),
            client_id,
            client_secret_digest: sha256(secret.as_bytes()).to_vec(),
            grant_types: vec!["client_credentials".into(), "password".into()],
            token_format: "JWT".into(),
            cert: "gen-rs256".into(),
            expire_in_hours: EXPIRE_IN_HOURS,
            ..Default::default()
        },
        mode: PutMode::Create,
    });
    commands.push(Command::PutAcceptedIssuer {
        accepted: AcceptedIssuer {
            application: "app-gen-eddsa".into(),
            issuer: FOREIGN_ISSUER.into(),
            source: "casdoor".into(),
        },
        mode: PutMode::Create,
    });
    commands.push(Command::PutRole {
        role: Role {
            owner: "acme".into(),
            name: "staff".into(),
            users: vec!["acme/alice".into()],
            is_enabled: true,
            ..Default::default()
        },
        mode: PutMode::Create,
    });
    commands.push(Command::PutGroup {
        group: Group { owner: "acme".into(), name: "engineering".into(), is_enabled: true, ..Default::default() },
        mode: PutMode::Create,
    });
    commands.push(Command::Revoke {
        revocation: Revocation { jti: REVOKED_JTI.into(), expires_at: now() + 100 * 365 * 86400, revoked_at: now() },
    });
    commands
}

/// A running node with the fixture's state and an edge on it.
pub struct Fixture {
    /// Runs the node's Raft tasks; async calls are driven with `block_on`.
    pub runtime: tokio::runtime::Runtime,
    pub edge: Arc<Edge>,
    /// Every loaded key, in the order of [`KEYS`].
    pub keys: Vec<Arc<LoadedKey>>,
    /// The administration application (introspects every token).
    pub admin_client: Arc<ClientApp>,
    /// The node's data directory.
    pub dir: PathBuf,
}

/// The temporary directory of this process; those of processes that are gone are removed.
fn scratch_dir() -> PathBuf {
    let base = std::env::temp_dir().join("jeton-fuzz");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let gone = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists());
            if gone {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

impl Fixture {
    /// Starts a node with [`commands`] applied.
    pub fn start() -> Fixture {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let dir = scratch_dir().join("data");
        let edge = runtime.block_on(async {
            let node = ReplicaNode::start(&dir, 1, "127.0.0.1:1", &RaftSettings::default(), Default::default())
                .await
                .expect("node");
            let outcome = node.write(Command::Batch { commands: commands() }).await.expect("write").outcome;
            assert_eq!(outcome, Outcome::Applied);
            let config = EdgeConfig { issuer: ISSUER.into(), introspection_cache_entries: 4096, ..Default::default() };
            Edge::new(node, kek(), config, Metrics::disabled()).expect("edge")
        });
        let keys = KEYS.iter().map(|(kid, _, _)| edge.keyring.get(kid).expect("key loaded")).collect();
        let (id, secret) = client_of("admin");
        let admin_client = edge.authenticate_client(&id, &secret).expect("admin client");
        Fixture { runtime, edge, keys, admin_client, dir }
    }
}

/// The fixture of this process, started on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(Fixture::start)
}

/// The fields of a fuzz input: its bytes split at each 0xFF (a byte no UTF-8 text has).
pub fn fields(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == 0xFF).collect()
}

/// Field `i` as text (lossy: invalid UTF-8 becomes U+FFFD), empty when missing.
pub fn text(fields: &[&[u8]], i: usize) -> String {
    fields.get(i).map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default()
}

/// Joins fields into one fuzz input (the seeds).
pub fn join(fields: &[&[u8]]) -> Vec<u8> {
    fields.join(&0xFFu8)
}
