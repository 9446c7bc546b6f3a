//! JWT verification as the token endpoints run it: header and claims decoding, signature, algorithm,
//! `exp`/`nbf`/issuer checks (`keys::LoadedKey::verify`, `Edge::verify_signature`), then the state checks
//! of introspection and userinfo (`Edge::check_token`, `Edge::introspect`, `Edge::userinfo`), against a
//! real node with keys of every algorithm.
//!
//! Input: a mode byte and a key byte, then
//! - mode 0: a token string (the seeds are real tokens of the fixture's keys);
//! - mode 1: claims JSON, signed here with the key's own header, so the fuzzer reaches every check after
//!   the signature;
//! - mode 2: `header JSON 0xFF claims JSON`, signed here as they are.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jeton_edge::keys::{self, VerifyError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, key, rest @ ..] = data else {
        return;
    };
    let f = jeton_fuzz::fixture();
    let key = &f.keys[*key as usize % f.keys.len()];
    let token = match mode % 3 {
        0 => match std::str::from_utf8(rest) {
            Ok(t) => t.to_string(),
            Err(_) => return,
        },
        1 => {
            let token = key.sign(&key.access_header, rest).expect("sign");
            // What a key signs with its own header, it verifies: only the claims can make it fail.
            match key.verify(&token) {
                Err(VerifyError::Signature | VerifyError::Algorithm) => panic!("a key refuses its own signature"),
                Ok(claims) => assert!(claims.get("exp").and_then(|e| e.as_i64()).is_some()),
                Err(_) => {}
            }
            token
        }
        _ => {
            let fields = jeton_fuzz::fields(rest);
            let header = URL_SAFE_NO_PAD.encode(fields[0]);
            key.sign(&header, fields.get(1).copied().unwrap_or_default()).expect("sign")
        }
    };
    let _ = keys::header_kid(&token);
    let _ = key.verify(&token);
    let edge = &f.edge;
    if let Some((claims, kid)) = edge.verify_signature(&token) {
        assert!(edge.keyring.get(&kid).is_some(), "verified by a key that is not there");
        assert!(claims.get("iss").and_then(|i| i.as_str()).is_some(), "verified without an issuer");
    }
    let _ = edge.check_token(&token);
    let _ = edge.introspect(&f.admin_client, &token);
    let _ = edge.userinfo(&token);
});
