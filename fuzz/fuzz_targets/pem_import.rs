//! PEM key import (`keys::parse_import`, `keys::import_pem`): a Casdoor cert's private key (PKCS#1, PKCS#8,
//! SEC1) and certificate, for one of the ten algorithms, with the algorithms its tokens may carry. What
//! imports must load, sign and verify its own tokens.
//!
//! Input: a selector byte (algorithm; bit 7: the key field is DER, wrapped here in the PEM label picked by
//! bits 5-6), then `private key 0xFF certificate 0xFF accepted algorithms (comma-separated)`.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jeton_edge::keys::{self, Alg, KeyImport, LoadedKey};
use libfuzzer_sys::fuzz_target;

const LABELS: [&str; 4] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "RSA PSS PRIVATE KEY"];

fn pem(label: &str, der: &[u8]) -> String {
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", STANDARD.encode(der))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let alg = Alg::ALL[(selector & 0x1F) as usize % Alg::ALL.len()];
    let f = jeton_fuzz::fields(rest);
    let private_key =
        if selector & 0x80 != 0 { pem(LABELS[(selector as usize >> 5) & 3], f[0]) } else { jeton_fuzz::text(&f, 0) };
    let accepted = jeton_fuzz::text(&f, 2);
    let k = KeyImport {
        kid: "fuzz".into(),
        owner: "admin".into(),
        display_name: "fuzz".into(),
        algorithm: alg.as_str().into(),
        created_at: 0,
        certificate: jeton_fuzz::text(&f, 1),
        private_key,
        accepted_algorithms: accepted.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect(),
    };
    let parsed = keys::parse_import(&k);
    let kek = jeton_fuzz::kek();
    let Ok(sk) = keys::import_pem(&k, &kek) else {
        return;
    };
    assert!(parsed.is_ok(), "imported what did not parse");
    let mut key = LoadedKey::load(&sk, &kek).expect("an imported key loads");
    key.accept(&k.accepted_algorithms).expect("an imported key accepts its algorithms");
    let token = key.sign(&key.access_header, br#"{"exp":4102444800}"#).expect("an imported key signs");
    key.verify(&token).expect("an imported key verifies its own token");
});
