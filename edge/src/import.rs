//! Imports: the apply request (`POST /api/jeton/apply`, `jeton import --into`, `jeton-migrate`) and the
//! batch pipeline behind it. Items are checked against this node's state, keys sealed with its
//! key-encryption key, unchanged items dropped, and the rest written as one `Command::Each`. A user's TOTP
//! secret, in clear in Casdoor's user record, is sealed into a TOTP factor of its own.
//!
//! Nothing here knows about HTTP: the admin API decodes the request and maps the result to its envelope;
//! `migrate/` calls [`apply_items`] and [`propose_items`] on a node of its own.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jeton_raft::model::{AcceptedAlgorithms, TotpCredential, User};
use jeton_raft::{Command, CommandResponse, Outcome, PutMode, ReplicaNode};
use serde::{Deserialize, Serialize};

use crate::error::EdgeError;
use crate::keys::{Kek, KeyImport};

/// One thing to apply: a command, or a key pair to seal with the node's key-encryption key and store.
// Items are built once and moved into a batch; boxing the command would only add an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum ApplyItem {
    Command(Command),
    Key(KeyImport),
}

/// `POST /api/jeton/apply`: items applied as one `Command::Each`, after dropping those that would change
/// nothing.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct ApplyRequest {
    pub items: Vec<ApplyItem>,
    /// Only say what would be written.
    pub dry_run: bool,
    /// Lets one import keep several requests in flight: `run` names the import, `seq` (from 0) numbers its
    /// batches, and the node proposes a batch only after the one before it of the same run, whatever order
    /// the requests arrive in. Empty `run`: the request is applied on its own.
    pub run: String,
    pub seq: u64,
    /// Replace the node's own administrator user (`<admin org>/admin`) with the imported one. Without it
    /// the node's administrator is kept (see [`ApplyResult::administrators`]).
    pub replace_admin: bool,
}

/// The target's own administrators, which an import never replaces silently: the admin application and
/// the `admin` user of the admin organization. A record an import brings for either is kept out (and
/// reported) unless replacing it is allowed.
#[derive(Debug, Clone, Copy)]
pub struct Administrators<'a> {
    pub org: &'a str,
    pub app: &'a str,
    /// Replace the `admin` user with the imported one.
    pub replace_user: bool,
    /// Replace the admin application (never over the admin API: the import runs with its credentials).
    pub replace_app: bool,
}

/// An item that would replace one of the target's administrators, and what became of it.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct AdministratorItem {
    /// Position in the request's items.
    pub index: usize,
    pub kind: String,
    /// Written over the target's administrator (dry run: would be); otherwise kept out.
    pub replaced: bool,
    pub note: String,
}

/// An item that was not applied.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Refusal {
    /// Position in the request's items.
    pub index: usize,
    pub kind: String,
    pub reason: String,
}

/// What an apply did (or, for a dry run, would do), counted per command kind.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct ApplyResult {
    pub written: BTreeMap<String, u64>,
    pub unchanged: BTreeMap<String, u64>,
    pub refused: Vec<Refusal>,
    /// Dry runs only: the positions of the items that would be written.
    pub would_write: Vec<usize>,
    /// Items that would replace one of the target's administrators: kept out, or (when allowed) written.
    /// Kept-out items are neither written nor refused: that is by design, not an error.
    pub administrators: Vec<AdministratorItem>,
}

/// Applies import items to a node: keys are sealed with `kek`, items equal to the stored state are counted
/// unchanged and dropped, the rest is written as ONE log entry ([`Command::Each`]) in which the state
/// machine judges every item on its own: refused ones are left out (and reported), the others are written.
///
/// The target's `admins` are kept unless replacing them is allowed (see [`Administrators`]).
pub async fn apply_items(
    node: &ReplicaNode,
    kek: &Kek,
    items: Vec<ApplyItem>,
    dry_run: bool,
    admins: Administrators<'_>,
) -> Result<ApplyResult, EdgeError> {
    let mut prepared = prepare_items(node, kek, items, dry_run, admins)?;
    match prepared.command.take() {
        Some(cmd) => prepared.finish(node.write(cmd).await?),
        None => Ok(prepared.result),
    }
}

/// [`apply_items`] on the leader without waiting for the write: returns once the batch is checked and
/// proposed, with what resolves to its result once applied. Batches proposed one after the other apply in
/// that order, so a caller can have several in flight (the next is checked while the previous applies).
pub async fn propose_items(
    node: &ReplicaNode,
    kek: &Kek,
    items: Vec<ApplyItem>,
    dry_run: bool,
    admins: Administrators<'_>,
) -> Result<impl std::future::Future<Output = Result<ApplyResult, EdgeError>> + Send + 'static, EdgeError> {
    let mut prepared = prepare_items(node, kek, items, dry_run, admins)?;
    let applied = match prepared.command.take() {
        Some(cmd) => Some(node.propose(cmd).await?),
        None => None,
    };
    Ok(async move {
        match applied {
            Some(applied) => prepared.finish(applied.await?),
            None => Ok(prepared.result),
        }
    })
}

/// A batch of import items checked against the state: what is already known of the result, and the one
/// command to write (none when nothing is left to write, or for a dry run).
struct PreparedItems {
    result: ApplyResult,
    command: Option<Command>,
    /// Position and kind of each command inside `command`.
    positions: Vec<(usize, &'static str)>,
    /// Items in `command` that replace one of the target's administrators (reported once written).
    replacing: Vec<AdministratorItem>,
}

impl PreparedItems {
    /// The result, once the state machine has answered `command`.
    fn finish(mut self, response: CommandResponse) -> Result<ApplyResult, EdgeError> {
        if response.outcomes.len() != self.positions.len() {
            return Err(EdgeError::Unexpected(format!(
                "the node answered {} outcomes for {} commands",
                response.outcomes.len(),
                self.positions.len()
            )));
        }
        for ((index, kind), outcome) in self.positions.into_iter().zip(response.outcomes) {
            match outcome {
                Outcome::Applied => {
                    *self.result.written.entry(kind.to_string()).or_default() += 1;
                    if let Some(at) = self.replacing.iter().position(|r| r.index == index) {
                        self.result.administrators.push(self.replacing.swap_remove(at));
                    }
                }
                other => {
                    self.result.refused.push(Refusal { index, kind: kind.to_string(), reason: outcome_text(&other) })
                }
            }
        }
        Ok(self.result)
    }
}

/// The first half of [`apply_items`]: seals keys, drops unchanged items, refuses what an import may not
/// write, and builds the command for the rest.
fn prepare_items(
    node: &ReplicaNode,
    kek: &Kek,
    items: Vec<ApplyItem>,
    dry_run: bool,
    admins: Administrators<'_>,
) -> Result<PreparedItems, EdgeError> {
    let mut result = ApplyResult::default();
    let mut replacing = Vec::new();
    let mut pending: Vec<(usize, Command)> = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let refuse = |kind: &str, reason: String| Refusal { index, kind: kind.to_string(), reason };
        // Signing keys only come as key items: sealed here, with the algorithms their tokens may carry (a
        // record of its own, written after the key). Other commands are not for imports.
        let commands = match item {
            ApplyItem::Key(k) => match crate::keys::import_pem(&k, kek) {
                Ok(key) => {
                    let kid = key.kid.clone();
                    let mut commands = vec![Command::PutSigningKey { key, mode: PutMode::Upsert }];
                    if !k.accepted_algorithms.is_empty() {
                        let accepted = AcceptedAlgorithms { kid, algorithms: k.accepted_algorithms };
                        commands.push(Command::PutAcceptedAlgorithms { accepted, mode: PutMode::Upsert });
                    }
                    commands
                }
                Err(e) => {
                    result.refused.push(refuse("put_signing_key", e.to_string()));
                    continue;
                }
            },
            ApplyItem::Command(cmd) => {
                let allowed = matches!(
                    cmd,
                    Command::PutOrganization { .. }
                        | Command::PutUser { .. }
                        | Command::PutApplication { .. }
                        | Command::PutRole { .. }
                        | Command::PutGroup { .. }
                        | Command::PutPermission { .. }
                        | Command::PutModel { .. }
                        | Command::PutAcceptedIssuer { .. }
                        | Command::Revoke { .. }
                        | Command::IssueRefreshToken { .. }
                );
                if !allowed {
                    result.refused.push(refuse(cmd.kind(), "not a command an import may apply".into()));
                    continue;
                }
                match cmd {
                    Command::PutUser { user, mode } => {
                        let (user, totp) = user_and_totp(node, kek, user)?;
                        let mut commands = vec![Command::PutUser { user, mode }];
                        match totp {
                            ImportedTotp::Put(credential) => commands.push(Command::PutTotp { credential }),
                            ImportedTotp::Unchanged => *result.unchanged.entry("put_totp".into()).or_default() += 1,
                            ImportedTotp::None => {}
                        }
                        commands
                    }
                    cmd => vec![cmd],
                }
            }
        };
        // A user kept out (the target's administrator) takes its TOTP factor with it.
        let mut kept_out = false;
        for cmd in commands {
            if kept_out {
                continue;
            }
            if node.store.unchanged(&cmd)? {
                *result.unchanged.entry(cmd.kind().to_string()).or_default() += 1;
                continue;
            }
            if let Some((replace, note)) = replaces_administrator(node, &cmd, admins)? {
                let item = AdministratorItem { index, kind: cmd.kind().to_string(), replaced: replace, note };
                if !replace {
                    result.administrators.push(item);
                    kept_out = true;
                    continue;
                }
                replacing.push(item);
            }
            pending.push((index, cmd));
        }
    }
    if dry_run || pending.is_empty() {
        for (index, cmd) in &pending {
            *result.written.entry(cmd.kind().to_string()).or_default() += 1;
            if dry_run && result.would_write.last() != Some(index) {
                result.would_write.push(*index);
            }
        }
        result.administrators.append(&mut replacing);
        return Ok(PreparedItems { result, command: None, positions: Vec::new(), replacing });
    }
    let (positions, commands): (Vec<(usize, &'static str)>, Vec<Command>) =
        pending.into_iter().map(|(i, c)| ((i, c.kind()), c)).unzip();
    Ok(PreparedItems { result, command: Some(Command::Each { commands }), positions, replacing })
}

/// The TOTP factor an imported user brings.
// A sealed credential is a few hundred bytes; it is built once and moved into the batch.
#[allow(clippy::large_enum_variant)]
enum ImportedTotp {
    /// To write (sealed), after the user.
    Put(TotpCredential),
    /// The user has this very secret already.
    Unchanged,
    None,
}

/// Takes a Casdoor user's TOTP secret out of the user record: Casdoor keeps `totp_secret` in clear, and
/// here a secret rests only sealed, in the user's TOTP factor (see [`crate::totp`]). With MFA on
/// (`preferred_mfa_type` set) the secret becomes that factor; with MFA off Casdoor does not ask for it,
/// and neither is it kept here. An import replaces a factor with another secret (the source wins, as for
/// every record) and leaves one with the same secret as it is (its recovery codes and used steps too).
fn user_and_totp(node: &ReplicaNode, kek: &Kek, mut user: User) -> Result<(User, ImportedTotp), EdgeError> {
    let secret = std::mem::take(&mut user.totp_secret);
    if secret.is_empty() || user.preferred_mfa_type.is_empty() {
        return Ok((user, ImportedTotp::None));
    }
    let Some(secret) = crate::totp::canonical_secret(&secret) else {
        tracing::warn!(user = %user.full_name(), "imported TOTP secret is not base32: left out");
        return Ok((user, ImportedTotp::None));
    };
    if let Some(existing) = node.store.totp(&user.id)? {
        let existing = existing.to_owned()?;
        if crate::totp::open_secret(kek, &existing).ok().as_deref() == Some(secret.as_str()) {
            return Ok((user, ImportedTotp::Unchanged));
        }
    }
    let credential = crate::totp::seal_credential(kek, &user.id, &secret, &[], 0, crate::clock::now())?;
    Ok((user, ImportedTotp::Put(credential)))
}

/// Whether `cmd` would replace one of the target's administrators, and if so whether that is allowed, with
/// a note for the report.
fn replaces_administrator(
    node: &ReplicaNode,
    cmd: &Command,
    admins: Administrators<'_>,
) -> Result<Option<(bool, String)>, EdgeError> {
    Ok(match cmd {
        Command::PutApplication { app, .. }
            if app.name == admins.app && node.store.application(admins.app)?.is_some() =>
        {
            Some(match admins.replace_app {
                true => (true, "the target's admin application, replaced by the imported one (--replace-admin)".into()),
                false => (false, "the target's admin application, kept (the credentials it has stay valid)".into()),
            })
        }
        Command::PutUser { user, .. }
            if user.owner == admins.org && user.name == "admin" && node.store.user(admins.org, "admin")?.is_some() =>
        {
            Some(match admins.replace_user {
                true => (true, "the target's administrator, replaced by the imported one (--replace-admin)".into()),
                false => (
                    false,
                    "the target's administrator, kept (its password stays valid; --replace-admin replaces it)".into(),
                ),
            })
        }
        _ => None,
    })
}

/// Applies batch `req.seq` of import `req.run`, whose turn it is (see [`ApplyTurns::wait`]), and hands the
/// turn on as soon as the batch is proposed (on the leader) or written (elsewhere), so the next batch is
/// checked while this one applies.
pub(crate) async fn apply_in_turn(
    node: &ReplicaNode,
    kek: &Kek,
    turns: &ApplyTurns,
    req: ApplyRequest,
    admins: Administrators<'_>,
) -> Result<ApplyResult, EdgeError> {
    let leader = node.raft.metrics().borrow().current_leader == Some(node.id);
    if !leader {
        let r = apply_items(node, kek, req.items, req.dry_run, admins).await;
        turns.done(&req.run, req.seq);
        return r;
    }
    let proposed = propose_items(node, kek, req.items, req.dry_run, admins).await;
    turns.done(&req.run, req.seq);
    proposed?.await
}

/// Whose turn it is among the batches of each import sending several at once (see [`ApplyRequest::run`]).
#[derive(Default)]
pub(crate) struct ApplyTurns {
    /// Import → the next batch to propose, and when the import was last heard of.
    next: std::sync::Mutex<HashMap<String, (u64, std::time::Instant)>>,
    changed: tokio::sync::Notify,
}

impl ApplyTurns {
    /// Waits until batch `seq` of `run` may go. False if it never will (a batch before it is missing, or
    /// this one already went).
    pub(crate) async fn wait(&self, run: &str, seq: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            let next = self.next.lock().unwrap_or_else(|p| p.into_inner()).get(run).map(|e| e.0).unwrap_or(0);
            if next == seq {
                return true;
            }
            if next > seq || tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }

    /// Batch `seq` of `run` has gone: the next one may.
    pub(crate) fn done(&self, run: &str, seq: u64) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        next.retain(|_, (_, seen)| now.duration_since(*seen) < Duration::from_secs(3600));
        next.insert(run.to_string(), (seq + 1, now));
        drop(next);
        self.changed.notify_waiters();
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Applied => "applied".into(),
        Outcome::Conflict(m) | Outcome::NotFound(m) | Outcome::Invalid(m) => m.clone(),
        Outcome::Reused => "refused".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::ApplyTurns;

    /// Batches of one import go in their numbered order whatever order they arrive in; a batch whose
    /// predecessor never comes is refused after the wait; imports do not wait for each other.
    #[tokio::test]
    async fn batches_take_turns_in_their_order() {
        let turns = Arc::new(ApplyTurns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for seq in [2u64, 0, 1] {
            let (turns, order) = (turns.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                assert!(turns.wait("run-a", seq, Duration::from_secs(5)).await);
                order.lock().unwrap().push(seq);
                turns.done("run-a", seq);
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
        assert!(!turns.wait("run-a", 1, Duration::from_millis(50)).await, "a batch that already went");
        assert!(!turns.wait("run-a", 5, Duration::from_millis(50)).await, "batches 3 and 4 never came");
        assert!(turns.wait("run-b", 0, Duration::from_millis(50)).await, "another import starts at once");
    }
}
