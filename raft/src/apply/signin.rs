//! Applying the browser sign-in commands: sessions, redeemed codes, consents, TOTP factors, passkeys and
//! device authorizations. Their records are small and short-lived; `Prune` drops the ones past their time.

use super::{check_ids, Pending};
use crate::command::Outcome;
use crate::model::{
    BrowserSession, CodeRedemption, Consent, DeviceAuthorization, DeviceState, Passkey, RefreshToken, Revocation,
    TotpCredential, User, MAX_SESSION_APPLICATIONS,
};
use crate::store::key;
use crate::RaftError;

/// Most recovery codes a TOTP factor keeps, and most bytes of a serialized passkey or a sealed secret.
pub const MAX_RECOVERY_CODES: usize = 32;
pub const MAX_PASSKEY_BYTES: usize = 16 * 1024;
const MAX_SEALED_SECRET: usize = 512;

impl Pending<'_> {
    fn user_exists(&self, user_id: &str) -> Result<bool, RaftError> {
        self.contains(&key::user_by_id(user_id))
    }

    pub(super) fn start_session(&mut self, s: &BrowserSession) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_ids(&[&s.id, &s.user_id]) {
            return Ok(bad);
        }
        if s.applications.len() > MAX_SESSION_APPLICATIONS || s.amr.len() > 16 {
            return Ok(Outcome::Invalid("a session names too many applications or methods".into()));
        }
        if !self.user_exists(&s.user_id)? {
            return Ok(Outcome::NotFound(format!("user id {}", s.user_id)));
        }
        let k = key::session(&s.id);
        if self.contains(&k)? {
            return Ok(Outcome::Conflict(format!("session {} exists", s.id)));
        }
        self.put(k.clone(), s)?;
        self.put_raw(key::session_of_user(&s.user_id, &s.id), k);
        Ok(Outcome::Applied)
    }

    pub(super) fn touch_session(&mut self, id: &str, at: i64, application: &str) -> Result<Outcome, RaftError> {
        let k = key::session(id);
        let Some(mut s) = self.read::<BrowserSession>(&k)? else {
            return Ok(Outcome::NotFound(format!("session {id}")));
        };
        if !s.is_live(at) {
            return Ok(Outcome::NotFound(format!("session {id} has ended")));
        }
        s.last_seen = s.last_seen.max(at);
        if !application.is_empty() && !s.applications.iter().any(|a| a == application) {
            if s.applications.len() >= MAX_SESSION_APPLICATIONS {
                s.applications.remove(0);
            }
            s.applications.push(application.to_string());
        }
        self.put(k, &s)?;
        Ok(Outcome::Applied)
    }

    pub(super) fn end_session(&mut self, id: &str) -> Result<Outcome, RaftError> {
        let k = key::session(id);
        let Some(s) = self.read::<BrowserSession>(&k)? else {
            return Ok(Outcome::NotFound(format!("session {id}")));
        };
        self.delete(key::session_of_user(&s.user_id, &s.id));
        self.delete(k);
        Ok(Outcome::Applied)
    }

    pub(super) fn end_user_sessions(&mut self, user_id: &str) -> Result<Outcome, RaftError> {
        let prefix = key::sessions_of_user(user_id);
        for ik in self.keys_with_prefix(&prefix)? {
            let id = String::from_utf8_lossy(&ik[prefix.len()..]).into_owned();
            self.delete(key::session(&id));
            self.delete(ik);
        }
        Ok(Outcome::Applied)
    }

    /// Removes everything a user signed in with or agreed to: sessions, consents, TOTP, passkeys.
    pub(super) fn remove_sign_in_state(&mut self, u: &User) -> Result<(), RaftError> {
        self.end_user_sessions(&u.id)?;
        for ck in self.keys_with_prefix(&key::consents_of(&u.id))? {
            self.delete(ck);
        }
        self.delete(key::totp(&u.id));
        for pk in self.keys_with_prefix(&key::passkeys_of(&u.id))? {
            if let Some(p) = self.read::<Passkey>(&pk)? {
                self.delete(key::passkey_by_credential(&p.credential_id));
            }
            self.delete(pk);
        }
        Ok(())
    }

    pub(super) fn redeem_code(
        &mut self,
        r: &CodeRedemption,
        refresh: Option<&RefreshToken>,
        now: i64,
        session_id: &str,
    ) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_ids(&[&r.code_id, &r.access_jti]) {
            return Ok(bad);
        }
        let k = key::code(&r.code_id);
        if let Some(mut first) = self.read::<CodeRedemption>(&k)? {
            // A second redemption: whoever holds the code now, what it gave the first time is not theirs to
            // keep either (RFC 6749 §4.1.2).
            if !first.replayed {
                first.replayed = true;
                self.put(k, &first)?;
                if first.access_expires_at > now {
                    self.revoke(&Revocation {
                        jti: first.access_jti.clone(),
                        expires_at: first.access_expires_at,
                        revoked_at: now,
                    })?;
                }
                if !first.refresh_family.is_empty() {
                    self.revoke_family(&first.refresh_family, now)?;
                }
            }
            return Ok(Outcome::Reused);
        }
        if r.expires_at <= now {
            return Ok(Outcome::Invalid("the code has expired".into()));
        }
        if !session_id.is_empty()
            && !self.read::<BrowserSession>(&key::session(session_id))?.is_some_and(|s| s.is_live(now))
        {
            return Ok(Outcome::NotFound(format!("session {session_id} has ended")));
        }
        let mut record = r.clone();
        record.replayed = false;
        if let Some(t) = refresh {
            record.refresh_family = t.family.clone();
            let issued = self.issue_refresh_token(t)?;
            if issued != Outcome::Applied {
                return Ok(issued);
            }
        }
        self.put(k, &record)?;
        Ok(Outcome::Applied)
    }

    pub(super) fn put_consent(&mut self, c: &Consent) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_ids(&[&c.user_id, &c.application]) {
            return Ok(bad);
        }
        if c.scopes.len() > 256 {
            return Ok(Outcome::Invalid("too many scopes".into()));
        }
        if !self.user_exists(&c.user_id)? {
            return Ok(Outcome::NotFound(format!("user id {}", c.user_id)));
        }
        if !self.contains(&key::app(&c.application))? {
            return Ok(Outcome::NotFound(format!("application {}", c.application)));
        }
        self.put(key::consent(&c.user_id, &c.application), c)?;
        Ok(Outcome::Applied)
    }

    pub(super) fn delete_consent(&mut self, user_id: &str, application: &str) -> Result<Outcome, RaftError> {
        let keys = if application.is_empty() {
            self.keys_with_prefix(&key::consents_of(user_id))?
        } else {
            let k = key::consent(user_id, application);
            if self.contains(&k)? {
                vec![k]
            } else {
                Vec::new()
            }
        };
        if keys.is_empty() {
            return Ok(Outcome::NotFound(format!("consent of user id {user_id} to {application:?}")));
        }
        for k in keys {
            self.delete(k);
        }
        Ok(Outcome::Applied)
    }

    pub(super) fn put_totp(&mut self, t: &TotpCredential) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_ids(&[&t.user_id]) {
            return Ok(bad);
        }
        if t.sealed_secret.is_empty()
            || t.sealed_secret.len() > MAX_SEALED_SECRET
            || t.recovery_digests.len() > MAX_RECOVERY_CODES
        {
            return Ok(Outcome::Invalid("a TOTP secret must be set, sealed, with at most 32 recovery codes".into()));
        }
        if !self.user_exists(&t.user_id)? {
            return Ok(Outcome::NotFound(format!("user id {}", t.user_id)));
        }
        self.put(key::totp(&t.user_id), t)?;
        Ok(Outcome::Applied)
    }

    pub(super) fn delete_totp(&mut self, user_id: &str) -> Result<Outcome, RaftError> {
        let k = key::totp(user_id);
        if !self.contains(&k)? {
            return Ok(Outcome::NotFound(format!("TOTP of user id {user_id}")));
        }
        self.delete(k);
        Ok(Outcome::Applied)
    }

    pub(super) fn use_totp_step(&mut self, user_id: &str, step: i64) -> Result<Outcome, RaftError> {
        let k = key::totp(user_id);
        let Some(mut t) = self.read::<TotpCredential>(&k)? else {
            return Ok(Outcome::NotFound(format!("TOTP of user id {user_id}")));
        };
        if step <= t.last_step {
            return Ok(Outcome::Reused);
        }
        t.last_step = step;
        self.put(k, &t)?;
        Ok(Outcome::Applied)
    }

    pub(super) fn use_recovery_code(&mut self, user_id: &str, digest: &[u8; 32]) -> Result<Outcome, RaftError> {
        let k = key::totp(user_id);
        let Some(mut t) = self.read::<TotpCredential>(&k)? else {
            return Ok(Outcome::NotFound(format!("TOTP of user id {user_id}")));
        };
        let Some(i) = t.recovery_digests.iter().position(|d| d == digest) else {
            return Ok(Outcome::NotFound("no such recovery code".into()));
        };
        t.recovery_digests.swap_remove(i);
        self.put(k, &t)?;
        Ok(Outcome::Applied)
    }

    pub(super) fn put_passkey(&mut self, p: &Passkey) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_ids(&[&p.user_id]) {
            return Ok(bad);
        }
        if p.credential_id.is_empty() || p.credential_id.contains('\0') || p.credential_id.len() > 1400 {
            return Ok(Outcome::Invalid("a credential id is empty, too long or has a NUL".into()));
        }
        if p.credential.len() > MAX_PASSKEY_BYTES || p.name.chars().count() > 255 {
            return Ok(Outcome::Invalid("a passkey's credential or name is too long".into()));
        }
        if !self.user_exists(&p.user_id)? {
            return Ok(Outcome::NotFound(format!("user id {}", p.user_id)));
        }
        let by_credential = key::passkey_by_credential(&p.credential_id);
        if self.contains(&by_credential)? {
            return Ok(Outcome::Conflict("the credential is registered already".into()));
        }
        let k = key::passkey(&p.user_id, &p.credential_id);
        self.put(k.clone(), p)?;
        self.put_raw(by_credential, k);
        Ok(Outcome::Applied)
    }

    pub(super) fn use_passkey(
        &mut self,
        user_id: &str,
        credential_id: &str,
        sign_count: u32,
        credential: &str,
        at: i64,
    ) -> Result<Outcome, RaftError> {
        let k = key::passkey(user_id, credential_id);
        let Some(mut p) = self.read::<Passkey>(&k)? else {
            return Ok(Outcome::NotFound("no such passkey".into()));
        };
        if (sign_count != 0 || p.sign_count != 0) && sign_count <= p.sign_count {
            return Ok(Outcome::Invalid("the authenticator's counter did not go up: possibly cloned".into()));
        }
        if credential.len() > MAX_PASSKEY_BYTES {
            return Ok(Outcome::Invalid("a passkey's credential is too long".into()));
        }
        p.sign_count = sign_count;
        p.credential = credential.to_string();
        p.last_used_at = at;
        self.put(k, &p)?;
        Ok(Outcome::Applied)
    }

    pub(super) fn delete_passkey(&mut self, user_id: &str, credential_id: &str) -> Result<Outcome, RaftError> {
        let k = key::passkey(user_id, credential_id);
        if !self.contains(&k)? {
            return Ok(Outcome::NotFound("no such passkey".into()));
        }
        self.delete(k);
        self.delete(key::passkey_by_credential(credential_id));
        Ok(Outcome::Applied)
    }

    pub(super) fn start_device_authorization(&mut self, d: &DeviceAuthorization) -> Result<Outcome, RaftError> {
        if let Some(bad) = check_ids(&[&d.device_code_digest, &d.user_code, &d.application]) {
            return Ok(bad);
        }
        let k = key::device(&d.device_code_digest);
        let by_user_code = key::device_by_user_code(&d.user_code);
        if self.contains(&k)? || self.contains(&by_user_code)? {
            return Ok(Outcome::Conflict("the device or user code is in use".into()));
        }
        let mut d = d.clone();
        d.state = DeviceState::Pending;
        self.put(k.clone(), &d)?;
        self.put_raw(by_user_code, k);
        Ok(Outcome::Applied)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide_device_authorization(
        &mut self,
        user_code: &str,
        approve: bool,
        user_id: &str,
        auth_time: i64,
        amr: &[String],
        session_id: &str,
        now: i64,
    ) -> Result<Outcome, RaftError> {
        let Some(k) = self.get(&key::device_by_user_code(user_code))? else {
            return Ok(Outcome::NotFound("no such user code".into()));
        };
        let Some(mut d) = self.read::<DeviceAuthorization>(&k)? else {
            return Ok(Outcome::NotFound("no such user code".into()));
        };
        if d.expires_at <= now {
            return Ok(Outcome::NotFound("the user code has expired".into()));
        }
        if d.state != DeviceState::Pending {
            return Ok(Outcome::Invalid("the request was decided already".into()));
        }
        if approve && !self.user_exists(user_id)? {
            return Ok(Outcome::NotFound(format!("user id {user_id}")));
        }
        d.state = if approve { DeviceState::Approved } else { DeviceState::Denied };
        if approve {
            d.user_id = user_id.to_string();
            d.auth_time = auth_time;
            d.amr = amr.to_vec();
            d.session_id = session_id.to_string();
        }
        self.put(k, &d)?;
        Ok(Outcome::Applied)
    }

    pub(super) fn redeem_device_code(
        &mut self,
        digest: &str,
        refresh: Option<&RefreshToken>,
        now: i64,
    ) -> Result<Outcome, RaftError> {
        let k = key::device(digest);
        let Some(mut d) = self.read::<DeviceAuthorization>(&k)? else {
            return Ok(Outcome::NotFound("no such device code".into()));
        };
        match d.state {
            DeviceState::Redeemed => return Ok(Outcome::Reused),
            DeviceState::Approved if d.expires_at > now => {}
            _ => return Ok(Outcome::Invalid("the device code is not approved or has expired".into())),
        }
        if let Some(t) = refresh {
            let issued = self.issue_refresh_token(t)?;
            if issued != Outcome::Applied {
                return Ok(issued);
            }
        }
        d.state = DeviceState::Redeemed;
        self.put(k, &d)?;
        Ok(Outcome::Applied)
    }

    /// Drops sessions, redeemed codes and device authorizations past their time.
    pub(super) fn prune_sign_in_state(&mut self, now: i64) -> Result<(), RaftError> {
        for sk in self.keys_with_prefix(key::SESSION)? {
            if let Some(s) = self.read::<BrowserSession>(&sk)? {
                if !s.is_live(now) {
                    self.delete(key::session_of_user(&s.user_id, &s.id));
                    self.delete(sk);
                }
            }
        }
        for ck in self.keys_with_prefix(key::CODE)? {
            if self.read::<CodeRedemption>(&ck)?.is_some_and(|c| c.expires_at < now) {
                self.delete(ck);
            }
        }
        for dk in self.keys_with_prefix(key::DEVICE)? {
            if let Some(d) = self.read::<DeviceAuthorization>(&dk)? {
                if d.expires_at < now {
                    self.delete(key::device_by_user_code(&d.user_code));
                    self.delete(dk);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Pending;
    use crate::command::{Command, Outcome};
    use crate::model::{BrowserSession, CodeRedemption, RefreshState, RefreshToken};
    use crate::storage::tests::{org, user};
    use crate::store::{key, Stored};

    /// Applies commands in order on one fresh state and returns their outcomes and the tree.
    fn run(commands: &[Command]) -> (Vec<Outcome>, sled::Tree) {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("state").expect("tree");
        let mut outcomes = Vec::new();
        for c in commands {
            let mut pending = Pending::new(&tree);
            outcomes.push(pending.apply(c).expect("apply"));
            let (batch, _) = pending.into_batch();
            tree.apply_batch(batch).expect("batch");
        }
        (outcomes, tree)
    }

    fn redeem(code: &str, jti: &str, family: &str) -> Command {
        let refresh = RefreshToken {
            id: family.into(),
            family: family.into(),
            application: "app".into(),
            user: "acme/alice".into(),
            issued_at: 100,
            expires_at: 10_000,
            access_jti: jti.into(),
            access_expires_at: 5_000,
            ..Default::default()
        };
        Command::RedeemCode {
            redemption: CodeRedemption {
                code_id: code.into(),
                expires_at: 160,
                access_jti: jti.into(),
                access_expires_at: 5_000,
                ..Default::default()
            },
            refresh: Some(refresh),
            now: 110,
            session_id: String::new(),
        }
    }

    #[test]
    fn a_code_redeemed_twice_revokes_what_the_first_redemption_issued() {
        let (outcomes, tree) = run(&[redeem("c1", "a1", "f1"), redeem("c1", "a2", "f2"), redeem("c2", "a3", "f3")]);
        assert_eq!(outcomes, vec![Outcome::Applied, Outcome::Reused, Outcome::Applied]);
        assert!(tree.contains_key(key::revocation("a1")).unwrap(), "the first access token is revoked");
        let f1 = RefreshToken::decode(&tree.get(key::refresh("f1")).unwrap().unwrap()).unwrap();
        assert_eq!(f1.state, RefreshState::Revoked);
        assert!(tree.get(key::refresh("f2")).unwrap().is_none(), "the replay issued nothing");
        assert!(!tree.contains_key(key::revocation("a3")).unwrap(), "another code is untouched");
        let late = Command::RedeemCode {
            redemption: CodeRedemption {
                code_id: "c9".into(),
                expires_at: 100,
                access_jti: "x".into(),
                ..Default::default()
            },
            refresh: None,
            now: 100,
            session_id: String::new(),
        };
        assert!(matches!(run(&[late]).0[0], Outcome::Invalid(_)), "an expired code");
    }

    #[test]
    fn sessions_end_with_their_user_and_by_time() {
        let session = |id: &str, expires_at: i64| Command::StartSession {
            session: BrowserSession {
                id: id.into(),
                user_id: "u1".into(),
                owner: "acme".into(),
                name: "alice".into(),
                expires_at,
                idle_secs: 50,
                last_seen: 100,
                ..Default::default()
            },
        };
        let (outcomes, tree) = run(&[
            org("acme"),
            user("acme", "alice", "u1"),
            session("s1", 1000),
            session("s2", 1000),
            session("s1", 1000),
            Command::TouchSession { id: "s1".into(), at: 140, application: "app".into() },
            Command::TouchSession { id: "s2".into(), at: 151, application: String::new() },
            Command::Prune { now: 160 },
        ]);
        assert_eq!(outcomes[2..5], [Outcome::Applied, Outcome::Applied, Outcome::Conflict("session s1 exists".into())]);
        assert_eq!(outcomes[5], Outcome::Applied);
        assert!(matches!(outcomes[6], Outcome::NotFound(_)), "idle past 50 s: {:?}", outcomes[6]);
        assert!(tree.contains_key(key::session("s1")).unwrap(), "touched at 140, live at 160");
        assert!(!tree.contains_key(key::session("s2")).unwrap(), "idle sessions are pruned");
        let (outcomes, tree) = run(&[
            org("acme"),
            user("acme", "alice", "u1"),
            session("s1", 1000),
            Command::DeleteUser { owner: "acme".into(), name: "alice".into() },
            session("s3", 1000),
        ]);
        assert!(matches!(outcomes[4], Outcome::NotFound(_)), "no session for a deleted user");
        assert!(!tree.contains_key(key::session("s1")).unwrap());
        assert!(!tree.contains_key(key::session_of_user("u1", "s1")).unwrap());
    }
}
