//! Request decoding for the HTTP front end: the body within its size and time limits, form and query
//! parameters (and JSON bodies) into [`Params`], and the `Authorization` header into client credentials or
//! a bearer token. What does not decode ends here with an OAuth error; the services never see raw bytes.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Request;
use serde_json::Value;

use crate::error::OAuthError;
use crate::oauth::{ClientAuth, Params};
use crate::service::Edge;

/// What a request carried, decoded.
pub(super) struct Decoded {
    pub(super) params: Params,
    basic: Option<(String, String)>,
    /// The `Authorization: Basic` header as it came (decoded into `basic` unless `known_client` is set).
    basic_header: Option<Bytes>,
    /// The client that header authenticated before (see [`Edge::known_basic`]); `basic` is then not decoded.
    known_client: Option<Arc<crate::service::ClientApp>>,
    pub(super) bearer: Option<String>,
}

impl Decoded {
    /// The client credentials of the request. `casdoor_path`: one of Casdoor's token, refresh or
    /// introspection paths, where the body may repeat the Basic credentials (see
    /// [`ClientAuth::repeat_allowed`]).
    pub(super) fn client_auth(&mut self, casdoor_path: bool) -> ClientAuth {
        ClientAuth {
            basic: self.basic.take(),
            header: self.basic_header.take(),
            known: self.known_client.take(),
            repeat_allowed: casdoor_path,
        }
    }
}

/// Reads the body within the size and time limits. A small body usually arrived with the headers: it is
/// taken at once, and a timer is only set for a body that is still on its way. A `Content-Length` past the
/// limit is refused before anything is read.
pub(super) async fn read_body(
    headers: &hyper::HeaderMap,
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, OAuthError> {
    if let Some(len) = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()) {
        if len > limit as u64 {
            return Err(too_large(limit));
        }
    }
    let mut collect = std::pin::pin!(Limited::new(body, limit).collect());
    let ready =
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::future::Future::poll(collect.as_mut(), cx))).await;
    let collected = match ready {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => match tokio::time::timeout(timeout, collect).await {
            Ok(r) => r,
            Err(_) => {
                return Err(OAuthError {
                    status: 408,
                    error: "invalid_request",
                    description: "request body timed out".into(),
                })
            }
        },
    };
    match collected {
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(_) => Err(OAuthError::invalid_request("the request body could not be read")),
        Ok(c) => Ok(c.to_bytes()),
    }
}

fn too_large(limit: usize) -> OAuthError {
    OAuthError { status: 413, error: "invalid_request", description: format!("request body larger than {limit} bytes") }
}

fn too_many_params() -> OAuthError {
    OAuthError::invalid_request(format!("more than {} parameters", Params::MAX))
}

/// Whether URL decoding would change `s` (a byte scan: tokens are long and almost never escaped).
fn needs_unescape(s: &str) -> bool {
    memchr::memchr2(b'%', b'+', s.as_bytes()).is_some()
}

/// `key=value` pairs of a form or query string. Pairs without escapes (the usual case: tokens, ids, grant
/// types) are copied as they are; only pairs with `%` or `+` go through the URL decoder.
pub(super) fn form_pairs(input: &str) -> impl Iterator<Item = (String, String)> + '_ {
    input.split('&').filter(|p| !p.is_empty()).map(|pair| {
        if needs_unescape(pair) {
            form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .unwrap_or_default()
        } else {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_string(), v.to_string())
        }
    })
}

/// Adds `key=value` pairs, refusing a repeated parameter (RFC 6749 §3.1) and more than [`Params::MAX`] in
/// all. Each pair is checked against at most `Params::MAX` others, so the cost is linear in the input:
/// the pairs past the cap are never decoded.
fn add_pairs(params: &mut Params, pairs: impl Iterator<Item = (String, String)>) -> Result<(), OAuthError> {
    for (k, v) in pairs {
        if params.len() >= Params::MAX {
            return Err(too_many_params());
        }
        if params.contains_key(&k) {
            return Err(OAuthError::invalid_request(format!("parameter {k} is repeated")));
        }
        params.insert(k, v);
    }
    Ok(())
}

/// The parameters of a form body or query string: what the endpoints decode, exposed for the benches and
/// the fuzz targets.
pub fn parse_form(input: &str) -> Result<Params, OAuthError> {
    let mut params = Params::new();
    add_pairs(&mut params, form_pairs(input))?;
    Ok(params)
}

/// Parameters that carry a secret: never accepted in a query string on the OAuth endpoints (RFC 6749
/// §2.3.1, §4.3.2), where URLs end up in access logs, proxies and browser history.
const SECRET_PARAMS: [&str; 2] = ["client_secret", "password"];

/// The parameters of a query string. On the client endpoints (`client`), a secret there is refused.
pub(crate) fn query_params(query: Option<&str>, client: bool) -> Result<Params, OAuthError> {
    let mut params = Params::new();
    if let Some(q) = query {
        add_pairs(&mut params, form_pairs(q))?;
    }
    if let (true, Some(k)) = (client, SECRET_PARAMS.iter().find(|k| params.contains_key(k))) {
        return Err(OAuthError::invalid_request(format!(
            "{k} must not be sent in the query string; send it in the request body (or client credentials with HTTP Basic)"
        )));
    }
    Ok(params)
}

/// Adds the parameters of a request body: a form (no content type, or `application/x-www-form-urlencoded`)
/// or a JSON object, whose values fill parameters the query did not give (Casdoor accepts one). Other
/// content types carry no parameters.
pub(crate) fn add_body_params(params: &mut Params, content_type: &str, body: &[u8]) -> Result<(), OAuthError> {
    if body.is_empty() {
        return Ok(());
    }
    let content_type = content_type.to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
            if m.len() > Params::MAX {
                return Err(too_many_params());
            }
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s,
                    Value::Null => continue,
                    other => other.to_string(),
                };
                params.insert_if_absent(k, v);
            }
            if params.len() > Params::MAX {
                return Err(too_many_params());
            }
        }
    } else if content_type.is_empty() || content_type.starts_with("application/x-www-form-urlencoded") {
        let form = std::str::from_utf8(body).map_err(|_| OAuthError::invalid_request("the form body is not UTF-8"))?;
        add_pairs(params, form_pairs(form))?;
    }
    Ok(())
}

/// Who authenticates a request, and how.
#[derive(Clone, Copy)]
pub(super) enum Credentials<'a> {
    /// A client (token, introspection, revocation): no secret in the query string, and a Basic header that
    /// authenticated before is looked up in `edge` instead of decoded.
    Client(&'a Edge),
    /// A bearer token (userinfo).
    Bearer,
}

/// Decodes query string, body (form or JSON) and the Authorization header.
pub(super) async fn decode(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    credentials: Credentials<'_>,
) -> Result<Decoded, OAuthError> {
    let (parts, body) = req.into_parts();
    let mut params = query_params(parts.uri.query(), matches!(credentials, Credentials::Client(_)))?;
    let body = read_body(&parts.headers, body, limit, timeout).await?;
    let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    add_body_params(&mut params, content_type, &body)?;
    let known = match credentials {
        Credentials::Client(edge) => Some(edge),
        Credentials::Bearer => None,
    };
    let auth = authorization(&parts.headers, known)?;
    Ok(Decoded {
        params,
        basic: auth.basic,
        basic_header: auth.basic_header,
        known_client: auth.known_client,
        bearer: auth.bearer,
    })
}

/// The credentials of an `Authorization` header.
#[derive(Default)]
pub(crate) struct Authorization {
    pub(crate) basic: Option<(String, String)>,
    basic_header: Option<Bytes>,
    known_client: Option<Arc<crate::service::ClientApp>>,
    pub(crate) bearer: Option<String>,
}

/// Decodes the `Authorization` header. With `known` (the client endpoints), a Basic header that
/// authenticated a client before is looked up instead of decoded.
pub(crate) fn authorization(headers: &hyper::HeaderMap, known: Option<&Edge>) -> Result<Authorization, OAuthError> {
    let mut auth = Authorization::default();
    if let Some(raw) = headers.get(AUTHORIZATION) {
        let h = raw.to_str().map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
        if let Some(b64) = strip_scheme(h, "basic") {
            auth.known_client = known.and_then(|edge| edge.known_basic(raw.as_bytes()));
            if auth.known_client.is_none() {
                auth.basic = Some(parse_basic(b64)?);
                auth.basic_header = known.map(|_| Bytes::copy_from_slice(raw.as_bytes()));
            }
        } else if let Some(t) = strip_scheme(h, "bearer") {
            auth.bearer = Some(t.trim().to_string());
        }
    }
    Ok(auth)
}

fn strip_scheme<'a>(h: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = h.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest.trim())
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(b64: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("malformed HTTP Basic credentials");
    let raw = STANDARD.decode(b64).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    // Each part is one URL-encoded value: `+` is a space and `%XX` a byte; a literal `&` or `=` is itself
    // (decoding the part as a form would cut it at the first `&`).
    let unescape = |s: &str| -> String {
        percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
    };
    Ok((unescape(id), unescape(secret)))
}

/// Whether a request comes with a body (a non-zero `Content-Length`, or chunks).
pub(super) fn announces_body(headers: &hyper::HeaderMap) -> bool {
    headers.contains_key(hyper::header::TRANSFER_ENCODING)
        || headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_pairs_decode_only_what_needs_it() {
        let pairs: Vec<(String, String)> = form_pairs("a=1&token=abc.def-ghi_j&&s=x+y%21&flag&e=").collect();
        assert_eq!(
            pairs,
            vec![
                ("a".into(), "1".into()),
                ("token".into(), "abc.def-ghi_j".into()),
                ("s".into(), "x y!".into()),
                ("flag".into(), "".into()),
                ("e".into(), "".into())
            ]
        );
    }

    #[test]
    fn parameters_past_the_cap_are_refused() {
        let at_cap: Vec<String> = (0..Params::MAX).map(|i| format!("k{i}=v")).collect();
        let at_cap = at_cap.join("&");
        assert_eq!(parse_form(&at_cap).map(|p| p.len()), Ok(Params::MAX));
        let e = parse_form(&format!("{at_cap}&one=more")).unwrap_err();
        assert_eq!((e.status, e.error), (400, "invalid_request"), "{e:?}");
        let e = parse_form("a=1&b=2&a=3").unwrap_err();
        assert!(e.description.contains("repeated"), "{e:?}");
    }

    #[test]
    fn basic_credentials_are_url_decoded() {
        let b64 = STANDARD.encode("my%20client:s%3Acret+x");
        assert_eq!(parse_basic(&b64).unwrap(), ("my client".to_string(), "s:cret x".to_string()));
        assert!(parse_basic("%%%").is_err());
        assert!(parse_basic(&STANDARD.encode("no-colon")).is_err());
    }

    /// Found by fuzzing (fuzz/fuzz_targets/authorization.rs): each part was decoded as a whole form, so a
    /// literal `&` cut it short (`pass&word` became `pass`) and a `&`-separated tail was dropped.
    #[test]
    fn basic_credentials_keep_a_literal_ampersand_and_equals() {
        let b64 = STANDARD.encode("id&x=1:pass&word=2%26+3");
        assert_eq!(parse_basic(&b64).unwrap(), ("id&x=1".to_string(), "pass&word=2& 3".to_string()));
        // Invalid escapes stay as they are, and bytes that are not UTF-8 become U+FFFD, as before.
        assert_eq!(parse_basic(&STANDARD.encode("a%zz:%FF")).unwrap(), ("a%zz".to_string(), "\u{FFFD}".to_string()));
    }
}
