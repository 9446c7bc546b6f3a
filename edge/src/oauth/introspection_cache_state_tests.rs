//! The introspection cache never answers `active: true` for a token whose state changed: whatever the
//! token's lifetime, however many answers are cached, however many token strings share one `jti`.
//!
//! A real single-node state (sled + openraft in a temporary directory) with an [`Edge`] following its
//! changes, as a node runs it; tokens are minted here with the node's own keys.

use std::sync::Arc;

use crate::claims::{self, Subject, TokenFrame};
use crate::clock::now;
use crate::keys::{self, Alg, Kek, LoadedKey};
use crate::metrics::Metrics;
use crate::secrets::sha256;
use crate::service::ClientApp;
use crate::{Edge, EdgeConfig};
use jeton_raft::model::{Application, Organization, Revocation, User};
use jeton_raft::node::RaftSettings;
use jeton_raft::{Command, Outcome, PutMode, ReplicaNode};

const ISSUER: &str = "https://jeton.test";
const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const INACTIVE: &[u8] = br#"{"active":false}"#;
/// 200 hours: longer than any internal lifetime an index of the cache ever had (24 h).
const LIFETIME: i64 = 200 * 3600;

struct Node {
    edge: Arc<Edge>,
    app: Application,
    users: Vec<User>,
    caller: Arc<ClientApp>,
    _dir: tempfile::TempDir,
}

fn user(i: usize) -> User {
    User {
        owner: "acme".into(),
        name: format!("user{i}"),
        id: format!("00000000-0000-4000-8000-{i:012}"),
        display_name: format!("User {i}"),
        ..Default::default()
    }
}

/// A node with `users` users, an ES256 application and an introspection cache of `entries` entries.
async fn start(users: usize, entries: u64) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let kek = || Kek::from_hex(KEK).expect("kek");
    let node =
        ReplicaNode::start(&dir.path().join("data"), 1, "127.0.0.1:1", &RaftSettings::default(), Default::default())
            .await
            .expect("node");
    let key = keys::generate(Alg::ES256, "test-es256", "admin", &kek(), now()).expect("key");
    let users: Vec<User> = (0..users).map(user).collect();
    let app = Application {
        owner: "admin".into(),
        name: "app-test".into(),
        organization: "acme".into(),
        client_id: "test-client".into(),
        client_secret_digest: sha256(b"test-secret").to_vec(),
        grant_types: vec!["client_credentials".into(), "password".into()],
        token_format: "JWT-Standard".into(),
        cert: "test-es256".into(),
        expire_in_hours: 200.0,
        ..Default::default()
    };
    let mut commands = vec![
        Command::PutSigningKey { key, mode: PutMode::Create },
        Command::PutOrganization {
            org: Organization { name: "acme".into(), ..Default::default() },
            mode: PutMode::Create,
        },
    ];
    commands.extend(users.iter().map(|u| Command::PutUser { user: u.clone(), mode: PutMode::Create }));
    commands.push(Command::PutApplication { app: app.clone(), mode: PutMode::Create });
    let outcome = node.write(Command::Batch { commands }).await.expect("write").outcome;
    assert_eq!(outcome, Outcome::Applied);
    let config = EdgeConfig { issuer: ISSUER.into(), introspection_cache_entries: entries, ..Default::default() };
    let edge = Edge::new(node, kek(), config, Metrics::disabled()).expect("edge");
    edge.spawn_invalidation();
    let caller = edge.authenticate_client("test-client", "test-secret").expect("client");
    Node { edge, app, users, caller, _dir: dir }
}

impl Node {
    fn key(&self) -> Arc<LoadedKey> {
        self.edge.keyring.get("test-es256").expect("key")
    }

    /// An access token of user `i` with this `jti`, valid for [`LIFETIME`]. ES256 signatures are randomized:
    /// two calls give two different token strings for the same claims.
    fn token(&self, i: usize, jti: &str) -> String {
        let iat = now();
        let frame = TokenFrame {
            issuer: ISSUER,
            app: &self.app,
            scope: "openid",
            nonce: "",
            jti,
            iat,
            exp: iat + LIFETIME,
            token_type: claims::ACCESS,
        };
        let c = claims::build(&frame, &Subject { user: Some(&self.users[i]), roles: &[] });
        let key = self.key();
        key.sign(&key.access_header, &serde_json::to_vec(&c).expect("json")).expect("sign")
    }

    fn active(&self, token: &str) -> bool {
        let answer = self.edge.introspect(&self.caller, token).expect("introspect");
        if answer.as_ref() == INACTIVE {
            return false;
        }
        assert!(answer.starts_with(br#"{"active":true"#), "{answer:?}");
        true
    }

    async fn write(&self, cmd: Command) {
        assert_eq!(self.edge.write(cmd).await.expect("write"), Outcome::Applied);
    }
}

/// Two token strings with the same `jti` (an ECDSA token re-signed, or its signature's `s` replaced by
/// `n - s`: both verify) are both cached; revoking the `jti` must make both inactive. An index that maps a
/// `jti` to one cached answer forgets the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_jti_drops_every_cached_token_string_with_it() {
    let node = start(1, 1000).await;
    let jti = "admin/11111111-1111-4111-8111-111111111111";
    let (first, second) = (node.token(0, jti), node.token(0, jti));
    assert_ne!(first, second, "ES256 signatures are randomized");
    assert!(node.active(&first) && node.active(&second));
    assert!(node.active(&first) && node.active(&second), "answered from the cache");
    node.write(Command::Revoke {
        revocation: Revocation { jti: jti.into(), expires_at: now() + LIFETIME, revoked_at: now() },
    })
    .await;
    assert!(!node.active(&second), "the last cached string of the jti");
    assert!(!node.active(&first), "the first cached string of the jti");
}

/// A user record given another id: the tokens of the old id (their `sub`) belong to no one any more, and
/// their cached answers must go with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_given_a_new_id_loses_the_answers_of_the_old_one() {
    let node = start(1, 1000).await;
    let token = node.token(0, "admin/22222222-2222-4222-8222-222222222222");
    assert!(node.active(&token) && node.active(&token));
    let renumbered = User { id: "00000000-0000-4000-8000-999999999999".into(), ..node.users[0].clone() };
    node.write(Command::PutUser { user: renumbered, mode: PutMode::Update }).await;
    assert!(!node.active(&token), "the token's sub is the old id, which no user has now");
}

/// More users than the cache has entries: the index that finds a user's cached answers must never lose a
/// user whose answers are still cached (an index with a capacity of its own, evicting on its own terms,
/// does). Every user is then forbidden: no answer of theirs may stay active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_change_reaches_every_cached_answer_however_full_the_cache_is() {
    const ENTRIES: usize = 200;
    let node = start(4 * ENTRIES, ENTRIES as u64).await;
    let tokens: Vec<String> = (0..4 * ENTRIES).map(|i| node.token(i, &format!("admin/jti-{i}"))).collect();
    // The first users' answers are cached and become popular; then the other users' tokens are asked for
    // again and again, so that the cache and anything indexing it have to choose what to keep.
    for _ in 0..5 {
        for t in &tokens[..ENTRIES] {
            assert!(node.active(t));
        }
    }
    for round in 0..8 {
        for t in &tokens[ENTRIES..] {
            assert!(node.active(t), "round {round}");
        }
    }
    for u in &node.users {
        let forbidden = User { is_forbidden: true, ..u.clone() };
        node.write(Command::PutUser { user: forbidden, mode: PutMode::Update }).await;
    }
    let still_active: Vec<usize> = (0..tokens.len()).filter(|&i| node.active(&tokens[i])).collect();
    assert!(still_active.is_empty(), "forbidden users' tokens still active: {still_active:?}");
}
