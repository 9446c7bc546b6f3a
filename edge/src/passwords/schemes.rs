//! The eight Casdoor password schemes (COMPAT §4), so imported users keep their passwords, and the check
//! of §4.2 without Casdoor's "pass the hash" master-password defect (§11.4): the master password is checked
//! only with the organization's scheme and salt (§4.3), never with the user's.
//!
//! Every comparison of secrets is constant-time. Stored values come from an import and may be hostile or
//! broken: a malformed value never panics, it just does not verify. The cost of one check is capped
//! ([`work`]): a stored hash over the cap is refused where it is set (admin API, import) and never run, so
//! a stored hash cannot make one check run for minutes or allocate gigabytes.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The eight Casdoor password schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Plain,
    /// SHA-256 of the hex SHA-256 plus salt.
    Salt,
    Sha512Salt,
    Md5Salt,
    Bcrypt,
    Argon2id,
    /// Keycloak's PBKDF2-HMAC-SHA256, 27500 iterations, 64-byte key, base64 salt.
    Pbkdf2Salt,
    /// Django's `pbkdf2_sha256$iter$salt$hash`.
    Pbkdf2Django,
}

impl Scheme {
    /// Every scheme, in the order of the enum.
    pub const ALL: [Scheme; 8] = [
        Scheme::Plain,
        Scheme::Salt,
        Scheme::Sha512Salt,
        Scheme::Md5Salt,
        Scheme::Bcrypt,
        Scheme::Argon2id,
        Scheme::Pbkdf2Salt,
        Scheme::Pbkdf2Django,
    ];

    /// Exactly Casdoor's names; anything else (including empty) is unsupported.
    pub fn parse(s: &str) -> Option<Scheme> {
        Some(match s {
            "plain" => Scheme::Plain,
            "salt" => Scheme::Salt,
            "sha512-salt" => Scheme::Sha512Salt,
            "md5-salt" => Scheme::Md5Salt,
            "bcrypt" => Scheme::Bcrypt,
            "argon2id" => Scheme::Argon2id,
            "pbkdf2-salt" => Scheme::Pbkdf2Salt,
            "pbkdf2-django" => Scheme::Pbkdf2Django,
            _ => return None,
        })
    }

    /// Whether the scheme ignores the salt argument of VERIFY (its salt is inside the stored value, or it
    /// has none): checked once, not once per salt.
    pub fn salt_inside(self) -> bool {
        matches!(self, Scheme::Plain | Scheme::Bcrypt | Scheme::Argon2id | Scheme::Pbkdf2Django)
    }

    /// Whether checking a password takes a few microseconds (one or two plain digests): such a check runs
    /// where it is asked for, without a hop to a blocking thread that would cost more than the check.
    pub fn is_fast(self) -> bool {
        matches!(self, Scheme::Plain | Scheme::Salt | Scheme::Sha512Salt | Scheme::Md5Salt)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Plain => "plain",
            Scheme::Salt => "salt",
            Scheme::Sha512Salt => "sha512-salt",
            Scheme::Md5Salt => "md5-salt",
            Scheme::Bcrypt => "bcrypt",
            Scheme::Argon2id => "argon2id",
            Scheme::Pbkdf2Salt => "pbkdf2-salt",
            Scheme::Pbkdf2Django => "pbkdf2-django",
        }
    }
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    /// Casdoor silently stores an empty password here (§11.6); we refuse instead.
    #[error("bcrypt passwords are limited to 72 bytes")]
    TooLongForBcrypt,
    #[error("hashing failed: {0}")]
    Hashing(String),
}

/// Most PBKDF2 iterations a stored Django hash may ask for (Django's default today is 870,000; 10 M is
/// about 1 s here).
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Highest bcrypt cost a stored hash may have (cost 16 is about 3 s here; PHP writes 10–12).
pub const MAX_BCRYPT_COST: u32 = 16;
/// Most work one argon2 check may cost: memory (KiB) × passes, i.e. 256 MiB·passes.
///
/// Argon2's time is proportional to memory × passes (lanes run one after the other here), so this caps
/// both the time of one check (about 0.2 s on the 2-core VM, the order of a bcrypt cost-12 check) and, with
/// one pass, its memory (256 MiB). It admits every common writer's default: Casdoor 64 MiB × 1, OWASP's
/// 19 MiB × 2 / 46 MiB × 1, argon2-cffi and RFC 9106's second recommendation 64 MiB × 3, Django
/// 100 MiB × 2, PHP 64 MiB × 4 (exactly the cap). It refuses RFC 9106's first recommendation (2 GiB × 1),
/// which is meant for a machine that derives one key, not a server answering logins.
pub const MAX_ARGON2_COST: u64 = 256 * 1024;
const MAX_ARGON2_LANES: u32 = 64;
/// Memory (KiB) a check of any scheme but argon2 is counted for against the memory budget of the checks
/// running at once: bcrypt's state is 4 KiB, the rest is the blocking thread it runs on.
pub const SMALL_CHECK_KIB: u32 = 1024;
/// Memory (KiB) of hashing a new password with argon2id the way Casdoor writes it (m=65536).
const NEW_ARGON2_KIB: u32 = 65_536;

/// Why a stored hash is refused: checking it would cost more than one check may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooCostly {
    #[error(
        "argon2 m={memory_kib} KiB × t={passes} is {} KiB·passes, over the cap of {MAX_ARGON2_COST} (256 MiB·passes)",
        *memory_kib as u64 * *passes as u64
    )]
    Argon2 { memory_kib: u32, passes: u32 },
    #[error("argon2 p={0} lanes is over the cap of {MAX_ARGON2_LANES}")]
    Argon2Lanes(u32),
    #[error("bcrypt cost {0} is over the cap of {MAX_BCRYPT_COST}")]
    Bcrypt(u32),
    #[error("pbkdf2 with {0} iterations is over the cap of {MAX_PBKDF2_ITERATIONS}")]
    Pbkdf2(u32),
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `hex(H(hex(H(pw)) + salt))`, or `hex(H(pw))` when the salt is empty.
fn salted_hex<D: Digest>(password: &str, salt: &str) -> String {
    salted_hex_digest::<D>(password, salt).as_str().to_string()
}

/// Lower-case hex of a digest (SHA-512's at most), kept on the stack: checks run on every bind.
struct HexDigest {
    buf: [u8; 128],
    len: usize,
}

impl HexDigest {
    fn of(digest: &[u8]) -> HexDigest {
        let digest = &digest[..digest.len().min(64)];
        let mut out = HexDigest { buf: [0; 128], len: 2 * digest.len() };
        // Fails only when the lengths disagree, which they cannot here.
        let _ = hex::encode_to_slice(digest, &mut out.buf[..out.len]);
        out
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn as_str(&self) -> &str {
        // Only hex digits were written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// [`salted_hex`] without allocating: `hex(D(hex(D(password)) + salt))`, or `hex(D(password))` unsalted.
fn salted_hex_digest<D: Digest>(password: &str, salt: &str) -> HexDigest {
    let inner = HexDigest::of(&D::digest(password.as_bytes()));
    if salt.is_empty() {
        return inner;
    }
    HexDigest::of(&D::new().chain_update(inner.as_bytes()).chain_update(salt.as_bytes()).finalize())
}

/// VERIFY of the salted hex schemes: with an empty salt the legacy double hash is accepted too.
fn verify_salted_hex<D: Digest>(password: &str, stored: &str, salt: &str) -> bool {
    let expected = salted_hex_digest::<D>(password, salt);
    if ct_eq(expected.as_bytes(), stored.as_bytes()) {
        return true;
    }
    if salt.is_empty() {
        let legacy = HexDigest::of(&D::digest(expected.as_bytes()));
        return ct_eq(legacy.as_bytes(), stored.as_bytes());
    }
    false
}

/// Casdoor's lenient base64 decoding of a pbkdf2-salt salt (COMPAT §4.4, SALTBYTES): decode 4-character
/// groups until one has a character outside the alphabet (dropped), a final short group (dropped), or a
/// correctly padded group (its 1 or 2 bytes kept, then stop).
fn salt_bytes(salt: &str) -> Vec<u8> {
    let chars: Vec<u8> = salt.bytes().filter(|c| *c != b'\r' && *c != b'\n').collect();
    let value = |c: u8| -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    };
    let mut out = Vec::new();
    for group in chars.chunks(4) {
        if group.len() < 4 {
            break;
        }
        match (value(group[0]), value(group[1]), group[2], group[3]) {
            (Some(a), Some(b), b'=', b'=') => {
                out.push(a << 2 | b >> 4);
                break;
            }
            (Some(a), Some(b), c, b'=') => match value(c) {
                Some(c) => {
                    out.push(a << 2 | b >> 4);
                    out.push(b << 4 | c >> 2);
                    break;
                }
                None => break,
            },
            (Some(a), Some(b), c, d) => match (value(c), value(d)) {
                (Some(c), Some(d)) => {
                    out.push(a << 2 | b >> 4);
                    out.push(b << 4 | c >> 2);
                    out.push(c << 6 | d);
                }
                _ => break,
            },
            _ => break,
        }
    }
    out
}

fn pbkdf2_sha256(password: &str, salt: &[u8], iterations: u32, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// A stored argon2id hash, `$argon2id$v=19$m=..,t=..,p=..$salt$key`, split up (salt and key still base64).
struct Argon2Hash<'a> {
    memory_kib: u32,
    passes: u32,
    lanes: u32,
    salt: &'a str,
    key: &'a str,
}

impl<'a> Argon2Hash<'a> {
    /// `None` for anything malformed (it never verifies).
    fn parse(stored: &'a str) -> Option<Argon2Hash<'a>> {
        let mut parts = stored.split('$');
        let ("", "argon2id", "v=19", params, salt, key, None) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next())
        else {
            return None;
        };
        let (mut m, mut t, mut p) = (None, None, None);
        for kv in params.split(',') {
            match kv.split_once('=') {
                Some(("m", v)) => m = v.parse::<u32>().ok(),
                Some(("t", v)) => t = v.parse::<u32>().ok(),
                Some(("p", v)) => p = v.parse::<u32>().ok(),
                _ => return None,
            }
        }
        Some(Argon2Hash { memory_kib: m?, passes: t?, lanes: p?, salt, key })
    }

    /// The memory (KiB) checking it takes, or why it is over the cap.
    fn work(&self) -> Result<u32, TooCostly> {
        if self.lanes > MAX_ARGON2_LANES {
            return Err(TooCostly::Argon2Lanes(self.lanes));
        }
        if self.memory_kib as u64 * self.passes as u64 > MAX_ARGON2_COST {
            return Err(TooCostly::Argon2 { memory_kib: self.memory_kib, passes: self.passes });
        }
        // Parameters argon2 refuses (no pass, no lane, less than 8 KiB a lane) never run: such a value costs
        // as little as any malformed one, whatever memory it names.
        if argon2::Params::new(self.memory_kib, self.passes, self.lanes, None).is_err() {
            return Ok(SMALL_CHECK_KIB);
        }
        Ok(self.memory_kib.max(SMALL_CHECK_KIB))
    }
}

/// Recomputes an argon2id hash (never one over the cost cap).
fn verify_argon2id(password: &str, stored: &str) -> bool {
    let Some(h) = Argon2Hash::parse(stored) else {
        return false;
    };
    if h.work().is_err() {
        return false;
    }
    let (Ok(salt), Ok(key)) = (STANDARD_NO_PAD.decode(h.salt), STANDARD_NO_PAD.decode(h.key)) else {
        return false;
    };
    let Ok(params) = argon2::Params::new(h.memory_kib, h.passes, h.lanes, Some(key.len())) else {
        return false;
    };
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = vec![0u8; key.len()];
    #[cfg(test)]
    tests::ARGON2_RUNS.with(|n| n.set(n.get() + 1));
    argon.hash_password_into(password.as_bytes(), &salt, &mut out).is_ok() && ct_eq(&out, &key)
}

/// `pbkdf2_sha256$iter$salt$hash` split up; `None` for anything malformed.
fn parse_django(stored: &str) -> Option<(u32, &str, &str)> {
    let mut parts = stored.split('$');
    let ("pbkdf2_sha256", iterations, salt, hash, None) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next())
    else {
        return None;
    };
    Some((iterations.parse::<u32>().ok()?, salt, hash))
}

fn verify_django(password: &str, stored: &str) -> bool {
    let Some((iterations, salt, hash)) = parse_django(stored) else {
        return false;
    };
    if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
        return false;
    }
    let computed = STANDARD.encode(pbkdf2_sha256(password, salt.as_bytes(), iterations, 32));
    ct_eq(computed.as_bytes(), hash.as_bytes())
}

/// The cost of a stored bcrypt hash (`$2a$10$…`); `None` when it has none.
fn bcrypt_cost(stored: &str) -> Option<u32> {
    let rest = stored.strip_prefix("$2")?;
    let rest = rest.trim_start_matches(['a', 'b', 'y']).strip_prefix('$')?;
    rest.get(..2)?.parse().ok()
}

fn verify_bcrypt(password: &str, stored: &str) -> bool {
    // Go accepts `$2$`; the bcrypt crate knows the same algorithm as `$2a$`.
    let normalized;
    let stored = match stored.strip_prefix("$2$") {
        Some(rest) => {
            normalized = format!("$2a${rest}");
            normalized.as_str()
        }
        None => stored,
    };
    let cost_ok = bcrypt_cost(stored).is_some_and(|c| (4..=MAX_BCRYPT_COST).contains(&c));
    cost_ok && bcrypt::verify(password.as_bytes(), stored).unwrap_or(false)
}

/// What checking a password against `stored` costs: the memory (KiB) to reserve for it, or why it is over
/// the cap of one check. A malformed value costs little (it never verifies).
pub fn work(scheme: Scheme, stored: &str) -> Result<u32, TooCostly> {
    match scheme {
        Scheme::Argon2id => Argon2Hash::parse(stored).map_or(Ok(SMALL_CHECK_KIB), |h| h.work()),
        Scheme::Bcrypt => match bcrypt_cost(stored) {
            Some(c) if c > MAX_BCRYPT_COST => Err(TooCostly::Bcrypt(c)),
            _ => Ok(SMALL_CHECK_KIB),
        },
        Scheme::Pbkdf2Django => match parse_django(stored) {
            Some((iterations, _, _)) if iterations > MAX_PBKDF2_ITERATIONS => Err(TooCostly::Pbkdf2(iterations)),
            _ => Ok(SMALL_CHECK_KIB),
        },
        _ => Ok(SMALL_CHECK_KIB),
    }
}

/// The memory (KiB) hashing a new password with `scheme` takes ([`hash`]).
pub fn hash_work(scheme: Scheme) -> u32 {
    match scheme {
        Scheme::Argon2id => NEW_ARGON2_KIB,
        _ => SMALL_CHECK_KIB,
    }
}

/// VERIFY(type, pw, stored, salt) of COMPAT §4.4.
pub fn verify(scheme: Scheme, password: &str, stored: &str, salt: &str) -> bool {
    match scheme {
        Scheme::Plain => ct_eq(password.as_bytes(), stored.as_bytes()),
        Scheme::Salt => verify_salted_hex::<Sha256>(password, stored, salt),
        Scheme::Sha512Salt => verify_salted_hex::<Sha512>(password, stored, salt),
        Scheme::Md5Salt => verify_salted_hex::<Md5>(password, stored, salt),
        Scheme::Bcrypt => verify_bcrypt(password, stored),
        Scheme::Argon2id => verify_argon2id(password, stored),
        Scheme::Pbkdf2Salt => {
            let computed = STANDARD.encode(pbkdf2_sha256(password, &salt_bytes(salt), 27_500, 64));
            ct_eq(computed.as_bytes(), stored.as_bytes())
        }
        Scheme::Pbkdf2Django => verify_django(password, stored),
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], PasswordError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(b)
}

/// Hashes a new password as Casdoor writes it (COMPAT §4.6).
pub fn hash(scheme: Scheme, password: &str, salt: &str) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    Ok(match scheme {
        Scheme::Plain => password.to_string(),
        Scheme::Salt => salted_hex::<Sha256>(password, salt),
        Scheme::Sha512Salt => salted_hex::<Sha512>(password, salt),
        Scheme::Md5Salt => salted_hex::<Md5>(password, salt),
        Scheme::Bcrypt => {
            if password.len() > 72 {
                return Err(PasswordError::TooLongForBcrypt);
            }
            bcrypt::hash_with_result(password.as_bytes(), 10)
                .map_err(|e| PasswordError::Hashing(e.to_string()))?
                .format_for_version(bcrypt::Version::TwoA)
        }
        Scheme::Argon2id => {
            let salt_raw = random_bytes::<16>()?;
            let params =
                argon2::Params::new(65_536, 1, 2, Some(32)).map_err(|e| PasswordError::Hashing(e.to_string()))?;
            let mut key = [0u8; 32];
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(password.as_bytes(), &salt_raw, &mut key)
                .map_err(|e| PasswordError::Hashing(e.to_string()))?;
            format!(
                "$argon2id$v=19$m=65536,t=1,p=2${}${}",
                STANDARD_NO_PAD.encode(salt_raw),
                STANDARD_NO_PAD.encode(key)
            )
        }
        Scheme::Pbkdf2Salt => STANDARD.encode(pbkdf2_sha256(password, &salt_bytes(salt), 27_500, 64)),
        Scheme::Pbkdf2Django => {
            format!(
                "pbkdf2_sha256$260000${salt}${}",
                STANDARD.encode(pbkdf2_sha256(password, salt.as_bytes(), 260_000, 32))
            )
        }
    })
}

/// 20 random lower-case hex characters (10 random bytes), Casdoor's salt shape.
pub fn new_salt() -> String {
    match random_bytes::<10>() {
        Ok(b) => hex::encode(b),
        // The OS generator failing is not recoverable in any useful way; a v4 UUID draws on the same source.
        Err(_) => uuid::Uuid::new_v4().simple().to_string()[..20].to_string(),
    }
}

/// The organization's password policy.
pub struct OrgPolicy<'a> {
    pub password_type: &'a str,
    pub password_salt: &'a str,
    pub master_password: &'a str,
}

/// A user's stored password.
pub struct StoredPassword<'a> {
    pub password: &'a str,
    pub password_type: &'a str,
    pub password_salt: &'a str,
}

/// What a successful check matched.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    Password,
    MasterPassword,
}

/// Why a check failed. Callers show one message for all of them (no user enumeration).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("empty password")]
    Empty,
    #[error("no local password")]
    NoPassword,
    #[error("unsupported password type {0:?}")]
    UnsupportedScheme(String),
    #[error("the stored hash is over the cost cap: {0}")]
    TooCostly(TooCostly),
    #[error("wrong password")]
    Wrong,
}

/// The user's effective scheme: theirs, or the organization's when they have none.
fn effective_scheme(org: &OrgPolicy, user: &StoredPassword) -> Result<Scheme, Rejected> {
    let type_name = if user.password_type.is_empty() { org.password_type } else { user.password_type };
    Scheme::parse(type_name).ok_or_else(|| Rejected::UnsupportedScheme(type_name.to_string()))
}

/// The organization's master password with its scheme, when it has one that can be checked.
fn master<'a>(org: &OrgPolicy<'a>) -> Option<(Scheme, &'a str, u32)> {
    let scheme = Scheme::parse(org.password_type)?;
    if org.master_password.is_empty() {
        return None;
    }
    let memory = work(scheme, org.master_password).ok()?;
    Some((scheme, org.master_password, memory))
}

/// Whether the whole check of [`check`] is fast ([`Scheme::is_fast`]): the user's scheme and the master
/// password's, if the organization has one.
pub fn is_fast(org: &OrgPolicy, user: &StoredPassword) -> bool {
    effective_scheme(org, user).is_ok_and(Scheme::is_fast) && master(org).is_none_or(|(s, _, _)| s.is_fast())
}

/// The user's password in clear, when it is stored that way (scheme `plain`): what a challenge-response
/// proof (CHAP, MS-CHAPv2) is checked against. Salted and slow hashes cannot answer such a challenge.
pub fn cleartext<'a>(org: &OrgPolicy, user: &StoredPassword<'a>) -> Option<&'a str> {
    match effective_scheme(org, user) {
        Ok(Scheme::Plain) if !user.password.is_empty() => Some(user.password),
        _ => None,
    }
}

/// Whether the user has a password that can be checked at all: a known scheme, a stored value, within the
/// cost cap. Returns the memory (KiB) the check takes (the larger of the master password's and the
/// user's: they run one after the other).
pub fn usable(org: &OrgPolicy, user: &StoredPassword) -> Result<u32, Rejected> {
    let scheme = effective_scheme(org, user)?;
    if user.password.is_empty() {
        return Err(Rejected::NoPassword);
    }
    let memory = work(scheme, user.password).map_err(Rejected::TooCostly)?;
    Ok(master(org).map_or(memory, |(_, _, m)| m.max(memory)))
}

/// The check of COMPAT §4.2 without lockout (the caller does that), for a user with a [`usable`] password:
/// the master password counts only when it matches with the organization's scheme and salt (§4.3; never
/// a plain comparison with the stored string, §11.4); then the user's password with their effective
/// scheme, salted with the organization salt, then the user's salt. A scheme whose salt is inside the
/// stored value runs once.
pub fn check(org: &OrgPolicy, user: &StoredPassword, password: &str) -> Result<Accepted, Rejected> {
    if password.is_empty() {
        return Err(Rejected::Empty);
    }
    usable(org, user)?;
    let scheme = effective_scheme(org, user)?;
    if let Some((master_scheme, master_hash, _)) = master(org) {
        if verify(master_scheme, password, master_hash, org.password_salt) {
            return Ok(Accepted::MasterPassword);
        }
    }
    let other_salt = !scheme.salt_inside() && user.password_salt != org.password_salt;
    if verify(scheme, password, user.password, org.password_salt)
        || (other_salt && verify(scheme, password, user.password, user.password_salt))
    {
        return Ok(Accepted::Password);
    }
    Err(Rejected::Wrong)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    thread_local! {
        /// argon2 computations run on this thread (tests count them).
        pub(super) static ARGON2_RUNS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    const PW: &str = "P@ssw0rd!";
    const SALT: &str = "a1b2c3d4e5f6a7b8c9d0";

    /// The worked examples of COMPAT §4.4.
    #[test]
    fn worked_examples_verify() {
        let cases: &[(Scheme, &str, &str)] = &[
            (Scheme::Plain, "P@ssw0rd!", ""),
            (Scheme::Salt, "3fe4d69687154f529287365e03634b26fd63641b8e9b037b649f418766ae27e0", SALT),
            (Scheme::Salt, "0e44ce7308af2b3de5232e4616403ce7d49ba2aec83f79c196409556422a4927", ""),
            (Scheme::Salt, "133c843d51292fc99140d7d6d52e250b29c818afcba0a8116aab6e264b5d9e0f", ""),
            (Scheme::Sha512Salt, "b51722396cab1cf9b3cbb66c1131b0e9225c2fecb63c33255781983c86f8b0291430061031183c7a3d26f3650d388dab61e587b83cda811121bbeea23bb7aae0", SALT),
            (Scheme::Sha512Salt, "9a585872fc4a94ba2fe0f7e9625bcfccc1050dab20b56df35a1c8915a3d8325616c0172284c2f4fe9471667c9c4f1fbdc0d371684caee74cdf9d39d82383a383", ""),
            (Scheme::Sha512Salt, "9a35d5e60f1143dfd3d3ee5a3f96c68fa79f17138e50d52894593a1a9ad2034e4eab29b25b5d12fc61ef649c8bd30ddc99bdea5e283f864bb33ac32d8f68073d", ""),
            (Scheme::Md5Salt, "1e9bfccb6cc6e1b82d737f240ac47e3c", SALT),
            (Scheme::Md5Salt, "8a24367a1f46c141048752f2d5bbd14b", ""),
            (Scheme::Md5Salt, "8a297d8f5cc6b79450f0eb982fdbc69e", ""),
            (Scheme::Bcrypt, "$2a$10$..CA.uOD/eaGAOmJB.yMBurGSUo5vM6h/j4WsVYFtBHNBL0/GbtTS", ""),
            (Scheme::Bcrypt, "$2y$10$..CA.uOD/eaGAOmJB.yMBurGSUo5vM6h/j4WsVYFtBHNBL0/GbtTS", ""),
            (Scheme::Argon2id, "$argon2id$v=19$m=65536,t=1,p=2$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM", ""),
            (Scheme::Pbkdf2Salt, "0+//X0Mf1k0wXBSpMlr0QpsVF3kC3pZGYT15vxkCyQp23oBm1UUEWApxs7dwDxw/RDFvo0hvg0gPU2TzHwCa9g==", "c2FsdHlzYWx0MTIzNDU2Nw=="),
            (Scheme::Pbkdf2Salt, "u3ipQCSqsBFkEIElkT7mIFc8nLXAcvvw/bnpqV3CJXThwZjMsfqQbM6LqKC5Q2QO236aCbqJ1OVFKnsf9EEtrQ==", SALT),
            (Scheme::Pbkdf2Django, "pbkdf2_sha256$260000$W7xPuZ2qTa9LkV3mNc8RbE$bDUY3amX12gm/93nkhSJHpmWECc9xlFcNRBzcRgAzeg=", "ignored"),
        ];
        for (scheme, stored, salt) in cases {
            assert!(verify(*scheme, PW, stored, salt), "{scheme:?} {stored}");
            assert!(!verify(*scheme, "P@ssw0rd?", stored, salt), "{scheme:?} accepts a wrong password");
        }
    }

    #[test]
    fn casdoor_base64_salt_decoding() {
        for (input, hex_out) in [
            ("abcd", "69b71d"),
            ("abcde", "69b71d"),
            ("abc", ""),
            ("0123456789", "d35db7e39ebb"),
            ("gl0b3xSalt2024", "825d1bdf149a96ddb4"),
            ("ab!defgh", ""),
            ("ab==cdef", "69"),
            ("a1b2c3d4e5f6a7b8c9d0", "6b56f67377787b97fa6bb6fc73d774"),
        ] {
            assert_eq!(hex::encode(salt_bytes(input)), hex_out, "{input}");
        }
    }

    #[test]
    fn malformed_or_hostile_stored_values_do_not_verify() {
        for (scheme, stored) in [
            (Scheme::Argon2id, "$argon2id$v=18$m=65536,t=1,p=2$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM"),
            (Scheme::Argon2id, "$argon2id$v=19$m=4294967295,t=1,p=2$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM"),
            (Scheme::Argon2id, "$argon2id$v=19$m=x,t=1,p=2$$"),
            (Scheme::Argon2id, "garbage"),
            (Scheme::Bcrypt, "$2a$10$..CA.uOD/eaGAOm"),
            (Scheme::Bcrypt, "$2a$31$..CA.uOD/eaGAOmJB.yMBurGSUo5vM6h/j4WsVYFtBHNBL0/GbtTS"),
            (Scheme::Bcrypt, ""),
            (Scheme::Pbkdf2Django, "pbkdf2_sha256$notanumber$x$y"),
            (Scheme::Pbkdf2Django, "pbkdf2_sha256$4000000000$x$y"),
            (Scheme::Pbkdf2Django, "pbkdf2_sha1$1000$x$y"),
            (Scheme::Pbkdf2Salt, "%%%"),
            (Scheme::Salt, ""),
        ] {
            assert!(!verify(scheme, PW, stored, ""), "{scheme:?} {stored}");
        }
    }

    #[test]
    fn hash_round_trips_for_every_scheme() {
        for scheme in Scheme::ALL {
            let salt = new_salt();
            let stored = hash(scheme, "Zoë-ünïcödé-🔑", &salt).unwrap();
            assert!(verify(scheme, "Zoë-ünïcödé-🔑", &stored, &salt), "{scheme:?}");
            assert!(!verify(scheme, "Zoe-unicode", &stored, &salt), "{scheme:?}");
            assert_eq!(Scheme::parse(scheme.as_str()), Some(scheme));
        }
        assert!(matches!(hash(Scheme::Bcrypt, &"x".repeat(73), ""), Err(PasswordError::TooLongForBcrypt)));
        assert!(matches!(hash(Scheme::Argon2id, "", ""), Err(PasswordError::Empty)));
        assert!(hash(Scheme::Bcrypt, "pw", "").unwrap().starts_with("$2a$10$"));
        assert!(hash(Scheme::Argon2id, "pw", "").unwrap().starts_with("$argon2id$v=19$m=65536,t=1,p=2$"));
        assert_eq!(new_salt().len(), 20);
        assert_eq!(Scheme::parse(""), None);
        assert_eq!(Scheme::parse("sha256"), None);
    }

    /// The cost cap of one check: argon2 memory × passes up to 256 MiB·passes (every common default passes,
    /// RFC 9106's 2 GiB does not), bcrypt cost up to 16, Django iterations up to 10 M. Over the cap a hash
    /// never verifies, and `usable` says why.
    #[test]
    fn one_check_costs_at_most_the_cap() {
        let argon = |m: u32, t: u32, p: u32| {
            format!(
                "$argon2id$v=19$m={m},t={t},p={p}$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM"
            )
        };
        for (m, t, p) in [
            (65_536, 1, 2),
            (19_456, 2, 1),
            (47_104, 1, 1),
            (65_536, 3, 4),
            (102_400, 2, 8),
            (65_536, 4, 1),
            (262_144, 1, 1),
        ] {
            assert_eq!(work(Scheme::Argon2id, &argon(m, t, p)), Ok(m), "m={m} t={t} p={p}");
        }
        assert_eq!(work(Scheme::Argon2id, &argon(8, 1, 1)), Ok(SMALL_CHECK_KIB), "small memory still counts 1 MiB");
        for (m, t) in [(2_097_152, 1), (1_048_576, 64), (65_536, 5), (262_145, 1), (131_072, 3)] {
            assert_eq!(
                work(Scheme::Argon2id, &argon(m, t, 1)),
                Err(TooCostly::Argon2 { memory_kib: m, passes: t }),
                "m={m} t={t}"
            );
            assert!(!verify(Scheme::Argon2id, PW, &argon(m, t, 1), ""), "an over-cap hash is never run");
        }
        assert_eq!(work(Scheme::Argon2id, &argon(65_536, 1, 65)), Err(TooCostly::Argon2Lanes(65)));
        let over = TooCostly::Argon2 { memory_kib: 1_048_576, passes: 64 }.to_string();
        assert!(over.contains("67108864 KiB·passes") && over.contains("262144"), "{over}");
        // The cap is in the product: 1 GiB × 64 passes (each under the old per-parameter caps) is refused.
        let stored =
            StoredPassword { password: &argon(1_048_576, 64, 1), password_type: "argon2id", password_salt: "" };
        let org = OrgPolicy { password_type: "argon2id", password_salt: "", master_password: "" };
        assert_eq!(
            usable(&org, &stored),
            Err(Rejected::TooCostly(TooCostly::Argon2 { memory_kib: 1_048_576, passes: 64 }))
        );
        assert_eq!(check(&org, &stored, PW), usable(&org, &stored).map(|_| Accepted::Password));
        // bcrypt and Django.
        assert_eq!(
            work(Scheme::Bcrypt, "$2y$12$..CA.uOD/eaGAOmJB.yMBurGSUo5vM6h/j4WsVYFtBHNBL0/GbtTS"),
            Ok(SMALL_CHECK_KIB)
        );
        assert_eq!(
            work(Scheme::Bcrypt, "$2a$17$..CA.uOD/eaGAOmJB.yMBurGSUo5vM6h/j4WsVYFtBHNBL0/GbtTS"),
            Err(TooCostly::Bcrypt(17))
        );
        assert_eq!(work(Scheme::Bcrypt, "$2$31$x"), Err(TooCostly::Bcrypt(31)));
        assert_eq!(work(Scheme::Pbkdf2Django, "pbkdf2_sha256$260000$s$h"), Ok(SMALL_CHECK_KIB));
        assert_eq!(work(Scheme::Pbkdf2Django, "pbkdf2_sha256$10000001$s$h"), Err(TooCostly::Pbkdf2(10_000_001)));
        // Malformed values cost nothing to refuse; other schemes are cheap.
        for (scheme, stored) in
            [(Scheme::Argon2id, "garbage"), (Scheme::Bcrypt, ""), (Scheme::Plain, "x"), (Scheme::Salt, "")]
        {
            assert_eq!(work(scheme, stored), Ok(SMALL_CHECK_KIB), "{scheme:?} {stored}");
        }
        // The memory a check reserves is the larger of the master password's and the user's.
        let master = hash(Scheme::Argon2id, "master", "").unwrap();
        let org = OrgPolicy { password_type: "argon2id", password_salt: "", master_password: &master };
        let user = StoredPassword { password: &argon(19_456, 2, 1), password_type: "", password_salt: "" };
        assert_eq!(usable(&org, &user), Ok(65_536));
        assert_eq!(hash_work(Scheme::Argon2id), 65_536);
    }

    /// Found by fuzzing (fuzz/fuzz_targets/password_hashes.rs): `m=4000000,t=0` is 0 KiB·passes, under the
    /// cap, and `work` said the check takes 4 GB, so one sign-in reserved the whole memory budget of the
    /// checks (the cap promises at most 256 MiB), although argon2 refuses zero passes at once.
    #[test]
    fn argon2_parameters_argon2_refuses_reserve_little() {
        for params in ["m=4000000,t=0,p=1", "m=4294967295,t=0,p=64", "m=200000,t=1,p=0"] {
            let stored =
                format!("$argon2id$v=19${params}$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM");
            assert_eq!(work(Scheme::Argon2id, &stored), Ok(SMALL_CHECK_KIB), "{params}");
            assert!(!verify(Scheme::Argon2id, PW, &stored, ""), "{params}");
        }
        let over =
            "$argon2id$v=19$m=4000000,t=1,p=0$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM";
        assert_eq!(work(Scheme::Argon2id, over), Err(TooCostly::Argon2 { memory_kib: 4_000_000, passes: 1 }));
    }

    /// Schemes whose salt is inside the stored value are checked once even when the user's salt differs
    /// from the organization's: a wrong password costs one argon2 (or bcrypt) run, not two.
    #[test]
    fn salt_inside_schemes_run_once() {
        for scheme in [Scheme::Plain, Scheme::Bcrypt, Scheme::Argon2id, Scheme::Pbkdf2Django] {
            assert!(scheme.salt_inside());
        }
        for scheme in [Scheme::Salt, Scheme::Sha512Salt, Scheme::Md5Salt, Scheme::Pbkdf2Salt] {
            assert!(!scheme.salt_inside());
        }
        let org = OrgPolicy { password_type: "bcrypt", password_salt: "org-salt", master_password: "" };
        let stored = hash(Scheme::Argon2id, "right", "").unwrap();
        let user = StoredPassword { password: &stored, password_type: "argon2id", password_salt: "user-salt" };
        let runs = |pw: &str| {
            ARGON2_RUNS.with(|n| n.set(0));
            let r = check(&org, &user, pw);
            (r, ARGON2_RUNS.with(|n| n.get()))
        };
        assert_eq!(runs("right"), (Ok(Accepted::Password), 1));
        assert_eq!(runs("wrong"), (Err(Rejected::Wrong), 1), "a wrong password runs argon2 once");
    }

    /// Rows of the fixture database (`shared/casdoor/seed-postgres.sql`) with their plaintext passwords.
    #[test]
    fn fixture_users_check_like_casdoor_minus_its_defects() {
        let acme = OrgPolicy { password_type: "bcrypt", password_salt: "", master_password: "" };
        let globex = OrgPolicy {
            password_type: "sha512-salt",
            password_salt: "gl0b3xSalt2024",
            master_password: &salted_hex::<Sha512>("Globex-Master-2024!", "gl0b3xSalt2024"),
        };
        let user = |password: &'static str, password_type: &'static str, password_salt: &'static str| StoredPassword {
            password,
            password_type,
            password_salt,
        };
        // heidi: plain; ivan-like: empty type falls back to the organization's bcrypt.
        assert_eq!(check(&acme, &user("heidi-plain-text", "plain", ""), "heidi-plain-text"), Ok(Accepted::Password));
        let ivan_hash = hash(Scheme::Bcrypt, "IvanFallback1", "").unwrap();
        let ivan = StoredPassword { password: &ivan_hash, password_type: "", password_salt: "" };
        assert_eq!(check(&acme, &ivan, "IvanFallback1"), Ok(Accepted::Password));
        // yuki: SHA-256 salted with the organization salt.
        let yuki_hash = salted_hex::<Sha256>("yuki sato 2024", "gl0b3xSalt2024");
        let yuki = StoredPassword { password: &yuki_hash, password_type: "salt", password_salt: "gl0b3xSalt2024" };
        assert_eq!(check(&globex, &yuki, "yuki sato 2024"), Ok(Accepted::Password));
        // hans: own salt; the organization salt is tried first and fails.
        let hans_hash = salted_hex::<Sha512>("Hans-Own-Salt-1", "334538efece89b0606a9");
        let hans = StoredPassword {
            password: &hans_hash,
            password_type: "sha512-salt",
            password_salt: "334538efece89b0606a9",
        };
        assert_eq!(check(&globex, &hans, "Hans-Own-Salt-1"), Ok(Accepted::Password));
        assert_eq!(check(&globex, &hans, "hans"), Err(Rejected::Wrong));
        // The master password is checked with the organization's scheme and salt (§4.3): it opens hans
        // (sha512-salt like the organization) and yuki (`salt`) alike ...
        assert_eq!(check(&globex, &hans, "Globex-Master-2024!"), Ok(Accepted::MasterPassword));
        assert_eq!(check(&globex, &yuki, "Globex-Master-2024!"), Ok(Accepted::MasterPassword));
        // ... and the stored master hash itself is no password (§11.4), whatever the user's scheme: with the
        // user's scheme a `plain` user compared the input with the stored hash and let it in.
        assert_eq!(check(&globex, &hans, globex.master_password), Err(Rejected::Wrong));
        let plain = user("li-plain-pw", "plain", "");
        assert_eq!(check(&globex, &plain, globex.master_password), Err(Rejected::Wrong));
        assert_eq!(check(&globex, &plain, "Globex-Master-2024!"), Ok(Accepted::MasterPassword));
        assert_eq!(check(&globex, &plain, "li-plain-pw"), Ok(Accepted::Password));
        // A master password of an organization without a scheme opens nothing (it cannot be checked).
        let no_scheme = OrgPolicy { password_type: "", password_salt: "", master_password: "master" };
        assert_eq!(check(&no_scheme, &user("pw", "plain", ""), "master"), Err(Rejected::Wrong));
        // No local password (the master password does not open it either), unsupported scheme, empty input.
        assert_eq!(check(&acme, &user("", "", ""), "anything"), Err(Rejected::NoPassword));
        assert_eq!(check(&globex, &user("", "", ""), "Globex-Master-2024!"), Err(Rejected::NoPassword));
        assert_eq!(check(&acme, &user("x", "sha1", ""), "x"), Err(Rejected::UnsupportedScheme("sha1".into())));
        assert_eq!(check(&acme, &user("x", "plain", ""), ""), Err(Rejected::Empty));
    }
}
