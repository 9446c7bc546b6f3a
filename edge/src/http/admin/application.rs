//! Applications: their view (the secret never readable, Casdoor's scope objects) and their writes (only the
//! secret's digest stored; a signing key of the asked algorithm picked).

use jeton_raft::model::Application;
use jeton_raft::{Command, PutMode};
use serde_json::{json, Value};

use super::{fail, to_value, AdminReply, MASK};
use crate::clock::rfc3339_now;
use crate::keys::Alg;
use crate::secrets::{random_hex, sha256};
use crate::service::Edge;

impl Edge {
    /// An application as the admin API shows it: the secret is never readable (only its digest is
    /// stored); `scopes` as Casdoor's scope objects; `tokenSigningMethod` the algorithm of its key; the
    /// lockout limits the effective ones (a limit stored as 0 means Casdoor's default).
    pub(super) fn app_view(&self, a: &Application) -> Value {
        app_fields(a, self.keyring.get(&a.cert).map(|k| k.alg.as_str()).unwrap_or(""))
    }
}

/// [`Edge::app_view`] for an application whose key has algorithm `alg`.
pub(super) fn app_fields(a: &Application, alg: &str) -> Value {
    let mut v = to_value(a);
    if let Some(m) = v.as_object_mut() {
        m.remove("clientSecretDigest");
        m.insert("clientSecret".into(), json!(MASK));
        m.insert("tokenSigningMethod".into(), json!(alg));
        let lockout = crate::passwords::Lockout::of(a);
        m.insert("failedSigninLimit".into(), json!(lockout.limit));
        m.insert("failedSigninFrozenTime".into(), json!(lockout.frozen_for.as_secs() / 60));
        let scopes: Vec<Value> =
            a.scopes.iter().map(|s| json!({"name": s, "displayName": s, "description": ""})).collect();
        m.insert("scopes".into(), Value::Array(scopes));
    }
    v
}

impl Edge {
    pub(super) async fn put_application(&self, body: &Value, mode: PutMode) -> AdminReply {
        let ApplicationBody { mut app, secret, signing_method } = match application_body(body) {
            Ok(b) => b,
            Err(refused) => return refused,
        };
        let existing = match self.store.application(&app.name).and_then(|r| r.map(|r| r.to_owned()).transpose()) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("admin put_application: {e}");
                return fail(500, "internal error");
            }
        };
        if app.created_time.is_empty() {
            app.created_time = existing.as_ref().map(|e| e.created_time.clone()).unwrap_or_else(rfc3339_now);
        }
        if app.client_id.is_empty() {
            app.client_id = existing.as_ref().map(|e| e.client_id.clone()).unwrap_or_else(|| random_hex(10));
        }
        if app.public_client && (secret.is_empty() || secret == MASK) {
            // A public client has no secret (RFC 6749 §2.1): nothing can authenticate as it.
            app.client_secret_digest.clear();
        } else if secret.is_empty() || secret == MASK {
            match &existing {
                Some(old) => app.client_secret_digest = old.client_secret_digest.clone(),
                // Casdoor generates one and shows it in get-application; Jeton keeps only a digest, so it
                // could never show it: the caller chooses it (README, "Admin API").
                None => {
                    return fail(
                        400,
                        "clientSecret is required: Jeton stores only its digest and cannot show it later; choose one of at least 16 characters",
                    )
                }
            }
        } else {
            if secret.len() < 16 {
                return fail(400, "clientSecret must have at least 16 characters");
            }
            app.client_secret_digest = sha256(secret.as_bytes()).to_vec();
        }
        if app.grant_types.is_empty() {
            app.grant_types = vec!["client_credentials".into(), "password".into(), "refresh_token".into()];
        }
        if app.token_format.is_empty() {
            app.token_format = "JWT-Standard".into();
        }
        if !["JWT", "JWT-Empty", "JWT-Standard", "JWT-Custom"].contains(&app.token_format.as_str()) {
            return fail(400, format!("unknown tokenFormat {}", app.token_format));
        }
        if app.expire_in_hours <= 0.0 || !app.expire_in_hours.is_finite() {
            app.expire_in_hours = existing.as_ref().map(|e| e.expire_in_hours).filter(|h| *h > 0.0).unwrap_or(1.0);
        }
        // A key named together with an algorithm it does not sign with: the one the application had gives
        // way to the algorithm (the view sends both back); any other is a contradiction.
        if !app.cert.is_empty() && !signing_method.is_empty() {
            let named = self.keyring.get(&app.cert).map(|k| k.alg);
            if named != Alg::parse(&signing_method) {
                if existing.as_ref().is_some_and(|e| e.cert == app.cert) {
                    app.cert.clear();
                } else {
                    return fail(
                        400,
                        format!("cert {} does not sign with tokenSigningMethod {signing_method}", app.cert),
                    );
                }
            }
        }
        if app.cert.is_empty() {
            // RS256 unless told otherwise: what OIDC Core requires every relying party to support, Casdoor's
            // default, and the only algorithm Casdoor's Node SDK verifies (EdDSA is faster: README).
            let alg = if signing_method.is_empty() { Some(Alg::RS256) } else { Alg::parse(&signing_method) };
            let Some(alg) = alg else {
                return fail(400, format!("unsupported tokenSigningMethod {signing_method}"));
            };
            // An update that names no key keeps the application's key, unless it asks for another algorithm.
            let keeps = |kid: &String| {
                !kid.is_empty() && (signing_method.is_empty() || self.keyring.get(kid).is_some_and(|k| k.alg == alg))
            };
            match existing.as_ref().map(|e| e.cert.clone()).filter(keeps) {
                Some(c) => app.cert = c,
                None => match self.keyring.default_for(alg) {
                    Some(k) => app.cert = k.kid.clone(),
                    None => {
                        return fail(400, format!("no active {} signing key; add one with /api/add-cert", alg.as_str()))
                    }
                },
            }
        }
        self.commit(Command::PutApplication { app, mode }).await
    }
}

/// What an application body says: the record, and the secret and signing algorithm it names (neither is a
/// field of the record).
pub(crate) struct ApplicationBody {
    pub(crate) app: Application,
    pub(crate) secret: String,
    pub(crate) signing_method: String,
}

/// Reads an application body: Casdoor's scope objects become names, a digest the caller sent is ignored
/// (only the digest of `clientSecret` is stored), and the owner is always `admin`.
pub(crate) fn application_body(body: &Value) -> Result<ApplicationBody, AdminReply> {
    let mut body = body.clone();
    let Some(m) = body.as_object_mut() else {
        return Err(fail(400, "the body must be a JSON object"));
    };
    // Only the digest of a secret is stored; a client cannot set the digest itself.
    m.remove("clientSecretDigest");
    // Casdoor's scopes are objects (`{name, displayName, description}`, as the views show them); plain
    // names are taken too.
    if let Some(Value::Array(scopes)) = m.get_mut("scopes") {
        for scope in scopes.iter_mut() {
            if let Some(name) = scope.get("name").and_then(Value::as_str) {
                *scope = json!(name);
            }
        }
    }
    let secret = m.remove("clientSecret").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let signing_method =
        m.remove("tokenSigningMethod").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let mut app: Application = match serde_json::from_value(body) {
        Ok(a) => a,
        Err(e) => return Err(fail(400, format!("invalid application: {e}"))),
    };
    app.owner = "admin".into();
    Ok(ApplicationBody { app, secret, signing_method })
}
