//! Users: their view (no hash, salt or TOTP secret) and their writes (a password in clear hashed in the
//! hashing slots with the organization's scheme; a stored hash checked before it is taken).

use jeton_raft::model::User;
use jeton_raft::{Command, PutMode};
use serde_json::{json, Value};

use super::{fail, to_value, AdminReply, MASK};
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
        // Secrets the admin API never shows come back masked or empty: keep what is stored.
        if let Some(old) = &existing {
            if user.totp_secret.is_empty() {
                user.totp_secret = old.totp_secret.clone();
            }
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
        self.commit(Command::PutUser { user, mode }).await
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
