//! The `Authorization` header of the OAuth and admin endpoints: HTTP Basic (base64 of the URL-encoded
//! client id and secret, RFC 6749 §2.3.1) and Bearer.
//!
//! Input: a mode byte, then the header value (mode 0), the decoded Basic credentials that the target
//! base64-encodes (mode 1, so the fuzzer works on `id:secret` itself), or a Bearer token (mode 2).
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper::header::HeaderValue;
use jeton_edge::fuzzing::authorization;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let value = match mode % 3 {
        0 => rest.to_vec(),
        1 => format!("Basic {}", STANDARD.encode(rest)).into_bytes(),
        _ => [b"Bearer ".as_slice(), rest].concat(),
    };
    // hyper refuses what is not a header value before the endpoints see it.
    let Ok(value) = HeaderValue::from_bytes(&value) else {
        return;
    };
    let decoded = authorization(value);
    if mode % 3 == 1 {
        // Well-formed credentials always decode, and what needs no unescaping comes out as it went in.
        let Ok(text) = std::str::from_utf8(rest) else {
            assert!(decoded.is_err(), "Basic credentials that are not UTF-8");
            return;
        };
        let Some((id, secret)) = text.split_once(':') else {
            assert!(decoded.is_err(), "Basic credentials without a colon");
            return;
        };
        let (basic, _) = decoded.expect("well-formed Basic credentials");
        let (got_id, got_secret) = basic.expect("Basic credentials");
        if !text.contains(['%', '+']) {
            assert_eq!((got_id.as_str(), got_secret.as_str()), (id, secret));
        }
    }
});
