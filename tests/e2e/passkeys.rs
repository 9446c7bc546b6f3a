//! Passkeys over plain HTTP, with the test as the authenticator: a P-256 key (the p256 crate) answers the
//! node's WebAuthn ceremonies the way a security key does — registration with "none" attestation, then
//! signed assertions — so what a browser would never send can be sent: an answer for another origin or
//! made for another relying-party id, a counter that does not go up, a replayed answer. The browser flow
//! itself (Chromium's own WebAuthn, its virtual authenticator) is tests/e2e/browser.rs'.
//!
//! The node's issuer is `http://localhost:PORT` (WebAuthn takes no IP address as relying-party id); the
//! test is the browser too: it keeps the cookies and posts the forms the pages' script would.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::{free_port, verify_id_token_with_jwks, Node};

const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const CLIENT_ID: &str = "app-keys-client";
const CLIENT_SECRET: &str = "app-keys-secret-0123456789";
const PASSWORD: &str = "Carol-Password-1";

/// A node whose issuer (and so relying party) is `http://localhost:PORT`; `base` uses that name.
async fn start_node() -> (Node, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let issuer = format!("http://localhost:{port}");
    let mut node = Node::start_in(&tmp.path().join("data"), port, &["--issuer", &issuer]).await;
    node.base = issuer;
    (node, tmp)
}

/// Organization `acme`, a first-party application signing in through the pages, and the user carol with a
/// password; carol's id.
async fn set_up(node: &Node) -> String {
    let (s, v) = node
        .admin_post("add-organization", json!({"owner": "admin", "name": "acme", "passwordType": "argon2id"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node
        .admin_post(
            "add-application",
            json!({
                "owner": "admin", "name": "app-keys", "organization": "acme", "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET, "grantTypes": ["authorization_code"], "redirectUris": [REDIRECT_URI],
                "skipConsent": true,
            }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.admin_post("add-user", json!({"owner": "acme", "name": "carol", "password": PASSWORD})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.admin_get("get-user?id=acme/carol").await;
    assert_eq!(s, 200, "{v}");
    v["data"]["id"].as_str().expect("user id").to_string()
}

/// What a browser keeps between requests to the node: its cookies. Redirects are not followed, so each
/// answer can be looked at.
struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

/// An answer of the node: status, `Location`, body.
struct Answer {
    status: u16,
    location: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Visitor {
    fn new(node: &Node) -> Visitor {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .expect("http client");
        Visitor { http, base: node.base.clone(), cookies: Vec::new() }
    }

    fn has_cookie(&self, name: &str) -> bool {
        self.cookies.iter().any(|(k, _)| k == name)
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let request = if cookie.is_empty() { request } else { request.header("cookie", cookie) };
        let response = request.send().await.expect("request");
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().expect("set-cookie");
            let (name, value) = set.split(';').next().and_then(|c| c.split_once('=')).expect("cookie");
            self.cookies.retain(|(k, _)| k != name);
            if !set.contains("Max-Age=0") {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
        let status = response.status().as_u16();
        let location =
            response.headers().get("location").map(|l| l.to_str().expect("location").to_string()).unwrap_or_default();
        let body = response.text().await.unwrap_or_default();
        Answer { status, location, body }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(request).await
    }
}

/// The value the page's HTML gives after `marker` (an attribute's opening: `name="csrf" value="`,
/// `data-pending="`), unescaped.
fn attribute(html: &str, marker: &str) -> String {
    let start = html.find(marker).unwrap_or_else(|| panic!("no {marker} in the page: {html}")) + marker.len();
    let end = html[start..].find('"').expect("attribute end") + start;
    html[start..end]
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&lt;", "<")
        .replace("&#62;", ">")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// An authorization request of the code flow with PKCE.
struct Authorization {
    state: String,
    verifier: String,
}

impl Authorization {
    fn new() -> Authorization {
        Authorization {
            state: uuid::Uuid::new_v4().simple().to_string(),
            verifier: format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()),
        }
    }

    fn path(&self) -> String {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()));
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT_URI),
                ("scope", "openid"),
                ("state", &self.state),
                ("nonce", "n-1"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .finish();
        format!("/oauth/authorize?{query}")
    }

    /// The code a redirect to the callback carries (for this request).
    fn code(&self, answer: &Answer) -> String {
        assert_eq!(answer.status, 303, "a redirect to the application: {}", answer.body);
        let url = url::Url::parse(&answer.location).expect("location");
        assert!(answer.location.starts_with(REDIRECT_URI), "{}", answer.location);
        let param = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
        assert_eq!(param("state").as_deref(), Some(self.state.as_str()));
        param("code").unwrap_or_else(|| panic!("no code in {}", answer.location))
    }

    /// Redeems a code; the ID token's claims.
    async fn id_token(&self, node: &Node, code: &str) -> Value {
        let (s, v) = node
            .post_form_basic(
                "/oauth/token",
                CLIENT_ID,
                CLIENT_SECRET,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", REDIRECT_URI),
                    ("code_verifier", &self.verifier),
                ],
            )
            .await;
        assert_eq!(s, 200, "{v}");
        verify_id_token_with_jwks(node, v["id_token"].as_str().expect("id_token")).await
    }
}

/// The login page of a new authorization request: its CSRF token and carried request.
async fn login_page(visitor: &mut Visitor, authorization: &Authorization) -> (String, String) {
    let page = visitor.get(&authorization.path()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"passkey\""), "the login page offers passkeys");
    (attribute(&page.body, "name=\"csrf\" value=\""), attribute(&page.body, "name=\"request\" value=\""))
}

/// Signs carol in with her password on a fresh login page: the answer to `POST /login`, and the page's
/// CSRF token and request.
async fn password_step(visitor: &mut Visitor, authorization: &Authorization) -> (Answer, String, String) {
    let (csrf, request) = login_page(visitor, authorization).await;
    let answer = visitor
        .post("/login", &[("csrf", &csrf), ("request", &request), ("username", "carol"), ("password", PASSWORD)])
        .await;
    (answer, csrf, request)
}

/// Options of a passkey sign-in, as the page's script asks for them (`pending`: as second factor).
async fn sign_in_options(visitor: &mut Visitor, csrf: &str, pending: Option<&str>) -> (Value, String) {
    let mut form = vec![("csrf", csrf)];
    if let Some(p) = pending {
        form.push(("pending", p));
    }
    let options = visitor.post("/passkey/login/options", &form).await;
    assert_eq!(options.status, 200, "{}", options.body);
    let options = options.json();
    let state = options["state"].as_str().expect("state").to_string();
    (options, state)
}

/// The form the page's script posts with the authenticator's answer.
async fn finish_sign_in(
    visitor: &mut Visitor,
    (csrf, request): (&str, &str),
    pending: Option<&str>,
    state: &str,
    credential: &str,
) -> Answer {
    let mut form = vec![("csrf", csrf), ("request", request), ("state", state), ("credential", credential)];
    if let Some(p) = pending {
        form.push(("pending", p));
    }
    visitor.post("/passkey/login", &form).await
}

/// A minimal CBOR (RFC 8949) writer: what an authenticator's attestation object and COSE key need.
enum Cbor {
    Int(i64),
    Bytes(Vec<u8>),
    Text(&'static str),
    Map(Vec<(Cbor, Cbor)>),
}

impl Cbor {
    fn encode(&self, out: &mut Vec<u8>) {
        fn head(major: u8, n: u64, out: &mut Vec<u8>) {
            let m = major << 5;
            match n {
                0..=23 => out.push(m | n as u8),
                24..=0xff => out.extend([m | 24, n as u8]),
                0x100..=0xffff => {
                    out.push(m | 25);
                    out.extend((n as u16).to_be_bytes());
                }
                _ => {
                    out.push(m | 26);
                    out.extend((n as u32).to_be_bytes());
                }
            }
        }
        match self {
            Cbor::Int(n) if *n >= 0 => head(0, *n as u64, out),
            Cbor::Int(n) => head(1, (-1 - *n) as u64, out),
            Cbor::Bytes(b) => {
                head(2, b.len() as u64, out);
                out.extend(b);
            }
            Cbor::Text(t) => {
                head(3, t.len() as u64, out);
                out.extend(t.as_bytes());
            }
            Cbor::Map(entries) => {
                head(5, entries.len() as u64, out);
                for (k, v) in entries {
                    k.encode(out);
                    v.encode(out);
                }
            }
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Authenticator data flags (WebAuthn §6.1): user present, user verified, attested credential data.
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

/// A software authenticator with one credential: a P-256 key under a random credential id.
struct SoftKey {
    key: SigningKey,
    credential_id: Vec<u8>,
    /// The user handle the credential was registered with (what a discoverable credential gives back).
    user_handle: Vec<u8>,
}

impl SoftKey {
    fn new() -> SoftKey {
        let seed = Sha256::digest(uuid::Uuid::new_v4().as_bytes());
        let key = SigningKey::from_slice(&seed).expect("a P-256 key");
        SoftKey { key, credential_id: uuid::Uuid::new_v4().as_bytes().to_vec(), user_handle: Vec::new() }
    }

    fn id(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.credential_id)
    }

    /// The answer to a registration's options (`navigator.credentials.create`), made on a page of
    /// `origin` for the relying-party id the options name, with "none" attestation.
    fn register(&mut self, options: &Value, origin: &str) -> String {
        let public_key = &options["publicKey"];
        let rp_id = public_key["rp"]["id"].as_str().expect("rp.id");
        self.user_handle = URL_SAFE_NO_PAD.decode(public_key["user"]["id"].as_str().expect("user.id")).expect("b64");
        let client_data = json!({
            "type": "webauthn.create",
            "challenge": public_key["challenge"],
            "origin": origin,
            "crossOrigin": false,
        })
        .to_string();
        let point = self.key.verifying_key().to_sec1_point(false);
        let point = point.as_bytes();
        let cose_key = Cbor::Map(vec![
            (Cbor::Int(1), Cbor::Int(2)),
            (Cbor::Int(3), Cbor::Int(-7)),
            (Cbor::Int(-1), Cbor::Int(1)),
            (Cbor::Int(-2), Cbor::Bytes(point[1..33].to_vec())),
            (Cbor::Int(-3), Cbor::Bytes(point[33..65].to_vec())),
        ]);
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(UP | UV | AT);
        auth_data.extend(0u32.to_be_bytes());
        auth_data.extend([0u8; 16]);
        auth_data.extend((self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend(&self.credential_id);
        auth_data.extend(cose_key.to_vec());
        let attestation = Cbor::Map(vec![
            (Cbor::Text("fmt"), Cbor::Text("none")),
            (Cbor::Text("attStmt"), Cbor::Map(vec![])),
            (Cbor::Text("authData"), Cbor::Bytes(auth_data)),
        ]);
        json!({
            "id": self.id(),
            "rawId": self.id(),
            "type": "public-key",
            "response": {
                "attestationObject": URL_SAFE_NO_PAD.encode(attestation.to_vec()),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data),
            },
            "extensions": {},
        })
        .to_string()
    }

    /// The answer to a sign-in's options (`navigator.credentials.get`) from a page of `origin`, signed
    /// by the credential for relying-party id `rp_id`, with `counter`; `discoverable` gives the user
    /// handle back, as a passkey does when no user was named.
    fn assert(&self, options: &Value, origin: &str, rp_id: &str, counter: u32, discoverable: bool) -> String {
        let client_data = json!({
            "type": "webauthn.get",
            "challenge": options["publicKey"]["challenge"],
            "origin": origin,
            "crossOrigin": false,
        })
        .to_string();
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(UP | UV);
        auth_data.extend(counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(client_data.as_bytes()));
        let signature: Signature = self.key.sign(&signed);
        let user_handle = if discoverable { json!(URL_SAFE_NO_PAD.encode(&self.user_handle)) } else { Value::Null };
        json!({
            "id": self.id(),
            "rawId": self.id(),
            "type": "public-key",
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(&auth_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data),
                "signature": URL_SAFE_NO_PAD.encode(signature.to_der().as_bytes()),
                "userHandle": user_handle,
            },
            "extensions": {},
        })
        .to_string()
    }
}

/// The passkeys the admin API lists for carol.
async fn listed(node: &Node) -> Vec<Value> {
    let (s, v) = node.admin_get("get-webauthn-credentials?id=acme/carol").await;
    assert_eq!(s, 200, "{v}");
    v["data"].as_array().cloned().unwrap_or_else(|| panic!("not a list: {v}"))
}

/// Signed in with her password, carol registers the software key on /account/passkeys; an answer made on
/// another origin is refused first. Returns the signed-in visitor.
async fn register_soft_key(node: &Node, key: &mut SoftKey) -> Visitor {
    let origin = node.base.clone();
    let mut visitor = Visitor::new(node);
    let authorization = Authorization::new();
    let (signed_in, _, _) = password_step(&mut visitor, &authorization).await;
    authorization.code(&signed_in);
    assert!(visitor.has_cookie("jeton_session"), "signed in");
    let page = visitor.get("/account/passkeys").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"passkey-list\"") && page.body.contains("id=\"register\""));
    let csrf = attribute(&page.body, "name=\"csrf\" value=\"");

    // The options are JSON for the page's script: a discoverable credential, user verification.
    let options = visitor.post("/account/passkeys/options", &[("csrf", &csrf)]).await;
    assert_eq!(options.status, 200, "{}", options.body);
    let options = options.json();
    let public_key = &options["publicKey"];
    assert_eq!(public_key["rp"]["id"], "localhost", "the issuer's host is the relying-party id: {options}");
    assert_eq!(public_key["authenticatorSelection"]["residentKey"], "required", "{options}");
    assert_eq!(public_key["authenticatorSelection"]["userVerification"], "required", "{options}");
    let state = options["state"].as_str().expect("state").to_string();

    // A page of another origin (a sibling host) asked for it: refused, nothing stored.
    let foreign = key.register(&options, &origin.replace("localhost", "evil.localhost"));
    let refused = visitor
        .post("/account/passkeys", &[("csrf", &csrf), ("state", &state), ("credential", &foreign), ("name", "Evil")])
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("id=\"error\""), "{}", refused.body);
    assert!(listed(node).await.is_empty(), "nothing registered from another origin");

    let options = visitor.post("/account/passkeys/options", &[("csrf", &csrf)]).await.json();
    let state = options["state"].as_str().expect("state").to_string();
    let answer = key.register(&options, &origin);
    // The state is bound to the browser it was issued to: another browser's CSRF token and cookie fail.
    let mut stranger = Visitor::new(node);
    stranger.cookies = visitor.cookies.iter().filter(|(k, _)| k == "jeton_session").cloned().collect();
    let elsewhere = stranger.get("/account/passkeys").await;
    let stranger_csrf = attribute(&elsewhere.body, "name=\"csrf\" value=\"");
    let replayed = stranger
        .post("/account/passkeys", &[("csrf", &stranger_csrf), ("state", &state), ("credential", &answer)])
        .await;
    assert_eq!(replayed.status, 400, "another browser cannot finish the ceremony: {}", replayed.body);
    assert!(listed(node).await.is_empty());

    let stored = visitor
        .post("/account/passkeys", &[("csrf", &csrf), ("state", &state), ("credential", &answer), ("name", "Soft key")])
        .await;
    assert_eq!((stored.status, stored.location.as_str()), (303, "/account/passkeys"), "{}", stored.body);
    let page = visitor.get("/account/passkeys").await;
    assert!(page.body.contains("Soft key"), "the list shows the new passkey: {}", page.body);
    let list = listed(node).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["credentialId"], key.id());
    assert_eq!(list[0]["name"], "Soft key");
    visitor
}

/// "A passkey from another origin": answers made on a page of another origin, or signed for another
/// relying-party id, never sign in; the right answer does, once (a replay, or a counter that does not go
/// up, is refused), with `amr` hwk and mfa (user verified).
#[tokio::test]
async fn passkey_from_another_origin_is_refused() {
    let (node, _dir) = start_node().await;
    let carol = set_up(&node).await;
    let mut key = SoftKey::new();
    let _registered = register_soft_key(&node, &mut key).await;
    let origin = node.base.clone();

    // A new browser, no session: the login page's passkey button, no username.
    let mut visitor = Visitor::new(&node);
    let authorization = Authorization::new();
    let (csrf, request) = login_page(&mut visitor, &authorization).await;
    let page = (csrf.as_str(), request.as_str());
    let (options, state) = sign_in_options(&mut visitor, &csrf, None).await;
    assert_eq!(options["publicKey"]["rpId"], "localhost", "{options}");
    assert!(options.get("mediation").is_none(), "asked on a button press, not in autofill: {options}");
    assert!(options["publicKey"].get("allowCredentials").is_none_or(|a| a.as_array().is_some_and(|a| a.is_empty())));

    // Another origin: a page of another port on the same host, and one of another host.
    for other in [format!("http://localhost:{}", free_port()), origin.replace("localhost", "evil.localhost")] {
        let answer = key.assert(&options, &other, "localhost", 1, true);
        let refused = finish_sign_in(&mut visitor, page, None, &state, &answer).await;
        assert_eq!(refused.status, 401, "an answer from {other}: {}", refused.body);
        assert!(refused.location.is_empty() && refused.body.contains("id=\"error\""), "{}", refused.body);
        assert!(!visitor.has_cookie("jeton_session"));
    }
    // The right origin, but signed for another relying-party id (a credential of another site).
    let answer = key.assert(&options, &origin, "evil.example", 1, true);
    assert_eq!(finish_sign_in(&mut visitor, page, None, &state, &answer).await.status, 401, "another RP id");
    // Another challenge (the options of another ceremony) with this one's state.
    let (other_options, _) = sign_in_options(&mut visitor, &csrf, None).await;
    let answer = key.assert(&other_options, &origin, "localhost", 1, true);
    assert_eq!(finish_sign_in(&mut visitor, page, None, &state, &answer).await.status, 401, "another challenge");
    // A request from a page of another origin is refused before anything is checked.
    let foreign = visitor
        .send(
            visitor
                .http
                .post(format!("{origin}/passkey/login/options"))
                .header("origin", "http://evil.example")
                .form(&[("csrf", &csrf)]),
        )
        .await;
    assert_eq!(foreign.status, 403, "{}", foreign.body);

    // The right answer signs carol in, with the authenticator's counter.
    let answer = key.assert(&options, &origin, "localhost", 1, true);
    let signed_in = finish_sign_in(&mut visitor, page, None, &state, &answer).await;
    let code = authorization.code(&signed_in);
    assert!(visitor.has_cookie("jeton_session"), "a session starts");
    let claims = authorization.id_token(&node, &code).await;
    assert_eq!(claims["sub"], carol.as_str(), "{claims}");
    assert_eq!(claims["amr"], json!(["hwk", "mfa"]), "a user-verifying passkey is two factors: {claims}");
    assert_eq!(claims["acr"], "mfa", "{claims}");
    assert_eq!(listed(&node).await[0]["signCount"], 1, "the counter is stored");

    // The same answer again (replayed), and a fresh ceremony answered with a counter that did not go up
    // (a cloned authenticator): refused.
    let mut again = Visitor::new(&node);
    let second = Authorization::new();
    let (csrf2, request2) = login_page(&mut again, &second).await;
    let page2 = (csrf2.as_str(), request2.as_str());
    let replay = finish_sign_in(&mut again, page2, None, &state, &answer).await;
    assert_eq!(replay.status, 401, "a replay in another browser (its state is bound to the first): {}", replay.body);
    let replay = finish_sign_in(&mut visitor, page, None, &state, &answer).await;
    assert_eq!(replay.status, 401, "a replay in the same browser (the counter did not go up): {}", replay.body);
    let (options, state2) = sign_in_options(&mut again, &csrf2, None).await;
    let cloned = key.assert(&options, &origin, "localhost", 1, true);
    let refused = finish_sign_in(&mut again, page2, None, &state2, &cloned).await;
    assert_eq!(refused.status, 401, "a counter that did not go up: {}", refused.body);
    assert!(!again.has_cookie("jeton_session"));
    let counted = key.assert(&options, &origin, "localhost", 2, true);
    second.code(&finish_sign_in(&mut again, page2, None, &state2, &counted).await);
    assert_eq!(listed(&node).await[0]["signCount"], 2);
}

/// After her password, a user with a passkey is asked for it (no TOTP: the second-step page has only the
/// passkey button); the options name her passkey; the ID token says pwd, hwk, mfa. An administrator
/// lists and removes the passkey; it signs nobody in afterwards, and her password alone is enough again.
#[tokio::test]
async fn passkey_as_second_factor_then_removed_by_an_admin() {
    let (node, _dir) = start_node().await;
    let carol = set_up(&node).await;
    let mut key = SoftKey::new();
    let _registered = register_soft_key(&node, &mut key).await;
    let origin = node.base.clone();

    let mut visitor = Visitor::new(&node);
    let authorization = Authorization::new();
    let (step, csrf, request) = password_step(&mut visitor, &authorization).await;
    assert_eq!(step.status, 200, "the password is not enough: {}", step.body);
    assert!(!visitor.has_cookie("jeton_session"), "no session before the second factor");
    assert!(step.body.contains("id=\"passkey\"") && !step.body.contains("id=\"totp-form\""), "{}", step.body);
    let pending = attribute(&step.body, "data-pending=\"");
    let (options, state) = sign_in_options(&mut visitor, &csrf, Some(&pending)).await;
    let allowed = options["publicKey"]["allowCredentials"].as_array().expect("allowCredentials");
    assert_eq!(allowed.len(), 1, "{options}");
    assert_eq!(allowed[0]["id"], key.id());
    let page = (csrf.as_str(), request.as_str());

    // Another origin, as a second factor too: the second-step page again, with its error.
    let foreign = key.assert(&options, &origin.replace("localhost", "evil.localhost"), "localhost", 5, false);
    let refused = finish_sign_in(&mut visitor, page, Some(&pending), &state, &foreign).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(refused.body.contains("id=\"error\"") && refused.body.contains("data-pending=\""), "{}", refused.body);

    let answer = key.assert(&options, &origin, "localhost", 5, false);
    let signed_in = finish_sign_in(&mut visitor, page, Some(&pending), &state, &answer).await;
    let code = authorization.code(&signed_in);
    assert!(visitor.has_cookie("jeton_session"));
    let claims = authorization.id_token(&node, &code).await;
    assert_eq!(claims["sub"], carol.as_str());
    assert_eq!(claims["amr"], json!(["pwd", "hwk", "mfa"]), "{claims}");

    // An administrator lists it and removes it.
    let list = listed(&node).await;
    assert_eq!(
        (list.len(), list[0]["signCount"].as_u64(), list[0]["userId"].as_str()),
        (1, Some(5), Some(carol.as_str()))
    );
    assert!(list[0].get("credential").is_none(), "no key material in the admin API: {list:?}");
    let (s, v) = node.admin_post("delete-webauthn-credential", json!({"credentialId": "not-a-credential"})).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) =
        node.admin_post("delete-webauthn-credential", json!({"id": "acme/carol", "credentialId": key.id()})).await;
    assert_eq!(s, 200, "{v}");
    assert!(listed(&node).await.is_empty());

    // Gone: it signs nobody in, and the password alone is enough again.
    let mut later = Visitor::new(&node);
    let third = Authorization::new();
    let (csrf3, request3) = login_page(&mut later, &third).await;
    let (options, state3) = sign_in_options(&mut later, &csrf3, None).await;
    let answer = key.assert(&options, &origin, "localhost", 6, true);
    let refused = finish_sign_in(&mut later, (&csrf3, &request3), None, &state3, &answer).await;
    assert_eq!(refused.status, 401, "a removed passkey: {}", refused.body);
    let (answer, _, _) = password_step(&mut later, &third).await;
    third.code(&answer);
}
