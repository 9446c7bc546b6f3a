//! Passkeys (WebAuthn, with webauthn-rs): registering one, signing in with one alone (a discoverable
//! credential names its user, so the login page asks for no username) or after a password (as second
//! factor), and the user's list of them.
//!
//! The relying party is the issuer: its host is the RP id and its origin the one origin an answer may come
//! from, so a credential made for another site, or an answer to a page of another origin, does not verify.
//! WebAuthn takes only a domain name as RP id: an issuer on an IP address has no passkeys. Changing the
//! issuer's host orphans every passkey (they are bound to the RP id).
//!
//! A ceremony spans two requests (the options, then the authenticator's answer) that may land on two
//! nodes: its state travels with the browser, sealed like the pending sign-in of the pages (see
//! [`crate::sessions`]), bound to the browser's CSRF cookie and to the user it is for, and short-lived.
//! Credentials are replicated [`Passkey`] records (webauthn-rs' credential as JSON). A sign-in writes
//! `UsePasskey` with the authenticator's new counter, which the state machine refuses when it did not go
//! up: a cloned authenticator, or the same answer replayed, loses on whichever node two sign-ins race.
//!
//! webauthn-rs' passkey ceremonies require user verification (the authenticator's PIN or biometric); what
//! a passkey sign-in proves is then two factors. The `amr` is still worked out from what the authenticator
//! reported ([`passkey_amr`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jeton_raft::model::{Passkey, User};
use jeton_raft::{Command, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey as Credential, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::clock::now;
use crate::error::OAuthError;
use crate::service::Edge;

/// What a registration ceremony's state is sealed for.
const REGISTRATION_PURPOSE: &str = "jeton passkey registration 1";
/// What a sign-in ceremony's state is sealed for.
const SIGN_IN_PURPOSE: &str = "jeton passkey sign-in 1";
/// How long a ceremony may take: the authenticator's own timeout (webauthn-rs asks for 5 minutes).
const CEREMONY_SECS: i64 = 300;
/// Passkeys a user may have: each is listed in every registration's exclude list, which travels sealed
/// in a form field of bounded size.
pub const MAX_PASSKEYS: usize = 20;
/// Longest name a user may give a passkey, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Namespace of the user handles of users whose id is not a UUID (imported ones may not be).
const USER_HANDLE_NAMESPACE: Uuid = Uuid::from_u128(0x6a65_746f_6e2d_7061_7373_6b65_7973_0001);

/// A ceremony's state while the browser carries it.
#[derive(Serialize, Deserialize)]
struct Ceremony<S> {
    /// webauthn-rs' state (its challenge, what the answer must satisfy).
    state: S,
    /// The user it is for: who registers, or who must show a passkey after their password; empty for a
    /// sign-in without a username.
    user_id: String,
    /// The CSRF cookie of the browser it was issued to.
    csrf: String,
    exp: i64,
}

/// Why a passkey was not accepted. The pages tell the user little of it (one message for all but
/// `Failed`); the reason goes to the log.
#[derive(Debug)]
pub enum PasskeyRefused {
    /// The ceremony's state is missing or expired, or was issued to another browser or for another user.
    Expired,
    /// The authenticator's answer does not verify: made for another origin or RP id, for another challenge,
    /// a bad signature, no user presence or verification, or not an answer at all.
    Invalid,
    /// No such passkey (removed, or never registered here), not the expected user's, or its user may not
    /// sign in to this application.
    Unknown,
    /// The authenticator's counter did not go up: a cloned authenticator, or an answer replayed.
    CounterNotIncreased,
    /// The credential is registered already (to this user or another).
    Registered,
    /// The user has [`MAX_PASSKEYS`] already.
    TooMany,
    /// On our side: the relying party is not configured (an issuer without a domain name), or a write
    /// failed.
    Failed(OAuthError),
}

impl From<OAuthError> for PasskeyRefused {
    fn from(e: OAuthError) -> Self {
        PasskeyRefused::Failed(e)
    }
}

impl From<jeton_raft::RaftError> for PasskeyRefused {
    fn from(e: jeton_raft::RaftError) -> Self {
        PasskeyRefused::Failed(e.into())
    }
}

impl From<crate::EdgeError> for PasskeyRefused {
    fn from(e: crate::EdgeError) -> Self {
        PasskeyRefused::Failed(e.into())
    }
}

/// Who a passkey sign-in may sign in.
pub enum PasskeyFor<'a> {
    /// Without a username: whoever the credential names, if they belong to this organization (the
    /// application's).
    Organization(&'a str),
    /// As second factor: this user, whose password was checked.
    User(&'a User),
}

/// A passkey sign-in that verified.
pub struct PasskeySignIn {
    pub user: User,
    /// The authenticator verified its user (PIN, biometric), not only their presence.
    pub user_verified: bool,
}

/// The `amr` (RFC 8176) of a sign-in that ends with a passkey, after the methods in `before` (`pwd` for a
/// second factor, nothing without a password): `hwk`, and `mfa` when the passkey is a second factor or
/// verified its user itself (something held and something known or been).
pub fn passkey_amr(before: &[String], user_verified: bool) -> Vec<String> {
    let mut amr = before.to_vec();
    let multi = !before.is_empty() || user_verified;
    for m in ["hwk", "mfa"] {
        if (m == "hwk" || multi) && !amr.iter().any(|a| a == m) {
            amr.push(m.to_string());
        }
    }
    amr
}

/// The user handle a user's passkeys carry (WebAuthn's `user.id`): their id when it is a UUID, else a
/// name-based UUID of it. Never the username, which can change and must not be stored in authenticators.
pub fn user_handle(user_id: &str) -> Uuid {
    Uuid::parse_str(user_id).unwrap_or_else(|_| Uuid::new_v5(&USER_HANDLE_NAMESPACE, user_id.as_bytes()))
}

/// A name a user gave a passkey, cleaned: control characters dropped, trimmed, at most
/// [`MAX_NAME_CHARS`]; `Passkey` when nothing is left.
pub fn passkey_name(name: &str) -> String {
    let cleaned: String = name.chars().filter(|c| !c.is_control()).collect();
    let cleaned: String = cleaned.trim().chars().take(MAX_NAME_CHARS).collect();
    if cleaned.trim().is_empty() {
        "Passkey".to_string()
    } else {
        cleaned.trim().to_string()
    }
}

/// Logs why webauthn-rs refused an answer (the user is told less) and maps it.
fn refused(what: &str, e: WebauthnError) -> PasskeyRefused {
    match e {
        WebauthnError::CredentialPossibleCompromise => {
            tracing::warn!("passkey {what}: the authenticator's counter did not go up");
            PasskeyRefused::CounterNotIncreased
        }
        other => {
            tracing::info!("passkey {what} refused: {other:?}");
            PasskeyRefused::Invalid
        }
    }
}

impl Edge {
    /// The relying party this cluster is: the issuer's host as RP id, its origin as the one origin.
    fn relying_party(&self) -> Result<Webauthn, PasskeyRefused> {
        let not_configured = |why: &str| {
            tracing::error!("passkeys: {why} (issuer {})", self.config.issuer);
            PasskeyRefused::Failed(OAuthError::server_error())
        };
        let issuer = Url::parse(&self.config.issuer).map_err(|_| not_configured("the issuer is not a URL"))?;
        let Some(rp_id) = issuer.domain() else {
            return Err(not_configured("WebAuthn needs a domain name as the issuer's host, not an IP address"));
        };
        let origin = Url::parse(&issuer.origin().ascii_serialization())
            .map_err(|_| not_configured("the issuer has no origin"))?;
        WebauthnBuilder::new(rp_id, &origin)
            .and_then(|b| b.rp_name(rp_id).build())
            .map_err(|e| not_configured(&format!("{e:?}")))
    }

    /// The origin passkey ceremonies run on (the issuer's, e.g. `https://id.example.com`): the one the
    /// browser's answers must name, and the pages' `Origin`.
    pub fn issuer_origin(&self) -> Option<String> {
        Url::parse(&self.config.issuer).ok().map(|u| u.origin().ascii_serialization())
    }

    fn seal_ceremony<S: Serialize>(
        &self,
        purpose: &str,
        state: S,
        user_id: &str,
        csrf_cookie: &str,
    ) -> Result<String, PasskeyRefused> {
        let ceremony =
            Ceremony { state, user_id: user_id.to_string(), csrf: csrf_cookie.to_string(), exp: now() + CEREMONY_SECS };
        Ok(self.seal_for_browser(purpose, &ceremony)?)
    }

    /// The state of a ceremony the browser brought back, if it is this browser's, for this user, and not
    /// expired.
    fn open_ceremony<S: serde::de::DeserializeOwned>(
        &self,
        purpose: &str,
        sealed: &str,
        user_id: &str,
        csrf_cookie: &str,
    ) -> Result<S, PasskeyRefused> {
        let ceremony: Ceremony<S> = self.open_from_browser(purpose, sealed).ok_or(PasskeyRefused::Expired)?;
        if ceremony.exp <= now()
            || ceremony.csrf.is_empty()
            || ceremony.csrf != csrf_cookie
            || ceremony.user_id != user_id
        {
            return Err(PasskeyRefused::Expired);
        }
        Ok(ceremony.state)
    }

    /// The passkeys of a user, oldest first.
    pub fn passkeys_of(&self, user_id: &str) -> Result<Vec<Passkey>, OAuthError> {
        let mut out = Vec::new();
        for p in self.store.passkeys_of(user_id) {
            out.push(p?.to_owned()?);
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.credential_id.cmp(&b.credential_id)));
        Ok(out)
    }

    /// Starts registering a passkey for `user` in the browser whose CSRF cookie is `csrf_cookie`: the
    /// options for `navigator.credentials.create` (`publicKey`) and the sealed state (`state`) to send back
    /// with the answer. The authenticator is asked for a discoverable credential (so it can sign in without
    /// a username) and to verify its user; the user's passkeys are excluded (no second registration of one
    /// authenticator).
    pub fn start_passkey_registration(&self, user: &User, csrf_cookie: &str) -> Result<Value, PasskeyRefused> {
        let existing = self.passkeys_of(&user.id)?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(PasskeyRefused::TooMany);
        }
        let exclude: Vec<Vec<u8>> =
            existing.iter().filter_map(|p| URL_SAFE_NO_PAD.decode(&p.credential_id).ok()).collect();
        let display = if user.display_name.trim().is_empty() { &user.name } else { &user.display_name };
        let (options, state) = self
            .relying_party()?
            .start_passkey_registration(user_handle(&user.id), &user.name, display, Some(exclude))
            .map_err(|e| refused("registration start", e))?;
        let sealed = self.seal_ceremony(REGISTRATION_PURPOSE, state, &user.id, csrf_cookie)?;
        let mut options = serde_json::to_value(&options).map_err(OAuthError::from)?;
        // webauthn-rs leaves residency to the authenticator ("discouraged"); a passkey that signs in
        // without a username must be discoverable. A hint only: the answer is verified the same either way.
        if let Some(selection) = options.pointer_mut("/publicKey/authenticatorSelection").and_then(Value::as_object_mut)
        {
            selection.insert("residentKey".into(), json!("required"));
            selection.insert("requireResidentKey".into(), json!(true));
        }
        options["state"] = json!(sealed);
        Ok(options)
    }

    /// Finishes a registration: `credential` is the browser's answer (the `PublicKeyCredential` of
    /// `navigator.credentials.create`, as JSON with base64url binaries), `state` what
    /// [`Edge::start_passkey_registration`] sealed. Stores the passkey under `name` (see [`passkey_name`]).
    pub async fn finish_passkey_registration(
        &self,
        user: &User,
        csrf_cookie: &str,
        state: &str,
        credential: &str,
        name: &str,
    ) -> Result<Passkey, PasskeyRefused> {
        let state: PasskeyRegistration = self.open_ceremony(REGISTRATION_PURPOSE, state, &user.id, csrf_cookie)?;
        let answer: RegisterPublicKeyCredential = serde_json::from_str(credential).map_err(|e| {
            tracing::info!("passkey registration: not a credential: {e}");
            PasskeyRefused::Invalid
        })?;
        let created = self
            .relying_party()?
            .finish_passkey_registration(&answer, &state)
            .map_err(|e| refused("registration", e))?;
        if self.passkeys_of(&user.id)?.len() >= MAX_PASSKEYS {
            return Err(PasskeyRefused::TooMany);
        }
        let stored = serde_json::to_value(&created).map_err(OAuthError::from)?;
        // The counter the authenticator started at (webauthn-rs keeps it inside its credential).
        let sign_count =
            stored.pointer("/cred/counter").and_then(Value::as_u64).and_then(|c| u32::try_from(c).ok()).unwrap_or(0);
        let at = now();
        let passkey = Passkey {
            user_id: user.id.clone(),
            credential_id: URL_SAFE_NO_PAD.encode(created.cred_id()),
            name: passkey_name(name),
            credential: stored.to_string(),
            sign_count,
            created_at: at,
            last_used_at: 0,
        };
        match self.write(Command::PutPasskey { passkey: passkey.clone() }).await? {
            Outcome::Applied => Ok(passkey),
            Outcome::Conflict(_) => Err(PasskeyRefused::Registered),
            Outcome::NotFound(_) => Err(PasskeyRefused::Unknown),
            other => {
                tracing::warn!(?other, "passkey not stored");
                Err(PasskeyRefused::Invalid)
            }
        }
    }

    /// Starts a passkey sign-in: the options for `navigator.credentials.get` (`publicKey`) and the sealed
    /// state (`state`). Without a user it asks for any discoverable credential of this RP (sign-in without
    /// a username); with one, for one of their passkeys (second factor).
    pub fn start_passkey_sign_in(&self, user: Option<&User>, csrf_cookie: &str) -> Result<Value, PasskeyRefused> {
        let allowed = match user {
            Some(u) => {
                let mine = self.passkeys_of(&u.id)?;
                if mine.is_empty() {
                    return Err(PasskeyRefused::Unknown);
                }
                mine.into_iter().map(|p| json!({"type": "public-key", "id": p.credential_id})).collect()
            }
            None => Vec::new(),
        };
        let (options, state) =
            self.relying_party()?.start_discoverable_authentication().map_err(|e| refused("sign-in start", e))?;
        let sealed = self.seal_ceremony(SIGN_IN_PURPOSE, state, user.map_or("", |u| u.id.as_str()), csrf_cookie)?;
        let mut options = serde_json::to_value(&options).map_err(OAuthError::from)?;
        if let Some(o) = options.as_object_mut() {
            // webauthn-rs asks for the username field's autofill ("conditional"); the pages ask on a button
            // press instead, the browser's own dialog.
            o.remove("mediation");
        }
        if !allowed.is_empty() {
            options["publicKey"]["allowCredentials"] = Value::Array(allowed);
        }
        options["state"] = json!(sealed);
        Ok(options)
    }

    /// Finishes a passkey sign-in: checks the answer (`credential`, the `PublicKeyCredential` of
    /// `navigator.credentials.get` as JSON) against the sealed `state` and the stored passkey, then records
    /// its use with the authenticator's new counter (refused, cluster-wide, when it did not go up).
    pub async fn finish_passkey_sign_in(
        &self,
        who: PasskeyFor<'_>,
        csrf_cookie: &str,
        state: &str,
        credential: &str,
    ) -> Result<PasskeySignIn, PasskeyRefused> {
        let expected_user = match &who {
            PasskeyFor::User(u) => u.id.as_str(),
            PasskeyFor::Organization(_) => "",
        };
        let state: DiscoverableAuthentication =
            self.open_ceremony(SIGN_IN_PURPOSE, state, expected_user, csrf_cookie)?;
        let answer: PublicKeyCredential = serde_json::from_str(credential).map_err(|e| {
            tracing::info!("passkey sign-in: not a credential: {e}");
            PasskeyRefused::Invalid
        })?;
        let rp = self.relying_party()?;
        let credential_id = URL_SAFE_NO_PAD.encode(answer.get_credential_id());
        let record = self.store.passkey_by_credential(&credential_id)?.ok_or(PasskeyRefused::Unknown)?.to_owned()?;
        let user = match who {
            PasskeyFor::User(u) if record.user_id == u.id => u.clone(),
            PasskeyFor::User(_) => return Err(PasskeyRefused::Unknown),
            PasskeyFor::Organization(org) => {
                // Without a username, the authenticator names the user: it must name the passkey's owner.
                let (handle, _) =
                    rp.identify_discoverable_authentication(&answer).map_err(|e| refused("sign-in", e))?;
                if handle != user_handle(&record.user_id) {
                    tracing::info!("passkey sign-in: the user handle is not the passkey's user's");
                    return Err(PasskeyRefused::Unknown);
                }
                let user = self.store.user_by_id(&record.user_id)?.ok_or(PasskeyRefused::Unknown)?.to_owned()?;
                if user.owner != org {
                    return Err(PasskeyRefused::Unknown);
                }
                user
            }
        };
        if crate::passwords::may_sign_in(&user).is_err() {
            return Err(PasskeyRefused::Unknown);
        }
        let mut stored: Credential = serde_json::from_str(&record.credential).map_err(OAuthError::from)?;
        let result =
            rp.finish_discoverable_authentication_v2(&answer, state, &stored).map_err(|e| refused("sign-in", e))?;
        stored.update_credential(&result);
        let credential = serde_json::to_string(&stored).map_err(OAuthError::from)?;
        let used = Command::UsePasskey {
            user_id: user.id.clone(),
            credential_id,
            sign_count: result.counter(),
            credential,
            at: now(),
        };
        match self.write(used).await? {
            Outcome::Applied => Ok(PasskeySignIn { user, user_verified: result.user_verified() }),
            Outcome::Invalid(why) => {
                tracing::warn!("passkey sign-in refused: {why}");
                Err(PasskeyRefused::CounterNotIncreased)
            }
            Outcome::NotFound(_) => Err(PasskeyRefused::Unknown),
            other => {
                tracing::warn!(?other, "passkey use not recorded");
                Err(PasskeyRefused::Invalid)
            }
        }
    }

    /// Removes a passkey of a user; `false` when they have none of that id.
    pub async fn remove_passkey(&self, user_id: &str, credential_id: &str) -> Result<bool, OAuthError> {
        let cmd = Command::DeletePasskey { user_id: user_id.to_string(), credential_id: credential_id.to_string() };
        match self.write(cmd).await? {
            Outcome::Applied => Ok(true),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amr_of_passkey_sign_ins() {
        assert_eq!(passkey_amr(&[], true), ["hwk", "mfa"]);
        assert_eq!(passkey_amr(&[], false), ["hwk"]);
        assert_eq!(passkey_amr(&["pwd".to_string()], false), ["pwd", "hwk", "mfa"]);
        assert_eq!(passkey_amr(&["pwd".to_string()], true), ["pwd", "hwk", "mfa"]);
    }

    #[test]
    fn user_handles_are_stable_uuids() {
        let id = "0b6f0a8e-3c3e-4d55-9a38-2a4b0f0e7c11";
        assert_eq!(user_handle(id).to_string(), id, "a UUID id is its own handle");
        assert_eq!(user_handle("imported-42"), user_handle("imported-42"));
        assert_ne!(user_handle("imported-42"), user_handle("imported-43"));
    }

    #[test]
    fn passkey_names_are_cleaned() {
        assert_eq!(passkey_name("  Laptop\u{0}  "), "Laptop");
        assert_eq!(passkey_name(" \t\n"), "Passkey");
        assert_eq!(passkey_name(&"x".repeat(100)).chars().count(), MAX_NAME_CHARS);
    }
}
