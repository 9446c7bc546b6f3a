//! Shared set-up of the benches: a real single-node Jeton state (sled + openraft) in a temporary
//! directory, with an organization, a user, an EdDSA application and one key per algorithm.

use std::collections::HashMap;
use std::sync::Arc;

use jeton_edge::keys::{self, Alg, Kek, LoadedKey};
use jeton_edge::metrics::Metrics;
use jeton_edge::oauth::ClientAuth;
use jeton_edge::service::sha256;
use jeton_edge::{Edge, EdgeConfig};
use jeton_raft::model::{Application, Organization, User};
use jeton_raft::node::RaftSettings;
use jeton_raft::{Command, Outcome, PutMode, ReplicaNode};

/// A node with data to measure against.
pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub edge: Arc<Edge>,
    pub app: Application,
    pub client_id: String,
    pub client_secret: String,
    kids: HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
}

const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

impl Fixture {
    pub fn new() -> Fixture {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let kek = || Kek::from_hex(KEK).expect("kek");
        let (edge, app, kids) = runtime.block_on(async {
            let node = ReplicaNode::start(&dir.path().join("data"), 1, "127.0.0.1:1", &RaftSettings::default())
                .await
                .expect("node");
            let mut commands = Vec::new();
            let mut kids = HashMap::new();
            for alg in Alg::GENERATED {
                let kid = format!("bench-{}", alg.as_str().to_lowercase());
                let key = keys::generate(alg, &kid, "admin", &kek(), 1).expect("key");
                commands.push(Command::PutSigningKey { key, mode: PutMode::Create });
                kids.insert(alg.as_str(), kid);
            }
            commands.push(Command::PutOrganization {
                org: Organization { name: "bench".into(), password_type: "argon2id".into(), ..Default::default() },
                mode: PutMode::Create,
            });
            commands.push(Command::PutUser { user: Fixture::sample_user(), mode: PutMode::Create });
            let app = Application {
                owner: "admin".into(),
                name: "app-bench".into(),
                organization: "bench".into(),
                client_id: "bench-client".into(),
                client_secret_digest: sha256(b"bench-secret-0123456789").to_vec(),
                grant_types: vec!["client_credentials".into(), "password".into(), "refresh_token".into()],
                token_format: "JWT-Standard".into(),
                cert: kids["EdDSA"].clone(),
                expire_in_hours: 1.0,
                ..Default::default()
            };
            commands.push(Command::PutApplication { app: app.clone(), mode: PutMode::Create });
            let outcome = node.write(Command::Batch { commands }).await.expect("write").outcome;
            assert_eq!(outcome, Outcome::Applied);
            let config = EdgeConfig { issuer: "https://jeton.bench".into(), ..Default::default() };
            let edge = Edge::new(node, kek(), config, Metrics::disabled()).expect("edge");
            (edge, app, kids)
        });
        Fixture {
            runtime,
            edge,
            app,
            client_id: "bench-client".into(),
            client_secret: "bench-secret-0123456789".into(),
            kids,
            _dir: dir,
        }
    }

    /// A realistic user.
    pub fn sample_user() -> User {
        let mut u = User {
            owner: "bench".into(),
            name: "alice".into(),
            id: "0b6a1b7e-7c1d-4a53-9d5c-2f7f8e9a1b2c".into(),
            created_time: "2026-11-20T08:00:00Z".into(),
            r#type: "normal-user".into(),
            password:
                "$argon2id$v=19$m=65536,t=1,p=2$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM"
                    .into(),
            password_type: "argon2id".into(),
            display_name: "Alice Johnson".into(),
            first_name: "Alice".into(),
            last_name: "Johnson".into(),
            avatar: "https://cdn.example.com/a/alice.png".into(),
            email: "alice@acme.example".into(),
            email_verified: true,
            phone: "5550100".into(),
            country_code: "US".into(),
            groups: vec!["bench/engineering".into(), "bench/platform".into()],
            ..Default::default()
        };
        u.properties.insert("department".into(), "platform".into());
        u
    }

    pub fn user(&self) -> User {
        Fixture::sample_user()
    }

    pub fn key(&self, alg: Alg) -> Arc<LoadedKey> {
        self.edge.keyring.get(&self.kids[alg.as_str()]).expect("key loaded")
    }

    /// One client_credentials grant through the token service; returns the access token.
    pub fn client_credentials(&self) -> String {
        let params: jeton_edge::oauth::Params = [("grant_type", "client_credentials")].into_iter().collect();
        let auth = ClientAuth { basic: Some((self.client_id.clone(), self.client_secret.clone())) };
        self.runtime.block_on(self.edge.token(&params, &auth, None)).expect("token").access_token
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}
