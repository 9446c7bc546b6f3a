//! Users: their view (no hash, salt or TOTP secret) and their writes (a password in clear hashed in the
//! hashing slots with the organization's scheme; a stored hash checked before it is taken; a TOTP secret
//! sealed into the user's TOTP factor, never kept in the record).

use jeton_raft::model::User;
use jeton_raft::{Command, PutMode};
use serde_json::{json, Value};

use super::{fail, to_value, write_failed, AdminReply, MASK};
use crate::clock::rfc3339_now;
use crate::service::Edge;

/// A user as the admin API shows it: no hash, salt or TOTP secret.
pub(super) fn user_view(u: &User) -> Value {
    let mut v = to_value(u);
    if let Some(m) = v.as_object_mut() {
        let pw = if u.password.is_empty() { "" } else { MASK };
        m.insert("password".into(), json!(pw));
        m.insert("passwordSalt".into(), json!(""));
        m.insert("totpSecret".into(), json!(""));
    }
    v
}

impl Edge {
    pub(super) async fn put_user(&self, body: &Value, mode: PutMode) -> AdminReply {
        let mut user: User = match serde_json::from_value(body.clone()) {
            Ok(u) => u,
            Err(e) => return fail(400, format!("invalid user: {e}")),
        };
        let existing = match self.store.user(&user.owner, &user.name).and_then(|r| r.map(|r| r.to_owned()).transpose())
        {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("admin put_user: {e}");
                return fail(500, "internal error");
            }
        };
        if user.created_time.is_empty() {
            user.created_time = existing.as_ref().map(|e| e.created_time.clone()).unwrap_or_else(rfc3339_now);
        }
        user.updated_time = rfc3339_now();
        if user.id.is_empty() {
            user.id = existing.as_ref().map(|e| e.id.clone()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        }
        // A TOTP secret (Casdoor keeps it in the user record, in clear) becomes the user's sealed TOTP factor
        // and turns MFA on; the record keeps none. Left out (as the admin API shows it: empty), the user's
        // factor stays as it is.
        let totp_secret = std::mem::take(&mut user.totp_secret);
        let totp_secret = match totp_secret.trim() {
            "" => None,
            given => match crate::totp::canonical_secret(given) {
                Some(secret) => Some(secret),
                None => return fail(400, "totpSecret must be a base32 secret"),
            },
        };
        if totp_secret.is_some() && user.preferred_mfa_type.is_empty() {
            user.preferred_mfa_type = crate::mfa::APP_MFA_TYPE.to_string();
        }
        let keep_password = user.password == MASK || (user.password.is_empty() && existing.is_some());
        if keep_password {
            match &existing {
                Some(old) => {
                    user.password = old.password.clone();
                    user.password_type = old.password_type.clone();
                    user.password_salt = old.password_salt.clone();
                }
                None => user.password.clear(),
            }
        } else if !user.password.is_empty() && body.get("passwordType").and_then(Value::as_str).unwrap_or("").is_empty()
        {
            // A plaintext password: hash it with the organization's scheme (argon2id if it has none).
            let org_type = match self.store.organization(&user.owner) {
                Ok(Some(o)) => o.get().password_type.as_str().to_string(),
                Ok(None) => return fail(400, format!("organization {} does not exist", user.owner)),
                Err(e) => {
                    tracing::error!("admin put_user: {e}");
                    return fail(500, "internal error");
                }
            };
            use crate::passwords::schemes::{self, PasswordError, Scheme};
            let scheme = match Scheme::parse(&org_type) {
                Some(Scheme::Plain) | None => Scheme::Argon2id,
                Some(s) => s,
            };
            let salt = schemes::new_salt();
            // In the same hashing slots and memory budget as sign-ins.
            match self.passwords.hash(scheme, &user.password, &salt).await {
                Ok(h) => {
                    user.password = h;
                    user.password_type = scheme.as_str().to_string();
                    user.password_salt = salt;
                }
                Err(e @ PasswordError::Hashing(_)) => {
                    tracing::error!("admin put_user: {e}");
                    return fail(500, "internal error");
                }
                Err(e) => return fail(400, format!("password not accepted: {e}")),
            }
        } else if let Err(refused) = check_stored_hash(&user) {
            return refused;
        }
        let Some(secret) = totp_secret else {
            return self.commit(Command::PutUser { user, mode }).await;
        };
        let written = self.commit(Command::PutUser { user: user.clone(), mode }).await;
        if written.status != 200 {
            return written;
        }
        self.put_user_totp(&user, &secret).await.unwrap_or(written)
    }

    /// Stores `secret` as `user`'s TOTP factor, unless it is theirs already; the answer when that fails.
    async fn put_user_totp(&self, user: &User, secret: &str) -> Option<AdminReply> {
        let stored = match self.totp_credential(&user.id) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!("admin put_user: reading the TOTP factor: {e}");
                return Some(fail(500, "internal error"));
            }
        };
        if stored.is_some_and(|c| crate::totp::open_secret(&self.kek, &c).ok().as_deref() == Some(secret)) {
            return None;
        }
        let sealed = crate::totp::seal_credential(&self.kek, &user.id, secret, &[], 0, crate::clock::now());
        match sealed {
            Ok(credential) => match self.put_totp(user, credential).await {
                Ok(()) => None,
                Err(e) => Some(write_failed(e)),
            },
            Err(e) => {
                tracing::error!("admin put_user: sealing the TOTP secret: {e}");
                Some(fail(500, "internal error"))
            }
        }
    }
}

/// A stored password hash set as is (with its `passwordType`): its scheme must be one of Casdoor's and one
/// check of it within the cost cap. Without a type there is nothing to check here.
pub(crate) fn check_stored_hash(user: &User) -> Result<(), AdminReply> {
    if user.password_type.is_empty() {
        return Ok(());
    }
    let Some(scheme) = crate::passwords::schemes::Scheme::parse(&user.password_type) else {
        return Err(fail(400, format!("unsupported passwordType {}", user.password_type)));
    };
    crate::passwords::schemes::work(scheme, &user.password)
        .map(|_| ())
        .map_err(|e| fail(400, format!("password hash refused: {e}")))
}
