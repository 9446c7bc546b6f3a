//! Applying a [`Command`] to the state: the one place that decides what a command does.
//!
//! Commands are applied to a [`Pending`] overlay over the `state` tree; the caller commits the overlay
//! (with the applied log id) as one sled batch. A command that is refused leaves the overlay as it was.

use std::collections::BTreeMap;

use crate::command::{Command, Outcome, PutMode};
use crate::model::SIGNING_ALGORITHMS;
use crate::model::{
    AcceptedAlgorithms, AcceptedIssuer, AccountingEvent, AccountingSession, Admission, Application, CasbinModel, Group,
    NtCredential, Organization, Permission, RefreshState, RefreshToken, Revocation, Role, SigninFailures, SigningKey,
    User,
};
use crate::store::{key, Change, Stored};
use crate::RaftError;

mod signin;
pub use signin::{MAX_PASSKEY_BYTES, MAX_RECOVERY_CODES};

/// One undo-journal entry: a key and what the overlay held for it before a write (`None`: nothing).
type Undo = (Vec<u8>, Option<Option<Vec<u8>>>);

/// Writes not yet committed to sled, read through by later commands of the same batch.
pub(crate) struct Pending<'a> {
    tree: &'a sled::Tree,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Undo log: each write with what `writes` held for its key before, so a refused command can be
    /// rolled back without copying the whole overlay.
    journal: Vec<Undo>,
    pub(crate) changes: Vec<Change>,
    /// The last organization looked up in the tree, and whether it was there.
    org_in_tree: Option<(Vec<u8>, bool)>,
}

impl<'a> Pending<'a> {
    pub(crate) fn new(tree: &'a sled::Tree) -> Self {
        Pending { tree, writes: BTreeMap::new(), journal: Vec::new(), changes: Vec::new(), org_in_tree: None }
    }

    fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, RaftError> {
        match self.writes.get(k) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.tree.get(k)?.map(|v| v.to_vec())),
        }
    }

    fn contains(&self, k: &[u8]) -> Result<bool, RaftError> {
        match self.writes.get(k) {
            Some(v) => Ok(v.is_some()),
            None => Ok(self.tree.contains_key(k)?),
        }
    }

    fn read<T: Stored>(&self, k: &[u8]) -> Result<Option<T>, RaftError>
    where
        T::Archived: rkyv::Portable,
    {
        self.get(k)?.map(|b| T::decode(&b)).transpose()
    }

    fn write(&mut self, k: Vec<u8>, v: Option<Vec<u8>>) {
        let before = self.writes.insert(k.clone(), v);
        self.journal.push((k, before));
    }

    fn put_raw(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.write(k, Some(v));
    }

    fn put<T: Stored>(&mut self, k: Vec<u8>, v: &T) -> Result<(), RaftError>
    where
        T::Archived: rkyv::Portable,
    {
        let bytes = v.encode()?;
        T::validate(&bytes)?;
        self.put_raw(k, bytes);
        Ok(())
    }

    fn delete(&mut self, k: Vec<u8>) {
        self.write(k, None);
    }

    /// Undoes every write made after the journal had `mark` entries.
    fn roll_back_to(&mut self, mark: usize) {
        while self.journal.len() > mark {
            let Some((k, before)) = self.journal.pop() else { break };
            match before {
                Some(v) => self.writes.insert(k, v),
                None => self.writes.remove(&k),
            };
        }
    }

    /// Keys under a prefix, as they will be after the pending writes.
    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, RaftError> {
        let mut keys: std::collections::BTreeSet<Vec<u8>> = std::collections::BTreeSet::new();
        for k in self.tree.scan_prefix(prefix).keys() {
            keys.insert(k?.to_vec());
        }
        for (k, v) in self.writes.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            if v.is_some() {
                keys.insert(k.clone());
            } else {
                keys.remove(k);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Keys from `prefix` up to `end` (excluded), in order, as they will be after the pending writes; at
    /// most `max`.
    fn keys_before(&self, prefix: &[u8], end: &[u8], max: usize) -> Result<Vec<Vec<u8>>, RaftError> {
        let mut keys: std::collections::BTreeSet<Vec<u8>> = std::collections::BTreeSet::new();
        // Pending deletions can hide tree keys: read as many more as there are pending writes in the range.
        let pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = self.writes.range(prefix.to_vec()..end.to_vec()).collect();
        for k in self.tree.range(prefix..end).keys().take(max.saturating_add(pending.len())) {
            keys.insert(k?.to_vec());
        }
        for (k, v) in pending {
            if v.is_some() {
                keys.insert(k.clone());
            } else {
                keys.remove(k);
            }
        }
        Ok(keys.into_iter().take(max).collect())
    }

    /// Everything pending, to be written as one batch.
    pub(crate) fn into_batch(self) -> (sled::Batch, Vec<Change>) {
        // The journal only serves roll-backs within this batch.
        let mut batch = sled::Batch::default();
        for (k, v) in self.writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        (batch, self.changes)
    }

    pub(crate) fn put_meta(&mut self, k: &[u8], v: Vec<u8>) {
        self.put_raw(k.to_vec(), v);
    }

    /// Applies one command. On anything but [`Outcome::Applied`] nothing of the command remains pending.
    pub(crate) fn apply(&mut self, cmd: &Command) -> Result<Outcome, RaftError> {
        let mark = self.journal.len();
        let saved_changes = self.changes.len();
        let outcome = self.apply_inner(cmd)?;
        if outcome != Outcome::Applied && outcome != Outcome::Reused {
            self.roll_back_to(mark);
            self.changes.truncate(saved_changes);
        }
        Ok(outcome)
    }

    fn apply_inner(&mut self, cmd: &Command) -> Result<Outcome, RaftError> {
        match cmd {
            Command::PutOrganization { org, mode } => self.put_organization(org, *mode),
            Command::DeleteOrganization { name } => self.delete_organization(name),
            Command::PutUser { user, mode } => self.put_user(user, *mode),
            Command::DeleteUser { owner, name } => self.delete_user(owner, name),
            Command::PutApplication { app, mode } => self.put_application(app, *mode),
            Command::DeleteApplication { name } => self.delete_application(name),
            Command::PutSigningKey { key, mode } => self.put_signing_key(key, *mode),
            Command::RotateSigningKey { old_kid, new, retire_at } => self.rotate_signing_key(old_kid, new, *retire_at),
            Command::DeleteSigningKey { kid } => self.delete_signing_key(kid),
            Command::PutRole { role, mode } => self.put_role(role, *mode),
            Command::DeleteRole { owner, name } => {
                let k = key::role(owner, name);
                if !self.contains(&k)? {
                    return Ok(Outcome::NotFound(format!("role {owner}/{name}")));
                }
                self.delete(k);
                self.changes.push(Change::Role { owner: owner.clone(), name: name.clone() });
                Ok(Outcome::Applied)
            }
            Command::PutGroup { group, mode } => self.put_group(group, *mode),
            Command::DeleteGroup { owner, name } => {
                let k = key::group(owner, name);
                if !self.contains(&k)? {
                    return Ok(Outcome::NotFound(format!("group {owner}/{name}")));
                }
                self.delete(k);
                self.changes.push(Change::Group { owner: owner.clone(), name: name.clone() });
                Ok(Outcome::Applied)
            }
            Command::PutPermission { permission, mode } => self.put_permission(permission, *mode),
            Command::DeletePermission { owner, name } => {
                let k = key::permission(owner, name);
                if !self.contains(&k)? {
                    return Ok(Outcome::NotFound(format!("permission {owner}/{name}")));
                }
                self.delete(k);
                self.changes.push(Change::Permission { owner: owner.clone(), name: name.clone() });
                Ok(Outcome::Applied)
            }
            Command::PutModel { model, mode } => self.put_model(model, *mode),
            Command::DeleteModel { owner, name } => {
                let k = key::model(owner, name);
                if !self.contains(&k)? {
                    return Ok(Outcome::NotFound(format!("model {owner}/{name}")));
                }
                self.delete(k);
                self.changes.push(Change::Model { owner: owner.clone(), name: name.clone() });
                Ok(Outcome::Applied)
            }
            Command::PutAcceptedIssuer { accepted, mode } => self.put_accepted_issuer(accepted, *mode),
            Command::DeleteAcceptedIssuer { application, issuer } => {
                let k = key::accepted_issuer(application, issuer);
                if !self.contains(&k)? {
                    return Ok(Outcome::NotFound(format!("accepted issuer {issuer} of {application}")));
                }
                self.delete(k);
                self.changes.push(Change::AcceptedIssuer { application: application.clone(), issuer: issuer.clone() });
                Ok(Outcome::Applied)
            }
            Command::PutAcceptedAlgorithms { accepted, mode } => self.put_accepted_algorithms(accepted, *mode),
            Command::IssueRefreshToken { token } => self.issue_refresh_token(token),
            Command::RotateRefreshToken { old_id, new, now } => self.rotate_refresh_token(old_id, new, *now),
            Command::Revoke { revocation } => self.revoke(revocation),
            Command::RevokeRefreshFamily { family, now } => self.revoke_family(family, *now),
            Command::Prune { now } => self.prune(*now),
            Command::Batch { commands } => {
                for c in commands {
                    let outcome = self.apply(c)?;
                    if outcome != Outcome::Applied {
                        return Ok(outcome);
                    }
                }
                Ok(Outcome::Applied)
            }
            Command::Each { commands } => {
                self.apply_each(commands)?;
                Ok(Outcome::Applied)
            }
            Command::RecordSigninFailure { account, now, limit, frozen_secs } => {
                if account.is_empty() || account.contains('\0') || account.len() > 2048 {
                    return Ok(Outcome::Invalid("an account is empty, longer than 2048 bytes or has a NUL".into()));
                }
                let k = key::signin_failures(account);
                let previous = self.read::<SigninFailures>(&k)?;
                let next = SigninFailures::after_failure(previous.as_ref(), account, *now, *limit, *frozen_secs);
                self.put(k, &next)?;
                Ok(Outcome::Applied)
            }
            Command::ResetSigninFailures { account } => {
                let k = key::signin_failures(account);
                if !self.contains(&k)? {
                    return Ok(Outcome::NotFound(format!("failed sign-ins of {account}")));
                }
                self.delete(k);
                Ok(Outcome::Applied)
            }
            Command::AdmitNode { admission } => self.admit_node(admission),
            Command::RecordAccounting { event } => self.record_accounting(event),
            Command::PruneAccounting { before, limit } => self.prune_accounting(*before, *limit),
            Command::PutNtCredential { credential } => self.put_nt_credential(credential),
            Command::StartSession { session } => self.start_session(session),
            Command::TouchSession { id, at, application } => self.touch_session(id, *at, application),
            Command::EndSession { id } => self.end_session(id),
            Command::EndUserSessions { user_id } => self.end_user_sessions(user_id),
            Command::RedeemCode { redemption, refresh, now, session_id } => {
                self.redeem_code(redemption, refresh.as_ref(), *now, session_id)
            }
            Command::PutConsent { consent } => self.put_consent(consent),
            Command::DeleteConsent { user_id, application } => self.delete_consent(user_id, application),
            Command::PutTotp { credential } => self.put_totp(credential),
            Command::DeleteTotp { user_id } => self.delete_totp(user_id),
            Command::UseTotpStep { user_id, step } => self.use_totp_step(user_id, *step),
            Command::UseRecoveryCode { user_id, digest } => self.use_recovery_code(user_id, digest),
            Command::PutPasskey { passkey } => self.put_passkey(passkey),
            Command::UsePasskey { user_id, credential_id, sign_count, credential, at } => {
                self.use_passkey(user_id, credential_id, *sign_count, credential, *at)
            }
            Command::DeletePasskey { user_id, credential_id } => self.delete_passkey(user_id, credential_id),
            Command::StartDeviceAuthorization { authorization } => self.start_device_authorization(authorization),
            Command::DecideDeviceAuthorization { user_code, approve, user_id, auth_time, amr, session_id, now } => {
                self.decide_device_authorization(user_code, *approve, user_id, *auth_time, amr, session_id, *now)
            }
            Command::RedeemDeviceCode { device_code_digest, refresh, now } => {
                self.redeem_device_code(device_code_digest, refresh.as_ref(), *now)
            }
        }
    }

    fn record_accounting(&mut self, e: &AccountingEvent) -> Result<Outcome, RaftError> {
        if let Some(problem) = accounting_event_problem(e) {
            return Ok(Outcome::Invalid(problem));
        }
        if !e.status.is_session_event() {
            // Accounting-On/Off: the NAS restarted; its sessions still open are over.
            for k in self.keys_with_prefix(&key::accounting_of_nas(&e.nas_client))? {
                let Some(session) = self.read::<AccountingSession>(&k)? else { continue };
                if let Some(closed) = session.after_nas_restart(e) {
                    self.replace_session(k, Some(&session), &closed)?;
                }
            }
            return Ok(Outcome::Applied);
        }
        if !self.org_exists(&e.organization)? {
            return Ok(Outcome::Invalid(format!("organization {} does not exist", e.organization)));
        }
        let k = key::accounting(&e.nas_client, &e.acct_session_id);
        let previous = self.read::<AccountingSession>(&k)?;
        let next = AccountingSession::after_event(previous.as_ref(), e);
        self.replace_session(k, previous.as_ref(), &next)?;
        Ok(Outcome::Applied)
    }

    /// Writes a session under `k` with its index entries, replacing those of `previous`.
    fn replace_session(
        &mut self,
        k: Vec<u8>,
        previous: Option<&AccountingSession>,
        next: &AccountingSession,
    ) -> Result<(), RaftError> {
        if let Some(p) = previous {
            for ik in crate::store::accounting_index_entries(p) {
                self.delete(ik);
            }
        }
        for ik in crate::store::accounting_index_entries(next) {
            self.put_raw(ik, k.clone());
        }
        self.put(k, next)
    }

    fn remove_session(&mut self, k: Vec<u8>) -> Result<(), RaftError> {
        if let Some(s) = self.read::<AccountingSession>(&k)? {
            for ik in crate::store::accounting_index_entries(&s) {
                self.delete(ik);
            }
        }
        self.delete(k);
        Ok(())
    }

    fn prune_accounting(&mut self, before: i64, limit: u32) -> Result<Outcome, RaftError> {
        let end = key::accounting_age_bound(before);
        for ak in self.keys_before(key::ACCOUNTING_BY_AGE, &end, limit as usize)? {
            match self.get(&ak)? {
                Some(primary) if primary.starts_with(key::ACCOUNTING) => self.remove_session(primary)?,
                _ => self.delete(ak),
            }
        }
        Ok(Outcome::Applied)
    }

    fn admit_node(&mut self, admission: &Admission) -> Result<Outcome, RaftError> {
        if admission.node_id == 0 {
            return Ok(Outcome::Invalid("node ids start at 1".into()));
        }
        if admission.token_digest.len() != 64 || !admission.token_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Outcome::Invalid("tokenDigest must be a SHA-256 digest in hex".into()));
        }
        let mut admission = admission.clone();
        admission.token_digest.make_ascii_lowercase();
        self.put(key::admission(admission.node_id), &admission)?;
        Ok(Outcome::Applied)
    }

    /// A membership entry took effect: the admissions of the nodes it names, and of those it removes, are
    /// used up. A node that joined needs no admission any more, and a node that is removed needs a new
    /// one to come back.
    pub(crate) fn membership_changed(
        &mut self,
        next: &openraft::Membership<crate::NodeId, crate::Node>,
    ) -> Result<(), RaftError> {
        let mut ids: std::collections::BTreeSet<crate::NodeId> = next.nodes().map(|(id, _)| *id).collect();
        if let Some(bytes) = self.get(key::META_MEMBERSHIP)? {
            let previous: openraft::StoredMembership<crate::NodeId, crate::Node> =
                serde_json::from_slice(&bytes).map_err(|e| RaftError::Corrupt(format!("stored membership: {e}")))?;
            ids.extend(previous.membership().nodes().map(|(id, _)| *id));
        }
        for id in ids {
            self.delete(key::admission(id));
        }
        Ok(())
    }

    /// Applies each command on its own (a refused one changes nothing and the rest go on).
    pub(crate) fn apply_each(&mut self, commands: &[Command]) -> Result<Vec<Outcome>, RaftError> {
        commands.iter().map(|c| self.apply(c)).collect()
    }

    /// Checks `mode` against whether `k` exists (an upsert takes either: no lookup).
    fn check_mode(&self, k: &[u8], mode: PutMode, what: impl FnOnce() -> String) -> Result<Option<Outcome>, RaftError> {
        if mode == PutMode::Upsert {
            return Ok(None);
        }
        let exists = self.contains(k)?;
        Ok(match (mode, exists) {
            (PutMode::Create, true) => Some(Outcome::Conflict(format!("{} already exists", what()))),
            (PutMode::Update, false) => Some(Outcome::NotFound(format!("{} does not exist", what()))),
            _ => None,
        })
    }

    /// Whether organization `name` exists. Lookups in the tree are remembered for the batch (the tree does
    /// not change while a batch is pending): a batch of users asks for the same organization each time.
    fn org_exists(&mut self, name: &str) -> Result<bool, RaftError> {
        let k = key::org(name);
        if let Some(v) = self.writes.get(&k) {
            return Ok(v.is_some());
        }
        if let Some((known, exists)) = &self.org_in_tree {
            if *known == k {
                return Ok(*exists);
            }
        }
        let exists = self.tree.contains_key(&k)?;
        self.org_in_tree = Some((k, exists));
        Ok(exists)
    }

    fn put_organization(&mut self, org: &Organization, mode: PutMode) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_names(&[&org.name]) {
            return Ok(bad);
        }
        let k = key::org(&org.name);
        if let Some(o) = self.check_mode(&k, mode, || format!("organization {}", org.name))? {
            return Ok(o);
        }
        self.put(k, org)?;
        self.changes.push(Change::Organization(org.name.clone()));
        Ok(Outcome::Applied)
    }

    fn delete_organization(&mut self, name: &str) -> Result<Outcome, RaftError> {
        let k = key::org(name);
        if !self.contains(&k)? {
            return Ok(Outcome::NotFound(format!("organization {name}")));
        }
        let in_use: Vec<String> = self
            .keys_with_prefix(key::APP)?
            .into_iter()
            .filter_map(|k| self.read::<Application>(&k).ok().flatten())
            .filter(|a| a.organization == name)
            .map(|a| a.name)
            .collect();
        if !in_use.is_empty() {
            return Ok(Outcome::Invalid(format!("organization {name} still has applications: {}", in_use.join(", "))));
        }
        for uk in self.keys_with_prefix(&key::users_of(name))? {
            if let Some(u) = self.read::<User>(&uk)? {
                self.remove_user(&u)?;
            }
        }
        for rk in self.keys_with_prefix(&key::roles_of(name))? {
            self.delete(rk);
        }
        for gk in self.keys_with_prefix(&key::groups_of(name))? {
            self.delete(gk);
        }
        for pk in self.keys_with_prefix(&key::permissions_of(name))? {
            self.delete(pk);
        }
        for ik in self.keys_with_prefix(&key::accounting_by_org(name))? {
            match self.get(&ik)? {
                Some(primary) if primary.starts_with(key::ACCOUNTING) => self.remove_session(primary)?,
                _ => self.delete(ik),
            }
        }
        self.delete(k);
        self.changes.push(Change::Organization(name.to_string()));
        Ok(Outcome::Applied)
    }

    fn put_user(&mut self, user: &User, mode: PutMode) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_names(&[&user.owner, &user.name]) {
            return Ok(bad);
        }
        if user.id.is_empty() || user.id.contains('\0') {
            return Ok(Outcome::Invalid("user id must be set".into()));
        }
        if !self.org_exists(&user.owner)? {
            return Ok(Outcome::Invalid(format!("organization {} does not exist", user.owner)));
        }
        let k = key::user(&user.owner, &user.name);
        if let Some(o) = self.check_mode(&k, mode, || format!("user {}/{}", user.owner, user.name))? {
            return Ok(o);
        }
        // The id must stay unique across the whole state.
        if let Some(other) = self.get(&key::user_by_id(&user.id))? {
            if other != k {
                return Ok(Outcome::Conflict(format!("user id {} is taken", user.id)));
            }
        }
        // A create has just found no record under `k`: nothing to read back.
        if mode != PutMode::Create {
            if let Some(old) = self.read::<User>(&k)? {
                self.remove_user_indexes(&old);
                // An NT-hash credential belongs to one id and one stored password.
                if old.id != user.id || NtCredential::binding(&old) != NtCredential::binding(user) || user.is_deleted {
                    self.delete(key::nt_credential(&old.id));
                }
                // A disabled, deleted or replaced account is signed out everywhere.
                if old.id != user.id || user.is_deleted || user.is_forbidden {
                    self.end_user_sessions(&old.id)?;
                }
                // Tokens name their user by id: those of the old id are now no one's.
                if old.id != user.id {
                    self.changes.push(Change::User { owner: old.owner, name: old.name, id: old.id });
                }
            }
        }
        self.put(k.clone(), user)?;
        for (ik, primary) in crate::store::directory_index_entries(user) {
            self.put_raw(ik, primary);
        }
        self.put_raw(key::user_by_id(&user.id), k.clone());
        if !user.email.is_empty() {
            let ek = key::user_by_email(&user.owner, &user.email);
            // First user with an email keeps it (Casdoor finds the first match too).
            if !self.contains(&ek)? {
                self.put_raw(ek, k);
            }
        }
        self.changes.push(Change::User { owner: user.owner.clone(), name: user.name.clone(), id: user.id.clone() });
        Ok(Outcome::Applied)
    }

    fn remove_user_indexes(&mut self, u: &User) {
        let k = key::user(&u.owner, &u.name);
        for (ik, _) in crate::store::directory_index_entries(u) {
            self.delete(ik);
        }
        self.delete(key::user_by_id(&u.id));
        if !u.email.is_empty() {
            let ek = key::user_by_email(&u.owner, &u.email);
            if self.get(&ek).ok().flatten().as_deref() == Some(&k[..]) {
                self.delete(ek);
            }
        }
    }

    fn remove_user(&mut self, u: &User) -> Result<(), RaftError> {
        self.remove_user_indexes(u);
        self.remove_sign_in_state(u)?;
        self.delete(key::nt_credential(&u.id));
        self.delete(key::user(&u.owner, &u.name));
        self.changes.push(Change::User { owner: u.owner.clone(), name: u.name.clone(), id: u.id.clone() });
        Ok(())
    }

    fn delete_user(&mut self, owner: &str, name: &str) -> Result<Outcome, RaftError> {
        match self.read::<User>(&key::user(owner, name))? {
            Some(u) => {
                self.remove_user(&u)?;
                Ok(Outcome::Applied)
            }
            None => Ok(Outcome::NotFound(format!("user {owner}/{name}"))),
        }
    }

    fn put_nt_credential(&mut self, c: &NtCredential) -> Result<Outcome, RaftError> {
        if c.user_id.is_empty() || c.user_id.contains('\0') {
            return Ok(Outcome::Invalid("an NT-hash credential needs its user id".into()));
        }
        if c.sealed.is_empty() || c.sealed.len() > crate::model::MAX_SEALED_NT_CREDENTIAL {
            return Ok(Outcome::Invalid(format!(
                "a sealed NT-hash credential takes 1 to {} bytes",
                crate::model::MAX_SEALED_NT_CREDENTIAL
            )));
        }
        let user = match self.get(&key::user_by_id(&c.user_id))? {
            Some(primary) if primary.starts_with(key::USER) => self.read::<User>(&primary)?,
            _ => None,
        };
        let Some(user) = user else {
            return Ok(Outcome::NotFound(format!("user {}", c.user_id)));
        };
        if user.is_deleted {
            return Ok(Outcome::Invalid(format!("user {}/{} is deleted", user.owner, user.name)));
        }
        if !c.is_current_for(&user) {
            return Ok(Outcome::Conflict(format!(
                "the password of {}/{} changed since the NT-hash credential was derived",
                user.owner, user.name
            )));
        }
        self.put(key::nt_credential(&c.user_id), c)?;
        Ok(Outcome::Applied)
    }

    fn put_application(&mut self, app: &Application, mode: PutMode) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_names(&[&app.name, &app.client_id]) {
            return Ok(bad);
        }
        if !self.org_exists(&app.organization)? {
            return Ok(Outcome::Invalid(format!("organization {} does not exist", app.organization)));
        }
        if !app.cert.is_empty() && !self.contains(&key::signing_key(&app.cert))? {
            return Ok(Outcome::Invalid(format!("signing key {} does not exist", app.cert)));
        }
        let k = key::app(&app.name);
        if let Some(o) = self.check_mode(&k, mode, || format!("application {}", app.name))? {
            return Ok(o);
        }
        let ck = key::app_by_client(&app.client_id);
        if let Some(owner) = self.get(&ck)? {
            if owner != k {
                return Ok(Outcome::Conflict(format!("client_id {} is taken", app.client_id)));
            }
        }
        if let Some(old) = self.read::<Application>(&k)? {
            self.delete(key::app_by_client(&old.client_id));
            self.changes.push(Change::Application { name: old.name.clone(), client_id: old.client_id.clone() });
        }
        self.put(k.clone(), app)?;
        self.put_raw(ck, k);
        self.changes.push(Change::Application { name: app.name.clone(), client_id: app.client_id.clone() });
        Ok(Outcome::Applied)
    }

    fn delete_application(&mut self, name: &str) -> Result<Outcome, RaftError> {
        let k = key::app(name);
        match self.read::<Application>(&k)? {
            Some(app) => {
                self.delete(key::app_by_client(&app.client_id));
                for ik in self.keys_with_prefix(&key::accepted_issuers_of(name))? {
                    self.delete(ik);
                }
                self.delete(k);
                self.changes.push(Change::Application { name: app.name, client_id: app.client_id });
                Ok(Outcome::Applied)
            }
            None => Ok(Outcome::NotFound(format!("application {name}"))),
        }
    }

    fn put_signing_key(&mut self, sk: &SigningKey, mode: PutMode) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_names(&[&sk.kid]) {
            return Ok(bad);
        }
        let k = key::signing_key(&sk.kid);
        if let Some(o) = self.check_mode(&k, mode, || format!("signing key {}", sk.kid))? {
            return Ok(o);
        }
        self.put(k, sk)?;
        self.changes.push(Change::SigningKey(sk.kid.clone()));
        Ok(Outcome::Applied)
    }

    fn rotate_signing_key(&mut self, old_kid: &str, new: &SigningKey, retire_at: i64) -> Result<Outcome, RaftError> {
        let ok = key::signing_key(old_kid);
        let Some(mut old) = self.read::<SigningKey>(&ok)? else {
            return Ok(Outcome::NotFound(format!("signing key {old_kid}")));
        };
        if old.retire_at != 0 {
            return Ok(Outcome::Invalid(format!("signing key {old_kid} is already retired")));
        }
        let outcome = self.put_signing_key(new, PutMode::Create)?;
        if outcome != Outcome::Applied {
            return Ok(outcome);
        }
        old.retire_at = retire_at;
        self.put(ok, &old)?;
        self.changes.push(Change::SigningKey(old_kid.to_string()));
        for ak in self.keys_with_prefix(key::APP)? {
            if let Some(mut app) = self.read::<Application>(&ak)? {
                if app.cert == old_kid {
                    app.cert = new.kid.clone();
                    self.put(ak, &app)?;
                    self.changes.push(Change::Application { name: app.name, client_id: app.client_id });
                }
            }
        }
        Ok(Outcome::Applied)
    }

    fn delete_signing_key(&mut self, kid: &str) -> Result<Outcome, RaftError> {
        let k = key::signing_key(kid);
        if !self.contains(&k)? {
            return Ok(Outcome::NotFound(format!("signing key {kid}")));
        }
        let users: Vec<String> = self
            .keys_with_prefix(key::APP)?
            .into_iter()
            .filter_map(|k| self.read::<Application>(&k).ok().flatten())
            .filter(|a| a.cert == kid)
            .map(|a| a.name)
            .collect();
        if !users.is_empty() {
            return Ok(Outcome::Invalid(format!("signing key {kid} is used by {}", users.join(", "))));
        }
        self.remove_signing_key(kid);
        Ok(Outcome::Applied)
    }

    /// Removes a key with the algorithms it accepted (a key created later under the same kid starts
    /// strict).
    fn remove_signing_key(&mut self, kid: &str) {
        self.delete(key::signing_key(kid));
        self.delete(key::accepted_algorithms(kid));
        self.changes.push(Change::SigningKey(kid.to_string()));
    }

    fn put_accepted_algorithms(&mut self, a: &AcceptedAlgorithms, mode: PutMode) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_names(&[&a.kid]) {
            return Ok(bad);
        }
        if !self.contains(&key::signing_key(&a.kid))? {
            return Ok(Outcome::Invalid(format!("signing key {} does not exist", a.kid)));
        }
        if let Some(alg) = a.algorithms.iter().find(|alg| !SIGNING_ALGORITHMS.contains(&alg.as_str())) {
            return Ok(Outcome::Invalid(format!("unknown algorithm {alg:?} for signing key {}", a.kid)));
        }
        let k = key::accepted_algorithms(&a.kid);
        if let Some(o) = self.check_mode(&k, mode, || format!("accepted algorithms of {}", a.kid))? {
            return Ok(o);
        }
        self.put(k, a)?;
        self.changes.push(Change::SigningKey(a.kid.clone()));
        Ok(Outcome::Applied)
    }

    fn put_role(&mut self, role: &Role, mode: PutMode) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_names(&[&role.owner, &role.name]) {
            return Ok(bad);
        }
        if !self.org_exists(&role.owner)? {
            return Ok(Outcome::Invalid(format!("organization {} does not exist", role.owner)));
        }
        let k = key::role(&role.owner, &role.name);
        if let Some(o) = self.check_mode(&k, mode, || format!("role {}/{}", role.owner, role.name))? {
            return Ok(o);
        }
        self.put(k, role)?;
        self.changes.push(Change::Role { owner: role.owner.clone(), name: role.name.clone() });
        Ok(Outcome::Applied)
    }

    fn put_group(&mut self, group: &Group, mode: PutMode) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_names(&[&group.owner, &group.name]) {
            return Ok(bad);
        }
        if !self.org_exists(&group.owner)? {
            return Ok(Outcome::Invalid(format!("organization {} does not exist", group.owner)));
        }
        let k = key::group(&group.owner, &group.name);
        if let Some(o) = self.check_mode(&k, mode, || format!("group {}/{}", group.owner, group.name))? {
            return Ok(o);
        }
        self.put(k, group)?;
        self.changes.push(Change::Group { owner: group.owner.clone(), name: group.name.clone() });
        Ok(Outcome::Applied)
    }

    fn put_permission(&mut self, p: &Permission, mode: PutMode) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_names(&[&p.owner, &p.name]) {
            return Ok(bad);
        }
        if !self.org_exists(&p.owner)? {
            return Ok(Outcome::Invalid(format!("organization {} does not exist", p.owner)));
        }
        let k = key::permission(&p.owner, &p.name);
        if let Some(o) = self.check_mode(&k, mode, || format!("permission {}/{}", p.owner, p.name))? {
            return Ok(o);
        }
        self.put(k, p)?;
        self.changes.push(Change::Permission { owner: p.owner.clone(), name: p.name.clone() });
        Ok(Outcome::Applied)
    }

    fn put_model(&mut self, m: &CasbinModel, mode: PutMode) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_names(&[&m.owner, &m.name]) {
            return Ok(bad);
        }
        let k = key::model(&m.owner, &m.name);
        if let Some(o) = self.check_mode(&k, mode, || format!("model {}/{}", m.owner, m.name))? {
            return Ok(o);
        }
        self.put(k, m)?;
        self.changes.push(Change::Model { owner: m.owner.clone(), name: m.name.clone() });
        Ok(Outcome::Applied)
    }

    fn put_accepted_issuer(&mut self, a: &AcceptedIssuer, mode: PutMode) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_names(&[&a.application]).or_else(|| check_ids(&[&a.issuer])) {
            return Ok(bad);
        }
        if !self.contains(&key::app(&a.application))? {
            return Ok(Outcome::Invalid(format!("application {} does not exist", a.application)));
        }
        let k = key::accepted_issuer(&a.application, &a.issuer);
        if let Some(o) = self.check_mode(&k, mode, || format!("accepted issuer {} of {}", a.issuer, a.application))? {
            return Ok(o);
        }
        self.put(k, a)?;
        self.changes.push(Change::AcceptedIssuer { application: a.application.clone(), issuer: a.issuer.clone() });
        Ok(Outcome::Applied)
    }

    fn issue_refresh_token(&mut self, token: &RefreshToken) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_ids(&[&token.id, &token.family]) {
            return Ok(bad);
        }
        let k = key::refresh(&token.id);
        if self.contains(&k)? {
            return Ok(Outcome::Conflict(format!("refresh token {} exists", token.id)));
        }
        self.put(k, token)?;
        self.put_raw(key::family_member(&token.family, &token.id), Vec::new());
        self.changes.push(Change::RefreshToken(token.id.clone()));
        Ok(Outcome::Applied)
    }

    fn rotate_refresh_token(&mut self, old_id: &str, new: &RefreshToken, now: i64) -> Result<Outcome, RaftError> {
        let ok = key::refresh(old_id);
        let Some(mut old) = self.read::<RefreshToken>(&ok)? else {
            return Ok(Outcome::NotFound(format!("refresh token {old_id}")));
        };
        match old.state {
            RefreshState::Active if old.expires_at > now => {}
            RefreshState::Active => return Ok(Outcome::Invalid("refresh token expired".into())),
            RefreshState::Rotated => {
                // Reuse of an exchanged token: someone holds a copy. Revoke the whole family.
                self.revoke_family(&old.family, now)?;
                return Ok(Outcome::Reused);
            }
            RefreshState::Revoked => return Ok(Outcome::Invalid("refresh token revoked".into())),
        }
        if new.family != old.family {
            return Ok(Outcome::Invalid("new refresh token must stay in its family".into()));
        }
        old.state = RefreshState::Rotated;
        self.put(ok, &old)?;
        self.changes.push(Change::RefreshToken(old.id.clone()));
        self.issue_refresh_token(new)
    }

    fn revoke(&mut self, r: &Revocation) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_ids(&[&r.jti]) {
            return Ok(bad);
        }
        self.put(key::revocation(&r.jti), r)?;
        self.changes.push(Change::Revocation(r.jti.clone()));
        Ok(Outcome::Applied)
    }

    fn revoke_family(&mut self, family: &str, now: i64) -> Result<Outcome, RaftError> {
        let members = self.keys_with_prefix(&key::family(family))?;
        if members.is_empty() {
            return Ok(Outcome::NotFound(format!("refresh token family {family}")));
        }
        let prefix_len = key::family(family).len();
        for mk in members {
            let id = String::from_utf8_lossy(&mk[prefix_len..]).into_owned();
            let tk = key::refresh(&id);
            if let Some(mut t) = self.read::<RefreshToken>(&tk)? {
                if t.state != RefreshState::Revoked {
                    t.state = RefreshState::Revoked;
                    self.put(tk, &t)?;
                    self.changes.push(Change::RefreshToken(t.id.clone()));
                }
                if !t.access_jti.is_empty() && t.access_expires_at > now {
                    self.revoke(&Revocation {
                        jti: t.access_jti.clone(),
                        expires_at: t.access_expires_at,
                        revoked_at: now,
                    })?;
                }
            }
        }
        Ok(Outcome::Applied)
    }

    fn prune(&mut self, now: i64) -> Result<Outcome, RaftError> {
        for rk in self.keys_with_prefix(key::REVOCATION)? {
            if let Some(r) = self.read::<Revocation>(&rk)? {
                if r.expires_at < now {
                    self.delete(rk);
                }
            }
        }
        for tk in self.keys_with_prefix(key::REFRESH)? {
            if let Some(t) = self.read::<RefreshToken>(&tk)? {
                if t.expires_at < now {
                    self.delete(key::family_member(&t.family, &t.id));
                    self.delete(tk);
                }
            }
        }
        for fk in self.keys_with_prefix(key::SIGNIN_FAILURES)? {
            if let Some(f) = self.read::<SigninFailures>(&fk)? {
                if f.forget_at <= now {
                    self.delete(fk);
                }
            }
        }
        for ak in self.keys_with_prefix(key::ADMISSION)? {
            if self.read::<Admission>(&ak)?.is_some_and(|a| a.expires_at < now) {
                self.delete(ak);
            }
        }
        self.prune_sign_in_state(now)?;
        for kk in self.keys_with_prefix(key::SIGNING_KEY)? {
            if let Some(k) = self.read::<SigningKey>(&kk)? {
                if k.retire_at != 0 && k.retire_at < now {
                    self.remove_signing_key(&k.kid);
                }
            }
        }
        Ok(Outcome::Applied)
    }
}

/// Most characters in a name: Casdoor's `varchar(255)` columns count characters, not bytes.
pub const MAX_NAME_CHARS: usize = 255;

/// What is wrong with a name, if anything. Names become parts of sled keys and of `owner/name` ids: they
/// must be non-empty, without NUL or `/`, and at most [`MAX_NAME_CHARS`] characters.
pub fn name_problem(n: &str) -> Option<String> {
    if n.is_empty() {
        return Some("a name is empty".into());
    }
    if n.contains('\0') || n.contains('/') {
        return Some(format!("name {n:?} contains '/' or NUL"));
    }
    // At most 4 bytes a character: only a long name needs counting.
    if n.len() > MAX_NAME_CHARS && n.chars().count() > MAX_NAME_CHARS {
        return Some(format!("a name is longer than {MAX_NAME_CHARS} characters"));
    }
    None
}

fn check_names(names: &[&str]) -> Option<Outcome> {
    names.iter().find_map(|n| name_problem(n)).map(Outcome::Invalid)
}

/// Token ids (`jti`) may contain `/` (Casdoor's are `admin/<uuid>`), but not NUL.
fn check_ids(ids: &[&str]) -> Option<Outcome> {
    for id in ids {
        if id.is_empty() || id.contains('\0') || id.len() > 255 {
            return Some(Outcome::Invalid(format!("token id {id:?} is empty, too long or contains NUL")));
        }
    }
    None
}

/// Longest text attribute value RADIUS can carry (RFC 2865 §5: 253 octets).
pub const MAX_ATTRIBUTE_BYTES: usize = 253;

/// What is wrong with an accounting event, if anything: a session event needs a session id and an
/// organization; the NAS client is a name; texts fit in a RADIUS attribute and the key parts have no NUL;
/// the time is set.
pub fn accounting_event_problem(e: &AccountingEvent) -> Option<String> {
    if e.event_time <= 0 {
        return Some("an accounting event needs its time".into());
    }
    if let Some(p) = name_problem(&e.nas_client) {
        return Some(format!("NAS client: {p}"));
    }
    if e.status.is_session_event() {
        if e.acct_session_id.is_empty() {
            return Some(format!("an accounting {} without Acct-Session-Id", e.status.as_str()));
        }
        if let Some(p) = name_problem(&e.organization) {
            return Some(format!("organization: {p}"));
        }
    }
    for (what, text) in [("Acct-Session-Id", &e.acct_session_id), ("User-Name", &e.user_name)] {
        if text.contains('\0') {
            return Some(format!("{what} contains NUL"));
        }
    }
    let texts = [
        ("Acct-Session-Id", &e.acct_session_id),
        ("Acct-Multi-Session-Id", &e.acct_multi_session_id),
        ("User-Name", &e.user_name),
        ("NAS-Identifier", &e.nas_identifier),
        ("NAS-IP-Address", &e.nas_ip_address),
        ("NAS-Port-Id", &e.nas_port_id),
        ("Framed-IP-Address", &e.framed_ip_address),
        ("Framed-IP-Netmask", &e.framed_ip_netmask),
        ("Calling-Station-Id", &e.calling_station_id),
        ("Called-Station-Id", &e.called_station_id),
    ];
    texts
        .iter()
        .find(|(_, t)| t.len() > MAX_ATTRIBUTE_BYTES)
        .map(|(what, _)| format!("{what} is longer than {MAX_ATTRIBUTE_BYTES} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::{org, user};

    /// Applies commands one by one to a fresh state; returns their outcomes, the changes and the tree.
    fn apply_all(commands: &[Command]) -> (Vec<Outcome>, Vec<Change>, sled::Tree) {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("state").expect("tree");
        let mut pending = Pending::new(&tree);
        let outcomes = commands.iter().map(|c| pending.apply(c).expect("apply")).collect();
        let (batch, changes) = pending.into_batch();
        tree.apply_batch(batch).expect("batch");
        (outcomes, changes, tree)
    }

    fn key(kid: &str, retire_at: i64) -> Command {
        let key = SigningKey { kid: kid.into(), algorithm: "RS256".into(), retire_at, ..Default::default() };
        Command::PutSigningKey { key, mode: PutMode::Create }
    }

    fn accept(kid: &str, algorithms: &[&str]) -> Command {
        let accepted =
            AcceptedAlgorithms { kid: kid.into(), algorithms: algorithms.iter().map(|a| a.to_string()).collect() };
        Command::PutAcceptedAlgorithms { accepted, mode: PutMode::Upsert }
    }

    #[test]
    fn accepted_algorithms_belong_to_an_existing_key_and_go_with_it() {
        let (outcomes, changes, tree) = apply_all(&[
            accept("k1", &["RS256"]),
            key("k1", 0),
            accept("k1", &["RS256", "HS256"]),
            accept("k1", &["RS256", "RS512"]),
            key("k2", 50),
            accept("k2", &["RS512"]),
        ]);
        assert!(matches!(&outcomes[0], Outcome::Invalid(m) if m.contains("does not exist")), "{outcomes:?}");
        assert!(matches!(&outcomes[2], Outcome::Invalid(m) if m.contains("HS256")), "{outcomes:?}");
        assert_eq!(outcomes[3], Outcome::Applied);
        assert!(changes.contains(&Change::SigningKey("k1".into())), "the keyring reloads the key");
        assert!(tree.contains_key(key::accepted_algorithms("k1")).expect("read"));

        // Deleted with its key; pruned with its retired key: a later key of the same kid starts strict.
        let mut pending = Pending::new(&tree);
        assert_eq!(pending.apply(&Command::DeleteSigningKey { kid: "k1".into() }).expect("apply"), Outcome::Applied);
        assert_eq!(pending.apply(&Command::Prune { now: 100 }).expect("apply"), Outcome::Applied);
        let (batch, _) = pending.into_batch();
        tree.apply_batch(batch).expect("batch");
        for kid in ["k1", "k2"] {
            assert!(!tree.contains_key(key::signing_key(kid)).expect("read"), "{kid}");
            assert!(!tree.contains_key(key::accepted_algorithms(kid)).expect("read"), "{kid}");
        }
    }

    /// Tokens name their user by id: a user record given another id reports the old id changed too.
    #[test]
    fn a_user_given_a_new_id_reports_both_ids() {
        let mut renumbered = user("acme", "alice", "u-2");
        if let Command::PutUser { mode, .. } = &mut renumbered {
            *mode = PutMode::Update;
        }
        let (outcomes, changes, _) = apply_all(&[org("acme"), user("acme", "alice", "u-1"), renumbered]);
        assert!(outcomes.iter().all(|o| *o == Outcome::Applied), "{outcomes:?}");
        for id in ["u-1", "u-2"] {
            assert!(
                changes.iter().filter(|c| matches!(c, Change::User { id: i, .. } if i == id)).count() >= 1,
                "{id}: {changes:?}"
            );
        }
    }

    /// The log stores commands positionally (postcard): a command's encoding, its variant index first,
    /// never changes, or entries written before would read as other commands. New variants go last.
    #[test]
    fn command_encodings_do_not_move() {
        let index = |c: &Command| postcard::to_stdvec(c).expect("postcard")[0];
        assert_eq!(index(&org("x")), 0);
        assert_eq!(index(&Command::DeleteSigningKey { kid: "k".into() }), 8);
        assert_eq!(index(&Command::Prune { now: 1 }), 23);
        assert_eq!(index(&Command::Each { commands: vec![] }), 25);
        assert_eq!(index(&Command::ResetSigninFailures { account: "a".into() }), 27);
        assert_eq!(index(&accept("k", &[])), 28);
        let event = crate::model::AccountingEvent::default();
        assert_eq!(index(&Command::RecordAccounting { event }), 30);
        assert_eq!(index(&Command::PruneAccounting { before: 1, limit: 1 }), 31);
        let credential = NtCredential::default();
        assert_eq!(index(&Command::PutNtCredential { credential }), 32);
        assert_eq!(postcard::to_stdvec(&Command::Prune { now: 1 }).expect("postcard"), [23, 2]);
    }

    /// Casdoor's `varchar(255)` counts characters: a 255-character name of 3-byte characters (765 bytes) is a
    /// valid name, one more character is not.
    #[test]
    fn names_are_limited_in_characters_not_bytes() {
        let cjk = "名".repeat(MAX_NAME_CHARS);
        assert_eq!(cjk.len(), 765);
        assert_eq!(name_problem(&cjk), None);
        assert_eq!(name_problem(&"é".repeat(MAX_NAME_CHARS)), None);
        assert_eq!(name_problem(&"a".repeat(MAX_NAME_CHARS)), None);
        assert!(name_problem(&"名".repeat(MAX_NAME_CHARS + 1)).is_some_and(|p| p.contains("255 characters")));
        assert!(name_problem(&"a".repeat(MAX_NAME_CHARS + 1)).is_some());
        assert!(name_problem("").is_some());
        assert!(name_problem("a/b").is_some());
        assert!(name_problem("a\0b").is_some());
        assert!(check_names(&["ok", &cjk]).is_none());
    }
}
