//! Signing keys: generation, encryption at rest, the in-memory keyring and the JWKS.
//!
//! Keys are generated with the RustCrypto crates (ed25519-dalek, p256, rsa), or imported from PEM (Casdoor
//! certs: PKCS#1, PKCS#8 or SEC1, see [`import_pem`]). Signing uses aws-lc-rs key pairs parsed ONCE per key
//! and kept in memory (jsonwebtoken would re-parse the key on every token, and the bare `rsa` signer is not
//! blinded). Verification uses jsonwebtoken with decoding keys built once per key from the public JWK
//! components; jsonwebtoken has no ES512, so ES512 tokens are verified with an aws-lc-rs public key (also
//! parsed once) and the same claim checks.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self as awssig, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use aws_lc_rs::signature::{KeyPair, ParsedPublicKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use jeton_raft::model::SigningKey;
use jeton_raft::Store;
use serde_json::{json, Value};

use crate::EdgeError;

/// The algorithms Jeton signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EdDSA,
    ES256,
    ES384,
    ES512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
}

impl Alg {
    /// jsonwebtoken's name for it (it has no ES512).
    pub fn jsonwebtoken(self) -> Option<jsonwebtoken::Algorithm> {
        use jsonwebtoken::Algorithm as J;
        Some(match self {
            Alg::EdDSA => J::EdDSA,
            Alg::ES256 => J::ES256,
            Alg::ES384 => J::ES384,
            Alg::ES512 => return None,
            Alg::RS256 => J::RS256,
            Alg::RS384 => J::RS384,
            Alg::RS512 => J::RS512,
            Alg::PS256 => J::PS256,
            Alg::PS384 => J::PS384,
            Alg::PS512 => J::PS512,
        })
    }

    pub fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "EdDSA" => Alg::EdDSA,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "ES512" => Alg::ES512,
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
        }
    }
    /// The key type: what a private key must be to sign with this algorithm.
    fn family(self) -> KeyFamily {
        match self {
            Alg::EdDSA => KeyFamily::Ed25519,
            Alg::ES256 => KeyFamily::Ec(&awssig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
            Alg::ES384 => KeyFamily::Ec(&awssig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
            Alg::ES512 => KeyFamily::Ec(&awssig::ECDSA_P521_SHA512_FIXED_SIGNING, "P-521", 66),
            Alg::RS256 => KeyFamily::Rsa(&awssig::RSA_PKCS1_SHA256),
            Alg::RS384 => KeyFamily::Rsa(&awssig::RSA_PKCS1_SHA384),
            Alg::RS512 => KeyFamily::Rsa(&awssig::RSA_PKCS1_SHA512),
            Alg::PS256 => KeyFamily::Rsa(&awssig::RSA_PSS_SHA256),
            Alg::PS384 => KeyFamily::Rsa(&awssig::RSA_PSS_SHA384),
            Alg::PS512 => KeyFamily::Rsa(&awssig::RSA_PSS_SHA512),
        }
    }
    /// How aws-lc-rs verifies a signature of this algorithm.
    fn verification(self) -> &'static dyn awssig::VerificationAlgorithm {
        match self {
            Alg::EdDSA => &awssig::ED25519,
            Alg::ES256 => &awssig::ECDSA_P256_SHA256_FIXED,
            Alg::ES384 => &awssig::ECDSA_P384_SHA384_FIXED,
            Alg::ES512 => &awssig::ECDSA_P521_SHA512_FIXED,
            Alg::RS256 => &awssig::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &awssig::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &awssig::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &awssig::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &awssig::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &awssig::RSA_PSS_2048_8192_SHA512,
        }
    }
    /// The algorithms a new key can be generated for.
    pub const GENERATED: [Alg; 3] = [Alg::EdDSA, Alg::ES256, Alg::RS256];
    /// Every algorithm a key can be loaded, signed and verified with (imported keys).
    pub const ALL: [Alg; 10] = [
        Alg::EdDSA,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
    ];
}

/// The kind of key an algorithm needs.
enum KeyFamily {
    Ed25519,
    /// Signing algorithm, JWK curve name, coordinate length in bytes.
    Ec(&'static awssig::EcdsaSigningAlgorithm, &'static str, usize),
    Rsa(&'static dyn awssig::RsaEncoding),
}

impl Alg {
    /// Whether a key made for `self` can also sign and verify `other`: any RSA algorithm with an RSA key,
    /// an ECDSA algorithm only with a key on its own curve, EdDSA only with an Ed25519 key.
    pub fn same_key_as(self, other: Alg) -> bool {
        match (self.family(), other.family()) {
            (KeyFamily::Ed25519, KeyFamily::Ed25519) | (KeyFamily::Rsa(_), KeyFamily::Rsa(_)) => true,
            (KeyFamily::Ec(_, a, _), KeyFamily::Ec(_, b, _)) => a == b,
            _ => false,
        }
    }
}

/// The node's key-encryption key: AES-256-GCM over private keys at rest.
pub struct Kek {
    key: LessSafeKey,
    /// HMAC-SHA-256 of the key under a fixed label: the root of [`Kek::derive`]'s keys, so the key itself
    /// is only ever used for AES-GCM.
    derivation: [u8; 32],
}

impl Kek {
    /// From 64 hex characters.
    pub fn from_hex(hex_key: &str) -> Result<Kek, EdgeError> {
        let raw = hex::decode(hex_key.trim())
            .map_err(|_| EdgeError::Config("the key-encryption key must be 64 hex characters".into()))?;
        if raw.len() != 32 {
            return Err(EdgeError::Config("the key-encryption key must be 32 bytes (64 hex characters)".into()));
        }
        let key =
            UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| EdgeError::Config("bad key-encryption key".into()))?;
        let derivation = hmac_sha256(&raw, b"jeton kek derivation 1");
        Ok(Kek { key: LessSafeKey::new(key), derivation })
    }

    /// A key for `purpose` (e.g. signing CSRF tokens), the same on every node of the cluster (they share the
    /// key-encryption key) and unrelated to any other purpose's.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        hmac_sha256(&self.derivation, purpose.as_bytes())
    }

    /// Reads the key from `path`, or creates it there (mode 0600) on first start.
    pub fn load_or_create(path: &Path) -> Result<Kek, EdgeError> {
        match std::fs::read_to_string(path) {
            Ok(s) => Kek::from_hex(&s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut raw = [0u8; 32];
                SystemRandom::new().fill(&mut raw).map_err(|_| EdgeError::Crypto("no randomness".into()))?;
                let hex_key = hex::encode(raw);
                write_private_file(path, hex_key.as_bytes())?;
                Kek::from_hex(&hex_key)
            }
            Err(e) => Err(EdgeError::Config(format!("cannot read key-encryption key {}: {e}", path.display()))),
        }
    }

    /// Encrypts: 12-byte random nonce, then ciphertext and tag. The kid is bound as associated data.
    pub fn seal(&self, kid: &str, plain: &[u8]) -> Result<Vec<u8>, EdgeError> {
        let mut nonce = [0u8; 12];
        SystemRandom::new().fill(&mut nonce).map_err(|_| EdgeError::Crypto("no randomness".into()))?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| EdgeError::Crypto("sealing a private key failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts what [`Kek::seal`] produced for the same kid.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, EdgeError> {
        if sealed.len() < 12 + 16 {
            return Err(EdgeError::Crypto(format!("sealed private key of {kid} is truncated")));
        }
        let (nonce, body) = sealed.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| EdgeError::Crypto("bad nonce".into()))?;
        let mut buf = body.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf).map_err(|_| {
            EdgeError::Crypto(format!(
                "cannot decrypt the private key of {kid}: wrong key-encryption key for this data dir?"
            ))
        })?;
        Ok(plain.to_vec())
    }
}

/// HMAC-SHA-256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Writes a file only the owner can read.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), EdgeError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(|e| EdgeError::Config(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(contents).map_err(|e| EdgeError::Config(format!("cannot write {}: {e}", path.display())))?;
    f.sync_all().map_err(|e| EdgeError::Config(format!("cannot sync {}: {e}", path.display())))?;
    Ok(())
}

fn rng() -> getrandom::rand_core::UnwrapErr<getrandom::SysRng> {
    getrandom::rand_core::UnwrapErr(getrandom::SysRng)
}

/// Generates a new signing key with a self-signed certificate (Casdoor SDKs verify with the certificate).
pub fn generate(alg: Alg, kid: &str, owner: &str, kek: &Kek, now: i64) -> Result<SigningKey, EdgeError> {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let crypto = |e: &dyn std::fmt::Display| EdgeError::Crypto(format!("generating a {} key: {e}", alg.as_str()));
    let line = ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF;
    let (pkcs8, public_pem): (Vec<u8>, String) = match alg {
        Alg::EdDSA => {
            let sk = ed25519_dalek::SigningKey::generate(&mut rng());
            let der = sk.to_pkcs8_der().map_err(|e| crypto(&e))?.as_bytes().to_vec();
            let pem = sk.verifying_key().to_public_key_pem(line).map_err(|e| crypto(&e))?;
            (der, pem)
        }
        Alg::ES256 => {
            let sk = <p256::SecretKey as p256::elliptic_curve::Generate>::generate_from_rng(&mut rng());
            let der = sk.to_pkcs8_der().map_err(|e| crypto(&e))?.as_bytes().to_vec();
            let pem = sk.public_key().to_public_key_pem(line).map_err(|e| crypto(&e))?;
            (der, pem)
        }
        Alg::RS256 | Alg::RS384 | Alg::RS512 => {
            let sk = rsa::RsaPrivateKey::new(&mut rng(), 2048).map_err(|e| crypto(&e))?;
            let der = sk.to_pkcs8_der().map_err(|e| crypto(&e))?.as_bytes().to_vec();
            let pem = rsa::RsaPublicKey::from(&sk).to_public_key_pem(line).map_err(|e| crypto(&e))?;
            (der, pem)
        }
        other => return Err(EdgeError::Crypto(format!("{} keys are imported, not generated", other.as_str()))),
    };
    let certificate = self_signed_certificate(&pkcs8, kid, owner)?;
    Ok(SigningKey {
        kid: kid.to_string(),
        owner: owner.to_string(),
        display_name: kid.to_string(),
        algorithm: alg.as_str().to_string(),
        created_at: now,
        public_key_pem: public_pem,
        certificate,
        private_key_sealed: kek.seal(kid, &pkcs8)?,
        retire_at: 0,
    })
}

fn self_signed_certificate(pkcs8: &[u8], kid: &str, owner: &str) -> Result<String, EdgeError> {
    let err = |e: rcgen::Error| EdgeError::Crypto(format!("self-signed certificate for {kid}: {e}"));
    let key_pair = rcgen::KeyPair::try_from(pkcs8).map_err(err)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, owner);
    params.distinguished_name.push(rcgen::DnType::CommonName, kid);
    Ok(params.self_signed(&key_pair).map_err(err)?.pem())
}

/// How a loaded key signs.
enum Signer {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair, &'static dyn awssig::RsaEncoding),
}

/// A signing key ready for use: parsed once, with its JWK and pre-encoded JWT headers.
pub struct LoadedKey {
    pub kid: String,
    /// What it signs with (and publishes in the JWKS).
    pub alg: Alg,
    /// What a token it verifies may say in its header: `alg`, and for an imported key the algorithms its
    /// applications signed with elsewhere (its [`jeton_raft::model::AcceptedAlgorithms`]).
    pub accepted: Vec<Alg>,
    /// Still signing new tokens (not retired).
    pub active: bool,
    pub retire_at: i64,
    pub created_at: i64,
    signer: Signer,
    /// jsonwebtoken's key, for every algorithm it knows, and the checks it applies (built once).
    decoding: Option<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>,
    /// For the one it does not (ES512).
    verifier: ParsedPublicKey,
    /// Public JWK.
    pub jwk: Value,
    /// base64url of `{"alg","kid","typ":"at+jwt"}` (RFC 9068 access tokens).
    pub access_header: String,
    /// base64url of `{"alg","kid","typ":"JWT"}` (refresh tokens).
    pub refresh_header: String,
}

impl LoadedKey {
    /// Loads a stored key, decrypting its private half.
    pub fn load(sk: &SigningKey, kek: &Kek) -> Result<LoadedKey, EdgeError> {
        let alg = Alg::parse(&sk.algorithm)
            .ok_or_else(|| EdgeError::Crypto(format!("key {} has unsupported algorithm {}", sk.kid, sk.algorithm)))?;
        let pkcs8 = kek.open(&sk.kid, &sk.private_key_sealed)?;
        let bad = |what: &str| EdgeError::Crypto(format!("key {}: {what}", sk.kid));
        let signer = match alg.family() {
            KeyFamily::Ed25519 => {
                Signer::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).map_err(|_| bad("bad Ed25519 key"))?)
            }
            KeyFamily::Ec(signing, curve, _) => {
                Signer::Ec(EcdsaKeyPair::from_pkcs8(signing, &pkcs8).map_err(|_| bad(&format!("bad {curve} key")))?)
            }
            KeyFamily::Rsa(enc) => Signer::Rsa(RsaKeyPair::from_pkcs8(&pkcs8).map_err(|_| bad("bad RSA key"))?, enc),
        };
        let (jwk, verifier) = public_jwk(sk, alg)?;
        let decoding =
            decoding_key(&jwk, alg).map_err(|e| bad(&format!("public key: {e}")))?.map(|key| (key, validation(&[alg])));
        let header =
            |typ: &str| URL_SAFE_NO_PAD.encode(json!({"alg": alg.as_str(), "kid": sk.kid, "typ": typ}).to_string());
        Ok(LoadedKey {
            kid: sk.kid.clone(),
            alg,
            accepted: vec![alg],
            active: sk.retire_at == 0,
            retire_at: sk.retire_at,
            created_at: sk.created_at,
            signer,
            decoding,
            verifier,
            jwk,
            access_header: header("at+jwt"),
            refresh_header: header("JWT"),
        })
    }

    /// Also accepts tokens signed with `algorithms` (each must suit this key: the same RSA key, or the same
    /// curve); on an error nothing changes. Keys Jeton generates never get any: one key, one algorithm.
    pub fn accept(&mut self, algorithms: &[String]) -> Result<(), EdgeError> {
        let mut accepted = self.accepted.clone();
        for name in algorithms {
            let alg = Alg::parse(name)
                .filter(|a| a.same_key_as(self.alg))
                .ok_or_else(|| EdgeError::Crypto(format!("key {} cannot verify {name} tokens", self.kid)))?;
            if !accepted.contains(&alg) {
                accepted.push(alg);
            }
        }
        if let Some((_, v)) = &mut self.decoding {
            *v = validation(&accepted);
        }
        self.accepted = accepted;
        Ok(())
    }

    /// Signs `header.payload` and returns the compact JWS.
    pub fn sign(&self, header_b64: &str, claims_json: &[u8]) -> Result<String, EdgeError> {
        let mut out = String::with_capacity(header_b64.len() + claims_json.len() * 4 / 3 + 400);
        out.push_str(header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(claims_json, &mut out);
        let sig = match &self.signer {
            Signer::Ed(k) => k.sign(out.as_bytes()).as_ref().to_vec(),
            Signer::Ec(k) => k
                .sign(&SystemRandom::new(), out.as_bytes())
                .map_err(|_| EdgeError::Crypto("ECDSA signing failed".into()))?
                .as_ref()
                .to_vec(),
            Signer::Rsa(k, enc) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(*enc, &SystemRandom::new(), out.as_bytes(), &mut sig)
                    .map_err(|_| EdgeError::Crypto("RSA signing failed".into()))?;
                sig
            }
        };
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
        Ok(out)
    }

    /// Verifies a token's signature (the header's `alg` must be one this key accepts), `exp` (required, no
    /// leeway) and `nbf` (when present), and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Value, VerifyError> {
        if let Some((decoding, v)) = &self.decoding {
            return jsonwebtoken::decode::<Value>(token, decoding, v).map(|d| d.claims).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature | ErrorKind::MissingRequiredClaim(_) => VerifyError::Expired,
                    ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
                    ErrorKind::InvalidSignature => VerifyError::Signature,
                    ErrorKind::InvalidAlgorithm => VerifyError::Algorithm,
                    _ => VerifyError::Malformed,
                }
            });
        }
        let (signed, sig_b64) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
        let (header_b64, claims_b64) = signed.split_once('.').ok_or(VerifyError::Malformed)?;
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| VerifyError::Malformed)?)
                .map_err(|_| VerifyError::Malformed)?;
        // Without jsonwebtoken (ES512) only the key's own algorithm can be accepted: no other suits its curve.
        if header.get("alg").and_then(Value::as_str) != Some(self.alg.as_str()) {
            return Err(VerifyError::Algorithm);
        }
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| VerifyError::Malformed)?;
        self.verifier.verify_sig(signed.as_bytes(), &sig).map_err(|_| VerifyError::Signature)?;
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims_b64).map_err(|_| VerifyError::Malformed)?)
                .map_err(|_| VerifyError::Malformed)?;
        let now = crate::clock::now();
        let exp = claims.get("exp").and_then(Value::as_i64).ok_or(VerifyError::Expired)?;
        if exp < now {
            return Err(VerifyError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            if nbf.as_i64().is_none_or(|nbf| nbf > now) {
                return Err(VerifyError::NotYetValid);
            }
        }
        Ok(claims)
    }
}

/// Why a token did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// Not three base64url parts with JSON header and claims.
    Malformed,
    /// The header names another algorithm than the key's.
    Algorithm,
    Signature,
    Expired,
    NotYetValid,
}

/// What jsonwebtoken checks: the header's algorithm is one of `algorithms`, `exp` is there and not past (no
/// leeway), `nbf` is not in the future. The audience is the caller's business.
fn validation(algorithms: &[Alg]) -> jsonwebtoken::Validation {
    jsonwebtoken::Validation {
        algorithms: algorithms.iter().filter_map(|a| a.jsonwebtoken()).collect(),
        leeway: 0,
        validate_aud: false,
        validate_nbf: true,
        required_spec_claims: ["exp".to_string()].into_iter().collect(),
        ..Default::default()
    }
}

/// jsonwebtoken's decoding key for `alg` from the public JWK's components; None where jsonwebtoken has no
/// such algorithm (ES512).
fn decoding_key(jwk: &Value, alg: Alg) -> Result<Option<jsonwebtoken::DecodingKey>, jsonwebtoken::errors::Error> {
    use jsonwebtoken::DecodingKey;
    if alg.jsonwebtoken().is_none() {
        return Ok(None);
    }
    let part = |k: &str| jwk.get(k).and_then(Value::as_str).unwrap_or_default();
    Ok(Some(match alg.family() {
        KeyFamily::Ed25519 => DecodingKey::from_ed_components(part("x"))?,
        KeyFamily::Ec(..) => DecodingKey::from_ec_components(part("x"), part("y"))?,
        KeyFamily::Rsa(_) => DecodingKey::from_rsa_components(part("n"), part("e"))?,
    }))
}

/// The public JWK of a stored key (from its public key PEM) and the parsed verification key.
fn public_jwk(sk: &SigningKey, alg: Alg) -> Result<(Value, ParsedPublicKey), EdgeError> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let bad = |e: &dyn std::fmt::Display| EdgeError::Crypto(format!("public key of {}: {e}", sk.kid));
    let spki = pem_der(&sk.public_key_pem, "PUBLIC KEY").ok_or_else(|| bad(&"not a PEM public key"))?;
    let (mut jwk, verifier) = match alg.family() {
        KeyFamily::Ed25519 => {
            let vk = ed25519_dalek::VerifyingKey::from_public_key_pem(&sk.public_key_pem).map_err(|e| bad(&e))?;
            let raw = vk.to_bytes();
            let verifier = ParsedPublicKey::new(alg.verification(), raw).map_err(|e| bad(&e))?;
            (json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(raw)}), verifier)
        }
        KeyFamily::Ec(_, curve, len) => {
            let verifier = ParsedPublicKey::new(alg.verification(), &spki).map_err(|e| bad(&e))?;
            // The SubjectPublicKeyInfo ends with the uncompressed SEC1 point: 0x04 || x || y.
            let point = spki.get(spki.len().saturating_sub(2 * len + 1)..).unwrap_or_default();
            if point.len() != 2 * len + 1 || point[0] != 4 {
                return Err(bad(&format!("not an uncompressed {curve} point")));
            }
            let jwk = json!({
                "kty": "EC", "crv": curve,
                "x": URL_SAFE_NO_PAD.encode(&point[1..1 + len]), "y": URL_SAFE_NO_PAD.encode(&point[1 + len..]),
            });
            (jwk, verifier)
        }
        KeyFamily::Rsa(_) => {
            use rsa::traits::PublicKeyParts;
            let pk = rsa::RsaPublicKey::from_public_key_pem(&sk.public_key_pem).map_err(|e| bad(&e))?;
            let verifier = ParsedPublicKey::new(alg.verification(), &spki).map_err(|e| bad(&e))?;
            let jwk = json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(pk.n().to_be_bytes_trimmed_vartime()),
                "e": URL_SAFE_NO_PAD.encode(pk.e().to_be_bytes_trimmed_vartime()),
            });
            (jwk, verifier)
        }
    };
    let obj = jwk.as_object_mut().ok_or_else(|| bad(&"jwk"))?;
    obj.insert("use".into(), json!("sig"));
    obj.insert("kid".into(), json!(sk.kid));
    obj.insert("alg".into(), json!(alg.as_str()));
    if let Some(der) = certificate_der(&sk.certificate) {
        obj.insert("x5c".into(), json!([STANDARD.encode(der)]));
    }
    Ok((jwk, verifier))
}

/// A key pair from outside (a Casdoor cert): what [`import_pem`] turns into a [`SigningKey`].
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct KeyImport {
    pub kid: String,
    pub owner: String,
    pub display_name: String,
    /// JWS algorithm (one of [`Alg::ALL`]).
    pub algorithm: String,
    /// Unix seconds.
    pub created_at: i64,
    /// PEM X.509 certificate of the key (published as `x5c`); must hold the key's public half.
    pub certificate: String,
    /// PEM private key: `RSA PRIVATE KEY` (PKCS#1), `PRIVATE KEY` (PKCS#8), `EC PRIVATE KEY` (SEC1) or
    /// `RSA PSS PRIVATE KEY`.
    pub private_key: String,
    /// The algorithms tokens signed with this key elsewhere carry (Casdoor: what the applications using the
    /// cert signed with), stored as its [`jeton_raft::model::AcceptedAlgorithms`]; empty: only `algorithm`.
    pub accepted_algorithms: Vec<String>,
}

/// A parsed imported key: PKCS#8 DER of the private half and PEM of the public half.
pub struct ParsedImport {
    pub pkcs8: Vec<u8>,
    pub public_key_pem: String,
}

/// Parses an imported key pair and checks it: the private key must suit the algorithm and, when a
/// certificate is given, the certificate must carry the same public key.
pub fn parse_import(k: &KeyImport) -> Result<ParsedImport, EdgeError> {
    let bad = |what: String| EdgeError::Crypto(format!("key {}: {what}", k.kid));
    let alg = Alg::parse(&k.algorithm).ok_or_else(|| bad(format!("unsupported algorithm {:?}", k.algorithm)))?;
    if let Some(other) = k.accepted_algorithms.iter().find(|a| !Alg::parse(a).is_some_and(|a| a.same_key_as(alg))) {
        return Err(bad(format!("a {} key cannot have signed {other:?} tokens", alg.as_str())));
    }
    let (label, der) = pem_any(&k.private_key).ok_or_else(|| bad("the private key is not PEM".into()))?;
    let (pkcs8, spki): (Vec<u8>, Vec<u8>) = match alg.family() {
        KeyFamily::Ed25519 => {
            let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| bad(format!("Ed25519 key: {e}")))?;
            let spki = kp.public_key().as_der().map_err(|_| bad("public key".into()))?;
            (der.clone(), spki.as_ref().to_vec())
        }
        KeyFamily::Ec(signing, curve, _) => {
            // SEC1 (`EC PRIVATE KEY`) or PKCS#8.
            let kp = EcdsaKeyPair::from_private_key_der(signing, &der)
                .map_err(|e| bad(format!("{label} is not a {curve} key: {e}")))?;
            let pkcs8 = kp.to_pkcs8v1().map_err(|_| bad("cannot re-encode the key".into()))?;
            let spki = kp.public_key().as_der().map_err(|_| bad("public key".into()))?;
            (pkcs8.as_ref().to_vec(), spki.as_ref().to_vec())
        }
        KeyFamily::Rsa(_) => {
            // PKCS#8 (also Casdoor's `RSA PSS PRIVATE KEY`) or PKCS#1.
            let kp = RsaKeyPair::from_pkcs8(&der)
                .or_else(|_| RsaKeyPair::from_der(&der))
                .map_err(|e| bad(format!("{label} is not an RSA key: {e}")))?;
            let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp)
                .map_err(|_| bad("cannot re-encode the key".into()))?;
            let spki = kp.public_key().as_der().map_err(|_| bad("public key".into()))?;
            (pkcs8.as_ref().to_vec(), spki.as_ref().to_vec())
        }
    };
    if !k.certificate.trim().is_empty() {
        let cert = certificate_der(&k.certificate).ok_or_else(|| bad("the certificate is not PEM".into()))?;
        // A certificate holds its SubjectPublicKeyInfo verbatim.
        if !cert.windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(bad("the certificate does not hold the private key's public key".into()));
        }
    }
    Ok(ParsedImport { pkcs8, public_key_pem: to_pem("PUBLIC KEY", &spki) })
}

/// Turns an imported key pair into a stored key, its private half sealed with `kek`.
pub fn import_pem(k: &KeyImport, kek: &Kek) -> Result<SigningKey, EdgeError> {
    let parsed = parse_import(k)?;
    let sk = SigningKey {
        kid: k.kid.clone(),
        owner: k.owner.clone(),
        display_name: k.display_name.clone(),
        algorithm: k.algorithm.clone(),
        created_at: k.created_at,
        public_key_pem: parsed.public_key_pem,
        certificate: k.certificate.clone(),
        private_key_sealed: kek.seal(&k.kid, &parsed.pkcs8)?,
        retire_at: 0,
    };
    // Load it once: what cannot sign here is refused now, not when the keyring reloads.
    LoadedKey::load(&sk, kek)?.accept(&k.accepted_algorithms)?;
    Ok(sk)
}

/// The `kid` of a compact JWS's header, without verifying anything.
pub fn header_kid(token: &str) -> Option<String> {
    let header_b64 = token.split('.').next()?;
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).ok()?).ok()?;
    header.get("kid")?.as_str().map(str::to_string)
}

/// The label and DER of the first PEM block.
fn pem_any(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let label_end = pem[start..].find("-----")? + start;
    let label = pem[start..label_end].to_string();
    let der = pem_der(pem, &label)?;
    Some((label, der))
}

/// DER of the first PEM block with this label.
fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end_marker = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let end = pem[start..].find(&end_marker)? + start;
    let body: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).ok()
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// DER of the first certificate in a PEM string.
fn certificate_der(pem: &str) -> Option<Vec<u8>> {
    pem_der(pem, "CERTIFICATE")
}

/// All keys of the node, parsed, plus the pre-encoded JWKS document.
#[derive(Default)]
pub struct KeySet {
    pub keys: HashMap<String, Arc<LoadedKey>>,
    /// `{"keys":[...]}`, newest first; rebuilt only when keys change.
    pub jwks: Bytes,
}

/// The keyring: swapped as a whole when a key changes.
pub struct Keyring {
    current: RwLock<Arc<KeySet>>,
}

impl Keyring {
    /// Loads every stored key.
    pub fn load(store: &Store, kek: &Kek) -> Result<Keyring, EdgeError> {
        let ring = Keyring { current: RwLock::new(Arc::new(KeySet::default())) };
        ring.reload(store, kek)?;
        Ok(ring)
    }

    /// Rebuilds the key set and the JWKS from the store.
    pub fn reload(&self, store: &Store, kek: &Kek) -> Result<(), EdgeError> {
        let mut loaded = Vec::new();
        for rec in store.signing_keys() {
            let sk = rec?.to_owned()?;
            let accepted = match store.accepted_algorithms(&sk.kid)? {
                Some(a) => a.to_owned()?.algorithms,
                None => Vec::new(),
            };
            match LoadedKey::load(&sk, kek) {
                Ok(mut k) => {
                    if let Err(e) = k.accept(&accepted) {
                        tracing::error!(kid = %sk.kid, "only the key's own algorithm is accepted: {e}");
                    }
                    loaded.push((sk.created_at, Arc::new(k)))
                }
                // One bad key must not take every other key down with it (Casdoor 11.22).
                Err(e) => tracing::error!(kid = %sk.kid, "signing key not loaded: {e}"),
            }
        }
        loaded.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.kid.cmp(&b.1.kid)));
        let jwks: Vec<&Value> = loaded.iter().map(|(_, k)| &k.jwk).collect();
        let jwks = Bytes::from(serde_json::to_vec(&json!({ "keys": jwks }))?);
        let keys = loaded.into_iter().map(|(_, k)| (k.kid.clone(), k)).collect();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(KeySet { keys, jwks });
        Ok(())
    }

    pub fn get(&self, kid: &str) -> Option<Arc<LoadedKey>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).keys.get(kid).cloned()
    }

    pub fn jwks(&self) -> Bytes {
        self.current.read().unwrap_or_else(|p| p.into_inner()).jwks.clone()
    }

    /// The newest active key of an algorithm.
    pub fn default_for(&self, alg: Alg) -> Option<Arc<LoadedKey>> {
        let set = self.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        set.keys
            .values()
            .filter(|k| k.alg == alg && k.active)
            .max_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.kid.cmp(&b.kid)))
            .cloned()
    }
}

#[cfg(test)]
mod import_tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/casdoor/keys/");
        std::fs::read_to_string(format!("{dir}{name}")).expect("fixture key")
    }

    fn kek() -> Kek {
        Kek::from_hex(&"ab".repeat(32)).expect("kek")
    }

    fn import(cert: &str, alg: &str) -> Result<SigningKey, EdgeError> {
        let k = KeyImport {
            kid: cert.into(),
            owner: "admin".into(),
            algorithm: alg.into(),
            certificate: fixture(&format!("{cert}.pem")),
            private_key: fixture(&format!("{cert}.key")),
            ..Default::default()
        };
        import_pem(&k, &kek())
    }

    #[test]
    fn casdoor_key_formats_load_sign_and_verify() {
        // PKCS#8 RSA, PKCS#1 RSA, SEC1 P-256 / P-384 / P-521; RSA keys also sign PSS.
        for (cert, alg) in [
            ("cert-built-in", "RS256"),
            ("cert-acme-rs512", "RS512"),
            ("cert-acme-rs512", "PS256"),
            ("cert-built-in", "PS384"),
            ("cert-built-in", "PS512"),
            ("cert-acme-es256", "ES256"),
            ("cert-globex-es384", "ES384"),
            ("cert-globex-es512", "ES512"),
        ] {
            let sk = import(cert, alg).unwrap_or_else(|e| panic!("{cert} {alg}: {e}"));
            let key = LoadedKey::load(&sk, &kek()).expect("load");
            let exp = crate::clock::now() + 60;
            let token = key.sign(&key.access_header, format!(r#"{{"exp":{exp}}}"#).as_bytes()).expect("sign");
            assert_eq!(key.verify(&token).expect("verify")["exp"], exp, "{alg}");
            assert_eq!(key.jwk["kid"], cert);
            assert_eq!(key.jwk["alg"], alg);
            // A flipped signature byte fails.
            let mut bad = token.clone().into_bytes();
            let i = bad.len() - 3;
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            assert!(key.verify(std::str::from_utf8(&bad).expect("utf8")).is_err(), "{alg}");
            let expired = key.sign(&key.access_header, b"{\"exp\":1}").expect("sign");
            assert_eq!(key.verify(&expired), Err(VerifyError::Expired));
        }
    }

    /// A key accepts its own algorithm and the ones it is given, nothing else: an imported RSA key that
    /// Casdoor's applications signed RS256 and RS512 with verifies both, and refuses PS256 and RS384.
    #[test]
    fn a_key_accepts_exactly_its_algorithms() {
        let token = |alg: &str| {
            let signer = LoadedKey::load(&import("cert-acme-rs512", alg).expect("import"), &kek()).expect("load");
            let exp = crate::clock::now() + 60;
            signer.sign(&signer.access_header, format!(r#"{{"exp":{exp}}}"#).as_bytes()).expect("sign")
        };
        let sk = import("cert-acme-rs512", "RS256").expect("import");
        let mut key = LoadedKey::load(&sk, &kek()).expect("load");
        assert!(key.verify(&token("RS256")).is_ok());
        assert_eq!(key.verify(&token("RS512")), Err(VerifyError::Algorithm), "one key, one algorithm");
        key.accept(&["RS256".to_string(), "RS512".to_string()]).expect("RSA algorithms suit an RSA key");
        assert!(key.verify(&token("RS256")).is_ok());
        assert!(key.verify(&token("RS512")).is_ok());
        for other in ["PS256", "RS384"] {
            assert_eq!(key.verify(&token(other)), Err(VerifyError::Algorithm), "{other}");
        }
        // What the key cannot verify is refused, and changes nothing.
        assert!(key.accept(&["ES256".to_string()]).is_err());
        assert_eq!(key.accepted, [Alg::RS256, Alg::RS512]);
        let k = KeyImport {
            kid: "cert-acme-es256".into(),
            algorithm: "ES256".into(),
            certificate: fixture("cert-acme-es256.pem"),
            private_key: fixture("cert-acme-es256.key"),
            accepted_algorithms: vec!["ES256".into(), "ES384".into()],
            ..Default::default()
        };
        assert!(import_pem(&k, &kek()).is_err(), "a P-256 key never signed ES384");
    }

    #[test]
    fn wrong_curve_wrong_certificate_and_ssl_keys_are_refused() {
        assert!(import("cert-acme-es256", "ES384").is_err(), "a P-256 key is not ES384");
        assert!(import("cert-acme-es256", "RS256").is_err());
        assert!(import("cert-built-in", "ES256").is_err());
        let k = KeyImport {
            kid: "mixed".into(),
            algorithm: "RS256".into(),
            certificate: fixture("cert-acme-rs512.pem"),
            private_key: fixture("cert-built-in.key"),
            ..Default::default()
        };
        assert!(import_pem(&k, &kek()).is_err(), "certificate of another key");
        let k = KeyImport {
            kid: "x".into(),
            algorithm: "RS256".into(),
            private_key: "garbage".into(),
            ..Default::default()
        };
        assert!(import_pem(&k, &kek()).is_err());
    }
}
