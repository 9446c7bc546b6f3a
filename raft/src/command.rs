//! [`Command`]: the only way the identity state changes.
//!
//! A command is proposed on the leader, written to the Raft log on a quorum and then applied by the state
//! machine of every node, in log order. Everything a command needs is inside it (including "now" where
//! time matters), so every node applies it to the same result.

use serde::{Deserialize, Serialize};

use crate::model::{
    AcceptedAlgorithms, AcceptedIssuer, AccountingEvent, Admission, Application, CasbinModel, Group, Organization,
    Permission, RefreshToken, Revocation, Role, SigningKey, User,
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
