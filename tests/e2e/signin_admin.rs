//! Second factors, account pages and the admin API of sign-in state, driven over plain HTTP: a reqwest
//! client that keeps cookies and follows no redirect plays the browser, reads the pages' forms (their
//! hidden fields) and posts them as a browser would. TOTP codes come from tests/e2e/radius/client.py (RFC
//! 6238 written from the RFC, not Jeton's code).
//!
//! - TOTP set up on `/account/totp` (QR code, key, a code to prove it, recovery codes shown once), then
//!   sign-in with a code; the same code refused again; a recovery code works once; removal takes a code.
//! - Wrong codes lock the account together with wrong passwords, and a right password alone does not
//!   reset the count.
//! - A secret given to the admin API (as imports bring Casdoor's) signs in and is never shown again.
//! - `requireMfa`: a user without a factor sets one up inside sign-in, then continues to the application.
//! - The admin API lists and ends sessions, lists and revokes consents, and resets a user's MFA; the user
//!   does the same on `/account`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::browser::AuthorizationRequest;
use crate::harness::Node;
use crate::radius::totp;

/// Where the applications of these tests send their codes. Nothing listens there: the agent reads the
/// redirect and never follows it.
const CALLBACK: &str = "http://127.0.0.1:9/callback";

/// A page (or a redirect) the agent got.
pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) body: String,
}

/// Undoes HTML escaping (askama's numeric character references, and the named ones) of attribute values
/// and text.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => match entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                Some(hex) => u32::from_str_radix(hex, 16).ok().and_then(char::from_u32),
                None => entity.strip_prefix('#').and_then(|d| d.parse().ok()).and_then(char::from_u32),
            },
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

/// The value of attribute `name` in the tag text `tag` (double-quoted, as the templates write them).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

impl Page {
    /// Whether an element with this id is on the page.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.body.contains(&format!("id=\"{id}\""))
    }

    /// The text of the element with this id, up to its first child tag.
    pub(crate) fn text(&self, id: &str) -> String {
        let key = format!("id=\"{id}\"");
        let Some(at) = self.body.find(&key) else { return String::new() };
        let rest = &self.body[at..];
        let Some(open_end) = rest.find('>') else { return String::new() };
        let text = &rest[open_end + 1..];
        unescape(text[..text.find('<').unwrap_or(text.len())].trim())
    }

    /// The form with this id: its action and its inputs' names and values (in order).
    pub(crate) fn form(&self, id: &str) -> (String, Vec<(String, String)>) {
        let key = format!("<form id=\"{id}\"");
        let at = self
            .body
            .find(&key)
            .unwrap_or_else(|| panic!("no form #{id} on the page ({}): {}", self.status, self.body));
        let rest = &self.body[at..];
        let form = &rest[..rest.find("</form>").expect("the form ends")];
        let action = attribute(&form[..form.find('>').expect("tag")], "action").expect("form action");
        let mut fields = Vec::new();
        for piece in form.split("<input").skip(1) {
            let tag = &piece[..piece.find('>').unwrap_or(piece.len())];
            if let Some(name) = attribute(tag, "name") {
                fields.push((name, attribute(tag, "value").unwrap_or_default()));
            }
        }
        (action, fields)
    }

    /// The forms posting to `action` with an input `name` = `value` (the account page has one form per
    /// session and per consent): the fields of the first.
    pub(crate) fn form_with(&self, action: &str, name: &str, value: &str) -> Option<Vec<(String, String)>> {
        for piece in self.body.split("<form").skip(1) {
            let piece = &piece[..piece.find("</form>").unwrap_or(piece.len())];
            if attribute(&piece[..piece.find('>')?], "action").as_deref() != Some(action) {
                continue;
            }
            let fields: Vec<(String, String)> = piece
                .split("<input")
                .skip(1)
                .filter_map(|p| {
                    let tag = &p[..p.find('>').unwrap_or(p.len())];
                    Some((attribute(tag, "name")?, attribute(tag, "value").unwrap_or_default()))
                })
                .collect();
            if fields.iter().any(|(n, v)| n == name && v == value) {
                return Some(fields);
            }
        }
        None
    }

    /// A query parameter of the redirect this page is.
    pub(crate) fn redirect_param(&self, name: &str) -> Option<String> {
        let location = self.location.as_deref()?;
        let query = location.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// The authorization code this page redirects to the callback with.
    pub(crate) fn code(&self) -> String {
        let location =
            self.location.as_deref().unwrap_or_else(|| panic!("not a redirect ({}): {}", self.status, self.body));
        assert!(location.starts_with(CALLBACK), "{location}");
        assert_eq!(self.redirect_param("error"), None, "{location}");
        self.redirect_param("code").filter(|c| !c.is_empty()).unwrap_or_else(|| panic!("no code: {location}"))
    }
}

/// A browser without a browser: cookies (by name: every node of a test is on 127.0.0.1, and cookies do not
/// tell ports apart), no redirects followed.
pub(crate) struct Agent {
    http: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Agent {
    pub(crate) fn new() -> Agent {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("http client");
        Agent { http, cookies: Mutex::new(BTreeMap::new()) }
    }

    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().expect("cookies").get(name).cloned()
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let header = {
            let jar = self.cookies.lock().expect("cookies");
            jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
        };
        let request = if header.is_empty() { request } else { request.header("cookie", header) };
        let response = request.send().await.expect("request");
        {
            let mut jar = self.cookies.lock().expect("cookies");
            for set in response.headers().get_all("set-cookie") {
                let set = set.to_str().expect("ascii cookie");
                let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
                let (name, value) = pair.split_once('=').expect("name=value");
                if attributes.contains("Max-Age=0") {
                    jar.remove(name.trim());
                } else {
                    jar.insert(name.trim().to_string(), value.trim().to_string());
                }
            }
        }
        let status = response.status().as_u16();
        let location = response.headers().get("location").map(|l| l.to_str().expect("location").to_string());
        let body = response.text().await.expect("body");
        Page { status, location, body }
    }

    pub(crate) async fn get(&self, url: &str) -> Page {
        self.send(self.http.get(url)).await
    }

    pub(crate) async fn post(&self, url: &str, fields: &[(String, String)]) -> Page {
        self.send(self.http.post(url).form(fields)).await
    }

    /// Posts the form `id` of `page` to `node`, with `changes` set over its fields.
    pub(crate) async fn submit(&self, node: &Node, page: &Page, id: &str, changes: &[(&str, &str)]) -> Page {
        let (action, fields) = page.form(id);
        self.post(&node.url(&action), &with(fields, changes)).await
    }

    /// Signs in from an authorization request's login page with a password: the page that follows (a
    /// redirect with the code, the TOTP page, the enrolment page, ...).
    pub(crate) async fn sign_in(
        &self,
        node: &Node,
        request: &AuthorizationRequest,
        user: &str,
        password: &str,
    ) -> Page {
        let login = self.get(&request.url(node)).await;
        assert_eq!(login.status, 200, "{}", login.body);
        self.submit(node, &login, "login-form", &[("username", user), ("password", password)]).await
    }
}

/// `fields` with `changes` set (replaced, or added).
fn with(mut fields: Vec<(String, String)>, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in changes {
        match fields.iter_mut().find(|(n, _)| n == k) {
            Some(f) => f.1 = v.to_string(),
            None => fields.push((k.to_string(), v.to_string())),
        }
    }
    fields
}

/// An organization (`extra` merged into it) with an application signing in through the pages (a
/// first-party one skips consent); returns (client_id, client_secret).
pub(crate) async fn org_and_app(
    node: &Node,
    org: &str,
    app: &str,
    first_party: bool,
    extra_org: Value,
) -> (String, String) {
    let mut body =
        json!({"owner": "admin", "name": org, "displayName": format!("{org} Inc"), "passwordType": "argon2id"});
    for (k, v) in extra_org.as_object().expect("object") {
        body[k] = v.clone();
    }
    let (s, v) = node.admin_post("add-organization", body).await;
    assert_eq!(s, 200, "{v}");
    let client_id = format!("{app}-client");
    let secret = format!("{app}-secret-0123456789");
    let (s, v) = node
        .admin_post(
            "add-application",
            json!({
                "owner": "admin", "name": app, "organization": org, "clientId": client_id, "clientSecret": secret,
                "grantTypes": ["authorization_code", "refresh_token"], "redirectUris": [CALLBACK],
                "skipConsent": first_party, "expireInHours": 1, "refreshExpireInHours": 24,
            }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    (client_id, secret)
}

/// A user with a password and (given) a TOTP secret, through the admin API.
pub(crate) async fn add_user(node: &Node, org: &str, name: &str, password: &str, totp_secret: Option<&str>) {
    let mut user = json!({"owner": org, "name": name, "password": password, "email": format!("{name}@{org}.example")});
    if let Some(secret) = totp_secret {
        user["totpSecret"] = json!(secret);
    }
    let (s, v) = node.admin_post("add-user", user).await;
    assert_eq!(s, 200, "{v}");
}

async fn get_user(node: &Node, id: &str) -> Value {
    let (s, v) = node.admin_get(&format!("get-user?id={id}")).await;
    assert_eq!(s, 200, "{v}");
    v["data"].clone()
}

/// The key an enrolment page shows, without its spaces.
fn shown_secret(page: &Page) -> String {
    let secret: String = page.text("secret").split_whitespace().collect();
    assert!(secret.len() >= 32, "a 160-bit key: {secret:?}");
    secret
}

/// A 6-digit code that is not `right` (nor, with a 30 s step, one of its neighbours by chance).
fn wrong(right: &str) -> String {
    format!("{:06}", (right.parse::<u32>().expect("code") + 500_000) % 1_000_000)
}

/// The recovery codes a page shows once.
fn recovery_codes(page: &Page) -> Vec<String> {
    assert!(page.has("recovery-codes"), "{}", page.body);
    let list = &page.body[page.body.find("id=\"recovery-codes\"").expect("list")..];
    let list = &list[..list.find("</ol>").expect("list end")];
    list.split("<code>").skip(1).map(|c| c[..c.find("</code>").expect("code end")].to_string()).collect()
}

#[tokio::test]
async fn totp_set_up_on_the_account_page_then_codes_at_sign_in() {
    let node = Node::start().await;
    let (client_id, client_secret) = org_and_app(&node, "acme", "app-acme", true, json!({})).await;
    add_user(&node, "acme", "bob", "Bob-Password-1", None).await;

    // Without a session the account page says to sign in first.
    let stranger = Agent::new();
    let page = stranger.get(&node.url("/account")).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(!page.has("sessions"));
    assert_eq!(stranger.get(&node.url("/account/totp")).await.status, 401);

    let browser = Agent::new();
    let signed_in =
        browser.sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "bob", "Bob-Password-1").await;
    signed_in.code();
    let account = browser.get(&node.url("/account")).await;
    assert_eq!(account.status, 200, "{}", account.body);
    for id in ["sessions", "consents", "totp", "passkeys"] {
        assert!(account.has(id), "#{id}: {}", account.body);
    }
    assert!(account.body.contains("href=\"/account/passkeys\""));
    assert_eq!(account.text("totp-state"), "Off.");

    // The enrolment page: a QR code (inline SVG), the key, a code field.
    let enrol = browser.get(&node.url("/account/totp")).await;
    assert_eq!(enrol.status, 200, "{}", enrol.body);
    assert!(enrol.body.contains("<svg id=\"qr\""), "{}", enrol.body);
    let secret = shown_secret(&enrol);
    for id in ["code", "submit"] {
        assert!(enrol.has(id));
    }
    // The key is not stored until a code proves the app has it; a wrong code shows the same key again.
    let again = browser.submit(&node, &enrol, "totp-enrol-form", &[("code", &wrong(&totp(&secret, 0)))]).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(!again.text("error").is_empty());
    assert_eq!(shown_secret(&again), secret, "the same key after a wrong code");
    assert_eq!(get_user(&node, "acme/bob").await["preferredMfaType"], "", "nothing stored yet");
    // The sealed enrolment only works in this browser.
    let (_, fields) = again.form("totp-enrol-form");
    let elsewhere = Agent::new();
    elsewhere.sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "bob", "Bob-Password-1").await.code();
    let stolen = elsewhere.post(&node.url("/account/totp"), &with(fields, &[("code", &totp(&secret, 0))])).await;
    assert_ne!(stolen.status, 200, "{}", stolen.body);
    assert!(!stolen.has("recovery-codes"));

    let enrol_code = totp(&secret, 0);
    let done = browser.submit(&node, &again, "totp-enrol-form", &[("code", &enrol_code)]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let codes = recovery_codes(&done);
    assert_eq!(codes.len(), 10, "{codes:?}");
    let user = get_user(&node, "acme/bob").await;
    assert_eq!(user["preferredMfaType"], "app", "{user}");
    assert_eq!(user["totpSecret"], "", "{user}");
    let account = browser.get(&node.url("/account")).await;
    assert!(account.text("totp-state").starts_with("On"), "{}", account.body);
    // Shown once: the page does not show them again.
    assert!(!browser.get(&node.url("/account/totp")).await.has("recovery-codes"));

    // Sign-in now asks for a code after the password. The code that proved the enrolment was used.
    let fresh = Agent::new();
    let request = AuthorizationRequest::new(&client_id, CALLBACK);
    let step = fresh.sign_in(&node, &request, "bob", "Bob-Password-1").await;
    assert!(step.has("totp-form"), "{}", step.body);
    assert!(fresh.cookie("jeton_session").is_none(), "no session before the second factor");
    let replayed = fresh.submit(&node, &step, "totp-form", &[("code", &enrol_code)]).await;
    assert_eq!(replayed.status, 401, "the enrolment's code again: {}", replayed.body);
    assert!(replayed.has("totp-form") && !replayed.text("error").is_empty());
    let next = totp(&secret, 1);
    let accepted = fresh.submit(&node, &replayed, "totp-form", &[("code", &next)]).await;
    let code = accepted.code();
    let (claims, _) = request.tokens(&node, &client_secret, &code).await;
    let amr: Vec<&str> = claims["amr"].as_array().expect("amr").iter().filter_map(Value::as_str).collect();
    assert!(amr.contains(&"pwd") && amr.contains(&"otp") && amr.contains(&"mfa"), "{claims}");
    assert_eq!(claims["acr"], "mfa", "{claims}");

    // The same code in its time step, in another sign-in: refused.
    let other = Agent::new();
    let step = other.sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "bob", "Bob-Password-1").await;
    let replayed = other.submit(&node, &step, "totp-form", &[("code", &next)]).await;
    assert_eq!(replayed.status, 401, "a used code: {}", replayed.body);
    // A recovery code works, once; typed in lower case without dashes too.
    other.submit(&node, &replayed, "totp-form", &[("code", &codes[0])]).await.code();
    let third = Agent::new();
    let step = third.sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "bob", "Bob-Password-1").await;
    let used = third.submit(&node, &step, "totp-form", &[("code", &codes[0])]).await;
    assert_eq!(used.status, 401, "a used recovery code: {}", used.body);
    let typed = codes[1].to_lowercase().replace('-', "");
    third.submit(&node, &used, "totp-form", &[("code", &typed)]).await.code();
    let account = browser.get(&node.url("/account")).await;
    assert!(account.text("totp-state").contains("Recovery codes left: 8"), "{}", account.body);

    // Turning it off takes a code, not just the session.
    let manage = browser.get(&node.url("/account/totp")).await;
    assert!(manage.has("totp-remove-form"), "{}", manage.body);
    let refused = browser.submit(&node, &manage, "totp-remove-form", &[("code", "not-a-code-1234")]).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let removed = browser.submit(&node, &refused, "totp-remove-form", &[("code", &codes[2])]).await;
    assert_eq!((removed.status, removed.location.as_deref()), (303, Some("/account")), "{}", removed.body);
    assert_eq!(browser.get(&node.url("/account")).await.text("totp-state"), "Off.");
    assert_eq!(get_user(&node, "acme/bob").await["preferredMfaType"], "");
    let step =
        Agent::new().sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "bob", "Bob-Password-1").await;
    step.code();
}

#[tokio::test]
async fn wrong_codes_and_wrong_passwords_share_one_lockout() {
    const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let node = Node::start().await;
    let (client_id, _) = org_and_app(&node, "acme", "app-acme", true, json!({})).await;
    let (s, v) = node.admin_get("get-application?id=admin/app-acme").await;
    assert_eq!(s, 200, "{v}");
    let mut app = v["data"].clone();
    app["failedSigninLimit"] = json!(3);
    let (s, v) = node.admin_post("update-application", app).await;
    assert_eq!(s, 200, "{v}");
    add_user(&node, "acme", "carol", "Carol-Password-1", Some(SECRET)).await;

    let agent = Agent::new();
    let request = AuthorizationRequest::new(&client_id, CALLBACK);
    // One wrong password, then the right one: no reset (a code is still to come), the TOTP page.
    let wrong_password = agent.sign_in(&node, &request, "carol", "Not-Carol-1").await;
    assert_eq!(wrong_password.status, 401, "{}", wrong_password.body);
    let step = agent
        .submit(&node, &wrong_password, "login-form", &[("username", "carol"), ("password", "Carol-Password-1")])
        .await;
    assert!(step.has("totp-form"), "{}", step.body);
    // Two wrong codes: three failures, the limit.
    let right = totp(SECRET, 0);
    let first = agent.submit(&node, &step, "totp-form", &[("code", &wrong(&right))]).await;
    assert_eq!(first.status, 401, "{}", first.body);
    let second = agent.submit(&node, &first, "totp-form", &[("code", "999999")]).await;
    assert_eq!(second.status, 401, "{}", second.body);
    // Locked: the right code is refused, and so is the right password.
    let locked = agent.submit(&node, &second, "totp-form", &[("code", &totp(SECRET, 0))]).await;
    assert!(locked.location.is_none(), "no code while locked: {:?}", locked.location);
    assert!(locked.text("error").contains("Too many attempts"), "{}", locked.body);
    let login = Agent::new()
        .sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "carol", "Carol-Password-1")
        .await;
    assert_eq!(login.status, 429, "the password is locked out too: {}", login.body);
    // Another user of the organization is not.
    add_user(&node, "acme", "dave", "Dave-Password-1", None).await;
    Agent::new()
        .sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "dave", "Dave-Password-1")
        .await
        .code();
}

#[tokio::test]
async fn a_secret_given_to_the_admin_api_signs_in_and_is_never_shown() {
    let node = Node::start().await;
    let (client_id, _) = org_and_app(&node, "acme", "app-acme", true, json!({})).await;
    // As Casdoor users come: a base32 secret; here in lower case and in groups, as people copy them.
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXQ";
    let typed = "jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxq";
    add_user(&node, "acme", "erin", "Erin-Password-1", Some(typed)).await;
    let user = get_user(&node, "acme/erin").await;
    assert_eq!(user["totpSecret"], "", "{user}");
    assert_eq!(user["preferredMfaType"], "app", "{user}");
    let (s, v) = node.admin_get("get-users?owner=acme").await;
    assert_eq!(s, 200, "{v}");
    assert!(!v.to_string().to_lowercase().contains("jbsw"), "{v}");
    // Not base32: refused.
    let (s, v) = node
        .admin_post(
            "add-user",
            json!({"owner": "acme", "name": "frank", "password": "Frank-Password-1", "totpSecret": "not base32!"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");

    // An update that leaves totpSecret empty (as the admin API shows it) keeps the factor.
    let mut update = user.clone();
    update["displayName"] = json!("Erin E.");
    update["password"] = json!("***");
    let (s, v) = node.admin_post("update-user", update).await;
    assert_eq!(s, 200, "{v}");

    let agent = Agent::new();
    let step = agent.sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "erin", "Erin-Password-1").await;
    assert!(step.has("totp-form"), "{}", step.body);
    agent.submit(&node, &step, "totp-form", &[("code", &totp(secret, 0))]).await.code();

    // The admin resets it (Casdoor's delete-mfa): the next sign-in has no second step.
    let (s, v) = node.admin_post("delete-mfa", json!({"owner": "acme", "name": "erin"})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["data"].as_array().is_some_and(|a| a.iter().all(|m| m["enabled"] == false)), "{v}");
    assert_eq!(get_user(&node, "acme/erin").await["preferredMfaType"], "");
    Agent::new()
        .sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "erin", "Erin-Password-1")
        .await
        .code();
    let (s, v) = node.admin_post("delete-mfa", json!({"owner": "acme", "name": "nobody"})).await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test]
async fn require_mfa_sets_up_totp_inside_sign_in() {
    let node = Node::start().await;
    let (client_id, client_secret) =
        org_and_app(&node, "secure", "app-secure", true, json!({"requireMfa": true})).await;
    add_user(&node, "secure", "gina", "Gina-Password-1", None).await;

    let agent = Agent::new();
    let request = AuthorizationRequest::new(&client_id, CALLBACK);
    let enrol = agent.sign_in(&node, &request, "gina", "Gina-Password-1").await;
    assert_eq!(enrol.status, 200, "{}", enrol.body);
    assert!(enrol.has("totp-enrol-form") && enrol.body.contains("<svg id=\"qr\""), "{}", enrol.body);
    assert!(agent.cookie("jeton_session").is_none(), "no session before the factor is set up");
    let secret = shown_secret(&enrol);
    let again = agent.submit(&node, &enrol, "totp-enrol-form", &[("code", &wrong(&totp(&secret, 0)))]).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(shown_secret(&again), secret);
    let done = agent.submit(&node, &again, "totp-enrol-form", &[("code", &totp(&secret, 0))]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(recovery_codes(&done).len(), 10);
    assert!(agent.cookie("jeton_session").is_some(), "signed in");
    let code = agent.submit(&node, &done, "continue-form", &[]).await.code();
    let (claims, _) = request.tokens(&node, &client_secret, &code).await;
    assert_eq!(claims["acr"], "mfa", "{claims}");

    // From now on, a code after the password.
    let step =
        Agent::new().sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "gina", "Gina-Password-1").await;
    assert!(step.has("totp-form"), "{}", step.body);
    // An organization without requireMfa does not ask its users to set one up.
    let (plain_id, _) = org_and_app(&node, "relaxed", "app-relaxed", true, json!({})).await;
    add_user(&node, "relaxed", "hal", "Hal-Password-1", None).await;
    Agent::new().sign_in(&node, &AuthorizationRequest::new(&plain_id, CALLBACK), "hal", "Hal-Password-1").await.code();
}

/// Authorization with `prompt=none`: the redirect (a code, or `login_required` / `consent_required`).
pub(crate) async fn silent(agent: &Agent, node: &Node, client_id: &str) -> Page {
    let request = AuthorizationRequest::new(client_id, CALLBACK);
    let page = agent.get(&format!("{}&prompt=none", request.url(node))).await;
    assert_eq!(page.status, 303, "{}", page.body);
    page
}

#[tokio::test]
async fn sessions_and_consents_through_the_admin_api_and_the_account_page() {
    let node = Node::start().await;
    let (client_id, _) = org_and_app(&node, "acme", "app-partner", false, json!({})).await;
    add_user(&node, "acme", "ivy", "Ivy-Password-1", None).await;

    // Two browsers, two sessions; the first consents.
    let laptop = Agent::new();
    let consent =
        laptop.sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "ivy", "Ivy-Password-1").await;
    assert!(consent.has("consent-form"), "{}", consent.body);
    laptop.submit(&node, &consent, "consent-form", &[("decision", "allow")]).await.code();
    let phone = Agent::new();
    phone.sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "ivy", "Ivy-Password-1").await.code();

    let (s, v) = node.admin_get("get-sessions?owner=acme").await;
    assert_eq!(s, 200, "{v}");
    let rows = v["data"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "one user, one application: {v}");
    assert_eq!((rows[0]["owner"].as_str(), rows[0]["name"].as_str()), (Some("acme"), Some("ivy")), "{v}");
    assert_eq!(rows[0]["application"], "app-partner", "{v}");
    let ids: Vec<String> =
        rows[0]["sessionId"].as_array().expect("ids").iter().filter_map(Value::as_str).map(str::to_string).collect();
    assert_eq!(ids.len(), 2, "{v}");
    assert_eq!(rows[0]["sessions"].as_array().map(Vec::len), Some(2), "{v}");
    let (s, v) = node.admin_get("get-sessions?owner=acme&user=nobody").await;
    assert_eq!((s, v["data"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    let (s, _) = node.admin_get("get-sessions").await;
    assert_eq!(s, 400);
    // Not for anyone but administrators.
    let (s, v) = node.get("/api/get-sessions?owner=acme").await;
    assert_eq!(s, 401, "{v}");

    // Which session is the phone's: the account page marks this browser's own.
    let phone_account = phone.get(&node.url("/account")).await;
    let item = |id: &str| {
        let at = phone_account.body.find(&format!("data-session=\"{id}\"")).unwrap_or_else(|| panic!("{id} listed"));
        phone_account.body[at..].split("</li>").next().expect("item").to_string()
    };
    let marked: Vec<&String> = ids.iter().filter(|id| item(id).contains("(this browser)")).collect();
    assert_eq!(marked.len(), 1, "one session is this browser's: {}", phone_account.body);
    let phone_id = marked[0].clone();

    // The admin ends the phone's session: the phone is signed out, the laptop is not.
    let (s, v) =
        node.admin_post("delete-session", json!({"owner": "acme", "name": "ivy", "sessionId": [phone_id]})).await;
    assert_eq!((s, v["data"].as_str()), (200, Some("Affected")), "{v}");
    let (s, v) =
        node.admin_post("delete-session", json!({"owner": "acme", "name": "ivy", "sessionId": ["0".repeat(64)]})).await;
    assert_eq!((s, v["data"].as_str()), (200, Some("Unaffected")), "{v}");
    assert_eq!(silent(&phone, &node, &client_id).await.redirect_param("error").as_deref(), Some("login_required"));
    silent(&laptop, &node, &client_id).await.code();
    assert_eq!(phone.get(&node.url("/account")).await.status, 401);

    // Consents: listed, revoked by the admin (the application asks again), granted again.
    let (s, v) = node.admin_get("get-consents?owner=acme").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"][0]["name"], "ivy", "{v}");
    assert_eq!(v["data"][0]["application"], "admin/app-partner", "{v}");
    assert!(v["data"][0]["grantedScopes"].as_array().is_some_and(|s| s.iter().any(|x| x == "openid")), "{v}");
    let (s, v) = node
        .admin_post("revoke-consent", json!({"owner": "acme", "name": "ivy", "application": "admin/app-partner"}))
        .await;
    assert_eq!((s, &v["data"]), (200, &json!(true)), "{v}");
    assert_eq!(silent(&laptop, &node, &client_id).await.redirect_param("error").as_deref(), Some("consent_required"));
    let asked = laptop.get(&AuthorizationRequest::new(&client_id, CALLBACK).url(&node)).await;
    assert!(asked.has("consent-form"), "{}", asked.body);
    laptop.submit(&node, &asked, "consent-form", &[("decision", "allow")]).await.code();
    silent(&laptop, &node, &client_id).await.code();

    // The user takes it back on the account page.
    let account = laptop.get(&node.url("/account")).await;
    assert!(account.has("consent-list"), "{}", account.body);
    let revoke = account.form_with("/account", "application", "app-partner").expect("a revoke form");
    let back = laptop.post(&node.url("/account"), &revoke).await;
    assert_eq!((back.status, back.location.as_deref()), (303, Some("/account")), "{}", back.body);
    assert_eq!(silent(&laptop, &node, &client_id).await.redirect_param("error").as_deref(), Some("consent_required"));
    let (s, v) = node.admin_get("get-consents?owner=acme&user=ivy").await;
    assert_eq!((s, v["data"].as_array().map(Vec::len)), (200, Some(0)), "{v}");

    // A form without the CSRF token does nothing.
    let mut forged = account.form_with("/account", "action", "end-session").expect("an end-session form");
    forged.retain(|(k, _)| k != "csrf");
    assert_eq!(laptop.post(&node.url("/account"), &forged).await.status, 403);
    // The user signs this browser out on the account page.
    let account = laptop.get(&node.url("/account")).await;
    let own = account.form_with("/account", "action", "end-session").expect("its session");
    let out = laptop.post(&node.url("/account"), &own).await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(laptop.cookie("jeton_session").is_none(), "the cookie is cleared");
    let (s, v) = node.admin_get("get-sessions?owner=acme").await;
    assert_eq!((s, v["data"].as_array().map(Vec::len)), (200, Some(0)), "{v}");

    // delete-session without sessionId ends all of a user's sessions.
    let a = Agent::new();
    let b = Agent::new();
    for agent in [&a, &b] {
        let page =
            agent.sign_in(&node, &AuthorizationRequest::new(&client_id, CALLBACK), "ivy", "Ivy-Password-1").await;
        let page = if page.has("consent-form") {
            agent.submit(&node, &page, "consent-form", &[("decision", "allow")]).await
        } else {
            page
        };
        page.code();
    }
    let (s, v) = node.admin_post("delete-session", json!({"owner": "acme", "name": "ivy"})).await;
    assert_eq!((s, v["data"].as_str()), (200, Some("Affected")), "{v}");
    for agent in [&a, &b] {
        assert_eq!(silent(agent, &node, &client_id).await.redirect_param("error").as_deref(), Some("login_required"));
    }
}
