//! Entry points for the fuzz targets (`fuzz/`): the decoders of what clients send that are private to
//! their modules, reachable without a socket. Not an API: nothing here is meant for another use, and each
//! function only runs the code the endpoints run.

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use jeton_raft::model::{Group, Organization, Role, User};

use crate::oauth::Params;
use crate::OAuthError;

/// The parameters of an OAuth request with this query string, `Content-Type` and body, as the endpoints
/// decode them (`client`: a client endpoint, which refuses a secret in the query string).
pub fn request_params(
    query: Option<&str>,
    content_type: &str,
    body: &[u8],
    client: bool,
) -> Result<Params, OAuthError> {
    let mut params = crate::http::decode::query_params(query, client)?;
    crate::http::decode::add_body_params(&mut params, content_type, body)?;
    Ok(params)
}

/// What an `Authorization` header says: HTTP Basic credentials (id and secret, URL-decoded) and a Bearer
/// token.
pub type Credentials = (Option<(String, String)>, Option<String>);

/// Decodes an `Authorization` header value as the endpoints do.
pub fn authorization(value: HeaderValue) -> Result<Credentials, OAuthError> {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    let auth = crate::http::decode::authorization(&headers, None)?;
    Ok((auth.basic, auth.bearer))
}

/// The kinds of admin API write bodies decoded into records.
#[derive(Debug, Clone, Copy)]
pub enum AdminBody {
    Organization,
    User,
    Application,
    Role,
    Group,
    /// `add-cert`: the key to generate (not generated here).
    Cert,
}

/// Decodes an admin API write body of `kind` and runs the checks that need no state; the HTTP status of
/// the refusal otherwise.
pub fn admin_body(kind: AdminBody, body: &[u8]) -> Result<(), u16> {
    let status = |r: crate::http::admin::AdminReply| r.status;
    let value = crate::http::admin::write_body(body).map_err(status)?;
    match kind {
        AdminBody::Organization => {
            let org: Organization = serde_json::from_value(value).map_err(|_| 400u16)?;
            crate::http::admin::organization::org_scheme(&org, true).map(|_| ()).map_err(status)
        }
        AdminBody::User => {
            let user: User = serde_json::from_value(value).map_err(|_| 400u16)?;
            crate::http::admin::user::check_stored_hash(&user).map_err(status)
        }
        AdminBody::Application => crate::http::admin::application::application_body(&value).map(|_| ()).map_err(status),
        AdminBody::Role => crate::http::admin::simple::simple_body::<Role>(&value).map(|_| ()).map_err(status),
        AdminBody::Group => crate::http::admin::simple::simple_body::<Group>(&value).map(|_| ()).map_err(status),
        AdminBody::Cert => crate::http::admin::cert::cert_body(&value).map(|_| ()).map_err(status),
    }
}

/// Whether the admin API's paging parameters (`p`, `pageSize`) are accepted.
pub fn admin_page(p: &str, size: &str) -> bool {
    crate::http::admin::Page::from_query(p, size).is_ok()
}

/// What the LDAP front end made of a byte stream: the messages decoded before the stream ended or failed,
/// and for each the facts its handlers derive (bind target, parsed DNs, whether the filter matched a
/// sample entry).
#[derive(Debug, Default)]
pub struct LdapDecoded {
    pub messages: usize,
    pub error: bool,
}

/// Decodes `bytes` as an LDAP client's stream, with the listener's codec and message-size limit, and runs
/// what the handlers run without state on each message: bind DN parsing, DN parsing of bases and compare
/// targets (with the property that escaping a parsed value and parsing it again gives it back), and the
/// filter evaluator on a sample user entry (with the property that NOT never turns Undefined into True).
pub fn ldap_stream(bytes: &[u8], max_message_bytes: usize) -> LdapDecoded {
    use ldap3_proto::proto::LdapOp;
    use tokio_util::codec::Decoder;

    let mut codec = ldap3_proto::LdapCodec::new(Some(max_message_bytes), None);
    let mut buf = bytes::BytesMut::from(bytes);
    let mut out = LdapDecoded::default();
    let sample = crate::directory::user_entry(
        &User {
            owner: "acme".into(),
            name: "alice".into(),
            id: "0000-id".into(),
            email: "alice@acme.example".into(),
            display_name: "Alice Example".into(),
            groups: vec!["acme/sales".into()],
            created_time: "2024-01-02T03:04:05Z".into(),
            ..Default::default()
        },
        "dc=example,dc=com",
        true,
    );
    loop {
        let msg = match codec.decode(&mut buf) {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(_) => {
                out.error = true;
                break;
            }
        };
        out.messages += 1;
        let mut dns: Vec<String> = Vec::new();
        match &msg.op {
            LdapOp::BindRequest(b) => {
                let _ = crate::ldap::bind::bind_target(&b.dn, "built-in");
                dns.push(b.dn.clone());
            }
            LdapOp::SearchRequest(s) => {
                dns.push(s.base.clone());
                let f = crate::ldap::search::filter(&s.filter);
                let matched = f.matches(&sample);
                let negated = crate::directory::Filter::Not(Box::new(f)).matches(&sample);
                assert!(!(matched && negated), "a filter and its negation both matched");
            }
            LdapOp::CompareRequest(c) => dns.push(c.dn.clone()),
            _ => {}
        }
        for dn in dns {
            let Some(rdns) = crate::directory::parse_dn(&dn) else { continue };
            for r in rdns {
                let again = format!("cn={}", crate::directory::escape_dn_value(&r.value));
                let parsed = crate::directory::parse_dn(&again).expect("an escaped value parses");
                assert_eq!(parsed.len(), 1, "{again:?}");
                assert_eq!(parsed[0].value, r.value, "{again:?}");
            }
        }
    }
    out
}

/// What the RADIUS checks made of a datagram.
#[derive(Debug, Default)]
pub struct RadiusDecoded {
    /// The Message-Authenticator verdict of [`crate::radius::crypto::check_request`], when the bytes are a
    /// well-formed request.
    pub message_auth: Option<crate::radius::crypto::MessageAuth>,
    pub accounting_ok: bool,
    pub attributes: usize,
}

/// Runs on `bytes`, as a datagram from a client, every check the RADIUS listener makes before it
/// trusts a packet (lengths and attribute list, Message-Authenticator, the Accounting-Request
/// authenticator) and every credential decoder (User-Password, CHAP-Password, MS-CHAP-Challenge with
/// MS-CHAP2-Response, MPPE key values), with a fixed secret and password. Also the decoders on the raw
/// bytes and on their halves, to reach their length checks. Properties: what `sign_reply` signs checks
/// as valid, and a password survives a PAP round trip.
pub fn radius_packet(bytes: &[u8]) -> RadiusDecoded {
    use crate::radius::crypto::{self, attr, ms, MessageAuth};

    const SECRET: &[u8] = b"fuzzing-secret";
    let nt = crypto::nt_hash("password");
    let mut out = RadiusDecoded {
        message_auth: crypto::check_request(bytes, SECRET).ok(),
        accounting_ok: crypto::accounting_request_ok(bytes, SECRET),
        attributes: 0,
    };
    let (left, right) = bytes.split_at(bytes.len() / 2);
    let _ = crypto::pap_decrypt(bytes, SECRET, &[0; 16]);
    let _ = crypto::mppe_key_decrypt(bytes, SECRET, &[0; 16]);
    let _ = crypto::mschapv2_verify(&nt, left, right, b"user");
    let _ = crypto::chap_ok(left, right, b"password");

    if let Ok(auth) = crypto::authenticator(bytes) {
        if let Ok(list) = crypto::attributes(bytes) {
            for a in list {
                let Ok((typ, range)) = a else { break };
                out.attributes += 1;
                let value = &bytes[range];
                match typ {
                    attr::USER_PASSWORD => {
                        let _ = crypto::pap_decrypt(value, SECRET, &auth);
                    }
                    attr::CHAP_PASSWORD => {
                        let challenge = crypto::find_attribute(bytes, attr::CHAP_CHALLENGE).ok().flatten();
                        let challenge = challenge.map_or(&auth[..], |r| &bytes[r]);
                        let _ = crypto::chap_ok(value, challenge, b"password");
                    }
                    _ => {}
                }
            }
        }
        let vendor = |typ| crypto::find_vendor_attribute(bytes, ms::VENDOR, typ).ok().flatten();
        if let (Some(challenge), Some(response)) = (vendor(ms::CHAP_CHALLENGE), vendor(ms::CHAP2_RESPONSE)) {
            let user = crypto::find_attribute(bytes, attr::USER_NAME).ok().flatten().map_or(&[][..], |r| &bytes[r]);
            let _ = crypto::mschapv2_verify(&nt, &bytes[challenge], &bytes[response], user);
        }
        for typ in [ms::MPPE_SEND_KEY, ms::MPPE_RECV_KEY] {
            if let Some(r) = vendor(typ) {
                let _ = crypto::mppe_key_decrypt(&bytes[r], SECRET, &auth);
            }
        }

        // What the listener decodes of a request: the `radius` crate's packet, then the attributes read.
        crate::radius::decode_for_fuzzing(bytes, SECRET);

        // Signed as an answer, the packet checks; its Message-Authenticator, if any, is valid.
        let mut reply = bytes.to_vec();
        if crypto::sign_reply(&mut reply, &auth, SECRET).is_ok() {
            assert!(crypto::response_authenticator_ok(&reply, &auth, SECRET));
            let verdict = crypto::check_reply(&reply, &auth, SECRET);
            assert!(matches!(verdict, Ok(MessageAuth::Valid | MessageAuth::Absent)), "{verdict:?}");
        }
        // A password of up to 128 octets comes back from PAP without its trailing NULs.
        let password = &bytes[..bytes.len().min(128)];
        if let Some(hidden) = crypto::pap_encrypt(password, SECRET, &auth) {
            let back = crypto::pap_decrypt(&hidden, SECRET, &auth).expect("what pap_encrypt makes decrypts");
            let trimmed = password.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            assert_eq!(back, &password[..trimmed]);
        }
    }
    out
}

/// Runs the TOTP checks on `bytes` read as text: as a secret (with a fixed code) and as a code (with a
/// fixed secret), at a time taken from the first octets. Must never panic; a code that verifies against
/// the fixed secret matches the step's own code.
pub fn totp_input(bytes: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(bytes);
    let mut time = [0u8; 8];
    for (t, b) in time.iter_mut().zip(bytes) {
        *t = *b;
    }
    let now = i64::from_le_bytes(time);
    let _ = crate::totp::verify(&text, "123456", now);
    let _ = crate::totp::decode_secret(&text);
    let step = crate::totp::verify("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", &text, now)?;
    let expected = crate::totp::code_at(b"12345678901234567890", step);
    assert_eq!(format!("{expected:06}"), text, "a verified code is the code of its step");
    Some(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::crypto::{self, MessageAuth};

    /// A small deterministic mutator (xorshift): the entry points on well-formed packets and on many
    /// corrupted copies of them, so that a panic shows up in the unit tests before the fuzzer runs.
    #[test]
    fn radius_entry_point_on_mutated_packets() {
        let secret: &[u8] = b"fuzzing-secret";
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        // An Access-Request with User-Name, User-Password, CHAP, MS-CHAPv2 and a Message-Authenticator.
        let auth = [7u8; 16];
        let mut p = vec![1, 1, 0, 0];
        p.extend_from_slice(&auth);
        p.extend_from_slice(&[1, 6, b'u', b's', b'e', b'r']);
        let hidden = crypto::pap_encrypt(b"password", secret, &auth).unwrap();
        p.extend_from_slice(&[2, 18]);
        p.extend_from_slice(&hidden);
        p.extend_from_slice(&[3, 19]);
        p.extend_from_slice(&crypto::chap_password(5, b"password", &auth));
        let nt = crypto::nt_hash("password");
        let ms = crypto::mschapv2_response(&nt, &[3; 16], &[4; 16], 9, b"user");
        p.extend_from_slice(
            &crypto::vendor_attribute(crypto::ms::VENDOR, crypto::ms::CHAP_CHALLENGE, &[3; 16]).unwrap(),
        );
        p.extend_from_slice(&crypto::vendor_attribute(crypto::ms::VENDOR, crypto::ms::CHAP2_RESPONSE, &ms).unwrap());
        let key = crypto::mppe_key_attribute(&[1; 16], secret, &auth, 1).unwrap();
        p.extend_from_slice(&crypto::vendor_attribute(crypto::ms::VENDOR, crypto::ms::MPPE_SEND_KEY, &key).unwrap());
        let len = u16::try_from(p.len()).unwrap().to_be_bytes();
        p[2..4].copy_from_slice(&len);
        crypto::insert_message_authenticator(&mut p).unwrap();
        // Sign it as a client would: the Message-Authenticator over the packet's own authenticator is
        // what sign_reply computes when given that authenticator; then restore the authenticator.
        crypto::sign_reply(&mut p, &auth, secret).unwrap();
        p[4..20].copy_from_slice(&auth);
        let decoded = radius_packet(&p);
        assert_eq!(decoded.message_auth, Some(MessageAuth::Valid));
        assert_eq!(decoded.attributes, 7);
        seeds.push(p);
        seeds.push(vec![4, 1, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        seeds.push(Vec::new());

        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in &seeds {
            for _ in 0..3000 {
                let mut m = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let r = next();
                    match r % 4 {
                        0 if !m.is_empty() => {
                            let i = (r >> 8) as usize % m.len();
                            m[i] ^= 1 << ((r >> 40) % 8);
                        }
                        1 if !m.is_empty() => {
                            let i = (r >> 8) as usize % m.len();
                            m[i] = (r >> 40) as u8;
                        }
                        2 => m.truncate((r >> 8) as usize % (m.len() + 1)),
                        _ => m.push((r >> 8) as u8),
                    }
                }
                radius_packet(&m);
                totp_input(&m);
            }
        }
    }

    #[test]
    fn totp_entry_point() {
        assert_eq!(totp_input(b""), None);
        // The input is both the time (its first 8 octets) and the code, so only short codes line up;
        // check the refusal paths and a non-UTF-8 input.
        assert_eq!(totp_input(b"081804"), None);
        assert_eq!(totp_input(&[0xff, 0xfe, 0x00]), None);
    }
}
