//! Digests and random values: client secrets are stored as SHA-256 digests, generated ids and secrets are
//! random hex, and cached introspection answers are keyed by a keyed digest of the token.

use sha2::{Digest, Sha256};

use crate::error::EdgeError;

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Random lower-case hex of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // The OS refused randomness: use v4 UUIDs' random bits instead (also from the OS generator).
        let mut s = String::new();
        while s.len() < bytes * 2 {
            s.push_str(&uuid::Uuid::new_v4().simple().to_string());
        }
        s.truncate(bytes * 2);
        return s;
    }
    hex::encode(buf)
}

/// What cached introspection answers are keyed by: a keyed 128-bit SipHash-1-3 of the token. The key is
/// random per process, so nobody can make two tokens collide (SipHash is a PRF); it is ~3× cheaper than
/// SHA-256 on a 600-byte token, and the lookup runs on every introspection.
pub type TokenDigest = u128;

/// A random key for [`TokenDigest`]s.
pub(crate) struct DigestKey(siphasher::sip128::SipHasher13);

impl DigestKey {
    pub(crate) fn random() -> Result<DigestKey, EdgeError> {
        let mut k = [0u8; 16];
        getrandom::fill(&mut k).map_err(|e| EdgeError::Crypto(format!("no randomness for the cache key: {e}")))?;
        Ok(DigestKey(siphasher::sip128::SipHasher13::new_with_key(&k)))
    }

    pub(crate) fn digest(&self, token: &[u8]) -> TokenDigest {
        use siphasher::sip128::Hasher128;
        let mut h = self.0;
        std::hash::Hasher::write(&mut h, token);
        h.finish128().as_u128()
    }
}
