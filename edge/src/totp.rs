//! TOTP (RFC 6238) codes, as Casdoor stores their secrets.
//!
//! Casdoor (COMPAT §9) keeps `user.totp_secret` in base32 and checks codes as the usual authenticator apps
//! make them: HMAC-SHA-1, 6 digits, a 30-second step from the Unix epoch, and one step of clock skew
//! either way. Unlike Casdoor, an empty or undecodable secret never verifies anything (COMPAT §11.12: it
//! checked SMS/e-mail MFA users' "OTP" against an empty key, a code anyone can compute).
//!
//! [`verify`] returns the time step that matched, so that the caller can refuse a second use of a code
//! (RFC 6238 §5.2: a verifier must not accept the second attempt of the same OTP).

use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

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
}
