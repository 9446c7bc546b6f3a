//! Signing keys, as Casdoor's certs: their view (public parts only), adding one and rotating one.

use jeton_raft::model::SigningKey;
use jeton_raft::{Command, PutMode};
use serde_json::{json, Value};

use super::{fail, ok2, split_id, AdminReply};
use crate::clock::{now, rfc3339};
use crate::keys::Alg;
use crate::secrets::random_hex;
use crate::service::Edge;

/// A signing key as Casdoor's `cert`: public parts only, with Casdoor's JSON types (`createdTime` is
/// RFC 3339 text). `retireAt` (unix seconds, 0 while the key signs) is Jeton's own.
pub(super) fn cert_view(k: &SigningKey) -> Value {
    json!({
        "owner": k.owner, "name": k.kid, "createdTime": rfc3339(k.created_at), "displayName": k.display_name,
        "scope": "JWT", "type": "x509", "cryptoAlgorithm": k.algorithm, "certificate": k.certificate,
        "publicKey": k.public_key_pem, "privateKey": "", "retireAt": k.retire_at,
    })
}

impl Edge {
    pub(super) async fn add_cert(&self, body: &Value) -> AdminReply {
        let (kid, owner, alg) = match cert_body(body) {
            Ok(c) => c,
            Err(refused) => return refused,
        };
        let kek = &self.kek;
        let key = match crate::keys::generate(alg, &kid, &owner, kek, now()) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!("generating key: {e}");
                return fail(500, "internal error");
            }
        };
        self.commit(Command::PutSigningKey { key, mode: PutMode::Create }).await
    }

    /// Rotates a key: a new key of the same algorithm takes over; the old one stays in the JWKS until every
    /// token it signed has expired.
    pub(super) async fn rotate_cert(&self, id: &str, body: &Value) -> AdminReply {
        let old_kid =
            split_id(id).map(|(_, n)| n).or_else(|| body.get("name").and_then(Value::as_str)).unwrap_or_default();
        let old = match self.store.signing_key(old_kid).and_then(|r| r.map(|r| r.to_owned()).transpose()) {
            Ok(Some(k)) => k,
            Ok(None) => return fail(404, format!("signing key {old_kid} does not exist")),
            Err(e) => {
                tracing::error!("rotate: {e}");
                return fail(500, "internal error");
            }
        };
        let Some(alg) = Alg::parse(&old.algorithm).filter(|a| Alg::GENERATED.contains(a)) else {
            return fail(400, format!("keys of algorithm {} cannot be generated here", old.algorithm));
        };
        // Longest lifetime of any token the old key may have signed.
        let mut longest = 0i64;
        for a in self.store.applications().flatten() {
            let a = a.get();
            if a.cert.as_str() == old_kid {
                let access = (a.expire_in_hours.to_native() * 3600.0) as i64;
                let refresh = (a.refresh_expire_in_hours.to_native() * 3600.0) as i64;
                longest = longest.max(access).max(refresh);
            }
        }
        let t = now();
        let new_kid = format!("{}-{}", old_kid.split("-r").next().unwrap_or(old_kid), random_hex(4));
        let new = match crate::keys::generate(alg, &new_kid, &old.owner, &self.kek, t) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!("generating key: {e}");
                return fail(500, "internal error");
            }
        };
        let reply = self
            .commit(Command::RotateSigningKey { old_kid: old_kid.to_string(), new, retire_at: t + longest + 60 })
            .await;
        if reply.status == 200 {
            ok2(json!("Affected"), json!({"name": new_kid, "retireAt": t + longest + 60}))
        } else {
            reply
        }
    }
}

/// What an add-cert body asks for: the key's id (`name`), its owner (`admin` by default) and the algorithm
/// to generate it for (`cryptoAlgorithm`, RS256 by default like Casdoor's).
pub(crate) fn cert_body(body: &Value) -> Result<(String, String, Alg), AdminReply> {
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
    let owner = body.get("owner").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("admin");
    let alg_name = body.get("cryptoAlgorithm").and_then(Value::as_str).filter(|a| !a.is_empty()).unwrap_or("RS256");
    let Some(alg) = Alg::parse(alg_name).filter(|a| Alg::GENERATED.contains(a)) else {
        return Err(fail(400, format!("cryptoAlgorithm must be one of EdDSA, ES256, RS256 (got {alg_name})")));
    };
    if name.is_empty() {
        return Err(fail(400, "name is required"));
    }
    Ok((name.to_string(), owner.to_string(), alg))
}
