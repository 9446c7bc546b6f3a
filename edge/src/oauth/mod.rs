//! OAuth 2 / OIDC: token issuance (RFC 6749), introspection (RFC 7662), revocation (RFC 7009), userinfo.
//!
//! Nothing here knows about sockets: the HTTP front end parses the request into [`Params`] and the client
//! credentials it carried, and turns the results into responses. [`introspection_cache`] keeps the
//! introspection answers and drops them when the state they were computed from changes. [`authorize`] is
//! the authorization code flow, [`device`] the device authorization grant (RFC 8628).

pub mod authorize;
pub mod device;
pub mod introspection_cache;
#[cfg(test)]
mod introspection_cache_state_tests;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use jeton_raft::model::{RefreshState, RefreshToken, Revocation, User};
use jeton_raft::{Command, Outcome};
use serde_json::{json, Map, Value};

use crate::claims::{self, Subject, TokenFrame};
use crate::clock::now;
use crate::error::OAuthError;
use crate::keys::LoadedKey;
use crate::oauth::introspection_cache::CachedToken;
use crate::passwords::{Lockout, LockoutRule, Refused, SignIn};
use crate::secrets::sha256;
use crate::service::{ClientApp, Edge};
use subtle::ConstantTimeEq;

/// Request parameters, from the query string, a form body or a JSON body. A request carries a handful,
/// so a vector searched in place beats hashing every key; the front end stops a request at
/// [`Params::MAX`] parameters, so a search never scans more than that.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Most parameters one request may carry, query string and body together. OAuth requests carry 2 to 8,
    /// Casdoor's SDKs at most a dozen; past this the request is refused (`invalid_request`), which keeps
    /// every lookup and the repeat check a scan of a short vector.
    pub const MAX: usize = 64;

    pub fn new() -> Params {
        Params(Vec::with_capacity(4))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn get(&self, key: &str) -> Option<&String> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
    /// Sets a parameter, replacing an earlier value.
    pub fn insert(&mut self, key: String, value: String) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }
    /// Sets a parameter only if it is not there yet.
    pub fn insert_if_absent(&mut self, key: String, value: String) {
        if !self.contains_key(&key) {
            self.0.push((key, value));
        }
    }
    /// The parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(i).1)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Params {
        let mut p = Params::new();
        for (k, v) in iter {
            p.insert(k.into(), v.into());
        }
        p
    }
}

pub(crate) fn param<'a>(p: &'a Params, k: &str) -> &'a str {
    p.get(k).map(|s| s.as_str()).unwrap_or("")
}

/// How the client authenticated, as the front end found it.
#[derive(Clone, Default)]
pub struct ClientAuth {
    /// From `Authorization: Basic` (client_secret_basic).
    pub basic: Option<(String, String)>,
    /// That header's value as it came: once the credentials check out, the header is remembered
    /// ([`Edge::known_basic`]).
    pub header: Option<Bytes>,
    /// The client a Basic header that authenticated before stands for (then `basic` is not decoded).
    pub known: Option<Arc<ClientApp>>,
    /// Casdoor's token, refresh and introspection paths: the body may repeat the Basic credentials
    /// (`client_id` and the same `client_secret`), as Casdoor's Node SDK sends them. Elsewhere one method per
    /// request (RFC 6749 §2.3).
    pub repeat_allowed: bool,
}

/// A successful token response (RFC 6749 §5.1, plus Casdoor's `id_token` copy).
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub scope: String,
    /// A real OIDC ID token (authorization code and device flows with `openid`); else Casdoor's copy of the
    /// access token goes in `id_token`.
    pub id_token: Option<String>,
}

/// What minting for a user made: the response, the refresh token to record, and the access token's id.
pub(crate) struct Minted {
    pub(crate) response: TokenResponse,
    pub(crate) refresh: Option<RefreshToken>,
    pub(crate) access_jti: String,
    pub(crate) access_expires_at: i64,
}

/// The JSON of a token response, serialized without building a `Value`.
#[derive(serde::Serialize)]
struct TokenResponseJson<'a> {
    access_token: &'a str,
    id_token: &'a str,
    refresh_token: &'a str,
    token_type: &'a str,
    expires_in: i64,
    scope: &'a str,
}

impl TokenResponse {
    pub fn body(&self) -> Vec<u8> {
        // Casdoor clients read `id_token` (the access token, COMPAT §5.5) and expect all six keys.
        serde_json::to_vec(&TokenResponseJson {
            access_token: &self.access_token,
            id_token: self.id_token.as_deref().unwrap_or(&self.access_token),
            refresh_token: &self.refresh_token,
            token_type: "Bearer",
            expires_in: self.expires_in,
            scope: &self.scope,
        })
        .unwrap_or_default()
    }
}

/// What a verified token says, once its state has been checked.
pub struct ActiveToken {
    pub claims: Map<String, Value>,
    pub client: Arc<ClientApp>,
    /// `None` for client credentials tokens.
    pub user: Option<User>,
    pub is_refresh: bool,
    pub kid: String,
}

/// A refused sign-in as the token endpoint answers it (RFC 6749 §5.2): `invalid_grant`, with 429 when the
/// account or the address must wait.
fn refused_to_oauth(refused: Refused) -> OAuthError {
    match refused {
        Refused::Invalid | Refused::NoChallengeCredential => OAuthError::invalid_grant(refused.to_string()),
        Refused::Locked { .. } | Refused::RateLimited => OAuthError::slow_down(refused.to_string()),
        Refused::EmptyPassword => OAuthError::invalid_request(refused.to_string()),
        Refused::Internal(e) => e.into(),
    }
}

pub(crate) fn hours_to_secs(h: f64) -> i64 {
    if h.is_finite() && h > 0.0 {
        (h * 3600.0) as i64
    } else {
        0
    }
}

impl Edge {
    /// Identifies and authenticates the client of a token-endpoint-style request.
    pub fn client_from_request(&self, p: &Params, auth: &ClientAuth) -> Result<Arc<ClientApp>, OAuthError> {
        let (form_id, form_secret) = (param(p, "client_id"), param(p, "client_secret"));
        // RFC 6749 §2.3: one authentication method per request — except that on Casdoor's paths the body
        // may repeat the Basic credentials exactly. `basic_digest` is the SHA-256 of the Basic secret (for a
        // remembered header, the stored digest it matched).
        let only_basic = |basic_id: &str, basic_digest: &[u8]| {
            if !form_id.is_empty() && form_id != basic_id {
                return Err(OAuthError::invalid_request("client_id in the body differs from HTTP Basic"));
            }
            if form_secret.is_empty() {
                return Ok(());
            }
            if !auth.repeat_allowed {
                return Err(OAuthError::invalid_request(
                    "use either HTTP Basic or client_secret in the body, not both",
                ));
            }
            let same = bool::from(sha256(form_secret.as_bytes()).ct_eq(basic_digest));
            if !same {
                return Err(OAuthError::invalid_request("client_secret in the body differs from HTTP Basic"));
            }
            Ok(())
        };
        match (&auth.known, &auth.basic) {
            (Some(client), _) => {
                only_basic(&client.app.client_id, &client.app.client_secret_digest)?;
                Ok(client.clone())
            }
            (None, Some((id, secret))) => {
                only_basic(id, &sha256(secret.as_bytes()))?;
                let epoch = self.epoch.load(Ordering::SeqCst);
                let client = self.authenticate_client(id, secret)?;
                if let Some(header) = &auth.header {
                    self.remember_basic(header, &client, epoch);
                }
                Ok(client)
            }
            (None, None) if form_id.is_empty() => Err(OAuthError::invalid_client("client authentication is required")),
            (None, None) => self.authenticate_client(form_id, form_secret),
        }
    }

    /// A public client (RFC 6749 §2.1) names itself with `client_id` alone and proves nothing: it may only
    /// redeem codes bound to a PKCE verifier, refresh, and use the device grant (`grant`: the grant the
    /// request is for). `None` when the request is not such a one.
    fn public_client(&self, p: &Params, auth: &ClientAuth, grant: &str) -> Result<Option<Arc<ClientApp>>, OAuthError> {
        if auth.basic.is_some() || auth.known.is_some() || p.contains_key("client_secret") {
            return Ok(None);
        }
        match self.client(param(p, "client_id"))? {
            Some(c) if c.app.public_client => {
                if !matches!(grant, "authorization_code" | "refresh_token" | device::DEVICE_CODE_GRANT) {
                    return Err(OAuthError::unauthorized_client(
                        "a public client may only redeem codes, refresh and use the device grant",
                    ));
                }
                Ok(Some(c))
            }
            _ => Ok(None),
        }
    }

    /// `POST /oauth/token`.
    pub async fn token(
        &self,
        p: &Params,
        auth: &ClientAuth,
        client_ip: Option<std::net::IpAddr>,
    ) -> Result<TokenResponse, OAuthError> {
        let grant = param(p, "grant_type");
        if grant.is_empty() {
            return Err(OAuthError::invalid_request("grant_type is required"));
        }
        if !matches!(
            grant,
            "client_credentials" | "password" | "refresh_token" | "authorization_code" | device::DEVICE_CODE_GRANT
        ) {
            return Err(OAuthError::unsupported_grant_type(format!("grant_type {grant} is not supported")));
        }
        let client = match self.public_client(p, auth, grant)? {
            Some(public) => public,
            None => self.client_from_request(p, auth)?,
        };
        if !client.app.grant_types.iter().any(|g| g == grant) {
            return Err(OAuthError::unauthorized_client(format!("this client may not use grant_type {grant}")));
        }
        match grant {
            "client_credentials" => self.grant_client_credentials(&client, p),
            "password" => self.grant_password(&client, p, client_ip).await,
            // Casdoor's SDKs redeem codes on Casdoor's path without `redirect_uri` (see `grant_authorization_code`).
            "authorization_code" => self.grant_authorization_code(&client, p, auth.repeat_allowed).await,
            device::DEVICE_CODE_GRANT => self.grant_device_code(&client, p).await,
            _ => self.grant_refresh(&client, p).await,
        }
    }

    /// The scope rule: with configured scopes, every requested scope must be one of them.
    fn check_scope(&self, client: &ClientApp, requested: &str) -> Result<String, OAuthError> {
        let scopes = &client.app.scopes;
        if scopes.is_empty() || requested.is_empty() {
            return Ok(requested.to_string());
        }
        for s in requested.split_whitespace() {
            if !scopes.iter().any(|c| c == s) {
                return Err(OAuthError::invalid_scope(format!("scope {s} is not allowed for this client")));
            }
        }
        Ok(requested.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    fn signing_key(&self, client: &ClientApp) -> Result<Arc<LoadedKey>, OAuthError> {
        match self.keyring.get(&client.app.cert) {
            Some(k) if k.active => Ok(k),
            _ => {
                tracing::error!(app = %client.app.name, kid = %client.app.cert, "application has no active signing key");
                Err(OAuthError::server_error())
            }
        }
    }

    fn grant_client_credentials(&self, client: &ClientApp, p: &Params) -> Result<TokenResponse, OAuthError> {
        let scope = self.check_scope(client, param(p, "scope"))?;
        let key = self.signing_key(client)?;
        let iat = now();
        let lifetime = hours_to_secs(client.app.expire_in_hours).max(1);
        let jti = format!("admin/{}", uuid::Uuid::new_v4());
        let frame = TokenFrame {
            issuer: &self.config.issuer,
            app: &client.app,
            scope: &scope,
            nonce: "",
            jti: &jti,
            iat,
            exp: iat + lifetime,
            token_type: claims::ACCESS,
        };
        let c = claims::build(&frame, &Subject { user: None, roles: &[] });
        let access_token = key.sign(&key.access_header, &serde_json::to_vec(&c)?)?;
        self.metrics.token_issued("client_credentials");
        Ok(TokenResponse { access_token, refresh_token: String::new(), expires_in: lifetime, scope, id_token: None })
    }

    /// Mints an access token (and, when the client may refresh, a refresh token) for a user.
    pub(crate) fn mint_for_user(
        &self,
        client: &ClientApp,
        user: &User,
        scope: &str,
        nonce: &str,
        family: Option<&str>,
    ) -> Result<Minted, OAuthError> {
        let key = self.signing_key(client)?;
        let roles = self.roles_of(user)?;
        let iat = now();
        let lifetime = hours_to_secs(client.app.expire_in_hours).max(1);
        let access_jti = format!("admin/{}", uuid::Uuid::new_v4());
        let subject = Subject { user: Some(user), roles: &roles };
        let frame = TokenFrame {
            issuer: &self.config.issuer,
            app: &client.app,
            scope,
            nonce,
            jti: &access_jti,
            iat,
            exp: iat + lifetime,
            token_type: claims::ACCESS,
        };
        let access_token = key.sign(&key.access_header, &serde_json::to_vec(&claims::build(&frame, &subject))?)?;
        let mut minted = Minted {
            response: TokenResponse {
                access_token,
                refresh_token: String::new(),
                expires_in: lifetime,
                scope: scope.to_string(),
                id_token: None,
            },
            refresh: None,
            access_jti: access_jti.clone(),
            access_expires_at: iat + lifetime,
        };
        if !client.app.grant_types.iter().any(|g| g == "refresh_token") {
            return Ok(minted);
        }
        let refresh_lifetime = match hours_to_secs(client.app.refresh_expire_in_hours) {
            0 => lifetime,
            s => s,
        };
        let refresh_id = format!("admin/{}", uuid::Uuid::new_v4());
        let frame = TokenFrame { jti: &refresh_id, exp: iat + refresh_lifetime, token_type: claims::REFRESH, ..frame };
        minted.response.refresh_token =
            key.sign(&key.refresh_header, &serde_json::to_vec(&claims::build(&frame, &subject))?)?;
        let record = RefreshToken {
            id: refresh_id.clone(),
            family: family.map(str::to_string).unwrap_or(refresh_id),
            application: client.app.name.clone(),
            user: user.full_name(),
            scope: scope.to_string(),
            issued_at: iat,
            expires_at: iat + refresh_lifetime,
            access_jti,
            access_expires_at: iat + lifetime,
            state: RefreshState::Active,
        };
        minted.refresh = Some(record);
        Ok(minted)
    }

    async fn grant_password(
        &self,
        client: &ClientApp,
        p: &Params,
        client_ip: Option<std::net::IpAddr>,
    ) -> Result<TokenResponse, OAuthError> {
        let (username, password) = (param(p, "username"), param(p, "password"));
        if username.is_empty() {
            return Err(OAuthError::invalid_request("username is required"));
        }
        if password.is_empty() {
            return Err(OAuthError::invalid_request("password is required"));
        }
        let scope = self.check_scope(client, param(p, "scope"))?;
        let sign_in = SignIn {
            organization: &client.app.organization,
            login: username,
            password,
            client_ip,
            lockout: LockoutRule::Of(Lockout::of(&client.app)),
            ignore_case: false,
        };
        let user = match self.passwords.verify(sign_in).await {
            Ok(verified) => verified.user,
            Err(refused) => return Err(refused_to_oauth(refused)),
        };
        // Unlike Casdoor (COMPAT §11.5), a deleted or disabled account gets no token.
        if crate::passwords::may_sign_in(&user).is_err() {
            return Err(OAuthError::invalid_grant("the account is disabled"));
        }
        let Minted { mut response, refresh, .. } =
            self.mint_for_user(client, &user, &scope, param(p, "nonce"), None)?;
        if refresh.is_some() && !self.node.has_quorum() {
            // A refresh token is only valid once recorded for the cluster, which takes a quorum: without
            // one the sign-in still gets its access token, without a refresh token (RFC 6749 §5.1 makes
            // it optional), rather than a 503.
            response.refresh_token.clear();
        } else if let Some(token) = refresh {
            match self.write(Command::IssueRefreshToken { token }).await? {
                Outcome::Applied => {}
                other => {
                    tracing::error!(?other, "refresh token not recorded");
                    return Err(OAuthError::server_error());
                }
            }
        }
        self.metrics.token_issued("password");
        Ok(response)
    }

    async fn grant_refresh(&self, client: &ClientApp, p: &Params) -> Result<TokenResponse, OAuthError> {
        let presented = param(p, "refresh_token");
        if presented.is_empty() {
            return Err(OAuthError::invalid_request("refresh_token is required"));
        }
        let invalid = || OAuthError::invalid_grant("refresh token is invalid, expired or revoked");
        let (claims, _) = self.verify_signature(presented).ok_or_else(invalid)?;
        if !is_refresh(&claims) {
            return Err(invalid());
        }
        let jti = claims.get("jti").and_then(Value::as_str).unwrap_or_default();
        let Some(rec) = self.store.refresh_token(jti)? else {
            return Err(invalid());
        };
        let old = rec.to_owned()?;
        if old.application != client.app.name {
            return Err(invalid());
        }
        // The token's `sub` is its user's id, signed into it: a user deleted and created again under the
        // same name is another person (another id), whose tokens this one must not mint. Introspection
        // (`check_token`) looks the user up the same way.
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        let user = match self.store.user_by_id(sub)? {
            Some(u) => u.to_owned()?,
            None => return Err(invalid()),
        };
        if user.is_forbidden || user.is_deleted {
            return Err(OAuthError::invalid_grant("the account is disabled"));
        }
        // A narrower scope may be asked for; never a wider one (RFC 6749 §6).
        let requested = param(p, "scope");
        let scope = if requested.is_empty() {
            old.scope.clone()
        } else {
            let granted: Vec<&str> = old.scope.split_whitespace().collect();
            if let Some(extra) = requested.split_whitespace().find(|s| !granted.contains(s)) {
                return Err(OAuthError::invalid_scope(format!("scope {extra} was not granted")));
            }
            requested.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or_default().to_string();
        let Minted { response, refresh: new, .. } =
            self.mint_for_user(client, &user, &scope, &nonce, Some(&old.family))?;
        let Some(new) = new else {
            return Err(OAuthError::unauthorized_client("this client may not refresh tokens"));
        };
        match self.write(Command::RotateRefreshToken { old_id: old.id.clone(), new, now: now() }).await? {
            Outcome::Applied => {
                self.metrics.token_issued("refresh_token");
                Ok(response)
            }
            Outcome::Reused => {
                tracing::warn!(family = %old.family, user = %old.user, "refresh token reuse: family revoked");
                Err(OAuthError::invalid_grant("refresh token was already used; all tokens of its family are revoked"))
            }
            _ => Err(invalid()),
        }
    }

    /// Verifies a JWT's signature, expiry and issuer with the keyring. Returns its claims and key id.
    /// `None` for anything that is not a valid, unexpired token of this issuer.
    pub fn verify_signature(&self, token: &str) -> Option<(Map<String, Value>, String)> {
        if token.len() > 16 * 1024 {
            return None;
        }
        let kid = crate::keys::header_kid(token)?;
        let key = self.keyring.get(&kid)?;
        let Value::Object(claims) = key.verify(token).ok()? else {
            return None;
        };
        let iss = claims.get("iss").and_then(Value::as_str)?;
        if iss != self.config.issuer && !self.accepts_foreign_issuer(&claims, iss) {
            return None;
        }
        Some((claims, kid))
    }

    /// Whether a token of another issuer is one this node took over: its application has that issuer
    /// recorded (by an import), so tokens Casdoor signed before the move stay valid until they expire.
    fn accepts_foreign_issuer(&self, claims: &Map<String, Value>, iss: &str) -> bool {
        let Some(Ok(Some(client))) = client_id_of(claims).map(|c| self.client(c)) else {
            return false;
        };
        self.store.accepts_issuer(&client.app.name, iss).unwrap_or(false)
    }

    /// Verifies a token and checks it is still good: not revoked, its client and user still active, and
    /// for refresh tokens, not yet exchanged.
    pub fn check_token(&self, token: &str) -> Result<Option<ActiveToken>, OAuthError> {
        let Some((claims, kid)) = self.verify_signature(token) else {
            return Ok(None);
        };
        let jti = claims.get("jti").and_then(Value::as_str).unwrap_or_default();
        let client_id = client_id_of(&claims).unwrap_or_default();
        let Some(client) = self.client(client_id)? else {
            return Ok(None);
        };
        let is_refresh = is_refresh(&claims);
        if is_refresh {
            match self.store.refresh_token(jti)? {
                Some(r) if matches!(r.get().state, jeton_raft::model::ArchivedRefreshState::Active) => {}
                _ => return Ok(None),
            }
        } else if jti.is_empty() || self.store.is_revoked(jti)? {
            return Ok(None);
        }
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        let user = if sub == format!("admin/{}", client.app.name) {
            None
        } else {
            match self.store.user_by_id(sub)? {
                Some(u) if !u.get().is_forbidden && !u.get().is_deleted => Some(u.to_owned()?),
                _ => return Ok(None),
            }
        };
        Ok(Some(ActiveToken { claims, client, user, is_refresh, kid }))
    }

    /// `POST /oauth/introspect`: the answer for `token`, asked by `caller`.
    pub fn introspect(&self, caller: &ClientApp, token: &str) -> Result<Bytes, OAuthError> {
        const INACTIVE: &[u8] = br#"{"active":false}"#;
        let digest = self.digest_key.digest(token.as_bytes());
        let may_see = |org: &str| caller.is_admin_app || caller.app.organization == org;
        if let Some(hit) = self.introspections.get(&digest) {
            self.metrics.introspection_cache(true);
            if hit.exp > now() && may_see(&hit.organization) {
                return Ok(hit.body.clone());
            }
            return Ok(Bytes::from_static(INACTIVE));
        }
        self.metrics.introspection_cache(false);
        let epoch = self.epoch.load(Ordering::SeqCst);
        let Some(active) = self.check_token(token)? else {
            return Ok(Bytes::from_static(INACTIVE));
        };
        let c = &active.claims;
        let mut out = Map::new();
        out.insert("active".into(), json!(true));
        for k in ["scope"] {
            if let Some(v) = c.get(k).filter(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
                out.insert(k.into(), v.clone());
            }
        }
        out.insert("client_id".into(), json!(active.client.app.client_id));
        let username = active.user.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| active.client.app.name.clone());
        out.insert("username".into(), json!(username));
        out.insert("token_type".into(), json!(if active.is_refresh { "refresh_token" } else { "Bearer" }));
        for k in ["exp", "iat", "nbf", "sub", "aud", "iss", "jti"] {
            if let Some(v) = c.get(k) {
                out.insert(k.into(), v.clone());
            }
        }
        let exp = c.get("exp").and_then(Value::as_i64).unwrap_or(0);
        let entry = Arc::new(CachedToken {
            body: Bytes::from(serde_json::to_vec(&out)?),
            exp,
            jti: c.get("jti").and_then(Value::as_str).unwrap_or_default().to_string(),
            user_id: active.user.as_ref().map(|u| u.id.clone()).unwrap_or_default(),
            organization: active.client.app.organization.clone(),
            client_id: active.client.app.client_id.clone(),
            kid: active.kid.clone(),
        });
        // Refresh tokens change state when used; only access tokens are cached.
        if !active.is_refresh {
            self.remember(digest, epoch, entry.clone());
        }
        if may_see(&entry.organization) {
            Ok(entry.body.clone())
        } else {
            Ok(Bytes::from_static(INACTIVE))
        }
    }

    /// `POST /oauth/revoke` (RFC 7009). Unknown or invalid tokens are not an error.
    pub async fn revoke(&self, caller: &ClientApp, token: &str) -> Result<(), OAuthError> {
        let Some((claims, _)) = self.verify_signature(token) else {
            return Ok(());
        };
        let client_id = client_id_of(&claims).unwrap_or_default();
        if client_id != caller.app.client_id && !caller.is_admin_app {
            return Err(OAuthError::unauthorized_client("the token was not issued to this client"));
        }
        let jti = claims.get("jti").and_then(Value::as_str).unwrap_or_default().to_string();
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if jti.is_empty() {
            return Ok(());
        }
        let cmd = if is_refresh(&claims) {
            let Some(rec) = self.store.refresh_token(&jti)? else {
                return Ok(());
            };
            Command::RevokeRefreshFamily { family: rec.get().family.as_str().to_string(), now: now() }
        } else {
            if self.store.is_revoked(&jti)? {
                return Ok(());
            }
            Command::Revoke { revocation: Revocation { jti, expires_at: exp, revoked_at: now() } }
        };
        match self.write(cmd).await? {
            Outcome::Applied | Outcome::NotFound(_) => Ok(()),
            other => {
                tracing::warn!(?other, "revocation refused");
                Ok(())
            }
        }
    }

    /// `GET /oauth/userinfo`: the claims of the bearer's user, by scope (COMPAT §6.4).
    pub fn userinfo(&self, token: &str) -> Result<Option<Value>, OAuthError> {
        let Some(active) = self.check_token(token)? else {
            return Ok(None);
        };
        if active.is_refresh {
            return Ok(None);
        }
        let scope = active.claims.get("scope").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut out = Map::new();
        out.insert("sub".into(), active.claims.get("sub").cloned().unwrap_or(json!("")));
        out.insert("iss".into(), json!(self.config.issuer));
        out.insert("aud".into(), json!(active.client.app.client_id));
        let Some(u) = active.user else {
            return Ok(Some(Value::Object(out)));
        };
        for (k, v) in self.profile_claims(&u, &scope)? {
            out.insert(k, v);
        }
        Ok(Some(Value::Object(out)))
    }
}

fn is_refresh(claims: &Map<String, Value>) -> bool {
    let t = |k: &str| claims.get(k).and_then(Value::as_str);
    t("tokenType") == Some(claims::REFRESH) || t("TokenType") == Some(claims::REFRESH)
}

/// The client a token names: its `client_id`, else its `azp`, else its (first) audience. Every check of
/// whose token it is (introspection, revocation, a foreign issuer's tokens) asks this one.
fn client_id_of(claims: &Map<String, Value>) -> Option<&str> {
    let aud = match claims.get("aud") {
        Some(Value::String(a)) => Some(a.as_str()),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str),
        _ => None,
    };
    claims.get("client_id").or_else(|| claims.get("azp")).and_then(Value::as_str).or(aud)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use super::client_id_of;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn the_client_of_a_token_is_client_id_then_azp_then_audience() {
        let all = claims(json!({"client_id": "a", "azp": "b", "aud": ["c"]}));
        assert_eq!(client_id_of(&all), Some("a"));
        assert_eq!(client_id_of(&claims(json!({"azp": "b", "aud": "c"}))), Some("b"));
        assert_eq!(client_id_of(&claims(json!({"aud": ["c", "d"]}))), Some("c"));
        assert_eq!(client_id_of(&claims(json!({"aud": "c"}))), Some("c"));
        assert_eq!(client_id_of(&claims(json!({"sub": "x"}))), None);
    }
}
