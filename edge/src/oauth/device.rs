//! The device authorization grant (RFC 8628), for CLIs, consoles and TVs: the device asks for a device
//! code and a user code, shows the user code, and polls the token endpoint while the user opens the
//! verification page (`/device`) on another device, signs in there as for any authorization, and approves.
//!
//! The authorization is replicated ([`DeviceAuthorization`], keyed by the SHA-256 of the device code, which
//! is itself never stored): the user may approve on one node while the device polls another, and a device
//! code gives tokens once cluster-wide (`RedeemDeviceCode`). Two things are kept per node only, in
//! [`DeviceFlow`]: when each device code was last polled (for `slow_down`), and how many wrong user codes
//! each address typed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jeton_raft::model::{BrowserSession, DeviceAuthorization, DeviceState};
use jeton_raft::{Command, Outcome};
use moka::ops::compute::Op;
use moka::sync::Cache;

use super::authorize::SignInFacts;
use super::{param, ClientAuth, Minted, Params, TokenResponse};
use crate::clock::now;
use crate::error::OAuthError;
use crate::secrets::sha256;
use crate::service::{ClientApp, Edge};
use crate::sessions::Authentication;

/// The grant type of the device's token requests (RFC 8628 §3.4); an application must list it.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The letters of user codes: consonants but `Y` (no words spelt by accident, RFC 8628 §6.1), no digits
/// (no `0`/`O` or `1`/`I` to confuse), all upper case.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters of a user code: 20^8 ≈ 2.6·10^10 codes, against at most [`WRONG_CODE_LIMIT`] guesses per
/// address per [`WRONG_CODE_WINDOW`].
const USER_CODE_LEN: usize = 8;
/// Wrong user codes one address may type within [`WRONG_CODE_WINDOW`] (on one node) before the
/// verification page refuses it every code, right or wrong.
const WRONG_CODE_LIMIT: u32 = 10;
const WRONG_CODE_WINDOW: Duration = Duration::from_secs(600);
/// What RFC 8628 §3.5 adds to a device's interval each time it polls too fast.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// Settings of the device flow (`[device]`).
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    /// How long a device code (and its user code) is good for, seconds.
    pub code_lifetime_secs: i64,
    /// Seconds a device waits between two polls (`interval`); polling faster gets `slow_down`.
    pub interval_secs: i64,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        // Casdoor gives 120 s, too short to reach a page, type a code and sign in with a second factor;
        // Keycloak's 600 s.
        DeviceSettings { code_lifetime_secs: 600, interval_secs: 5 }
    }
}

/// A device code's polling on this node: when it last polled, and the interval it must keep now.
#[derive(Clone, Copy)]
struct Polling {
    last: Instant,
    interval: Duration,
}

/// The device flow's node-local state.
pub(crate) struct DeviceFlow {
    settings: DeviceSettings,
    /// Polling of each device code (by digest) on this node. A poll that lands on another node is not seen
    /// here, so a device alternating between nodes can poll each of them at its interval: accepted, since
    /// `slow_down` is there to stop a busy loop against one node, and replicating every poll would cost a
    /// Raft write per poll.
    polls: Cache<String, Polling>,
    /// Wrong user codes typed from each address, counted from the first one for [`WRONG_CODE_WINDOW`].
    wrong_codes: Cache<IpAddr, Arc<AtomicU32>>,
}

impl DeviceFlow {
    pub(crate) fn new(settings: DeviceSettings) -> DeviceFlow {
        let lifetime = Duration::from_secs(settings.code_lifetime_secs.max(1) as u64);
        DeviceFlow {
            settings,
            polls: Cache::builder().max_capacity(100_000).time_to_live(lifetime).build(),
            wrong_codes: Cache::builder().max_capacity(100_000).time_to_live(WRONG_CODE_WINDOW).build(),
        }
    }

    /// Notes a poll of a pending device code; `true` when it came sooner than its interval allows, which
    /// also lengthens the interval by [`SLOW_DOWN_STEP`] for this and later polls. A tenth of the interval
    /// is forgiven: a device that waits its interval between sending requests sees them arrive with the
    /// network's jitter.
    fn too_fast(&self, digest: &str) -> bool {
        let base = Duration::from_secs(self.settings.interval_secs.max(1) as u64);
        let mut too_fast = false;
        self.polls.entry(digest.to_string()).and_compute_with(|previous| {
            let at = Instant::now();
            let next = match previous.map(|e| e.into_value()) {
                None => Polling { last: at, interval: base },
                Some(p) if at.duration_since(p.last) < p.interval - p.interval / 10 => {
                    too_fast = true;
                    Polling { last: at, interval: p.interval + SLOW_DOWN_STEP }
                }
                Some(p) => Polling { last: at, interval: p.interval },
            };
            Op::Put(next)
        });
        too_fast
    }

    fn attempts_left(&self, ip: Option<IpAddr>) -> bool {
        ip.and_then(|ip| self.wrong_codes.get(&ip)).is_none_or(|n| n.load(Ordering::SeqCst) < WRONG_CODE_LIMIT)
    }

    fn note_wrong_code(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.wrong_codes.get_with(ip, Default::default).fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The answer of the device authorization endpoint (RFC 8628 §3.2).
#[derive(serde::Serialize)]
pub struct DeviceGrant {
    pub device_code: String,
    /// As the user reads and types it: `XXXX-XXXX`.
    pub user_code: String,
    pub verification_uri: String,
    /// The verification page with the user code filled in, for a QR code or a link.
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

impl DeviceGrant {
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A pending device authorization, as the verification page asks the user about it.
pub struct DevicePrompt {
    /// Normalized: upper case, no dash.
    pub user_code: String,
    pub client: Arc<ClientApp>,
    /// The scopes the device asked for, one each.
    pub scopes: Vec<String>,
}

/// Why the verification page cannot go on with a user code.
#[derive(Debug)]
pub enum DeviceRefusal {
    /// Unknown, expired, or decided already: the page says only "invalid or expired", so that it tells
    /// nobody which codes exist.
    Unknown,
    /// This address typed too many wrong codes lately.
    TooManyAttempts,
    /// The decision could not be recorded (no quorum, a failure of the node).
    Failed(OAuthError),
}

/// A user code as typed, normalized: upper case, dashes and spaces dropped. `None` unless it then has the
/// form of a user code (length and letters).
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String =
        typed.chars().filter(|c| !matches!(c, '-' | ' ' | '\t')).map(|c| c.to_ascii_uppercase()).take(64).collect();
    let well_formed = code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    well_formed.then_some(code)
}

/// A normalized user code as it is shown: `XXXX-XXXX`.
pub fn display_user_code(code: &str) -> String {
    if code.len() == USER_CODE_LEN && code.is_ascii() {
        format!("{}-{}", &code[..USER_CODE_LEN / 2], &code[USER_CODE_LEN / 2..])
    } else {
        code.to_string()
    }
}

/// A new user code, uniform over the alphabet (bytes past the largest multiple of its size are drawn
/// again).
fn new_user_code() -> Result<String, OAuthError> {
    let n = USER_CODE_ALPHABET.len();
    let limit = (256 / n * n) as u8;
    let mut code = String::with_capacity(USER_CODE_LEN);
    let mut buf = [0u8; 32];
    while code.len() < USER_CODE_LEN {
        getrandom::fill(&mut buf).map_err(|e| {
            tracing::error!("no randomness for a user code: {e}");
            OAuthError::server_error()
        })?;
        for b in buf.iter().filter(|b| **b < limit).take(USER_CODE_LEN - code.len()) {
            code.push(USER_CODE_ALPHABET[*b as usize % n] as char);
        }
    }
    Ok(code)
}

/// A new device code: 32 random bytes, base64url.
fn new_device_code() -> Result<String, OAuthError> {
    use base64::Engine;
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| {
        tracing::error!("no randomness for a device code: {e}");
        OAuthError::server_error()
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// What the state holds for a device code: its hex SHA-256.
fn device_code_digest(device_code: &str) -> String {
    hex::encode(sha256(device_code.as_bytes()))
}

impl Edge {
    /// `POST /oauth/device_authorization` (and Casdoor's `/api/device-auth`): a device code and a user
    /// code for a client that may use the device grant (RFC 8628 §3.1–3.2).
    pub async fn start_device_authorization(&self, p: &Params, auth: &ClientAuth) -> Result<DeviceGrant, OAuthError> {
        let client = match self.public_client(p, auth, DEVICE_CODE_GRANT)? {
            Some(public) => public,
            None => self.client_from_request(p, auth)?,
        };
        if !client.app.grant_types.iter().any(|g| g == DEVICE_CODE_GRANT) {
            return Err(OAuthError::unauthorized_client("this client may not use the device authorization grant"));
        }
        let scope = self.check_scope(&client, param(p, "scope"))?;
        let settings = &self.device.settings;
        let lifetime = settings.code_lifetime_secs.max(1);
        // A new user code can meet a pending one (one in 2.6·10^10 per pending code): draw again.
        for _ in 0..3 {
            let device_code = new_device_code()?;
            let user_code = new_user_code()?;
            let authorization = DeviceAuthorization {
                device_code_digest: device_code_digest(&device_code),
                user_code: user_code.clone(),
                application: client.app.name.clone(),
                scope: scope.clone(),
                expires_at: now() + lifetime,
                state: DeviceState::Pending,
                ..Default::default()
            };
            match self.write(Command::StartDeviceAuthorization { authorization }).await? {
                Outcome::Applied => {}
                Outcome::Conflict(_) => continue,
                other => {
                    tracing::error!(?other, "device authorization not recorded");
                    return Err(OAuthError::server_error());
                }
            }
            let shown = display_user_code(&user_code);
            let verification_uri = format!("{}/device", self.config.issuer);
            return Ok(DeviceGrant {
                device_code,
                verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
                user_code: shown,
                verification_uri,
                expires_in: lifetime,
                interval: settings.interval_secs.max(1),
            });
        }
        tracing::error!("three user codes in a row were in use");
        Err(OAuthError::server_error())
    }

    /// `grant_type=urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4–3.5): the device's poll.
    pub(super) async fn grant_device_code(&self, client: &ClientApp, p: &Params) -> Result<TokenResponse, OAuthError> {
        let presented = param(p, "device_code");
        if presented.is_empty() {
            return Err(OAuthError::invalid_request("device_code is required"));
        }
        // Once expired, a record stays until the next pruning (minutes), and meanwhile answers
        // `expired_token`; after that the code is merely unknown.
        let invalid = || OAuthError::invalid_grant("the device code is invalid");
        let digest = device_code_digest(presented);
        let Some(record) = self.store.device_authorization(&digest)? else {
            return Err(invalid());
        };
        let d = record.to_owned()?;
        if d.application != client.app.name {
            return Err(invalid());
        }
        let at = now();
        match d.state {
            DeviceState::Redeemed => return Err(OAuthError::invalid_grant("the device code was used already")),
            DeviceState::Denied => return Err(OAuthError::new("access_denied", "the user denied the request")),
            _ if d.expires_at <= at => return Err(OAuthError::new("expired_token", "the device code has expired")),
            DeviceState::Pending if self.device.too_fast(&digest) => {
                return Err(OAuthError::new("slow_down", "polling too fast: wait 5 seconds longer between polls"))
            }
            DeviceState::Pending => {
                return Err(OAuthError::new("authorization_pending", "the user has not decided yet"));
            }
            DeviceState::Approved => {}
        }
        // Approved: the tokens are for the user who approved, as they signed in then. They do not depend
        // on that browser session lasting: approving on a shared computer and signing out right after is
        // what a user should do.
        let user = match self.store.user_by_id(&d.user_id)? {
            Some(u) => u.to_owned()?,
            None => return Err(invalid()),
        };
        if crate::passwords::may_sign_in(&user).is_err() {
            return Err(OAuthError::invalid_grant("the account is disabled"));
        }
        let Minted { mut response, refresh, .. } = self.mint_for_user(client, &user, &d.scope, "", None)?;
        if d.scope.split_whitespace().any(|s| s == "openid") {
            let auth = Authentication { user_id: user.id.clone(), amr: d.amr.clone(), auth_time: d.auth_time };
            let facts = SignInFacts { auth: &auth, acr: auth.acr(), sid: &d.session_id, nonce: "", scope: &d.scope };
            response.id_token = Some(self.id_token(client, &user, &facts, &response.access_token)?);
        }
        match self.write(Command::RedeemDeviceCode { device_code_digest: digest.clone(), refresh, now: at }).await? {
            Outcome::Applied => {
                self.device.polls.invalidate(&digest);
                self.metrics.token_issued("device_code");
                Ok(response)
            }
            // Another poll (on any node) got the tokens first.
            Outcome::Reused => Err(OAuthError::invalid_grant("the device code was used already")),
            other => {
                tracing::debug!(?other, "device code redemption refused");
                Err(OAuthError::new("expired_token", "the device code has expired"))
            }
        }
    }

    /// The pending device authorization a user code (as typed) stands for, for the verification page.
    /// Wrong codes count against `ip`; past [`WRONG_CODE_LIMIT`] every code is refused for a while. A code
    /// that does not even have the form of one is not counted: it cannot match.
    pub fn device_prompt(&self, typed: &str, ip: Option<IpAddr>) -> Result<DevicePrompt, DeviceRefusal> {
        if !self.device.attempts_left(ip) {
            return Err(DeviceRefusal::TooManyAttempts);
        }
        let user_code = normalize_user_code(typed).ok_or(DeviceRefusal::Unknown)?;
        let found = self.pending_device(&user_code).map_err(DeviceRefusal::Failed)?;
        let Some((d, client)) = found else {
            self.device.note_wrong_code(ip);
            return Err(DeviceRefusal::Unknown);
        };
        let mut scopes: Vec<String> = Vec::new();
        for s in d.scope.split_whitespace() {
            if !scopes.iter().any(|o| o == s) {
                scopes.push(s.to_string());
            }
        }
        Ok(DevicePrompt { user_code, client, scopes })
    }

    /// The device authorization of a user code and its client, if it is pending and not expired.
    fn pending_device(&self, user_code: &str) -> Result<Option<(DeviceAuthorization, Arc<ClientApp>)>, OAuthError> {
        let Some(record) = self.store.device_authorization_by_user_code(user_code)? else {
            return Ok(None);
        };
        let d = record.to_owned()?;
        if d.state != DeviceState::Pending || d.expires_at <= now() {
            return Ok(None);
        }
        let Some(app) = self.store.application(&d.application)? else {
            return Ok(None);
        };
        let Some(client) = self.client(&app.get().client_id)? else {
            return Ok(None);
        };
        Ok(Some((d, client)))
    }

    /// Records the decision of the user signed in with `session` on a device authorization.
    pub async fn decide_device_authorization(
        &self,
        prompt: &DevicePrompt,
        approve: bool,
        session: &BrowserSession,
    ) -> Result<(), DeviceRefusal> {
        let cmd = Command::DecideDeviceAuthorization {
            user_code: prompt.user_code.clone(),
            approve,
            user_id: session.user_id.clone(),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            session_id: session.id.clone(),
            now: now(),
        };
        match self.write(cmd).await.map_err(|e| DeviceRefusal::Failed(e.into()))? {
            Outcome::Applied => {}
            // Expired or decided meanwhile (maybe in another tab).
            Outcome::NotFound(_) | Outcome::Invalid(_) => return Err(DeviceRefusal::Unknown),
            other => {
                tracing::error!(?other, "device decision not recorded");
                return Err(DeviceRefusal::Failed(OAuthError::server_error()));
            }
        }
        if approve {
            self.touch_session(session, &prompt.client.app.name).await.map_err(DeviceRefusal::Failed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{display_user_code, new_user_code, normalize_user_code, USER_CODE_ALPHABET};

    #[test]
    fn user_codes_are_eight_unambiguous_letters_typed_any_way() {
        for _ in 0..200 {
            let code = new_user_code().expect("randomness");
            assert_eq!(code.len(), 8);
            assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)), "{code}");
            let shown = display_user_code(&code);
            assert_eq!(shown.len(), 9);
            assert_eq!(&shown[4..5], "-");
            assert_eq!(normalize_user_code(&shown).as_deref(), Some(code.as_str()));
            assert_eq!(normalize_user_code(&shown.to_lowercase()).as_deref(), Some(code.as_str()));
        }
        assert_eq!(normalize_user_code(" bcdf ghjk ").as_deref(), Some("BCDFGHJK"));
        for wrong in ["", "BCDF-GHJ", "BCDF-GHJKL", "BCDF-GHJ1", "ABCD-GHJK", "BCDF_GHJK", "BCDF-GHJÉ"] {
            assert_eq!(normalize_user_code(wrong), None, "{wrong}");
        }
    }
}
