//! The device authorization grant (RFC 8628): a CLI-like client (reqwest) asks for a device code and
//! polls the token endpoint, while a browser-like client (reqwest with a cookie jar of its own, following
//! no redirects) opens the verification page, signs in on the login page, and allows or denies — the way
//! a user does on a phone while a console waits.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{free_port, response, verify_id_token_with_jwks, verify_with_jwks, Node};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const PASSWORD: &str = "Device-Password-1";

/// A node with a `[device]` section: `interval_secs` long enough that two polls in a row are always
/// sooner than it (so `slow_down` does not depend on how fast the machine is).
async fn start_node(dir: &Path, device: &str) -> Node {
    let config = dir.join("jeton.toml");
    std::fs::write(&config, format!("[device]\n{device}\n")).expect("config file");
    let config = config.to_string_lossy().to_string();
    Node::start_in(&dir.join("data"), free_port(), &["--config", &config]).await
}

/// The device's side: the device authorization request and the polls, on our paths or Casdoor's.
struct Device<'a> {
    node: &'a Node,
    client_id: String,
    /// `None`: a public client, which sends its `client_id` only.
    secret: Option<String>,
    casdoor: bool,
}

impl Device<'_> {
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let mut form: Vec<(&str, &str)> = form.to_vec();
        let mut req = self.node.http.post(self.node.url(path));
        match &self.secret {
            Some(secret) => req = req.basic_auth(&self.client_id, Some(secret)),
            None => form.push(("client_id", &self.client_id)),
        }
        response(req.form(&form).send().await.expect("request")).await
    }

    /// Starts a device authorization; the answer must be RFC 8628 §3.2's.
    async fn start(&self, scope: &str) -> Value {
        let path = if self.casdoor { "/api/device-auth" } else { "/oauth/device_authorization" };
        let (s, v) = self.post(path, &[("scope", scope)]).await;
        assert_eq!(s, 200, "device authorization: {v}");
        let user_code = v["user_code"].as_str().unwrap_or_else(|| panic!("no user_code: {v}"));
        let letters: Vec<&str> = user_code.split('-').collect();
        assert!(
            letters.len() == 2
                && letters
                    .iter()
                    .all(|half| half.len() == 4 && half.bytes().all(|b| b"BCDFGHJKLMNPQRSTVWXZ".contains(&b))),
            "user code XXXX-XXXX from the unambiguous letters: {user_code}"
        );
        let device_code = v["device_code"].as_str().unwrap_or_default();
        assert!(device_code.len() >= 43, "a device code of 32 random bytes: {v}");
        let verification_uri = self.node.url("/device");
        assert_eq!(v["verification_uri"], verification_uri.as_str(), "{v}");
        assert_eq!(v["verification_uri_complete"], format!("{verification_uri}?user_code={user_code}"), "{v}");
        assert!(v["expires_in"].as_i64().is_some_and(|s| s > 0), "{v}");
        assert!(v["interval"].as_i64().is_some_and(|s| s > 0), "{v}");
        v
    }

    /// One poll of the token endpoint with the device code.
    async fn poll(&self, device_code: &str) -> (u16, Value) {
        let path = if self.casdoor { "/api/login/oauth/access_token" } else { "/oauth/token" };
        self.post(path, &[("grant_type", DEVICE_GRANT), ("device_code", device_code)]).await
    }

    /// A poll that must be refused with `error`.
    async fn poll_refused(&self, device_code: &str, error: &str) {
        let (s, v) = self.poll(device_code).await;
        assert_eq!((s, v["error"].as_str()), (400, Some(error)), "{v}");
    }
}

/// The user's browser, as far as these pages need one: cookies kept and sent back, redirects not
/// followed (each answer is looked at), forms filled from the page's hidden inputs.
struct Browser<'a> {
    node: &'a Node,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

/// A page as the browser got it.
struct Page {
    status: u16,
    html: String,
}

impl Page {
    fn has(&self, id: &str) -> bool {
        self.html.contains(&format!("id=\"{id}\""))
    }

    /// The value of the form input named `name`.
    fn input(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\"");
        let at = self.html.find(&marker).unwrap_or_else(|| panic!("no input {name} in {}", self.html));
        let tag_start = self.html[..at].rfind('<').expect("tag start");
        let tag_end = at + self.html[at..].find('>').expect("tag end");
        let tag = &self.html[tag_start..tag_end];
        let value = tag.split("value=\"").nth(1).and_then(|v| v.split('"').next()).unwrap_or("");
        unescape(value)
    }

    /// The text of the element with id `id` (no nested tags).
    fn text(&self, id: &str) -> String {
        let marker = format!("id=\"{id}\"");
        let at = self.html.find(&marker).unwrap_or_else(|| panic!("no #{id} in {}", self.html));
        let start = at + self.html[at..].find('>').expect("tag end") + 1;
        let end = start + self.html[start..].find('<').expect("closing tag");
        unescape(&self.html[start..end])
    }
}

/// Undoes HTML escaping (named and numeric character references).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find(';') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let entity = &rest[i + 1..i + end];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => {
                u32::from_str_radix(&e[2..], 16).ok().and_then(char::from_u32)
            }
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => out.push(c),
            None => out.push_str(&rest[i..=i + end]),
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

impl<'a> Browser<'a> {
    fn new(node: &'a Node) -> Browser<'a> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client");
        Browser { node, http, cookies: BTreeMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn page(&mut self, req: reqwest::RequestBuilder) -> Page {
        let r = req.header(reqwest::header::COOKIE, self.cookie_header()).send().await.expect("request");
        for set in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let set = set.to_str().expect("ascii cookie");
            let pair = set.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').expect("name=value");
            if set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let status = r.status().as_u16();
        Page { status, html: r.text().await.unwrap_or_default() }
    }

    async fn get(&mut self, url: &str) -> Page {
        let req = self.http.get(url);
        self.page(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.http.post(self.node.url(path)).form(form);
        self.page(req).await
    }

    /// Types `user_code` into the code form of `form_page` and submits it.
    async fn submit_code(&mut self, form_page: &Page, user_code: &str) -> Page {
        assert!(form_page.has("user_code") && form_page.has("submit"), "the code form: {}", form_page.html);
        self.post("/device", &[("csrf", &form_page.input("csrf")), ("user_code", user_code)]).await
    }

    /// Opens the code form (empty).
    async fn code_form(&mut self) -> Page {
        let url = self.node.url("/device");
        let page = self.get(&url).await;
        assert_eq!(page.status, 200, "{}", page.html);
        page
    }

    /// Signs in on the login page `login` with a password.
    async fn sign_in(&mut self, login: &Page, user: &str, password: &str) -> Page {
        assert!(login.has("login-form") && login.has("username") && login.has("password"), "{}", login.html);
        let (csrf, request) = (login.input("csrf"), login.input("request"));
        self.post("/login", &[("csrf", &csrf), ("request", &request), ("username", user), ("password", password)]).await
    }

    /// Answers the confirmation page `confirm` with `decision` (`allow` or `deny`).
    async fn decide(&mut self, confirm: &Page, decision: &str) -> Page {
        assert!(confirm.has("device-consent-form") && confirm.has("allow") && confirm.has("deny"), "{}", confirm.html);
        let (csrf, user_code) = (confirm.input("csrf"), confirm.input("user_code"));
        self.post("/device", &[("csrf", &csrf), ("user_code", &user_code), ("decision", decision)]).await
    }
}

/// Adds an application of `org` with the device grant (and refresh tokens); `extra` overrides fields.
async fn add_device_application(node: &Node, org: &str, name: &str, extra: Value) -> (String, String) {
    let client_id = format!("{name}-client");
    let secret = format!("{name}-secret-0123456789");
    let mut app = json!({
        "owner": "admin", "name": name, "organization": org, "clientId": client_id, "clientSecret": secret,
        "grantTypes": [DEVICE_GRANT, "refresh_token"], "expireInHours": 1, "refreshExpireInHours": 24,
    });
    if let (Some(a), Some(e)) = (app.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            a.insert(k.clone(), v.clone());
        }
    }
    let (s, v) = node.admin_post("add-application", app).await;
    assert_eq!(s, 200, "{v}");
    (client_id, secret)
}

/// An organization with a user (password [`PASSWORD`]); returns the user's id.
async fn add_org_and_user(node: &Node, org: &str, user: &str) -> String {
    let (s, v) =
        node.admin_post("add-organization", json!({"owner": "admin", "name": org, "passwordType": "argon2id"})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node
        .admin_post(
            "add-user",
            json!({"owner": org, "name": user, "password": PASSWORD, "displayName": format!("User {user}"),
                   "email": format!("{user}@{org}.example"), "emailVerified": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.admin_get(&format!("get-user?id={org}/{user}")).await;
    assert_eq!(s, 200, "{v}");
    v["data"]["id"].as_str().filter(|id| !id.is_empty()).expect("user id").to_string()
}

#[tokio::test]
async fn device_gets_tokens_once_after_the_user_signs_in_and_allows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = start_node(tmp.path(), "interval_secs = 60").await;
    let alice = add_org_and_user(&node, "acme", "alice").await;
    let (client_id, secret) = add_device_application(&node, "acme", "console", json!({})).await;

    // Discovery tells the truth about the endpoint and the grant.
    let (s, d) = node.get("/.well-known/openid-configuration").await;
    assert_eq!(s, 200);
    assert_eq!(d["device_authorization_endpoint"], node.url("/oauth/device_authorization"), "{d}");
    assert!(d["grant_types_supported"].as_array().expect("grants").contains(&json!(DEVICE_GRANT)), "{d}");

    let device = Device { node: &node, client_id: client_id.clone(), secret: Some(secret.clone()), casdoor: false };
    let started = device.start("openid profile email").await;
    assert_eq!(started["interval"], 60, "the configured interval: {started}");
    assert_eq!(started["expires_in"], 600, "the default lifetime: {started}");
    let device_code = started["device_code"].as_str().expect("device_code");
    let user_code = started["user_code"].as_str().expect("user_code");

    // The user has not come yet; a device that does not wait is told to slow down.
    device.poll_refused(device_code, "authorization_pending").await;
    device.poll_refused(device_code, "slow_down").await;

    // verification_uri_complete fills the code in; the user still submits it, and signs in first.
    let mut browser = Browser::new(&node);
    let form = browser.get(started["verification_uri_complete"].as_str().expect("complete uri")).await;
    assert_eq!(form.status, 200, "{}", form.html);
    assert_eq!(form.input("user_code"), user_code, "the code is filled in");
    let login = browser.submit_code(&form, &form.input("user_code")).await;
    assert_eq!(login.status, 200, "{}", login.html);
    assert!(login.has("login-form"), "no session yet: the login page: {}", login.html);
    let wrong = browser.sign_in(&login, "alice", "not-the-password").await;
    assert_eq!(wrong.status, 401, "{}", wrong.html);
    assert_eq!(wrong.text("error"), "The username or password is incorrect.");
    let confirm = browser.sign_in(&wrong, "alice", PASSWORD).await;
    assert_eq!(confirm.status, 200, "{}", confirm.html);
    assert!(browser.cookies.contains_key("jeton_session"), "signed in: {:?}", browser.cookies);
    assert_eq!(confirm.text("device-code"), user_code, "the page shows which device it is about");
    for scope in ["openid", "profile", "email"] {
        assert!(confirm.html.contains(&format!("<strong>{scope}</strong>")), "scope {scope}: {}", confirm.html);
    }

    // A forged decision (no CSRF token of this browser) changes nothing.
    let forged = browser.post("/device", &[("csrf", "0"), ("user_code", user_code), ("decision", "allow")]).await;
    assert_eq!(forged.status, 403, "{}", forged.html);
    device.poll_refused(device_code, "slow_down").await;

    let done = browser.decide(&confirm, "allow").await;
    assert_eq!(done.status, 200, "{}", done.html);
    assert_eq!(done.text("heading"), "Device connected");

    // The device's next poll gets the tokens: an access token, a refresh token, and a real ID token.
    let (s, tokens) = device.poll(device_code).await;
    assert_eq!(s, 200, "{tokens}");
    let access = tokens["access_token"].as_str().expect("access_token");
    let id_token = tokens["id_token"].as_str().expect("id_token");
    assert_ne!(access, id_token, "the ID token is its own token");
    assert_eq!(tokens["scope"], "openid profile email", "{tokens}");
    let access_claims = verify_with_jwks(&node, access).await;
    assert_eq!(access_claims["sub"], alice.as_str(), "{access_claims}");
    let id = verify_id_token_with_jwks(&node, id_token).await;
    assert_eq!(id["sub"], alice.as_str(), "{id}");
    assert_eq!(id["aud"], json!([client_id]), "{id}");
    assert_eq!(id["amr"], json!(["pwd"]), "signed in with a password: {id}");
    assert_eq!(id["email"], "alice@acme.example", "the email scope: {id}");
    assert_eq!(id["preferred_username"], "alice", "the profile scope: {id}");
    assert!(id["sid"].as_str().is_some_and(|s| !s.is_empty()), "the browser session it was approved in: {id}");
    assert!(id["auth_time"].as_i64().is_some_and(|t| t > 0), "{id}");

    // Once only, on any path.
    device.poll_refused(device_code, "invalid_grant").await;
    let casdoor = Device { casdoor: true, ..device };
    casdoor.poll_refused(device_code, "invalid_grant").await;
    let device = Device { casdoor: false, ..casdoor };

    // The refresh token was recorded for the cluster: it refreshes.
    let refresh = tokens["refresh_token"].as_str().filter(|t| !t.is_empty()).expect("refresh_token");
    let (s, v) = node
        .post_form_basic(
            "/oauth/token",
            &client_id,
            &secret,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // The code is used up: typing it again leads nowhere, with the one message for any bad code.
    let form = browser.code_form().await;
    let again = browser.submit_code(&form, user_code).await;
    assert_eq!(again.status, 400, "{}", again.html);
    assert_eq!(
        again.text("error"),
        "That code is invalid or has expired. Check the code on your device and try again."
    );

    // A second device, the same browser: signed in already, straight to the question; this one is denied.
    let second = device.start("openid").await;
    let second_code = second["device_code"].as_str().expect("device_code");
    let form = browser.code_form().await;
    let typed = second["user_code"].as_str().expect("user_code").to_lowercase().replace('-', " ");
    let confirm = browser.submit_code(&form, &typed).await;
    assert_eq!(confirm.status, 200, "{}", confirm.html);
    assert!(confirm.has("device-consent-form") && !confirm.has("login-form"), "single sign-on: {}", confirm.html);
    let done = browser.decide(&confirm, "deny").await;
    assert_eq!(done.status, 200, "{}", done.html);
    assert_eq!(done.text("heading"), "Request denied");
    device.poll_refused(second_code, "access_denied").await;
    device.poll_refused(second_code, "access_denied").await;

    // Another client cannot redeem a device code that is not its own.
    let (other_id, other_secret) = add_device_application(&node, "acme", "other", json!({})).await;
    let third = device.start("").await;
    let other = Device { node: &node, client_id: other_id, secret: Some(other_secret), casdoor: false };
    other.poll_refused(third["device_code"].as_str().expect("device_code"), "invalid_grant").await;
}

#[tokio::test]
async fn casdoor_path_public_client_and_refusals() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = start_node(tmp.path(), "interval_secs = 60").await;
    let bob = add_org_and_user(&node, "globex", "bob").await;
    let (public_id, _) = add_device_application(&node, "globex", "tv", json!({"publicClient": true})).await;

    // Casdoor's endpoint, a public client (client_id only), its token path for the polls.
    let tv = Device { node: &node, client_id: public_id.clone(), secret: None, casdoor: true };
    let started = tv.start("").await;
    let device_code = started["device_code"].as_str().expect("device_code");
    tv.poll_refused(device_code, "authorization_pending").await;

    let mut browser = Browser::new(&node);
    let form = browser.code_form().await;
    let login = browser.submit_code(&form, started["user_code"].as_str().expect("user_code")).await;
    let confirm = browser.sign_in(&login, "bob", PASSWORD).await;
    assert_eq!(confirm.status, 200, "{}", confirm.html);
    let done = browser.decide(&confirm, "allow").await;
    assert_eq!(done.text("heading"), "Device connected", "{}", done.html);
    let (s, tokens) = tv.poll(device_code).await;
    assert_eq!(s, 200, "{tokens}");
    let claims = verify_with_jwks(&node, tokens["access_token"].as_str().expect("access_token")).await;
    assert_eq!(claims["sub"], bob.as_str(), "{claims}");
    tv.poll_refused(device_code, "invalid_grant").await;

    // An application without the device grant may not start one; a confidential one must authenticate.
    let (plain_id, plain_secret) =
        add_device_application(&node, "globex", "web", json!({"grantTypes": ["authorization_code"]})).await;
    let web = Device { node: &node, client_id: plain_id, secret: Some(plain_secret), casdoor: false };
    let (s, v) = web.post("/oauth/device_authorization", &[]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("unauthorized_client")), "{v}");
    let (confidential_id, _) = add_device_application(&node, "globex", "cli", json!({})).await;
    let unauthenticated = Device { node: &node, client_id: confidential_id, secret: None, casdoor: false };
    let (s, v) = unauthenticated.post("/oauth/device_authorization", &[]).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")), "{v}");
    let (s, v) = tv.post("/oauth/device_authorization", &[("scope", "openid")]).await;
    assert_eq!(s, 200, "the public client may start one on our path too: {v}");

    // Wrong user codes: each answered alike; past the limit (10) even a right one is refused for a while.
    let pending = tv.start("").await;
    let right = pending["user_code"].as_str().expect("user_code");
    let form = browser.code_form().await;
    // Not even of the form of a code: refused, but no guess spent.
    let page = browser.submit_code(&form, "not a code").await;
    assert_eq!(page.status, 400, "{}", page.html);
    let guesses = ["BCDF", "GHJK", "LMNP", "QRST", "VWXZ", "BBBB", "CCCC", "DDDD", "FFFF", "GGGG", "HHHH"]
        .map(|half| format!("{half}-{half}"));
    let guesses: Vec<&String> = guesses.iter().filter(|g| g.as_str() != right).take(11).collect();
    for (i, guess) in guesses.iter().enumerate() {
        let page = browser.submit_code(&form, guess).await;
        if i < 10 {
            assert_eq!(page.status, 400, "guess {i}: {}", page.html);
            assert!(page.text("error").contains("invalid or has expired"), "{}", page.html);
        } else {
            assert_eq!(page.status, 429, "guess {i}: {}", page.html);
        }
    }
    let refused = browser.submit_code(&form, right).await;
    assert_eq!(refused.status, 429, "too many wrong codes from this address: {}", refused.html);
    assert!(refused.text("error").contains("Too many"), "{}", refused.html);
}

#[tokio::test]
async fn device_codes_expire() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = start_node(tmp.path(), "code_lifetime_secs = 1").await;
    add_org_and_user(&node, "initech", "carol").await;
    let (client_id, secret) = add_device_application(&node, "initech", "kiosk", json!({})).await;
    let device = Device { node: &node, client_id, secret: Some(secret), casdoor: false };
    let started = device.start("").await;
    assert_eq!(started["expires_in"], 1, "{started}");
    // Past its lifetime (whole seconds: wait for the clock to pass it by a second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    device.poll_refused(started["device_code"].as_str().expect("device_code"), "expired_token").await;
    let mut browser = Browser::new(&node);
    let form = browser.code_form().await;
    let page = browser.submit_code(&form, started["user_code"].as_str().expect("user_code")).await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(page.text("error").contains("invalid or has expired"), "{}", page.html);
}
