//! The browser pages: the authorization endpoint, the login page, the second-factor step, consent,
//! sign-out and the device flow's verification page. Server-rendered HTML from askama templates
//! (`edge/templates/`), no JavaScript but for passkeys.
//!
//! Every page is sent with a strict Content-Security-Policy (no inline script or style but the page's own
//! nonce), `frame-ancestors 'none'` (never framed), `no-store`, `no-referrer`. Every form carries a CSRF
//! token: a MAC of the browser's CSRF cookie (see [`Edge::csrf_token`]). The sign-in state between two steps
//! travels in the form (what the sign-in continues to, re-checked at every step: see [`Continuation`]; a
//! pending sign-in sealed), so any node can take the next step.

use std::net::IpAddr;
use std::time::Duration;

use askama::Template;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION, SET_COOKIE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use jeton_raft::model::{BrowserSession, User};

use super::decode::{add_body_params, form_pairs, query_params, read_body};
use super::Reply;
use crate::clock::now;
use crate::error::OAuthError;
use crate::mfa::Codes;
use crate::oauth::authorize::{AuthorizationRequest, AuthorizationResponse, AuthorizeRefusal, ResponseMode, Step};
use crate::oauth::device::DevicePrompt;
use crate::oauth::Params;
use crate::passwords::{Lockout, LockoutRule, Refused, SignIn};
use crate::secrets::random_hex;
use crate::service::Edge;
use crate::sessions::{csrf_cookie_name, session_cookie_name, Authentication};

mod account;
mod device;
mod enrolment;
mod logout;
mod passkeys;

pub(super) use account::{account, account_totp};
pub(super) use device::device;
pub(super) use enrolment::{login_continue, login_enrol};
pub(super) use logout::logout;
pub(super) use passkeys::{
    account as account_passkeys, register as register_passkey, registration_options as passkey_registration_options,
    remove as remove_passkey, sign_in as passkey_sign_in, sign_in_options as passkey_sign_in_options,
};

/// What the pages decode from a request: its headers, and the parameters of its query and form body.
pub(super) struct PageRequest {
    pub(super) headers: HeaderMap,
    pub(super) params: Params,
    pub(super) method: Method,
    pub(super) ip: IpAddr,
}

impl PageRequest {
    pub(super) async fn read(
        req: Request<Incoming>,
        limit: usize,
        timeout: Duration,
        ip: IpAddr,
    ) -> Result<PageRequest, OAuthError> {
        let (parts, body) = req.into_parts();
        let mut params = query_params(parts.uri.query(), false)?;
        if parts.method == Method::POST {
            let bytes = read_body(&parts.headers, body, limit, timeout).await?;
            let content_type = parts.headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            add_body_params(&mut params, content_type.unwrap_or(""), &bytes)?;
        }
        Ok(PageRequest { headers: parts.headers, params, method: parts.method, ip })
    }

    /// A cookie's value, if the browser sent it.
    pub(super) fn cookie(&self, name: &str) -> Option<String> {
        self.headers.get_all(hyper::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
            line.split(';').find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name).then(|| v.to_string())
            })
        })
    }

    fn param(&self, k: &str) -> &str {
        self.params.get(k).map(String::as_str).unwrap_or("")
    }

    fn user_agent(&self) -> &str {
        self.headers.get(hyper::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// Brand of a page: whose sign-in it is.
pub(super) struct Brand {
    pub(super) name: String,
    pub(super) logo: String,
    pub(super) color: String,
    /// Text on the brand colour: black or white, whichever contrasts more (WCAG relative luminance).
    pub(super) ink: &'static str,
}

impl Brand {
    pub(super) fn new(name: String, logo: &str, color: &str) -> Brand {
        let color = brand_color(color);
        let ink = ink_on(&color);
        Brand { name, logo: brand_logo(logo), color, ink }
    }
}

/// Black or white text for a `#rgb`/`#rrggbb` background: the one with the higher contrast ratio.
fn ink_on(color: &str) -> &'static str {
    let hex = color.trim_start_matches('#');
    let full: String = if hex.len() == 3 { hex.chars().flat_map(|c| [c, c]).collect() } else { hex.to_string() };
    let channel = |i: usize| {
        let v = f64::from(u8::from_str_radix(full.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0)) / 255.0;
        if v <= 0.03928 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4);
    // Contrast with white: 1.05 / (l + 0.05); with black: (l + 0.05) / 0.05.
    if 1.05 / (l + 0.05) >= (l + 0.05) / 0.05 {
        "#ffffff"
    } else {
        "#000000"
    }
}

/// What every page's layout needs.
pub(super) struct Page {
    pub(super) brand: Brand,
    pub(super) csrf: String,
    /// Nonce of this response's inline style (and script): the only inline content the CSP allows.
    pub(super) nonce: String,
    pub(super) lang: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    page: &'a Page,
    request: &'a str,
    login_hint: &'a str,
    error: &'a str,
}

#[derive(Template)]
#[template(path = "totp.html")]
struct TotpPage<'a> {
    page: &'a Page,
    request: &'a str,
    pending: &'a str,
    error: &'a str,
    /// Which second factors the user has: the code form, the passkey button, or both.
    totp: bool,
    passkey: bool,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    page: &'a Page,
    request: &'a str,
    user: &'a str,
    scopes: Vec<(String, &'static str)>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub(super) struct MessagePage<'a> {
    pub(super) page: &'a Page,
    pub(super) title: &'a str,
    pub(super) message: &'a str,
    pub(super) is_error: bool,
}

#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPostPage<'a> {
    action: &'a str,
    params: &'a [(String, String)],
    nonce: &'a str,
}

/// The one-step-of-a-sign-in state sealed into the second-factor form.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct PendingSignIn {
    pub(super) user_id: String,
    pub(super) amr: Vec<String>,
    pub(super) auth_time: i64,
    pub(super) exp: i64,
    /// The CSRF cookie it was issued to: the state works only in the browser that got it.
    pub(super) csrf: String,
}

const PENDING_PURPOSE: &str = "jeton pending sign-in 1";
/// How long a password-checked sign-in waits for its second factor.
const PENDING_SECS: i64 = 300;
/// The one answer to every refused password sign-in (no user enumeration).
const WRONG_CREDENTIALS: &str = "The username or password is incorrect.";

/// What a scope lets an application see, for the consent page.
fn scope_meaning(scope: &str) -> &'static str {
    match scope {
        "openid" => "confirm who you are",
        "profile" => "your name, username, picture and profile details",
        "email" => "your email address",
        "phone" => "your phone number",
        "address" => "your address",
        "offline_access" => "stay signed in to it when you are away",
        _ => "",
    }
}

/// A colour the pages accept from a record: `#rgb` or `#rrggbb`, else the default.
fn brand_color(c: &str) -> String {
    let hex = c.strip_prefix('#').unwrap_or("");
    if (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        c.to_string()
    } else {
        "#2f5bd3".to_string()
    }
}

/// A logo URL the pages show: https, or an image data URL; anything else is dropped.
fn brand_logo(url: &str) -> String {
    if url.starts_with("https://") || url.starts_with("data:image/") {
        url.to_string()
    } else {
        String::new()
    }
}

impl Edge {
    /// The brand of an application's pages: its own name, logo and colour, else its organization's.
    pub(super) fn brand(&self, app: Option<&jeton_raft::model::Application>) -> Brand {
        let org = app.and_then(|a| self.store.organization(&a.organization).ok().flatten()?.to_owned().ok());
        let pick =
            |own: &str, org: Option<&str>| if own.is_empty() { org.unwrap_or("").to_string() } else { own.into() };
        match app {
            Some(a) => Brand::new(
                pick(&a.display_name, Some(&a.name)),
                &pick(&a.logo, org.as_ref().map(|o| o.logo.as_str())),
                &pick(&a.theme_color, org.as_ref().map(|o| o.theme_color.as_str())),
            ),
            None => Brand::new("Jeton".into(), "", ""),
        }
    }
}

/// The CSRF cookie of the browser, or a new one to set.
struct Csrf {
    value: String,
    is_new: bool,
}

fn csrf_of(edge: &Edge, r: &PageRequest) -> Csrf {
    match r.cookie(csrf_cookie_name(edge.config.sessions.secure_cookies)) {
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => Csrf { value: v, is_new: false },
        _ => Csrf { value: random_hex(32), is_new: true },
    }
}

pub(super) fn new_page(
    edge: &Edge,
    r: &PageRequest,
    app: Option<&jeton_raft::model::Application>,
) -> (Page, Option<String>) {
    let csrf = csrf_of(edge, r);
    let set =
        csrf.is_new.then(|| cookie(edge, csrf_cookie_name(edge.config.sessions.secure_cookies), &csrf.value, None));
    let lang = r.param("ui_locales").split_whitespace().next().unwrap_or("en");
    let lang =
        if lang.len() <= 16 && lang.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') { lang } else { "en" };
    let page =
        Page { brand: edge.brand(app), csrf: edge.csrf_token(&csrf.value), nonce: random_hex(16), lang: lang.into() };
    (page, set)
}

/// A `Set-Cookie` value: host-only, `Path=/`, `HttpOnly`, `SameSite=Lax`, `Secure` over TLS; `max_age`
/// `Some(0)` deletes it.
pub(super) fn cookie(edge: &Edge, name: &str, value: &str, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if edge.config.sessions.secure_cookies {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// An HTML response with the pages' security headers.
pub(super) fn html(status: u16, body: String, nonce: &str, cookies: &[String]) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let h = r.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(h, nonce);
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(SET_COOKIE, v);
        }
    }
    r
}

fn secure_headers(h: &mut HeaderMap, nonce: &str) {
    let csp = format!(
        "default-src 'none'; style-src 'self' 'nonce-{nonce}'; script-src 'self' 'nonce-{nonce}'; img-src 'self' data: https:; \
         connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(hyper::header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(hyper::header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(hyper::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(hyper::header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A redirect (303, so a POST becomes a GET) with the pages' headers.
pub(super) fn see_other(location: &str, cookies: &[String]) -> Reply {
    let mut r = html(303, String::new(), "", cookies);
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(LOCATION, v);
        }
        Err(_) => *r.status_mut() = StatusCode::BAD_REQUEST,
    }
    r
}

/// A page that only says something (an error that must not be redirected, a confirmation).
pub(super) fn message(edge: &Edge, r: &PageRequest, status: u16, title: &str, text: &str, error: bool) -> Reply {
    let (page, set) = new_page(edge, r, None);
    let body = MessagePage { page: &page, title, message: text, is_error: error }.render().unwrap_or_default();
    html(status, body, &page.nonce, set.as_slice())
}

/// Sends an authorization response the way the client asked for (RFC 6749 §4.1.2; query, fragment or
/// form_post).
fn respond(resp: &AuthorizationResponse, cookies: &[String]) -> Reply {
    match resp.mode {
        ResponseMode::FormPost => {
            let nonce = random_hex(16);
            let body = FormPostPage { action: &resp.redirect_uri, params: &resp.params, nonce: &nonce }
                .render()
                .unwrap_or_default();
            html(200, body, &nonce, cookies)
        }
        _ => see_other(&resp.location(), cookies),
    }
}

fn refusal(edge: &Edge, r: &PageRequest, refusal: AuthorizeRefusal, cookies: &[String]) -> Reply {
    match refusal {
        AuthorizeRefusal::Page(text) => message(edge, r, 400, "This sign-in link cannot be used", &text, true),
        AuthorizeRefusal::Redirect(resp) => respond(&resp, cookies),
    }
}

/// The authorization request as the pages carry it: its parameters as a query string.
fn carried(req: &AuthorizationRequest) -> String {
    let pairs: Vec<(&str, &str)> = req.params.iter().collect();
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// What a sign-in continues to once the user has authenticated. The sign-in forms carry it in their
/// hidden `request` field: an authorization request as its query string, a device verification as
/// [`DEVICE_CONTINUATION`] and the user code.
pub(super) enum Continuation {
    Authorize(AuthorizationRequest),
    /// The device flow's verification page, for this user code (RFC 8628 §3.3).
    Device(DevicePrompt),
}

/// How a carried device verification starts (a query string never does: `:` is not in a parameter name
/// an authorization request uses).
const DEVICE_CONTINUATION: &str = "device:";

impl Continuation {
    fn carried(&self) -> String {
        match self {
            Continuation::Authorize(areq) => carried(areq),
            Continuation::Device(prompt) => format!("{DEVICE_CONTINUATION}{}", prompt.user_code),
        }
    }

    /// The application the user signs in to: its brand on the pages, its organization for the password.
    fn app(&self) -> &jeton_raft::model::Application {
        match self {
            Continuation::Authorize(areq) => &areq.client.app,
            Continuation::Device(prompt) => &prompt.client.app,
        }
    }

    fn login_hint(&self) -> &str {
        match self {
            Continuation::Authorize(areq) => &areq.login_hint,
            Continuation::Device(_) => "",
        }
    }
}

/// What a sign-in form carried back, checked again; otherwise the page that says why not (boxed: the
/// error side of a result stays small).
fn carried_continuation(edge: &Edge, r: &PageRequest) -> Result<Continuation, Box<Reply>> {
    if let Some(user_code) = r.param("request").strip_prefix(DEVICE_CONTINUATION) {
        return match edge.device_prompt(user_code, Some(r.ip)) {
            Ok(prompt) => Ok(Continuation::Device(prompt)),
            Err(refused) => Err(Box::new(device::refused(edge, r, refused))),
        };
    }
    carried_request(edge, r).map(Continuation::Authorize).map_err(|refused| Box::new(refusal(edge, r, refused, &[])))
}

/// The authorization request a page's form carried back.
fn carried_request(edge: &Edge, r: &PageRequest) -> Result<AuthorizationRequest, AuthorizeRefusal> {
    let mut params = Params::new();
    for (k, v) in form_pairs(r.param("request")).take(Params::MAX) {
        params.insert_if_absent(k, v);
    }
    edge.authorization_request(&params)
}

/// The session the browser's cookie stands for, and its user, if both are good.
pub(super) fn signed_in(edge: &Edge, r: &PageRequest) -> Option<(BrowserSession, User)> {
    let value = r.cookie(session_cookie_name(edge.config.sessions.secure_cookies))?;
    let session = edge.session_from_cookie(&value).ok()??;
    let user = edge.store.user_by_id(&session.user_id).ok()??.to_owned().ok()?;
    Some((session, user))
}

/// `GET|POST /oauth/authorize` (and Casdoor's `/login/oauth/authorize`).
pub(super) async fn authorize(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    ip: IpAddr,
) -> Reply {
    let r = match PageRequest::read(req, limit, timeout, ip).await {
        Ok(r) => r,
        Err(e) => return bad_request(edge, e),
    };
    let areq = match edge.authorization_request(&r.params) {
        Ok(a) => a,
        Err(refused) => return refusal(edge, &r, refused, &[]),
    };
    let current = signed_in(edge, &r);
    proceed(edge, &r, &areq, current.as_ref().map(|(s, u)| (s, u)), false, &[]).await
}

fn bad_request(_edge: &Edge, e: OAuthError) -> Reply {
    let mut r = html(
        e.status,
        format!("<!doctype html><title>Bad request</title><p>{}</p>", askama_escape(&e.description)),
        "",
        &[],
    );
    if e.status == 413 || e.status == 408 {
        r.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// HTML-escapes a text for the one page not rendered from a template.
fn askama_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Takes an authorization request one step further: the login page, the consent page, or a code.
/// `fresh`: the user authenticated in this very request (so `prompt=login` and `max_age` are satisfied).
async fn proceed(
    edge: &Edge,
    r: &PageRequest,
    areq: &AuthorizationRequest,
    current: Option<(&BrowserSession, &User)>,
    fresh: bool,
    cookies: &[String],
) -> Reply {
    let step = match current {
        Some((s, u)) if fresh || !areq.prompts("login") => edge.authorization_step(areq, Some(s), Some(u), fresh),
        _ => Step::Login,
    };
    let issuer = &edge.config.issuer;
    match step {
        Step::Login if areq.prompts("none") => {
            respond(&areq.error(issuer, "login_required", "the user is not signed in"), cookies)
        }
        Step::Login => login_page(edge, r, &Continuation::Authorize(areq.clone()), "", 200, cookies),
        Step::Consent(_) if areq.prompts("none") => {
            respond(&areq.error(issuer, "consent_required", "the user has not consented to these scopes"), cookies)
        }
        Step::Consent(scopes) => {
            let Some((_, user)) = current else {
                return login_page(edge, r, &Continuation::Authorize(areq.clone()), "", 200, cookies);
            };
            let (page, set) = new_page(edge, r, Some(&areq.client.app));
            let scopes = scopes
                .into_iter()
                .map(|s| {
                    let m = scope_meaning(&s);
                    (s, m)
                })
                .collect();
            let body = ConsentPage { page: &page, request: &carried(areq), user: &user.name, scopes }
                .render()
                .unwrap_or_default();
            let all: Vec<String> = cookies.iter().cloned().chain(set).collect();
            html(200, body, &page.nonce, &all)
        }
        Step::Issue => {
            let Some((session, _)) = current else {
                return login_page(edge, r, &Continuation::Authorize(areq.clone()), "", 200, cookies);
            };
            match edge.issue_code(areq, session).await {
                Ok(resp) => respond(&resp, cookies),
                Err(e) => respond(&areq.error(issuer, oauth_code_error(&e), &e.description), cookies),
            }
        }
    }
}

/// The error code a failed step sends to the client: `temporarily_unavailable` (RFC 6749 §4.1.2.1) when the
/// cluster could not take the write, else `server_error`.
fn oauth_code_error(e: &OAuthError) -> &'static str {
    if e.status == 503 {
        "temporarily_unavailable"
    } else {
        "server_error"
    }
}

fn login_page(edge: &Edge, r: &PageRequest, to: &Continuation, error: &str, status: u16, cookies: &[String]) -> Reply {
    let (page, set) = new_page(edge, r, Some(to.app()));
    let hint = if r.param("username").is_empty() { to.login_hint() } else { r.param("username") };
    let body = LoginPage { page: &page, request: &to.carried(), login_hint: hint, error }.render().unwrap_or_default();
    let all: Vec<String> = cookies.iter().cloned().chain(set).collect();
    html(status, body, &page.nonce, &all)
}

/// Checks the form's CSRF token against the browser's cookie.
pub(super) fn csrf_checked(edge: &Edge, r: &PageRequest) -> bool {
    let cookie = r.cookie(csrf_cookie_name(edge.config.sessions.secure_cookies));
    edge.csrf_ok(cookie.as_deref(), r.param("csrf"))
}

fn csrf_refused(edge: &Edge, r: &PageRequest) -> Reply {
    message(
        edge,
        r,
        403,
        "This form has expired",
        "The page was open too long or came from somewhere else. Go back to the application and sign in again.",
        true,
    )
}

/// `POST /login`: the password step.
pub(super) async fn login(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration, ip: IpAddr) -> Reply {
    let r = match PageRequest::read(req, limit, timeout, ip).await {
        Ok(r) => r,
        Err(e) => return bad_request(edge, e),
    };
    if !csrf_checked(edge, &r) {
        return csrf_refused(edge, &r);
    }
    let to = match carried_continuation(edge, &r) {
        Ok(to) => to,
        Err(page) => return *page,
    };
    let (login, password) = (r.param("username").trim(), r.param("password"));
    if login.is_empty() || password.is_empty() {
        return login_page(edge, &r, &to, "Enter your username and password.", 400, &[]);
    }
    let app = to.app();
    let sign_in = SignIn {
        organization: &app.organization,
        login,
        password,
        client_ip: Some(ip),
        lockout: LockoutRule::Of(Lockout::of(app)),
        ignore_case: false,
    };
    let user = match edge.passwords.verify(sign_in).await {
        Ok(v) => v.user,
        Err(Refused::Locked { .. } | Refused::RateLimited) => {
            return login_page(edge, &r, &to, "Too many attempts. Wait a few minutes, then try again.", 429, &[])
        }
        Err(Refused::Internal(e)) => {
            tracing::error!("sign-in page: {e}");
            return login_page(edge, &r, &to, "Signing in failed on our side. Try again.", 500, &[]);
        }
        Err(_) => return login_page(edge, &r, &to, WRONG_CREDENTIALS, 401, &[]),
    };
    if crate::passwords::may_sign_in(&user).is_err() {
        return login_page(edge, &r, &to, WRONG_CREDENTIALS, 401, &[]);
    }
    let auth = Authentication { user_id: user.id.clone(), amr: vec!["pwd".into()], auth_time: now() };
    match second_factor(edge, &user) {
        Ok(SecondFactor::None) => finish_sign_in(edge, &r, &to, &user, &auth).await,
        Ok(SecondFactor::Totp | SecondFactor::Passkey) => totp_page(edge, &r, &to, &auth, ""),
        Ok(SecondFactor::Enrol) => enrolment::in_sign_in(edge, &r, &to, &user, &auth, None, ""),
        Err(e) => {
            tracing::error!("sign-in page: {e:?}");
            login_page(edge, &r, &to, "Signing in failed on our side. Try again.", 500, &[])
        }
    }
}

/// What a user must show after their password.
enum SecondFactor {
    None,
    /// A TOTP or recovery code (or a passkey, if they have one too).
    Totp,
    /// One of their passkeys.
    Passkey,
    /// MFA is required (see [`Edge::mfa_required`]) and the user has no factor yet: they set up TOTP now.
    Enrol,
}

fn second_factor(edge: &Edge, user: &User) -> Result<SecondFactor, OAuthError> {
    if edge.store.totp(&user.id)?.is_some() {
        return Ok(SecondFactor::Totp);
    }
    if edge.store.passkeys_of(&user.id).next().is_some() {
        return Ok(SecondFactor::Passkey);
    }
    if edge.mfa_required(user)? {
        return Ok(SecondFactor::Enrol);
    }
    Ok(SecondFactor::None)
}

/// The password step of `auth`, sealed for the next form: it works for [`PENDING_SECS`], in this browser.
fn seal_pending(edge: &Edge, r: &PageRequest, auth: &Authentication) -> Result<String, OAuthError> {
    let csrf = r.cookie(csrf_cookie_name(edge.config.sessions.secure_cookies)).unwrap_or_default();
    let pending = PendingSignIn {
        user_id: auth.user_id.clone(),
        amr: auth.amr.clone(),
        auth_time: auth.auth_time,
        exp: now() + PENDING_SECS,
        csrf,
    };
    edge.seal_for_browser(PENDING_PURPOSE, &pending)
}

/// The user and password step of a pending sign-in the form carried back, or the login page to answer: the
/// step is too old or another browser's, or the user may no longer sign in.
pub(super) fn pending_sign_in(
    edge: &Edge,
    r: &PageRequest,
    to: &Continuation,
) -> Result<(User, Authentication), Box<Reply>> {
    let Some(pending) = open_pending(edge, r) else {
        return Err(Box::new(login_page(edge, r, to, "The sign-in took too long. Sign in again.", 401, &[])));
    };
    let user = match edge.store.user_by_id(&pending.user_id).ok().flatten().and_then(|u| u.to_owned().ok()) {
        Some(u) if crate::passwords::may_sign_in(&u).is_ok() => u,
        _ => return Err(Box::new(login_page(edge, r, to, WRONG_CREDENTIALS, 401, &[]))),
    };
    Ok((user, Authentication { user_id: pending.user_id, amr: pending.amr, auth_time: pending.auth_time }))
}

/// The password step a form carried back, if it is this browser's and not too old.
fn open_pending(edge: &Edge, r: &PageRequest) -> Option<PendingSignIn> {
    let csrf = r.cookie(csrf_cookie_name(edge.config.sessions.secure_cookies)).unwrap_or_default();
    let pending: Option<PendingSignIn> = edge.open_from_browser(PENDING_PURPOSE, r.param("pending"));
    pending.filter(|p| p.exp > now() && p.csrf == csrf)
}

fn totp_page(edge: &Edge, r: &PageRequest, to: &Continuation, auth: &Authentication, error: &str) -> Reply {
    let (page, set) = new_page(edge, r, Some(to.app()));
    let sealed = match seal_pending(edge, r, auth) {
        Ok(s) => s,
        Err(_) => return login_page(edge, r, to, "Signing in failed on our side. Try again.", 500, &[]),
    };
    let status = if error.is_empty() { 200 } else { 401 };
    let totp = edge.store.totp(&auth.user_id).is_ok_and(|t| t.is_some());
    let passkey = edge.store.passkeys_of(&auth.user_id).next().is_some();
    let body = TotpPage { page: &page, request: &to.carried(), pending: &sealed, error, totp, passkey }
        .render()
        .unwrap_or_default();
    html(status, body, &page.nonce, set.as_slice())
}

/// `POST /login/totp`: the second factor.
pub(super) async fn login_totp(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    ip: IpAddr,
) -> Reply {
    let r = match PageRequest::read(req, limit, timeout, ip).await {
        Ok(r) => r,
        Err(e) => return bad_request(edge, e),
    };
    if !csrf_checked(edge, &r) {
        return csrf_refused(edge, &r);
    }
    let to = match carried_continuation(edge, &r) {
        Ok(to) => to,
        Err(page) => return *page,
    };
    let (user, auth) = match pending_sign_in(edge, &r, &to) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let lockout = LockoutRule::Of(Lockout::of(to.app()));
    match edge.check_second_factor(&user, r.param("code"), Codes::TotpOrRecovery, Some(ip), lockout).await {
        Ok(()) => finish_sign_in(edge, &r, &to, &user, &auth.with_second_factor()).await,
        Err(Refused::Locked { .. } | Refused::RateLimited) => {
            totp_page(edge, &r, &to, &auth, "Too many attempts. Wait a few minutes, then try again.")
        }
        Err(Refused::Internal(e)) => {
            tracing::error!("sign-in page: second factor: {e}");
            totp_page(edge, &r, &to, &auth, "Checking the code failed on our side. Try again.")
        }
        Err(_) => totp_page(edge, &r, &to, &auth, "The code is incorrect or was used already."),
    }
}

/// Starts the session of a user who authenticated, then takes on what the sign-in was for.
pub(super) async fn finish_sign_in(
    edge: &Edge,
    r: &PageRequest,
    to: &Continuation,
    user: &User,
    auth: &Authentication,
) -> Reply {
    match begin_session(edge, r, to, user, auth).await {
        Ok((session, set)) => continue_signed_in(edge, r, to, &session, user, &[set]).await,
        Err(refused) => refused,
    }
}

/// Takes on what a sign-in was for, once the user has a session.
pub(super) async fn continue_signed_in(
    edge: &Edge,
    r: &PageRequest,
    to: &Continuation,
    session: &BrowserSession,
    user: &User,
    cookies: &[String],
) -> Reply {
    match to {
        Continuation::Authorize(areq) => proceed(edge, r, areq, Some((session, user)), true, cookies).await,
        Continuation::Device(prompt) => device::confirm_page(edge, r, prompt, user, cookies),
    }
}

/// Starts the session of a user who authenticated: the session and its `Set-Cookie`, or the login page to
/// answer.
pub(super) async fn begin_session(
    edge: &Edge,
    r: &PageRequest,
    to: &Continuation,
    user: &User,
    auth: &Authentication,
) -> Result<(BrowserSession, String), Reply> {
    let ip = r.ip.to_string();
    let (value, session) = match edge.start_session(user, auth, Some(to.app()), &ip, r.user_agent()).await {
        Ok(s) => s,
        Err(e) if e.status == 503 => {
            return Err(login_page(edge, r, to, "The service is busy. Try again in a moment.", 503, &[]))
        }
        Err(_) => return Err(login_page(edge, r, to, WRONG_CREDENTIALS, 401, &[])),
    };
    Ok((session, cookie(edge, session_cookie_name(edge.config.sessions.secure_cookies), &value, None)))
}

/// `POST /consent`.
pub(super) async fn consent(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration, ip: IpAddr) -> Reply {
    let r = match PageRequest::read(req, limit, timeout, ip).await {
        Ok(r) => r,
        Err(e) => return bad_request(edge, e),
    };
    if !csrf_checked(edge, &r) {
        return csrf_refused(edge, &r);
    }
    let areq = match carried_request(edge, &r) {
        Ok(a) => a,
        Err(refused) => return refusal(edge, &r, refused, &[]),
    };
    let Some((session, user)) = signed_in(edge, &r) else {
        return login_page(edge, &r, &Continuation::Authorize(areq), "", 200, &[]);
    };
    if r.param("decision") != "allow" {
        return respond(&areq.error(&edge.config.issuer, "access_denied", "the user denied the request"), &[]);
    }
    if let Err(e) = edge.grant_consent(&user, &areq.client.app, &areq.scopes()).await {
        return respond(&areq.error(&edge.config.issuer, oauth_code_error(&e), &e.description), &[]);
    }
    proceed(edge, &r, &areq, Some((&session, &user)), true, &[]).await
}

/// `GET /assets/…`: the pages' stylesheet and script.
pub(super) fn asset(path: &str) -> Option<Reply> {
    let (body, content_type): (&'static str, &'static str) = match path {
        "/assets/jeton.css" => (include_str!("../../../assets/jeton.css"), "text/css; charset=utf-8"),
        "/assets/passkey.js" => (include_str!("../../../assets/passkey.js"), "text/javascript; charset=utf-8"),
        _ => return None,
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    h.insert(hyper::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::{brand_color, brand_logo, ink_on};

    #[test]
    fn brand_text_keeps_its_contrast_and_records_cannot_inject_styles() {
        assert_eq!(ink_on("#2f5bd3"), "#ffffff");
        assert_eq!(ink_on("#ffeb3b"), "#000000");
        assert_eq!(ink_on("#fff"), "#000000");
        assert_eq!(ink_on("#000"), "#ffffff");
        assert_eq!(brand_color("red; } body { display: none"), "#2f5bd3");
        assert_eq!(brand_color("#0b6e4f"), "#0b6e4f");
        assert_eq!(brand_logo("javascript:alert(1)"), "");
        assert_eq!(brand_logo("http://insecure.example/logo.png"), "");
        assert_eq!(brand_logo("https://acme.example/logo.svg"), "https://acme.example/logo.svg");
    }
}
