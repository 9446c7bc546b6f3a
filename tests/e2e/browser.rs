//! Browser sign-in (the page contract of issue 14) driven by a real browser: Debian's Chromium, headless,
//! through Debian's chromedriver (W3C WebDriver) with the fantoccini client. Passkeys use WebDriver's
//! virtual authenticator (WebAuthn Level 2 §11), so Chromium's own WebAuthn code signs the challenges.
//!
//! The relying party is a small web server in the test process on another origin (`127.0.0.1`) than the
//! node (`localhost`): it starts each sign-in with a redirect to the authorization endpoint, as a real
//! application does, and records what arrives at its redirect URI. The node's issuer is
//! `http://localhost:PORT` because WebAuthn refuses IP addresses as relying-party ids, and the browser
//! must stay on the issuer's origin for the session cookie the pages set to be the one it sends back.
//!
//! Screenshots of each step (and of the page where a step failed, with its HTML and chromedriver's log)
//! go to `$JETON_ARTIFACTS/<test>/`, by default `target/e2e-artifacts/<test>/` in the repository.
//!
//! Needs tests/e2e/browser/install.sh (and tests/e2e/radius/install.sh's python3, which computes the TOTP
//! codes).

use std::convert::Infallible;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::harness::{client, free_port, verify_id_token_with_jwks, verify_with_jwks, Node};
use crate::radius::totp;

/// How long a page may take to show what a step waits for: a sign-in hashes a password (argon2id) and
/// Chromium is slow to start on two cores. A deadline for failing, not a timing assertion.
const PAGE_WAIT: Duration = Duration::from_secs(30);

/// The session cookie's name on plain HTTP (over TLS it is `__Host-jeton_session`).
const SESSION_COOKIE: &str = "jeton_session";

/// Chromium's viewport: wide enough for the pages' desktop layout in the screenshots.
const WINDOW: (u32, u32) = (1280, 900);

/// A running chromedriver, in a process group of its own: dropping it ends the group, so the Chromium it
/// started goes too even when a test panics before [`Browser::close`] (Chromium's processes stay in the
/// group chromedriver starts them in).
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port and waits until its `/status` says it is ready.
    /// It logs to `log`.
    async fn start(log: &Path) -> ChromeDriver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start chromedriver ({e}); tests/e2e/browser/install.sh installs it"));
        let mut driver = ChromeDriver { child, url: format!("http://127.0.0.1:{port}") };
        let http = client();
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("chromedriver exited ({status}) before it was ready; log: {}", log.display());
            }
            if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        return driver;
                    }
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready; log: {}", log.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The negative id names the process group chromedriver leads (process_group(0) above).
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session, with the place its screenshots go.
pub struct Browser {
    /// Declared before `driver` so that it is dropped first: an unclosed session asks chromedriver to
    /// end it while chromedriver still runs.
    client: Client,
    driver: ChromeDriver,
    artifacts: PathBuf,
    /// Chromium's profile, removed on drop (chromedriver's own temporary profile would stay behind when
    /// the process group is killed).
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh Chromium (new profile: no cookies, no credentials) for the test named `test`, whose
    /// artifacts go to a folder of that name.
    pub async fn start(test: &str) -> Browser {
        let artifacts = artifacts_root().join(test);
        // A previous run's screenshots would pass for this run's.
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts)
            .unwrap_or_else(|e| panic!("create the artifacts folder {}: {e}", artifacts.display()));
        let driver = ChromeDriver::start(&artifacts.join("chromedriver.log")).await;
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": [
                    "--headless=new",
                    // Tests run as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    // Containers give /dev/shm 64 MiB, too little for Chromium's renderers.
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client =
            ClientBuilder::new(HttpConnector::new()).capabilities(caps).connect(&driver.url).await.unwrap_or_else(
                |e| panic!("open a Chromium session ({e}); chromedriver's log: {}", artifacts.display()),
            );
        Browser { client, driver, artifacts, _profile: profile }
    }

    /// Ends the session (chromedriver closes Chromium), then chromedriver.
    pub async fn close(self) {
        let Browser { client, driver, .. } = self;
        client.close().await.expect("end the WebDriver session");
        drop(driver);
    }

    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            panic!("{}", self.failure(&format!("navigate to {url}: {e}")).await);
        }
    }

    pub async fn current_url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default()
    }

    /// The element with this id once the page shows it (a page appears after redirects and form posts).
    pub async fn element(&self, id: &str) -> Element {
        match self.client.wait().at_most(PAGE_WAIT).for_element(Locator::Id(id)).await {
            Ok(e) => e,
            Err(e) => panic!("{}", self.failure(&format!("no #{id} on the page ({e})")).await),
        }
    }

    /// Whether the current page has an element matching the CSS selector, without waiting.
    pub async fn has(&self, css: &str) -> bool {
        self.client.find_all(Locator::Css(css)).await.is_ok_and(|found| !found.is_empty())
    }

    /// Types `text` into the field with this id.
    pub async fn fill(&self, id: &str, text: &str) {
        let field = self.element(id).await;
        if let Err(e) = field.clear().await {
            panic!("{}", self.failure(&format!("clear #{id}: {e}")).await);
        }
        if let Err(e) = field.send_keys(text).await {
            panic!("{}", self.failure(&format!("type into #{id}: {e}")).await);
        }
    }

    pub async fn click(&self, id: &str) {
        let button = self.element(id).await;
        if let Err(e) = button.click().await {
            panic!("{}", self.failure(&format!("click #{id}: {e}")).await);
        }
    }

    /// Clicks the button with this id and waits until the page it was on has been replaced (by a form's
    /// answer, or a redirect): what the next step looks for is then looked for on the new page, not found
    /// on the old one.
    pub async fn submit(&self, id: &str) {
        let button = self.element(id).await;
        if let Err(e) = button.click().await {
            panic!("{}", self.failure(&format!("click #{id}: {e}")).await);
        }
        let deadline = Instant::now() + PAGE_WAIT;
        while button.tag_name().await.is_ok() {
            if Instant::now() > deadline {
                panic!("{}", self.failure(&format!("the page stayed after #{id} was clicked")).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The visible text of the element with this id.
    pub async fn text(&self, id: &str) -> String {
        let element = self.element(id).await;
        match element.text().await {
            Ok(t) => t,
            Err(e) => panic!("{}", self.failure(&format!("read the text of #{id}: {e}")).await),
        }
    }

    /// Waits until the browser is at a URL starting with `prefix` (a redirect chain, or a page's script,
    /// gets it there) and returns that URL.
    pub async fn wait_for_url(&self, prefix: &str) -> String {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let url = self.current_url().await;
            if url.starts_with(prefix) {
                return url;
            }
            if Instant::now() > deadline {
                panic!("{}", self.failure(&format!("never reached {prefix}")).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the viewport as `<step>.png` in the test's artifacts folder and returns its path.
    pub async fn screenshot(&self, step: &str) -> PathBuf {
        let png = match self.client.screenshot().await {
            Ok(png) => png,
            Err(e) => panic!("{}", self.failure(&format!("screenshot {step}: {e}")).await),
        };
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "WebDriver's screenshot of {step} is not a PNG");
        let path = self.artifacts.join(format!("{step}.png"));
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The session cookie as the browser holds it for the page's origin, if it holds one.
    pub async fn session_cookie(&self) -> Option<fantoccini::cookies::Cookie<'static>> {
        self.client.get_named_cookie(SESSION_COOKIE).await.ok()
    }

    /// What a failed step leaves behind — a screenshot and the HTML of the page it was on, named
    /// `failed-*` — and the message to fail with: the step, the URL, and the start of the page's text.
    async fn failure(&self, what: &str) -> String {
        let url = self.current_url().await;
        let step = what.split(" (").next().unwrap_or(what);
        let name = step
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|word| !word.is_empty())
            .collect::<Vec<_>>()
            .join("-")
            .chars()
            .take(60)
            .collect::<String>();
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(self.artifacts.join(format!("failed-{name}.png")), png);
        }
        if let Ok(html) = self.client.source().await {
            let _ = std::fs::write(self.artifacts.join(format!("failed-{name}.html")), html);
        }
        let text = self
            .client
            .execute("return document.body ? document.body.innerText : '';", vec![])
            .await
            .ok()
            .and_then(|v| v.as_str().map(|s| s.chars().take(1500).collect::<String>()))
            .unwrap_or_default();
        format!(
            "{what}, at {url}; page text: {text:?}; screenshot, HTML and chromedriver.log in {}",
            self.artifacts.display()
        )
    }

    /// Adds a virtual authenticator to the browser, as a platform authenticator (a phone's or a laptop's
    /// built-in one) that keeps discoverable credentials and verifies its user: every WebAuthn ceremony
    /// after this is answered by it, with user presence and verification. Returns its id.
    pub async fn add_virtual_authenticator(&self) -> String {
        let v = self
            .webauthn(VirtualAuthenticator::Add)
            .await
            .unwrap_or_else(|e| panic!("add a virtual authenticator: {e}"));
        v.as_str().unwrap_or_else(|| panic!("authenticatorId is not a string: {v}")).to_string()
    }

    /// The credentials the virtual authenticator holds (WebAuthn §11.7: credentialId, isResidentCredential,
    /// rpId, privateKey, userHandle, signCount).
    pub async fn virtual_credentials(&self, authenticator: &str) -> Result<Vec<Value>, String> {
        let v = self.webauthn(VirtualAuthenticator::Credentials(authenticator.to_string())).await?;
        v.as_array().cloned().ok_or_else(|| format!("credentials are not a list: {v}"))
    }

    pub async fn remove_virtual_authenticator(&self, authenticator: &str) {
        self.webauthn(VirtualAuthenticator::Remove(authenticator.to_string()))
            .await
            .unwrap_or_else(|e| panic!("remove virtual authenticator {authenticator}: {e}"));
    }

    async fn webauthn(&self, command: VirtualAuthenticator) -> Result<Value, String> {
        self.client.issue_cmd(command).await.map_err(|e| e.to_string())
    }
}

/// Where artifacts go: `$JETON_ARTIFACTS`, else `target/e2e-artifacts` in the repository (CI keeps its
/// build output elsewhere, so this folder holds only these).
fn artifacts_root() -> PathBuf {
    match std::env::var_os("JETON_ARTIFACTS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("e2e-artifacts"),
    }
}

/// WebDriver's virtual authenticator commands (WebAuthn Level 2 §11), which fantoccini does not wrap.
#[derive(Debug)]
enum VirtualAuthenticator {
    Add,
    Credentials(String),
    Remove(String),
}

impl WebDriverCompatibleCommand for VirtualAuthenticator {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        let authenticators = format!("session/{}/webauthn/authenticator", session.unwrap_or_default());
        match self {
            VirtualAuthenticator::Add => base.join(&authenticators),
            VirtualAuthenticator::Credentials(id) => base.join(&format!("{authenticators}/{id}/credentials")),
            VirtualAuthenticator::Remove(id) => base.join(&format!("{authenticators}/{id}")),
        }
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        match self {
            VirtualAuthenticator::Add => (
                http::Method::POST,
                Some(
                    json!({
                        "protocol": "ctap2",
                        "transport": "internal",
                        "hasResidentKey": true,
                        "hasUserVerification": true,
                        "isUserConsenting": true,
                        "isUserVerified": true,
                    })
                    .to_string(),
                ),
            ),
            VirtualAuthenticator::Credentials(_) => (http::Method::GET, None),
            VirtualAuthenticator::Remove(_) => (http::Method::DELETE, None),
        }
    }
}

/// A request that reached the relying party.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub method: Method,
    pub path: String,
    /// The query string's parameters, or a POST's form body's (`response_mode=form_post`).
    pub params: Vec<(String, String)>,
}

impl Arrival {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The relying party's web server (see the module doc). Routes:
/// - `/` a page with `<h1 id="greeting">` (the smoke test reads it);
/// - `/signin?to=URL` a 303 to URL: how the application sends the browser to the authorization endpoint;
/// - `/callback` and `/signed-out` (GET or POST) are recorded and answer 200 "signed in" / "signed out".
pub struct RelyingParty {
    port: u16,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    server: JoinHandle<()>,
}

impl RelyingParty {
    pub async fn start() -> RelyingParty {
        // Bound here, in this process, so port 0 gives a free port with no window for another to take it.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the relying party");
        let port = listener.local_addr().expect("relying party address").port();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let server = tokio::spawn(serve_relying_party(listener, arrivals.clone()));
        RelyingParty { port, arrivals, server }
    }

    /// A URL of the relying party on its own origin, `http://127.0.0.1:PORT`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The redirect URI applications register.
    pub fn callback(&self) -> String {
        self.url("/callback")
    }

    /// The post-logout redirect URI applications register.
    pub fn signed_out(&self) -> String {
        self.url("/signed-out")
    }

    /// The URL that starts a sign-in: the relying party redirects the browser to `authorize`.
    pub fn sign_in(&self, authorize: &str) -> String {
        let to: String = url::form_urlencoded::byte_serialize(authorize.as_bytes()).collect();
        self.url(&format!("/signin?to={to}"))
    }

    /// The requests that reached `path`, oldest first.
    pub fn arrivals_at(&self, path: &str) -> Vec<Arrival> {
        self.arrivals.lock().expect("arrivals").iter().filter(|a| a.path == path).cloned().collect()
    }

    /// The latest request to `/callback`, failing if none came.
    pub fn last_callback(&self) -> Arrival {
        self.arrivals_at("/callback").pop().expect("nothing reached the relying party's callback")
    }
}

impl Drop for RelyingParty {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve_relying_party(listener: TcpListener, arrivals: Arc<Mutex<Vec<Arrival>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let answer = service_fn(move |request| answer_relying_party(request, arrivals.clone()));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), answer).await;
        });
    }
}

async fn answer_relying_party(
    request: Request<Incoming>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().as_bytes().to_vec();
    let body = Limited::new(request.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let pairs = |bytes: &[u8]| -> Vec<(String, String)> {
        url::form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    };
    let page = |status: StatusCode, html: &str| {
        let mut r = Response::new(Full::new(Bytes::from(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Relying party</title></head><body>{html}</body></html>"
        ))));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/html; charset=utf-8"));
        r
    };
    let response = match path.as_str() {
        "/" => page(StatusCode::OK, "<h1 id=\"greeting\">Hello from the relying party</h1>"),
        "/signin" => match pairs(&query).into_iter().find(|(k, _)| k == "to") {
            Some((_, to)) => {
                let mut r = page(StatusCode::SEE_OTHER, "redirecting");
                match hyper::header::HeaderValue::from_str(&to) {
                    Ok(location) => {
                        r.headers_mut().insert(hyper::header::LOCATION, location);
                        r
                    }
                    Err(_) => page(StatusCode::BAD_REQUEST, "bad to"),
                }
            }
            None => page(StatusCode::BAD_REQUEST, "no to"),
        },
        "/callback" | "/signed-out" => {
            let params = if method == Method::POST { pairs(&body) } else { pairs(&query) };
            arrivals.lock().expect("arrivals").push(Arrival { method, path: path.clone(), params });
            if path == "/callback" {
                page(StatusCode::OK, "<p id=\"signed-in\">signed in</p>")
            } else {
                page(StatusCode::OK, "<p id=\"signed-out\">signed out</p>")
            }
        }
        _ => page(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

/// One authorization request of the code flow with PKCE (S256), as the relying party makes it: its
/// `state`, `nonce` and code verifier are fresh, so a callback can be told apart from an earlier one.
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    pub scope: String,
}

impl AuthorizationRequest {
    pub fn new(client_id: &str, redirect_uri: &str) -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            state: uuid::Uuid::new_v4().simple().to_string(),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            // 64 characters of [0-9a-f]: within RFC 7636's 43 to 128 unreserved characters.
            code_verifier: format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()),
            scope: "openid profile email".into(),
        }
    }

    /// The authorization endpoint URL on `node` carrying this request.
    pub fn url(&self, node: &Node) -> String {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(self.code_verifier.as_bytes()));
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", &self.client_id),
                ("redirect_uri", &self.redirect_uri),
                ("scope", &self.scope),
                ("state", &self.state),
                ("nonce", &self.nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .finish();
        node.url(&format!("/oauth/authorize?{query}"))
    }

    /// The code the callback carries, after checking that it answers this request: same `state`, and
    /// the node as `iss` (RFC 9207).
    pub fn code_from(&self, arrival: &Arrival, node: &Node) -> String {
        assert_eq!(arrival.param("state"), Some(self.state.as_str()), "state of {arrival:?}");
        assert_eq!(arrival.param("iss"), Some(node.base.as_str()), "iss of {arrival:?}");
        assert_eq!(arrival.param("error"), None, "{arrival:?}");
        arrival.param("code").filter(|c| !c.is_empty()).unwrap_or_else(|| panic!("no code in {arrival:?}")).to_string()
    }

    /// Redeems `code` at the token endpoint (client_secret_basic, with the code verifier): the status and
    /// the answer.
    pub async fn redeem(&self, node: &Node, secret: &str, code: &str) -> (u16, Value) {
        node.post_form_basic(
            "/oauth/token",
            &self.client_id,
            secret,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect_uri),
                ("code_verifier", &self.code_verifier),
            ],
        )
        .await
    }

    /// [`Self::redeem`] that must succeed; returns the verified ID token's claims (checked against this
    /// request's nonce and client) and the raw ID token.
    pub async fn tokens(&self, node: &Node, secret: &str, code: &str) -> (Value, String) {
        let (s, v) = self.redeem(node, secret, code).await;
        assert_eq!(s, 200, "token endpoint: {v}");
        let access = v["access_token"].as_str().unwrap_or_else(|| panic!("no access_token: {v}"));
        let id_token = v["id_token"].as_str().filter(|t| !t.is_empty()).unwrap_or_else(|| panic!("no id_token: {v}"));
        assert_ne!(access, id_token, "the ID token is its own token, not the access token");
        let access_claims = verify_with_jwks(node, access).await;
        let claims = verify_id_token_with_jwks(node, id_token).await;
        assert_eq!(claims["nonce"], self.nonce.as_str(), "the ID token carries the request's nonce: {claims}");
        assert_eq!(claims["aud"], json!([self.client_id]), "{claims}");
        assert_eq!(claims["sub"], access_claims["sub"], "ID and access token name the same user");
        (claims, id_token.to_string())
    }
}

/// A node whose issuer is `http://localhost:PORT` (see the module doc); `base` and `http` use that name.
/// The node's folder lives as long as the returned guard.
async fn start_node() -> (Node, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let issuer = format!("http://localhost:{port}");
    let mut node = Node::start_in(&tmp.path().join("data"), port, &["--issuer", &issuer]).await;
    node.base = issuer;
    (node, tmp)
}

async fn add_organization(node: &Node, org: &str) {
    let (s, v) =
        node.admin_post("add-organization", json!({"owner": "admin", "name": org, "passwordType": "argon2id"})).await;
    assert_eq!(s, 200, "{v}");
}

/// An application of `org` that signs users in through the browser: the authorization code grant, with
/// the relying party's callback (and its signed-out page, for logout) registered. A first-party one
/// (`skipConsent`) never shows the consent page. Returns (client_id, client_secret).
async fn add_browser_application(
    node: &Node,
    org: &str,
    name: &str,
    rp: &RelyingParty,
    first_party: bool,
) -> (String, String) {
    let client_id = format!("{name}-client");
    let secret = format!("{name}-secret-0123456789");
    let (s, v) = node
        .admin_post(
            "add-application",
            json!({
                "owner": "admin", "name": name, "organization": org, "clientId": client_id, "clientSecret": secret,
                "grantTypes": ["authorization_code", "refresh_token"],
                "redirectUris": [rp.callback(), rp.signed_out()],
                "skipConsent": first_party,
                "expireInHours": 1, "refreshExpireInHours": 24,
            }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    (client_id, secret)
}

/// A user of `org` with a password and, given a base32 secret, TOTP as second factor. Returns its id
/// (the `sub` of its tokens).
async fn add_user(node: &Node, org: &str, name: &str, password: &str, totp_secret: Option<&str>) -> String {
    let mut user = json!({
        "owner": org, "name": name, "password": password, "displayName": format!("User {name}"),
        "email": format!("{name}@{org}.example"), "emailVerified": true,
    });
    if let Some(secret) = totp_secret {
        user["totpSecret"] = json!(secret);
        user["preferredMfaType"] = json!("app");
    }
    let (s, v) = node.admin_post("add-user", user).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.admin_get(&format!("get-user?id={org}/{name}")).await;
    assert_eq!(s, 200, "{v}");
    v["data"]["id"].as_str().filter(|id| !id.is_empty()).unwrap_or_else(|| panic!("user without id: {v}")).to_string()
}

/// Signs in on the login page the browser shows, with no second factor: the page is left once the
/// browser reaches the relying party's callback.
async fn sign_in_with_password(browser: &Browser, rp: &RelyingParty, user: &str, password: &str) {
    browser.element("login-form").await;
    browser.fill("username", user).await;
    browser.fill("password", password).await;
    browser.submit("submit").await;
    browser.wait_for_url(&rp.callback()).await;
}

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) with the ID token as hint: the browser
/// ends at the registered post-logout page with the logout's `state`.
async fn sign_out(browser: &Browser, node: &Node, rp: &RelyingParty, client_id: &str, id_token: &str) {
    let state = uuid::Uuid::new_v4().simple().to_string();
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", &rp.signed_out()),
            ("state", &state),
            ("client_id", client_id),
        ])
        .finish();
    browser.goto(&node.url(&format!("/oauth/logout?{query}"))).await;
    browser.wait_for_url(&rp.signed_out()).await;
    let back = rp.arrivals_at("/signed-out").pop().expect("logout came back to the relying party");
    assert_eq!(back.param("state"), Some(state.as_str()), "{back:?}");
}

/// The infrastructure itself, with no node: Chromium loads a page from the relying-party server, a
/// screenshot is a PNG of the window's size, a form POST reaches the callback recorder, and a virtual
/// authenticator registers and then asserts a discoverable credential through Chromium's WebAuthn, then
/// goes away when removed.
#[tokio::test]
async fn chromium_and_virtual_authenticator_work() {
    let rp = RelyingParty::start().await;
    let browser = Browser::start("chromium_and_virtual_authenticator_work").await;

    // `localhost`, not 127.0.0.1: WebAuthn takes only a domain as relying-party id.
    let origin = format!("http://localhost:{}", rp.port);
    browser.goto(&rp.sign_in(&format!("{origin}/"))).await;
    assert_eq!(browser.text("greeting").await, "Hello from the relying party");
    assert_eq!(browser.current_url().await, format!("{origin}/"), "the relying party's sign-in redirects");
    let shot = browser.screenshot("smoke").await;
    let png = std::fs::read(&shot).expect("read the screenshot back");
    let width = u32::from_be_bytes(png[16..20].try_into().expect("IHDR width"));
    let height = u32::from_be_bytes(png[20..24].try_into().expect("IHDR height"));
    assert!(width > 0 && width <= WINDOW.0 && height > 0 && height <= WINDOW.1, "screenshot {width}x{height}");

    // A form posted the way response_mode=form_post does is recorded with its fields.
    browser
        .client
        .execute(
            "const f = document.createElement('form'); f.method = 'post'; f.action = '/callback';
             for (const [k, v] of [['code', 'c-1'], ['state', 's-1']]) {
               const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.append(i);
             }
             document.body.append(f); f.submit();",
            vec![],
        )
        .await
        .expect("post a form");
    assert_eq!(browser.text("signed-in").await, "signed in");
    let posted = rp.last_callback();
    assert_eq!(
        (posted.method.clone(), posted.param("code"), posted.param("state")),
        (Method::POST, Some("c-1"), Some("s-1"))
    );

    let authenticator = browser.add_virtual_authenticator().await;
    assert!(!authenticator.is_empty());
    assert_eq!(browser.virtual_credentials(&authenticator).await, Ok(vec![]), "a new authenticator holds nothing");

    // Register a discoverable credential, then sign in with it without naming the user (what the login
    // page's passkey button does), through the page's own navigator.credentials.
    let created = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             navigator.credentials.create({publicKey: {
               rp: {id: 'localhost', name: 'Relying party'},
               user: {id: new Uint8Array([1, 2, 3, 4]), name: 'smoke', displayName: 'Smoke'},
               challenge: crypto.getRandomValues(new Uint8Array(32)),
               pubKeyCredParams: [{type: 'public-key', alg: -7}],
               authenticatorSelection: {residentKey: 'required', userVerification: 'required'},
             }}).then(c => done(c.id), e => done('error: ' + e));",
            vec![],
        )
        .await
        .expect("run navigator.credentials.create");
    let created = created.as_str().unwrap_or_default().to_string();
    assert!(!created.is_empty() && !created.starts_with("error"), "create: {created}");
    let credentials = browser.virtual_credentials(&authenticator).await.expect("list credentials");
    assert_eq!(credentials.len(), 1, "{credentials:?}");
    assert_eq!(credentials[0]["rpId"], "localhost");
    assert_eq!(credentials[0]["isResidentCredential"], true);
    assert_eq!(credentials[0]["credentialId"], created.as_str(), "WebDriver and the page name one credential");

    let asserted = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             navigator.credentials.get({publicKey: {
               rpId: 'localhost', challenge: crypto.getRandomValues(new Uint8Array(32)), userVerification: 'required',
             }}).then(c => done(c.id), e => done('error: ' + e));",
            vec![],
        )
        .await
        .expect("run navigator.credentials.get");
    assert_eq!(asserted.as_str(), Some(created.as_str()), "the discoverable credential signs in");
    let credentials = browser.virtual_credentials(&authenticator).await.expect("list credentials");
    assert!(credentials[0]["signCount"].as_u64().is_some_and(|n| n >= 1), "{credentials:?}");

    browser.remove_virtual_authenticator(&authenticator).await;
    assert!(browser.virtual_credentials(&authenticator).await.is_err(), "a removed authenticator is gone");
    browser.close().await;
}

/// The code flow through every page: the relying party's redirect, the login page (a wrong password first,
/// answered with `#error`), the TOTP page (a wrong code first), the consent page of a third-party
/// application, the code at the callback, and the code redeemed once with PKCE for an ID token naming the
/// user, the client and the request's nonce.
#[tokio::test]
async fn code_flow_login_totp_consent_tokens() {
    const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let rp = RelyingParty::start().await;
    let (node, _dir) = start_node().await;
    add_organization(&node, "acme").await;
    let (client_id, secret) = add_browser_application(&node, "acme", "app-partner", &rp, false).await;
    let alice = add_user(&node, "acme", "alice", "Alice-Password-1", Some(TOTP_SECRET)).await;
    let browser = Browser::start("code_flow_login_totp_consent_tokens").await;

    let request = AuthorizationRequest::new(&client_id, &rp.callback());
    browser.goto(&rp.sign_in(&request.url(&node))).await;
    browser.element("login-form").await;
    for field in ["username", "password", "submit"] {
        browser.element(field).await;
    }
    assert!(browser.has("#login-form input[type=hidden][name=csrf]").await, "the login form carries a CSRF token");
    assert!(browser.has("#login-form input[type=hidden][name=request]").await, "and the authorization request");
    browser.screenshot("login").await;

    browser.fill("username", "alice").await;
    browser.fill("password", "Wrong-Password-1").await;
    browser.submit("submit").await;
    let error = browser.text("error").await;
    assert!(!error.trim().is_empty(), "a wrong password is reported");
    assert!(browser.has("#login-form").await, "and the login page is shown again");
    assert!(!browser.has("#totp-form").await, "a wrong password never reaches the second factor");

    browser.fill("username", "alice").await;
    browser.fill("password", "Alice-Password-1").await;
    browser.submit("submit").await;
    browser.element("totp-form").await;
    assert!(browser.has("#totp-form input[type=hidden][name=pending]").await, "the password step, sealed");
    assert!(browser.session_cookie().await.is_none(), "no session before the second factor");
    browser.screenshot("totp").await;

    let right = totp(TOTP_SECRET, 0);
    let wrong = format!("{:06}", (right.parse::<u32>().expect("code") + 500_000) % 1_000_000);
    browser.fill("code", &wrong).await;
    browser.submit("submit").await;
    browser.element("totp-form").await;
    assert!(!browser.text("error").await.trim().is_empty(), "a wrong code is reported on the TOTP page");
    assert!(!browser.has("#consent-form").await);
    browser.fill("code", &right).await;
    browser.submit("submit").await;

    browser.element("consent-form").await;
    for button in ["allow", "deny"] {
        browser.element(button).await;
    }
    let cookie = browser.session_cookie().await.expect("signed in: the session cookie is set");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(cookie.same_site().map(|s| s.to_string()), Some("Lax".to_string()), "{cookie}");
    assert_eq!(cookie.path(), Some("/"), "{cookie}");
    browser.screenshot("consent").await;
    browser.submit("allow").await;

    browser.wait_for_url(&rp.callback()).await;
    assert_eq!(browser.text("signed-in").await, "signed in");
    let code = request.code_from(&rp.last_callback(), &node);
    let (claims, _) = request.tokens(&node, &secret, &code).await;
    assert_eq!(claims["sub"], alice.as_str(), "{claims}");

    // A code is single-use, and a wrong verifier never redeems one.
    let (s, v) = request.redeem(&node, &secret, &code).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "a second redemption: {v}");
    let other = AuthorizationRequest::new(&client_id, &rp.callback());
    browser.goto(&rp.sign_in(&other.url(&node))).await;
    let consent_again = browser.has("#consent-form").await;
    if consent_again {
        browser.submit("allow").await;
    }
    browser.wait_for_url(&rp.callback()).await;
    let code = other.code_from(&rp.last_callback(), &node);
    let thief = AuthorizationRequest { code_verifier: "x".repeat(64), ..other };
    let (s, v) = thief.redeem(&node, &secret, &code).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "a code with the wrong verifier: {v}");
    browser.close().await;
}

/// Single sign-on: once signed in to application A, application B's authorization answers with a code
/// and no page at all; RP-initiated logout ends the session, and A's authorization shows the login page
/// again.
#[tokio::test]
async fn sso_into_second_app_then_sign_out() {
    let rp = RelyingParty::start().await;
    let (node, _dir) = start_node().await;
    add_organization(&node, "acme").await;
    let (a_id, a_secret) = add_browser_application(&node, "acme", "app-a", &rp, true).await;
    let (b_id, b_secret) = add_browser_application(&node, "acme", "app-b", &rp, true).await;
    let bob = add_user(&node, "acme", "bob", "Bob-Password-1", None).await;
    let browser = Browser::start("sso_into_second_app_then_sign_out").await;

    let to_a = AuthorizationRequest::new(&a_id, &rp.callback());
    browser.goto(&rp.sign_in(&to_a.url(&node))).await;
    sign_in_with_password(&browser, &rp, "bob", "Bob-Password-1").await;
    let code = to_a.code_from(&rp.last_callback(), &node);
    let (a_claims, a_id_token) = to_a.tokens(&node, &a_secret, &code).await;
    assert_eq!(a_claims["sub"], bob.as_str());

    // The redirect chain ends at B's callback: no login page, no consent (first party).
    let to_b = AuthorizationRequest::new(&b_id, &rp.callback());
    browser.goto(&rp.sign_in(&to_b.url(&node))).await;
    let landed = browser.current_url().await;
    assert!(landed.starts_with(&rp.callback()), "B's authorization answers at once, at {landed}");
    assert_eq!(rp.arrivals_at("/callback").len(), 2);
    let code = to_b.code_from(&rp.last_callback(), &node);
    let (b_claims, _) = to_b.tokens(&node, &b_secret, &code).await;
    assert_eq!(b_claims["sub"], bob.as_str(), "the same user in B");
    assert_eq!(b_claims["aud"], json!([b_id]));
    browser.screenshot("sso").await;

    sign_out(&browser, &node, &rp, &a_id, &a_id_token).await;
    browser.screenshot("signed-out").await;

    let again = AuthorizationRequest::new(&a_id, &rp.callback());
    browser.goto(&rp.sign_in(&again.url(&node))).await;
    browser.element("login-form").await;
    assert_eq!(rp.arrivals_at("/callback").len(), 2, "no code without signing in again");
    browser.screenshot("login-again").await;
    browser.close().await;
}

/// A passkey in `#passkey-list`: each has its remove button.
const LISTED_PASSKEY: &str = "#passkey-list button:not(#register)";

/// Passkeys: signed in with a password, the user registers a passkey on `/account/passkeys` (the virtual
/// authenticator now holds a discoverable credential for the node), signs out, and signs in again with the
/// login page's passkey button alone, which ends at the callback with a code for the same user.
#[tokio::test]
async fn passkey_register_then_sign_in() {
    let rp = RelyingParty::start().await;
    let (node, _dir) = start_node().await;
    add_organization(&node, "acme").await;
    let (client_id, secret) = add_browser_application(&node, "acme", "app-acme", &rp, true).await;
    let carol = add_user(&node, "acme", "carol", "Carol-Password-1", None).await;
    let browser = Browser::start("passkey_register_then_sign_in").await;
    let authenticator = browser.add_virtual_authenticator().await;

    let first = AuthorizationRequest::new(&client_id, &rp.callback());
    browser.goto(&rp.sign_in(&first.url(&node))).await;
    sign_in_with_password(&browser, &rp, "carol", "Carol-Password-1").await;
    let code = first.code_from(&rp.last_callback(), &node);
    let (_, id_token) = first.tokens(&node, &secret, &code).await;

    browser.goto(&node.url("/account/passkeys")).await;
    browser.element("passkey-list").await;
    assert!(!browser.has(LISTED_PASSKEY).await, "no passkey yet");
    browser.click("register").await;
    let deadline = Instant::now() + PAGE_WAIT;
    let credentials = loop {
        let credentials = browser.virtual_credentials(&authenticator).await.expect("list credentials");
        if !credentials.is_empty() {
            break credentials;
        }
        if Instant::now() > deadline {
            panic!("{}", browser.failure("the authenticator got no credential after #register").await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(credentials.len(), 1, "{credentials:?}");
    assert_eq!(credentials[0]["rpId"], "localhost", "the node's host is the relying-party id");
    assert_eq!(credentials[0]["isResidentCredential"], true, "a passkey is discoverable: sign-in names no user");
    // The page shows the new passkey once the server has stored it, by itself (it re-renders or reloads);
    // one reload is tried before failing, so that a page that does neither fails only on this point.
    let deadline = Instant::now() + PAGE_WAIT;
    while !browser.has(LISTED_PASSKEY).await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !browser.has(LISTED_PASSKEY).await {
        let _ = browser.client.refresh().await;
        if !browser.has(LISTED_PASSKEY).await {
            panic!("{}", browser.failure("the new passkey is not listed in #passkey-list").await);
        }
    }
    browser.screenshot("passkeys").await;
    let sign_count = credentials[0]["signCount"].as_u64().unwrap_or_default();

    sign_out(&browser, &node, &rp, &client_id, &id_token).await;

    let second = AuthorizationRequest::new(&client_id, &rp.callback());
    browser.goto(&rp.sign_in(&second.url(&node))).await;
    browser.element("login-form").await;
    browser.screenshot("login-passkey").await;
    browser.click("passkey").await;
    browser.wait_for_url(&rp.callback()).await;
    let code = second.code_from(&rp.last_callback(), &node);
    let (claims, _) = second.tokens(&node, &secret, &code).await;
    assert_eq!(claims["sub"], carol.as_str(), "the passkey signs carol in: {claims}");
    let used = browser.virtual_credentials(&authenticator).await.expect("list credentials");
    assert!(used[0]["signCount"].as_u64().unwrap_or_default() > sign_count, "the authenticator signed: {used:?}");

    browser.remove_virtual_authenticator(&authenticator).await;
    browser.close().await;
}
