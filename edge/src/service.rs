//! [`Edge`]: the services behind the HTTP front end, with their caches.
//!
//! Reads come from this node's state (zero-copy records) behind moka caches; writes go through Raft. A task
//! follows the state machine's applied changes and drops what they made stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jeton_raft::model::{Application, Role, User};
use jeton_raft::{Change, Command, Outcome, ReplicaNode, Store};
use moka::sync::Cache;
use subtle::ConstantTimeEq;

use crate::error::{EdgeError, OAuthError};
use crate::keys::{Kek, Keyring};
use crate::oauth::introspection_cache::{CachedToken, IntrospectionCache};
use crate::secrets::{sha256, DigestKey, TokenDigest};

/// Settings of the edge services.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// `iss` of every token; also accepted when verifying.
    pub issuer: String,
    /// Organization whose users are global administrators (Casdoor: `built-in`).
    pub admin_org: String,
    /// The built-in administration application (Casdoor: `app-built-in`).
    pub admin_app: String,
    /// Most bytes a request body may have.
    pub max_body_bytes: usize,
    /// Entries in the introspection cache.
    pub introspection_cache_entries: u64,
    /// Password checks: slots, memory budget, timing floor, per-address limit.
    pub passwords: crate::passwords::PasswordConfig,
    /// Browser sessions: lifetime, idle timeout, cookie security.
    pub sessions: crate::sessions::SessionSettings,
    /// The device flow: how long codes last, how often devices may poll.
    pub device: crate::oauth::device::DeviceSettings,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            issuer: "http://127.0.0.1:8000".into(),
            admin_org: "built-in".into(),
            admin_app: "app-built-in".into(),
            max_body_bytes: 64 * 1024,
            introspection_cache_entries: 1_000_000,
            passwords: Default::default(),
            sessions: Default::default(),
            device: Default::default(),
        }
    }
}

/// An application as the hot paths use it: decoded once, cached by client id.
pub struct ClientApp {
    pub app: Application,
    pub is_admin_app: bool,
}

/// The edge services of one node.
pub struct Edge {
    pub node: ReplicaNode,
    pub store: Store,
    /// Shared with the password service, which seals NT-hash credentials with it.
    pub kek: Arc<Kek>,
    pub keyring: Keyring,
    pub config: EdgeConfig,
    apps: Cache<String, Arc<ClientApp>>,
    /// `Authorization: Basic` header values that authenticated a client, by their exact bytes: the same
    /// header again skips decoding it and hashing the secret (an API gateway introspecting sends the same
    /// one on every call). Only successes are kept; any application change empties it.
    basic_auths: Cache<Bytes, Arc<ClientApp>>,
    /// Introspection answers, found again by `jti` and by user when a change concerns them.
    pub(crate) introspections: IntrospectionCache,
    pub(crate) digest_key: DigestKey,
    /// Keys of the sign-in pages (CSRF tokens), derived from the key-encryption key.
    pub(crate) page_keys: crate::sessions::PageKeys,
    pub(crate) apply_turns: crate::import::ApplyTurns,
    /// Bumped before any invalidation; an answer computed across a bump is not cached.
    pub(crate) epoch: AtomicU64,
    /// Changes the invalidation task has handled (compared with `Store::changes_sent`), and a wake-up for
    /// writers waiting on it; `invalidating` says whether that task runs at all.
    handled: AtomicU64,
    handled_notify: tokio::sync::Notify,
    invalidating: std::sync::atomic::AtomicBool,
    /// Password sign-in (also hashes the passwords the admin API sets).
    pub passwords: Arc<crate::passwords::Passwords>,
    /// The device flow's node-local state: polling pace, wrong user codes per address.
    pub(crate) device: crate::oauth::device::DeviceFlow,
    pub metrics: crate::metrics::Metrics,
}

impl Edge {
    pub fn new(
        node: ReplicaNode,
        kek: Kek,
        config: EdgeConfig,
        metrics: crate::metrics::Metrics,
    ) -> Result<Arc<Edge>, EdgeError> {
        let store = node.store.clone();
        let keyring = Keyring::load(&store, &kek)?;
        let kek = Arc::new(kek);
        let edge = Arc::new(Edge {
            apps: Cache::builder().max_capacity(100_000).build(),
            basic_auths: Cache::builder().max_capacity(10_000).time_to_idle(Duration::from_secs(600)).build(),
            introspections: IntrospectionCache::new(config.introspection_cache_entries),
            digest_key: DigestKey::random()?,
            page_keys: crate::sessions::PageKeys::new(&kek),
            apply_turns: Default::default(),
            epoch: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            handled_notify: tokio::sync::Notify::new(),
            invalidating: std::sync::atomic::AtomicBool::new(false),
            passwords: Arc::new(crate::passwords::Passwords::new(
                config.passwords.clone(),
                node.clone(),
                metrics.clone(),
                kek.clone(),
            )),
            device: crate::oauth::device::DeviceFlow::new(config.device.clone()),
            node,
            store,
            kek,
            keyring,
            config,
            metrics,
        });
        Ok(edge)
    }

    /// Follows applied changes and invalidates caches. Runs until the store's channel closes.
    pub fn spawn_invalidation(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let edge = self.clone();
        let mut rx = self.store.subscribe();
        // Changes sent before subscribing need no handling: nothing was cached under them yet.
        self.handled.store(self.store.changes_sent(), Ordering::SeqCst);
        self.invalidating.store(true, Ordering::SeqCst);
        tokio::spawn(async move {
            loop {
                let handled = match rx.recv().await {
                    Ok(change) => {
                        edge.invalidate(&change);
                        1
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("missed {n} change notifications: dropping all caches");
                        edge.invalidate(&Change::Everything);
                        n
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                edge.handled.fetch_add(handled, Ordering::SeqCst);
                edge.handled_notify.notify_waiters();
            }
            edge.invalidating.store(false, Ordering::SeqCst);
        })
    }

    /// Drops what a change made stale.
    pub fn invalidate(&self, change: &Change) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        match change {
            Change::Revocation(jti) => self.introspections.drop_jti(jti),
            Change::User { id, .. } => self.introspections.drop_user(id),
            Change::Application { client_id, .. } => {
                self.apps.invalidate(client_id);
                self.basic_auths.invalidate_all();
                let cid = client_id.clone();
                self.introspections.drop_if(move |v| v.client_id == cid);
            }
            Change::SigningKey(kid) => {
                if let Err(e) = self.keyring.reload(&self.store, &self.kek) {
                    tracing::error!("reloading signing keys: {e}");
                }
                let kid = kid.clone();
                self.introspections.drop_if(move |v| v.kid == kid);
            }
            // Rare (imports): answers cached under a withdrawn issuer must go.
            Change::AcceptedIssuer { .. } => self.introspections.drop_all(),
            Change::Organization(_)
            | Change::Role { .. }
            | Change::Group { .. }
            | Change::RefreshToken(_)
            | Change::Permission { .. }
            | Change::Model { .. } => {}
            Change::Everything => {
                self.apps.invalidate_all();
                self.basic_auths.invalidate_all();
                self.introspections.drop_all();
                if let Err(e) = self.keyring.reload(&self.store, &self.kek) {
                    tracing::error!("reloading signing keys: {e}");
                }
            }
        }
    }

    /// Caches an introspection answer unless the state changed while it was computed (see
    /// [`Edge::keep_unless_invalidated`]).
    pub(crate) fn remember(&self, digest: TokenDigest, started_epoch: u64, entry: Arc<CachedToken>) {
        self.keep_unless_invalidated(
            started_epoch,
            || self.introspections.insert(digest, entry),
            || self.introspections.invalidate(&digest),
        );
    }

    /// Caches something (`insert`), then takes it out again (`remove`) if an invalidation has run since
    /// `started_epoch` (it may be computed from state that changed meanwhile). In first, checked after: an
    /// invalidation between the two is seen, instead of the entry surviving it.
    fn keep_unless_invalidated(&self, started_epoch: u64, insert: impl FnOnce(), remove: impl FnOnce()) {
        insert();
        if self.epoch.load(Ordering::SeqCst) != started_epoch {
            remove();
        }
    }

    /// The application with this client id.
    pub fn client(&self, client_id: &str) -> Result<Option<Arc<ClientApp>>, OAuthError> {
        if let Some(c) = self.apps.get(client_id) {
            return Ok(Some(c));
        }
        let Some(rec) = self.store.application_by_client_id(client_id)? else {
            return Ok(None);
        };
        let app = rec.to_owned()?;
        let entry = Arc::new(ClientApp { is_admin_app: app.name == self.config.admin_app, app });
        self.apps.insert(client_id.to_string(), entry.clone());
        Ok(Some(entry))
    }

    /// The client an `Authorization: Basic` header value authenticated before, if it did.
    pub fn known_basic(&self, header: &[u8]) -> Option<Arc<ClientApp>> {
        self.basic_auths.get(header)
    }

    /// Remembers that `header` authenticated `client` — unless an invalidation ran since `started_epoch`
    /// (the client may have changed under the check).
    pub(crate) fn remember_basic(&self, header: &Bytes, client: &Arc<ClientApp>, started_epoch: u64) {
        self.keep_unless_invalidated(
            started_epoch,
            || self.basic_auths.insert(header.clone(), client.clone()),
            || self.basic_auths.invalidate(header),
        );
    }

    /// Authenticates a client by id and secret; any failure is `invalid_client` with the same message.
    pub fn authenticate_client(&self, client_id: &str, secret: &str) -> Result<Arc<ClientApp>, OAuthError> {
        let presented = sha256(secret.as_bytes());
        let bad = || OAuthError::invalid_client("client authentication failed");
        let Some(client) = self.client(client_id)? else {
            return Err(bad());
        };
        let stored = &client.app.client_secret_digest;
        if secret.is_empty() || stored.len() != 32 || !bool::from(presented.ct_eq(stored.as_slice())) {
            return Err(bad());
        }
        Ok(client)
    }

    /// Writes a command through Raft and maps a refusal to an error message.
    pub async fn write(&self, cmd: Command) -> Result<Outcome, EdgeError> {
        let kind = cmd.kind();
        let started = Instant::now();
        let resp = self.node.write(cmd).await?;
        self.caches_caught_up().await;
        self.metrics.record_write(kind, started.elapsed());
        Ok(resp.outcome)
    }

    /// Read-your-writes on this node: waits (briefly) until the caches have dropped what the writes applied
    /// here so far made stale, so the next request sees them — a token right after a key rotation is
    /// signed with the new key. Other nodes catch up on their own, moments later.
    async fn caches_caught_up(&self) {
        if !self.invalidating.load(Ordering::SeqCst) {
            return;
        }
        let target = self.store.changes_sent();
        let wait = async {
            loop {
                let notified = self.handled_notify.notified();
                if self.handled.load(Ordering::SeqCst) >= target {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(std::time::Duration::from_secs(2), wait).await.is_err() {
            tracing::warn!("cache invalidation is behind the state by more than 2 s");
        }
    }

    /// The roles of a user (for `JWT` / `JWT-Custom` tokens and userinfo).
    pub fn roles_of(&self, user: &User) -> Result<Vec<Role>, EdgeError> {
        let mut org_roles = Vec::new();
        for r in self.store.roles(&user.owner) {
            org_roles.push(r?.to_owned()?);
        }
        Ok(crate::claims::roles_of(user, &org_roles))
    }

    /// Counts of records, for health and metrics.
    pub fn counts(&self) -> HashMap<&'static str, usize> {
        use jeton_raft::store::key;
        let mut m = HashMap::new();
        m.insert("organizations", self.store.count(key::ORG));
        m.insert("applications", self.store.count(key::APP));
        m.insert("signing_keys", self.store.count(key::SIGNING_KEY));
        m
    }
}
