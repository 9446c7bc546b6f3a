//! RADIUS authenticators and credentials: Message-Authenticator, CHAP, MS-CHAPv2 and MPPE keys.
//!
//! Pure functions over the raw bytes of a packet, so that the listener needs no packet type of a crate to
//! check or sign one (the `radius` crate computes neither Message-Authenticator nor MS-CHAPv2). Nothing
//! here panics on what a client sent: every length is checked, and a packet that does not add up is
//! [`Malformed`]. Authenticators, responses and codes are compared in constant time.
//!
//! # Message-Authenticator (attribute 80)
//! HMAC-MD5 keyed with the shared secret over the whole packet (code, identifier, length, the 16 octets
//! of the authenticator field, attributes), with the 16 octets of the Message-Authenticator taken as
//! zeros. What stands in the authenticator field while it is computed depends on the code:
//!
//! | packet | authenticator field while the HMAC is computed | rule |
//! |---|---|---|
//! | Access-Request, Status-Server | the packet's own (random) Request Authenticator | RFC 3579 §3.2, RFC 5997 §3 |
//! | Accounting-Request, CoA-Request, Disconnect-Request | 16 zero octets | RFC 5176 §3.5 for CoA/Disconnect; no RFC says it for Accounting-Request, which takes the same rule because its Request Authenticator is an MD5 over the packet *including* the Message-Authenticator, so the HMAC must be computed first, over zeros (what FreeRADIUS does) |
//! | every answer: Access-Accept/Reject/Challenge, Accounting-Response, CoA/Disconnect ACK/NAK | the Request Authenticator of the request answered | RFC 3579 §3.2; RFC 5997 §3 for answers to Status-Server; RFC 5176 §3.5 |
//!
//! No RFC covers a Message-Authenticator in an Accounting-Response to an Accounting-Request; the
//! request-authenticator rule of the other answers is applied there too (as FreeRADIUS's current code
//! does; older versions used zeros), so such answers are better sent without one.
//!
//! A packet with more than one Message-Authenticator, or one whose length is not 18, is [`Malformed`]
//! (RFC 3579 §3.3 allows at most one, RFC 2869 §5.14 fixes its length). In an answer the
//! Message-Authenticator is computed before the Response Authenticator, which then covers it
//! ([`sign_reply`]).
//!
//! # Credentials
//! PAP (RFC 2865 §5.2: [`pap_decrypt`]), CHAP (RFC 2865 §5.3, RFC 1994: [`chap_ok`]) and MS-CHAPv2 (RFC
//! 2759, carried as in RFC 2548: [`mschapv2_verify`]) with the 128-bit MPPE keys of RFC 3079, encrypted
//! for the MS-MPPE-Send-Key and MS-MPPE-Recv-Key attributes as in RFC 2548 §2.4.2–2.4.3
//! ([`mppe_key_attribute`]).

use std::ops::Range;

use des::cipher::{BlockCipherEncrypt, KeyInit};
use des::Des;
use hmac::{Hmac, Mac};
use md4::Md4;
use md5::{Digest, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// Code, identifier, length and authenticator.
pub const HEADER_LEN: usize = 20;

/// Packet codes (RFC 2865 §3, RFC 2866 §3, RFC 5997, RFC 5176).
pub mod code {
    pub const ACCESS_REQUEST: u8 = 1;
    pub const ACCESS_ACCEPT: u8 = 2;
    pub const ACCESS_REJECT: u8 = 3;
    pub const ACCOUNTING_REQUEST: u8 = 4;
    pub const ACCOUNTING_RESPONSE: u8 = 5;
    pub const ACCESS_CHALLENGE: u8 = 11;
    pub const STATUS_SERVER: u8 = 12;
    pub const DISCONNECT_REQUEST: u8 = 40;
    pub const DISCONNECT_ACK: u8 = 41;
    pub const DISCONNECT_NAK: u8 = 42;
    pub const COA_REQUEST: u8 = 43;
    pub const COA_ACK: u8 = 44;
    pub const COA_NAK: u8 = 45;
}

/// Attribute types used by these functions (RFC 2865 §5, RFC 2869 §5.14).
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const CHAP_PASSWORD: u8 = 3;
    pub const FILTER_ID: u8 = 11;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const STATE: u8 = 24;
    pub const CLASS: u8 = 25;
    pub const VENDOR_SPECIFIC: u8 = 26;
    pub const SESSION_TIMEOUT: u8 = 27;
    pub const IDLE_TIMEOUT: u8 = 28;
    pub const CHAP_CHALLENGE: u8 = 60;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

/// The Microsoft vendor id and its vendor attribute types (RFC 2548 §2).
pub mod ms {
    pub const VENDOR: u32 = 311;
    pub const CHAP_ERROR: u8 = 2;
    pub const MPPE_ENCRYPTION_POLICY: u8 = 7;
    pub const MPPE_ENCRYPTION_TYPES: u8 = 8;
    pub const CHAP_CHALLENGE: u8 = 11;
    pub const MPPE_SEND_KEY: u8 = 16;
    pub const MPPE_RECV_KEY: u8 = 17;
    pub const CHAP2_RESPONSE: u8 = 25;
    pub const CHAP2_SUCCESS: u8 = 26;
    /// MS-MPPE-Encryption-Policy values (RFC 2548 §2.4.4).
    pub const POLICY_ALLOWED: u32 = 1;
    pub const POLICY_REQUIRED: u32 = 2;
    /// MS-MPPE-Encryption-Types bits (RFC 2548 §2.4.5).
    pub const TYPES_40_BIT: u32 = 0x2;
    pub const TYPES_128_BIT: u32 = 0x4;
}

/// Why bytes are not a packet (or a value) these functions can work on. Every case means: discard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Shorter than a header, or the Length field is below 20 or beyond the bytes received (RFC 2865 §3).
    #[error("packet length")]
    Length,
    /// An attribute (or vendor sub-attribute) at this offset of the packet has a length below 2 or
    /// running past the end of the packet.
    #[error("attribute at offset {0}: bad length")]
    Attribute(usize),
    /// A Message-Authenticator whose length is not 18.
    #[error("Message-Authenticator of bad length")]
    MessageAuthenticatorLength,
    /// More than one Message-Authenticator.
    #[error("more than one Message-Authenticator")]
    DuplicateMessageAuthenticator,
    /// A code that is not a request, given to [`check_request`].
    #[error("code {0} is not a request")]
    NotARequest(u8),
    /// An attribute value of the wrong size for what it carries (User-Password, MS-CHAP values, MPPE key).
    #[error("value of bad length")]
    ValueLength,
    /// A value too long for one attribute, or a packet that would outgrow its 16-bit Length field.
    #[error("too long for an attribute or a packet")]
    TooLong,
}

/// What the Message-Authenticator of a packet says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageAuth {
    /// The packet carries none.
    Absent,
    /// It carries one and it matches the shared secret.
    Valid,
    /// It carries one that does not match: a wrong secret or a forged packet. Discard silently.
    Invalid,
}

type HmacMd5 = Hmac<Md5>;

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The packet's length from its Length field, checked against the bytes received: octets past it are
/// padding to ignore, a packet shorter than it is malformed (RFC 2865 §3). No upper bound beyond the
/// 16-bit field: the listener enforces 4096 on UDP (RFC 2865 §3) or the larger RadSec limit.
pub fn packet_len(packet: &[u8]) -> Result<usize, Malformed> {
    if packet.len() < HEADER_LEN {
        return Err(Malformed::Length);
    }
    let len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if len < HEADER_LEN || len > packet.len() {
        return Err(Malformed::Length);
    }
    Ok(len)
}

/// The 16 octets of the authenticator field.
pub fn authenticator(packet: &[u8]) -> Result<[u8; 16], Malformed> {
    packet_len(packet)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(&packet[4..HEADER_LEN]);
    Ok(a)
}

/// The attributes of a packet as (type, range of the value in `packet`), in order. Stops after the
/// first malformed attribute, which it yields as an error.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    packet: &'a [u8],
    pos: usize,
    end: usize,
}

impl Iterator for Attributes<'_> {
    type Item = Result<(u8, Range<usize>), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let at = self.pos;
        let rest = self.packet.get(at..self.end).unwrap_or_default();
        match rest {
            [typ, len, ..] if *len >= 2 && usize::from(*len) <= rest.len() => {
                self.pos = at + usize::from(*len);
                Some(Ok((*typ, at + 2..self.pos)))
            }
            _ => {
                self.pos = self.end;
                Some(Err(Malformed::Attribute(at)))
            }
        }
    }
}

/// Walks the attribute list of a packet (bounded by its Length field).
pub fn attributes(packet: &[u8]) -> Result<Attributes<'_>, Malformed> {
    let end = packet_len(packet)?;
    Ok(Attributes { packet, pos: HEADER_LEN, end })
}

/// The value of the first attribute of type `typ`, as a range of `packet`. The whole list is walked, so
/// a malformed attribute anywhere is an error even when the one looked for comes first.
pub fn find_attribute(packet: &[u8], typ: u8) -> Result<Option<Range<usize>>, Malformed> {
    let mut found = None;
    for a in attributes(packet)? {
        let (t, range) = a?;
        if t == typ && found.is_none() {
            found = Some(range);
        }
    }
    Ok(found)
}

/// The value of the first vendor sub-attribute `typ` of `vendor`, as a range of `packet`, from the
/// Vendor-Specific attributes in the format RFC 2865 §5.26 recommends (vendor id, then type/length/value
/// sub-attributes; one attribute may hold several). Sub-attributes of `vendor` that do not add up are an
/// error; other vendors' attributes are not parsed (not all of them use that format).
pub fn find_vendor_attribute(packet: &[u8], vendor: u32, typ: u8) -> Result<Option<Range<usize>>, Malformed> {
    let mut found = None;
    for a in attributes(packet)? {
        let (t, range) = a?;
        if t != attr::VENDOR_SPECIFIC {
            continue;
        }
        let value = &packet[range.clone()];
        let &[v0, v1, v2, v3, ..] = value else {
            return Err(Malformed::Attribute(range.start - 2));
        };
        if u32::from_be_bytes([v0, v1, v2, v3]) != vendor {
            continue;
        }
        let mut at = range.start + 4;
        while at < range.end {
            match &packet[at..range.end] {
                [t, len, ..] if *len >= 2 && usize::from(*len) <= range.end - at => {
                    if *t == typ && found.is_none() {
                        found = Some(at + 2..at + usize::from(*len));
                    }
                    at += usize::from(*len);
                }
                _ => return Err(Malformed::Attribute(at)),
            }
        }
    }
    Ok(found)
}

/// A Vendor-Specific attribute (type 26) holding one sub-attribute `typ` of `vendor` (RFC 2865 §5.26):
/// the bytes to append to a packet. At most 247 octets of value fit.
pub fn vendor_attribute(vendor: u32, typ: u8, value: &[u8]) -> Result<Vec<u8>, Malformed> {
    let inner = vendor_value(vendor, typ, value)?;
    let mut out = Vec::with_capacity(inner.len() + 2);
    out.extend_from_slice(&[attr::VENDOR_SPECIFIC, inner.len() as u8 + 2]);
    out.extend_from_slice(&inner);
    Ok(out)
}

/// The value of such a Vendor-Specific attribute, without its type and length octets: vendor id, then
/// the sub-attribute.
pub fn vendor_value(vendor: u32, typ: u8, value: &[u8]) -> Result<Vec<u8>, Malformed> {
    if value.len() > 247 {
        return Err(Malformed::TooLong);
    }
    let mut out = Vec::with_capacity(value.len() + 6);
    out.extend_from_slice(&vendor.to_be_bytes());
    out.extend_from_slice(&[typ, value.len() as u8 + 2]);
    out.extend_from_slice(value);
    Ok(out)
}

/// The offset of the Message-Authenticator value in `packet` (already cut to its Length), if any.
fn message_authenticator_at(packet: &[u8]) -> Result<Option<usize>, Malformed> {
    let mut found = None;
    for a in attributes(packet)? {
        let (t, range) = a?;
        if t != attr::MESSAGE_AUTHENTICATOR {
            continue;
        }
        if range.len() != 16 {
            return Err(Malformed::MessageAuthenticatorLength);
        }
        if found.is_some() {
            return Err(Malformed::DuplicateMessageAuthenticator);
        }
        found = Some(range.start);
    }
    Ok(found)
}

/// HMAC-MD5 over `packet` with `authenticator` in the authenticator field and zeros in place of the
/// Message-Authenticator value at `at`.
fn message_authenticator_value(packet: &[u8], authenticator: &[u8; 16], at: usize, secret: &[u8]) -> [u8; 16] {
    let mut mac = <HmacMd5 as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(&packet[..4]);
    mac.update(authenticator);
    mac.update(&packet[HEADER_LEN..at]);
    mac.update(&[0u8; 16]);
    mac.update(&packet[at + 16..]);
    mac.finalize().into_bytes().into()
}

fn check_with(packet: &[u8], authenticator: &[u8; 16], secret: &[u8]) -> Result<MessageAuth, Malformed> {
    let Some(at) = message_authenticator_at(packet)? else {
        return Ok(MessageAuth::Absent);
    };
    let expected = message_authenticator_value(packet, authenticator, at, secret);
    Ok(if ct_eq(&expected, &packet[at..at + 16]) { MessageAuth::Valid } else { MessageAuth::Invalid })
}

/// Checks the Message-Authenticator of a request as its code requires (see the module's table):
/// Access-Request and Status-Server over their own Request Authenticator; Accounting-Request,
/// CoA-Request and Disconnect-Request over 16 zero octets. Any other code is [`Malformed::NotARequest`].
///
/// Whether an absent Message-Authenticator is acceptable is the caller's rule: RFC 5997 requires one in
/// Status-Server, RFC 3579 in anything with EAP-Message, and the Blast-RADIUS advice in every
/// Access-Request.
pub fn check_request(packet: &[u8], secret: &[u8]) -> Result<MessageAuth, Malformed> {
    let len = packet_len(packet)?;
    let packet = &packet[..len];
    let field = match packet[0] {
        code::ACCESS_REQUEST | code::STATUS_SERVER => authenticator(packet)?,
        code::ACCOUNTING_REQUEST | code::COA_REQUEST | code::DISCONNECT_REQUEST => [0u8; 16],
        other => return Err(Malformed::NotARequest(other)),
    };
    check_with(packet, &field, secret)
}

/// Checks the Message-Authenticator of an answer to the request whose Request Authenticator is
/// `request_authenticator` (what a client does; the server uses it in tests).
pub fn check_reply(reply: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> Result<MessageAuth, Malformed> {
    let len = packet_len(reply)?;
    check_with(&reply[..len], request_authenticator, secret)
}

/// Whether the Response Authenticator of an answer is MD5(Code+ID+Length+RequestAuth+Attributes+Secret)
/// (RFC 2865 §3, RFC 2866 §3), compared in constant time.
pub fn response_authenticator_ok(reply: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> bool {
    let Ok(len) = packet_len(reply) else { return false };
    let expected = md5(&[&reply[..4], request_authenticator, &reply[HEADER_LEN..len], secret]);
    ct_eq(&expected, &reply[4..HEADER_LEN])
}

/// Whether the Request Authenticator of an Accounting-Request is MD5(Code+Identifier+Length+16 zero
/// octets+request attributes+shared secret) (RFC 2866 §3; the same rule as CoA-Request and
/// Disconnect-Request in RFC 5176 §2.3), compared in constant time. Does not look at the code.
pub fn accounting_request_ok(packet: &[u8], secret: &[u8]) -> bool {
    let Ok(len) = packet_len(packet) else { return false };
    let expected = md5(&[&packet[..4], &[0u8; 16], &packet[HEADER_LEN..len], secret]);
    ct_eq(&expected, &packet[4..HEADER_LEN])
}

/// Signs an encoded answer in place: if it holds a Message-Authenticator (any 16 octets), computes it
/// with the Request Authenticator in the authenticator field (RFC 3579 §3.2), then writes the Response
/// Authenticator MD5(Code+ID+Length+RequestAuth+Attributes+Secret) over the result (RFC 2865 §3). For
/// every answer: Access-Accept/Reject/Challenge, Accounting-Response, CoA/Disconnect ACK/NAK, and the
/// answers to Status-Server (RFC 5997 §3). Nothing is written when the packet is malformed.
pub fn sign_reply(reply: &mut [u8], request_authenticator: &[u8; 16], secret: &[u8]) -> Result<(), Malformed> {
    sign_with(reply, request_authenticator, request_authenticator, secret)
}

/// Signs an Accounting-Response to an Accounting-Request as [`sign_reply`] does, except that its
/// Message-Authenticator is computed over 16 zero octets in the authenticator field, as the request's
/// own is (no RFC says which; FreeRADIUS's clients check it this way). The answer to a Status-Server on
/// the accounting port is signed by [`sign_reply`].
pub fn sign_accounting_response(
    reply: &mut [u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> Result<(), Malformed> {
    sign_with(reply, request_authenticator, &[0u8; 16], secret)
}

fn sign_with(
    reply: &mut [u8],
    request_authenticator: &[u8; 16],
    message_authenticator_field: &[u8; 16],
    secret: &[u8],
) -> Result<(), Malformed> {
    let len = packet_len(reply)?;
    let packet = &mut reply[..len];
    let at = message_authenticator_at(packet)?;
    packet[4..HEADER_LEN].copy_from_slice(request_authenticator);
    if let Some(at) = at {
        let value = message_authenticator_value(packet, message_authenticator_field, at, secret);
        packet[at..at + 16].copy_from_slice(&value);
    }
    let response = md5(&[packet, secret]);
    packet[4..HEADER_LEN].copy_from_slice(&response);
    Ok(())
}

/// Adds a Message-Authenticator of zeros to an encoded packet, for [`sign_reply`] to fill, and fixes the
/// Length field. It goes first, right after the header, as the Blast-RADIUS advice (draft-ietf-radext-
/// deprecating-radius) asks of answers. A packet that already has one is left as it is. The Length field
/// must match the buffer.
pub fn insert_message_authenticator(packet: &mut Vec<u8>) -> Result<(), Malformed> {
    let len = packet_len(packet)?;
    if len != packet.len() {
        return Err(Malformed::Length);
    }
    if message_authenticator_at(packet)?.is_some() {
        return Ok(());
    }
    let new_len = u16::try_from(len + 18).map_err(|_| Malformed::TooLong)?;
    let mut ma = [0u8; 18];
    ma[0] = attr::MESSAGE_AUTHENTICATOR;
    ma[1] = 18;
    packet.splice(HEADER_LEN..HEADER_LEN, ma);
    packet[2..4].copy_from_slice(&new_len.to_be_bytes());
    Ok(())
}

/// XORs `data` (a multiple of 16 octets) in place with the MD5 chain of RFC 2865 §5.2 / RFC 2548 §2.4.2:
/// b1 = MD5(secret + first), bi = MD5(secret + c(i-1)), where c is the ciphertext block: the output when
/// encrypting, the input when decrypting.
fn md5_chain(data: &mut [u8], secret: &[u8], first: &[&[u8]], encrypt: bool) {
    let mut prev: Option<[u8; 16]> = None;
    for block in data.chunks_exact_mut(16) {
        let b = match &prev {
            None => {
                let mut parts: Vec<&[u8]> = vec![secret];
                parts.extend_from_slice(first);
                md5(&parts)
            }
            Some(c) => md5(&[secret, c]),
        };
        let mut cipher = [0u8; 16];
        if !encrypt {
            cipher.copy_from_slice(block);
        }
        for (x, k) in block.iter_mut().zip(b) {
            *x ^= k;
        }
        if encrypt {
            cipher.copy_from_slice(block);
        }
        prev = Some(cipher);
    }
}

/// The password hidden in a User-Password value (RFC 2865 §5.2): 16 to 128 octets, a multiple of 16,
/// decrypted with the shared secret and the Request Authenticator; the NUL padding at the end is removed.
pub fn pap_decrypt(hidden: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Result<Vec<u8>, Malformed> {
    if hidden.is_empty() || hidden.len() > 128 || !hidden.len().is_multiple_of(16) {
        return Err(Malformed::ValueLength);
    }
    let mut out = hidden.to_vec();
    md5_chain(&mut out, secret, &[authenticator], false);
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

/// A User-Password value hiding `password` (RFC 2865 §5.2), as a NAS makes it; `None` past 128 octets.
pub fn pap_encrypt(password: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Option<Vec<u8>> {
    if password.len() > 128 {
        return None;
    }
    let mut out = password.to_vec();
    out.resize(password.len().div_ceil(16).max(1) * 16, 0);
    md5_chain(&mut out, secret, &[authenticator], true);
    Some(out)
}

/// A CHAP-Password value (RFC 2865 §5.3): the CHAP identifier, then MD5(identifier + password +
/// challenge) (RFC 1994 §4.1). What a NAS sends; for tests and clients.
pub fn chap_password(ident: u8, password: &[u8], challenge: &[u8]) -> [u8; 17] {
    let mut out = [0u8; 17];
    out[0] = ident;
    out[1..].copy_from_slice(&md5(&[&[ident], password, challenge]));
    out
}

/// Whether a CHAP-Password value (identifier + 16-octet response) answers `challenge` with `password`.
/// `challenge` is the CHAP-Challenge attribute's value, or the Request Authenticator when the request
/// has none (RFC 2865 §2.2). An empty challenge or a value not of 17 octets never matches.
pub fn chap_ok(chap_password: &[u8], challenge: &[u8], password: &[u8]) -> bool {
    let [ident, response @ ..] = chap_password else { return false };
    if response.len() != 16 || challenge.is_empty() {
        return false;
    }
    ct_eq(&md5(&[&[*ident], password, challenge]), response)
}

/// NtPasswordHash (RFC 2759 §8.3), from the password service, which also derives NT-hash credentials
/// with it.
pub use crate::passwords::nt_credential::nt_hash;

fn md4(data: &[u8]) -> [u8; 16] {
    Md4::digest(data).into()
}

/// The user name as ChallengeHash takes it: "excluding any prepended domain name" (RFC 2759 §8.2), i.e.
/// what follows the first backslash of `DOMAIN\user`.
fn mschap_user(user_name: &[u8]) -> &[u8] {
    match user_name.iter().position(|b| *b == b'\\') {
        Some(i) => &user_name[i + 1..],
        None => user_name,
    }
}

/// ChallengeHash (RFC 2759 §8.2): the first 8 octets of SHA-1(PeerChallenge + AuthenticatorChallenge +
/// UserName).
fn challenge_hash(peer_challenge: &[u8; 16], authenticator_challenge: &[u8; 16], user_name: &[u8]) -> [u8; 8] {
    let d = sha1(&[peer_challenge, authenticator_challenge, mschap_user(user_name)]);
    let mut c = [0u8; 8];
    c.copy_from_slice(&d[..8]);
    c
}

/// A DES key from 7 octets: each 7 bits in the high bits of an octet, the low bit set for odd parity
/// (RFC 2759 §8.6 and the example of §9.3; the cipher itself ignores parity).
fn des_key(raw: &[u8; 7]) -> [u8; 8] {
    let bits = raw.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    let mut key = [0u8; 8];
    for (i, k) in key.iter_mut().enumerate() {
        let seven = ((bits >> (49 - 7 * i)) & 0x7f) as u8;
        let octet = seven << 1;
        *k = if octet.count_ones().is_multiple_of(2) { octet | 1 } else { octet };
    }
    key
}

fn des_encrypt(raw_key: &[u8; 7], clear: &[u8; 8]) -> [u8; 8] {
    let cipher = Des::new(&des_key(raw_key).into());
    let mut block = (*clear).into();
    cipher.encrypt_block(&mut block);
    block.into()
}

/// ChallengeResponse (RFC 2759 §8.5): the 8-octet challenge DES-encrypted with the three 7-octet thirds
/// of the NT hash padded to 21 octets with zeros.
fn challenge_response(challenge: &[u8; 8], nt_hash: &[u8; 16]) -> [u8; 24] {
    let mut z = [0u8; 21];
    z[..16].copy_from_slice(nt_hash);
    let mut out = [0u8; 24];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let mut key = [0u8; 7];
        key.copy_from_slice(&z[7 * i..7 * i + 7]);
        chunk.copy_from_slice(&des_encrypt(&key, challenge));
    }
    out
}

/// "Magic server to client signing constant" (RFC 2759 §8.7).
const AUTH_MAGIC1: &[u8] = b"Magic server to client signing constant";
/// "Pad to make it do more than one iteration" (RFC 2759 §8.7).
const AUTH_MAGIC2: &[u8] = b"Pad to make it do more than one iteration";
/// "This is the MPPE Master Key" (RFC 3079 §3.4).
const MPPE_MAGIC1: &[u8] = b"This is the MPPE Master Key";
/// RFC 3079 §3.4 Magic2: the client's send key, the server's receive key.
const MPPE_MAGIC2: &[u8] = b"On the client side, this is the send key; on the server side, it is the receive key.";
/// RFC 3079 §3.4 Magic3: the client's receive key, the server's send key.
const MPPE_MAGIC3: &[u8] = b"On the client side, this is the receive key; on the server side, it is the send key.";

/// GenerateAuthenticatorResponse (RFC 2759 §8.7) as the 20-octet digest.
fn authenticator_response(password_hash_hash: &[u8; 16], nt_response: &[u8; 24], challenge: &[u8; 8]) -> [u8; 20] {
    let digest = sha1(&[password_hash_hash, nt_response, AUTH_MAGIC1]);
    sha1(&[&digest, challenge, AUTH_MAGIC2])
}

/// GetMasterKey (RFC 3079 §3.4).
fn master_key(password_hash_hash: &[u8; 16], nt_response: &[u8; 24]) -> [u8; 16] {
    let d = sha1(&[password_hash_hash, nt_response, MPPE_MAGIC1]);
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// GetAsymetricStartKey (RFC 3079 §3.4) for a 128-bit key, with the magic already chosen.
fn asymmetric_start_key(master_key: &[u8; 16], magic: &[u8]) -> [u8; 16] {
    let d = sha1(&[master_key, &[0u8; 40], magic, &[0xf2u8; 40]]);
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// An accepted MS-CHAPv2 response: what the Access-Accept carries.
#[derive(Clone, PartialEq, Eq)]
pub struct MsChapV2Accept {
    /// The MS-CHAP2-Success value (RFC 2548 §2.3.3): the response's identifier, then the 42 octets of the
    /// authenticator response `S=` + 40 uppercase hex digits (RFC 2759 §8.7).
    pub success: Vec<u8>,
    /// The MPPE master send key from the server's side (RFC 3079 §3.4, IsSend and IsServer: Magic3),
    /// which is the client's receive key. It goes into MS-MPPE-Send-Key, the key for what the NAS sends
    /// to the peer (RFC 2548 §2.4.2).
    pub send_key: [u8; 16],
    /// The MPPE master receive key from the server's side (Magic2), the client's send key. It goes into
    /// MS-MPPE-Recv-Key, the key for what the NAS receives from the peer (RFC 2548 §2.4.3).
    pub recv_key: [u8; 16],
}

impl std::fmt::Debug for MsChapV2Accept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsChapV2Accept")
            .field("success", &String::from_utf8_lossy(&self.success))
            .finish_non_exhaustive()
    }
}

/// Checks an MS-CHAPv2 response (RFC 2759 §8.1–8.7). `authenticator_challenge` is the MS-CHAP-Challenge
/// value (16 octets, chosen by the NAS), `response` the MS-CHAP2-Response value (50 octets: identifier,
/// flags, peer challenge 16, reserved 8, NT-Response 24; RFC 2548 §2.3.2), `user_name` the User-Name
/// (a `DOMAIN\` prefix is left out of the hash, as RFC 2759 §8.2 asks). The NT-Response is compared in
/// constant time. `Ok(None)`: a well-formed response from someone who does not know the password.
pub fn mschapv2_verify(
    nt_hash: &[u8; 16],
    authenticator_challenge: &[u8],
    response: &[u8],
    user_name: &[u8],
) -> Result<Option<MsChapV2Accept>, Malformed> {
    let auth_challenge: &[u8; 16] = authenticator_challenge.try_into().map_err(|_| Malformed::ValueLength)?;
    let response: &[u8; 50] = response.try_into().map_err(|_| Malformed::ValueLength)?;
    let ident = response[0];
    let mut peer_challenge = [0u8; 16];
    peer_challenge.copy_from_slice(&response[2..18]);
    let mut nt_response = [0u8; 24];
    nt_response.copy_from_slice(&response[26..50]);

    let challenge = challenge_hash(&peer_challenge, auth_challenge, user_name);
    if !ct_eq(&challenge_response(&challenge, nt_hash), &nt_response) {
        return Ok(None);
    }
    let password_hash_hash = md4(nt_hash);
    let digest = authenticator_response(&password_hash_hash, &nt_response, &challenge);
    let mut success = Vec::with_capacity(43);
    success.push(ident);
    success.extend_from_slice(b"S=");
    success.extend_from_slice(hex::encode_upper(digest).as_bytes());
    let master = master_key(&password_hash_hash, &nt_response);
    Ok(Some(MsChapV2Accept {
        success,
        send_key: asymmetric_start_key(&master, MPPE_MAGIC3),
        recv_key: asymmetric_start_key(&master, MPPE_MAGIC2),
    }))
}

/// An MS-CHAP2-Response value as the peer computes it (GenerateNTResponse, RFC 2759 §8.1), flags and
/// reserved octets zero. For tests and clients.
pub fn mschapv2_response(
    nt_hash: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    ident: u8,
    user_name: &[u8],
) -> [u8; 50] {
    let challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name);
    let mut out = [0u8; 50];
    out[0] = ident;
    out[2..18].copy_from_slice(peer_challenge);
    out[26..].copy_from_slice(&challenge_response(&challenge, nt_hash));
    out
}

/// An MS-CHAP-Error value for a refused MS-CHAPv2 response (RFC 2548 §2.1.5, failure packet format of
/// RFC 2759 §6): the identifier, then `E=691 R=0 C=<challenge in hex> V=3 M=Authentication failed`
/// (691: authentication failure; R=0: no retry).
pub fn mschapv2_error(ident: u8, authenticator_challenge: &[u8; 16]) -> Vec<u8> {
    let mut out = vec![ident];
    out.extend_from_slice(b"E=691 R=0 C=");
    out.extend_from_slice(hex::encode_upper(authenticator_challenge).as_bytes());
    out.extend_from_slice(b" V=3 M=Authentication failed");
    out
}

/// The value of an MS-MPPE-Send-Key or MS-MPPE-Recv-Key attribute (RFC 2548 §2.4.2–2.4.3): the salt
/// (its high bit forced on, as required; it must differ between the attributes of one packet), then
/// the key length octet, the key and zero padding to a multiple of 16, encrypted with the MD5 chain
/// b1 = MD5(secret + Request Authenticator + salt), bi = MD5(secret + c(i-1)). Keys over 239 octets do
/// not fit an attribute.
pub fn mppe_key_attribute(
    key: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
    salt: u16,
) -> Result<Vec<u8>, Malformed> {
    if key.len() > 239 {
        return Err(Malformed::TooLong);
    }
    let key_len = u8::try_from(key.len()).map_err(|_| Malformed::TooLong)?;
    let salt = (salt | 0x8000).to_be_bytes();
    let mut plain = Vec::with_capacity(key.len() + 16);
    plain.push(key_len);
    plain.extend_from_slice(key);
    plain.resize(plain.len().div_ceil(16) * 16, 0);
    md5_chain(&mut plain, secret, &[request_authenticator, &salt], true);
    let mut out = salt.to_vec();
    out.extend_from_slice(&plain);
    Ok(out)
}

/// The key in an MS-MPPE-Send-Key / MS-MPPE-Recv-Key value (the inverse of [`mppe_key_attribute`]):
/// what a NAS does; for tests.
pub fn mppe_key_decrypt(value: &[u8], secret: &[u8], request_authenticator: &[u8; 16]) -> Result<Vec<u8>, Malformed> {
    let [s0, s1, cipher @ ..] = value else { return Err(Malformed::ValueLength) };
    if cipher.is_empty() || !cipher.len().is_multiple_of(16) || s0 & 0x80 == 0 {
        return Err(Malformed::ValueLength);
    }
    let mut plain = cipher.to_vec();
    md5_chain(&mut plain, secret, &[request_authenticator, &[*s0, *s1]], false);
    let key_len = usize::from(plain[0]);
    if key_len > plain.len() - 1 {
        return Err(Malformed::ValueLength);
    }
    Ok(plain[1..=key_len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).expect("test hex")
    }

    fn arr16(s: &str) -> [u8; 16] {
        unhex(s).try_into().expect("16 octets")
    }

    /// A packet from its code, identifier, authenticator and encoded attributes.
    fn packet(code: u8, id: u8, auth: &[u8; 16], attrs: &[u8]) -> Vec<u8> {
        let mut p = vec![code, id];
        p.extend_from_slice(&u16::try_from(20 + attrs.len()).unwrap().to_be_bytes());
        p.extend_from_slice(auth);
        p.extend_from_slice(attrs);
        p
    }

    /// Sets the Length field to the length of the buffer.
    fn fix_len(p: &mut [u8]) {
        let len = u16::try_from(p.len()).unwrap().to_be_bytes();
        p[2..4].copy_from_slice(&len);
    }

    const SECRET: &[u8] = b"testing123";
    const COUNTING: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    // RFC 5997 §6: three Status-Server requests and their answers, shared secret "xyzzy5461".
    const RFC5997_SECRET: &[u8] = b"xyzzy5461";
    const RFC5997_AUTH_PORT: &str = "0c da 00 26 8a 54 f4 68 6f b3 94 c5 28 66 e3 02
        18 5d 06 23 50 12 5a 66 5e 2e 1e 84 11 f3 e2 43 82 20 97 c8 4f a3";
    const RFC5997_ACCT_PORT: &str = "0c b3 00 26 92 5f 6b 66 dd 5f ed 57 1f cb 1d b7
        ad 38 82 60 50 12 e8 d6 ea bd a9 10 87 5c d9 1f da de 26 36 78 58";
    const RFC5997_VERBOSE: &str = "0c 47 00 2c bf 58 de 56 ae 40 8a d3 b7 0c 85 13
        f9 b0 3f be 04 06 c0 00 02 10 50 12 85 2d 6f ec 61 e7 ed 74 b8 e3 2d ac 2f 2a 5f b2";

    #[test]
    fn status_server_message_authenticators_of_rfc5997() {
        for hexed in [RFC5997_AUTH_PORT, RFC5997_ACCT_PORT, RFC5997_VERBOSE] {
            let p = unhex(hexed);
            assert_eq!(check_request(&p, RFC5997_SECRET), Ok(MessageAuth::Valid), "{hexed}");
            assert_eq!(check_request(&p, b"xyzzy5462"), Ok(MessageAuth::Invalid));
            // One flipped bit anywhere (header, authenticator, attributes, the M-A itself) is caught.
            for i in [1, 5, 22, p.len() - 1] {
                let mut q = p.clone();
                q[i] ^= 0x01;
                assert_eq!(check_request(&q, RFC5997_SECRET), Ok(MessageAuth::Invalid), "{hexed} bit {i}");
            }
            // Padding past the Length field is ignored (RFC 2865 §3).
            let mut padded = p.clone();
            padded.extend_from_slice(&[0xff; 7]);
            assert_eq!(check_request(&padded, RFC5997_SECRET), Ok(MessageAuth::Valid));
        }
    }

    #[test]
    fn status_server_answers_of_rfc5997() {
        // §6.1: Access-Accept, no attributes.
        let req = unhex(RFC5997_AUTH_PORT);
        let ra = authenticator(&req).unwrap();
        let mut reply = packet(code::ACCESS_ACCEPT, 0xda, &[0xaa; 16], &[]);
        sign_reply(&mut reply, &ra, RFC5997_SECRET).unwrap();
        assert_eq!(reply, unhex("02 da 00 14 ef 0d 55 2a 4b f2 d6 93 ec 2b 6f e8 b5 41 1d 66"));
        assert!(response_authenticator_ok(&reply, &ra, RFC5997_SECRET));
        // §6.2: Accounting-Response. The RFC's dump shows code 02 by mistake; its authenticator is the
        // one of code 5, as the text says (checked with Python's hashlib).
        let req = unhex(RFC5997_ACCT_PORT);
        let ra = authenticator(&req).unwrap();
        let mut reply = packet(code::ACCOUNTING_RESPONSE, 0xb3, &[0; 16], &[]);
        sign_reply(&mut reply, &ra, RFC5997_SECRET).unwrap();
        assert_eq!(reply[4..20], unhex("0f 6f 92 14 5f 10 7e 2f 50 4e 86 0a 48 60 66 9c"));
        // §6.3: Access-Accept with a Reply-Message.
        let req = unhex(RFC5997_VERBOSE);
        let ra = authenticator(&req).unwrap();
        let mut attrs = vec![18, 32];
        attrs.extend_from_slice(b"RADIUS Server up 2 days, 18:40");
        let mut reply = packet(code::ACCESS_ACCEPT, 0x47, &[0; 16], &attrs);
        sign_reply(&mut reply, &ra, RFC5997_SECRET).unwrap();
        assert_eq!(
            reply,
            unhex(
                "02 47 00 34 46 f4 3e 62 fd 03 54 42 4c bb eb fd 6d 21 4e 06 12 20 52 41 44 49 55 53 20 53 65 72
                 76 65 72 20 75 70 20 32 20 64 61 79 73 2c 20 31 38 3a 34 30"
            )
        );
    }

    #[test]
    fn response_authenticators_of_rfc2865_examples() {
        // RFC 2865 §7.1 and §7.2; the shared secret of these examples is "xyzzy5461" (their Response
        // Authenticators check with it in Python's hashlib).
        let cases = [
            (
                "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb 98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d
                 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8 01 10 05 06 00 00 00 03",
                "02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf 9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00
                 0e 06 c0 a8 01 03",
            ),
            (
                "01 01 00 47 2a ee 86 f0 8d 0d 55 96 9c a5 97 8e 0d 33 67 a2 01 08 66 6c 6f 70 73 79 03 13 16 e9
                 75 57 c3 16 18 58 95 f2 93 ff 63 44 07 72 75 04 06 c0 a8 01 10 05 06 00 00 00 14 06 06 00 00 00
                 02 07 06 00 00 00 01",
                "02 01 00 38 15 ef bc 7d ab 26 cf a3 dc 34 d9 c0 3c 86 01 a4 06 06 00 00 00 02 07 06 00 00 00 01
                 08 06 ff ff ff fe 0a 06 00 00 00 02 0d 06 00 00 00 01 0c 06 00 00 05 dc",
            ),
        ];
        for (req, accept) in cases {
            let req = unhex(req);
            let accept = unhex(accept);
            let ra = authenticator(&req).unwrap();
            assert_eq!(check_request(&req, RFC5997_SECRET), Ok(MessageAuth::Absent));
            assert!(response_authenticator_ok(&accept, &ra, RFC5997_SECRET));
            assert!(!response_authenticator_ok(&accept, &ra, SECRET));
            let mut mine = accept.clone();
            mine[4..20].fill(0);
            sign_reply(&mut mine, &ra, RFC5997_SECRET).unwrap();
            assert_eq!(mine, accept);
            assert_eq!(check_reply(&mine, &ra, RFC5997_SECRET), Ok(MessageAuth::Absent));
        }
        // §7.1 User-Name and User-Password by attribute lookup.
        let req = unhex(cases[0].0);
        assert_eq!(find_attribute(&req, attr::USER_NAME).unwrap().map(|r| &req[r]), Some(&b"nemo"[..]));
        assert_eq!(find_attribute(&req, attr::USER_PASSWORD).unwrap().map(|r| r.len()), Some(16));
        assert_eq!(find_attribute(&req, attr::MESSAGE_AUTHENTICATOR).unwrap(), None);
    }

    // The expected packets below were computed independently with Python's hmac and hashlib modules:
    //   hmac.new(b"testing123", packet_with_zeroed_MA, hashlib.md5).digest(), and for the Accounting-
    //   Request hashlib.md5(packet_with_MA + b"testing123") over the zero authenticator.

    #[test]
    fn access_request_message_authenticator_computed_independently() {
        // Access-Request id 42, authenticator 00..0f, User-Name "alice", Message-Authenticator.
        let p = unhex("012a002d000102030405060708090a0b0c0d0e0f0107616c6963655012efa1d982ee5f38599f66df6486ec0015");
        assert_eq!(check_request(&p, SECRET), Ok(MessageAuth::Valid));
        assert_eq!(check_request(&p, b"testing124"), Ok(MessageAuth::Invalid));
        assert_eq!(check_request(&p, b""), Ok(MessageAuth::Invalid));
        // The same bytes read as an answer to another request do not check.
        assert_eq!(check_reply(&p, &[0; 16], SECRET), Ok(MessageAuth::Invalid));
    }

    #[test]
    fn accounting_request_message_authenticator_over_zero_authenticator() {
        // Accounting-Request id 7: Acct-Status-Type Start, User-Name "alice", Message-Authenticator
        // computed over a zero authenticator field, then the Request Authenticator of RFC 2866 over it.
        let p = unhex(
            "04070033587a6aea2eae3bb75c6e522e58b650892806000000010107616c69636550126fd02829c20dfb5e6ed59f0d2da0b341",
        );
        assert!(accounting_request_ok(&p, SECRET));
        assert!(!accounting_request_ok(&p, b"testing124"));
        assert_eq!(check_request(&p, SECRET), Ok(MessageAuth::Valid));
        // Computing it over the packet's own authenticator (the Access-Request rule) would not match.
        assert_eq!(check_reply(&p, &authenticator(&p).unwrap(), SECRET), Ok(MessageAuth::Invalid));
        let mut q = p.clone();
        q[30] ^= 0x80;
        assert!(!accounting_request_ok(&q, SECRET));
        assert_eq!(check_request(&q, SECRET), Ok(MessageAuth::Invalid));
        assert!(!accounting_request_ok(&p[..19], SECRET));
    }

    #[test]
    fn reply_signed_with_message_authenticator_computed_independently() {
        // Access-Accept answering the Access-Request above (authenticator 00..0f): a Message-Authenticator
        // first, then Reply-Message "welcome".
        let expected =
            unhex("022a002f869719d2d97a90528536d86f3196dacd501230671d8524a89954427f22837c7c09f1120977656c636f6d65");
        let mut reply = packet(code::ACCESS_ACCEPT, 42, &[0; 16], &[18, 9, b'w', b'e', b'l', b'c', b'o', b'm', b'e']);
        insert_message_authenticator(&mut reply).unwrap();
        assert_eq!(reply.len(), 47);
        assert_eq!(&reply[20..22], &[80, 18]);
        let before = reply.clone();
        insert_message_authenticator(&mut reply).unwrap();
        assert_eq!(reply, before, "a second insert leaves the packet alone");
        sign_reply(&mut reply, &COUNTING, SECRET).unwrap();
        assert_eq!(reply, expected);
        assert_eq!(check_reply(&reply, &COUNTING, SECRET), Ok(MessageAuth::Valid));
        assert!(response_authenticator_ok(&reply, &COUNTING, SECRET));
        assert_eq!(check_reply(&reply, &[1; 16], SECRET), Ok(MessageAuth::Invalid));
        assert!(!response_authenticator_ok(&reply, &[1; 16], SECRET));
        // Signing again what is already signed gives the same bytes: the old values are overwritten.
        let mut again = reply.clone();
        sign_reply(&mut again, &COUNTING, SECRET).unwrap();
        assert_eq!(again, expected);
    }

    #[test]
    fn every_answer_code_signs_and_checks() {
        for c in [
            code::ACCESS_ACCEPT,
            code::ACCESS_REJECT,
            code::ACCESS_CHALLENGE,
            code::ACCOUNTING_RESPONSE,
            code::COA_ACK,
            code::DISCONNECT_NAK,
        ] {
            let mut reply = packet(c, 9, &[0; 16], &[24, 6, 1, 2, 3, 4]);
            insert_message_authenticator(&mut reply).unwrap();
            sign_reply(&mut reply, &COUNTING, SECRET).unwrap();
            assert_eq!(check_reply(&reply, &COUNTING, SECRET), Ok(MessageAuth::Valid));
            assert!(response_authenticator_ok(&reply, &COUNTING, SECRET));
            assert_eq!(find_attribute(&reply, 24).unwrap().map(|r| reply[r].to_vec()), Some(vec![1, 2, 3, 4]));
        }
    }

    #[test]
    fn check_request_refuses_answers() {
        let reply = packet(code::ACCESS_ACCEPT, 1, &[0; 16], &[]);
        assert_eq!(check_request(&reply, SECRET), Err(Malformed::NotARequest(2)));
        let coa = packet(code::COA_REQUEST, 1, &[0; 16], &[]);
        assert_eq!(check_request(&coa, SECRET), Ok(MessageAuth::Absent));
    }

    #[test]
    fn malformed_packets() {
        let good = unhex(RFC5997_VERBOSE);
        // Truncated: shorter than the header, shorter than the Length field.
        assert_eq!(check_request(&good[..19], SECRET), Err(Malformed::Length));
        assert_eq!(check_request(&good[..good.len() - 1], SECRET), Err(Malformed::Length));
        assert_eq!(check_request(&[], SECRET), Err(Malformed::Length));
        assert!(!accounting_request_ok(&[], SECRET));
        // A Length field below 20.
        let mut short = good.clone();
        short[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(check_request(&short, SECRET), Err(Malformed::Length));
        assert_eq!(find_attribute(&short, 1), Err(Malformed::Length));
        // An attribute of length 0, 1 and one running past the end.
        for (at, len) in [(21, 0u8), (21, 1), (21, 200), (27, 19)] {
            let mut bad = good.clone();
            bad[at] = len;
            let err = check_request(&bad, RFC5997_SECRET).unwrap_err();
            assert!(matches!(err, Malformed::Attribute(_) | Malformed::MessageAuthenticatorLength), "{err:?}");
            assert!(find_attribute(&bad, 4).is_err(), "the whole list is walked");
        }
        // A one-octet tail after the last attribute (the Length field grew by one).
        let mut tail = good.clone();
        tail.push(80);
        tail[2..4].copy_from_slice(&45u16.to_be_bytes());
        assert_eq!(check_request(&tail, RFC5997_SECRET), Err(Malformed::Attribute(44)));
        // A Message-Authenticator of length 17 or 19.
        let mut p = packet(code::ACCESS_REQUEST, 1, &COUNTING, &[80, 17]);
        p.extend_from_slice(&[0; 15]);
        fix_len(&mut p);
        assert_eq!(check_request(&p, SECRET), Err(Malformed::MessageAuthenticatorLength));
        let mut p = packet(code::ACCESS_REQUEST, 1, &COUNTING, &[80, 19]);
        p.extend_from_slice(&[0; 17]);
        fix_len(&mut p);
        assert_eq!(check_request(&p, SECRET), Err(Malformed::MessageAuthenticatorLength));
        // Two Message-Authenticators, even both valid-looking.
        let mut attrs = vec![80, 18];
        attrs.extend_from_slice(&[0; 16]);
        attrs.extend_from_slice(&[80, 18]);
        attrs.extend_from_slice(&[0; 16]);
        let mut dup = packet(code::ACCESS_REQUEST, 1, &COUNTING, &attrs);
        assert_eq!(check_request(&dup, SECRET), Err(Malformed::DuplicateMessageAuthenticator));
        assert_eq!(sign_reply(&mut dup, &COUNTING, SECRET), Err(Malformed::DuplicateMessageAuthenticator));
        assert_eq!(&dup[4..20], &COUNTING, "nothing is written to a malformed packet");
        let mut v = dup.clone();
        assert_eq!(insert_message_authenticator(&mut v), Err(Malformed::DuplicateMessageAuthenticator));
        // insert_message_authenticator wants the buffer to be the packet.
        let mut longer = packet(code::ACCESS_ACCEPT, 1, &COUNTING, &[]);
        longer.push(0);
        assert_eq!(insert_message_authenticator(&mut longer), Err(Malformed::Length));
    }

    /// A packet of `len` octets made of Reply-Messages.
    fn filled(len: usize) -> Vec<u8> {
        let mut p = packet(code::ACCESS_ACCEPT, 1, &COUNTING, &[]);
        while p.len() < len {
            let n = (len - p.len()).min(255);
            assert!(n >= 2);
            p.push(18);
            p.push(u8::try_from(n).unwrap());
            p.resize(p.len() + n - 2, b'x');
        }
        fix_len(&mut p);
        p
    }

    #[test]
    fn packet_length_limit_for_insert() {
        let mut full = filled(65535 - 17);
        assert_eq!(insert_message_authenticator(&mut full), Err(Malformed::TooLong));
        let mut fits = filled(65535 - 18);
        insert_message_authenticator(&mut fits).unwrap();
        assert_eq!(fits.len(), 65535);
        assert_eq!(packet_len(&fits), Ok(65535));
        sign_reply(&mut fits, &COUNTING, SECRET).unwrap();
        assert_eq!(check_reply(&fits, &COUNTING, SECRET), Ok(MessageAuth::Valid));
    }

    #[test]
    fn vendor_attributes() {
        let a = vendor_attribute(ms::VENDOR, ms::CHAP_CHALLENGE, &[7; 16]).unwrap();
        assert_eq!(&a[..8], &[26, 24, 0, 0, 1, 55, 11, 18]);
        // Two sub-attributes in one Vendor-Specific, another vendor's attribute before them.
        let mut attrs = vec![26, 9, 0, 0, 0x30, 0x39, 0xff, 0xff, 0xff];
        attrs.extend_from_slice(&[26, 14, 0, 0, 1, 55, 7, 6, 0, 0, 0, 1, 8, 2]);
        attrs.extend_from_slice(&a);
        let p = packet(code::ACCESS_REQUEST, 1, &COUNTING, &attrs);
        let r = find_vendor_attribute(&p, ms::VENDOR, ms::CHAP_CHALLENGE).unwrap().unwrap();
        assert_eq!(&p[r], &[7; 16]);
        let r = find_vendor_attribute(&p, ms::VENDOR, ms::MPPE_ENCRYPTION_POLICY).unwrap().unwrap();
        assert_eq!(&p[r], &[0, 0, 0, 1]);
        let r = find_vendor_attribute(&p, ms::VENDOR, ms::MPPE_ENCRYPTION_TYPES).unwrap().unwrap();
        assert!(r.is_empty());
        assert_eq!(find_vendor_attribute(&p, ms::VENDOR, ms::CHAP2_RESPONSE).unwrap(), None);
        // Vendor 12345's attribute is not in the RFC 2865 format: skipped when looking for Microsoft's,
        // an error when looking for its own.
        assert_eq!(find_vendor_attribute(&p, 12345, 0xff), Err(Malformed::Attribute(26)));
        // A Microsoft sub-attribute running past its Vendor-Specific.
        let mut bad = attrs.clone();
        bad[9 + 6 + 1] = 9;
        let p = packet(code::ACCESS_REQUEST, 1, &COUNTING, &bad);
        assert!(matches!(find_vendor_attribute(&p, ms::VENDOR, 11), Err(Malformed::Attribute(_))));
        // A Vendor-Specific too short for a vendor id.
        let p = packet(code::ACCESS_REQUEST, 1, &COUNTING, &[26, 5, 0, 0, 1]);
        assert_eq!(find_vendor_attribute(&p, ms::VENDOR, 11), Err(Malformed::Attribute(20)));
        assert_eq!(vendor_attribute(ms::VENDOR, 1, &[0; 247]).map(|v| v.len()), Ok(255));
        assert_eq!(vendor_attribute(ms::VENDOR, 1, &[0; 248]), Err(Malformed::TooLong));
        // The value alone: what follows the attribute's type and length.
        let whole = vendor_attribute(ms::VENDOR, ms::CHAP2_SUCCESS, b"\x07S=00").unwrap();
        let value = vendor_value(ms::VENDOR, ms::CHAP2_SUCCESS, b"\x07S=00").unwrap();
        assert_eq!(value, [0, 0, 1, 0x37, ms::CHAP2_SUCCESS, 7, 7, b'S', b'=', b'0', b'0']);
        assert_eq!(&whole[2..], &value[..]);
        assert_eq!(vendor_value(ms::VENDOR, 1, &[0; 247]).map(|v| v.len()), Ok(253));
        assert_eq!(vendor_value(ms::VENDOR, 1, &[0; 248]), Err(Malformed::TooLong));
    }

    #[test]
    fn pap_computed_independently() {
        // hashlib: 16 octets of "arctangent" + NULs XOR md5(b"testing123" + authenticator 00..0f).
        let hidden = unhex("f79c6abe15931d7f7e3207240014828b");
        assert_eq!(pap_decrypt(&hidden, SECRET, &COUNTING).unwrap(), b"arctangent");
        assert_eq!(pap_encrypt(b"arctangent", SECRET, &COUNTING).unwrap(), hidden);
        // Two blocks: the second is keyed with the first ciphertext block.
        let hidden2 = unhex("f5817bb8119e0e3a782975576534e0ea7f1fcca02b7be6d557ab244cfdfb22ce");
        assert_eq!(pap_decrypt(&hidden2, SECRET, &COUNTING).unwrap(), b"correct horse battery staple");
        assert_eq!(pap_encrypt(b"correct horse battery staple", SECRET, &COUNTING).unwrap(), hidden2);
        assert_ne!(pap_decrypt(&hidden, b"testing124", &COUNTING).unwrap(), b"arctangent");
    }

    #[test]
    fn pap_lengths() {
        for n in [0usize, 1, 15, 16, 17, 31, 32, 100, 127, 128] {
            let pw: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let hidden = pap_encrypt(&pw, SECRET, &COUNTING).unwrap();
            assert_eq!(hidden.len(), n.div_ceil(16).max(1) * 16);
            assert_eq!(pap_decrypt(&hidden, SECRET, &COUNTING).unwrap(), pw);
        }
        assert_eq!(pap_encrypt(&[b'a'; 129], SECRET, &COUNTING), None);
        for n in [0usize, 1, 15, 17, 31, 144] {
            assert_eq!(pap_decrypt(&vec![0; n], SECRET, &COUNTING), Err(Malformed::ValueLength), "{n}");
        }
    }

    #[test]
    fn chap_computed_independently() {
        // hashlib.md5(bytes([0x16]) + b"arctangent" + bytes(range(16, 32))).
        let challenge: Vec<u8> = (16..32).collect();
        let mut value = vec![0x16];
        value.extend_from_slice(&unhex("9b900b6ed515ade6a5def699ea292a30"));
        assert!(chap_ok(&value, &challenge, b"arctangent"));
        assert_eq!(chap_password(0x16, b"arctangent", &challenge).to_vec(), value);
        assert!(!chap_ok(&value, &challenge, b"arctangenT"));
        assert!(!chap_ok(&value, &challenge[1..], b"arctangent"));
        let mut other_ident = value.clone();
        other_ident[0] = 0x17;
        assert!(!chap_ok(&other_ident, &challenge, b"arctangent"));
        assert!(!chap_ok(&value[..16], &challenge, b"arctangent"));
        assert!(!chap_ok(&[], &challenge, b"arctangent"));
        assert!(!chap_ok(&chap_password(1, b"", b""), b"", b""), "an empty challenge never matches");
    }

    // RFC 2759 §9.2 / RFC 3079 §3.5.3: user "User", password "clientPass".
    const AUTH_CHALLENGE: &str = "5B 5D 7C 7D 7B 3F 2F 3E 3C 2C 60 21 32 26 26 28";
    const PEER_CHALLENGE: &str = "21 40 23 24 25 5E 26 2A 28 29 5F 2B 3A 33 7C 7E";
    const NT_RESPONSE: &str = "82 30 9E CD 8D 70 8B 5E A0 8F AA 39 81 CD 83 54 42 33 11 4A 3D 85 D6 DF";

    fn rfc2759_response(ident: u8) -> Vec<u8> {
        let mut r = vec![ident, 0];
        r.extend_from_slice(&unhex(PEER_CHALLENGE));
        r.extend_from_slice(&[0; 8]);
        r.extend_from_slice(&unhex(NT_RESPONSE));
        r
    }

    #[test]
    fn rfc2759_intermediate_values() {
        let hash = nt_hash("clientPass");
        assert_eq!(hash, arr16("44 EB BA 8D 53 12 B8 D6 11 47 44 11 F5 69 89 AE"));
        assert_eq!(md4(&hash), arr16("41 C0 0C 58 4B D2 D9 1C 40 17 A2 A1 2F A5 9F 3F"));
        let c = challenge_hash(&arr16(PEER_CHALLENGE), &arr16(AUTH_CHALLENGE), b"User");
        assert_eq!(c.to_vec(), unhex("D0 2E 43 86 BC E9 12 26"));
        assert_eq!(challenge_response(&c, &hash).to_vec(), unhex(NT_RESPONSE));
        // §9.3: DES keys from the password hash of "MyPw".
        let hash = nt_hash("MyPw");
        assert_eq!(hash, arr16("FC 15 6A F7 ED CD 6C 0E DD E3 33 7D 42 7F 4E AC"));
        let k1: [u8; 7] = hash[..7].try_into().unwrap();
        let k2: [u8; 7] = hash[7..14].try_into().unwrap();
        assert_eq!(des_key(&k1).to_vec(), unhex("FD 0B 5B 5E 7F 6E 34 D9"));
        assert_eq!(des_key(&k2).to_vec(), unhex("0E 6E 79 67 37 EA 08 FE"));
    }

    #[test]
    fn nt_hash_is_utf16() {
        // Non-ASCII goes through UTF-16LE (a surrogate pair for U+1F600), not UTF-8.
        let mut h = Md4::new();
        h.update([0xe9, 0x00, 0x3d, 0xd8, 0x00, 0xde]);
        let expected: [u8; 16] = h.finalize().into();
        assert_eq!(nt_hash("é😀"), expected);
        assert_ne!(nt_hash("é😀"), md4("é😀".as_bytes()));
    }

    #[test]
    fn mschapv2_rfc2759_and_rfc3079_vectors() {
        let hash = nt_hash("clientPass");
        let accept = mschapv2_verify(&hash, &unhex(AUTH_CHALLENGE), &rfc2759_response(7), b"User").unwrap().unwrap();
        let mut success = vec![7];
        success.extend_from_slice(b"S=407A5589115FD0D6209F510FE9C04566932CDA56");
        assert_eq!(accept.success, success);
        // RFC 3079 §3.5.3 gives the server's send start key (its SendStartKey128 is the Magic3 key, the
        // one for IsSend and IsServer). The receive key (Magic2) is not in the RFC: computed with
        // Python's hashlib.sha1(MasterKey + 40*b"\0" + Magic2 + 40*b"\xf2")[:16], MasterKey from §3.5.3.
        assert_eq!(accept.send_key, arr16("8B 7C DC 14 9B 99 3A 1B A1 18 CB 15 3F 56 DC CB"));
        assert_eq!(accept.recv_key, arr16("d5f0e9521e3ea9589645e86051c82226"));
        let master = master_key(&md4(&hash), &unhex(NT_RESPONSE).try_into().unwrap());
        assert_eq!(master, arr16("FD EC E3 71 7A 8C 83 8C B3 88 E5 27 AE 3C DD 31"));
        // The client derives the same pair with the sides swapped (RFC 3079 §3.4: IsServer false).
        assert_eq!(asymmetric_start_key(&master, MPPE_MAGIC2), accept.recv_key, "client send = server recv");
        assert_eq!(asymmetric_start_key(&master, MPPE_MAGIC3), accept.send_key, "client recv = server send");
        // The peer side builds the same response.
        let built = mschapv2_response(&hash, &arr16(AUTH_CHALLENGE), &arr16(PEER_CHALLENGE), 7, b"User");
        assert_eq!(built.to_vec(), rfc2759_response(7));
    }

    #[test]
    fn mschapv2_refusals() {
        let hash = nt_hash("clientPass");
        let challenge = unhex(AUTH_CHALLENGE);
        let response = rfc2759_response(1);
        assert_eq!(mschapv2_verify(&nt_hash("clientPasS"), &challenge, &response, b"User"), Ok(None));
        assert_eq!(mschapv2_verify(&hash, &challenge, &response, b"user"), Ok(None), "the name is hashed");
        let mut other = challenge.clone();
        other[0] ^= 1;
        assert_eq!(mschapv2_verify(&hash, &other, &response, b"User"), Ok(None));
        for i in [2, 17, 26, 49] {
            let mut r = response.clone();
            r[i] ^= 0x40;
            assert_eq!(mschapv2_verify(&hash, &challenge, &r, b"User"), Ok(None), "octet {i}");
        }
        // A domain prefix is left out of the challenge hash.
        assert!(mschapv2_verify(&hash, &challenge, &response, b"CORP\\User").unwrap().is_some());
        // Lengths.
        assert_eq!(mschapv2_verify(&hash, &challenge[..15], &response, b"User"), Err(Malformed::ValueLength));
        assert_eq!(mschapv2_verify(&hash, &challenge, &response[..49], b"User"), Err(Malformed::ValueLength));
        let mut longer = response.clone();
        longer.push(0);
        assert_eq!(mschapv2_verify(&hash, &challenge, &longer, b"User"), Err(Malformed::ValueLength));
        assert_eq!(mschapv2_verify(&hash, &[], &[], b""), Err(Malformed::ValueLength));
    }

    #[test]
    fn mschapv2_round_trip_and_error_value() {
        let hash = nt_hash("pässwörd");
        let r = mschapv2_response(&hash, &COUNTING, &[9; 16], 200, b"alice");
        let accept = mschapv2_verify(&hash, &COUNTING, &r, b"alice").unwrap().unwrap();
        assert_eq!(accept.success.len(), 43);
        assert_eq!(accept.success[0], 200);
        assert!(accept.success[3..].iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)));
        assert_ne!(accept.send_key, accept.recv_key);
        let e = mschapv2_error(200, &COUNTING);
        assert_eq!(e[0], 200);
        assert_eq!(&e[1..], b"E=691 R=0 C=000102030405060708090A0B0C0D0E0F V=3 M=Authentication failed");
    }

    #[test]
    fn mppe_key_encryption() {
        // hashlib: salt 8001, plaintext 0x10 + key + 15 zeros, b1 = md5(b"testing123" + 00..0f + salt).
        let key = arr16("8b7cdc149b993a1ba118cb153f56dccb");
        let value = mppe_key_attribute(&key, SECRET, &COUNTING, 0x0001).unwrap();
        assert_eq!(value, unhex("8001222f78911e81bc02d486a8a0a785432f23e948690cf7b68255e9483cdb57bb05"));
        assert_eq!(mppe_key_decrypt(&value, SECRET, &COUNTING).unwrap(), key);
        assert_ne!(mppe_key_decrypt(&value, b"testing124", &COUNTING).ok(), Some(key.to_vec()));
        // Round trips for other lengths, salts and authenticators; the salt changes the ciphertext.
        for (len, salt) in [(0usize, 0x8000u16), (15, 0x1234), (16, 0xffff), (32, 0x8002), (239, 0x8003)] {
            let key: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let v = mppe_key_attribute(&key, SECRET, &[0x5a; 16], salt).unwrap();
            assert_eq!(v[0] & 0x80, 0x80);
            assert!((v.len() - 2).is_multiple_of(16));
            assert_eq!(mppe_key_decrypt(&v, SECRET, &[0x5a; 16]).unwrap(), key);
            let w = mppe_key_attribute(&key, SECRET, &[0x5a; 16], salt ^ 1).unwrap();
            assert_ne!(v[2..], w[2..]);
            assert!(vendor_attribute(ms::VENDOR, ms::MPPE_SEND_KEY, &v).is_ok());
        }
        assert_eq!(mppe_key_attribute(&[0; 240], SECRET, &COUNTING, 1), Err(Malformed::TooLong));
        assert_eq!(mppe_key_decrypt(&[0x80, 1], SECRET, &COUNTING), Err(Malformed::ValueLength));
        assert_eq!(mppe_key_decrypt(&value[..33], SECRET, &COUNTING), Err(Malformed::ValueLength));
        let mut low_salt = value.clone();
        low_salt[0] = 0x00;
        assert_eq!(mppe_key_decrypt(&low_salt, SECRET, &COUNTING), Err(Malformed::ValueLength));
    }
}
