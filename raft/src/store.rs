//! The sled keyspace of the identity state and the zero-copy reads the hot paths use.
//!
//! All state lives in ONE sled tree under short key prefixes, so that everything a log entry changes, its
//! indexes and the applied log id are written in a single atomic sled batch. Values are rkyv archives. Only
//! the state machine ([`crate::apply`]) writes this tree.
//!
//! The tree is `state` in data dirs of earlier versions; a snapshot install builds the new state in a fresh
//! tree (`state.<generation>`) and then switches to it at once (see [`Store::switch_state`]): the name of the
//! live tree is kept in sled's default tree under [`STATE_TREE`].

use std::marker::PhantomData;
use std::sync::{Arc, PoisonError, RwLock};

use rkyv::rancor::Error as RkyvError;
use rkyv::{Archive, Portable};
use sled::IVec;
use tokio::sync::broadcast;

use crate::model::{
    AcceptedAlgorithms, AcceptedIssuer, AccountingSession, Admission, Application, BrowserSession, CasbinModel,
    CodeRedemption, Consent, DeviceAuthorization, Group, NtCredential, Organization, Passkey, Permission, RefreshToken,
    Revocation, Role, SigninFailures, SigningKey, TotpCredential, User,
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
    pub const ADMISSION: &[u8] = b"n\0";
    /// RADIUS accounting sessions: `R\0nas client\0acct session id`.
    pub const ACCOUNTING: &[u8] = b"R\0";
    /// Accounting indexes (values: the session's key), kept by the state machine with the sessions and
    /// carried by snapshots. Times are 16 hex digits, so keys sort by time.
    /// By organization and start time: `O\0org\0start\0nas client\0session id`.
    pub const ACCOUNTING_BY_ORG: &[u8] = b"O\0";
    /// By organization, user and start time: `U\0org\0user\0start\0nas client\0session id`.
    pub const ACCOUNTING_BY_USER: &[u8] = b"U\0";
    /// By the time of the latest event (what retention prunes by): `T\0last update\0nas client\0session id`.
    pub const ACCOUNTING_BY_AGE: &[u8] = b"T\0";
    /// NT-hash credentials (sealed), by user id: `N\0user id`.
    pub const NT_CREDENTIAL: &[u8] = b"N\0";
    /// Browser sessions by id: `S\0session id`; and their index by user: `s\0user id\0session id` (empty).
    pub const SESSION: &[u8] = b"S\0";
    pub const SESSION_BY_USER: &[u8] = b"s\0";
    /// Redeemed authorization codes, until they expire: `C\0code id`.
    pub const CODE: &[u8] = b"C\0";
    /// Consents: `K\0user id\0application`.
    pub const CONSENT: &[u8] = b"K\0";
    /// TOTP factors by user id: `Q\0user id`.
    pub const TOTP: &[u8] = b"Q\0";
    /// Passkeys: `W\0user id\0credential id`; and by credential id alone: `X\0credential id` (value: the
    /// user id).
    pub const PASSKEY: &[u8] = b"W\0";
    pub const PASSKEY_BY_CREDENTIAL: &[u8] = b"X\0";
    /// Device authorizations by device code digest: `D\0digest`; by user code: `E\0user code` (value: the
    /// digest).
    pub const DEVICE: &[u8] = b"D\0";
    pub const DEVICE_BY_USER_CODE: &[u8] = b"E\0";
    /// Directory indexes (LDAP equality lookups), derived from the users: rebuilt from them when a snapshot
    /// is installed or a data dir from before them is opened (see [`super::directory_index_entries`]).
    /// Users by lower-cased name: `w\0owner\0lower(name)\0name`.
    pub const USER_BY_NAME_CI: &[u8] = b"w\0";
    /// Users by lower-cased email, every user with that email: `j\0owner\0lower(email)\0name`.
    pub const USER_BY_MAIL: &[u8] = b"j\0";
    /// Group members: `h\0group owner\0group name\0user owner\0user name`.
    pub const MEMBER: &[u8] = b"h\0";
    /// Users by phone, every user with that phone: `z\0owner\0phone\0name`.
    pub const USER_BY_PHONE: &[u8] = b"z\0";
    /// The prefixes of the directory indexes.
    pub const DIRECTORY_INDEXES: [&[u8]; 4] = [USER_BY_NAME_CI, USER_BY_MAIL, MEMBER, USER_BY_PHONE];
    /// Raft bookkeeping kept in the same batch as the state: applied log id, membership.
    pub const META: &[u8] = b"m\0";
    pub const META_APPLIED: &[u8] = b"m\0applied";
    pub const META_MEMBERSHIP: &[u8] = b"m\0membership";
    /// Present once the directory indexes of the tree are complete.
    pub const META_DIRECTORY_INDEX: &[u8] = b"m\0directory_index.2";
    /// The layout of the record archives in this tree (see [`super::RECORD_FORMAT`]).
    pub const META_RECORD_FORMAT: &[u8] = b"m\0record_format";

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

    /// [`join`] followed by the separator: the prefix of every key under these parts.
    pub fn prefix(prefix: &[u8], parts: &[&str]) -> Vec<u8> {
        let mut k = join(prefix, parts);
        k.push(0);
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
        prefix(USER, &[owner])
    }
    pub fn user_by_id(id: &str) -> Vec<u8> {
        join(USER_BY_ID, &[id])
    }
    pub fn user_by_email(owner: &str, email: &str) -> Vec<u8> {
        join(USER_BY_EMAIL, &[owner, &email.to_lowercase()])
    }
    /// Prefix of the users of `owner` whose lower-cased name is `lower_name`.
    pub fn users_by_name_ci(owner: &str, lower_name: &str) -> Vec<u8> {
        prefix(USER_BY_NAME_CI, &[owner, lower_name])
    }
    /// Prefix of the users of `owner` whose lower-cased email is `lower_email`.
    pub fn users_by_mail(owner: &str, lower_email: &str) -> Vec<u8> {
        prefix(USER_BY_MAIL, &[owner, lower_email])
    }
    /// Prefix of the users of `owner` with this phone.
    pub fn users_by_phone(owner: &str, phone: &str) -> Vec<u8> {
        prefix(USER_BY_PHONE, &[owner, phone])
    }
    /// Prefix of the members of a group.
    pub fn members_of(group_owner: &str, group: &str) -> Vec<u8> {
        prefix(MEMBER, &[group_owner, group])
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
        prefix(ROLE, &[owner])
    }
    pub fn group(owner: &str, name: &str) -> Vec<u8> {
        join(GROUP, &[owner, name])
    }
    pub fn groups_of(owner: &str) -> Vec<u8> {
        prefix(GROUP, &[owner])
    }
    pub fn refresh(id: &str) -> Vec<u8> {
        join(REFRESH, &[id])
    }
    pub fn family_member(family: &str, id: &str) -> Vec<u8> {
        join(FAMILY, &[family, id])
    }
    pub fn family(family: &str) -> Vec<u8> {
        prefix(FAMILY, &[family])
    }
    pub fn revocation(jti: &str) -> Vec<u8> {
        join(REVOCATION, &[jti])
    }
    pub fn permission(owner: &str, name: &str) -> Vec<u8> {
        join(PERMISSION, &[owner, name])
    }
    pub fn permissions_of(owner: &str) -> Vec<u8> {
        prefix(PERMISSION, &[owner])
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
    pub fn admission(node_id: u64) -> Vec<u8> {
        join(ADMISSION, &[&node_id.to_string()])
    }
    pub fn accepted_issuers_of(application: &str) -> Vec<u8> {
        prefix(ACCEPTED_ISSUER, &[application])
    }
    pub fn nt_credential(user_id: &str) -> Vec<u8> {
        join(NT_CREDENTIAL, &[user_id])
    }
    pub fn session(id: &str) -> Vec<u8> {
        join(SESSION, &[id])
    }
    pub fn session_of_user(user_id: &str, id: &str) -> Vec<u8> {
        join(SESSION_BY_USER, &[user_id, id])
    }
    pub fn sessions_of_user(user_id: &str) -> Vec<u8> {
        prefix(SESSION_BY_USER, &[user_id])
    }
    pub fn code(code_id: &str) -> Vec<u8> {
        join(CODE, &[code_id])
    }
    pub fn consent(user_id: &str, application: &str) -> Vec<u8> {
        join(CONSENT, &[user_id, application])
    }
    pub fn consents_of(user_id: &str) -> Vec<u8> {
        prefix(CONSENT, &[user_id])
    }
    pub fn totp(user_id: &str) -> Vec<u8> {
        join(TOTP, &[user_id])
    }
    pub fn passkey(user_id: &str, credential_id: &str) -> Vec<u8> {
        join(PASSKEY, &[user_id, credential_id])
    }
    pub fn passkeys_of(user_id: &str) -> Vec<u8> {
        prefix(PASSKEY, &[user_id])
    }
    pub fn passkey_by_credential(credential_id: &str) -> Vec<u8> {
        join(PASSKEY_BY_CREDENTIAL, &[credential_id])
    }
    pub fn device(digest: &str) -> Vec<u8> {
        join(DEVICE, &[digest])
    }
    pub fn device_by_user_code(user_code: &str) -> Vec<u8> {
        join(DEVICE_BY_USER_CODE, &[user_code])
    }
    pub fn accounting(nas_client: &str, acct_session_id: &str) -> Vec<u8> {
        join(ACCOUNTING, &[nas_client, acct_session_id])
    }
    /// Prefix of every accounting session of a NAS client.
    pub fn accounting_of_nas(nas_client: &str) -> Vec<u8> {
        prefix(ACCOUNTING, &[nas_client])
    }
    /// Prefix of the accounting index entries of an organization.
    pub fn accounting_by_org(org: &str) -> Vec<u8> {
        prefix(ACCOUNTING_BY_ORG, &[org])
    }
    /// Prefix of the accounting index entries of a user of an organization.
    pub fn accounting_by_user(org: &str, user: &str) -> Vec<u8> {
        prefix(ACCOUNTING_BY_USER, &[org, user])
    }
    /// The key part of a time in the accounting indexes: 16 hex digits (negative times count as 0).
    pub fn time_part(unix: i64) -> String {
        format!("{:016x}", unix.max(0))
    }
    /// The first age-index key of a time: every session whose latest event is older sorts before it.
    pub fn accounting_age_bound(unix: i64) -> Vec<u8> {
        join(ACCOUNTING_BY_AGE, &[&time_part(unix)])
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
    ($($t:ty => $prefix:expr),* $(,)?) => {
    /// The key prefixes of the record types: every table of the state (a snapshot carries them all).
    pub const RECORD_PREFIXES: &[&[u8]] = &[$($prefix),*];
    $(
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
    Admission => key::ADMISSION,
    AccountingSession => key::ACCOUNTING,
    NtCredential => key::NT_CREDENTIAL,
    BrowserSession => key::SESSION,
    CodeRedemption => key::CODE,
    Consent => key::CONSENT,
    TotpCredential => key::TOTP,
    Passkey => key::PASSKEY,
    DeviceAuthorization => key::DEVICE,
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
        p if p == key::ADMISSION => Admission::validate(value),
        p if p == key::ACCOUNTING => AccountingSession::validate(value),
        p if p == key::NT_CREDENTIAL => NtCredential::validate(value),
        p if p == key::SESSION => BrowserSession::validate(value),
        p if p == key::CODE => CodeRedemption::validate(value),
        p if p == key::CONSENT => Consent::validate(value),
        p if p == key::TOTP => TotpCredential::validate(value),
        p if p == key::PASSKEY => Passkey::validate(value),
        p if p == key::DEVICE => DeviceAuthorization::validate(value),
        _ => Ok(()),
    }
}

/// The directory index entries (key, primary key) of a user: by lower-cased name, by lower-cased email,
/// and one per group it belongs to (`owner/name`, or a bare name in the user's organization).
pub fn directory_index_entries(u: &User) -> Vec<(Vec<u8>, Vec<u8>)> {
    let primary = key::user(&u.owner, &u.name);
    let mut out = Vec::with_capacity(2 + u.groups.len());
    out.push((key::join(key::USER_BY_NAME_CI, &[&u.owner, &u.name.to_lowercase(), &u.name]), primary.clone()));
    if !u.email.is_empty() {
        out.push((key::join(key::USER_BY_MAIL, &[&u.owner, &u.email.to_lowercase(), &u.name]), primary.clone()));
    }
    if !u.phone.is_empty() && !u.phone.contains('\0') {
        out.push((key::join(key::USER_BY_PHONE, &[&u.owner, &u.phone, &u.name]), primary.clone()));
    }
    for g in &u.groups {
        let (owner, name) = g.split_once('/').unwrap_or((&u.owner, g));
        if owner.contains('\0') || name.contains('\0') || name.is_empty() {
            continue;
        }
        out.push((key::join(key::MEMBER, &[owner, name, &u.owner, &u.name]), primary.clone()));
    }
    out
}

/// The accounting index entries of a session (their value is the session's key): by organization, by user
/// (when the session has one) and by the time of its latest event.
pub fn accounting_index_entries(s: &AccountingSession) -> Vec<Vec<u8>> {
    let (nas, id) = (s.nas_client.as_str(), s.acct_session_id.as_str());
    let start = key::time_part(s.start_time);
    let mut out = Vec::with_capacity(3);
    out.push(key::join(key::ACCOUNTING_BY_ORG, &[&s.organization, &start, nas, id]));
    if !s.user_name.is_empty() {
        out.push(key::join(key::ACCOUNTING_BY_USER, &[&s.organization, &s.user_name, &start, nas, id]));
    }
    out.push(key::join(key::ACCOUNTING_BY_AGE, &[&key::time_part(s.last_update), nas, id]));
    out
}

/// One page of accounting sessions, newest first, and how many there are in all.
pub struct AccountingPage {
    pub total: usize,
    pub sessions: Vec<Record<AccountingSession>>,
}

/// Makes the directory indexes of a state tree complete, unless it says they are: writes every user's
/// entries and the marker. For a data dir written before the indexes existed (they are derived data, like
/// a cache: nothing but the users decides them).
/// The layout of the record archives this build reads. rkyv archives are not self-describing: a record
/// written with fewer fields cannot be read with more, so a data dir records the layout it was written with
/// and a build refuses one of another layout, clearly, instead of misreading it. 2: applications and
/// organizations got their sign-in page settings.
pub const RECORD_FORMAT: &[u8] = b"2";

/// Checks (and, for an empty state, sets) the record layout of a state tree.
pub(crate) fn check_record_format(tree: &sled::Tree) -> Result<(), RaftError> {
    match tree.get(key::META_RECORD_FORMAT)? {
        Some(f) if f.as_ref() == RECORD_FORMAT => Ok(()),
        found => {
            let has_records = RECORD_PREFIXES.iter().any(|p| tree.scan_prefix(p).next().is_some());
            if found.is_none() && !has_records {
                tree.insert(key::META_RECORD_FORMAT, RECORD_FORMAT)?;
                return Ok(());
            }
            let found = found.map(|f| String::from_utf8_lossy(&f).into_owned()).unwrap_or_else(|| "1".into());
            Err(RaftError::Corrupt(format!(
                "this data dir holds records of layout {found}, and this build reads layout {}: start the Jeton \
                 version that wrote it, or import again (`jeton import`) into a new data dir",
                String::from_utf8_lossy(RECORD_FORMAT)
            )))
        }
    }
}

pub(crate) fn complete_directory_indexes(tree: &sled::Tree) -> Result<usize, RaftError> {
    if tree.get(key::META_DIRECTORY_INDEX)?.is_some() {
        return Ok(0);
    }
    let mut batch = sled::Batch::default();
    let (mut users, mut pending) = (0, 0);
    for v in tree.scan_prefix(key::USER).values() {
        let user = User::decode(&v?)?;
        for (k, primary) in directory_index_entries(&user) {
            batch.insert(k, primary);
            pending += 1;
        }
        users += 1;
        if pending >= 10_000 {
            tree.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    batch.insert(key::META_DIRECTORY_INDEX, b"1".to_vec());
    tree.apply_batch(batch)?;
    Ok(users)
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

/// Key in sled's default tree naming the live state tree (absent: [`LEGACY_STATE_TREE`]).
pub(crate) const STATE_TREE: &[u8] = b"jeton.state_tree";
/// The state tree of data dirs written before snapshot installs switched trees.
const LEGACY_STATE_TREE: &str = "state";

/// Whether a sled tree name is one of the state trees (the live one, or one being built or dropped).
fn is_state_tree(name: &[u8]) -> bool {
    name == LEGACY_STATE_TREE.as_bytes()
        || name.strip_prefix(b"state.").is_some_and(|g| !g.is_empty() && g.iter().all(u8::is_ascii_digit))
}

/// A handle on the state tree as it was when taken: reads that started before a snapshot install switched
/// trees finish on the old one, which is dropped only once nobody holds it.
#[derive(Clone)]
pub(crate) struct StateTree(Arc<(String, sled::Tree)>);

impl StateTree {
    fn name(&self) -> &str {
        &self.0 .0
    }
}

impl std::ops::Deref for StateTree {
    type Target = sled::Tree;
    fn deref(&self) -> &sled::Tree {
        &self.0 .1
    }
}

/// Read access to the identity state of this node, and the stream of applied changes.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: sled::Db,
    /// The live state tree. Replaced whole when a snapshot is installed ([`Store::switch_state`]).
    live: Arc<RwLock<StateTree>>,
    pub(crate) changes: broadcast::Sender<Change>,
    /// Changes sent so far (see [`Store::changes_sent`]).
    pub(crate) sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    /// Opens (or creates) the state in an open sled database.
    pub fn open(db: &sled::Db) -> Result<Store, RaftError> {
        let name = match db.get(STATE_TREE)? {
            Some(v) => String::from_utf8(v.to_vec())
                .ok()
                .filter(|n| is_state_tree(n.as_bytes()))
                .ok_or_else(|| RaftError::Corrupt("the name of the state tree is not one of ours".into()))?,
            None => LEGACY_STATE_TREE.to_string(),
        };
        let tree = db.open_tree(&name)?;
        // Left over: a tree a snapshot install was building when the node stopped, or the one it replaced.
        for other in db.tree_names() {
            if is_state_tree(&other) && other != name.as_bytes() {
                db.drop_tree(&other)?;
            }
        }
        check_record_format(&tree)?;
        let indexed = complete_directory_indexes(&tree)?;
        if indexed > 0 {
            tracing::info!(users = indexed, "built the directory indexes of a data dir written before them");
        }
        let (changes, _) = broadcast::channel(4096);
        let live = Arc::new(RwLock::new(StateTree(Arc::new((name, tree)))));
        Ok(Store { db: db.clone(), live, changes, sent: Default::default() })
    }

    /// The live state tree.
    pub(crate) fn state(&self) -> StateTree {
        self.live.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A new, empty tree to build a replacement of the whole state in (see [`Store::switch_state`]).
    pub(crate) fn new_state_tree(&self) -> Result<StateTree, RaftError> {
        let live = self.state();
        let generation = live.name().strip_prefix("state.").and_then(|g| g.parse::<u64>().ok()).unwrap_or(0);
        let name = format!("state.{}", generation + 1);
        // A leftover of an install that failed in this process.
        self.db.drop_tree(&name)?;
        let tree = self.db.open_tree(&name)?;
        Ok(StateTree(Arc::new((name, tree))))
    }

    /// Drops a tree from [`Store::new_state_tree`] that will not become the live state.
    pub(crate) fn discard_state_tree(&self, tree: StateTree) {
        let name = tree.name().to_string();
        drop(tree);
        if let Err(e) = self.db.drop_tree(&name) {
            tracing::warn!("dropping the unfinished state tree {name}: {e} (dropped at the next start)");
        }
    }

    /// Makes `next` (from [`Store::new_state_tree`], fully written) the live state, durably: once this
    /// returns, a restart opens `next`; before, it opens the previous tree and drops `next`. The previous
    /// tree is dropped in the background once the reads still using it are done.
    pub(crate) fn switch_state(&self, next: StateTree) -> Result<(), RaftError> {
        // Everything written to `next` is on disk before the pointer names it.
        self.db.flush()?;
        self.db.insert(STATE_TREE, next.name().as_bytes())?;
        self.db.flush()?;
        let previous = std::mem::replace(&mut *self.live.write().unwrap_or_else(PoisonError::into_inner), next);
        let db = self.db.clone();
        std::thread::spawn(move || {
            // Nobody can take a new handle on it any more; wait for the ones taken before.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
            while Arc::strong_count(&previous.0) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            if Arc::strong_count(&previous.0) == 1 {
                let name = previous.name().to_string();
                drop(previous);
                if let Err(e) = db.drop_tree(&name) {
                    tracing::warn!("dropping the state tree a snapshot replaced: {e} (dropped at the next start)");
                }
            }
        });
        Ok(())
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
        Ok(self.state().get(key)?.map(Record::from_state))
    }

    fn records<T: Stored>(&self, prefix: &[u8]) -> impl Iterator<Item = Result<Record<T>, RaftError>> + use<T>
    where
        T::Archived: Portable,
    {
        let tree = self.state();
        // The iterator keeps its handle: the tree stays while it is read.
        tree.scan_prefix(prefix).values().map(move |v| {
            let _reading = &tree;
            Ok(Record::from_state(v?))
        })
    }

    /// Follows an index entry (whose value is a primary key) to its record.
    fn indexed<T: Stored>(&self, index_key: &[u8]) -> Result<Option<Record<T>>, RaftError>
    where
        T::Archived: Portable,
    {
        let state = self.state();
        match state.get(index_key)? {
            Some(primary) => Ok(state.get(primary)?.map(Record::from_state)),
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
    /// Users of an organization in name order, starting after the user named `after` (from the first
    /// without it).
    pub fn users_after(
        &self,
        owner: &str,
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<Record<User>, RaftError>> + use<> {
        let prefix = key::users_of(owner);
        let tree = self.state();
        let iter = tree.range::<Vec<u8>, _>((
            match after {
                Some(name) => std::ops::Bound::Excluded(key::user(owner, name)),
                None => std::ops::Bound::Included(prefix.clone()),
            },
            std::ops::Bound::Unbounded,
        ));
        iter.map(move |kv| {
            let _reading = &tree;
            kv.map_err(RaftError::from)
        })
        .take_while(move |kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
        .map(|kv| kv.map(|(_, v)| Record::from_state(v)))
    }

    /// Users of an organization whose name equals `name` ignoring case.
    pub fn users_named_ci(&self, owner: &str, name: &str) -> Result<Vec<Record<User>>, RaftError> {
        self.index_scan(&key::users_by_name_ci(owner, &name.to_lowercase()))
    }
    /// Users of an organization whose email equals `email` ignoring case (all of them, unlike
    /// [`Store::user_by_email`]).
    pub fn users_with_email(&self, owner: &str, email: &str) -> Result<Vec<Record<User>>, RaftError> {
        self.index_scan(&key::users_by_mail(owner, &email.to_lowercase()))
    }
    /// Users of an organization with this phone number.
    pub fn users_with_phone(&self, owner: &str, phone: &str) -> Result<Vec<Record<User>>, RaftError> {
        self.index_scan(&key::users_by_phone(owner, phone))
    }
    /// Members of the group `owner/name` (users whose `groups` name it), in user order.
    pub fn group_members(&self, owner: &str, name: &str) -> Result<Vec<Record<User>>, RaftError> {
        self.index_scan(&key::members_of(owner, name))
    }

    /// Follows every index entry under a prefix to its record.
    fn index_scan<T: Stored>(&self, prefix: &[u8]) -> Result<Vec<Record<T>>, RaftError>
    where
        T::Archived: Portable,
    {
        let state = self.state();
        let mut out = Vec::new();
        for primary in state.scan_prefix(prefix).values() {
            if let Some(v) = state.get(primary?)? {
                out.push(Record::from_state(v));
            }
        }
        Ok(out)
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
        Ok(self.state().contains_key(key::revocation(jti))?)
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
    /// The pending admission of a node id (see [`Admission`]).
    pub fn admission(&self, node_id: u64) -> Result<Option<Record<Admission>>, RaftError> {
        self.record(&key::admission(node_id))
    }
    /// The NT-hash credential of a user (by id), sealed; current or not (see [`NtCredential::is_current_for`]).
    pub fn nt_credential(&self, user_id: &str) -> Result<Option<Record<NtCredential>>, RaftError> {
        self.record(&key::nt_credential(user_id))
    }
    /// A browser session by id (hex SHA-256 of its cookie), live or not (see [`BrowserSession::is_live`]).
    pub fn session(&self, id: &str) -> Result<Option<Record<BrowserSession>>, RaftError> {
        self.record(&key::session(id))
    }
    /// Every browser session, live or not (expired ones until `Prune` drops them), in id order.
    pub fn sessions(&self) -> impl Iterator<Item = Result<Record<BrowserSession>, RaftError>> {
        self.records(key::SESSION)
    }
    /// The sessions of a user (by id).
    pub fn sessions_of_user(&self, user_id: &str) -> Result<Vec<Record<BrowserSession>>, RaftError> {
        self.index_scan(&key::sessions_of_user(user_id))
    }
    /// Whether an authorization code was redeemed (it is remembered until it expires).
    pub fn code_redemption(&self, code_id: &str) -> Result<Option<Record<CodeRedemption>>, RaftError> {
        self.record(&key::code(code_id))
    }
    pub fn consent(&self, user_id: &str, application: &str) -> Result<Option<Record<Consent>>, RaftError> {
        self.record(&key::consent(user_id, application))
    }
    /// Every consent, by user id and application.
    pub fn consents(&self) -> impl Iterator<Item = Result<Record<Consent>, RaftError>> {
        self.records(key::CONSENT)
    }
    pub fn consents_of(&self, user_id: &str) -> impl Iterator<Item = Result<Record<Consent>, RaftError>> {
        self.records(&key::consents_of(user_id))
    }
    pub fn totp(&self, user_id: &str) -> Result<Option<Record<TotpCredential>>, RaftError> {
        self.record(&key::totp(user_id))
    }
    pub fn passkey(&self, user_id: &str, credential_id: &str) -> Result<Option<Record<Passkey>>, RaftError> {
        self.record(&key::passkey(user_id, credential_id))
    }
    pub fn passkeys_of(&self, user_id: &str) -> impl Iterator<Item = Result<Record<Passkey>, RaftError>> {
        self.records(&key::passkeys_of(user_id))
    }
    /// A passkey by its credential id alone (passwordless sign-in names no user).
    pub fn passkey_by_credential(&self, credential_id: &str) -> Result<Option<Record<Passkey>>, RaftError> {
        self.indexed(&key::passkey_by_credential(credential_id))
    }
    pub fn device_authorization(&self, digest: &str) -> Result<Option<Record<DeviceAuthorization>>, RaftError> {
        self.record(&key::device(digest))
    }
    pub fn device_authorization_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<Record<DeviceAuthorization>>, RaftError> {
        self.indexed(&key::device_by_user_code(user_code))
    }
    /// The accounting session of a NAS client and `Acct-Session-Id`.
    pub fn accounting_session(
        &self,
        nas_client: &str,
        acct_session_id: &str,
    ) -> Result<Option<Record<AccountingSession>>, RaftError> {
        self.record(&key::accounting(nas_client, acct_session_id))
    }
    /// The accounting sessions of an organization, newest (by start time) first: `limit` of them after
    /// skipping `offset`, and the total.
    pub fn accounting_sessions(&self, org: &str, offset: usize, limit: usize) -> Result<AccountingPage, RaftError> {
        self.accounting_page(&key::accounting_by_org(org), offset, limit)
    }
    /// The accounting sessions of a user (the login as recorded) of an organization, newest first, paged as
    /// [`Store::accounting_sessions`].
    pub fn accounting_sessions_of_user(
        &self,
        org: &str,
        user: &str,
        offset: usize,
        limit: usize,
    ) -> Result<AccountingPage, RaftError> {
        self.accounting_page(&key::accounting_by_user(org, user), offset, limit)
    }

    /// Follows the accounting index entries under `prefix`, newest first; only those of the page are read.
    fn accounting_page(&self, prefix: &[u8], offset: usize, limit: usize) -> Result<AccountingPage, RaftError> {
        let state = self.state();
        let mut page = AccountingPage { total: 0, sessions: Vec::new() };
        for entry in state.scan_prefix(prefix).values().rev() {
            let primary = entry?;
            page.total += 1;
            if page.total <= offset || page.sessions.len() >= limit {
                continue;
            }
            // An index entry only ever names a session key; anything else is not read as one.
            if !primary.starts_with(key::ACCOUNTING) {
                return Err(RaftError::Corrupt("an accounting index entry names another record".into()));
            }
            if let Some(v) = state.get(&primary)? {
                page.sessions.push(Record::from_state(v));
            }
        }
        Ok(page)
    }

    /// Whether tokens of `application` may carry `issuer` as `iss`.
    pub fn accepts_issuer(&self, application: &str, issuer: &str) -> Result<bool, RaftError> {
        Ok(self.state().contains_key(key::accepted_issuer(application, issuer))?)
    }

    /// Whether applying `cmd` would leave the state as it is: a `Put*` of a record equal to the stored one
    /// (a signing key counts as equal when everything but its sealed private half is), a revocation or
    /// refresh token already recorded. Importers use it to write only what changed.
    pub fn unchanged(&self, cmd: &Command) -> Result<bool, RaftError> {
        fn same<T: Stored + PartialEq>(store: &Store, k: &[u8], v: &T) -> Result<bool, RaftError>
        where
            T::Archived: Portable,
        {
            match store.state().get(k)? {
                Some(bytes) => Ok(T::decode(&bytes)? == *v),
                None => Ok(false),
            }
        }
        Ok(match cmd {
            Command::PutOrganization { org, .. } => same(self, &key::org(&org.name), org)?,
            Command::PutUser { user, .. } => same(self, &key::user(&user.owner, &user.name), user)?,
            Command::PutApplication { app, .. } => same(self, &key::app(&app.name), app)?,
            Command::PutSigningKey { key: sk, .. } => match self.state().get(key::signing_key(&sk.kid))? {
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
            Command::Revoke { revocation } => self.state().contains_key(key::revocation(&revocation.jti))?,
            Command::IssueRefreshToken { token } => self.state().contains_key(key::refresh(&token.id))?,
            _ => false,
        })
    }

    /// Number of records under a prefix (admin statistics, tests).
    pub fn count(&self, prefix: &[u8]) -> usize {
        self.state().scan_prefix(prefix).count()
    }

    /// The index of the last applied log entry, if any.
    pub fn applied_index(&self) -> Result<Option<u64>, RaftError> {
        Ok(crate::storage::read_applied(&self.state())?.map(|l| l.index))
    }
}

#[cfg(test)]
mod tests {
    use super::key::*;

    /// Every table and index has a prefix of its own: two kinds of keys under one prefix would be read as
    /// each other. (A branch adding a prefix adds it here, where a clash with another branch's shows.)
    #[test]
    fn key_prefixes_are_distinct() {
        let all: &[&[u8]] = &[
            ORG,
            USER,
            USER_BY_ID,
            USER_BY_EMAIL,
            APP,
            APP_BY_CLIENT,
            SIGNING_KEY,
            ROLE,
            GROUP,
            REFRESH,
            FAMILY,
            REVOCATION,
            PERMISSION,
            MODEL,
            ACCEPTED_ISSUER,
            SIGNIN_FAILURES,
            ACCEPTED_ALGORITHMS,
            ADMISSION,
            USER_BY_NAME_CI,
            USER_BY_MAIL,
            MEMBER,
            USER_BY_PHONE,
            META,
            ACCOUNTING,
            ACCOUNTING_BY_ORG,
            ACCOUNTING_BY_USER,
            ACCOUNTING_BY_AGE,
            NT_CREDENTIAL,
            SESSION,
            SESSION_BY_USER,
            CODE,
            CONSENT,
            TOTP,
            PASSKEY,
            PASSKEY_BY_CREDENTIAL,
            DEVICE,
            DEVICE_BY_USER_CODE,
        ];
        for (i, p) in all.iter().enumerate() {
            assert_eq!((p.len(), p[1]), (2, 0), "{:?}: a letter and NUL", String::from_utf8_lossy(p));
            assert!(!all[..i].contains(p), "{:?} twice", String::from_utf8_lossy(p));
        }
        for p in super::RECORD_PREFIXES {
            assert!(all.contains(p), "{:?} missing above", String::from_utf8_lossy(p));
        }
    }
}
