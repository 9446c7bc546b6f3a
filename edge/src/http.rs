//! The HTTP front end: hyper (HTTP/1.1 and HTTP/2) over TCP or rustls, routing, request decoding and
//! response encoding. Bad input ends here with the protocol's own error; the services in [`crate::oauth`]
//! and [`crate::admin`] never see a socket.
//!
//! Every connection has a bounded request size, a header-read timeout, a body-read timeout, an idle timeout
//! (HTTP/1 keep-alive and HTTP/2 alike: a connection with no request in progress for that long is closed,
//! gracefully), a slot in the connection limit and one in its address's limit; shutdown is graceful.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
use hyper_util::server::graceful::GracefulConnection;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::admin::AdminAuth;
use crate::error::OAuthError;
use crate::oauth::{ClientAuth, Params};
use crate::service::Edge;

/// Settings of the HTTP listener.
#[derive(Clone)]
pub struct HttpSettings {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub max_connections: usize,
    /// Open connections from one client address at most; further ones are closed at once.
    pub max_connections_per_address: usize,
    /// Time to receive a request's headers.
    pub header_timeout: Duration,
    /// How long a connection with no request in progress stays open (HTTP/1 keep-alive and HTTP/2).
    pub idle_timeout: Duration,
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
            max_connections_per_address: 256,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
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
    // Connections watch this to close gracefully at shutdown; every connection holds a slot of `slots`
    // until it ends, so getting all slots back means every connection has finished.
    let (stopping, stop_watch) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let per_address = Arc::new(AddressSlots::new(settings.max_connections_per_address));
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
        // One address may not take every slot: past its limit the connection is closed unanswered (a TLS
        // handshake or an HTTP answer would spend on it what the limit is there to save).
        let Some(address_slot) = per_address.take(peer.ip()) else {
            edge.metrics.connection_refused();
            tracing::debug!(%peer, "connection refused: too many open connections from this address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let edge = edge.clone();
        let discovery = discovery.clone();
        let (http1, http2) = (http1.clone(), http2.clone());
        let stop = stop_watch.clone();
        let tls = tls.clone();
        let (header_timeout, body_timeout, idle) =
            (settings.header_timeout, settings.body_timeout, settings.idle_timeout);
        tokio::spawn(async move {
            let _slots = (permit, address_slot);
            let activity = Arc::new(Activity::new());
            let svc = {
                let activity = activity.clone();
                hyper::service::service_fn(move |req| {
                    let edge = edge.clone();
                    let discovery = discovery.clone();
                    let busy = activity.begin();
                    async move {
                        let reply = handle(&edge, &discovery, peer, req, body_timeout).await;
                        drop(busy);
                        Ok::<_, Infallible>(reply)
                    }
                })
            };
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                            let conn = http2.serve_connection(TokioIo::new(tls_stream), svc);
                            drive(conn, &activity, idle, stop).await
                        } else {
                            let conn = http1.serve_connection(TokioIo::new(tls_stream), svc);
                            drive(conn, &activity, idle, stop).await
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                },
                None => drive(http1.serve_connection(TokioIo::new(stream), svc), &activity, idle, stop).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    tracing::info!("HTTP listener stopping; draining connections");
    let _ = stopping.send(true);
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(settings.shutdown_grace, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("some connections did not finish in time");
    }
}

/// Requests in progress on one connection, and when the last one ended: what its idle timer reads.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` at which the last request ended (0: none yet).
    last_end_ms: AtomicU64,
}

/// A request in progress; ending it (dropping this, also when the request is abandoned) restarts the idle
/// clock.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Activity {
        Activity { started: Instant::now(), in_flight: AtomicUsize::new(0), last_end_ms: AtomicU64::new(0) }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// When the connection will have been idle for `idle`, as things stand; `None` while a request runs.
    fn idle_deadline(&self, idle: Duration) -> Option<tokio::time::Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = self.started + Duration::from_millis(self.last_end_ms.load(Ordering::SeqCst));
        Some(tokio::time::Instant::from_std(last + idle))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_end_ms.store(ms, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one connection (HTTP/1 or HTTP/2) until it ends. It is closed gracefully — HTTP/2 sends GOAWAY,
/// HTTP/1 finishes the response in progress — once no request has been in progress for `idle`, or when
/// the listener stops. hyper closes neither an idle HTTP/2 connection (its keep-alive only pings) nor,
/// reliably, an HTTP/1 one that is between requests.
async fn drive<C>(conn: C, activity: &Activity, idle: Duration, mut stop: watch::Receiver<bool>) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        // While a request runs there is no deadline yet; look again one idle period later.
        let deadline = activity.idle_deadline(idle).unwrap_or_else(|| tokio::time::Instant::now() + idle);
        tokio::select! {
            result = conn.as_mut() => return result,
            _ = tokio::time::sleep_until(deadline), if !closing => {
                if activity.idle_deadline(idle).is_some_and(|d| d <= tokio::time::Instant::now()) {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Open connections per client address, each below the limit.
struct AddressSlots {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of an address; dropping it frees the slot.
struct AddressSlot {
    slots: Arc<AddressSlots>,
    ip: IpAddr,
}

impl AddressSlots {
    fn new(limit: usize) -> AddressSlots {
        AddressSlots { limit: limit.max(1), open: Mutex::new(HashMap::new()) }
    }

    /// A slot for a new connection from `ip`, or `None` when it has `limit` open already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot { slots: self.clone(), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
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
            "id_token_signing_alg_values_supported": ["RS256", "RS384", "RS512", "ES256", "EdDSA"],
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
}

impl Decoded {
    /// The client credentials of the request. `casdoor_path`: one of Casdoor's token, refresh or
    /// introspection paths, where the body may repeat the Basic credentials (see
    /// [`ClientAuth::repeat_allowed`]).
    fn client_auth(&mut self, casdoor_path: bool) -> ClientAuth {
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
async fn read_body(
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
enum Credentials<'a> {
    /// A client (token, introspection, revocation): no secret in the query string, and a Basic header that
    /// authenticated before is looked up in `edge` instead of decoded.
    Client(&'a Edge),
    /// A bearer token (userinfo).
    Bearer,
}

/// Decodes query string, body (form or JSON) and the Authorization header.
async fn decode(
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
    if edge.node.is_removed() && !(method == Method::GET && matches!(uri.path(), "/api/health" | "/metrics")) {
        return ("other", removed(req.headers()));
    }
    match (&method, uri.path()) {
        (&Method::GET, "/.well-known/jwks") | (&Method::GET, "/.well-known/jwks.json") => {
            let mut r = json_reply(200, edge.keyring.jwks());
            r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            ("jwks", r)
        }
        (&Method::POST, "/oauth/introspect") => ("introspect", introspect(edge, req, limit, timeout, false).await),
        (&Method::POST, "/api/login/oauth/introspect") => {
            ("introspect", introspect(edge, req, limit, timeout, true).await)
        }
        (&Method::POST, "/oauth/token") => ("token", Box::pin(token(edge, req, limit, timeout, ip, Path::Ours)).await),
        (&Method::POST, "/api/login/oauth/access_token") => {
            ("token", Box::pin(token(edge, req, limit, timeout, ip, Path::Casdoor)).await)
        }
        (&Method::POST, "/api/login/oauth/refresh_token") => {
            ("token", Box::pin(token(edge, req, limit, timeout, ip, Path::CasdoorRefresh)).await)
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
        (&Method::GET, "/api/health") => ("health", health(edge, uri.query())),
        (&Method::GET, "/metrics") => {
            ("metrics", reply(200, "text/plain; version=0.0.4", edge.metrics.render(&edge.node)))
        }
        // Rare and with large futures: boxed, so every request's future stays small (it is moved around).
        (_, p) if p.starts_with("/api/") => ("admin", Box::pin(admin(edge, req, limit, timeout)).await),
        _ => ("other", json_reply(404, r#"{"error":"not_found"}"#)),
    }
}

/// Which token path a request came in on.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    /// `/oauth/token`: one client authentication method per request.
    Ours,
    /// `/api/login/oauth/access_token`.
    Casdoor,
    /// `/api/login/oauth/refresh_token`: only `grant_type=refresh_token`.
    CasdoorRefresh,
}

async fn token(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration, ip: IpAddr, path: Path) -> Reply {
    let mut d = match decode(req, limit, timeout, Credentials::Client(edge)).await {
        Ok(d) => d,
        Err(e) => return oauth_error(&e),
    };
    if path == Path::CasdoorRefresh && d.params.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(&OAuthError::unsupported_grant_type("this endpoint only takes grant_type=refresh_token"));
    }
    let auth = d.client_auth(path != Path::Ours);
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
    casdoor_path: bool,
) -> Result<(Arc<crate::service::ClientApp>, String), OAuthError> {
    let mut d = decode(req, limit, timeout, Credentials::Client(edge)).await?;
    let auth = d.client_auth(casdoor_path);
    let caller = edge.client_from_request(&d.params, &auth)?;
    match d.params.remove("token").filter(|t| !t.is_empty()) {
        Some(token) => Ok((caller, token)),
        None => Err(OAuthError::invalid_request("token is required")),
    }
}

async fn introspect(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration, casdoor: bool) -> Reply {
    let result = match client_and_token(edge, req, limit, timeout, casdoor).await {
        Ok((caller, token)) => edge.introspect(&caller, &token),
        Err(e) => Err(e),
    };
    match result {
        Ok(body) => no_store(json_reply(200, body)),
        Err(e) => oauth_error(&e),
    }
}

async fn revoke(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration) -> Reply {
    let result = match client_and_token(edge, req, limit, timeout, false).await {
        Ok((caller, token)) => edge.revoke(&caller, &token).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => no_store(json_reply(200, "{}")),
        Err(e) => oauth_error(&e),
    }
}

async fn userinfo(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration, casdoor: bool) -> Reply {
    let d = match decode(req, limit, timeout, Credentials::Bearer).await {
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

/// Whether a request comes with a body (a non-zero `Content-Length`, or chunks).
fn announces_body(headers: &hyper::HeaderMap) -> bool {
    headers.contains_key(hyper::header::TRANSFER_ENCODING)
        || headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0")
}

/// Casdoor's error envelope with an HTTP status, for the admin API.
fn admin_error(status: u16, msg: &str) -> Reply {
    json_reply(status, json!({"status": "error", "msg": msg, "data": null, "data2": null}).to_string())
}

/// The admin API. The caller is checked from the headers (and, on Casdoor's paths, the `clientId` /
/// `clientSecret` query parameters Casdoor's Python SDK sends) before a byte of the body is read: an
/// unauthenticated `POST /api/jeton/apply` with a 200 MiB body is answered 401 at once.
async fn admin(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration) -> Reply {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_start_matches("/api/");
    // Parameters come from the query string only: bodies are JSON objects (or import batches), read
    // into their own types.
    let query = match parts.uri.query().map(parse_form).transpose() {
        Ok(q) => q.unwrap_or_default(),
        Err(e) => return admin_error(e.status, &e.description),
    };
    let auth = match authorization(&parts.headers, None) {
        Ok(a) => a,
        Err(e) => return admin_error(e.status, &e.description),
    };
    // Casdoor falls back from Basic to these parameters; its Python SDK sends nothing else.
    let query_credentials = match (&auth.basic, &auth.bearer, query.get("clientId"), query.get("clientSecret")) {
        (None, None, Some(id), Some(secret)) if crate::admin::casdoor_path(path) => {
            Some((id.as_str(), secret.as_str()))
        }
        _ => None,
    };
    let admin_auth = AdminAuth {
        bearer: auth.bearer.as_deref(),
        basic: auth.basic.as_ref().map(|(a, b)| (a.as_str(), b.as_str())).or(query_credentials),
    };
    let method = parts.method.as_str();
    let grant = match edge.admin_gate(path, method, &admin_auth) {
        Ok(grant) => grant,
        Err(refused) => {
            let mut r = json_reply(refused.status, refused.body.to_string());
            if announces_body(&parts.headers) {
                // The body was not read: the connection cannot carry another request.
                r.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            }
            return r;
        }
    };
    // Imports send large batches: a body limit of their own.
    let limit = if grant.is_apply() { crate::admin::APPLY_BODY_LIMIT.max(limit) } else { limit };
    let body = match read_body(&parts.headers, body, limit, timeout).await {
        Ok(b) => b,
        Err(e) => {
            let mut r = admin_error(e.status, &e.description);
            if e.status == 413 || e.status == 408 {
                r.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            }
            return r;
        }
    };
    let r = edge.admin(grant, &query, &body).await;
    json_reply(r.status, r.body.to_string())
}

/// What a removed node answers on every path but its health and metrics: 503, with the reason in both the
/// OAuth shape (`error`, `error_description`) and Casdoor's (`status`, `msg`), since it may be either.
fn removed(headers: &hyper::HeaderMap) -> Reply {
    const WHY: &str = "removed from the cluster";
    let body = json!({"error": "temporarily_unavailable", "error_description": WHY, "status": "error", "msg": WHY});
    let mut r = no_store(json_reply(503, body.to_string()));
    if announces_body(headers) {
        // The body was not read: the connection cannot carry another request.
        r.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Which question `/api/health` answers.
#[derive(Clone, Copy, PartialEq, Debug)]
enum HealthCheck {
    /// `?live`: the process works (a removed node too: restarting it would not change that).
    Live,
    /// No query, or `?ready`: the node serves from its state (with or without a quorum); not removed.
    Ready,
    /// `?writable`: a write could be committed now (a leader is known and reachable).
    Writable,
}

impl HealthCheck {
    fn from_query(query: Option<&str>) -> HealthCheck {
        let mut check = HealthCheck::Ready;
        for (key, _) in form_pairs(query.unwrap_or_default()) {
            match key.as_str() {
                "live" => check = HealthCheck::Live,
                "writable" => check = HealthCheck::Writable,
                _ => {}
            }
        }
        check
    }
}

/// `/api/health`: 200 when the asked check holds, 503 when not; the body always reports all three.
fn health(edge: &Edge, query: Option<&str>) -> Reply {
    let check = HealthCheck::from_query(query);
    let removed = edge.node.is_removed();
    let writable = edge.node.has_quorum();
    let m = edge.node.raft.metrics().borrow().clone();
    // Raft stopped by itself (a storage failure): reads still work, but only a restart brings writes back.
    let raft_failed = m.running_state.is_err() && !removed;
    let live = !raft_failed;
    let ready = live && !removed;
    let status = match (removed, raft_failed, writable) {
        (true, _, _) => "removed",
        (_, true, _) => "failed",
        (_, _, true) => "ok",
        // Serving from its own state; writes are refused until a quorum is back.
        _ => "degraded",
    };
    let ok = match check {
        HealthCheck::Live => live,
        HealthCheck::Ready => ready,
        HealthCheck::Writable => ready && writable,
    };
    let body = json!({
        "status": status,
        "live": live,
        "ready": ready,
        "writable": writable,
        "removed": removed,
        "nodeId": edge.node.id,
        "leader": m.current_leader,
        "term": m.current_term,
        "appliedIndex": m.last_applied.map(|l| l.index),
    });
    let mut r = json_reply(if ok { 200 } else { 503 }, body.to_string());
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_queries_pick_the_check() {
        assert_eq!(HealthCheck::from_query(None), HealthCheck::Ready);
        assert_eq!(HealthCheck::from_query(Some("ready")), HealthCheck::Ready);
        assert_eq!(HealthCheck::from_query(Some("live")), HealthCheck::Live);
        assert_eq!(HealthCheck::from_query(Some("writable")), HealthCheck::Writable);
        assert_eq!(HealthCheck::from_query(Some("writable=1")), HealthCheck::Writable);
        assert_eq!(HealthCheck::from_query(Some("other")), HealthCheck::Ready);
    }

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
    fn each_address_gets_its_own_connection_limit() {
        let slots = Arc::new(AddressSlots::new(2));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let first = slots.take(a).expect("1st");
        let _second = slots.take(a).expect("2nd");
        assert!(slots.take(a).is_none(), "a third from the same address");
        let _other = slots.take(b).expect("another address is not affected");
        drop(first);
        assert!(slots.take(a).is_some(), "a slot frees when its connection ends");
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
