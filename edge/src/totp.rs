//! TOTP (RFC 6238) codes, as Casdoor stores their secrets.
//!
//! Casdoor (COMPAT §9) keeps `user.totp_secret` in base32 and checks codes as the usual authenticator apps
//! make them: HMAC-SHA-1, 6 digits, a 30-second step from the Unix epoch, and one step of clock skew
//! either way. Unlike Casdoor, an empty or undecodable secret never verifies anything (COMPAT §11.12: it
//! checked SMS/e-mail MFA users' "OTP" against an empty key, a code anyone can compute).
//!
//! [`verify`] returns the time step that matched, so that the caller can refuse a second use of a code
//! (RFC 6238 §5.2: a verifier must not accept the second attempt of the same OTP).
//!
//! A secret never rests in clear: [`seal_credential`] seals it with the key-encryption key, bound to its
//! user (the user's id is the associated data, so a sealed secret opens only in its own record), and the
//! record ([`TotpCredential`]) keeps recovery codes only as SHA-256 digests. Casdoor's plain
//! `user.totp_secret` is turned into such a record wherever it comes in (the admin API, imports), and the
//! user record keeps it empty.

use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};
use hmac::{Hmac, KeyInit, Mac};
use jeton_raft::model::TotpCredential;
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::error::EdgeError;
use crate::keys::Kek;
use crate::secrets::sha256;

/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Seconds per time step (RFC 6238 §4.1, X).
pub const STEP_SECONDS: i64 = 30;
/// Steps of clock skew accepted before and after the current one.
pub const SKEW_STEPS: u64 = 1;

/// RFC 4648 base32 without padding. Unlike `data_encoding::BASE32_NOPAD` the unused low bits of the last
/// symbol need not be zero: Go's decoder (Casdoor's) does not check them either, so a secret Casdoor
/// accepts is accepted here.
static BASE32: LazyLock<Option<Encoding>> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    spec.check_trailing_bits = false;
    spec.encoding().ok()
});

/// HOTP (RFC 4226 §5.3) with HMAC-SHA-1: dynamic truncation of HMAC(secret, counter), then the last
/// `digits` decimal digits (1 to 9).
fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(&counter.to_be_bytes());
    let h: [u8; 20] = mac.finalize().into_bytes().into();
    let offset = usize::from(h[19] & 0x0f);
    let binary = u32::from_be_bytes([h[offset], h[offset + 1], h[offset + 2], h[offset + 3]]) & 0x7fff_ffff;
    binary % 10u32.pow(digits.clamp(1, 9))
}

/// The 6-digit code of time step `step` (Unix time / 30) for a decoded secret.
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    hotp(secret, step, DIGITS)
}

/// Decodes a base32 secret (RFC 4648 alphabet): case-insensitive, ASCII whitespace anywhere ignored (apps
/// show secrets in groups), `=` padding at the end optional. `None` when it is not base32 or decodes to
/// nothing.
pub fn decode_secret(base32: &str) -> Option<Vec<u8>> {
    let mut s: String = base32.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    while s.ends_with('=') {
        s.pop();
    }
    s.make_ascii_uppercase();
    let bytes = BASE32.as_ref()?.decode(s.as_bytes()).ok()?;
    (!bytes.is_empty()).then_some(bytes)
}

/// Checks a 6-digit `code` against a base32 secret at Unix time `now_unix`, over the current step and
/// one step either side, comparing in constant time and always computing all three. Returns the matched
/// step (the latest if several match); `None` for a wrong code, a code that is not exactly six ASCII
/// digits, an empty or invalid secret, or a time before the epoch.
pub fn verify(secret_base32: &str, code: &str, now_unix: i64) -> Option<u64> {
    let secret = decode_secret(secret_base32)?;
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = u64::try_from(now_unix).ok()?;
    let step = now / STEP_SECONDS as u64;
    let mut matched = None;
    for candidate in step.saturating_sub(SKEW_STEPS)..=step.saturating_add(SKEW_STEPS) {
        let expected = format!("{:0width$}", code_at(&secret, candidate), width = DIGITS as usize);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            matched = Some(candidate);
        }
    }
    matched
}

/// What a TOTP secret is sealed for (with the user's id: see [`seal_credential`]).
pub const TOTP_PURPOSE: &str = "jeton totp secret 1";

/// Random bytes of a secret made here: 160 bits, the HMAC-SHA-1 key length RFC 4226 §4 recommends (what
/// authenticator apps expect; 32 base32 characters).
pub const SECRET_BYTES: usize = 20;

/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// Symbols of recovery codes: base32 without the look-alikes 0/O and 1/I (5 bits each).
const RECOVERY_SYMBOLS: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Symbols per recovery code: 60 bits, in three groups of four.
const RECOVERY_LENGTH: usize = 12;

/// The associated data a user's secret is sealed under: the purpose and the user's id.
fn sealed_for(user_id: &str) -> String {
    format!("{TOTP_PURPOSE}\0{user_id}")
}

/// Base32 (RFC 4648, no padding) of `bytes`: how secrets are shown and stored.
pub fn encode_secret(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes)
}

/// A new random secret, base32.
pub fn new_secret() -> Result<String, EdgeError> {
    let mut raw = [0u8; SECRET_BYTES];
    getrandom::fill(&mut raw).map_err(|_| EdgeError::Crypto("no randomness".into()))?;
    Ok(encode_secret(&raw))
}

/// The secret as a user types it: the canonical base32 form (upper case, no spaces, no padding), or
/// `None` when it is not a usable secret (see [`decode_secret`]).
pub fn canonical_secret(base32: &str) -> Option<String> {
    decode_secret(base32).map(|b| encode_secret(&b))
}

/// A user's TOTP factor: `secret` (base32, checked) sealed for `user_id`, with the digests of
/// `recovery_codes` and the last time step already used (`last_step`: the code that proved the enrolment
/// cannot sign in afterwards).
pub fn seal_credential(
    kek: &Kek,
    user_id: &str,
    secret: &str,
    recovery_codes: &[String],
    last_step: i64,
    enrolled_at: i64,
) -> Result<TotpCredential, EdgeError> {
    let secret = canonical_secret(secret).ok_or_else(|| EdgeError::Crypto("a TOTP secret must be base32".into()))?;
    let sealed_secret = kek
        .seal(&sealed_for(user_id), secret.as_bytes())
        .map_err(|_| EdgeError::Crypto("sealing a TOTP secret failed".into()))?;
    Ok(TotpCredential {
        user_id: user_id.to_string(),
        sealed_secret,
        recovery_digests: recovery_codes.iter().map(|c| recovery_digest(c)).collect(),
        last_step,
        enrolled_at,
    })
}

/// The base32 secret sealed in `credential`.
pub fn open_secret(kek: &Kek, credential: &TotpCredential) -> Result<String, EdgeError> {
    let cannot = || EdgeError::Crypto("a TOTP secret does not open: another key-encryption key, or altered".into());
    let plain = kek.open(&sealed_for(&credential.user_id), &credential.sealed_secret).map_err(|_| cannot())?;
    String::from_utf8(plain).map_err(|_| cannot())
}

/// A recovery code as users type it: letters and digits only, upper-cased (dashes and spaces dropped).
pub fn normalize_recovery_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

/// What the state keeps of a recovery code: SHA-256 of its normalized form.
pub fn recovery_digest(code: &str) -> [u8; 32] {
    sha256(normalize_recovery_code(code).as_bytes())
}

/// New recovery codes, shown once: `XXXX-XXXX-XXXX`, 60 random bits each.
pub fn new_recovery_codes() -> Result<Vec<String>, EdgeError> {
    let mut raw = [0u8; RECOVERY_CODES * RECOVERY_LENGTH];
    getrandom::fill(&mut raw).map_err(|_| EdgeError::Crypto("no randomness".into()))?;
    Ok(raw
        .chunks(RECOVERY_LENGTH)
        .map(|chunk| {
            let symbols: Vec<char> = chunk.iter().map(|b| char::from(RECOVERY_SYMBOLS[usize::from(b & 31)])).collect();
            symbols.chunks(4).map(|g| g.iter().collect::<String>()).collect::<Vec<_>>().join("-")
        })
        .collect())
}

/// The `otpauth://` URI of Google Authenticator's key URI format, which authenticator apps read from a
/// QR code: the label `issuer:account`, and the parameters this verifier uses (SHA-1, 6 digits, 30 s).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

/// The secret in groups of four, as the enrolment page shows it for typing.
pub fn grouped(secret: &str) -> String {
    secret.as_bytes().chunks(4).map(|g| String::from_utf8_lossy(g).into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SHA-1 seed of RFC 6238 Appendix B, "12345678901234567890", and its base32 form.
    const SEED: &[u8] = b"12345678901234567890";
    const SEED_BASE32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn rfc6238_appendix_b_sha1() {
        for (time, expected) in [
            (59i64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            let step = (time / STEP_SECONDS) as u64;
            assert_eq!(hotp(SEED, step, 8), expected, "T = {time}");
            // Six digits are the last six of the eight (10^6 divides 10^8).
            assert_eq!(code_at(SEED, step), expected % 1_000_000, "T = {time}");
        }
    }

    #[test]
    fn rfc4226_appendix_d() {
        // HOTP values for counters 0..3 of the same seed (RFC 4226 Appendix D).
        for (counter, expected) in [(0u64, 755224u32), (1, 287082), (2, 359152), (3, 969429)] {
            assert_eq!(code_at(SEED, counter), expected);
        }
    }

    #[test]
    fn secrets() {
        assert_eq!(decode_secret(SEED_BASE32).as_deref(), Some(SEED));
        assert_eq!(decode_secret("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").as_deref(), Some(SEED));
        assert_eq!(decode_secret(" GEZDGNBVGY3TQOJQ\tGEZDGNBVGY3TQOJQ\n").as_deref(), Some(SEED));
        // Padding is optional: "MZXW6===" and "MZXW6" are both "foo" (RFC 4648 §10).
        assert_eq!(decode_secret("MZXW6===").as_deref(), Some(&b"foo"[..]));
        assert_eq!(decode_secret("mzxw6").as_deref(), Some(&b"foo"[..]));
        // Unused trailing bits set (Go's decoder accepts these too).
        assert_eq!(decode_secret("MZXW7").as_deref(), Some(&b"foo"[..]));
        for bad in ["", "   ", "====", "GEZD1", "GEZD8", "GEZ=DGNB", "A", "ABC", "ABCDEF", "GEZDGNBVÉ"] {
            assert_eq!(decode_secret(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn verify_window() {
        // Steps 1, 2, 3 of the seed have the codes 287082, 359152, 969429 (RFC 4226 Appendix D).
        let at_step_2 = 2 * 30 + 7;
        assert_eq!(verify(SEED_BASE32, "359152", at_step_2), Some(2));
        assert_eq!(verify(SEED_BASE32, "287082", at_step_2), Some(1), "one step behind");
        assert_eq!(verify(SEED_BASE32, "969429", at_step_2), Some(3), "one step ahead");
        assert_eq!(verify(SEED_BASE32, "755224", 3 * 30), None, "two steps behind");
        assert_eq!(verify(SEED_BASE32, "969429", 30), None, "two steps ahead");
        // Step 0 has no step before it.
        assert_eq!(verify(SEED_BASE32, "755224", 0), Some(0));
        assert_eq!(verify(SEED_BASE32, "287082", 29), Some(1));
        // RFC 6238 Appendix B at T = 1111111109: 07081804 → 081804.
        assert_eq!(verify(SEED_BASE32, "081804", 1111111109), Some(1111111109 / 30));
        assert_eq!(verify("gezdgnbvgy3tqojqgezdgnbvgy3tqojq", "081804", 1111111109), Some(37037036));
    }

    #[test]
    fn verify_refusals() {
        let now = 2 * 30;
        assert_eq!(verify(SEED_BASE32, "359153", now), None, "wrong code");
        assert_eq!(verify(SEED_BASE32, "35915", now), None, "five digits");
        assert_eq!(verify(SEED_BASE32, "3591520", now), None, "seven digits");
        assert_eq!(verify(SEED_BASE32, " 359152", now), None);
        assert_eq!(verify(SEED_BASE32, "359 152", now), None);
        assert_eq!(verify(SEED_BASE32, "+35915", now), None);
        assert_eq!(verify(SEED_BASE32, "３５９１５２", now), None, "fullwidth digits");
        assert_eq!(verify(SEED_BASE32, "", now), None);
        assert_eq!(verify(SEED_BASE32, "359152", -1), None, "before the epoch");
        assert_eq!(verify(SEED_BASE32, "359152", i64::MIN), None);
        assert_eq!(verify("not base32!", "359152", now), None);
        // An empty secret never verifies, even with the code an empty HMAC key gives (COMPAT §11.12).
        let empty_key_code = format!("{:06}", code_at(b"", 2));
        assert_eq!(verify("", &empty_key_code, now), None);
        assert_eq!(verify("====", &empty_key_code, now), None);
        // The far end of time does not overflow.
        let last = i64::MAX;
        let code = format!("{:06}", code_at(SEED, last as u64 / 30));
        assert_eq!(verify(SEED_BASE32, &code, last), Some(last as u64 / 30));
    }

    #[test]
    fn sealed_credentials_open_only_for_their_user() {
        let kek = Kek::from_hex(&"11".repeat(32)).expect("kek");
        let codes = new_recovery_codes().expect("codes");
        let c =
            seal_credential(&kek, "user-1", "gezd gnbv gy3t qojq gezd gnbv gy3t qojq", &codes, 7, 100).expect("seal");
        assert_eq!(open_secret(&kek, &c).expect("open"), SEED_BASE32, "kept in canonical form");
        assert!(!c.sealed_secret.windows(8).any(|w| w == &SEED_BASE32.as_bytes()[..8]), "not in clear");
        assert_eq!((c.last_step, c.enrolled_at, c.recovery_digests.len()), (7, 100, RECOVERY_CODES));
        // Moved into another user's record, the sealed secret does not open.
        let moved = TotpCredential { user_id: "user-2".into(), ..c.clone() };
        assert!(open_secret(&kek, &moved).is_err());
        let other_kek = Kek::from_hex(&"22".repeat(32)).expect("kek");
        assert!(open_secret(&other_kek, &c).is_err());
        assert!(seal_credential(&kek, "user-1", "not base32!", &[], 0, 0).is_err());
        // A recovery code works typed in lower case and without dashes.
        let typed = codes[3].to_lowercase().replace('-', " ");
        assert!(c.recovery_digests.contains(&recovery_digest(&typed)));
    }

    #[test]
    fn new_secrets_and_recovery_codes() {
        let a = new_secret().expect("secret");
        assert_eq!(decode_secret(&a).map(|b| b.len()), Some(SECRET_BYTES));
        assert_ne!(a, new_secret().expect("secret"));
        let codes = new_recovery_codes().expect("codes");
        assert_eq!(codes.len(), RECOVERY_CODES);
        for c in &codes {
            assert_eq!(c.len(), 14, "{c}");
            assert_eq!(normalize_recovery_code(c).len(), RECOVERY_LENGTH, "{c}");
            assert!(c.chars().all(|ch| ch == '-' || RECOVERY_SYMBOLS.contains(&(ch as u8))), "{c}");
        }
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());
        assert_eq!(grouped("ABCDEFGHIJ"), "ABCD EFGH IJ");
    }

    #[test]
    fn otpauth_uris() {
        assert_eq!(
            otpauth_uri("Acme Corp", "alice", "GEZDGNBV"),
            "otpauth://totp/Acme%20Corp:alice?secret=GEZDGNBV&issuer=Acme%20Corp&algorithm=SHA1&digits=6&period=30"
        );
        assert!(otpauth_uri("a&b", "x:y", "S").starts_with("otpauth://totp/a%26b:x%3Ay?secret=S&issuer=a%26b&"));
    }
}
