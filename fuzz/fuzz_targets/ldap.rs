//! What an LDAP client sends: BER-encoded LDAP messages (RFC 4511) decoded by the listener's codec with
//! its message-size limit, then bind DNs, search bases and compare targets parsed as DNs and search
//! filters evaluated on a sample entry (`jeton_edge::fuzzing::ldap_stream` states the properties checked).
//!
//! Input: the byte stream of one connection.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = jeton_edge::fuzzing::ldap_stream(data, 64 * 1024);
});
