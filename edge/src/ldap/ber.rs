//! The connection codec: `ldap3_proto`'s for everything it decodes and most of what is sent, and, for the
//! messages a search sends most (its entries, and the result that ends it), a direct BER encoding. Going
//! through `ldap3_proto` builds a tree of tags with an allocation per node and re-encodes it: most of a
//! search's cost was there. The bytes are the same (the tests decode them with `ldap3_proto`).

use bytes::BytesMut;
use ldap3_proto::proto::{LdapMsg, LdapResultCode};
use ldap3_proto::LdapCodec;
use tokio_util::codec::{Decoder, Encoder};

/// What a connection sends.
pub(crate) enum Reply {
    /// Encoded by `ldap3_proto`.
    Msg(LdapMsg),
    /// Already encoded (by [`search_entry`], [`result_done`] or [`bind_done`]).
    Encoded(Vec<u8>),
}

impl From<LdapMsg> for Reply {
    fn from(m: LdapMsg) -> Reply {
        Reply::Msg(m)
    }
}

/// Decodes with `ldap3_proto` (and its message-size limit); encodes [`Reply`]s.
pub(crate) struct Codec(pub LdapCodec);

impl Decoder for Codec {
    type Item = LdapMsg;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<LdapMsg>, std::io::Error> {
        // Every LDAPMessage is a SEQUENCE: anything else (an HTTP request, TLS to the plain port) is refused
        // at its first byte rather than read as a length to wait for.
        if buf.first().is_some_and(|b| *b != SEQUENCE) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not an LDAP message"));
        }
        self.0.decode(buf)
    }
}

impl Encoder<Reply> for Codec {
    type Error = std::io::Error;

    fn encode(&mut self, reply: Reply, buf: &mut BytesMut) -> Result<(), std::io::Error> {
        match reply {
            Reply::Msg(m) => self.0.encode(m, buf),
            Reply::Encoded(bytes) => {
                buf.extend_from_slice(&bytes);
                Ok(())
            }
        }
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const ENUMERATED: u8 = 0x0a;
const OCTET_STRING: u8 = 0x04;
/// `[APPLICATION 4]` constructed: SearchResultEntry.
const SEARCH_RESULT_ENTRY: u8 = 0x64;
/// `[APPLICATION 5]` constructed: SearchResultDone.
const SEARCH_RESULT_DONE: u8 = 0x65;
/// `[APPLICATION 1]` constructed: BindResponse.
const BIND_RESPONSE: u8 = 0x61;

/// Bytes of a definite length.
fn len_size(n: usize) -> usize {
    match n {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xff_ffff => 4,
        _ => 5,
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    match len_size(n) {
        1 => out.push(n as u8),
        size => {
            out.push(0x80 | (size - 1) as u8);
            for i in (0..size - 1).rev() {
                out.push((n >> (8 * i)) as u8);
            }
        }
    }
}

/// Size of a whole TLV whose content is `content` bytes.
fn tlv(content: usize) -> usize {
    1 + len_size(content) + content
}

fn put_header(out: &mut Vec<u8>, tag: u8, content: usize) {
    out.push(tag);
    put_len(out, content);
}

fn put_octets(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    put_header(out, tag, bytes.len());
    out.extend_from_slice(bytes);
}

/// The minimal two's-complement bytes of an integer.
fn int_bytes(v: i64) -> ([u8; 8], usize) {
    let b = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (first, next) = (b[start], b[start + 1]);
        if (first == 0 && next & 0x80 == 0) || (first == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    (b, start)
}

/// The envelope of an LDAPMessage: its id and an operation of `op_content` bytes under `op_tag`.
fn message(id: i32, op_tag: u8, op_content: usize) -> Vec<u8> {
    let (id_bytes, start) = int_bytes(id as i64);
    let id_len = 8 - start;
    let body = tlv(id_len) + tlv(op_content);
    let mut out = Vec::with_capacity(tlv(body));
    put_header(&mut out, SEQUENCE, body);
    put_octets(&mut out, INTEGER, &id_bytes[start..]);
    put_header(&mut out, op_tag, op_content);
    out
}

/// A SearchResultEntry (RFC 4511 §4.5.2): the DN and its attributes with their values (none for
/// typesOnly).
pub(crate) fn search_entry<'a>(id: i32, dn: &str, attributes: &[(&str, &'a [String])], types_only: bool) -> Vec<u8> {
    let values = |v: &'a [String]| if types_only { &[][..] } else { v };
    let attr_content = |name: &str, vals: &[String]| tlv(name.len()) + tlv(vals.iter().map(|v| tlv(v.len())).sum());
    let list: usize = attributes.iter().map(|(n, v)| tlv(attr_content(n, values(v)))).sum();
    let op = tlv(dn.len()) + tlv(list);
    let mut out = message(id, SEARCH_RESULT_ENTRY, op);
    put_octets(&mut out, OCTET_STRING, dn.as_bytes());
    put_header(&mut out, SEQUENCE, list);
    for (name, vals) in attributes {
        let vals = values(vals);
        put_header(&mut out, SEQUENCE, attr_content(name, vals));
        put_octets(&mut out, OCTET_STRING, name.as_bytes());
        put_header(&mut out, SET, vals.iter().map(|v| tlv(v.len())).sum());
        for v in vals {
            put_octets(&mut out, OCTET_STRING, v.as_bytes());
        }
    }
    out
}

/// A SearchResultDone without controls.
pub(crate) fn result_done(id: i32, code: LdapResultCode, message_text: &str) -> Vec<u8> {
    result_message(id, SEARCH_RESULT_DONE, code, message_text)
}

/// A BindResponse without SASL credentials or controls.
pub(crate) fn bind_done(id: i32, code: LdapResultCode, message_text: &str) -> Vec<u8> {
    result_message(id, BIND_RESPONSE, code, message_text)
}

/// An LDAPResult (no matched DN, no referral) as the operation `tag`.
fn result_message(id: i32, tag: u8, code: LdapResultCode, message_text: &str) -> Vec<u8> {
    let (code_bytes, start) = int_bytes(code as i64);
    let op = tlv(8 - start) + tlv(0) + tlv(message_text.len());
    let mut out = message(id, tag, op);
    put_octets(&mut out, ENUMERATED, &code_bytes[start..]);
    put_octets(&mut out, OCTET_STRING, b"");
    put_octets(&mut out, OCTET_STRING, message_text.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3_proto::proto::{LdapBindResponse, LdapOp, LdapPartialAttribute, LdapResult, LdapSearchResultEntry};

    fn decode(bytes: &[u8]) -> LdapMsg {
        let mut buf = BytesMut::from(bytes);
        let msg = LdapCodec::default().decode(&mut buf).expect("decodes").expect("whole");
        assert!(buf.is_empty(), "nothing left over");
        msg
    }

    #[test]
    fn entries_decode_as_ldap3_proto_encodes_them() {
        let long = "x".repeat(300);
        let many: Vec<String> = (0..200).map(|i| format!("value-{i}")).collect();
        let alice = [String::from("alice")];
        for id in [0, 1, 127, 128, 255, 256, 65_535, 70_000, i32::MAX] {
            for types_only in [false, true] {
                let attrs: Vec<(&str, &[String])> = vec![
                    ("uid", &alice[..]),
                    ("description", std::slice::from_ref(&long)),
                    ("memberUid", &many[..]),
                    ("mail", &[][..]),
                ];
                let ours = search_entry(id, "uid=alice,ou=acme", &attrs, types_only);
                let expected = LdapSearchResultEntry {
                    dn: "uid=alice,ou=acme".into(),
                    attributes: attrs
                        .iter()
                        .map(|(n, v)| LdapPartialAttribute {
                            atype: n.to_string(),
                            vals: if types_only { vec![] } else { v.iter().map(|s| s.as_bytes().to_vec()).collect() },
                        })
                        .collect(),
                };
                assert_eq!(decode(&ours), LdapMsg::new(id, LdapOp::SearchResultEntry(expected.clone())));
                let mut theirs = BytesMut::new();
                LdapCodec::default()
                    .encode(LdapMsg::new(id, LdapOp::SearchResultEntry(expected)), &mut theirs)
                    .expect("encode");
                assert_eq!(decode(&theirs), decode(&ours));
            }
        }
    }

    #[test]
    fn results_decode_as_ldap3_proto_encodes_them() {
        for code in [LdapResultCode::Success, LdapResultCode::NoSuchObject, LdapResultCode::SizeLimitExceeded] {
            let ours = result_done(7, code.clone(), "a message");
            let expected = LdapResult { code, matcheddn: String::new(), message: "a message".into(), referral: vec![] };
            assert_eq!(decode(&ours), LdapMsg::new(7, LdapOp::SearchResultDone(expected.clone())));
            let bind = LdapBindResponse { res: expected, saslcreds: None };
            assert_eq!(
                decode(&bind_done(7, bind.res.code.clone(), "a message")),
                LdapMsg::new(7, LdapOp::BindResponse(bind))
            );
        }
    }
}
