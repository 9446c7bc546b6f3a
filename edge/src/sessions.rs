//! Browser sessions (single sign-on), and what keeps the sign-in pages honest: CSRF tokens and sealed
//! sign-in state.
//!
//! A session is a replicated [`BrowserSession`]: started by one node, it is found on every node, and ending
//! it (sign-out, the user on their account page, an admin, the user being disabled) ends it everywhere.
//! Consents (what a user allowed an application) are replicated too; the user and an admin can take them
//! back. The browser holds a random cookie value; the state holds its SHA-256, which is also the `sid` of
//! the ID tokens issued under it.
//!
//! State that lives only for one step of a sign-in (a password checked, a second factor still to come) is
//! not replicated: it travels with the browser, sealed (AES-256-GCM) under a key derived from the cluster's
//! key-encryption key, so whichever node the next request lands on can open it and nobody can forge it.

use jeton_raft::model::{BrowserSession, Consent, User};
use jeton_raft::{Command, Outcome};
use serde::{de::DeserializeOwned, Serialize};
use subtle::ConstantTimeEq;

use crate::clock::now;
use crate::error::{EdgeError, OAuthError};
use crate::keys::hmac_sha256;
use crate::secrets::{random_hex, sha256};
use crate::service::Edge;

/// Settings of browser sessions.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Longest a session lasts, seconds (an application may set its own).
    pub lifetime_secs: i64,
    /// A session unused this long ends, seconds; 0: no idle limit (an application may set its own).
    pub idle_secs: i64,
    /// Cookies carry `Secure` (and the `__Host-` prefix): set when the issuer is `https://`.
    pub secure_cookies: bool,
    /// How long an authorization code is good for, seconds.
    pub code_lifetime_secs: i64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        // Keycloak's defaults: 10 hours at most, 30 minutes idle.
        SessionSettings { lifetime_secs: 10 * 3600, idle_secs: 30 * 60, secure_cookies: false, code_lifetime_secs: 60 }
    }
}

/// How a user authenticated, for `amr`, `acr` and the session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Authentication {
    pub user_id: String,
    /// RFC 8176 values: `pwd`, `otp`, `hwk`, `user`, `mfa`.
    pub amr: Vec<String>,
    pub auth_time: i64,
}

impl Authentication {
    /// The `acr` reached: `mfa` with two factors (or a passkey with user verification), else `pwd`.
    pub fn acr(&self) -> &'static str {
        if self.is_multi_factor() {
            "mfa"
        } else {
            "pwd"
        }
    }

    pub fn is_multi_factor(&self) -> bool {
        self.amr.iter().any(|m| m == "mfa")
    }

    /// The same authentication, with a one-time code shown after it (RFC 8176 `otp`, and so `mfa`).
    pub fn with_second_factor(&self) -> Authentication {
        let mut amr = self.amr.clone();
        for m in ["otp", "mfa"] {
            if !amr.iter().any(|a| a == m) {
                amr.push(m.to_string());
            }
        }
        Authentication { amr, ..self.clone() }
    }
}

/// The cookie names, by whether cookies are `Secure` (only then may a name carry the `__Host-` prefix).
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-jeton_session"
    } else {
        "jeton_session"
    }
}

pub fn csrf_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-jeton_csrf"
    } else {
        "jeton_csrf"
    }
}

/// Most bytes a sealed value may take once base64url-encoded (what a form or query can carry back).
const MAX_SEALED_TEXT: usize = 8 * 1024;

impl Edge {
    /// The session a cookie value stands for, if it is live.
    pub fn session_from_cookie(&self, cookie: &str) -> Result<Option<BrowserSession>, OAuthError> {
        if cookie.len() != 64 || !cookie.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let id = hex::encode(sha256(cookie.as_bytes()));
        match self.store.session(&id)? {
            Some(s) => {
                let s = s.to_owned()?;
                Ok(s.is_live(now()).then_some(s))
            }
            None => Ok(None),
        }
    }

    /// Starts a session for a user who just authenticated; returns the cookie value to set.
    pub async fn start_session(
        &self,
        user: &User,
        auth: &Authentication,
        application: Option<&jeton_raft::model::Application>,
        client_ip: &str,
        user_agent: &str,
    ) -> Result<(String, BrowserSession), OAuthError> {
        let cookie = random_hex(32);
        let settings = &self.config.sessions;
        let pick = |own: i64, default: i64| if own > 0 { own } else { default };
        let lifetime = pick(application.map_or(0, |a| a.session_lifetime_secs), settings.lifetime_secs).max(60);
        let idle = pick(application.map_or(0, |a| a.session_idle_secs), settings.idle_secs);
        let at = now();
        let session = BrowserSession {
            id: hex::encode(sha256(cookie.as_bytes())),
            user_id: user.id.clone(),
            owner: user.owner.clone(),
            name: user.name.clone(),
            auth_time: auth.auth_time,
            amr: auth.amr.clone(),
            acr: auth.acr().to_string(),
            expires_at: at + lifetime,
            idle_secs: idle,
            last_seen: at,
            applications: Vec::new(),
            client_ip: client_ip.chars().take(64).collect(),
            user_agent: user_agent.chars().take(256).collect(),
        };
        match self.write(Command::StartSession { session: session.clone() }).await? {
            Outcome::Applied => Ok((cookie, session)),
            other => {
                tracing::warn!(?other, "session not started");
                Err(OAuthError::invalid_request("the account cannot sign in"))
            }
        }
    }

    /// Notes that `session` was used (its idle clock restarts) and that `application` got a code under it.
    /// Written only when it tells something new: a new application, or a last use older than a tenth of
    /// the idle limit, so a busy session does not write on every request.
    pub async fn touch_session(&self, session: &BrowserSession, application: &str) -> Result<(), OAuthError> {
        let at = now();
        let new_app = !application.is_empty() && !session.applications.iter().any(|a| a == application);
        let stale = session.idle_secs > 0 && at - session.last_seen >= (session.idle_secs / 10).max(1);
        if !new_app && !stale {
            return Ok(());
        }
        let application = if new_app { application.to_string() } else { String::new() };
        self.write(Command::TouchSession { id: session.id.clone(), at, application }).await?;
        Ok(())
    }

    /// Ends a session on every node.
    pub async fn end_session(&self, id: &str) -> Result<(), OAuthError> {
        self.write(Command::EndSession { id: id.to_string() }).await?;
        Ok(())
    }

    /// A user's live sessions, most recently used first.
    pub fn sessions_of(&self, user_id: &str) -> Result<Vec<BrowserSession>, EdgeError> {
        let at = now();
        let mut live = Vec::new();
        for record in self.store.sessions_of_user(user_id)? {
            let s = record.to_owned()?;
            if s.is_live(at) {
                live.push(s);
            }
        }
        live.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.id.cmp(&b.id)));
        Ok(live)
    }

    /// Ends the sessions of `user_id` named in `ids` (others' sessions are not touched); how many ended.
    pub async fn end_sessions_of(&self, user_id: &str, ids: &[String]) -> Result<usize, EdgeError> {
        let mut ended = 0;
        for s in self.sessions_of(user_id)? {
            if ids.contains(&s.id) && self.write(Command::EndSession { id: s.id.clone() }).await? == Outcome::Applied {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Ends every session of a user (sign-out everywhere); how many were live.
    pub async fn end_all_sessions_of(&self, user_id: &str) -> Result<usize, EdgeError> {
        let live = self.sessions_of(user_id)?.len();
        self.write(Command::EndUserSessions { user_id: user_id.to_string() }).await?;
        Ok(live)
    }

    /// The consents a user gave, by application name.
    pub fn consents_of(&self, user_id: &str) -> Result<Vec<Consent>, EdgeError> {
        let mut out = Vec::new();
        for record in self.store.consents_of(user_id) {
            out.push(record?.to_owned()?);
        }
        out.sort_by(|a, b| a.application.cmp(&b.application));
        Ok(out)
    }

    /// Takes back what a user consented to for `application`: the `scopes` named (the consent stays for
    /// the others), or all of it when none is named. The next authorization asks again. Whether anything
    /// was taken back.
    pub async fn revoke_consent(&self, user_id: &str, application: &str, scopes: &[String]) -> Result<bool, EdgeError> {
        let Some(consent) = self.store.consent(user_id, application)? else {
            return Ok(false);
        };
        let mut consent = consent.to_owned()?;
        let before = consent.scopes.len();
        consent.scopes.retain(|s| !scopes.contains(s));
        let outcome = if scopes.is_empty() || consent.scopes.is_empty() {
            self.write(Command::DeleteConsent { user_id: user_id.to_string(), application: application.to_string() })
                .await?
        } else if consent.scopes.len() < before {
            self.write(Command::PutConsent { consent }).await?
        } else {
            return Ok(false);
        };
        Ok(outcome == Outcome::Applied)
    }

    /// The CSRF token of a page: a MAC of the browser's CSRF cookie, so only a page this cluster served to
    /// that browser can carry it.
    pub fn csrf_token(&self, csrf_cookie: &str) -> String {
        hex::encode(&hmac_sha256(&self.page_keys.csrf, csrf_cookie.as_bytes())[..20])
    }

    /// Whether a form's CSRF token matches the browser's CSRF cookie.
    pub fn csrf_ok(&self, csrf_cookie: Option<&str>, token: &str) -> bool {
        match csrf_cookie {
            Some(c) if c.len() >= 32 => bool::from(self.csrf_token(c).as_bytes().ct_eq(token.as_bytes())),
            _ => false,
        }
    }

    /// Seals a value for the browser to carry back (base64url), readable only by this cluster and only
    /// for `purpose`.
    pub fn seal_for_browser<T: Serialize>(&self, purpose: &str, value: &T) -> Result<String, OAuthError> {
        use base64::Engine;
        let plain = serde_json::to_vec(value)?;
        let sealed = self.kek.seal(purpose, &plain)?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens what [`Edge::seal_for_browser`] sealed for `purpose`; `None` for anything else.
    pub fn open_from_browser<T: DeserializeOwned>(&self, purpose: &str, text: &str) -> Option<T> {
        use base64::Engine;
        if text.is_empty() || text.len() > MAX_SEALED_TEXT {
            return None;
        }
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
        let plain = self.kek.open(purpose, &sealed).ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

/// Keys derived from the key-encryption key for the sign-in pages.
pub(crate) struct PageKeys {
    pub(crate) csrf: [u8; 32],
}

impl PageKeys {
    pub(crate) fn new(kek: &crate::keys::Kek) -> PageKeys {
        PageKeys { csrf: kek.derive("jeton csrf 1") }
    }
}
