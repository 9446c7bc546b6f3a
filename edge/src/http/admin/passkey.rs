//! A user's passkeys (WebAuthn credentials): listed and removed by an administrator. Jeton's own paths,
//! named as Casdoor would (Casdoor keeps them inside the user, `webauthnCredentials`, with no API of their
//! own); the key material is never shown.

use jeton_raft::model::{Passkey, User};
use jeton_raft::Command;
use serde_json::{json, Value};

use super::{fail, ok, split_id, AdminReply};
use crate::clock::rfc3339;
use crate::service::Edge;

/// A passkey as the admin API shows it.
pub(super) fn passkey_view(p: &Passkey, user: &User) -> Value {
    let time = |t: i64| if t > 0 { rfc3339(t) } else { String::new() };
    json!({
        "owner": user.owner,
        "user": user.name,
        "userId": p.user_id,
        "credentialId": p.credential_id,
        "name": p.name,
        "signCount": p.sign_count,
        "createdTime": time(p.created_at),
        "lastUsedTime": time(p.last_used_at),
    })
}

impl Edge {
    /// The user a passkey call names: `userId`, or `id` as `owner/name`.
    fn passkey_user(&self, user_id: &str, id: &str) -> Result<User, AdminReply> {
        let found = if !user_id.is_empty() {
            self.store.user_by_id(user_id)
        } else if let Some((owner, name)) = split_id(id) {
            self.store.user(owner, name)
        } else {
            return Err(fail(400, "name the user: userId, or id as owner/name"));
        };
        match found.and_then(|r| r.map(|r| r.to_owned()).transpose()) {
            Ok(Some(u)) => Ok(u),
            Ok(None) => Err(fail(404, "no such user")),
            Err(e) => {
                tracing::error!("admin passkeys: {e}");
                Err(fail(500, "internal error"))
            }
        }
    }

    /// `GET /api/get-webauthn-credentials?id=ORG/NAME` (or `?userId=ID`): the user's passkeys, oldest first.
    pub(super) fn list_passkeys(&self, user_id: &str, id: &str) -> AdminReply {
        let user = match self.passkey_user(user_id, id) {
            Ok(u) => u,
            Err(refused) => return refused,
        };
        match self.passkeys_of(&user.id) {
            Ok(list) => ok(Value::Array(list.iter().map(|p| passkey_view(p, &user)).collect())),
            Err(_) => fail(500, "internal error"),
        }
    }

    /// `POST /api/delete-webauthn-credential` with `{"credentialId": …}` (and, to make sure of whose it is,
    /// `userId` or `id`): removes the passkey on every node.
    pub(super) async fn delete_passkey(&self, body: &Value) -> AdminReply {
        let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
        let credential_id = field("credentialId");
        if credential_id.is_empty() {
            return fail(400, "credentialId is required");
        }
        let record =
            match self.store.passkey_by_credential(credential_id).and_then(|r| r.map(|r| r.to_owned()).transpose()) {
                Ok(Some(p)) => p,
                Ok(None) => return fail(404, "no such passkey"),
                Err(e) => {
                    tracing::error!("admin delete passkey: {e}");
                    return fail(500, "internal error");
                }
            };
        if !field("userId").is_empty() || !field("id").is_empty() {
            match self.passkey_user(field("userId"), field("id")) {
                Ok(u) if u.id == record.user_id => {}
                Ok(_) => return fail(404, "no such passkey for this user"),
                Err(refused) => return refused,
            }
        }
        self.commit(Command::DeletePasskey { user_id: record.user_id, credential_id: credential_id.to_string() }).await
    }
}
