//! Second factors of browser sign-in: TOTP codes (RFC 6238) and recovery codes.
//!
//! A TOTP secret is kept sealed with the key-encryption key (like private keys) in the user's
//! [`TotpCredential`]; a code is accepted once cluster-wide (`UseTotpStep` refuses its step, or an earlier
//! one, the second time), and a recovery code once (`UseRecoveryCode`). Wrong codes count against the
//! account like wrong passwords (the same lockout).

use jeton_raft::model::{TotpCredential, User};
use jeton_raft::{Command, Outcome};

use crate::clock::now;
use crate::error::OAuthError;
use crate::secrets::sha256;
use crate::service::Edge;

/// What a TOTP secret is sealed for.
pub const TOTP_PURPOSE: &str = "jeton totp secret 1";

/// A recovery code as users type it: letters and digits only, upper-cased (dashes and spaces dropped).
pub fn normalize_recovery_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

impl Edge {
    /// The user's TOTP secret (base32), opened.
    pub fn totp_secret(&self, credential: &TotpCredential) -> Result<String, OAuthError> {
        let plain = self.kek.open(TOTP_PURPOSE, &credential.sealed_secret)?;
        String::from_utf8(plain).map_err(|_| OAuthError::server_error())
    }

    /// Checks a second-factor code of `user`: a TOTP code of the current step (±1) not used before, or an
    /// unused recovery code. `Ok(false)` for a wrong or replayed code.
    pub async fn check_second_factor(&self, user: &User, code: &str) -> Result<bool, OAuthError> {
        let Some(record) = self.store.totp(&user.id)? else {
            return Ok(false);
        };
        let credential = record.to_owned()?;
        let code = code.trim();
        if code.len() == crate::totp::DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit()) {
            let secret = self.totp_secret(&credential)?;
            let Some(step) = crate::totp::verify(&secret, code, now()) else {
                return Ok(false);
            };
            let step = i64::try_from(step).unwrap_or(i64::MAX);
            return match self.write(Command::UseTotpStep { user_id: user.id.clone(), step }).await? {
                Outcome::Applied => Ok(true),
                _ => Ok(false),
            };
        }
        let normalized = normalize_recovery_code(code);
        if normalized.len() < 8 {
            return Ok(false);
        }
        let digest = sha256(normalized.as_bytes());
        match self.write(Command::UseRecoveryCode { user_id: user.id.clone(), digest }).await? {
            Outcome::Applied => Ok(true),
            _ => Ok(false),
        }
    }
}
