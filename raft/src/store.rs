//! The sled keyspace of the identity state and the zero-copy reads the hot paths use.
//!
//! All state lives in ONE sled tree (`state`) under short key prefixes, so that everything a log entry
//! changes, its indexes and the applied log id are written in a single atomic sled batch. Values are rkyv
//! archives. Only the state machine ([`crate::apply`]) writes this tree.

use std::marker::PhantomData;

use rkyv::rancor::Error as RkyvError;
use rkyv::{Archive, Portable};
use sled::IVec;
use tokio::sync::broadcast;

use crate::model::{
    AcceptedAlgorithms, AcceptedIssuer, Application, CasbinModel, Group, Organization, Permission, RefreshToken,
    Revocation, Role, SigninFailures, SigningKey, User,
};
use crate::Command;
use crate::RaftError;

/// Key layout of the `state` tree. Parts are joined with a NUL byte, which names may not contain.
pub mod key {
    pub const ORG: &[u8] = b"o\0";
    pub const USER: &[u8] = b"u\0";
    pub const USER_BY_ID: &[u8] = b"i\0";
    pub const USER_BY_EMAIL: &[u8] = b"e\0";
    pub const APP: &[u8] = b"a\0";
    pub const APP_BY_CLIENT: &[u8] = b"c\0";
    pub const SIGNING_KEY: &[u8] = b"k\0";
    pub const ROLE: &[u8] = b"r\0";
    pub const GROUP: &[u8] = b"g\0";
    pub const REFRESH: &[u8] = b"t\0";
    pub const FAMILY: &[u8] = b"f\0";
    pub const REVOCATION: &[u8] = b"v\0";
    pub const PERMISSION: &[u8] = b"p\0";
    pub const MODEL: &[u8] = b"q\0";
    pub const ACCEPTED_ISSUER: &[u8] = b"x\0";
    pub const SIGNIN_FAILURES: &[u8] = b"l\0";
    pub const ACCEPTED_ALGORITHMS: &[u8] = b"y\0";
    /// Raft bookkeeping kept in the same batch as the state: applied log id, membership.
    pub const META: &[u8] = b"m\0";
    pub const META_APPLIED: &[u8] = b"m\0applied";
    pub const META_MEMBERSHIP: &[u8] = b"m\0membership";

    pub fn join(prefix: &[u8], parts: &[&str]) -> Vec<u8> {
        let mut k = Vec::with_capacity(prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>());
        k.extend_from_slice(prefix);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                k.push(0);
            }
            k.extend_from_slice(p.as_bytes());
        }
        k
    }

    pub fn org(name: &str) -> Vec<u8> {
        join(ORG, &[name])
    }
    pub fn user(owner: &str, name: &str) -> Vec<u8> {
        join(USER, &[owner, name])
    }
    /// Prefix of all users of an organization.
    pub fn users_of(owner: &str) -> Vec<u8> {
        let mut k = join(USER, &[owner]);
        k.push(0);
        k
    }
    pub fn user_by_id(id: &str) -> Vec<u8> {
        join(USER_BY_ID, &[id])
    }
    pub fn user_by_email(owner: &str, email: &str) -> Vec<u8> {
        join(USER_BY_EMAIL, &[owner, &email.to_lowercase()])
    }
    pub fn app(name: &str) -> Vec<u8> {
        join(APP, &[name])
    }
    pub fn app_by_client(client_id: &str) -> Vec<u8> {
        join(APP_BY_CLIENT, &[client_id])
    }
    pub fn signing_key(kid: &str) -> Vec<u8> {
        join(SIGNING_KEY, &[kid])
    }
    pub fn role(owner: &str, name: &str) -> Vec<u8> {
        join(ROLE, &[owner, name])
    }
    pub fn roles_of(owner: &str) -> Vec<u8> {
        let mut k = join(ROLE, &[owner]);
        k.push(0);
        k
    }
    pub fn group(owner: &str, name: &str) -> Vec<u8> {
        join(GROUP, &[owner, name])
    }
    pub fn groups_of(owner: &str) -> Vec<u8> {
        let mut k = join(GROUP, &[owner]);
        k.push(0);
        k
    }
    pub fn refresh(id: &str) -> Vec<u8> {
        join(REFRESH, &[id])
    }
    pub fn family_member(family: &str, id: &str) -> Vec<u8> {
        join(FAMILY, &[family, id])
    }
    pub fn family(family: &str) -> Vec<u8> {
        let mut k = join(FAMILY, &[family]);
        k.push(0);
        k
    }
    pub fn revocation(jti: &str) -> Vec<u8> {
        join(REVOCATION, &[jti])
    }
    pub fn permission(owner: &str, name: &str) -> Vec<u8> {
        join(PERMISSION, &[owner, name])
    }
    pub fn permissions_of(owner: &str) -> Vec<u8> {
        let mut k = join(PERMISSION, &[owner]);
        k.push(0);
        k
    }
    pub fn model(owner: &str, name: &str) -> Vec<u8> {
        join(MODEL, &[owner, name])
    }
    pub fn accepted_issuer(application: &str, issuer: &str) -> Vec<u8> {
        join(ACCEPTED_ISSUER, &[application, issuer])
    }
    pub fn signin_failures(account: &str) -> Vec<u8> {
        join(SIGNIN_FAILURES, &[account])
    }
    pub fn accepted_algorithms(kid: &str) -> Vec<u8> {
        join(ACCEPTED_ALGORITHMS, &[kid])
    }
    pub fn accepted_issuers_of(application: &str) -> Vec<u8> {
        let mut k = join(ACCEPTED_ISSUER, &[application]);
        k.push(0);
        k
    }
}

/// A record type stored as an rkyv archive.
pub trait Stored: Archive + Sized
where
    Self::Archived: Portable,
{
    /// Key prefix of this record type in the `state` tree.
    const PREFIX: &'static [u8];
    /// Serializes to an archive.
    fn encode(&self) -> Result<Vec<u8>, RaftError>;
    /// Checks that `bytes` is a valid archive of this type (bytecheck).
    fn validate(bytes: &[u8]) -> Result<(), RaftError>;
    /// Deserializes an archive into an owned record.
    fn decode(bytes: &[u8]) -> Result<Self, RaftError>;
}

macro_rules! stored {
    ($($t:ty => $prefix:expr),* $(,)?) => {$(
        impl Stored for $t {
            const PREFIX: &'static [u8] = $prefix;
            fn encode(&self) -> Result<Vec<u8>, RaftError> {
                rkyv::to_bytes::<RkyvError>(self)
                    .map(|v| v.into_vec())
                    .map_err(|e| RaftError::Corrupt(format!("encoding {}: {e}", stringify!($t))))
            }
            fn validate(bytes: &[u8]) -> Result<(), RaftError> {
                rkyv::access::<rkyv::Archived<$t>, RkyvError>(bytes)
                    .map(|_| ())
                    .map_err(|e| RaftError::Corrupt(format!("invalid {} record: {e}", stringify!($t))))
            }
            fn decode(bytes: &[u8]) -> Result<Self, RaftError> {
                rkyv::from_bytes::<$t, RkyvError>(bytes)
                    .map_err(|e| RaftError::Corrupt(format!("invalid {} record: {e}", stringify!($t))))
            }
        }
    )*};
}

stored! {
    Organization => key::ORG,
    User => key::USER,
    Application => key::APP,
    SigningKey => key::SIGNING_KEY,
    Role => key::ROLE,
    Group => key::GROUP,
    RefreshToken => key::REFRESH,
    Revocation => key::REVOCATION,
    Permission => key::PERMISSION,
    CasbinModel => key::MODEL,
    AcceptedIssuer => key::ACCEPTED_ISSUER,
    SigninFailures => key::SIGNIN_FAILURES,
    AcceptedAlgorithms => key::ACCEPTED_ALGORITHMS,
}

/// Validates a value by the record type its key prefix names. Index and meta values are not archives
/// and pass unchecked.
pub fn validate_value(key: &[u8], value: &[u8]) -> Result<(), RaftError> {
    let prefix = key.get(..2).unwrap_or_default();
    match prefix {
        p if p == key::ORG => Organization::validate(value),
        p if p == key::USER => User::validate(value),
        p if p == key::APP => Application::validate(value),
        p if p == key::SIGNING_KEY => SigningKey::validate(value),
        p if p == key::ROLE => Role::validate(value),
        p if p == key::GROUP => Group::validate(value),
        p if p == key::REFRESH => RefreshToken::validate(value),
        p if p == key::REVOCATION => Revocation::validate(value),
        p if p == key::PERMISSION => Permission::validate(value),
        p if p == key::MODEL => CasbinModel::validate(value),
        p if p == key::ACCEPTED_ISSUER => AcceptedIssuer::validate(value),
        p if p == key::SIGNIN_FAILURES => SigninFailures::validate(value),
        p if p == key::ACCEPTED_ALGORITHMS => AcceptedAlgorithms::validate(value),
        _ => Ok(()),
    }
}

/// A stored record, read in place.
///
/// Holds the sled value (a reference-counted buffer, no copy) and hands out the archived form.
#[derive(Clone)]
pub struct Record<T> {
    bytes: IVec,
    _type: PhantomData<fn() -> T>,
}

impl<T: Stored> Record<T>
where
    T::Archived: Portable,
{
    /// Wraps bytes that came out of the `state` tree under `T::PREFIX`.
    fn from_state(bytes: IVec) -> Self {
        Record { bytes, _type: PhantomData }
    }

    /// The archived record, without deserializing.
    pub fn get(&self) -> &T::Archived {
        // SAFETY: only the state machine writes the `state` tree, and it validates every archive (bytecheck)
        // before writing it, from a command or from a snapshot (`validate_value`). rkyv's `unaligned`
        // feature makes archives readable at any address, so sled's inline (unaligned) values are fine.
        unsafe { rkyv::access_unchecked::<T::Archived>(&self.bytes) }
    }

    /// An owned copy of the record.
    pub fn to_owned(&self) -> Result<T, RaftError> {
        T::decode(&self.bytes)
    }
}

/// What an applied command changed, broadcast inside the node so caches can drop it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Organization(String),
    User {
        owner: String,
        name: String,
        id: String,
    },
    Application {
        name: String,
        client_id: String,
    },
    SigningKey(String),
    Role {
        owner: String,
        name: String,
    },
    Group {
        owner: String,
        name: String,
    },
    RefreshToken(String),
    Revocation(String),
    Permission {
        owner: String,
        name: String,
    },
    Model {
        owner: String,
        name: String,
    },
    AcceptedIssuer {
        application: String,
        issuer: String,
    },
    /// A snapshot replaced the whole state.
    Everything,
}

/// Read access to the identity state of this node, and the stream of applied changes.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: sled::Db,
    pub(crate) state: sled::Tree,
    pub(crate) changes: broadcast::Sender<Change>,
    /// Changes sent so far (see [`Store::changes_sent`]).
    pub(crate) sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    /// Opens (or creates) the state in an open sled database.
    pub fn open(db: &sled::Db) -> Result<Store, RaftError> {
        let state = db.open_tree("state")?;
        let (changes, _) = broadcast::channel(4096);
        Ok(Store { db: db.clone(), state, changes, sent: Default::default() })
    }

    /// How many changes have been broadcast. A write that returned has had its changes counted, so a
    /// subscriber that has handled this many has seen them (read-your-writes for caches).
    pub fn changes_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn broadcast(&self, change: Change) {
        // No receiver is fine: nothing caches yet.
        let _ = self.changes.send(change);
        self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Subscribes to applied changes. A receiver that lags must assume everything changed.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn record<T: Stored>(&self, key: &[u8]) -> Result<Option<Record<T>>, RaftError>
    where
        T::Archived: Portable,
    {
        Ok(self.state.get(key)?.map(Record::from_state))
    }

    fn records<T: Stored>(&self, prefix: &[u8]) -> impl Iterator<Item = Result<Record<T>, RaftError>> + use<T>
    where
        T::Archived: Portable,
    {
        self.state.scan_prefix(prefix).values().map(|v| Ok(Record::from_state(v?)))
    }

    /// Follows an index entry (whose value is a primary key) to its record.
    fn indexed<T: Stored>(&self, index_key: &[u8]) -> Result<Option<Record<T>>, RaftError>
    where
        T::Archived: Portable,
    {
        match self.state.get(index_key)? {
            Some(primary) => self.record(&primary),
            None => Ok(None),
        }
    }

    pub fn organization(&self, name: &str) -> Result<Option<Record<Organization>>, RaftError> {
        self.record(&key::org(name))
    }
    pub fn organizations(&self) -> impl Iterator<Item = Result<Record<Organization>, RaftError>> {
        self.records(key::ORG)
    }
    pub fn user(&self, owner: &str, name: &str) -> Result<Option<Record<User>>, RaftError> {
        self.record(&key::user(owner, name))
    }
    pub fn user_by_id(&self, id: &str) -> Result<Option<Record<User>>, RaftError> {
        self.indexed(&key::user_by_id(id))
    }
    pub fn user_by_email(&self, owner: &str, email: &str) -> Result<Option<Record<User>>, RaftError> {
        self.indexed(&key::user_by_email(owner, email))
    }
    /// Users of an organization, in name order.
    pub fn users(&self, owner: &str) -> impl Iterator<Item = Result<Record<User>, RaftError>> {
        self.records(&key::users_of(owner))
    }
    pub fn application(&self, name: &str) -> Result<Option<Record<Application>>, RaftError> {
        self.record(&key::app(name))
    }
    pub fn application_by_client_id(&self, client_id: &str) -> Result<Option<Record<Application>>, RaftError> {
        self.indexed(&key::app_by_client(client_id))
    }
    pub fn applications(&self) -> impl Iterator<Item = Result<Record<Application>, RaftError>> {
        self.records(key::APP)
    }
    pub fn signing_key(&self, kid: &str) -> Result<Option<Record<SigningKey>>, RaftError> {
        self.record(&key::signing_key(kid))
    }
    pub fn signing_keys(&self) -> impl Iterator<Item = Result<Record<SigningKey>, RaftError>> {
        self.records(key::SIGNING_KEY)
    }
    pub fn role(&self, owner: &str, name: &str) -> Result<Option<Record<Role>>, RaftError> {
        self.record(&key::role(owner, name))
    }
    pub fn roles(&self, owner: &str) -> impl Iterator<Item = Result<Record<Role>, RaftError>> {
        self.records(&key::roles_of(owner))
    }
    pub fn group(&self, owner: &str, name: &str) -> Result<Option<Record<Group>>, RaftError> {
        self.record(&key::group(owner, name))
    }
    pub fn groups(&self, owner: &str) -> impl Iterator<Item = Result<Record<Group>, RaftError>> {
        self.records(&key::groups_of(owner))
    }
    pub fn refresh_token(&self, id: &str) -> Result<Option<Record<RefreshToken>>, RaftError> {
        self.record(&key::refresh(id))
    }
    pub fn revocation(&self, jti: &str) -> Result<Option<Record<Revocation>>, RaftError> {
        self.record(&key::revocation(jti))
    }
    /// Whether an access token id is in the revocation set.
    pub fn is_revoked(&self, jti: &str) -> Result<bool, RaftError> {
        Ok(self.state.contains_key(key::revocation(jti))?)
    }
    pub fn permission(&self, owner: &str, name: &str) -> Result<Option<Record<Permission>>, RaftError> {
        self.record(&key::permission(owner, name))
    }
    pub fn permissions(&self, owner: &str) -> impl Iterator<Item = Result<Record<Permission>, RaftError>> {
        self.records(&key::permissions_of(owner))
    }
    pub fn model(&self, owner: &str, name: &str) -> Result<Option<Record<CasbinModel>>, RaftError> {
        self.record(&key::model(owner, name))
    }
    /// The failed password checks recorded for an account (see [`SigninFailures`]).
    pub fn signin_failures(&self, account: &str) -> Result<Option<Record<SigninFailures>>, RaftError> {
        self.record(&key::signin_failures(account))
    }
    /// The algorithms a signing key accepts besides its own, if it has such a record.
    pub fn accepted_algorithms(&self, kid: &str) -> Result<Option<Record<AcceptedAlgorithms>>, RaftError> {
        self.record(&key::accepted_algorithms(kid))
    }
    /// Whether tokens of `application` may carry `issuer` as `iss`.
    pub fn accepts_issuer(&self, application: &str, issuer: &str) -> Result<bool, RaftError> {
        Ok(self.state.contains_key(key::accepted_issuer(application, issuer))?)
    }

    /// Whether applying `cmd` would leave the state as it is: a `Put*` of a record equal to the stored one
    /// (a signing key counts as equal when everything but its sealed private half is), a revocation or
    /// refresh token already recorded. Importers use it to write only what changed.
    pub fn unchanged(&self, cmd: &Command) -> Result<bool, RaftError> {
        fn same<T: Stored + PartialEq>(store: &Store, k: &[u8], v: &T) -> Result<bool, RaftError>
        where
            T::Archived: Portable,
        {
            match store.state.get(k)? {
                Some(bytes) => Ok(T::decode(&bytes)? == *v),
                None => Ok(false),
            }
        }
        Ok(match cmd {
            Command::PutOrganization { org, .. } => same(self, &key::org(&org.name), org)?,
            Command::PutUser { user, .. } => same(self, &key::user(&user.owner, &user.name), user)?,
            Command::PutApplication { app, .. } => same(self, &key::app(&app.name), app)?,
            Command::PutSigningKey { key: sk, .. } => match self.state.get(key::signing_key(&sk.kid))? {
                Some(bytes) => {
                    let mut stored = SigningKey::decode(&bytes)?;
                    stored.private_key_sealed = sk.private_key_sealed.clone();
                    stored == *sk
                }
                None => false,
            },
            Command::PutRole { role, .. } => same(self, &key::role(&role.owner, &role.name), role)?,
            Command::PutGroup { group, .. } => same(self, &key::group(&group.owner, &group.name), group)?,
            Command::PutPermission { permission: p, .. } => same(self, &key::permission(&p.owner, &p.name), p)?,
            Command::PutModel { model: m, .. } => same(self, &key::model(&m.owner, &m.name), m)?,
            Command::PutAcceptedIssuer { accepted: a, .. } => {
                same(self, &key::accepted_issuer(&a.application, &a.issuer), a)?
            }
            Command::PutAcceptedAlgorithms { accepted: a, .. } => same(self, &key::accepted_algorithms(&a.kid), a)?,
            Command::Revoke { revocation } => self.state.contains_key(key::revocation(&revocation.jti))?,
            Command::IssueRefreshToken { token } => self.state.contains_key(key::refresh(&token.id))?,
            _ => false,
        })
    }

    /// Number of records under a prefix (admin statistics, tests).
    pub fn count(&self, prefix: &[u8]) -> usize {
        self.state.scan_prefix(prefix).count()
    }

    /// The index of the last applied log entry, if any.
    pub fn applied_index(&self) -> Result<Option<u64>, RaftError> {
        Ok(crate::storage::read_applied(&self.state)?.map(|l| l.index))
    }
}
