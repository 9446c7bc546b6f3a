//! The records of the identity state.
//!
//! Every record derives serde (it travels inside a [`crate::Command`] through the Raft log and in the admin
//! API) and rkyv (it is stored in sled as an archive that the hot paths read in place, without
//! deserializing). rkyv is built with the `unaligned` feature, so an archive can be read straight out of a
//! sled value whatever its alignment; archives are validated once, when they enter the node (see
//! [`crate::store::Record`]).
//!
//! Field names follow Casdoor's where Casdoor has the same field, so an import maps one to one.

use std::collections::BTreeMap;

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use serde::{Deserialize, Serialize};

/// An organization: the tenant users belong to and whose password policy applies to them.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Organization {
    pub name: String,
    pub display_name: String,
    /// RFC 3339.
    pub created_time: String,
    /// Default password scheme: new and changed passwords are hashed with it (Casdoor `password_type`).
    pub password_type: String,
    /// Organization-wide salt, tried first when a password is verified (Casdoor §4.2).
    pub password_salt: String,
    /// A password that opens every account of the organization, stored hashed with the organization's
    /// scheme and salt. Only a hash match counts (never a comparison with the stored string, Casdoor 11.4).
    pub master_password: String,
    /// Soft deletion: deleting a user marks it deleted instead of removing it.
    pub enable_soft_deletion: bool,
    /// Tags users may carry (LDAP searches by tag).
    pub tags: Vec<String>,
    /// Token format preset for new applications of this organization (empty: Jeton's default).
    pub default_token_format: String,
    /// Branding of the sign-in pages: a logo URL (https or a data: URL) and the primary colour (`#rrggbb`).
    pub logo: String,
    pub theme_color: String,
    /// Every user must sign in with a second factor (TOTP or a passkey); one without is asked to enrol.
    pub require_mfa: bool,
}

/// A user with its password hash and the scheme of that hash.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct User {
    /// Organization name.
    pub owner: String,
    /// Username, unique in the organization.
    pub name: String,
    /// Stable id (UUID); the `sub` of this user's tokens.
    pub id: String,
    pub created_time: String,
    pub updated_time: String,
    pub deleted_time: String,
    /// `normal-user` or an organization-defined type.
    pub r#type: String,
    /// Stored password or hash; empty means the user has no local password.
    pub password: String,
    pub password_salt: String,
    /// Hash scheme of `password`; empty means the organization's scheme.
    pub password_type: String,
    pub display_name: String,
    pub first_name: String,
    pub last_name: String,
    pub avatar: String,
    pub email: String,
    pub email_verified: bool,
    pub phone: String,
    pub country_code: String,
    pub region: String,
    pub location: String,
    pub address: Vec<String>,
    pub affiliation: String,
    pub title: String,
    pub homepage: String,
    pub bio: String,
    /// Free text; `guest-user` blocks direct sign-in.
    pub tag: String,
    pub language: String,
    pub gender: String,
    pub birthday: String,
    pub real_name: String,
    pub is_verified: bool,
    pub score: i64,
    /// Organization administrator.
    pub is_admin: bool,
    /// Disabled: no login, tokens inactive.
    pub is_forbidden: bool,
    /// Soft-deleted: no login, tokens inactive.
    pub is_deleted: bool,
    pub signup_application: String,
    /// Non-empty: the password is checked against an upstream LDAP server, not the local hash.
    pub ldap: String,
    /// Group ids `owner/name` the user belongs to (authoritative membership).
    pub groups: Vec<String>,
    /// Custom string attributes.
    pub properties: BTreeMap<String, String>,
    /// POSIX uid for the LDAP server; 0 = derived from the name.
    pub uid_number: i64,
    /// Non-empty: MFA enabled (`app`, `sms`, `email`, ...).
    pub preferred_mfa_type: String,
    /// Base32 TOTP secret. A secret: never put into a token or an API answer.
    pub totp_secret: String,
    pub last_change_password_time: String,
    pub need_update_password: bool,
}

impl User {
    /// `owner/name`, the id other records refer to this user by.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// One extra claim of a `JWT-Custom` application (Casdoor `token_attributes`).
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct TokenAttribute {
    pub name: String,
    /// `Existing Field` or a template category.
    pub category: String,
    pub value: String,
    /// `String` (first result) or `Array`.
    pub r#type: String,
}

/// An OAuth client.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Application {
    /// Always `admin` (Casdoor's convention).
    pub owner: String,
    /// Globally unique application name.
    pub name: String,
    pub display_name: String,
    pub created_time: String,
    /// Organization whose users sign in to this application.
    pub organization: String,
    pub client_id: String,
    /// SHA-256 of the client secret. The secret itself is never stored.
    pub client_secret_digest: Vec<u8>,
    pub redirect_uris: Vec<String>,
    /// Grant types this client may use.
    pub grant_types: Vec<String>,
    /// Allowed scope names; empty means any scope is passed through.
    pub scopes: Vec<String>,
    /// `JWT`, `JWT-Empty`, `JWT-Standard` or `JWT-Custom` (Casdoor §5.4).
    pub token_format: String,
    /// Kid of the signing key (Casdoor: the cert name).
    pub cert: String,
    /// Access token lifetime in (possibly fractional) hours.
    pub expire_in_hours: f64,
    /// Refresh token lifetime in hours; 0 = same as the access token.
    pub refresh_expire_in_hours: f64,
    /// User fields put into `JWT-Custom` tokens.
    pub token_fields: Vec<String>,
    pub token_attributes: Vec<TokenAttribute>,
    /// Failed password checks before the account is frozen (0 = 5).
    pub failed_signin_limit: i32,
    /// Minutes an account stays frozen (0 = 15).
    pub failed_signin_frozen_time: i32,
    /// Branding of the sign-in pages (empty: the organization's).
    pub logo: String,
    pub theme_color: String,
    pub homepage_url: String,
    /// A first-party application: users are not asked to consent to its scopes.
    pub skip_consent: bool,
    /// A public client (a single-page or native app) has no secret: it must use PKCE.
    pub public_client: bool,
    /// Opt-in, documented: a redirect URI registered as `https://*.example.com/path` also accepts any
    /// sub-domain of example.com with that exact path (Casdoor's sub-domain rule, made explicit).
    pub redirect_uri_subdomains: bool,
    /// Where RP-initiated logout may send the browser back to (exact match).
    pub post_logout_redirect_uris: Vec<String>,
    /// Browser session lifetime and idle timeout for sign-ins started at this application, seconds (0: the
    /// node's `[sessions]` settings).
    pub session_lifetime_secs: i64,
    pub session_idle_secs: i64,
}

/// The algorithms a signing key can have.
pub const SIGNING_ALGORITHMS: &[&str] =
    &["EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

/// A token signing key. The private half is encrypted at rest with the node's key-encryption key.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SigningKey {
    /// Key id, the JWT `kid` (Casdoor: the cert name).
    pub kid: String,
    /// `admin` or an organization name.
    pub owner: String,
    pub display_name: String,
    /// One of [`SIGNING_ALGORITHMS`].
    pub algorithm: String,
    /// Unix seconds.
    pub created_at: i64,
    /// PEM of the public key (SubjectPublicKeyInfo).
    pub public_key_pem: String,
    /// PEM X.509 certificate, when the key came with one (published as `x5c`).
    pub certificate: String,
    /// AES-256-GCM encrypted PKCS#8 DER of the private key: 12-byte nonce then ciphertext and tag.
    pub private_key_sealed: Vec<u8>,
    /// 0: active. Otherwise the key no longer signs and leaves the JWKS at this unix time, once every
    /// token it signed has expired.
    pub retire_at: i64,
}

/// A role: users and groups, and sub-roles whose members are members of this role.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Role {
    pub owner: String,
    pub name: String,
    pub display_name: String,
    pub created_time: String,
    pub description: String,
    /// `org/user` ids.
    pub users: Vec<String>,
    /// `org/group` ids.
    pub groups: Vec<String>,
    /// `org/role` ids of sub-roles.
    pub roles: Vec<String>,
    pub domains: Vec<String>,
    pub is_enabled: bool,
}

/// A group of users. Membership is held by the users (`User::groups`).
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Group {
    pub owner: String,
    pub name: String,
    pub display_name: String,
    pub created_time: String,
    /// `Virtual` or `Physical`.
    pub r#type: String,
    /// Parent group name; the organization name for a top group.
    pub parent_id: String,
    pub is_top_group: bool,
    pub is_enabled: bool,
    /// POSIX gid; 0 = derived from the name.
    pub gid_number: i64,
}

/// Where a refresh token stands in its family.
#[derive(
    Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default,
)]
pub enum RefreshState {
    /// May be exchanged once.
    #[default]
    Active,
    /// Already exchanged; presenting it again is reuse and revokes the family.
    Rotated,
    /// Revoked (by the client, an admin, or reuse detection).
    Revoked,
}

/// A refresh token's server-side state. The token itself is a signed JWT whose `jti` is `id`.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct RefreshToken {
    /// The refresh token's `jti`.
    pub id: String,
    /// The first token's id; every rotation keeps it.
    pub family: String,
    /// Application name.
    pub application: String,
    /// `org/name` of the user when the token was issued (for logs and audits). What binds the token to its
    /// user is the user's id, signed into the token as `sub`: a user deleted and created again under the
    /// same name has another id, and the token is not theirs.
    pub user: String,
    pub scope: String,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
    /// `jti` and expiry of the access token minted together with this refresh token, so that revoking the
    /// family revokes it too.
    pub access_jti: String,
    pub access_expires_at: i64,
    pub state: RefreshState,
}

/// A revoked access token, kept until the token would have expired anyway.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Revocation {
    pub jti: String,
    /// Unix seconds; the record is pruned after this.
    pub expires_at: i64,
    pub revoked_at: i64,
}

/// A permission: who (users, groups, roles) may do what (actions) on which resources, under a Casbin model.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Permission {
    pub owner: String,
    pub name: String,
    pub display_name: String,
    pub created_time: String,
    pub description: String,
    /// `org/user` ids (or `org/*`).
    pub users: Vec<String>,
    /// `org/group` ids (or `*`).
    pub groups: Vec<String>,
    /// `org/role` ids.
    pub roles: Vec<String>,
    pub domains: Vec<String>,
    /// Casbin model id `owner/name`; empty = the built-in RBAC model.
    pub model: String,
    pub adapter: String,
    /// `Application`, `API`, `Custom`, ...
    pub resource_type: String,
    pub resources: Vec<String>,
    pub actions: Vec<String>,
    /// `Allow` or `Deny`.
    pub effect: String,
    pub is_enabled: bool,
    /// RFC 3339; reached = no longer in force.
    pub expire_time: String,
    pub submitter: String,
    pub approver: String,
    pub approve_time: String,
    /// `Approved` or `Pending`.
    pub state: String,
    /// The Casbin policy lines of this permission: `ptype, v0, .., v5` each (Casdoor `permission_rule`).
    pub policies: Vec<Vec<String>>,
}

/// A Casbin model (the `[request_definition]` ... `[matchers]` text) permissions are enforced with.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct CasbinModel {
    pub owner: String,
    pub name: String,
    pub display_name: String,
    pub created_time: String,
    pub description: String,
    pub model_text: String,
}

/// An issuer other than the node's own whose tokens an application's clients may still present: tokens
/// issued before a move to Jeton (e.g. by Casdoor), signed with a key the node holds. Recorded per
/// application, so a foreign `iss` is only accepted on tokens of that application.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct AcceptedIssuer {
    /// Application name.
    pub application: String,
    /// The `iss` value, exactly.
    pub issuer: String,
    /// Where it came from (e.g. `casdoor import`).
    pub source: String,
}

/// A node the cluster lets in: the id it will join as, and the digest of the join token it must show
/// (`jeton cluster admit`, or the bootstrap admissions of a new cluster). Used up by the next membership
/// change that names the id (it joined) or removes it: a removed node needs a new admission to come back.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Admission {
    pub node_id: u64,
    /// SHA-256 of the join token's secret part, lower-case hex. The token itself is never stored.
    pub token_digest: String,
    /// Unix seconds; the token is refused from then on (and the admission pruned).
    pub expires_at: i64,
    pub created_at: i64,
}

/// Failed password checks of one account, counted for the whole cluster (Casdoor's `signin_wrong_times` and
/// `last_signin_wrong_time`, §4.5, kept apart from the user record so that a failed sign-in rewrites a few
/// bytes instead of the user).
///
/// The account is `user:<user id>`, or `login:<org>/<digest of the login>` when no user matched the login
/// (an unknown name locks exactly like a real one, so the lockout tells nothing about who exists).
/// All times are unix seconds, given by the command that recorded the failure, so every node computes the
/// same record.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SigninFailures {
    pub account: String,
    /// Failures since the count was last forgotten or reset, at most the limit.
    pub count: u32,
    /// Non-zero: the account refuses password checks until then (the limit was reached).
    pub locked_until: i64,
    /// The count means nothing from then on (one frozen time after the last failure); the record is pruned.
    pub forget_at: i64,
}

impl SigninFailures {
    /// The record after one more failure at `now`, with the application's `limit` (≥ 1) and frozen time.
    /// A failure while the account is locked (an attempt that was already running) changes nothing.
    pub fn after_failure(
        previous: Option<&SigninFailures>,
        account: &str,
        now: i64,
        limit: u32,
        frozen_secs: i64,
    ) -> Self {
        let limit = limit.max(1);
        if let Some(p) = previous {
            if p.locked_at(now) {
                return p.clone();
            }
        }
        let count = previous.map(|p| p.count_at(now)).unwrap_or(0).saturating_add(1).min(limit);
        let forget_at = now.saturating_add(frozen_secs.max(0));
        SigninFailures {
            account: account.to_string(),
            count,
            locked_until: if count >= limit { forget_at } else { 0 },
            forget_at,
        }
    }

    /// Failures that still count at `now`.
    pub fn count_at(&self, now: i64) -> u32 {
        if now < self.forget_at {
            self.count
        } else {
            0
        }
    }

    /// Whether the account is locked at `now`.
    pub fn locked_at(&self, now: i64) -> bool {
        now < self.locked_until
    }
}

/// More algorithms a signing key's tokens may carry besides the one it signs with (an imported key:
/// Casdoor signs with the algorithm of each *application* using a cert, whatever the cert row says, so the
/// tokens it issued with one key may carry several). Keys without such a record accept only their own
/// algorithm. A record of its own, not a field of [`SigningKey`]: records are archived in place and
/// commands are in the log in a positional format, so an existing record's layout never changes.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct AcceptedAlgorithms {
    /// The signing key's kid.
    pub kid: String,
    /// JWS algorithms (each one of [`SIGNING_ALGORITHMS`]); the key's own algorithm is always accepted.
    pub algorithms: Vec<String>,
}

/// `Acct-Status-Type` (RFC 2866 §5.1) of an accounting event: the values a session record is built from.
/// Other values (RFC 2867 tunnel events, `Failed`) are not recorded; the listener drops them.
#[derive(
    Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default,
)]
pub enum AccountingStatus {
    /// 1: the session started.
    #[default]
    Start,
    /// 3: the session goes on; the counters so far.
    InterimUpdate,
    /// 2: the session ended; the final counters.
    Stop,
    /// 7: the NAS (re)started. Every session of that NAS still open is over.
    AccountingOn,
    /// 8: the NAS is going down. Every session of that NAS still open is over.
    AccountingOff,
}

impl AccountingStatus {
    /// The status of an `Acct-Status-Type` value, if it is one of those recorded.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => AccountingStatus::Start,
            2 => AccountingStatus::Stop,
            3 => AccountingStatus::InterimUpdate,
            7 => AccountingStatus::AccountingOn,
            8 => AccountingStatus::AccountingOff,
            _ => return None,
        })
    }

    /// The `Acct-Status-Type` value.
    pub fn code(self) -> u32 {
        match self {
            AccountingStatus::Start => 1,
            AccountingStatus::Stop => 2,
            AccountingStatus::InterimUpdate => 3,
            AccountingStatus::AccountingOn => 7,
            AccountingStatus::AccountingOff => 8,
        }
    }

    /// The RFC's name of the value (`Interim-Update`, `Accounting-On`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AccountingStatus::Start => "Start",
            AccountingStatus::Stop => "Stop",
            AccountingStatus::InterimUpdate => "Interim-Update",
            AccountingStatus::AccountingOn => "Accounting-On",
            AccountingStatus::AccountingOff => "Accounting-Off",
        }
    }

    /// Which of two events at the same second is the later one in a session's life: a start comes before
    /// updates, updates before the stop, and the stop before the NAS restart that would close it anyway.
    fn rank(self) -> u8 {
        match self {
            AccountingStatus::Start => 0,
            AccountingStatus::InterimUpdate => 1,
            AccountingStatus::Stop => 2,
            AccountingStatus::AccountingOn | AccountingStatus::AccountingOff => 3,
        }
    }

    /// Whether the status belongs to one session (not a whole NAS).
    pub fn is_session_event(self) -> bool {
        matches!(self, AccountingStatus::Start | AccountingStatus::InterimUpdate | AccountingStatus::Stop)
    }
}

/// `Acct-Terminate-Cause` NAS-Reboot (RFC 2866 §5.10).
pub const TERMINATE_CAUSE_NAS_REBOOT: u32 = 11;

/// One Accounting-Request (RFC 2866) as the RADIUS listener decoded it, recorded by
/// [`crate::Command::RecordAccounting`]. Text attributes are empty and optional numbers `None` when the
/// packet did not carry them.
///
/// Everything that depends on time is in the event (`event_time`), so every node applies it the same way.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct AccountingEvent {
    /// `Acct-Status-Type`.
    pub status: AccountingStatus,
    /// Unix seconds when the NAS produced the event: the time the node received the packet minus its
    /// `Acct-Delay-Time` (so a retransmission carries the same time as the original).
    pub event_time: i64,
    /// The RADIUS client the packet came from, as the listener knows it: its configured name, or its source
    /// address when clients are not named. Sessions are keyed by it and `acct_session_id`: a NAS cannot
    /// touch another's sessions by sending their ids. A name: non-empty, without `/` or NUL.
    pub nas_client: String,
    /// `Acct-Session-Id` (44). Required (non-empty) for Start, Interim-Update and Stop; Accounting-On/Off
    /// may leave it empty.
    pub acct_session_id: String,
    /// `Acct-Multi-Session-Id` (50).
    pub acct_multi_session_id: String,
    /// The organization the session belongs to, as the listener worked it out (Casdoor: the `org/` part of
    /// `User-Name`, else `Class`, else the default organization). Must exist. Ignored for Accounting-On/Off.
    pub organization: String,
    /// The login as sent in `User-Name` (1), without an `org/` prefix that named the organization.
    pub user_name: String,
    /// `Acct-Session-Time` (46), seconds.
    pub session_time: u64,
    /// `Acct-Input-Octets` (42) with `Acct-Input-Gigawords` (52, RFC 2869) as the high 32 bits: see
    /// [`AccountingEvent::octets`].
    pub input_octets: u64,
    /// `Acct-Output-Octets` (43) with `Acct-Output-Gigawords` (53).
    pub output_octets: u64,
    /// `Acct-Input-Packets` (47).
    pub input_packets: u64,
    /// `Acct-Output-Packets` (48).
    pub output_packets: u64,
    /// `Acct-Terminate-Cause` (49); taken from Stop events only.
    pub terminate_cause: Option<u32>,
    /// `NAS-Identifier` (32).
    pub nas_identifier: String,
    /// `NAS-IP-Address` (4) or `NAS-IPv6-Address` (95), as text.
    pub nas_ip_address: String,
    /// `NAS-Port` (5).
    pub nas_port: Option<u32>,
    /// `NAS-Port-Id` (87).
    pub nas_port_id: String,
    /// `NAS-Port-Type` (61).
    pub nas_port_type: Option<u32>,
    /// `Service-Type` (6).
    pub service_type: Option<u32>,
    /// `Framed-IP-Address` (8), as text.
    pub framed_ip_address: String,
    /// `Framed-IP-Netmask` (9), as text.
    pub framed_ip_netmask: String,
    /// `Calling-Station-Id` (31).
    pub calling_station_id: String,
    /// `Called-Station-Id` (30).
    pub called_station_id: String,
}

impl AccountingEvent {
    /// An octet counter from its low 32 bits (`Acct-*-Octets`) and the times it wrapped around
    /// (`Acct-*-Gigawords`, RFC 2869 §5.1-5.2).
    pub fn octets(octets: u32, gigawords: u32) -> u64 {
        (u64::from(gigawords) << 32) | u64::from(octets)
    }
}

/// One RADIUS accounting session (Casdoor's `radius_accounting` row), built from the events of one
/// (`nas_client`, `acct_session_id`).
///
/// How events combine ([`AccountingSession::after_event`]), whatever order they arrive in:
/// - counters (session time, octets, packets) only grow: each is the largest value any event reported
///   (they are totals since the session started, so the largest is the latest);
/// - descriptive attributes (NAS, port, addresses, stations) are those of the latest event that carried
///   them; an older event only fills what is still empty;
/// - the status is that of the latest event (same second: Start < Interim-Update < Stop < Accounting-On/Off);
/// - a Start sets the start time; a session first seen through an Interim-Update or Stop (its Start lost
///   or late) starts at that event's time minus its session time;
/// - the organization and user are those of the event that created the record;
/// - an event newer than the session's Stop, or a Start newer than everything recorded, begins a new
///   session under the same key (a NAS reusing session ids): the record is replaced.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct AccountingSession {
    pub nas_client: String,
    pub acct_session_id: String,
    pub acct_multi_session_id: String,
    pub organization: String,
    pub user_name: String,
    /// The status of the latest event; Accounting-On/Off when a NAS restart closed the session.
    pub status: AccountingStatus,
    /// Unix seconds.
    pub start_time: i64,
    /// Unix seconds of the latest event.
    pub last_update: i64,
    /// Unix seconds; 0 while the session is open.
    pub stop_time: i64,
    pub session_time: u64,
    pub input_octets: u64,
    pub output_octets: u64,
    pub input_packets: u64,
    pub output_packets: u64,
    pub terminate_cause: Option<u32>,
    pub nas_identifier: String,
    pub nas_ip_address: String,
    pub nas_port: Option<u32>,
    pub nas_port_id: String,
    pub nas_port_type: Option<u32>,
    pub service_type: Option<u32>,
    pub framed_ip_address: String,
    pub framed_ip_netmask: String,
    pub calling_station_id: String,
    pub called_station_id: String,
    /// Events applied to this session (duplicates included).
    pub event_count: u64,
}

impl AccountingSession {
    /// The session after one more session event (Start, Interim-Update or Stop) of its key: `previous` is
    /// the stored record, if any. See the type's documentation for the rules.
    pub fn after_event(previous: Option<&AccountingSession>, e: &AccountingEvent) -> AccountingSession {
        let Some(p) = previous else { return Self::from_event(e) };
        let stopped_before = p.stop_time != 0 && e.event_time > p.stop_time;
        let restarted = e.status == AccountingStatus::Start && e.event_time > p.last_update;
        if stopped_before || restarted {
            return Self::from_event(e);
        }
        let mut s = p.clone();
        let newer = (e.event_time, e.status.rank()) >= (p.last_update, p.status.rank());
        s.session_time = s.session_time.max(e.session_time);
        s.input_octets = s.input_octets.max(e.input_octets);
        s.output_octets = s.output_octets.max(e.output_octets);
        s.input_packets = s.input_packets.max(e.input_packets);
        s.output_packets = s.output_packets.max(e.output_packets);
        match e.status {
            AccountingStatus::Start => s.start_time = e.event_time,
            AccountingStatus::Stop => {
                // A Stop the NAS sent wins over a stop inferred from a NAS restart.
                let inferred = matches!(p.status, AccountingStatus::AccountingOn | AccountingStatus::AccountingOff);
                if newer || inferred || p.stop_time == 0 {
                    s.stop_time = e.event_time;
                    s.terminate_cause = e.terminate_cause.or(p.terminate_cause);
                    s.status = AccountingStatus::Stop;
                }
            }
            _ => {}
        }
        if newer {
            s.status = e.status;
        }
        s.last_update = p.last_update.max(e.event_time);
        merge_text(&mut s.acct_multi_session_id, &e.acct_multi_session_id, newer);
        merge_text(&mut s.nas_identifier, &e.nas_identifier, newer);
        merge_text(&mut s.nas_ip_address, &e.nas_ip_address, newer);
        merge_number(&mut s.nas_port, e.nas_port, newer);
        merge_text(&mut s.nas_port_id, &e.nas_port_id, newer);
        merge_number(&mut s.nas_port_type, e.nas_port_type, newer);
        merge_number(&mut s.service_type, e.service_type, newer);
        merge_text(&mut s.framed_ip_address, &e.framed_ip_address, newer);
        merge_text(&mut s.framed_ip_netmask, &e.framed_ip_netmask, newer);
        merge_text(&mut s.calling_station_id, &e.calling_station_id, newer);
        merge_text(&mut s.called_station_id, &e.called_station_id, newer);
        s.event_count = p.event_count.saturating_add(1);
        s
    }

    /// A new session from its first event.
    fn from_event(e: &AccountingEvent) -> AccountingSession {
        let start_time = match e.status {
            AccountingStatus::Start => e.event_time,
            _ => e.event_time.saturating_sub(i64::try_from(e.session_time).unwrap_or(i64::MAX)).max(0),
        };
        let stopped = e.status == AccountingStatus::Stop;
        AccountingSession {
            nas_client: e.nas_client.clone(),
            acct_session_id: e.acct_session_id.clone(),
            acct_multi_session_id: e.acct_multi_session_id.clone(),
            organization: e.organization.clone(),
            user_name: e.user_name.clone(),
            status: e.status,
            start_time,
            last_update: e.event_time,
            stop_time: if stopped { e.event_time } else { 0 },
            session_time: e.session_time,
            input_octets: e.input_octets,
            output_octets: e.output_octets,
            input_packets: e.input_packets,
            output_packets: e.output_packets,
            terminate_cause: if stopped { e.terminate_cause } else { None },
            nas_identifier: e.nas_identifier.clone(),
            nas_ip_address: e.nas_ip_address.clone(),
            nas_port: e.nas_port,
            nas_port_id: e.nas_port_id.clone(),
            nas_port_type: e.nas_port_type,
            service_type: e.service_type,
            framed_ip_address: e.framed_ip_address.clone(),
            framed_ip_netmask: e.framed_ip_netmask.clone(),
            calling_station_id: e.calling_station_id.clone(),
            called_station_id: e.called_station_id.clone(),
            event_count: 1,
        }
    }

    /// The session after its NAS reported a (re)start or shutdown (`e`, Accounting-On/Off) at
    /// `e.event_time`: if it was open and nothing newer was heard of it, it is over then (status
    /// Accounting-On/Off, no terminate cause: the NAS sent none). Otherwise `None`: unchanged.
    pub fn after_nas_restart(&self, e: &AccountingEvent) -> Option<AccountingSession> {
        if self.stop_time != 0 || self.last_update > e.event_time {
            return None;
        }
        let mut s = self.clone();
        s.stop_time = e.event_time;
        s.last_update = e.event_time;
        s.status = e.status;
        s.event_count = s.event_count.saturating_add(1);
        Some(s)
    }
}

/// An attribute of the latest event that carried it; an older event only fills it when empty.
fn merge_text(stored: &mut String, sent: &str, newer: bool) {
    if !sent.is_empty() && (newer || stored.is_empty()) {
        *stored = sent.to_string();
    }
}

fn merge_number(stored: &mut Option<u32>, sent: Option<u32>, newer: bool) {
    if sent.is_some() && (newer || stored.is_none()) {
        *stored = sent;
    }
}

/// A user's NT-hash credential: the NT hash of their password (RFC 2759 §8.3, MD4 of the password in
/// UTF-16LE), which is what MS-CHAPv2 is checked against, for users whose stored password is a hash no
/// challenge can be answered from (bcrypt, argon2, salted digests). The edge derives it at a successful
/// password sign-in of a user of an organization that opted in, and seals it with the cluster's
/// key-encryption key before it is proposed: the state, the log and snapshots only ever hold it sealed.
///
/// Kept apart from the user record (key: the user's id), so that nothing that shows a user — the admin API,
/// LDAP entries, token claims — can carry it. `for_password` is [`NtCredential::binding`] of the stored
/// password it was derived under: the state machine refuses a credential whose binding is not the user's
/// current one (the password changed while it was on its way), and drops the credential when the user's
/// password changes or the user is deleted.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Clone, PartialEq, Eq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct NtCredential {
    pub user_id: String,
    /// The NT hash sealed with the key-encryption key (opaque to this crate).
    pub sealed: Vec<u8>,
    /// [`NtCredential::binding`] of the user when it was derived.
    pub for_password: [u8; 32],
}

/// Most bytes a sealed NT hash may take (16 bytes sealed with AES-256-GCM take 44).
pub const MAX_SEALED_NT_CREDENTIAL: usize = 256;

impl std::fmt::Debug for NtCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtCredential")
            .field("user_id", &self.user_id)
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .finish_non_exhaustive()
    }
}

impl NtCredential {
    /// What a credential is bound to: SHA-256 over the user's id and stored password, scheme and salt (each
    /// length-prefixed). Any change of the stored password (a new password, a re-hash, another salt or
    /// scheme) changes it. It is a digest of what the user record holds anyway, so it tells nothing more.
    pub fn binding(user: &User) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"jeton nt-credential binding 1");
        for part in [&user.id, &user.password, &user.password_type, &user.password_salt] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    /// Whether the credential was derived under `user`'s current password.
    pub fn is_current_for(&self, user: &User) -> bool {
        self.user_id == user.id && self.for_password == Self::binding(user)
    }
}

/// A browser sign-in session (single sign-on). The browser holds a random cookie value; the state holds
/// only its SHA-256 (`id`, lower-case hex), so neither the state, a snapshot nor the `sid` claim (which is
/// this id) lets anyone forge the cookie.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct BrowserSession {
    /// Hex SHA-256 of the cookie value; the `sid` of ID tokens issued under this session.
    pub id: String,
    /// The signed-in user's id, and `owner/name` (what the admin API lists sessions by).
    pub user_id: String,
    pub owner: String,
    pub name: String,
    /// When the user authenticated (OIDC `auth_time`), unix seconds.
    pub auth_time: i64,
    /// Authentication methods (RFC 8176: `pwd`, `otp`, `hwk`, `mfa`, ...), and the `acr` reached.
    pub amr: Vec<String>,
    pub acr: String,
    /// The session ends at `expires_at`, or once unused for `idle_secs` after `last_seen` (0: no idle limit).
    pub expires_at: i64,
    pub idle_secs: i64,
    pub last_seen: i64,
    /// Applications that got a code under this session (what sign-out tells about), at most
    /// [`MAX_SESSION_APPLICATIONS`].
    pub applications: Vec<String>,
    /// Where the session was started from (client address), for the user's and the admin's lists.
    pub client_ip: String,
    pub user_agent: String,
}

/// Most applications a session remembers.
pub const MAX_SESSION_APPLICATIONS: usize = 64;

impl BrowserSession {
    /// Whether the session is still good at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        now < self.expires_at && (self.idle_secs <= 0 || now < self.last_seen.saturating_add(self.idle_secs))
    }
}

/// An authorization code that was redeemed: codes themselves are sealed and carried by the client, the
/// state only remembers which were used (until they expire) and what their redemption issued, so that a
/// second redemption fails and revokes it (RFC 6749 §4.1.2).
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct CodeRedemption {
    /// The code's id (random, inside the sealed code).
    pub code_id: String,
    /// When the code expires: the record is pruned after that.
    pub expires_at: i64,
    /// The access token the redemption issued, and when it expires.
    pub access_jti: String,
    pub access_expires_at: i64,
    /// The refresh token family it started (empty: none).
    pub refresh_family: String,
    /// Set once a second redemption was tried (and what the first issued was revoked).
    pub replayed: bool,
}

/// Scopes a user granted an application on the consent page.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Consent {
    pub user_id: String,
    /// `owner/name` of the user, for listings.
    pub user: String,
    pub application: String,
    pub scopes: Vec<String>,
    pub granted_at: i64,
}

/// A user's TOTP second factor (RFC 6238). The secret is sealed with the key-encryption key before it is
/// proposed; recovery codes are kept as SHA-256 digests and each works once.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct TotpCredential {
    pub user_id: String,
    /// The base32 secret, sealed (opaque to this crate).
    pub sealed_secret: Vec<u8>,
    /// SHA-256 of each unused recovery code.
    pub recovery_digests: Vec<[u8; 32]>,
    /// The last time step a code was accepted for: a code of that step or an earlier one is refused.
    pub last_step: i64,
    pub enrolled_at: i64,
}

impl std::fmt::Debug for TotpCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpCredential")
            .field("user_id", &self.user_id)
            .field("sealed_secret", &format_args!("<{} bytes>", self.sealed_secret.len()))
            .field("recovery_codes", &self.recovery_digests.len())
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

/// A WebAuthn credential (passkey) of a user.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Passkey {
    pub user_id: String,
    /// The credential id, base64url.
    pub credential_id: String,
    /// A name the user gave it.
    pub name: String,
    /// webauthn-rs' serialized credential (public key, counter, backup state), JSON.
    pub credential: String,
    /// The authenticator's signature counter last seen: a lower one on sign-in means a cloned authenticator.
    pub sign_count: u32,
    pub created_at: i64,
    pub last_used_at: i64,
}

/// Where a device authorization (RFC 8628) stands.
#[derive(
    Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum DeviceState {
    #[default]
    Pending,
    Approved,
    Denied,
    /// Its tokens were issued: polling again gets `invalid_grant`.
    Redeemed,
}

/// A device authorization request (RFC 8628): the device polls with the device code, the user approves it
/// on the verification page with the user code.
#[derive(Archive, RkyvSerialize, RkyvDeserialize, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct DeviceAuthorization {
    /// Hex SHA-256 of the device code (the device code itself is never stored).
    pub device_code_digest: String,
    /// The user code, normalized (upper case, no dash).
    pub user_code: String,
    pub application: String,
    pub scope: String,
    pub expires_at: i64,
    pub state: DeviceState,
    /// Set when approved: who, when they authenticated, and how.
    pub user_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub session_id: String,
}

#[cfg(test)]
mod tests {
    use super::{AccountingEvent, AccountingSession, AccountingStatus, SigninFailures};
    use AccountingStatus::*;

    fn event(status: AccountingStatus, at: i64, session_time: u64, input: u64, output: u64) -> AccountingEvent {
        AccountingEvent {
            status,
            event_time: at,
            nas_client: "nas-1".into(),
            acct_session_id: "S1".into(),
            organization: "acme".into(),
            user_name: "alice".into(),
            session_time,
            input_octets: input,
            output_octets: output,
            input_packets: input / 100,
            output_packets: output / 100,
            ..Default::default()
        }
    }

    /// Applies events in order, from no record.
    fn run(events: &[AccountingEvent]) -> AccountingSession {
        let mut s: Option<AccountingSession> = None;
        for e in events {
            s = Some(AccountingSession::after_event(s.as_ref(), e));
        }
        s.expect("at least one event")
    }

    #[test]
    fn gigawords_are_the_high_32_bits_of_the_octet_counters() {
        assert_eq!(AccountingEvent::octets(0, 0), 0);
        assert_eq!(AccountingEvent::octets(5, 0), 5);
        assert_eq!(AccountingEvent::octets(5, 2), 2 * 4_294_967_296 + 5);
        assert_eq!(AccountingEvent::octets(u32::MAX, u32::MAX), u64::MAX);
        // A counter whose low word wrapped around is still larger than before: 4e9 octets, then 4 GiB + 100.
        let before = AccountingEvent::octets(4_000_000_000, 0);
        let after = AccountingEvent::octets(100, 1);
        assert!(after > before);
        let wrapped = [event(InterimUpdate, 160, 60, before, 10), event(InterimUpdate, 220, 120, after, 20)];
        assert_eq!(run(&wrapped).input_octets, 4_294_967_396);
        // Out of order: the older reading (larger low word, no gigaword) does not win.
        let reversed = [wrapped[1].clone(), wrapped[0].clone()];
        assert_eq!(run(&reversed).input_octets, 4_294_967_396);
    }

    #[test]
    fn start_interim_stop_make_one_session() {
        let mut stop = event(Stop, 400, 300, 9_000, 90_000);
        stop.terminate_cause = Some(1);
        let mut start = event(Start, 100, 0, 0, 0);
        start.framed_ip_address = "10.0.0.7".into();
        let s = run(&[start.clone()]);
        assert_eq!((s.status, s.start_time, s.last_update, s.stop_time, s.event_count), (Start, 100, 100, 0, 1));
        let s = run(&[start.clone(), event(InterimUpdate, 160, 60, 1_000, 20_000)]);
        assert_eq!((s.status, s.start_time, s.last_update, s.stop_time), (InterimUpdate, 100, 160, 0));
        assert_eq!((s.session_time, s.input_octets, s.output_octets, s.input_packets), (60, 1_000, 20_000, 10));
        assert_eq!(s.framed_ip_address, "10.0.0.7", "an attribute the update did not carry stays");
        let s = run(&[start, event(InterimUpdate, 160, 60, 1_000, 20_000), stop]);
        assert_eq!((s.status, s.start_time, s.last_update, s.stop_time), (Stop, 100, 400, 400));
        assert_eq!((s.session_time, s.input_octets, s.output_octets), (300, 9_000, 90_000));
        assert_eq!((s.terminate_cause, s.event_count), (Some(1), 3));
        assert_eq!((s.organization.as_str(), s.user_name.as_str()), ("acme", "alice"));
    }

    /// Whatever order the events of a session arrive in, the record comes out the same (but for the
    /// attributes only some events carry): counters are the largest, times and status the latest.
    #[test]
    fn events_out_of_order_give_the_same_session() {
        let mut stop = event(Stop, 400, 300, 9_000, 90_000);
        stop.terminate_cause = Some(2);
        let events = [
            event(Start, 100, 0, 0, 0),
            event(InterimUpdate, 160, 60, 1_000, 20_000),
            event(InterimUpdate, 220, 120, 3_000, 40_000),
            stop,
        ];
        let in_order = run(&events);
        for order in [[3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1], [0, 3, 1, 2], [3, 0, 2, 1]] {
            let shuffled: Vec<AccountingEvent> = order.iter().map(|&i| events[i].clone()).collect();
            let s = run(&shuffled);
            assert_eq!(s, in_order, "order {order:?}");
        }
        assert_eq!((in_order.status, in_order.stop_time, in_order.terminate_cause), (Stop, 400, Some(2)));
        // A late update after the Stop neither reopens the session nor lowers a counter.
        let late = AccountingSession::after_event(Some(&in_order), &event(InterimUpdate, 220, 120, 3_000, 40_000));
        assert_eq!((late.status, late.stop_time, late.input_octets, late.last_update), (Stop, 400, 9_000, 400));
    }

    #[test]
    fn a_session_whose_start_was_lost_starts_at_its_first_event_minus_its_session_time() {
        let s = run(&[event(InterimUpdate, 1_000, 240, 5, 6)]);
        assert_eq!((s.status, s.start_time, s.last_update, s.event_count), (InterimUpdate, 760, 1_000, 1));
        let s = run(&[event(Stop, 1_000, 300, 5, 6)]);
        assert_eq!((s.status, s.start_time, s.stop_time), (Stop, 700, 1_000));
        // The Start arriving late sets the start time and changes nothing else.
        let s = run(&[event(InterimUpdate, 1_000, 240, 5, 6), event(Start, 758, 0, 0, 0)]);
        assert_eq!((s.status, s.start_time, s.last_update, s.input_octets), (InterimUpdate, 758, 1_000, 5));
        // A session time longer than the clock's past starts at 0, not before.
        assert_eq!(run(&[event(InterimUpdate, 10, u64::MAX, 0, 0)]).start_time, 0);
    }

    #[test]
    fn a_newer_start_or_an_event_after_the_stop_begins_a_new_session() {
        let first = [event(Start, 100, 0, 0, 0), event(InterimUpdate, 160, 60, 1_000, 2_000)];
        // The same Start again (a retransmission: the same time) changes nothing but the event count.
        let again = run(&[first[0].clone(), first[1].clone(), first[0].clone()]);
        assert_eq!((again.start_time, again.input_octets, again.event_count), (100, 1_000, 3));
        // A Start newer than everything recorded: the NAS reused the id for a new session.
        let s = run(&[first[0].clone(), first[1].clone(), event(Start, 500, 0, 0, 0)]);
        assert_eq!((s.status, s.start_time, s.input_octets, s.event_count), (Start, 500, 0, 1));
        // After a Stop, a newer update is another session (its Start lost), an older one is the old session's.
        let stopped = [first[0].clone(), event(Stop, 300, 200, 4_000, 8_000)];
        let s = run(&[stopped[0].clone(), stopped[1].clone(), event(InterimUpdate, 900, 60, 10, 20)]);
        assert_eq!((s.status, s.start_time, s.stop_time, s.input_octets), (InterimUpdate, 840, 0, 10));
    }

    #[test]
    fn attributes_are_those_of_the_latest_event_that_carried_them() {
        let mut newer = event(InterimUpdate, 200, 100, 1, 1);
        newer.framed_ip_address = "10.0.0.2".into();
        newer.nas_port = Some(7);
        let mut older = event(InterimUpdate, 150, 50, 1, 1);
        older.framed_ip_address = "10.0.0.1".into();
        older.calling_station_id = "00-11-22-33-44-55".into();
        older.nas_port = Some(3);
        older.nas_port_type = Some(15);
        for order in [[&newer, &older], [&older, &newer]] {
            let s = run(&[order[0].clone(), order[1].clone()]);
            assert_eq!(s.framed_ip_address, "10.0.0.2");
            assert_eq!(s.nas_port, Some(7));
            assert_eq!(s.calling_station_id, "00-11-22-33-44-55", "only the older event carried it");
            assert_eq!(s.nas_port_type, Some(15));
        }
    }

    #[test]
    fn a_nas_restart_closes_its_open_sessions_and_a_real_stop_still_wins() {
        let open = run(&[event(Start, 100, 0, 0, 0), event(InterimUpdate, 160, 60, 1_000, 2_000)]);
        let on =
            AccountingEvent { status: AccountingOn, event_time: 500, nas_client: "nas-1".into(), ..Default::default() };
        let closed = open.after_nas_restart(&on).expect("closed");
        assert_eq!((closed.status, closed.stop_time, closed.last_update), (AccountingOn, 500, 500));
        assert_eq!((closed.terminate_cause, closed.input_octets), (None, 1_000));
        assert!(closed.after_nas_restart(&on).is_none(), "already closed");
        let earlier = AccountingEvent { event_time: 150, ..on.clone() };
        assert!(open.after_nas_restart(&earlier).is_none(), "heard of after the restart: not the restart's");
        // The Stop the NAS sent before going down arrives late: it is the real end.
        let mut stop = event(Stop, 450, 350, 3_000, 4_000);
        stop.terminate_cause = Some(1);
        let s = AccountingSession::after_event(Some(&closed), &stop);
        assert_eq!((s.status, s.stop_time, s.terminate_cause, s.input_octets), (Stop, 450, Some(1), 3_000));
    }

    #[test]
    fn status_codes_are_those_of_rfc_2866() {
        for (code, status) in [(1, Start), (2, Stop), (3, InterimUpdate), (7, AccountingOn), (8, AccountingOff)] {
            assert_eq!(AccountingStatus::from_code(code), Some(status));
            assert_eq!(status.code(), code);
        }
        for code in [0, 4, 5, 6, 9, 15] {
            assert_eq!(AccountingStatus::from_code(code), None, "{code}");
        }
        assert_eq!(InterimUpdate.as_str(), "Interim-Update");
    }

    #[test]
    fn failures_lock_at_the_limit_for_the_frozen_time_then_are_forgotten() {
        let (limit, frozen) = (3, 900);
        let mut r = SigninFailures::after_failure(None, "user:u1", 1_000, limit, frozen);
        assert_eq!((r.count, r.locked_until, r.forget_at), (1, 0, 1_900));
        r = SigninFailures::after_failure(Some(&r), "user:u1", 1_010, limit, frozen);
        assert_eq!(r.count_at(1_010), 2);
        assert!(!r.locked_at(1_010));
        r = SigninFailures::after_failure(Some(&r), "user:u1", 1_020, limit, frozen);
        assert_eq!(r.count, 3);
        assert!(r.locked_at(1_020) && r.locked_at(1_919) && !r.locked_at(1_920));
        // A failure of an attempt that was already running while locked does not extend the lock.
        let again = SigninFailures::after_failure(Some(&r), "user:u1", 1_500, limit, frozen);
        assert_eq!(again, r);
        // After the frozen time the count starts from zero.
        assert_eq!(r.count_at(1_920), 0);
        let fresh = SigninFailures::after_failure(Some(&r), "user:u1", 2_000, limit, frozen);
        assert_eq!((fresh.count, fresh.locked_until), (1, 0));
        // Failures below the limit are forgotten a frozen time after the last one.
        let one = SigninFailures::after_failure(None, "user:u1", 0, limit, frozen);
        assert_eq!((one.count_at(899), one.count_at(900)), (1, 0));
        // A limit of 0 behaves as 1; a negative frozen time as 0.
        let l0 = SigninFailures::after_failure(None, "x", 5, 0, -3);
        assert_eq!((l0.count, l0.locked_until), (1, 5));
    }

    /// The binding changes with every part of the stored password and with the user, and with nothing else.
    #[test]
    fn nt_credential_binding_follows_the_stored_password() {
        use super::{NtCredential, User};
        let alice = User {
            owner: "acme".into(),
            name: "alice".into(),
            id: "u-1".into(),
            password: "$2a$10$abcdefghijklmnopqrstuv".into(),
            password_type: "bcrypt".into(),
            ..Default::default()
        };
        let b = NtCredential::binding(&alice);
        let renamed = User { display_name: "Alice A.".into(), email: "a@acme.example".into(), ..alice.clone() };
        assert_eq!(NtCredential::binding(&renamed), b, "other fields do not count");
        for other in [
            User { password: "$2a$10$abcdefghijklmnopqrstuw".into(), ..alice.clone() },
            User { password_type: "argon2id".into(), ..alice.clone() },
            User { password_salt: "s".into(), ..alice.clone() },
            User { id: "u-2".into(), ..alice.clone() },
            // Parts are length-prefixed: moving bytes from one part to the next is another binding.
            User { password: "$2a$10$abcdefghijklmnopqrstuvb".into(), password_type: "crypt".into(), ..alice.clone() },
        ] {
            assert_ne!(NtCredential::binding(&other), b, "{other:?}");
        }
        let credential = NtCredential { user_id: "u-1".into(), sealed: vec![1; 44], for_password: b };
        assert!(credential.is_current_for(&alice));
        assert!(credential.is_current_for(&renamed));
        assert!(!credential.is_current_for(&User { password: "x".into(), ..alice.clone() }));
        let bob = User { id: "u-2".into(), ..alice.clone() };
        let for_bob = NtCredential { for_password: NtCredential::binding(&bob), ..credential.clone() };
        assert!(!for_bob.is_current_for(&bob), "another user's id");
        // Debug never shows the sealed bytes.
        assert!(!format!("{credential:?}").contains("[1, 1"), "{credential:?}");
    }
}
