//! What a NAS (or anyone who can reach the UDP port) sends: a RADIUS datagram through the checks the
//! listener runs before trusting it — framing, Message-Authenticator, Accounting-Request authenticator —
//! then the `radius` crate's decoding and every attribute the listener reads (User-Password, CHAP,
//! MS-CHAPv2, MPPE keys, accounting counters), and TOTP codes and secrets
//! (`jeton_edge::fuzzing::radius_packet` and `totp_input` state the properties checked).
//!
//! Input: one datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = jeton_edge::fuzzing::radius_packet(data);
    let _ = jeton_edge::fuzzing::totp_input(data);
});
