//! The browser sign-in (authorization code with PKCE, ID tokens) as relying parties see it.
//!
//! The proof is a relying party that is not ours: `tests/e2e/oidc_rp/rp.py`, Python's authlib configured
//! from the discovery document alone, signs a user in through the login page, redeems the code and
//! validates the ID token (signature from the JWKS, nonce, at_hash), for a confidential and a public client.
//! `tests/e2e/oidc_rp/install.sh` installs authlib (`.ci/run` runs it).
//!
//! The ways the flow must refuse are driven by hand here with reqwest as a browser that follows no redirect
//! and keeps its cookies, so every hop can be looked at: a redirect_uri that is not registered, a missing
//! or wrong PKCE verifier, a replayed code, a code taken to another client, prompt=none without a session,
//! a login form posted without its CSRF token, a public client without PKCE. (An expired code would take
//! its 60 s lifetime to show.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Url;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::*;

/// Where the relying party is sent back to. Nothing listens there: the browser stops at the redirect that
/// names it and the test reads the code from that Location.
pub(crate) const REDIRECT_URI: &str = "https://rp.example/callback";
pub(crate) const ORG: &str = "acme";
pub(crate) const USER: &str = "alice";
pub(crate) const PASSWORD: &str = "Alice-Password-1";

/// What makes an application a public client (no secret; PKCE is its only proof at the token endpoint).
/// The admin API's spelling of it is an assumption of this file, kept in this one place.
fn public_client() -> Value {
    json!({"publicClient": true})
}

/// A web application of [`ORG`] that signs users in with the code flow, back to [`REDIRECT_URI`]. It is
/// first party (`skipConsent`), so no consent page comes between the login and the redirect. Its client id
/// is `<name>-client`, as [`Node::app_with_user`] names them.
pub(crate) fn web_app(name: &str) -> Value {
    json!({
        "owner": "admin", "name": name, "organization": ORG, "clientId": format!("{name}-client"),
        "grantTypes": ["authorization_code", "refresh_token"], "redirectUris": [REDIRECT_URI],
        "skipConsent": true, "expireInHours": 1, "refreshExpireInHours": 24,
    })
}

/// One node with [`ORG`], its user [`USER`], and three web applications: a confidential one, another
/// confidential one (to take a code to the wrong client) and a public one.
struct Site {
    node: Node,
    /// The issuer from the discovery document: what `iss` must say everywhere.
    issuer: String,
    /// The user's `sub`.
    user_id: String,
    web: Client,
    other: Client,
    public: Client,
}

/// An application's credentials; `secret` is `None` for a public client.
struct Client {
    id: String,
    secret: Option<String>,
}

impl Site {
    async fn start() -> Site {
        Site::on(Node::start().await).await
    }

    /// The site on a node started some other way.
    async fn on(node: Node) -> Site {
        let (id, secret) = node.app_with_user(ORG, "app-web", web_app("app-web"), USER, PASSWORD).await;
        let web = Client { id, secret: Some(secret) };

        let other_secret = "app-other-secret-0123456789";
        let mut other = web_app("app-other");
        other["clientSecret"] = json!(other_secret);
        let (s, v) = node.admin_post("add-application", other).await;
        assert_eq!(s, 200, "{v}");
        let other = Client { id: "app-other-client".into(), secret: Some(other_secret.into()) };

        let mut public = web_app("app-public");
        if let (Some(app), Some(flag)) = (public.as_object_mut(), public_client().as_object()) {
            app.extend(flag.clone());
        }
        let (s, v) = node.admin_post("add-application", public).await;
        assert_eq!(s, 200, "a public client: {v}");
        let public = Client { id: "app-public-client".into(), secret: None };

        let (s, doc) = node.get("/.well-known/openid-configuration").await;
        assert_eq!(s, 200, "{doc}");
        let issuer = doc["issuer"].as_str().expect("issuer in discovery").to_string();
        let (s, v) = node.admin_get(&format!("get-user?id={ORG}/{USER}")).await;
        assert_eq!(s, 200, "{v}");
        let user_id = v["data"]["id"].as_str().expect("user id").to_string();
        Site { node, issuer, user_id, web, other, public }
    }

    /// `grant_type=authorization_code` at the token endpoint as `client` (Basic auth, or only its
    /// client_id when it is public).
    async fn redeem(&self, client: &Client, code: &str, verifier: Option<&str>) -> (u16, Value) {
        let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT_URI)];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        match &client.secret {
            Some(secret) => self.node.post_form_basic("/oauth/token", &client.id, secret, &form).await,
            None => {
                form.push(("client_id", &client.id));
                self.node.post_form("/oauth/token", &form).await
            }
        }
    }

    /// Whether the node calls `token` active, asked by the confidential web application.
    async fn active(&self, token: &str) -> bool {
        let secret = self.web.secret.as_deref().unwrap_or_default();
        let (s, v) = self.node.post_form_basic("/oauth/introspect", &self.web.id, secret, &[("token", token)]).await;
        assert_eq!(s, 200, "{v}");
        v["active"] == json!(true)
    }
}

/// One authorization request: the parameters a relying party sends, and the PKCE verifier it keeps.
pub(crate) struct Authorization {
    state: String,
    pub(crate) verifier: String,
    params: Vec<(&'static str, String)>,
}

impl Authorization {
    /// A code request of `client_id` with state, nonce and PKCE S256.
    pub(crate) fn new(client_id: &str) -> Authorization {
        let state = uuid::Uuid::new_v4().simple().to_string();
        let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let params = vec![
            ("response_type", "code".to_string()),
            ("client_id", client_id.to_string()),
            ("redirect_uri", REDIRECT_URI.to_string()),
            ("scope", "openid profile email offline_access".to_string()),
            ("state", state.clone()),
            ("nonce", uuid::Uuid::new_v4().simple().to_string()),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256".to_string()),
        ];
        Authorization { state, verifier, params }
    }

    /// The same request with `name` set to `value` (`None`: left out).
    pub(crate) fn with(mut self, name: &'static str, value: Option<&str>) -> Authorization {
        self.params.retain(|(n, _)| *n != name);
        if let Some(v) = value {
            self.params.push((name, v.to_string()));
        }
        self
    }

    pub(crate) fn url(&self, node: &Node) -> String {
        Url::parse_with_params(&node.url("/oauth/authorize"), &self.params).expect("authorize url").to_string()
    }
}

/// One HTTP answer as the browser saw it.
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// The Location header, made absolute.
    location: Option<Url>,
    content_type: String,
    /// Names of the cookies the answer set (a cookie being deleted included).
    cookies_set: Vec<String>,
    pub(crate) body: String,
}

impl Answer {
    fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status)
    }

    /// The query of a redirect to [`REDIRECT_URI`]; panics, saying what came instead, on anything else.
    pub(crate) fn callback(&self) -> BTreeMap<String, String> {
        let location = self.location.as_ref().filter(|_| self.is_redirect());
        let Some(location) = location.filter(|l| l.as_str().starts_with(REDIRECT_URI)) else {
            panic!(
                "expected a redirect to {REDIRECT_URI}, got {} (Location {:?}): {}",
                self.status,
                self.location.as_ref().map(Url::as_str),
                self.body
            );
        };
        location.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    /// Whether the answer set a browser-session cookie.
    fn set_session(&self) -> bool {
        self.cookies_set.iter().any(|c| is_session_cookie(c))
    }
}

/// The session cookie's two names (`__Host-` over TLS).
fn is_session_cookie(name: &str) -> bool {
    name == "jeton_session" || name == "__Host-jeton_session"
}

/// A browser as the sign-in pages see it: it keeps the cookies it is given (host-only; every request here
/// goes to one node) and follows no redirect by itself.
pub(crate) struct Browser {
    http: reqwest::Client,
    pub(crate) cookies: BTreeMap<String, String>,
}

impl Browser {
    pub(crate) fn new() -> Browser {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client");
        Browser { http, cookies: BTreeMap::new() }
    }

    pub(crate) async fn get(&mut self, url: &str) -> Answer {
        self.send(self.http.get(url)).await
    }

    pub(crate) async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Answer {
        self.send(self.http.post(url).form(form)).await
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let request = if jar.is_empty() { request } else { request.header("cookie", jar.join("; ")) };
        let r = request.send().await.expect("request");
        let url = r.url().clone();
        let mut cookies_set = Vec::new();
        for header in r.headers().get_all("set-cookie") {
            let Some((pair, attributes)) = header.to_str().ok().map(|h| h.split_once(';').unwrap_or((h, ""))) else {
                continue;
            };
            let Some((name, value)) = pair.split_once('=') else { continue };
            let (name, value) = (name.trim().to_string(), value.trim().to_string());
            let deleted = value.is_empty() || attributes.to_ascii_lowercase().replace(' ', "").contains("max-age=0");
            if deleted {
                self.cookies.remove(&name);
            } else {
                self.cookies.insert(name.clone(), value);
            }
            cookies_set.push(name);
        }
        let header = |name: &str| r.headers().get(name).and_then(|h| h.to_str().ok()).map(str::to_string);
        let location = header("location").map(|l| url.join(&l).expect("a Location that is a URL"));
        let content_type = header("content-type").unwrap_or_default();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        Answer { status, location, content_type, cookies_set, body }
    }

    fn has_session(&self) -> bool {
        self.cookies.keys().any(|c| is_session_cookie(c))
    }

    /// Opens the authorization URL without a session: the login page, whose form fields are returned.
    pub(crate) async fn login_page(&mut self, node: &Node, auth: &Authorization) -> LoginForm {
        let page = self.get(&auth.url(node)).await;
        assert_eq!(page.status, 200, "the login page (Location {:?}): {}", page.location, page.body);
        LoginForm::read(&node.base, &page.body)
    }

    /// The whole sign-in: authorization URL, login form, and the redirect to the relying party, whose query
    /// is returned.
    pub(crate) async fn sign_in(&mut self, node: &Node, auth: &Authorization) -> BTreeMap<String, String> {
        let form = self.login_page(node, auth).await;
        let answer = self.post(&form.action, &form.filled(USER, PASSWORD)).await;
        assert_eq!(answer.status, 303, "POST /login: {}", answer.body);
        assert!(answer.set_session() && self.has_session(), "no session cookie after signing in");
        // A first-party application's sign-in goes on to the relying party at once.
        answer.callback()
    }

    /// An authorization request from a browser that is signed in already: straight back with a code.
    pub(crate) async fn authorize(&mut self, node: &Node, auth: &Authorization) -> BTreeMap<String, String> {
        self.get(&auth.url(node)).await.callback()
    }
}

/// The login form of a page: where it posts and its hidden fields.
pub(crate) struct LoginForm {
    action: String,
    hidden: Vec<(String, String)>,
}

impl LoginForm {
    /// Reads the form from `page`, served by the node at `base`.
    fn read(base: &str, page: &str) -> LoginForm {
        // Tags are found in a lowercased copy (same byte offsets: ASCII case only) and read from the page.
        let lower = page.to_ascii_lowercase();
        let at = lower.find("id=\"login-form\"").unwrap_or_else(|| panic!("no #login-form on the page: {page}"));
        let start = lower[..at].rfind("<form").expect("<form");
        let end = lower[start..].find("</form>").map_or(page.len(), |e| start + e);
        let form = &page[start..end];
        let open = &form[..form.find('>').expect("form tag")];
        let action = attribute(open, "action").expect("form action");
        let hidden = lower[start..end]
            .match_indices("<input")
            .map(|(i, _)| &form[i..])
            .map(|tag| &tag[..tag.find('>').unwrap_or(tag.len())])
            .filter(|tag| attribute(tag, "type").is_some_and(|t| t.eq_ignore_ascii_case("hidden")))
            .filter_map(|tag| Some((attribute(tag, "name")?, attribute(tag, "value").unwrap_or_default())))
            .collect::<Vec<_>>();
        for name in ["csrf", "request"] {
            assert!(hidden.iter().any(|(n, _)| n == name), "the login form has no hidden {name}: {form}");
        }
        let action = Url::parse(base).and_then(|b| b.join(&action)).expect("form action URL").to_string();
        LoginForm { action, hidden }
    }

    fn field(&self, name: &str) -> &str {
        self.hidden.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }

    /// The form as submitted with `username` and `password`.
    pub(crate) fn filled<'a>(&'a self, username: &'a str, password: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut form: Vec<(&str, &str)> = self.hidden.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        form.extend([("username", username), ("password", password)]);
        form
    }

    /// [`LoginForm::filled`] with the `csrf` field replaced (`None`: left out).
    fn filled_with_csrf<'a>(&'a self, csrf: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
        let mut form = self.filled(USER, PASSWORD);
        form.retain(|(n, _)| *n != "csrf");
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        form
    }
}

/// Decodes the character references a server writes into an attribute: the named ones for `"&'<>` and
/// any numeric one (`&#38;`, `&#x26;`).
fn unescape_html(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "quot" => Some('"'),
            "apos" => Some('\''),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            e => e
                .strip_prefix("#x")
                .or_else(|| e.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| e.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of attribute `name` in the inside of an HTML start tag (`<input type="hidden" ...`), with
/// the character references a server writes into an attribute decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag.trim_start_matches(|c: char| c != ' ' && c != '\t' && c != '\n');
    loop {
        rest = rest.trim_start();
        let end = rest.find(|c: char| c == '=' || c == '>' || c.is_whitespace()).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        let key = &rest[..end];
        rest = rest[end..].trim_start();
        let mut value = String::new();
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (raw, tail) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let close = after[1..].find(q).map_or(after.len(), |i| i + 1);
                    (&after[1..close], after.get(close + 1..).unwrap_or(""))
                }
                _ => {
                    let stop = after.find(|c: char| c.is_whitespace() || c == '>').unwrap_or(after.len());
                    (&after[..stop], &after[stop..])
                }
            };
            value = unescape_html(raw);
            rest = tail;
        }
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
    }
}

// --- the relying party that is not ours -------------------------------------------------------------

/// The venv `tests/e2e/oidc_rp/install.sh` fills.
fn rp_python() -> PathBuf {
    let venv = std::env::var_os("JETON_RP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/jeton-rp-venv"));
    let python = venv.join("bin/python");
    if !python.exists() {
        panic!(
            "authlib is not installed ({} is missing): run `bash tests/e2e/oidc_rp/install.sh` (.ci/run does)",
            python.display()
        );
    }
    python
}

/// Runs rp.py for `client` against the site and returns the JSON it prints; panics with its output and
/// the node's log unless it succeeds.
fn run_rp(site: &Site, client: &Client) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/oidc_rp/rp.py");
    let out = Command::new(rp_python())
        .arg(&script)
        .args([&site.issuer, &client.id, client.secret.as_deref().unwrap_or(""), REDIRECT_URI, USER, PASSWORD])
        .output()
        .expect("run rp.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rp.py failed ({}):\n{stdout}{stderr}\nnode log:\n{}",
        out.status,
        site.node.output()
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("rp.py printed no JSON line ({e}): {stdout}"))
}

/// What rp.py must have established for any client.
fn assert_rp_signed_in(site: &Site, client: &Client, rp: &Value) {
    assert_eq!(rp["issuer"], site.issuer.as_str(), "{rp}");
    assert_eq!(rp["sub"], site.user_id.as_str(), "the ID token's sub is the user's id: {rp}");
    assert_eq!(rp["userinfo"]["sub"], site.user_id.as_str(), "{rp}");
    assert!(
        rp["aud"] == json!(client.id) || rp["aud"].as_array().is_some_and(|a| a.contains(&json!(client.id))),
        "aud names the client: {rp}"
    );
    for check in ["state_checked", "iss_checked", "nonce_validated", "at_hash_validated"] {
        assert_eq!(rp[check], true, "{check}: {rp}");
    }
    assert_eq!(rp["pkce"], "S256");
    assert_eq!(rp["token_type"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("bearer"), "{rp}");
    assert_eq!(rp["userinfo"]["preferred_username"], USER, "scope profile: {rp}");
    assert_eq!(rp["userinfo"]["email"], format!("{USER}@{ORG}.example"), "scope email: {rp}");
}

#[tokio::test]
async fn authlib_signs_in_a_confidential_client_from_discovery_alone() {
    let site = Site::start().await;
    let rp = run_rp(&site, &site.web);
    assert_rp_signed_in(&site, &site.web, &rp);
    assert_eq!(rp["client_auth"], "client_secret_basic", "{rp}");
    // The password went into a form, never into a log line.
    assert!(!site.node.output().contains(PASSWORD), "the password is in the node's log");
}

#[tokio::test]
async fn authlib_signs_in_a_public_client_with_pkce_alone() {
    let site = Site::start().await;
    let rp = run_rp(&site, &site.public);
    assert_rp_signed_in(&site, &site.public, &rp);
    assert_eq!(rp["client_auth"], "none", "{rp}");
}

// --- what must be refused ----------------------------------------------------------------------------

#[tokio::test]
async fn an_unregistered_redirect_uri_or_client_gets_an_error_page_not_a_redirect() {
    let site = Site::start().await;
    let node = &site.node;
    let mut browser = Browser::new();
    let cases = [
        (
            "an unregistered redirect_uri",
            Authorization::new(&site.web.id).with("redirect_uri", Some("https://evil.example/callback")),
        ),
        (
            "a redirect_uri that only starts like the registered one",
            Authorization::new(&site.web.id).with("redirect_uri", Some(&format!("{REDIRECT_URI}/../evil"))),
        ),
        ("no redirect_uri", Authorization::new(&site.web.id).with("redirect_uri", None)),
        ("an unknown client", Authorization::new("no-such-client")),
    ];
    for (case, auth) in cases {
        let answer = browser.get(&auth.url(node)).await;
        assert_eq!(answer.status, 400, "{case}: {}", answer.body);
        assert!(answer.location.is_none(), "{case}: never a redirect, Location {:?}", answer.location);
        assert!(answer.content_type.starts_with("text/html"), "{case}: an HTML page, not {}", answer.content_type);
    }
    // The same request with the registered redirect_uri shows the login page: the refusals were about it.
    browser.login_page(node, &Authorization::new(&site.web.id)).await;
}

#[tokio::test]
async fn a_missing_or_wrong_code_verifier_is_invalid_grant() {
    let site = Site::start().await;
    let node = &site.node;
    let mut browser = Browser::new();

    let missing = Authorization::new(&site.web.id);
    let code = browser.sign_in(node, &missing).await["code"].clone();
    let (s, v) = site.redeem(&site.web, &code, None).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "no code_verifier: {v}");

    let wrong = Authorization::new(&site.web.id);
    let code = browser.authorize(node, &wrong).await["code"].clone();
    let other_verifier = Authorization::new(&site.web.id).verifier;
    let (s, v) = site.redeem(&site.web, &code, Some(&other_verifier)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "another code_verifier: {v}");

    // A public client the same.
    let public = Authorization::new(&site.public.id);
    let code = browser.authorize(node, &public).await["code"].clone();
    let (s, v) = site.redeem(&site.public, &code, None).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "public client, no code_verifier: {v}");

    // With its own verifier a fresh code is redeemed: the refusals above were about the verifier.
    let right = Authorization::new(&site.web.id);
    let code = browser.authorize(node, &right).await["code"].clone();
    let (s, v) = site.redeem(&site.web, &code, Some(&right.verifier)).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["id_token"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_the_first_redemption_got() {
    let site = Site::start().await;
    let node = &site.node;
    let mut browser = Browser::new();
    let auth = Authorization::new(&site.web.id);
    let callback = browser.sign_in(node, &auth).await;
    let code = &callback["code"];

    let (s, first) = site.redeem(&site.web, code, Some(&auth.verifier)).await;
    assert_eq!(s, 200, "{first}");
    let access = first["access_token"].as_str().expect("access_token").to_string();
    let refresh = first["refresh_token"].as_str().filter(|r| !r.is_empty()).expect("a refresh token").to_string();
    assert!(site.active(&access).await, "the access token is active after the first redemption");
    assert!(site.active(&refresh).await, "the refresh token is active after the first redemption");

    let (s, v) = site.redeem(&site.web, code, Some(&auth.verifier)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "the code again: {v}");
    // RFC 6749 4.1.2: what a replayed code had bought is revoked.
    assert!(!site.active(&access).await, "the first redemption's access token is still active");
    assert!(!site.active(&refresh).await, "the first redemption's refresh token is still active");
    let secret = site.web.secret.as_deref().unwrap_or_default();
    let (s, v) = node
        .post_form_basic(
            "/oauth/token",
            &site.web.id,
            secret,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "the revoked refresh token still works: {v}");
}

#[tokio::test]
async fn a_code_is_redeemed_only_by_the_client_it_was_issued_to() {
    let site = Site::start().await;
    let node = &site.node;
    let mut browser = Browser::new();
    let auth = Authorization::new(&site.web.id);
    let code = browser.sign_in(node, &auth).await["code"].clone();
    // Another confidential client, with its own valid credentials, the same redirect_uri and the right verifier.
    let (s, v) = site.redeem(&site.other, &code, Some(&auth.verifier)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "another client: {v}");
    // A public client naming itself.
    let (s, v) = site.redeem(&site.public, &code, Some(&auth.verifier)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "a public client: {v}");

    // The other client's own codes work: it was refused for the code, not for itself.
    let own = Authorization::new(&site.other.id);
    let code = browser.authorize(node, &own).await["code"].clone();
    let (s, v) = site.redeem(&site.other, &code, Some(&own.verifier)).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn prompt_none_without_a_session_is_login_required_at_the_redirect_uri() {
    let site = Site::start().await;
    let node = &site.node;
    let mut browser = Browser::new();
    let auth = Authorization::new(&site.web.id).with("prompt", Some("none"));
    let callback = browser.get(&auth.url(node)).await.callback();
    assert_eq!(callback.get("error").map(String::as_str), Some("login_required"), "{callback:?}");
    assert_eq!(callback.get("state"), Some(&auth.state), "{callback:?}");
    assert_eq!(callback.get("iss"), Some(&site.issuer), "RFC 9207: {callback:?}");
    assert!(!callback.contains_key("code"), "{callback:?}");

    // Once signed in, the same kind of request is answered with a code.
    browser.sign_in(node, &Authorization::new(&site.web.id)).await;
    let auth = Authorization::new(&site.web.id).with("prompt", Some("none"));
    let callback = browser.authorize(node, &auth).await;
    assert!(callback.get("code").is_some_and(|c| !c.is_empty()), "{callback:?}");
    assert_eq!(callback.get("state"), Some(&auth.state));
    assert_eq!(callback.get("iss"), Some(&site.issuer));
}

#[tokio::test]
async fn the_login_form_refuses_a_missing_or_wrong_csrf_token() {
    let site = Site::start().await;
    let node = &site.node;
    let auth = Authorization::new(&site.web.id);
    let mut browser = Browser::new();
    let form = browser.login_page(node, &auth).await;
    // An attacker's page can get a token of its own: the one another browser was given.
    let mut attacker = Browser::new();
    let attackers = attacker.login_page(node, &auth).await;
    assert_ne!(form.field("csrf"), attackers.field("csrf"), "each login page has its own CSRF token");

    let altered = format!("{}x", form.field("csrf"));
    for (case, csrf) in [
        ("no csrf", None),
        ("an empty csrf", Some("")),
        ("an altered csrf", Some(altered.as_str())),
        ("another browser's csrf", Some(attackers.field("csrf"))),
    ] {
        let answer = browser.post(&form.action, &form.filled_with_csrf(csrf)).await;
        assert!(
            (400..500).contains(&answer.status),
            "{case}: refused with a 4xx, got {}: {}",
            answer.status,
            answer.body
        );
        assert!(!answer.set_session(), "{case}: a session cookie was set ({:?})", answer.cookies_set);
        assert!(!browser.has_session(), "{case}: the browser holds a session cookie");
    }
    // Still no session: the authorization endpoint shows the login page again.
    let again = browser.login_page(node, &auth).await;

    // The same credentials with the page's own token sign in: the refusals were about the token.
    let answer = browser.post(&again.action, &again.filled(USER, PASSWORD)).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(answer.set_session(), "signing in sets the session cookie");
}

#[tokio::test]
async fn a_public_client_without_pkce_gets_invalid_request_at_the_redirect_uri() {
    let site = Site::start().await;
    let node = &site.node;
    let mut browser = Browser::new();
    let cases = [
        (
            "no code_challenge",
            Authorization::new(&site.public.id).with("code_challenge", None).with("code_challenge_method", None),
        ),
        (
            "code_challenge_method plain",
            Authorization::new(&site.public.id).with("code_challenge_method", Some("plain")),
        ),
    ];
    for (case, auth) in cases {
        let callback = browser.get(&auth.url(node)).await.callback();
        assert_eq!(callback.get("error").map(String::as_str), Some("invalid_request"), "{case}: {callback:?}");
        assert_eq!(callback.get("state"), Some(&auth.state), "{case}: {callback:?}");
        assert_eq!(callback.get("iss"), Some(&site.issuer), "{case}: {callback:?}");
        assert!(!callback.contains_key("code"), "{case}: {callback:?}");
    }
    // With PKCE the same client gets the login page.
    browser.login_page(node, &Authorization::new(&site.public.id)).await;
}

#[tokio::test]
async fn an_expired_code_is_invalid_grant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("jeton.toml");
    std::fs::write(&config, "[sessions]\ncode_lifetime_secs = 1\n").expect("config");
    let node = Node::start_in(
        &dir.path().join("data"),
        crate::harness::free_port(),
        &["--config", config.to_str().expect("path")],
    )
    .await;
    let site = Site::on(node).await;
    let mut browser = Browser::new();
    let auth = Authorization::new(&site.web.id);
    let late = browser.sign_in(&site.node, &auth).await;
    let fresh = browser.authorize(&site.node, &Authorization::new(&site.web.id)).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, v) = site.redeem(&site.web, &late["code"], Some(&auth.verifier)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "a code past its lifetime: {v}");
    assert!(v["error_description"].as_str().is_some_and(|d| d.contains("expired")), "{v}");
    // A code is good within its lifetime: the same browser, signed in, gets one and redeems it at once.
    let auth = Authorization::new(&site.web.id);
    let now = browser.authorize(&site.node, &auth).await;
    let (s, v) = site.redeem(&site.web, &now["code"], Some(&auth.verifier)).await;
    assert_eq!(s, 200, "{v}");
    assert!(fresh.contains_key("code"));
}
