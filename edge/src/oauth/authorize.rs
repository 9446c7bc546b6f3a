//! The authorization code flow (RFC 6749 §4.1, OIDC Core §3.1, PKCE RFC 7636): the authorization request,
//! the redirect URI rule, codes, and their redemption with an ID token.
//!
//! A code is not stored when it is issued: it is the request's outcome sealed (AES-256-GCM under the
//! cluster's key-encryption key) and carried by the client, so issuing one costs no write and any node can
//! redeem it. Redeeming writes once, through Raft: the first redemption of a code id is recorded, a second
//! one — on any node — is refused and revokes what the first issued (RFC 6749 §4.1.2).

use std::sync::Arc;

use jeton_raft::model::{Application, BrowserSession, CodeRedemption, User};
use jeton_raft::{Command, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::{param, Params, TokenResponse};
use crate::clock::now;
use crate::error::OAuthError;
use crate::keys::Alg;
use crate::secrets::random_hex;
use crate::service::{ClientApp, Edge};
use crate::sessions::Authentication;

/// What a sealed code is sealed for (bound as associated data: a code opens only as a code).
const CODE_PURPOSE: &str = "jeton authorization code 1";

/// How the authorization response reaches the client (OAuth 2.0 Multiple Response Types, Form Post).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

/// A checked authorization request.
#[derive(Clone)]
pub struct AuthorizationRequest {
    pub client: Arc<ClientApp>,
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: String,
    pub nonce: String,
    /// The scopes asked for, space-separated, as the client may have them.
    pub scope: String,
    /// `prompt` values: `none`, `login`, `consent`, `select_account`.
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub login_hint: String,
    pub ui_locales: String,
    pub code_challenge: String,
    /// Every parameter as it came: what the sign-in pages carry to come back here.
    pub params: Params,
}

/// Where an authorization response goes, and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationResponse {
    pub redirect_uri: String,
    pub mode: ResponseMode,
    /// `code` or `error` (+ `error_description`), then `state` and `iss`.
    pub params: Vec<(String, String)>,
}

/// Why an authorization request did not get a code.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizeRefusal {
    /// The client or the redirect URI cannot be trusted: shown on a page, never redirected.
    Page(String),
    /// Sent to the client's redirect URI (RFC 6749 §4.1.2.1).
    Redirect(AuthorizationResponse),
}

/// What an authorization request needs next, given the browser's session.
pub enum Step {
    /// Show the login page (with this message, if any).
    Login,
    /// Ask the user to consent to these scopes.
    Consent(Vec<String>),
    /// Everything is there: issue a code.
    Issue,
}

/// What an ID token tells about the sign-in behind the tokens, whichever grant issues them.
pub(super) struct SignInFacts<'a> {
    pub(super) auth: &'a Authentication,
    pub(super) acr: &'a str,
    /// The browser session the user signed in with (`sid`).
    pub(super) sid: &'a str,
    pub(super) nonce: &'a str,
    /// The scopes granted: which profile claims go in.
    pub(super) scope: &'a str,
}

/// What a code carries, sealed.
#[derive(Serialize, Deserialize)]
struct SealedCode {
    id: String,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
    sid: String,
    user_id: String,
    scope: String,
    auth_time: i64,
    amr: Vec<String>,
    acr: String,
    exp: i64,
}

impl AuthorizationRequest {
    /// An error response to the client, with `state` and `iss`.
    pub fn error(&self, issuer: &str, error: &str, description: &str) -> AuthorizationResponse {
        let mut params = vec![("error".to_string(), error.to_string())];
        if !description.is_empty() {
            params.push(("error_description".into(), description.into()));
        }
        self.response(issuer, params)
    }

    fn response(&self, issuer: &str, mut params: Vec<(String, String)>) -> AuthorizationResponse {
        if !self.state.is_empty() {
            params.push(("state".into(), self.state.clone()));
        }
        // RFC 9207: the client can tell which server answered.
        params.push(("iss".into(), issuer.to_string()));
        AuthorizationResponse { redirect_uri: self.redirect_uri.clone(), mode: self.response_mode, params }
    }

    pub fn prompts(&self, value: &str) -> bool {
        self.prompt.iter().any(|p| p == value)
    }

    /// The scopes asked for, one each.
    pub fn scopes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.scope.split_whitespace() {
            if !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        }
        out
    }
}

impl AuthorizationResponse {
    /// The URL to redirect to, for the query and fragment modes.
    pub fn location(&self) -> String {
        let encoded: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(&self.params).finish();
        let sep = match self.mode {
            ResponseMode::Fragment => '#',
            _ if self.redirect_uri.contains('?') => '&',
            _ => '?',
        };
        format!("{}{sep}{encoded}", self.redirect_uri)
    }
}

/// Whether `uri` is one of the application's redirect URIs (RFC 9700 §4.1.3: exact match), or a loopback
/// URI that differs from a registered one only in its port (RFC 8252 §7.3), or — when the application opted
/// in — a sub-domain of a registered `https://*.domain/path`.
pub fn redirect_uri_allowed(app: &Application, uri: &str) -> bool {
    if uri.is_empty() || uri.contains('#') {
        return false;
    }
    if app.redirect_uris.iter().any(|r| r == uri) {
        return true;
    }
    let Some(candidate) = UriParts::parse(uri) else {
        return false;
    };
    app.redirect_uris.iter().filter_map(|r| UriParts::parse(r)).any(|registered| {
        let same_rest = registered.scheme == candidate.scheme && registered.path_and_query == candidate.path_and_query;
        if !same_rest {
            return false;
        }
        if registered.is_loopback() && candidate.is_loopback() && registered.host == candidate.host {
            return candidate.scheme == "http";
        }
        if app.redirect_uri_subdomains && registered.scheme == "https" && registered.port == candidate.port {
            if let Some(domain) = registered.host.strip_prefix("*.") {
                let suffix = format!(".{domain}");
                return candidate.host.len() > suffix.len()
                    && candidate.host.ends_with(&suffix)
                    && !candidate.host.contains('*')
                    && domain.contains('.');
            }
        }
        false
    })
}

/// The parts of an absolute URI that the redirect rule compares.
struct UriParts {
    scheme: String,
    host: String,
    port: Option<u16>,
    path_and_query: String,
}

impl UriParts {
    fn parse(uri: &str) -> Option<UriParts> {
        let (scheme, rest) = uri.split_once("://")?;
        let (authority, path_and_query) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') || authority.is_empty() {
            return None;
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse::<u16>() {
                Ok(port) if !h.is_empty() => (h, Some(port)),
                _ if authority.starts_with('[') && authority.ends_with(']') => (authority, None),
                _ => return None,
            },
            _ => (authority, None),
        };
        let path_and_query = if path_and_query.is_empty() { "/" } else { path_and_query };
        Some(UriParts {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            port,
            path_and_query: path_and_query.to_string(),
        })
    }

    fn is_loopback(&self) -> bool {
        matches!(self.host.as_str(), "127.0.0.1" | "[::1]" | "localhost")
    }
}

/// `BASE64URL(SHA-256(verifier))` (RFC 7636 §4.2, S256).
fn s256(verifier: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// Whether a PKCE value has the form RFC 7636 §4.1 gives (43 to 128 unreserved characters).
fn pkce_form(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The left half of the hash of a token, as `at_hash` (OIDC Core §3.1.3.6), by the ID token's algorithm.
pub fn left_half_hash(alg: Alg, token: &str) -> String {
    use base64::Engine;
    let digest: Vec<u8> = match alg.as_str() {
        "RS384" | "PS384" | "ES384" => sha2::Sha384::digest(token.as_bytes()).to_vec(),
        "RS512" | "PS512" | "ES512" | "EdDSA" => sha2::Sha512::digest(token.as_bytes()).to_vec(),
        _ => sha2::Sha256::digest(token.as_bytes()).to_vec(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

impl Edge {
    /// Checks an authorization request. The client and redirect URI are checked first: until both are
    /// known good, a refusal is shown, not redirected.
    pub fn authorization_request(&self, p: &Params) -> Result<AuthorizationRequest, AuthorizeRefusal> {
        let client_id = param(p, "client_id");
        if client_id.is_empty() {
            return Err(AuthorizeRefusal::Page("The request names no client (client_id is missing).".into()));
        }
        let client = match self.client(client_id) {
            Ok(Some(c)) => c,
            Ok(None) => return Err(AuthorizeRefusal::Page("The application of this request is unknown.".into())),
            Err(_) => return Err(AuthorizeRefusal::Page("The request could not be handled; try again.".into())),
        };
        let redirect_uri = param(p, "redirect_uri");
        if !redirect_uri_allowed(&client.app, redirect_uri) {
            return Err(AuthorizeRefusal::Page(
                "The redirect URI of this request is not registered for the application.".into(),
            ));
        }
        let response_mode = match param(p, "response_mode") {
            "" | "query" => ResponseMode::Query,
            "fragment" => ResponseMode::Fragment,
            "form_post" => ResponseMode::FormPost,
            _ => ResponseMode::Query,
        };
        let mut req = AuthorizationRequest {
            client: client.clone(),
            redirect_uri: redirect_uri.to_string(),
            response_mode,
            state: param(p, "state").to_string(),
            nonce: param(p, "nonce").to_string(),
            scope: String::new(),
            prompt: param(p, "prompt").split_whitespace().map(str::to_string).collect(),
            max_age: None,
            login_hint: param(p, "login_hint").chars().take(255).collect(),
            ui_locales: param(p, "ui_locales").chars().take(64).collect(),
            code_challenge: param(p, "code_challenge").to_string(),
            params: p.clone(),
        };
        let refuse = |req: &AuthorizationRequest, error: &str, description: &str| {
            Err(AuthorizeRefusal::Redirect(req.error(&self.config.issuer, error, description)))
        };
        if !matches!(param(p, "response_mode"), "" | "query" | "fragment" | "form_post") {
            return refuse(&req, "invalid_request", "response_mode must be query, fragment or form_post");
        }
        if p.contains_key("request") || p.contains_key("request_uri") {
            return refuse(&req, "request_not_supported", "request objects are not supported");
        }
        match param(p, "response_type") {
            "code" => {}
            "" => return refuse(&req, "invalid_request", "response_type is required"),
            _ => return refuse(&req, "unsupported_response_type", "only response_type=code is supported"),
        }
        if !client.app.grant_types.iter().any(|g| g == "authorization_code") {
            return refuse(&req, "unauthorized_client", "this client may not use the authorization code flow");
        }
        if req.prompts("none") && req.prompt.len() > 1 {
            return refuse(&req, "invalid_request", "prompt=none cannot be combined with other values");
        }
        if let Some(m) = p.get("max_age") {
            match m.parse::<i64>() {
                Ok(v) if v >= 0 => req.max_age = Some(v),
                _ => return refuse(&req, "invalid_request", "max_age must be a number of seconds"),
            }
        }
        match self.check_scope(&client, param(p, "scope")) {
            Ok(s) => req.scope = s,
            Err(e) => return refuse(&req, "invalid_scope", &e.description),
        }
        let method = param(p, "code_challenge_method");
        if req.code_challenge.is_empty() {
            if !method.is_empty() {
                return refuse(&req, "invalid_request", "code_challenge_method without code_challenge");
            }
            if client.app.public_client {
                return refuse(&req, "invalid_request", "a public client must use PKCE (code_challenge, S256)");
            }
        } else {
            if method != "S256" {
                return refuse(&req, "invalid_request", "code_challenge_method must be S256");
            }
            if !pkce_form(&req.code_challenge) {
                return refuse(&req, "invalid_request", "code_challenge is malformed");
            }
        }
        Ok(req)
    }

    /// What the request needs next, given the user signed in with `session` (if any). `fresh`: the user
    /// authenticated in this very request, which satisfies `prompt=login` and `max_age`.
    pub fn authorization_step(
        &self,
        req: &AuthorizationRequest,
        session: Option<&BrowserSession>,
        user: Option<&User>,
        fresh: bool,
    ) -> Step {
        let (Some(session), Some(user)) = (session, user) else {
            return Step::Login;
        };
        if user.owner != req.client.app.organization || crate::passwords::may_sign_in(user).is_err() {
            return Step::Login;
        }
        if !fresh && req.prompts("login") {
            return Step::Login;
        }
        if let Some(max_age) = req.max_age {
            if !fresh && now() - session.auth_time > max_age {
                return Step::Login;
            }
        }
        if req.client.app.skip_consent {
            return Step::Issue;
        }
        let asked = req.scopes();
        let granted = match self.store.consent(&user.id, &req.client.app.name) {
            Ok(Some(c)) => c.to_owned().map(|c| c.scopes).unwrap_or_default(),
            _ => Vec::new(),
        };
        let missing: Vec<String> = asked.iter().filter(|s| !granted.contains(s)).cloned().collect();
        if req.prompts("consent") || !missing.is_empty() || asked.is_empty() && granted.is_empty() {
            return Step::Consent(asked);
        }
        Step::Issue
    }

    /// Issues a code for a request the user signed in to with `session`.
    pub async fn issue_code(
        &self,
        req: &AuthorizationRequest,
        session: &BrowserSession,
    ) -> Result<AuthorizationResponse, OAuthError> {
        let code = SealedCode {
            id: random_hex(16),
            client_id: req.client.app.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            challenge: req.code_challenge.clone(),
            nonce: req.nonce.clone(),
            sid: session.id.clone(),
            user_id: session.user_id.clone(),
            scope: req.scope.clone(),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            acr: session.acr.clone(),
            exp: now() + self.config.sessions.code_lifetime_secs.max(1),
        };
        let sealed = self.seal_for_browser(CODE_PURPOSE, &code)?;
        self.touch_session(session, &req.client.app.name).await?;
        self.metrics.token_issued("authorization_code_issued");
        Ok(req.response(&self.config.issuer, vec![("code".into(), sealed)]))
    }

    /// Records the scopes a user consented to for an application.
    pub async fn grant_consent(&self, user: &User, app: &Application, scopes: &[String]) -> Result<(), OAuthError> {
        let mut all = match self.store.consent(&user.id, &app.name)? {
            Some(c) => c.to_owned()?.scopes,
            None => Vec::new(),
        };
        for s in scopes {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        let consent = jeton_raft::model::Consent {
            user_id: user.id.clone(),
            user: user.full_name(),
            application: app.name.clone(),
            scopes: all,
            granted_at: now(),
        };
        match self.write(Command::PutConsent { consent }).await? {
            Outcome::Applied => Ok(()),
            other => {
                tracing::warn!(?other, "consent not recorded");
                Err(OAuthError::invalid_request("the consent could not be recorded"))
            }
        }
    }

    /// `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6). `casdoor_path`: the request came
    /// on Casdoor's token path, where Casdoor's SDKs (Node `getAuthToken`, Python `get_oauth_token`) send
    /// no `redirect_uri`; there a missing one is accepted (the code is still bound to the exactly matched
    /// URI it was sent to, and to its client); one that is sent must match, on every path.
    pub(super) async fn grant_authorization_code(
        &self,
        client: &ClientApp,
        p: &Params,
        casdoor_path: bool,
    ) -> Result<TokenResponse, OAuthError> {
        let presented = param(p, "code");
        if presented.is_empty() {
            return Err(OAuthError::invalid_request("code is required"));
        }
        let invalid = || OAuthError::invalid_grant("the code is invalid, expired or used");
        let code: SealedCode = self.open_from_browser(CODE_PURPOSE, presented).ok_or_else(invalid)?;
        let at = now();
        if code.exp <= at {
            return Err(OAuthError::invalid_grant("the code has expired"));
        }
        if code.client_id != client.app.client_id {
            return Err(OAuthError::invalid_grant("the code was issued to another client"));
        }
        let sent = param(p, "redirect_uri");
        if sent != code.redirect_uri && !(casdoor_path && sent.is_empty()) {
            return Err(OAuthError::invalid_grant("redirect_uri differs from the authorization request's"));
        }
        let verifier = param(p, "code_verifier");
        match (code.challenge.is_empty(), verifier.is_empty()) {
            (true, true) => {}
            (true, false) => return Err(OAuthError::invalid_grant("code_verifier without a code_challenge")),
            (false, true) => return Err(OAuthError::invalid_grant("code_verifier is required")),
            (false, false) => {
                if !pkce_form(verifier) || !bool::from(s256(verifier).as_bytes().ct_eq(code.challenge.as_bytes())) {
                    return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
                }
            }
        }
        // The code is bound to the session it was issued under: signed out since, it is worthless.
        match self.store.session(&code.sid)? {
            Some(s) if s.to_owned()?.is_live(at) => {}
            _ => return Err(OAuthError::invalid_grant("the session the code was issued under has ended")),
        }
        let user = match self.store.user_by_id(&code.user_id)? {
            Some(u) => u.to_owned()?,
            None => return Err(invalid()),
        };
        if crate::passwords::may_sign_in(&user).is_err() {
            return Err(OAuthError::invalid_grant("the account is disabled"));
        }
        let mut minted = self.mint_for_user(client, &user, &code.scope, &code.nonce, None)?;
        let auth = Authentication { user_id: user.id.clone(), amr: code.amr.clone(), auth_time: code.auth_time };
        if code.scope.split_whitespace().any(|s| s == "openid") {
            let facts =
                SignInFacts { auth: &auth, acr: &code.acr, sid: &code.sid, nonce: &code.nonce, scope: &code.scope };
            minted.response.id_token = Some(self.id_token(client, &user, &facts, &minted.response.access_token)?);
        }
        let redemption = CodeRedemption {
            code_id: code.id.clone(),
            expires_at: code.exp + 5,
            access_jti: minted.access_jti.clone(),
            access_expires_at: minted.access_expires_at,
            refresh_family: String::new(),
            replayed: false,
        };
        match self.write(Command::RedeemCode { redemption, refresh: minted.refresh, now: at }).await? {
            Outcome::Applied => {
                self.metrics.token_issued("authorization_code");
                Ok(minted.response)
            }
            Outcome::Reused => {
                tracing::warn!(client = %client.app.name, user = %user.full_name(), "authorization code replayed: its tokens are revoked");
                Err(OAuthError::invalid_grant("the code was used before; the tokens it gave are revoked"))
            }
            other => {
                tracing::debug!(?other, "code redemption refused");
                Err(invalid())
            }
        }
    }

    /// An OIDC ID token (OIDC Core §2): the user's identity for the client, separate from the access token.
    /// The code flow and the device flow issue it alike.
    pub(super) fn id_token(
        &self,
        client: &ClientApp,
        user: &User,
        facts: &SignInFacts<'_>,
        access_token: &str,
    ) -> Result<String, OAuthError> {
        let key = self.signing_key(client)?;
        let iat = now();
        let lifetime = super::hours_to_secs(client.app.expire_in_hours).max(60);
        let mut c = Map::new();
        c.insert("iss".into(), json!(self.config.issuer));
        c.insert("sub".into(), json!(user.id));
        c.insert("aud".into(), json!(client.app.client_id));
        c.insert("azp".into(), json!(client.app.client_id));
        c.insert("exp".into(), json!(iat + lifetime));
        c.insert("iat".into(), json!(iat));
        c.insert("auth_time".into(), json!(facts.auth.auth_time));
        if !facts.nonce.is_empty() {
            c.insert("nonce".into(), json!(facts.nonce));
        }
        c.insert("acr".into(), json!(facts.acr));
        c.insert("amr".into(), json!(facts.auth.amr));
        c.insert("sid".into(), json!(facts.sid));
        c.insert("at_hash".into(), json!(left_half_hash(key.alg, access_token)));
        for (k, v) in self.profile_claims(user, facts.scope)? {
            c.entry(k).or_insert(v);
        }
        Ok(key.sign(&key.refresh_header, &serde_json::to_vec(&c)?)?)
    }

    /// The user's claims that `scope` releases (OIDC Core §5.4), as userinfo and ID tokens carry them.
    pub fn profile_claims(&self, u: &User, scope: &str) -> Result<Map<String, Value>, OAuthError> {
        let scopes: Vec<&str> = scope.split_whitespace().collect();
        let mut out = Map::new();
        let mut verified = None;
        let mut put = |k: &str, v: Value| {
            let empty = matches!(&v, Value::String(s) if s.is_empty()) || v == json!(false) || v == json!([]);
            if !empty {
                out.insert(k.into(), v);
            }
        };
        if scopes.contains(&"profile") {
            let roles = self.roles_of(u)?;
            put("preferred_username", json!(u.name));
            put("name", json!(u.display_name));
            put("given_name", json!(u.first_name));
            put("family_name", json!(u.last_name));
            put("picture", json!(u.avatar));
            put("website", json!(u.homepage));
            put("gender", json!(u.gender));
            put("birthdate", json!(u.birthday));
            put("locale", json!(u.language));
            put("groups", json!(u.groups));
            put("roles", json!(roles.iter().map(|r| r.name.clone()).collect::<Vec<_>>()));
            put("real_name", json!(u.real_name));
            put("is_verified", json!(u.is_verified));
        }
        if scopes.contains(&"email") {
            put("email", json!(u.email));
            // Unlike Casdoor (COMPAT §11.9), the user's real verification state.
            if !u.email.is_empty() {
                verified = Some(u.email_verified);
            }
        }
        // Casdoor's keys (COMPAT §6.4): `address` is the location text, `phone` the number; `phone_number`
        // is OIDC's.
        if scopes.contains(&"address") {
            put("address", json!(u.location));
        }
        if scopes.contains(&"phone") {
            put("phone", json!(u.phone));
            put("phone_number", json!(u.phone));
        }
        if let Some(v) = verified {
            out.insert("email_verified".into(), json!(v));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use jeton_raft::model::Application;

    use super::{left_half_hash, redirect_uri_allowed, s256};
    use crate::keys::Alg;

    fn app(uris: &[&str], subdomains: bool) -> Application {
        Application {
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            redirect_uri_subdomains: subdomains,
            ..Default::default()
        }
    }

    #[test]
    fn redirect_uris_match_exactly_with_any_port_on_loopback() {
        let a = app(&["https://app.example.com/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb?x=1"], false);
        assert!(redirect_uri_allowed(&a, "https://app.example.com/cb"));
        for wrong in [
            "https://app.example.com/cb/",
            "https://app.example.com/cb?x=1",
            "https://app.example.com:444/cb",
            "https://evil.example.com/cb",
            "https://app.example.com/cb#frag",
            "http://app.example.com/cb",
            "https://x.app.example.com/cb",
            "",
        ] {
            assert!(!redirect_uri_allowed(&a, wrong), "{wrong}");
        }
        assert!(redirect_uri_allowed(&a, "http://127.0.0.1:53121/cb"));
        assert!(redirect_uri_allowed(&a, "http://[::1]:1/cb?x=1"));
        assert!(!redirect_uri_allowed(&a, "http://127.0.0.1:53121/other"));
        assert!(!redirect_uri_allowed(&a, "http://localhost:53121/cb"), "not the registered host");
        assert!(!redirect_uri_allowed(&a, "http://127.0.0.1@evil.example.com/cb"));
        // No blanket localhost (COMPAT §6.6).
        assert!(!redirect_uri_allowed(&app(&["https://app.example.com/cb"], false), "http://localhost/cb"));
    }

    #[test]
    fn the_sub_domain_rule_needs_the_opt_in_and_a_wildcard_entry() {
        let uris = ["https://*.example.com/cb"];
        assert!(!redirect_uri_allowed(&app(&uris, false), "https://a.example.com/cb"));
        let a = app(&uris, true);
        assert!(redirect_uri_allowed(&a, "https://a.example.com/cb"));
        assert!(redirect_uri_allowed(&a, "https://a.b.example.com/cb"));
        assert!(!redirect_uri_allowed(&a, "https://example.com/cb"));
        assert!(!redirect_uri_allowed(&a, "https://aexample.com/cb"));
        assert!(!redirect_uri_allowed(&a, "http://a.example.com/cb"));
        assert!(!redirect_uri_allowed(&a, "https://a.example.com/cb2"));
        assert!(!redirect_uri_allowed(&app(&["https://*.com/cb"], true), "https://example.com/cb"));
    }

    #[test]
    fn pkce_and_at_hash_follow_the_rfc_examples() {
        // RFC 7636 Appendix B.
        assert_eq!(s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        // at_hash: the left half of the token's hash by the algorithm's hash size, base64url (values from
        // Python's hashlib; authlib checks the same end to end in tests/e2e/oidc_rp.rs).
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNU7E";
        assert_eq!(left_half_hash(Alg::RS256, token), "3RBdDccixC9ko_in-tKdHQ");
        assert_eq!(left_half_hash(Alg::ES384, token), "slaGlaPqH-qhR5F_3nbEM3RVII4gPJKo");
        assert_eq!(left_half_hash(Alg::EdDSA, token), "j0ZQtOHhIHAb6s5RPQFJTE2j-hVq6inZQ9cnKLsol7E");
    }
}
