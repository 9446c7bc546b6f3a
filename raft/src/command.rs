//! [`Command`]: the only way the identity state changes.
//!
//! A command is proposed on the leader, written to the Raft log on a quorum and then applied by the state
//! machine of every node, in log order. Everything a command needs is inside it (including "now" where
//! time matters), so every node applies it to the same result.

use serde::{Deserialize, Serialize};

use crate::model::{
    AcceptedAlgorithms, AcceptedIssuer, AccountingEvent, Admission, Application, BrowserSession, CasbinModel,
    CodeRedemption, Consent, DeviceAuthorization, Group, NtCredential, Organization, Passkey, Permission, RefreshToken,
    Revocation, Role, SigningKey, TotpCredential, User,
};

/// How a `Put*` command treats an existing record.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Fails with [`Outcome::Conflict`] if the record exists.
    Create,
    /// Fails with [`Outcome::NotFound`] if the record does not exist.
    Update,
    /// Creates or replaces.
    Upsert,
}

/// Most levels of [`Command::Batch`] and [`Command::Each`] inside one another that decoding accepts. Jeton
/// nests at most two (a write combined into an `Each` with others may be a `Batch`); a deeper command is
/// refused as undecodable instead of recursing until the stack overflows (postcard has no depth limit).
pub const MAX_NESTING: usize = 8;

std::thread_local! {
    /// How many `Batch`/`Each` levels the command being decoded on this thread is inside.
    static NESTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Decodes the commands of a `Batch` or `Each`, one level deeper, refusing more than [`MAX_NESTING`].
fn nested_commands<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Command>, D::Error> {
    struct Level(usize);
    impl Drop for Level {
        fn drop(&mut self) {
            NESTING.with(|n| n.set(self.0));
        }
    }
    let depth = NESTING.with(|n| n.get());
    if depth >= MAX_NESTING {
        return Err(serde::de::Error::custom(format!("commands nested more than {MAX_NESTING} levels deep")));
    }
    NESTING.with(|n| n.set(depth + 1));
    let _restore = Level(depth);
    Vec::<Command>::deserialize(d)
}

/// A change to the identity state.
// Records travel by value: a command is built once, serialized into the log and applied; boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Command {
    PutOrganization {
        org: Organization,
        mode: PutMode,
    },
    /// Removes the organization with its users, roles and groups.
    DeleteOrganization {
        name: String,
    },
    PutUser {
        user: User,
        mode: PutMode,
    },
    DeleteUser {
        owner: String,
        name: String,
    },
    PutApplication {
        app: Application,
        mode: PutMode,
    },
    DeleteApplication {
        name: String,
    },
    PutSigningKey {
        key: SigningKey,
        mode: PutMode,
    },
    /// New key `new` takes over from `old_kid`: every application signing with the old key signs with the
    /// new one, and the old key stops signing and leaves the JWKS at `retire_at`.
    RotateSigningKey {
        old_kid: String,
        new: SigningKey,
        retire_at: i64,
    },
    DeleteSigningKey {
        kid: String,
    },
    PutRole {
        role: Role,
        mode: PutMode,
    },
    DeleteRole {
        owner: String,
        name: String,
    },
    PutGroup {
        group: Group,
        mode: PutMode,
    },
    DeleteGroup {
        owner: String,
        name: String,
    },
    PutPermission {
        permission: Permission,
        mode: PutMode,
    },
    DeletePermission {
        owner: String,
        name: String,
    },
    PutModel {
        model: CasbinModel,
        mode: PutMode,
    },
    DeleteModel {
        owner: String,
        name: String,
    },
    /// Lets tokens of `accepted.application` carry `accepted.issuer` as `iss` (imported tokens).
    PutAcceptedIssuer {
        accepted: AcceptedIssuer,
        mode: PutMode,
    },
    DeleteAcceptedIssuer {
        application: String,
        issuer: String,
    },
    /// Records a new refresh token (the first of its family, or one written by an import).
    IssueRefreshToken {
        token: RefreshToken,
    },
    /// Exchanges refresh token `old_id` for `new`. If `old_id` was already exchanged, this is reuse: the
    /// whole family is revoked instead and the outcome is [`Outcome::Reused`].
    RotateRefreshToken {
        old_id: String,
        new: RefreshToken,
        now: i64,
    },
    /// Revokes an access token.
    Revoke {
        revocation: Revocation,
    },
    /// Revokes every refresh token of a family and the access tokens minted with them.
    RevokeRefreshFamily {
        family: String,
        now: i64,
    },
    /// Drops revocations, refresh tokens and retired keys that expired before `now`.
    Prune {
        now: i64,
    },
    /// Several commands applied atomically, in order; the first that fails undoes the whole batch.
    Batch {
        #[serde(deserialize_with = "nested_commands")]
        commands: Vec<Command>,
    },
    /// Several commands applied in order, each on its own: a refused one is left out and the others stay.
    /// The response has one outcome per command (an import's batch: one log entry, rows judged one by one).
    Each {
        #[serde(deserialize_with = "nested_commands")]
        commands: Vec<Command>,
    },
    /// One more failed password check of `account` (see [`crate::model::SigninFailures`]) at `now`, with the
    /// application's lockout limit and frozen time: at `limit` failures the account locks for `frozen_secs`.
    // New variants go last: log entries are postcard, which numbers variants in order.
    RecordSigninFailure {
        account: String,
        now: i64,
        limit: u32,
        frozen_secs: i64,
    },
    /// A successful check after failures: the account's count starts again from zero.
    ResetSigninFailures {
        account: String,
    },
    /// Lets the tokens of signing key `accepted.kid` carry these algorithms besides its own (an imported
    /// key: the algorithms its applications signed with). Removed with the key.
    PutAcceptedAlgorithms {
        accepted: AcceptedAlgorithms,
        mode: PutMode,
    },
    /// Lets node `admission.node_id` join with the token whose digest it holds (replacing an earlier
    /// admission of that id). Used up by the next membership change that names the id or removes it.
    AdmitNode {
        admission: Admission,
    },
    /// One RADIUS Accounting-Request: Start, Interim-Update and Stop create or update the session
    /// (`event.nas_client`, `event.acct_session_id`) as [`crate::model::AccountingSession::after_event`]
    /// says; Accounting-On/Off close every session of the NAS still open. Refused (`Invalid`) when the
    /// event is malformed: a session event without a session id, an unknown organization, a missing time.
    RecordAccounting {
        event: AccountingEvent,
    },
    /// Drops at most `limit` accounting sessions whose latest event is older than `before` (unix seconds):
    /// the retention window, issued by the leader.
    PruneAccounting {
        before: i64,
        limit: u32,
    },
    /// Stores the NT-hash credential of user `credential.user_id`, replacing theirs if they had one.
    /// Refused (`NotFound`) when no user has that id, and (`Conflict`) when `credential.for_password` is not
    /// the binding of the user's current password: it changed after the sign-in the credential was derived
    /// at. See [`NtCredential`].
    PutNtCredential {
        credential: NtCredential,
    },
    /// Starts a browser session. Refused (`NotFound`) when its user does not exist, (`Conflict`) when the id
    /// is taken.
    StartSession {
        session: BrowserSession,
    },
    /// Marks a session used at `at` (its idle clock restarts) and, if not empty, that `application` got a
    /// code under it. `NotFound` when the session is gone or no longer live at `at`.
    TouchSession {
        id: String,
        at: i64,
        application: String,
    },
    /// Ends one session (sign-out). `NotFound` when there is none.
    EndSession {
        id: String,
    },
    /// Ends every session of a user (sign-out everywhere, an admin's action).
    EndUserSessions {
        user_id: String,
    },
    /// Redeems an authorization code: the first redemption of `redemption.code_id` is recorded (with the
    /// refresh token it issues, if any); any later one is answered `Reused`, and revokes the access token
    /// and the refresh family the first one issued.
    RedeemCode {
        redemption: CodeRedemption,
        refresh: Option<RefreshToken>,
        now: i64,
        /// The session the code was issued under (empty: none): refused (`NotFound`) unless it is live at
        /// `now`, checked in log order, so a node that has not applied the session yet cannot refuse it.
        session_id: String,
    },
    /// Records (replaces) the scopes a user granted an application.
    PutConsent {
        consent: Consent,
    },
    /// Forgets a user's consent to an application (empty `application`: to every application).
    DeleteConsent {
        user_id: String,
        application: String,
    },
    /// Enrols (replaces) a user's TOTP factor. `NotFound` when the user does not exist.
    PutTotp {
        credential: TotpCredential,
    },
    /// Removes a user's TOTP factor.
    DeleteTotp {
        user_id: String,
    },
    /// Accepts a TOTP code of time step `step`: `Reused` (nothing changes) unless `step` is later than the
    /// last one accepted, so a code works once cluster-wide.
    UseTotpStep {
        user_id: String,
        step: i64,
    },
    /// Uses up a recovery code (by digest): `NotFound` if it is not one of the user's unused codes.
    UseRecoveryCode {
        user_id: String,
        digest: [u8; 32],
    },
    /// Registers a passkey. `Conflict` when the credential id is registered already (to anyone).
    PutPasskey {
        passkey: Passkey,
    },
    /// Records a sign-in with a passkey: its new counter and credential state. `Invalid` when the counter
    /// did not go up (a cloned authenticator), unless both are 0 (authenticators without a counter).
    UsePasskey {
        user_id: String,
        credential_id: String,
        sign_count: u32,
        credential: String,
        at: i64,
    },
    /// Removes a passkey of a user.
    DeletePasskey {
        user_id: String,
        credential_id: String,
    },
    /// Starts a device authorization. `Conflict` when its user code or device code is in use.
    StartDeviceAuthorization {
        authorization: DeviceAuthorization,
    },
    /// The user's decision on the verification page. `NotFound` when the user code is unknown or expired,
    /// `Invalid` when it was decided already.
    DecideDeviceAuthorization {
        user_code: String,
        approve: bool,
        user_id: String,
        auth_time: i64,
        amr: Vec<String>,
        session_id: String,
        now: i64,
    },
    /// The device got its tokens: the authorization is `Redeemed` (with the refresh token issued, if any).
    /// `Reused` when it was redeemed before, `Invalid` unless it is approved and not expired.
    RedeemDeviceCode {
        device_code_digest: String,
        refresh: Option<RefreshToken>,
        now: i64,
    },
}

impl Command {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::PutOrganization { .. } => "put_organization",
            Command::DeleteOrganization { .. } => "delete_organization",
            Command::PutUser { .. } => "put_user",
            Command::DeleteUser { .. } => "delete_user",
            Command::PutApplication { .. } => "put_application",
            Command::DeleteApplication { .. } => "delete_application",
            Command::PutSigningKey { .. } => "put_signing_key",
            Command::RotateSigningKey { .. } => "rotate_signing_key",
            Command::DeleteSigningKey { .. } => "delete_signing_key",
            Command::PutRole { .. } => "put_role",
            Command::DeleteRole { .. } => "delete_role",
            Command::PutGroup { .. } => "put_group",
            Command::DeleteGroup { .. } => "delete_group",
            Command::PutPermission { .. } => "put_permission",
            Command::DeletePermission { .. } => "delete_permission",
            Command::PutModel { .. } => "put_model",
            Command::DeleteModel { .. } => "delete_model",
            Command::PutAcceptedIssuer { .. } => "put_accepted_issuer",
            Command::DeleteAcceptedIssuer { .. } => "delete_accepted_issuer",
            Command::IssueRefreshToken { .. } => "issue_refresh_token",
            Command::RotateRefreshToken { .. } => "rotate_refresh_token",
            Command::Revoke { .. } => "revoke",
            Command::RevokeRefreshFamily { .. } => "revoke_refresh_family",
            Command::Prune { .. } => "prune",
            Command::Batch { .. } => "batch",
            Command::Each { .. } => "each",
            Command::RecordSigninFailure { .. } => "record_signin_failure",
            Command::ResetSigninFailures { .. } => "reset_signin_failures",
            Command::PutAcceptedAlgorithms { .. } => "put_accepted_algorithms",
            Command::AdmitNode { .. } => "admit_node",
            Command::RecordAccounting { .. } => "record_accounting",
            Command::PruneAccounting { .. } => "prune_accounting",
            Command::PutNtCredential { .. } => "put_nt_credential",
            Command::StartSession { .. } => "start_session",
            Command::TouchSession { .. } => "touch_session",
            Command::EndSession { .. } => "end_session",
            Command::EndUserSessions { .. } => "end_user_sessions",
            Command::RedeemCode { .. } => "redeem_code",
            Command::PutConsent { .. } => "put_consent",
            Command::DeleteConsent { .. } => "delete_consent",
            Command::PutTotp { .. } => "put_totp",
            Command::DeleteTotp { .. } => "delete_totp",
            Command::UseTotpStep { .. } => "use_totp_step",
            Command::UseRecoveryCode { .. } => "use_recovery_code",
            Command::PutPasskey { .. } => "put_passkey",
            Command::UsePasskey { .. } => "use_passkey",
            Command::DeletePasskey { .. } => "delete_passkey",
            Command::StartDeviceAuthorization { .. } => "start_device_authorization",
            Command::DecideDeviceAuthorization { .. } => "decide_device_authorization",
            Command::RedeemDeviceCode { .. } => "redeem_device_code",
        }
    }
}

/// What applying a command came to. A command that is refused changes nothing.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub enum Outcome {
    #[default]
    Applied,
    /// The record to create already exists (what, key).
    Conflict(String),
    /// The record to change does not exist (what, key).
    NotFound(String),
    /// The command is inconsistent with the state (e.g. a user of an unknown organization).
    Invalid(String),
    /// A rotated refresh token was presented again; its family is now revoked.
    Reused,
}

/// The state machine's answer to one log entry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandResponse {
    pub outcome: Outcome,
    /// [`Command::Each`] only: the outcome of each of its commands, in order.
    #[serde(default)]
    pub outcomes: Vec<Outcome>,
}
