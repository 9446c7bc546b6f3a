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
