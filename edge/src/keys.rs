//! Signing keys: generation, encryption at rest, the in-memory keyring and the JWKS.
//!
//! Keys are generated with the RustCrypto crates (ed25519-dalek, p256, rsa), which also give the public
//! components published in the JWKS. Signing uses aws-lc-rs key pairs parsed ONCE per key and kept in
//! memory (jsonwebtoken would re-parse the key on every token, and the bare `rsa` signer is not blinded).
//! Verification uses jsonwebtoken with decoding keys built from the same public components.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self as awssig, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use jeton_raft::model::SigningKey;
use jeton_raft::Store;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{json, Value};

use crate::EdgeError;

/// The algorithms Jeton signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EdDSA,
    ES256,
    RS256,
    RS384,
    RS512,
}

impl Alg {
    pub fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "EdDSA" => Alg::EdDSA,
            "ES256" => Alg::ES256,
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
        }
    }
    fn jsonwebtoken(self) -> Algorithm {
        match self {
            Alg::EdDSA => Algorithm::EdDSA,
            Alg::ES256 => Algorithm::ES256,
            Alg::RS256 => Algorithm::RS256,
            Alg::RS384 => Algorithm::RS384,
            Alg::RS512 => Algorithm::RS512,
        }
    }
    /// The algorithms a new key can be generated for.
    pub const GENERATED: [Alg; 3] = [Alg::EdDSA, Alg::ES256, Alg::RS256];
}

/// The node's key-encryption key: AES-256-GCM over private keys at rest.
pub struct Kek {
    key: LessSafeKey,
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
        Ok(Kek { key: LessSafeKey::new(key) })
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
    pub alg: Alg,
    /// Still signing new tokens (not retired).
    pub active: bool,
    pub retire_at: i64,
    pub created_at: i64,
    signer: Signer,
    decoding: DecodingKey,
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
        let signer = match alg {
            Alg::EdDSA => {
                Signer::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).map_err(|_| bad("bad Ed25519 key"))?)
            }
            Alg::ES256 => Signer::Ec(
                EcdsaKeyPair::from_pkcs8(&awssig::ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .map_err(|_| bad("bad P-256 key"))?,
            ),
            Alg::RS256 | Alg::RS384 | Alg::RS512 => {
                let enc: &'static dyn awssig::RsaEncoding = match alg {
                    Alg::RS256 => &awssig::RSA_PKCS1_SHA256,
                    Alg::RS384 => &awssig::RSA_PKCS1_SHA384,
                    _ => &awssig::RSA_PKCS1_SHA512,
                };
                Signer::Rsa(RsaKeyPair::from_pkcs8(&pkcs8).map_err(|_| bad("bad RSA key"))?, enc)
            }
        };
        let (jwk, decoding) = public_jwk(sk, alg)?;
        let header =
            |typ: &str| URL_SAFE_NO_PAD.encode(json!({"alg": alg.as_str(), "kid": sk.kid, "typ": typ}).to_string());
        Ok(LoadedKey {
            kid: sk.kid.clone(),
            alg,
            active: sk.retire_at == 0,
            retire_at: sk.retire_at,
            created_at: sk.created_at,
            signer,
            decoding,
            jwk,
            access_header: header("at+jwt"),
            refresh_header: header("JWT"),
        })
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

    /// Verifies a token's signature and `exp` (no leeway) and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Value, jsonwebtoken::errors::Error> {
        let mut v = jsonwebtoken::Validation::new(self.alg.jsonwebtoken());
        v.leeway = 0;
        v.validate_aud = false;
        v.validate_nbf = true;
        v.required_spec_claims = ["exp".to_string()].into_iter().collect();
        Ok(jsonwebtoken::decode::<Value>(token, &self.decoding, &v)?.claims)
    }
}

/// The public JWK of a stored key (from its public key PEM) and the matching decoding key.
fn public_jwk(sk: &SigningKey, alg: Alg) -> Result<(Value, DecodingKey), EdgeError> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let bad = |e: &dyn std::fmt::Display| EdgeError::Crypto(format!("public key of {}: {e}", sk.kid));
    let mut jwk = match alg {
        Alg::EdDSA => {
            let vk = ed25519_dalek::VerifyingKey::from_public_key_pem(&sk.public_key_pem).map_err(|e| bad(&e))?;
            json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(vk.to_bytes())})
        }
        Alg::ES256 => {
            let pk = p256::PublicKey::from_public_key_pem(&sk.public_key_pem).map_err(|e| bad(&e))?;
            let point = pk.to_sec1_bytes();
            // Uncompressed SEC1: 0x04 || x (32) || y (32).
            if point.len() != 65 {
                return Err(bad(&"not an uncompressed P-256 point"));
            }
            json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])})
        }
        Alg::RS256 | Alg::RS384 | Alg::RS512 => {
            use rsa::traits::PublicKeyParts;
            let pk = rsa::RsaPublicKey::from_public_key_pem(&sk.public_key_pem).map_err(|e| bad(&e))?;
            json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(pk.n().to_be_bytes_trimmed_vartime()),
                "e": URL_SAFE_NO_PAD.encode(pk.e().to_be_bytes_trimmed_vartime()),
            })
        }
    };
    let decoding = match alg {
        Alg::EdDSA => DecodingKey::from_ed_components(jwk["x"].as_str().unwrap_or_default()),
        Alg::ES256 => DecodingKey::from_ec_components(
            jwk["x"].as_str().unwrap_or_default(),
            jwk["y"].as_str().unwrap_or_default(),
        ),
        _ => DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap_or_default(),
            jwk["e"].as_str().unwrap_or_default(),
        ),
    }
    .map_err(|e| bad(&e))?;
    let obj = jwk.as_object_mut().ok_or_else(|| bad(&"jwk"))?;
    obj.insert("use".into(), json!("sig"));
    obj.insert("kid".into(), json!(sk.kid));
    obj.insert("alg".into(), json!(alg.as_str()));
    if let Some(der) = certificate_der(&sk.certificate) {
        obj.insert("x5c".into(), json!([STANDARD.encode(der)]));
    }
    Ok((jwk, decoding))
}

/// DER of the first certificate in a PEM string.
fn certificate_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = pem[start..].find("-----END CERTIFICATE-----")? + start;
    let body: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).ok()
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
            match LoadedKey::load(&sk, kek) {
                Ok(k) => loaded.push((sk.created_at, Arc::new(k))),
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
