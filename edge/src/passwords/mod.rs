//! Password sign-in: the one service every front end asks whether a login and a password are good (the
//! OAuth password grant, LDAP binds, RADIUS). It takes a typed [`SignIn`] and answers [`Verified`] or
//! [`Refused`]; each front end maps that to its protocol. Challenge-response proofs (CHAP, MS-CHAPv2) go
//! through [`Passwords::verify_proof`], with the NT-hash credentials of [`nt_credential`].
//!
//! [`Passwords::verify`] is, in order:
//! 1. **lookup** of the login in the organization (COMPAT §4.1);
//! 2. **per-address limit**: failures from the client address within a window, plus its attempts running
//!    now, below `ip_failure_limit` (per node);
//! 3. **lockout** (§4.5): the account's failures — replicated through Raft, so counted for the whole
//!    cluster, and mirrored locally so that this node's own failures count at once and also without a
//!    quorum — plus its attempts running now on this node, below the application's `failedSigninLimit`.
//!    An attempt is counted when it starts: N parallel guesses cannot all be tried;
//! 4. **hashing slots**: at most `check_concurrency` checks at once, and at most `memory_budget_kib` of
//!    memory among them (an argon2 check reserves its `m`, others [`schemes::SMALL_CHECK_KIB`]); a hash
//!    over the cost cap of one check is never run. Checks that are one or two plain digests (plain, salt,
//!    sha512-salt, md5-salt) take microseconds and run in place instead;
//! 5. **timing floor**: a failure — unknown login, wrong password, a user who cannot sign in by password
//!    here — is answered no earlier than `failure_floor` after the sign-in began. Nothing is hashed for
//!    a login that cannot match: the request sleeps (no CPU, no slot) instead of burning a dummy hash.
//!
//! Second factors count on the same account ([`Passwords::verify_second_factor`]): a wrong TOTP code is a
//! failure like a wrong password, and for a user with a second factor only the second factor's success
//! resets the failures.
//!
//! The check itself runs in a task of its own, so a client that hangs up cannot cancel a hash halfway (its
//! slot stays taken until the hash ends) nor the recording of its failure.

pub mod nt_credential;
pub mod schemes;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jeton_raft::model::{Application, Organization, SigninFailures, User};
use jeton_raft::{Command, ReplicaNode, Store};
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::EdgeError;
use crate::generation::GenerationCache;
use crate::keys::Kek;
use crate::metrics::Metrics;
use schemes::{Accepted, OrgPolicy, PasswordError, Scheme, StoredPassword};

/// Settings of the password service.
#[derive(Debug, Clone)]
pub struct PasswordConfig {
    /// Password checks (and new-password hashes) running at once; they are CPU-bound.
    pub check_concurrency: usize,
    /// Memory (KiB) the checks running at once may reserve together. A check that needs more than the
    /// whole budget takes the whole budget (it then runs alone).
    pub memory_budget_kib: u32,
    /// A failed sign-in is answered no earlier than this after it began, whatever failed.
    pub failure_floor: Duration,
    /// Failed sign-ins from one client address within `ip_failure_window` before it is refused.
    pub ip_failure_limit: u32,
    pub ip_failure_window: Duration,
    /// Organizations whose users get an NT-hash credential at their next password sign-in, for MS-CHAPv2
    /// (`[radius] nt_hash_organizations`, see [`nt_credential`]).
    pub nt_hash_organizations: Vec<String>,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            check_concurrency: 2,
            memory_budget_kib: 512 * 1024,
            failure_floor: Duration::from_millis(DEFAULT_FAILURE_FLOOR_MS),
            ip_failure_limit: 50,
            ip_failure_window: Duration::from_secs(300),
            nt_hash_organizations: Vec::new(),
        }
    }
}

/// Default timing floor: above the checks Casdoor writes (bcrypt cost 10, argon2id 64 MiB: 0.05–0.13 s on
/// the 2-core VM, idle to busy) and the slow ones imports bring (bcrypt cost 12 as PHP writes it, argon2
/// at the cost cap: 0.2–0.5 s), see bench/RESULTS.md. A failure slower than the floor shows through (and
/// is logged).
pub const DEFAULT_FAILURE_FLOOR_MS: u64 = 500;

/// How long a sign-in waits for its lockout change to be replicated (normally milliseconds) before it
/// answers anyway.
const RECORDING_WAIT: Duration = Duration::from_secs(2);

/// The lockout rule of the application signed in to (COMPAT §4.5).
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    /// Failures before the account locks.
    pub limit: u32,
    /// How long it then stays locked; failures below the limit are forgotten that long after the last one.
    pub frozen_for: Duration,
}

impl Lockout {
    /// `failedSigninLimit` (0 → 5) and `failedSigninFrozenTime` in minutes (0 → 15).
    pub fn of(app: &Application) -> Lockout {
        Lockout::from_settings(app.failed_signin_limit, app.failed_signin_frozen_time)
    }

    /// From an application's `failedSigninLimit` and `failedSigninFrozenTime` (minutes).
    fn from_settings(failed_signin_limit: i32, failed_signin_frozen_time: i32) -> Lockout {
        let limit = if failed_signin_limit > 0 { failed_signin_limit as u32 } else { 5 };
        let minutes = if failed_signin_frozen_time > 0 { failed_signin_frozen_time as u64 } else { 15 };
        Lockout { limit, frozen_for: Duration::from_secs(60 * minutes) }
    }
}

/// Whose lockout rule a sign-in counts against.
#[derive(Debug, Clone, Copy)]
pub enum LockoutRule {
    /// The application signed in to (OAuth).
    Of(Lockout),
    /// Outside any application (LDAP, RADIUS): the user's home application — the one they signed up with,
    /// else the first of their organization (COMPAT §3.1) — or Casdoor's defaults. Worked out from the user
    /// the sign-in looks up anyway.
    HomeApplication,
}

/// A sign-in to check.
pub struct SignIn<'a> {
    /// The organization the login is looked up in.
    pub organization: &'a str,
    /// Name, email or user id (COMPAT §4.1).
    pub login: &'a str,
    pub password: &'a str,
    /// The client's address, for the per-address limit.
    pub client_ip: Option<IpAddr>,
    pub lockout: LockoutRule,
    /// The login may name the user ignoring case (LDAP compares DN values that way), when that names one.
    pub ignore_case: bool,
}

/// A challenge-response proof (see [`Passwords::verify_proof`]), by what it can be checked against.
pub enum Proof {
    /// Only the password in clear checks it (CHAP): users whose password is stored in clear.
    Cleartext(Box<dyn Fn(&str) -> bool + Send + Sync>),
    /// The password's NT hash checks it (MS-CHAPv2): hashed from a password stored in clear, or the user's
    /// NT-hash credential (see [`nt_credential`]).
    NtHash(NtHashCheck),
}

/// Checks a proof against an NT hash (RFC 2759 §8.3): `true` when it answers the challenge.
pub type NtHashCheck = Box<dyn Fn(&[u8; 16]) -> bool + Send + Sync>;

/// What a sign-in presents.
enum Secret {
    Password(String),
    Proof(Proof),
}

/// Why a check failed: a wrong (or uncheckable) password, or a proof with nothing to check it against.
enum Failure {
    Invalid,
    NoChallengeCredential,
}

/// A sign-in that checked out.
#[derive(Debug)]
pub struct Verified {
    pub user: Arc<User>,
    pub how: Accepted,
}

/// Why a sign-in was refused. Front ends answer every [`Refused::Invalid`] alike (no user enumeration).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Unknown login, wrong password, or a user who cannot sign in by password here (no usable password,
    /// LDAP-backed). Answered after the timing floor.
    #[error("invalid username or password")]
    Invalid,
    /// Too many failures (or failures and attempts running) for this account.
    #[error("too many failed sign-ins: the account is locked, try again in {minutes} minutes")]
    Locked { minutes: u64 },
    /// Too many failures (or failures and attempts running) from this address.
    #[error("too many failed sign-ins from this address; try again later")]
    RateLimited,
    #[error("password is required")]
    EmptyPassword,
    /// A challenge-response proof (CHAP, MS-CHAPv2) for a login with nothing to check it against: an unknown
    /// login, or a user whose password is hashed and who has no NT-hash credential the proof can use (see
    /// [`Passwords::verify_proof`]). Answered after the timing floor, like [`Refused::Invalid`].
    #[error("no password stored in clear or NT-hash credential to check a challenge response against")]
    NoChallengeCredential,
    #[error(transparent)]
    Internal(#[from] EdgeError),
}

impl From<jeton_raft::RaftError> for Refused {
    fn from(e: jeton_raft::RaftError) -> Self {
        Refused::Internal(e.into())
    }
}

/// This node's view of one account: its own failures, counted at once (the replicated record catches up
/// a moment later, or never without a quorum), and its attempts running now.
#[derive(Default)]
struct Account {
    failures: Option<SigninFailures>,
    in_flight: u32,
}

/// One client address: failures in the current window and attempts running now.
#[derive(Default)]
struct Address {
    failures: u32,
    in_flight: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An admitted attempt: counted in its account's and address's `in_flight` until it ends (also when the
/// request is dropped), then — if it failed — counted as a failure in the same step, so that the count
/// never dips between the two.
struct Attempt {
    account: Arc<Mutex<Account>>,
    address: Option<Arc<Mutex<Address>>>,
    /// The cluster had failures recorded for the account when the attempt was admitted.
    replicated_failures: bool,
    /// Set once `failed` or `succeeded` has accounted for it.
    ended: bool,
}

impl Attempt {
    /// Ends the attempt as a failure at `now` (unix seconds).
    fn failed(mut self, key: &str, now: i64, lockout: Lockout) {
        {
            let mut a = lock(&self.account);
            let next = SigninFailures::after_failure(
                a.failures.as_ref(),
                key,
                now,
                lockout.limit,
                lockout.frozen_for.as_secs() as i64,
            );
            a.failures = Some(next);
            a.in_flight = a.in_flight.saturating_sub(1);
        }
        if let Some(address) = &self.address {
            let mut a = lock(address);
            a.failures = a.failures.saturating_add(1);
            a.in_flight = a.in_flight.saturating_sub(1);
        }
        self.ended = true;
    }

    /// Ends the attempt as a success: this node forgets the account's failures. Returns whether it or the
    /// cluster had any (then they are to be reset everywhere).
    fn succeeded(mut self) -> bool {
        let had = {
            let mut a = lock(&self.account);
            a.in_flight = a.in_flight.saturating_sub(1);
            a.failures.take().is_some()
        };
        if let Some(address) = &self.address {
            let mut a = lock(address);
            a.in_flight = a.in_flight.saturating_sub(1);
        }
        self.ended = true;
        had || self.replicated_failures
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut a = lock(&self.account);
        a.in_flight = a.in_flight.saturating_sub(1);
        drop(a);
        if let Some(address) = &self.address {
            let mut a = lock(address);
            a.in_flight = a.in_flight.saturating_sub(1);
        }
    }
}

/// The account failures are counted for: the user (by id, whatever login found them), or the login
/// itself when nobody matched — an unknown name locks exactly like a real one. The login is digested so
/// the key stays short.
fn account_key(organization: &str, login: &str, user: Option<&User>) -> String {
    match user {
        Some(u) => format!("user:{}", u.id),
        None => format!("login:{organization}/{}", hex::encode(Sha256::digest(login.trim().as_bytes()))),
    }
}

/// Whether a user whose password checked out may sign in: not disabled, not deleted (unlike Casdoor's
/// OAuth grants, COMPAT §11.5, every entry point refuses both). The reason, for the log, when not.
pub fn may_sign_in(user: &User) -> Result<(), &'static str> {
    if user.is_forbidden {
        return Err("the account is disabled");
    }
    if user.is_deleted {
        return Err("the account is deleted");
    }
    Ok(())
}

/// Finds a user of an organization by login string: name, then email, then phone, then id (COMPAT §4.1).
/// With `ignore_case`, a name that matches one user ignoring case names them.
pub fn find_user(
    store: &Store,
    org: &str,
    login: &str,
    ignore_case: bool,
) -> Result<Option<User>, jeton_raft::RaftError> {
    let login = login.trim();
    if login.is_empty() {
        return Ok(None);
    }
    if let Some(u) = store.user(org, login)? {
        return Ok(Some(u.to_owned()?));
    }
    if ignore_case {
        if let [one] = store.users_named_ci(org, login)?.as_slice() {
            return Ok(Some(one.to_owned()?));
        }
    }
    if login.contains('@') {
        if let Some(u) = store.user_by_email(org, login)? {
            return Ok(Some(u.to_owned()?));
        }
    }
    // A phone number, as stored (a `+` number is not split into country and national number here).
    if login.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')')) {
        if let Some(u) = store.users_with_phone(org, login)?.into_iter().next() {
            return Ok(Some(u.to_owned()?));
        }
    }
    if let Some(u) = store.user_by_id(login)? {
        let u = u.to_owned()?;
        if u.owner == org {
            return Ok(Some(u));
        }
    }
    Ok(None)
}

/// Why a user's password cannot be checked here at all (COMPAT §4.7), or the memory its check takes.
fn checkable(org: &Organization, user: &User) -> Result<u32, &'static str> {
    // Casdoor checks an LDAP-backed user against the upstream directory, never the local hash; this node
    // has no upstream LDAP client yet.
    if !user.ldap.is_empty() {
        return Err("LDAP-backed user (no upstream LDAP client)");
    }
    schemes::usable(&policy(org), &stored(user)).map_err(|why| match why {
        schemes::Rejected::NoPassword => "no local password",
        schemes::Rejected::UnsupportedScheme(_) => "unsupported password type",
        schemes::Rejected::TooCostly(_) => "stored hash over the cost cap",
        schemes::Rejected::Empty | schemes::Rejected::Wrong => "not checkable",
    })
}

pub(crate) fn policy(org: &Organization) -> OrgPolicy<'_> {
    OrgPolicy {
        password_type: &org.password_type,
        password_salt: &org.password_salt,
        master_password: &org.master_password,
    }
}

pub(crate) fn stored(user: &User) -> StoredPassword<'_> {
    StoredPassword { password: &user.password, password_type: &user.password_type, password_salt: &user.password_salt }
}

/// Where hashes run: on blocking threads, at most `count` at once and within a memory budget together (a
/// weighted semaphore: one permit per KiB a hash reserves).
struct Slots {
    count: Arc<Semaphore>,
    memory: Arc<Semaphore>,
    budget_kib: u32,
}

impl Slots {
    fn new(count: usize, budget_kib: u32) -> Slots {
        let budget_kib = budget_kib.max(1);
        Slots {
            count: Arc::new(Semaphore::new(count.max(1))),
            memory: Arc::new(Semaphore::new(budget_kib as usize)),
            budget_kib,
        }
    }

    /// Runs `work` once `memory_kib` of the budget (all of it, if it asks for more) and a slot are free.
    /// Memory is taken first, so a large hash waiting for memory holds no slot. The permits go with the
    /// work: a caller that goes away does not free them before the hash ends.
    async fn run<T: Send + 'static>(
        &self,
        memory_kib: u32,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, EdgeError> {
        let closed = |_| EdgeError::Unexpected("the password slots are closed".into());
        let memory = memory_kib.clamp(1, self.budget_kib);
        let reserved: OwnedSemaphorePermit = self.memory.clone().acquire_many_owned(memory).await.map_err(closed)?;
        let slot = self.count.clone().acquire_owned().await.map_err(closed)?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop((slot, reserved));
            out
        })
        .await
        .map_err(|e| EdgeError::Unexpected(format!("hashing task: {e}")))
    }
}

/// The password service of one node.
pub struct Passwords {
    config: PasswordConfig,
    node: ReplicaNode,
    store: Store,
    metrics: Metrics,
    slots: Slots,
    /// The cluster's key-encryption key: seals and opens NT-hash credentials.
    kek: Arc<Kek>,
    /// Users (id, binding of their stored password) whose NT-hash credential this node wrote (or tried to)
    /// lately: not derived again meanwhile.
    deriving: Cache<(String, [u8; 32]), ()>,
    /// Per account (see [`account_key`]): this node's failures and attempts running.
    accounts: Cache<String, Arc<Mutex<Account>>>,
    /// Per client address, for one window.
    addresses: Cache<IpAddr, Arc<Mutex<Address>>>,
    /// When a failure last took longer than the floor was logged (unix seconds).
    floor_warned: std::sync::atomic::AtomicI64,
    /// Organizations as every sign-in reads them (see [`GenerationCache`]).
    orgs: GenerationCache<String, Option<Arc<Organization>>>,
    /// Users by the organization, login and case rule a sign-in looked them up with.
    users: GenerationCache<(String, String, bool), Option<Arc<User>>>,
    /// [`LockoutRule::HomeApplication`] by organization and signup application.
    home_lockouts: GenerationCache<(String, String), Lockout>,
}

impl Passwords {
    pub fn new(config: PasswordConfig, node: ReplicaNode, metrics: Metrics, kek: Arc<Kek>) -> Passwords {
        let budget = config.memory_budget_kib.max(schemes::SMALL_CHECK_KIB);
        Passwords {
            store: node.store.clone(),
            node,
            metrics,
            kek,
            deriving: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
            slots: Slots::new(config.check_concurrency, budget),
            accounts: Cache::builder().max_capacity(1_000_000).time_to_idle(Duration::from_secs(3600)).build(),
            addresses: Cache::builder().max_capacity(1_000_000).time_to_live(config.ip_failure_window).build(),
            config: PasswordConfig { memory_budget_kib: budget, ..config },
            floor_warned: Default::default(),
            orgs: GenerationCache::new(10_000),
            home_lockouts: GenerationCache::new(10_000),
            users: GenerationCache::new(50_000),
        }
    }

    /// The lockout rule of [`LockoutRule::HomeApplication`], for `user` (if the login found one).
    fn home_lockout(&self, organization: &str, user: Option<&User>) -> Lockout {
        let signup = user.map_or("", |u| u.signup_application.as_str());
        let key = (organization.to_string(), signup.to_string());
        let found = self.home_lockouts.get(&self.store, &key, || {
            // Read in place: applications are large records.
            let of = |a: &jeton_raft::store::Record<Application>| {
                let a = a.get();
                Lockout::from_settings(a.failed_signin_limit.to_native(), a.failed_signin_frozen_time.to_native())
            };
            if !signup.is_empty() {
                if let Some(app) = self.store.application(signup)? {
                    return Ok(of(&app));
                }
            }
            for app in self.store.applications() {
                let app = app?;
                if app.get().organization == organization {
                    return Ok(of(&app));
                }
            }
            Ok::<_, jeton_raft::RaftError>(Lockout::from_settings(0, 0))
        });
        found.unwrap_or_else(|e| {
            tracing::error!("reading the lockout rule of {organization}: {e}");
            Lockout::from_settings(0, 0)
        })
    }

    /// An organization, decoded once per state generation.
    fn organization(&self, name: &str) -> Result<Option<Arc<Organization>>, jeton_raft::RaftError> {
        self.orgs.get(&self.store, name, || match self.store.organization(name)? {
            Some(o) => Ok(Some(Arc::new(o.to_owned()?))),
            None => Ok(None),
        })
    }

    /// Checks a sign-in (see the module documentation for the steps).
    pub async fn verify(self: &Arc<Self>, req: SignIn<'_>) -> Result<Verified, Refused> {
        if req.password.is_empty() {
            return Err(Refused::EmptyPassword);
        }
        let secret = Secret::Password(req.password.to_string());
        self.sign_in(req, secret).await
    }

    /// Checks a challenge-response sign-in (CHAP, MS-CHAPv2): `proof` is run on the user's password in
    /// clear, which only users whose password is stored in clear (scheme `plain`) have, or — a
    /// [`Proof::NtHash`] only — on their NT-hash credential, which users of organizations that opted in
    /// get at a password sign-in (see [`nt_credential`]). Anyone else is [`Refused::NoChallengeCredential`].
    /// Lockout, limits and the timing floor apply as for [`Passwords::verify`]; `req.password` is not used.
    /// The master password does not answer challenges.
    pub async fn verify_proof(self: &Arc<Self>, req: SignIn<'_>, proof: Proof) -> Result<Verified, Refused> {
        self.sign_in(req, Secret::Proof(proof)).await
    }

    async fn sign_in(self: &Arc<Self>, req: SignIn<'_>, secret: Secret) -> Result<Verified, Refused> {
        let started = Instant::now();
        let lookup = (req.organization.to_string(), req.login.to_string(), req.ignore_case);
        let user = self.users.get(&self.store, &lookup, || {
            find_user(&self.store, req.organization, req.login, req.ignore_case).map(|u| u.map(Arc::new))
        })?;
        let key = account_key(req.organization, req.login, user.as_deref());
        let lockout = match req.lockout {
            LockoutRule::Of(lockout) => lockout,
            LockoutRule::HomeApplication => self.home_lockout(req.organization, user.as_deref()),
        };
        let attempt = self.admit(&key, req.client_ip, lockout)?;
        let org = match &user {
            Some(u) => self.organization(&u.owner).map(Option::unwrap_or_default),
            None => Ok(Arc::default()),
        };
        let fast = match (&user, &org, &secret) {
            (_, _, Secret::Proof(_)) => true,
            (Some(u), Ok(o), _) => schemes::is_fast(&policy(o), &stored(u)),
            _ => true,
        };
        let check = self.clone().check(attempt, key, user, org, secret, lockout);
        let (result, recording) = if fast {
            // A check without hashing slots never waits: it runs to its end in this poll, so a caller that
            // goes away cannot cut it short (and the hop to a task of its own would cost more than it).
            check.await
        } else {
            // A check that waits for a slot runs on its own, so that its outcome is recorded even if the
            // caller goes away.
            match tokio::spawn(check).await {
                Ok(r) => r,
                Err(e) => return Err(EdgeError::Unexpected(format!("password check task: {e}")).into()),
            }
        };
        // The failure (or the reset after a success) is on its way to the other nodes; a write that takes
        // longer than usual (no quorum) is waited for a little, then left to finish on its own.
        let floor = started + self.config.failure_floor;
        let wait_for = |recording: Option<tokio::task::JoinHandle<()>>, until: Instant| async move {
            if let Some(recording) = recording {
                let _ = tokio::time::timeout_at(until.into(), recording).await;
            }
        };
        match result {
            Ok(verified) => {
                wait_for(recording, Instant::now() + RECORDING_WAIT).await;
                Ok(verified)
            }
            Err(failure) => {
                wait_for(recording, floor + RECORDING_WAIT).await;
                if Instant::now() > floor {
                    self.floor_exceeded(started.elapsed());
                }
                tokio::time::sleep_until(floor.into()).await;
                Err(match failure {
                    Failure::Invalid => Refused::Invalid,
                    Failure::NoChallengeCredential => Refused::NoChallengeCredential,
                })
            }
        }
    }

    /// A failure took longer than the floor (a slow hash, a queue for the slots, a slow write): its time
    /// shows through. Said at most once a minute.
    fn floor_exceeded(&self, took: Duration) {
        let now = crate::clock::now();
        let last = self.floor_warned.load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= 60
            && self
                .floor_warned
                .compare_exchange(last, now, std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                floor_ms = self.config.failure_floor.as_millis() as u64,
                "a failed sign-in took longer than the timing floor: raise security.password_failure_floor_ms"
            );
        }
    }

    /// Admits an attempt on `key` from `ip`, or refuses it before anything is hashed.
    fn admit(&self, key: &str, ip: Option<IpAddr>, lockout: Lockout) -> Result<Attempt, Refused> {
        // Read every time: failure records are written without a broadcast change, so no generation
        // cache could tell when they change.
        let replicated = match self.store.signin_failures(key)? {
            Some(r) => Some(r.to_owned()?),
            None => None,
        };
        let now = crate::clock::now();
        let account = self.accounts.get_with(key.to_string(), Default::default);
        {
            let mut a = lock(&account);
            // The cluster's count and this node's own: the larger (this node's failures are in both once
            // replicated), plus what runs here now.
            let records = [replicated.as_ref(), a.failures.as_ref()];
            let locked_until = records.iter().flatten().filter(|r| r.locked_at(now)).map(|r| r.locked_until).max();
            let count = records.iter().flatten().map(|r| r.count_at(now)).max().unwrap_or(0);
            if locked_until.is_some() || count.saturating_add(a.in_flight) >= lockout.limit {
                self.metrics.password_refused("locked");
                let secs = locked_until.map_or(lockout.frozen_for.as_secs() as i64, |t| t - now);
                return Err(Refused::Locked { minutes: (secs.max(1) as u64).div_ceil(60) });
            }
            a.in_flight += 1;
        }
        let replicated_failures = replicated.is_some();
        let mut attempt = Attempt { account, address: None, replicated_failures, ended: false };
        if let Some(ip) = ip {
            let entry = self.addresses.get_with(ip, Default::default);
            let mut a = lock(&entry);
            if a.failures.saturating_add(a.in_flight) >= self.config.ip_failure_limit {
                self.metrics.password_refused("rate_limited");
                return Err(Refused::RateLimited);
            }
            a.in_flight += 1;
            drop(a);
            attempt.address = Some(entry);
        }
        Ok(attempt)
    }

    /// Runs the check of an admitted attempt and records its outcome. Returns with it the task that
    /// replicates the change to the account's failures, if there is one.
    async fn check(
        self: Arc<Self>,
        attempt: Attempt,
        key: String,
        user: Option<Arc<User>>,
        org: Result<Arc<Organization>, jeton_raft::RaftError>,
        secret: Secret,
        lockout: Lockout,
    ) -> (Result<Verified, Failure>, Option<tokio::task::JoinHandle<()>>) {
        let org = match org {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("password check: reading the organization: {e}");
                return (Err(Failure::Invalid), None);
            }
        };
        let password = match secret {
            Secret::Password(p) => p,
            Secret::Proof(proof) => {
                let result = match user.as_deref().map(|u| (u, checkable(&org, u))) {
                    Some((u, Ok(_))) => self.check_proof(&org, u, &proof),
                    _ => {
                        self.metrics.password_refused("not_checkable");
                        Err(Failure::NoChallengeCredential)
                    }
                };
                return self.record(attempt, key, user, result, lockout);
            }
        };
        // Kept for an NT-hash credential, if the password turns out right (see `nt_credential`).
        let nt_password = user.as_ref().filter(|u| self.nt_hash_organization(&u.owner)).map(|_| password.clone());
        let result = match &user {
            Some(u) => match checkable(&org, u) {
                Ok(memory) => {
                    let ran = if schemes::is_fast(&policy(&org), &stored(u)) {
                        // Microseconds of digest: cheaper here than the hop to a blocking thread.
                        Ok(schemes::check(&policy(&org), &stored(u), &password))
                    } else {
                        let (org_c, user_c) = (org.clone(), u.clone());
                        self.slots
                            .run(memory, move || schemes::check(&policy(&org_c), &stored(&user_c), &password))
                            .await
                    };
                    match ran {
                        Ok(r) => {
                            self.metrics.password_check(r.is_ok());
                            if let Err(why) = &r {
                                tracing::info!(user = %u.full_name(), reason = %why, "password check failed");
                            }
                            r.map_err(|_| Failure::Invalid)
                        }
                        Err(e) => {
                            tracing::error!("password check: {e}");
                            Err(Failure::Invalid)
                        }
                    }
                }
                Err(why) => {
                    self.metrics.password_refused("not_checkable");
                    tracing::info!(user = %u.full_name(), reason = why, "password sign-in refused");
                    Err(Failure::Invalid)
                }
            },
            None => {
                self.metrics.password_refused("not_checkable");
                Err(Failure::Invalid)
            }
        };
        if let (Ok(Accepted::Password), Some(u), Some(password)) = (&result, &user, nt_password) {
            if self.wants_nt_credential(&org, u) {
                self.derive_nt_credential(u.clone(), password);
            }
        }
        self.record(attempt, key, user, result, lockout)
    }

    /// Runs a challenge-response proof for a user whose password can be checked here: on the password in
    /// clear if it is stored so, else (an NT-hash proof) on their NT-hash credential if they have one.
    fn check_proof(&self, org: &Organization, u: &User, proof: &Proof) -> Result<Accepted, Failure> {
        let ok = match (schemes::cleartext(&policy(org), &stored(u)), proof) {
            (Some(clear), Proof::Cleartext(check)) => check(clear),
            (Some(clear), Proof::NtHash(check)) => check(&nt_credential::nt_hash(clear)),
            (None, Proof::NtHash(check)) => match self.nt_credential(u) {
                Some(hash) => check(&hash),
                None => {
                    self.metrics.password_refused("no_challenge_credential");
                    return Err(Failure::NoChallengeCredential);
                }
            },
            (None, Proof::Cleartext(_)) => {
                self.metrics.password_refused("no_challenge_credential");
                return Err(Failure::NoChallengeCredential);
            }
        };
        self.metrics.password_check(ok);
        if ok {
            Ok(Accepted::Password)
        } else {
            tracing::info!(user = %u.full_name(), "challenge response check failed");
            Err(Failure::Invalid)
        }
    }

    /// Ends an attempt with the outcome of its check: a success resets the account's failures (if it had
    /// any, and no second factor is still to come), a failure counts (but a proof with nothing to check it against does not); either change is
    /// replicated by the task returned.
    fn record(
        self: Arc<Self>,
        attempt: Attempt,
        key: String,
        user: Option<Arc<User>>,
        result: Result<Accepted, Failure>,
        lockout: Lockout,
    ) -> (Result<Verified, Failure>, Option<tokio::task::JoinHandle<()>>) {
        match (result, user) {
            (Ok(how), Some(user)) => {
                if self.second_factor_follows(&user) {
                    // The password is half of this user's sign-in: their failures are forgotten when the
                    // second factor checks out, not here, or each right password would buy another round
                    // of code guesses.
                    drop(attempt);
                    return (Ok(Verified { user, how }), None);
                }
                (Ok(Verified { user, how }), self.clone().succeeded(attempt, key))
            }
            // Nothing was checked, so no guess to count: a NAS that keeps trying MS-CHAPv2 for a user who
            // has no NT-hash credential yet does not lock them out of the PAP sign-in that derives it.
            (Err(Failure::NoChallengeCredential), _) => {
                drop(attempt);
                (Err(Failure::NoChallengeCredential), None)
            }
            (result, _) => {
                let failure = result.err().unwrap_or(Failure::Invalid);
                (Err(failure), Some(self.clone().failed(attempt, key, lockout)))
            }
        }
    }

    /// Ends an attempt that succeeded: its account's failures are reset (everywhere) if it had any. Returns
    /// the task that replicates the reset.
    fn succeeded(self: Arc<Self>, attempt: Attempt, key: String) -> Option<tokio::task::JoinHandle<()>> {
        attempt
            .succeeded()
            .then(|| tokio::spawn(async move { self.replicate(Command::ResetSigninFailures { account: key }).await }))
    }

    /// Ends an attempt that failed: counted at once on this node, and replicated by the task returned.
    fn failed(self: Arc<Self>, attempt: Attempt, key: String, lockout: Lockout) -> tokio::task::JoinHandle<()> {
        let now = crate::clock::now();
        attempt.failed(&key, now, lockout);
        let cmd = Command::RecordSigninFailure {
            account: key,
            now,
            limit: lockout.limit,
            frozen_secs: lockout.frozen_for.as_secs() as i64,
        };
        tokio::spawn(async move { self.replicate(cmd).await })
    }

    /// Whether `user` has a second factor to show after their password (a TOTP factor).
    fn second_factor_follows(&self, user: &User) -> bool {
        match self.store.totp(&user.id) {
            Ok(t) => t.is_some(),
            Err(e) => {
                tracing::error!("reading the second factor of {}: {e}", user.full_name());
                false
            }
        }
    }

    /// Checks a second factor of `user` (a TOTP or recovery code; see `crate::mfa`) as an attempt on their
    /// account, like a password: refused at once when the account is locked or `client_ip` over its
    /// limit; `check` then says whether the code is right (`Ok(true)`), and a wrong one counts as a failure
    /// of the account (and the address), a right one resets the account's failures. `check` should decide
    /// a wrong code before it first waits, so the failure is counted even if the caller goes away.
    ///
    /// No timing floor: the user is known (their password checked out), so there is nothing to hide.
    pub async fn verify_second_factor(
        self: &Arc<Self>,
        user: &User,
        client_ip: Option<IpAddr>,
        lockout: LockoutRule,
        check: impl std::future::Future<Output = Result<bool, EdgeError>>,
    ) -> Result<(), Refused> {
        let key = account_key(&user.owner, &user.name, Some(user));
        let lockout = match lockout {
            LockoutRule::Of(lockout) => lockout,
            LockoutRule::HomeApplication => self.home_lockout(&user.owner, Some(user)),
        };
        let attempt = self.admit(&key, client_ip, lockout)?;
        let (outcome, recording) = match check.await {
            Ok(true) => (Ok(()), self.clone().succeeded(attempt, key)),
            Ok(false) => {
                tracing::info!(user = %user.full_name(), "second factor check failed");
                (Err(Refused::Invalid), Some(self.clone().failed(attempt, key, lockout)))
            }
            Err(e) => {
                drop(attempt);
                return Err(Refused::Internal(e));
            }
        };
        if let Some(recording) = recording {
            let _ = tokio::time::timeout(RECORDING_WAIT, recording).await;
        }
        outcome
    }

    /// Writes a lockout change through Raft. Without a quorum it is lost for the cluster, and this node's
    /// own count (kept in memory) still bounds the guesses it lets through.
    async fn replicate(&self, cmd: Command) {
        let kind = cmd.kind();
        let started = Instant::now();
        match self.node.write(cmd).await {
            Ok(_) => self.metrics.record_write(kind, started.elapsed()),
            Err(e) => tracing::warn!("{kind} not replicated (this node still counts it): {e}"),
        }
    }

    /// Hashes a new password as Casdoor writes it (COMPAT §4.6), in the same slots and memory budget as
    /// the checks.
    pub async fn hash(&self, scheme: Scheme, password: &str, salt: &str) -> Result<String, PasswordError> {
        let (password, salt) = (password.to_string(), salt.to_string());
        self.slots
            .run(schemes::hash_work(scheme), move || schemes::hash(scheme, &password, &salt))
            .await
            .map_err(|e| PasswordError::Hashing(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Runs `jobs` (memory KiB each) at once in `slots`; returns the most that ran at the same time.
    async fn most_at_once(slots: Arc<Slots>, jobs: &[u32]) -> u32 {
        let (running, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let tasks: Vec<_> = jobs
            .iter()
            .map(|&kib| {
                let (slots, running, most) = (slots.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    slots
                        .run(kib, move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(50));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("ran");
        }
        most.load(Ordering::SeqCst)
    }

    /// The checks running at once are bounded by their count and by the memory they reserve together:
    /// with a 100 MiB budget, 64 MiB argon2 checks run one at a time although four slots are free; small
    /// checks use the four slots; a check larger than the whole budget still runs (alone).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn slots_bound_checks_by_count_and_by_memory() {
        let slots = Arc::new(Slots::new(4, 100 * 1024));
        assert_eq!(most_at_once(slots.clone(), &[65_536; 4]).await, 1, "64 MiB each in a 100 MiB budget");
        assert!(most_at_once(slots.clone(), &[schemes::SMALL_CHECK_KIB; 8]).await <= 4, "small: the count bounds");
        assert!(most_at_once(slots.clone(), &[40 * 1024; 4]).await <= 2, "40 MiB each: two fit");
        assert_eq!(most_at_once(slots, &[1_000_000, schemes::SMALL_CHECK_KIB]).await, 1, "over the budget: alone");
    }

    #[test]
    fn accounts_are_users_by_id_or_logins_by_digest() {
        let alice = User { owner: "acme".into(), name: "alice".into(), id: "u-1".into(), ..Default::default() };
        assert_eq!(account_key("acme", "alice@acme.example", Some(&alice)), "user:u-1");
        assert_eq!(account_key("acme", "alice", Some(&alice)), "user:u-1");
        let ghost = account_key("acme", " ghost ", None);
        assert_eq!(ghost, account_key("acme", "ghost", None));
        assert_ne!(ghost, account_key("acme", "Ghost", None));
        assert_ne!(ghost, account_key("globex", "ghost", None));
        assert!(ghost.starts_with("login:acme/") && ghost.len() == "login:acme/".len() + 64);
    }

    /// LDAP-backed users never reach their local hash; users without a usable password are not checked.
    #[test]
    fn what_cannot_be_checked_is_not_hashed() {
        let org = Organization { password_type: "bcrypt".into(), ..Default::default() };
        let plain = User { password: "pw".into(), password_type: "plain".into(), ..Default::default() };
        assert_eq!(checkable(&org, &plain), Ok(schemes::SMALL_CHECK_KIB));
        let ldap = User { ldap: "ldap-acme".into(), ..plain.clone() };
        assert!(checkable(&org, &ldap).unwrap_err().contains("LDAP"));
        let none = User { password: String::new(), ..plain.clone() };
        assert_eq!(checkable(&org, &none), Err("no local password"));
        let unknown = User { password_type: "sha3".into(), ..plain.clone() };
        assert_eq!(checkable(&org, &unknown), Err("unsupported password type"));
        let huge = User {
            password:
                "$argon2id$v=19$m=2097152,t=1,p=4$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM"
                    .into(),
            password_type: "argon2id".into(),
            ..plain
        };
        assert_eq!(checkable(&org, &huge), Err("stored hash over the cost cap"));
    }
}
