//! Second factors: TOTP codes (RFC 6238) and recovery codes, for browser sign-in and RADIUS; enrolling and
//! removing a user's factor; whether a user must have one.
//!
//! A TOTP secret is kept sealed with the key-encryption key (like private keys) in the user's
//! [`TotpCredential`] (see [`crate::totp`]); a code is accepted once cluster-wide (`UseTotpStep` refuses its
//! step, or an earlier one, the second time), and a recovery code once (`UseRecoveryCode`).
//!
//! Wrong codes count against the account like wrong passwords: every check is an attempt of the password
//! service's lockout ([`Passwords::verify_second_factor`]), on the same account, so password guesses and
//! code guesses share one limit. Whether a code is right is decided on this node before anything is
//! written, so a wrong one is counted before the request could be abandoned; only a right one waits for
//! the write that uses it up.
//!
//! [`Passwords::verify_second_factor`]: crate::passwords::Passwords::verify_second_factor

use std::net::IpAddr;

use jeton_raft::model::{TotpCredential, User};
use jeton_raft::{Command, Outcome, PutMode};

use crate::clock::{now, rfc3339_now};
use crate::error::{EdgeError, OAuthError};
use crate::passwords::{LockoutRule, Refused};
use crate::service::Edge;

pub use crate::totp::{normalize_recovery_code, TOTP_PURPOSE};

/// Casdoor's `preferred_mfa_type` of an authenticator app (TOTP).
pub const APP_MFA_TYPE: &str = "app";

/// Which codes a check takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Codes {
    /// A TOTP code or a recovery code (browser sign-in).
    TotpOrRecovery,
    /// Only a TOTP code (RADIUS: a recovery code is for a person at a sign-in page, not for a NAS).
    TotpOnly,
}

/// What a presented code turned out to be, decided on this node.
enum Presented {
    /// A right TOTP code of this (unused) time step.
    Step(i64),
    /// One of the user's unused recovery codes (its digest).
    Recovery([u8; 32]),
    Wrong,
}

/// A user's TOTP factor as the account page shows it.
pub struct TotpStatus {
    pub enrolled_at: i64,
    pub recovery_codes_left: usize,
}

/// What enrolling a factor gives the user, once.
pub struct Enrolled {
    pub recovery_codes: Vec<String>,
}

impl Edge {
    /// The user's TOTP secret (base32), opened.
    pub fn totp_secret(&self, credential: &TotpCredential) -> Result<String, OAuthError> {
        Ok(crate::totp::open_secret(&self.kek, credential)?)
    }

    /// The user's TOTP factor, if they have one.
    pub fn totp_credential(&self, user_id: &str) -> Result<Option<TotpCredential>, EdgeError> {
        match self.store.totp(user_id)? {
            Some(r) => Ok(Some(r.to_owned()?)),
            None => Ok(None),
        }
    }

    /// Whether `user` must sign in with a second factor: their organization requires MFA (`requireMfa`), or
    /// they turned MFA on (Casdoor's `preferredMfaType` is set). Such a user without a TOTP factor enrols
    /// one during sign-in (TOTP is the one factor the pages can ask for).
    pub fn mfa_required(&self, user: &User) -> Result<bool, EdgeError> {
        if !user.preferred_mfa_type.is_empty() {
            return Ok(true);
        }
        Ok(self.store.organization(&user.owner)?.is_some_and(|o| o.get().require_mfa))
    }

    /// Checks a second-factor code of `user` as an attempt on their account (lockout, and the per-address
    /// limit for `client_ip`): a TOTP code of the current step (±1) newer than the last one used, or (with
    /// [`Codes::TotpOrRecovery`]) an unused recovery code. `Err(Refused::Invalid)` for a wrong, replayed
    /// or already used code; `Locked` / `RateLimited` when too many came wrong.
    pub async fn check_second_factor(
        &self,
        user: &User,
        code: &str,
        codes: Codes,
        client_ip: Option<IpAddr>,
        lockout: LockoutRule,
    ) -> Result<(), Refused> {
        let credential = self.totp_credential(&user.id)?;
        let check = async {
            let Some(credential) = credential else { return Ok(false) };
            let write = match self.judge(&credential, code, codes)? {
                Presented::Wrong => return Ok(false),
                Presented::Step(step) => Command::UseTotpStep { user_id: user.id.clone(), step },
                Presented::Recovery(digest) => Command::UseRecoveryCode { user_id: user.id.clone(), digest },
            };
            // Another request may have used the same code (or step) a moment before: then this one lost.
            Ok(self.write(write).await? == Outcome::Applied)
        };
        self.passwords.verify_second_factor(user, client_ip, lockout, check).await
    }

    /// Decides what `code` is against `credential`, without writing anything.
    fn judge(&self, credential: &TotpCredential, code: &str, codes: Codes) -> Result<Presented, EdgeError> {
        let code = code.trim();
        if code.len() == crate::totp::DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit()) {
            let secret = crate::totp::open_secret(&self.kek, credential)?;
            return Ok(match crate::totp::verify(&secret, code, now()) {
                Some(step) => {
                    let step = i64::try_from(step).unwrap_or(i64::MAX);
                    // RFC 6238 §5.2: a code of a step already used (or an earlier one) is a replay.
                    if step > credential.last_step {
                        Presented::Step(step)
                    } else {
                        Presented::Wrong
                    }
                }
                None => Presented::Wrong,
            });
        }
        if codes == Codes::TotpOnly {
            return Ok(Presented::Wrong);
        }
        let normalized = normalize_recovery_code(code);
        if normalized.len() < 8 {
            return Ok(Presented::Wrong);
        }
        let digest = crate::totp::recovery_digest(&normalized);
        Ok(if credential.recovery_digests.contains(&digest) { Presented::Recovery(digest) } else { Presented::Wrong })
    }

    /// The account page's view of the user's factor.
    pub fn totp_status(&self, user_id: &str) -> Result<Option<TotpStatus>, EdgeError> {
        Ok(self
            .totp_credential(user_id)?
            .map(|c| TotpStatus { enrolled_at: c.enrolled_at, recovery_codes_left: c.recovery_digests.len() }))
    }

    /// Enrols `secret` (base32) as `user`'s TOTP factor once they proved they hold it: `code` must be its
    /// code of now (±1 step). The step of that code counts as used. Replaces a factor they had; makes new
    /// recovery codes; turns MFA on in the user record (Casdoor's `preferredMfaType` `app`) if it was off.
    /// `Ok(None)` for a wrong code.
    pub async fn enrol_totp(&self, user: &User, secret: &str, code: &str) -> Result<Option<Enrolled>, EdgeError> {
        let Some(step) = crate::totp::verify(secret, code.trim(), now()) else {
            return Ok(None);
        };
        let recovery_codes = crate::totp::new_recovery_codes()?;
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let credential = crate::totp::seal_credential(&self.kek, &user.id, secret, &recovery_codes, step, now())?;
        self.put_totp(user, credential).await?;
        Ok(Some(Enrolled { recovery_codes }))
    }

    /// Stores `credential` as `user`'s factor, and turns MFA on in their record if it is off.
    pub async fn put_totp(&self, user: &User, credential: TotpCredential) -> Result<(), EdgeError> {
        match self.write(Command::PutTotp { credential }).await? {
            Outcome::Applied => {}
            other => return Err(EdgeError::Unexpected(format!("the TOTP factor was not stored: {other:?}"))),
        }
        if user.preferred_mfa_type.is_empty() {
            self.set_preferred_mfa_type(user, APP_MFA_TYPE).await?;
        }
        Ok(())
    }

    /// Removes `user`'s TOTP factor (the user on the account page, or an administrator resetting it), and
    /// turns MFA off in their record where it named the app. Whether there was one.
    pub async fn remove_totp(&self, user: &User) -> Result<bool, EdgeError> {
        let removed = match self.write(Command::DeleteTotp { user_id: user.id.clone() }).await? {
            Outcome::Applied => true,
            Outcome::NotFound(_) => false,
            other => return Err(EdgeError::Unexpected(format!("the TOTP factor was not removed: {other:?}"))),
        };
        if user.preferred_mfa_type == APP_MFA_TYPE {
            self.set_preferred_mfa_type(user, "").await?;
        }
        Ok(removed)
    }

    /// Resets `user`'s second factors (an administrator's `delete-mfa`, Casdoor's way): the TOTP factor is
    /// removed and MFA turned off, whichever type it named.
    pub async fn reset_mfa(&self, user: &User) -> Result<(), EdgeError> {
        self.remove_totp(user).await?;
        self.set_preferred_mfa_type(user, "").await
    }

    /// Writes the user record again with another `preferredMfaType` (read afresh, so a change made since
    /// `user` was read is kept).
    async fn set_preferred_mfa_type(&self, user: &User, mfa_type: &str) -> Result<(), EdgeError> {
        let Some(current) = self.store.user(&user.owner, &user.name)? else {
            return Ok(());
        };
        let mut current = current.to_owned()?;
        if current.id != user.id || current.preferred_mfa_type == mfa_type {
            return Ok(());
        }
        current.preferred_mfa_type = mfa_type.to_string();
        current.updated_time = rfc3339_now();
        match self.write(Command::PutUser { user: current, mode: PutMode::Update }).await? {
            Outcome::Applied => Ok(()),
            other => Err(EdgeError::Unexpected(format!("the user's MFA type was not written: {other:?}"))),
        }
    }
}
