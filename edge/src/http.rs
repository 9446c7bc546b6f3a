//! The HTTP front end: hyper (HTTP/1.1 and HTTP/2) over TCP or rustls, routing, request decoding and
//! response encoding. Bad input ends here with the protocol's own error; the services in [`crate::oauth`]
//! and [`crate::admin`] never see a socket.
//!
//! Every connection has a bounded request size, a header-read timeout (which also closes idle keep-alive
//! connections), a body-read timeout and a slot in a connection limit; shutdown is graceful.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::admin::AdminAuth;
use crate::error::OAuthError;
use crate::oauth::{ClientAuth, Params};
use crate::service::Edge;

/// Settings of the HTTP listener.
#[derive(Clone)]
pub struct HttpSettings {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub max_connections: usize,
    /// Time to receive a request's headers; also how long an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Time to receive a request's body.
    pub body_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            tls: None,
            max_connections: 10_000,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

type Reply = Response<Full<Bytes>>;

/// Serves HTTP until `shutdown` resolves, then drains connections.
pub async fn serve(
    edge: Arc<Edge>,
    listener: TcpListener,
    settings: HttpSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let discovery = Arc::new(Discovery::new(&edge.config.issuer));
    // HTTP/1.1 on plain TCP; over TLS, HTTP/2 when the client negotiates it with ALPN.
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2.timer(TokioTimer::new()).max_concurrent_streams(256).keep_alive_interval(settings.header_timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let tls = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let edge = edge.clone();
        let discovery = discovery.clone();
        let (http1, http2) = (http1.clone(), http2.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let header_timeout = settings.header_timeout;
        let body_timeout = settings.body_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let edge = edge.clone();
                let discovery = discovery.clone();
                async move { Ok::<_, Infallible>(handle(&edge, &discovery, peer, req, body_timeout).await) }
            });
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                            watcher.watch(http2.serve_connection(TokioIo::new(tls_stream), svc)).await
                        } else {
                            watcher.watch(http1.serve_connection(TokioIo::new(tls_stream), svc)).await
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                },
                None => watcher.watch(http1.serve_connection(TokioIo::new(stream), svc)).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    tracing::info!("HTTP listener stopping; draining connections");
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections did not finish in time");
    }
}

/// The discovery documents, encoded once.
struct Discovery {
    openid: Bytes,
}

impl Discovery {
    fn new(issuer: &str) -> Discovery {
        let doc = json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/oauth/token"),
            "introspection_endpoint": format!("{issuer}/oauth/introspect"),
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
            "jwks_uri": format!("{issuer}/.well-known/jwks"),
            // No browser flow (authorization endpoint) is served by this node.
            "response_types_supported": [],
            "grant_types_supported": ["client_credentials", "password", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA", "ES256", "RS256", "RS384", "RS512"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile", "address", "phone", "offline_access"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "owner", "name",
                "preferred_username", "email", "email_verified", "picture", "phone_number", "address"],
        });
        Discovery { openid: Bytes::from(doc.to_string()) }
    }
}

fn reply(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_reply(status: u16, body: impl Into<Bytes>) -> Reply {
    reply(status, "application/json", body)
}

/// Token-endpoint answers must not be cached (RFC 6749 §5.1).
fn no_store(mut r: Reply) -> Reply {
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn oauth_error(e: &OAuthError) -> Reply {
    let mut r = no_store(json_reply(e.status, e.body()));
    if e.status == 401 {
        r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"jeton\""));
    }
    if e.status == 413 || e.status == 408 {
        // The rest of the body was not read: the connection cannot carry another request.
        r.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Casdoor's error envelope (HTTP 200, as Casdoor SDKs expect from `/api/userinfo`).
fn casdoor_error(msg: &str) -> Reply {
    json_reply(200, json!({"status": "error", "msg": msg, "data": null, "data2": null}).to_string())
}

async fn handle(
    edge: &Edge,
    discovery: &Discovery,
    peer: SocketAddr,
    req: Request<Incoming>,
    body_timeout: Duration,
) -> Reply {
    let started = Instant::now();
    let (endpoint, response) = route(edge, discovery, peer.ip(), req, body_timeout).await;
    edge.metrics.request(endpoint, response.status().as_u16(), started.elapsed());
    response
}

/// What a request carried, decoded.
struct Decoded {
    params: Params,
    basic: Option<(String, String)>,
    /// The `Authorization: Basic` header as it came (decoded into `basic` unless `known_client` is set).
    basic_header: Option<Bytes>,
    /// The client that header authenticated before (see [`Edge::known_basic`]); `basic` is then not decoded.
    known_client: Option<Arc<crate::service::ClientApp>>,
    bearer: Option<String>,
    body: Bytes,
}

impl Decoded {
    fn client_auth(&mut self) -> ClientAuth {
        ClientAuth { basic: self.basic.take(), header: self.basic_header.take(), known: self.known_client.take() }
    }
}

/// Reads the body within the size and time limits. A small body usually arrived with the headers: it is
/// taken at once, and a timer is only set for a body that is still on its way.
async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, OAuthError> {
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

/// Whether URL decoding would change `s` (a byte scan: tokens are long and almost never escaped).
fn needs_unescape(s: &str) -> bool {
    memchr::memchr2(b'%', b'+', s.as_bytes()).is_some()
}

/// `key=value` pairs of a form or query string. Pairs without escapes (the usual case: tokens, ids, grant
/// types) are copied as they are; only pairs with `%` or `+` go through the URL decoder.
fn form_pairs(input: &str) -> impl Iterator<Item = (String, String)> + '_ {
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

/// Adds `key=value` pairs, refusing a repeated parameter (RFC 6749 §3.1).
fn add_pairs(params: &mut Params, pairs: impl Iterator<Item = (String, String)>) -> Result<(), OAuthError> {
    for (k, v) in pairs {
        if params.contains_key(&k) {
            return Err(OAuthError::invalid_request(format!("parameter {k} is repeated")));
        }
        params.insert(k, v);
    }
    Ok(())
}

/// Decodes query string, body (form or JSON) and the Authorization header. With `known` (the token
/// endpoints), a Basic header that authenticated a client before is looked up instead of decoded.
async fn decode(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    known: Option<&Edge>,
) -> Result<Decoded, OAuthError> {
    let (parts, body) = req.into_parts();
    if let Some(len) =
        parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large(limit));
        }
    }
    let body = read_body(body, limit, timeout).await?;
    let mut params = Params::new();
    if let Some(q) = parts.uri.query() {
        add_pairs(&mut params, form_pairs(q))?;
    }
    let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if !body.is_empty() {
        if content_type.starts_with("application/json") {
            // Casdoor accepts a JSON body; its values fill parameters the query did not give.
            if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&body) {
                for (k, v) in m {
                    let v = match v {
                        Value::String(s) => s,
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    params.insert_if_absent(k, v);
                }
            }
        } else if content_type.is_empty() || content_type.starts_with("application/x-www-form-urlencoded") {
            let form =
                std::str::from_utf8(&body).map_err(|_| OAuthError::invalid_request("the form body is not UTF-8"))?;
            add_pairs(&mut params, form_pairs(form))?;
        }
    }
    let (mut basic, mut basic_header, mut known_client, mut bearer) = (None, None, None, None);
    if let Some(raw) = parts.headers.get(AUTHORIZATION) {
        let h = raw.to_str().map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
        if let Some(b64) = strip_scheme(h, "basic") {
            known_client = known.and_then(|edge| edge.known_basic(raw.as_bytes()));
            if known_client.is_none() {
                basic = Some(parse_basic(b64)?);
                basic_header = known.map(|_| Bytes::copy_from_slice(raw.as_bytes()));
            }
        } else if let Some(t) = strip_scheme(h, "bearer") {
            bearer = Some(t.trim().to_string());
        }
    }
    Ok(Decoded { params, basic, basic_header, known_client, bearer, body })
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
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    Ok((unescape(id), unescape(secret)))
}

async fn route(
    edge: &Edge,
    discovery: &Discovery,
    ip: IpAddr,
    req: Request<Incoming>,
    timeout: Duration,
) -> (&'static str, Reply) {
    let limit = edge.config.max_body_bytes;
    let method = req.method().clone();
    let uri = req.uri().clone();
    match (&method, uri.path()) {
        (&Method::GET, "/.well-known/jwks") | (&Method::GET, "/.well-known/jwks.json") => {
            let mut r = json_reply(200, edge.keyring.jwks());
            r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            ("jwks", r)
        }
        (&Method::POST, "/oauth/introspect") | (&Method::POST, "/api/login/oauth/introspect") => {
            ("introspect", introspect(edge, req, limit, timeout).await)
        }
        (&Method::POST, "/oauth/token") | (&Method::POST, "/api/login/oauth/access_token") => {
            ("token", Box::pin(token(edge, req, limit, timeout, ip, false)).await)
        }
        (&Method::POST, "/api/login/oauth/refresh_token") => {
            ("token", Box::pin(token(edge, req, limit, timeout, ip, true)).await)
        }
        (&Method::POST, "/oauth/revoke") => ("revoke", Box::pin(revoke(edge, req, limit, timeout)).await),
        (&Method::GET | &Method::POST, "/oauth/userinfo") => {
            ("userinfo", Box::pin(userinfo(edge, req, limit, timeout, false)).await)
        }
        (&Method::GET | &Method::POST, "/api/userinfo") => {
            ("userinfo", Box::pin(userinfo(edge, req, limit, timeout, true)).await)
        }
        (&Method::GET, "/.well-known/openid-configuration")
        | (&Method::GET, "/.well-known/oauth-authorization-server") => {
            ("discovery", json_reply(200, discovery.openid.clone()))
        }
        (&Method::GET, "/api/health") => ("health", health(edge)),
        (&Method::GET, "/metrics") => {
            ("metrics", reply(200, "text/plain; version=0.0.4", edge.metrics.render(&edge.node.raft, edge.node.id)))
        }
        // Imports send large batches: a body limit of its own.
        (&Method::POST, "/api/jeton/apply") => {
            ("admin", Box::pin(admin(edge, req, crate::admin::APPLY_BODY_LIMIT.max(limit), timeout)).await)
        }
        // Rare and with large futures: boxed, so every request's future stays small (it is moved around).
        (_, p) if p.starts_with("/api/") => ("admin", Box::pin(admin(edge, req, limit, timeout)).await),
        _ => ("other", json_reply(404, r#"{"error":"not_found"}"#)),
    }
}

async fn token(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    ip: IpAddr,
    refresh_only: bool,
) -> Reply {
    let mut d = match decode(req, limit, timeout, Some(edge)).await {
        Ok(d) => d,
        Err(e) => return oauth_error(&e),
    };
    if refresh_only && d.params.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(&OAuthError::unsupported_grant_type("this endpoint only takes grant_type=refresh_token"));
    }
    let auth = d.client_auth();
    match edge.token(&d.params, &auth, Some(ip)).await {
        Ok(t) => no_store(json_reply(200, t.body())),
        Err(e) => oauth_error(&e),
    }
}

/// Decodes a request that names a token and authenticates its client (introspection, revocation).
async fn client_and_token(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<(Arc<crate::service::ClientApp>, String), OAuthError> {
    let mut d = decode(req, limit, timeout, Some(edge)).await?;
    let auth = d.client_auth();
    let caller = edge.client_from_request(&d.params, &auth)?;
    match d.params.remove("token").filter(|t| !t.is_empty()) {
        Some(token) => Ok((caller, token)),
        None => Err(OAuthError::invalid_request("token is required")),
    }
}

async fn introspect(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration) -> Reply {
    let result = match client_and_token(edge, req, limit, timeout).await {
        Ok((caller, token)) => edge.introspect(&caller, &token),
        Err(e) => Err(e),
    };
    match result {
        Ok(body) => no_store(json_reply(200, body)),
        Err(e) => oauth_error(&e),
    }
}

async fn revoke(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration) -> Reply {
    let result = match client_and_token(edge, req, limit, timeout).await {
        Ok((caller, token)) => edge.revoke(&caller, &token).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => no_store(json_reply(200, "{}")),
        Err(e) => oauth_error(&e),
    }
}

async fn userinfo(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration, casdoor: bool) -> Reply {
    let d = match decode(req, limit, timeout, None).await {
        Ok(d) => d,
        Err(e) => return oauth_error(&e),
    };
    let token = d
        .bearer
        .clone()
        .or_else(|| d.params.get("access_token").cloned())
        .or_else(|| d.params.get("accessToken").cloned())
        .unwrap_or_default();
    let info = if token.is_empty() { Ok(None) } else { edge.userinfo(&token) };
    match info {
        Ok(Some(v)) => no_store(json_reply(200, v.to_string())),
        Ok(None) if casdoor => casdoor_error("Please login first"),
        Ok(None) => {
            let mut r = json_reply(
                401,
                r#"{"error":"invalid_token","error_description":"the access token is invalid, expired or revoked"}"#,
            );
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            r
        }
        Err(e) => oauth_error(&e),
    }
}

async fn admin(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration) -> Reply {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().trim_start_matches("/api/").to_string();
    let d = match decode(req, limit, timeout, None).await {
        Ok(d) => d,
        Err(e) => {
            return json_reply(
                e.status,
                json!({"status": "error", "msg": e.description, "data": null, "data2": null}).to_string(),
            )
        }
    };
    let auth =
        AdminAuth { bearer: d.bearer.as_deref(), basic: d.basic.as_ref().map(|(a, b)| (a.as_str(), b.as_str())) };
    match edge.admin(&path, &method, &d.params, &d.body, &auth).await {
        Some(r) => json_reply(r.status, r.body.to_string()),
        None => json_reply(
            404,
            json!({"status": "error", "msg": format!("unknown API /api/{path}"), "data": null, "data2": null})
                .to_string(),
        ),
    }
}

fn health(edge: &Edge) -> Reply {
    let m = edge.node.raft.metrics().borrow().clone();
    let healthy = m.running_state.is_ok() && m.current_leader.is_some();
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "nodeId": edge.node.id,
        "leader": m.current_leader,
        "term": m.current_term,
        "appliedIndex": m.last_applied.map(|l| l.index),
    });
    json_reply(if healthy { 200 } else { 503 }, body.to_string())
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
    fn basic_credentials_are_url_decoded() {
        let b64 = STANDARD.encode("my%20client:s%3Acret+x");
        assert_eq!(parse_basic(&b64).unwrap(), ("my client".to_string(), "s:cret x".to_string()));
        assert!(parse_basic("%%%").is_err());
        assert!(parse_basic(&STANDARD.encode("no-colon")).is_err());
    }
}
