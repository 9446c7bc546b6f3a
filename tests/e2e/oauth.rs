//! Token issuance, client authentication, introspection, revocation, refresh rotation, userinfo, JWKS.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test]
async fn client_credentials_with_basic_and_post_auth_verifies_against_jwks() {
    let node = Node::start().await;
    // client_secret_basic
    let (s, v) = node
        .post_form_basic(
            "/oauth/token",
            ADMIN_CLIENT_ID,
            ADMIN_CLIENT_SECRET,
            &[("grant_type", "client_credentials"), ("scope", "api:read")],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for k in ["access_token", "id_token", "refresh_token", "token_type", "expires_in", "scope"] {
        assert!(v.get(k).is_some(), "token response lacks {k}: {v}");
    }
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["refresh_token"], "", "client credentials get no refresh token");
    let token = v["access_token"].as_str().unwrap();
    assert_eq!(jwt_header(token)["alg"], "RS256", "the admin application signs RS256, as Casdoor's SDKs need");
    let claims = verify_with_jwks(&node, token).await;
    assert_eq!(claims["client_id"], ADMIN_CLIENT_ID);
    assert_eq!(claims["aud"], json!([ADMIN_CLIENT_ID]));
    assert_eq!(claims["scope"], "api:read");
    assert_eq!(claims["sub"], "admin/app-built-in");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());

    // client_secret_post, on Casdoor's path
    let (s, v) = node
        .post_form(
            "/api/login/oauth/access_token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", ADMIN_CLIENT_ID),
                ("client_secret", ADMIN_CLIENT_SECRET),
            ],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    verify_with_jwks(&node, v["access_token"].as_str().unwrap()).await;
}

#[tokio::test]
async fn each_signing_algorithm_verifies_against_the_published_jwks() {
    let node = Node::start().await;
    for alg in ["EdDSA", "ES256", "RS256"] {
        let app = format!("app-{}", alg.to_lowercase());
        let org = format!("org-{}", alg.to_lowercase());
        let (id, secret) =
            node.app_with_user(&org, &app, json!({"tokenSigningMethod": alg}), "alice", "Alice-Password-1").await;
        let (s, v) = node
            .post_form_basic(
                "/oauth/token",
                &id,
                &secret,
                &[
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", "Alice-Password-1"),
                    ("scope", "openid profile email"),
                ],
            )
            .await;
        assert_eq!(s, 200, "{alg}: {v}");
        let token = v["access_token"].as_str().unwrap();
        assert_eq!(jwt_header(token)["alg"], alg);
        let claims = verify_with_jwks(&node, token).await;
        assert_eq!(claims["preferred_username"], "alice", "{alg}: {claims}");
        assert_eq!(claims["owner"], org);
        assert_eq!(claims["email"], format!("alice@{org}.example"));
        let (s, v) = node.post_form_basic("/oauth/token", &id, &secret, &[("grant_type", "client_credentials")]).await;
        assert_eq!(s, 200, "{v}");
        verify_with_jwks(&node, v["access_token"].as_str().unwrap()).await;
    }
}

#[tokio::test]
async fn password_grant_wrong_password_unknown_user_and_lockout() {
    let node = Node::start().await;
    let (id, secret) = node.app_with_user("acme", "app-acme", json!({}), "bob", "Bob-Password-1").await;
    let pw = |u: &'static str, p: &'static str| vec![("grant_type", "password"), ("username", u), ("password", p)];
    let (s, v) = node.post_form_basic("/oauth/token", &id, &secret, &pw("bob", "Bob-Password-1")).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["refresh_token"].as_str().is_some_and(|r| !r.is_empty()));
    // Login by email works too.
    let (s, v) = node.post_form_basic("/oauth/token", &id, &secret, &pw("bob@acme.example", "Bob-Password-1")).await;
    assert_eq!(s, 200, "{v}");

    let (s_wrong, wrong) = node.post_form_basic("/oauth/token", &id, &secret, &pw("bob", "nope")).await;
    let (s_unknown, unknown) = node.post_form_basic("/oauth/token", &id, &secret, &pw("nobody", "nope")).await;
    assert_eq!((s_wrong, s_unknown), (400, 400));
    assert_eq!(wrong["error"], "invalid_grant");
    assert_eq!(wrong, unknown, "a wrong password and an unknown user must look the same");

    // Four more failures (five in all) lock the account: even the right password is refused now.
    for _ in 0..4 {
        node.post_form_basic("/oauth/token", &id, &secret, &pw("bob", "nope")).await;
    }
    let (s, v) = node.post_form_basic("/oauth/token", &id, &secret, &pw("bob", "Bob-Password-1")).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"], "invalid_grant");
    // An unknown name locks the same way (the lockout must not reveal which accounts exist).
    for _ in 0..4 {
        node.post_form_basic("/oauth/token", &id, &secret, &pw("nobody", "nope")).await;
    }
    let (s_unknown, v_unknown) = node.post_form_basic("/oauth/token", &id, &secret, &pw("nobody", "nope")).await;
    assert_eq!((s_unknown, v_unknown["error"].as_str()), (429, Some("invalid_grant")), "{v_unknown}");

    // A user of another organization cannot sign in through this application.
    let (s, _) = node.post_form_basic("/oauth/token", &id, &secret, &pw("admin", ADMIN_PASSWORD)).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn introspection_active_then_revoked_then_inactive() {
    let node = Node::start().await;
    let token = node.admin_token().await;
    let (s, v) =
        node.post_form_basic("/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &token)]).await;
    assert_eq!(s, 200);
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["client_id"], ADMIN_CLIENT_ID);
    assert_eq!(v["token_type"], "Bearer");
    for k in ["exp", "iat", "nbf", "sub", "aud", "iss", "jti", "username"] {
        assert!(v.get(k).is_some(), "introspection lacks {k}: {v}");
    }
    // Served again from the cache: same answer.
    let (_, again) = node
        .post_form_basic("/api/login/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &token)])
        .await;
    assert_eq!(again, v);

    let (s, v) = node
        .post_form_basic(
            "/oauth/revoke",
            ADMIN_CLIENT_ID,
            ADMIN_CLIENT_SECRET,
            &[("token", &token), ("token_type_hint", "access_token")],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) =
        node.post_form_basic("/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &token)]).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"active": false}));
    // A revoked token no longer opens the admin API either.
    let r = node.http.get(node.url("/api/get-organizations?owner=admin")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Introspection requires client authentication.
    let (s, v) = node.post_form("/oauth/introspect", &[("token", &token)]).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"], "invalid_client");
    // Revoking garbage is fine (RFC 7009 §2.2).
    let (s, _) =
        node.post_form_basic("/oauth/revoke", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", "not-a-token")]).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn refresh_rotation_and_reuse_detection_revokes_the_family() {
    let node = Node::start().await;
    let (id, secret) = node.app_with_user("acme", "app-acme", json!({}), "carol", "Carol-Password-1").await;
    let (s, first) = node
        .post_form_basic(
            "/oauth/token",
            &id,
            &secret,
            &[
                ("grant_type", "password"),
                ("username", "carol"),
                ("password", "Carol-Password-1"),
                ("scope", "openid profile"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{first}");
    let r1 = first["refresh_token"].as_str().unwrap().to_string();

    let (s, second) = node
        .post_form_basic("/oauth/token", &id, &secret, &[("grant_type", "refresh_token"), ("refresh_token", &r1)])
        .await;
    assert_eq!(s, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    let a2 = second["access_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2, "refresh tokens rotate");
    assert_eq!(second["scope"], "openid profile");
    let (_, v) = node.post_form_basic("/oauth/introspect", &id, &secret, &[("token", &a2)]).await;
    assert_eq!(v["active"], true, "{v}");

    // Asking for more scope than was granted is refused.
    let (s, v) = node
        .post_form_basic(
            "/oauth/token",
            &id,
            &secret,
            &[("grant_type", "refresh_token"), ("refresh_token", &r2), ("scope", "openid admin")],
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_scope")));

    // Reusing the rotated token: refused, and the whole family dies — including the newest tokens.
    let (s, v) = node
        .post_form_basic("/oauth/token", &id, &secret, &[("grant_type", "refresh_token"), ("refresh_token", &r1)])
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "invalid_grant");
    let (s, v) = node
        .post_form_basic("/oauth/token", &id, &secret, &[("grant_type", "refresh_token"), ("refresh_token", &r2)])
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    let (_, v) = node.post_form_basic("/oauth/introspect", &id, &secret, &[("token", &a2)]).await;
    assert_eq!(v, json!({"active": false}), "the access token minted with the reused family is revoked");

    // A refresh token is not accepted from another client.
    let (s, third) = node.password_grant(&id, &secret, "carol", "Carol-Password-1").await;
    assert_eq!(s, 200);
    let r3 = third["refresh_token"].as_str().unwrap();
    let (s, v) = node
        .post_form_basic(
            "/oauth/token",
            ADMIN_CLIENT_ID,
            ADMIN_CLIENT_SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", r3)],
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
}

#[tokio::test]
async fn expired_tokens_are_inactive() {
    let node = Node::start().await;
    // 0.0005 h = 1.8 s
    let (id, secret) =
        node.app_with_user("acme", "app-short", json!({"expireInHours": 0.0005}), "dave", "Dave-Password-1").await;
    let (s, v) = node.post_form_basic("/oauth/token", &id, &secret, &[("grant_type", "client_credentials")]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expires_in"], 1);
    let token = v["access_token"].as_str().unwrap().to_string();
    let (_, v) = node.post_form_basic("/oauth/introspect", &id, &secret, &[("token", &token)]).await;
    assert_eq!(v["active"], true, "{v}");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (_, v) = node.post_form_basic("/oauth/introspect", &id, &secret, &[("token", &token)]).await;
    assert_eq!(v, json!({"active": false}), "an expired token is inactive, cached or not");
    let r = node.http.get(node.url("/oauth/userinfo")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn client_authentication_failures_are_invalid_client() {
    let node = Node::start().await;
    for (id, secret) in [(ADMIN_CLIENT_ID, "wrong-secret"), ("no-such-client", "whatever"), (ADMIN_CLIENT_ID, "")] {
        let r = node
            .http
            .post(node.url("/oauth/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{id}/{secret}");
        assert!(r.headers().get("www-authenticate").is_some(), "401 carries WWW-Authenticate");
        assert_eq!(r.headers().get("cache-control").and_then(|h| h.to_str().ok()), Some("no-store"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_client");
    }
    // A malformed Basic header.
    let r = node
        .http
        .post(node.url("/oauth/token"))
        .header("authorization", "Basic %%%")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // No credentials at all.
    let (s, v) = node.post_form("/oauth/token", &[("grant_type", "client_credentials")]).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_clear_errors() {
    let node = Node::start().await;
    let post = |body: Vec<u8>, ct: &'static str| {
        node.http
            .post(node.url("/oauth/token"))
            .basic_auth(ADMIN_CLIENT_ID, Some(ADMIN_CLIENT_SECRET))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let (s, v) = response(post(b"".to_vec(), "application/x-www-form-urlencoded").await.unwrap()).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "missing grant_type: {v}");
    let (s, v) = response(post(b"grant_type=magic".to_vec(), "application/x-www-form-urlencoded").await.unwrap()).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("unsupported_grant_type")));
    let (s, v) = response(
        post(b"grant_type=client_credentials&grant_type=password".to_vec(), "application/x-www-form-urlencoded")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "repeated parameter: {v}");
    let (s, v) = response(post(vec![0xff, 0xfe, 0x00, 0x80], "application/x-www-form-urlencoded").await.unwrap()).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "non-UTF-8 body: {v}");
    // Oversized: refused from Content-Length before the body is read (on its own connection, which the
    // server closes), and from the bytes themselves when no length is announced.
    let big = format!("grant_type=client_credentials&pad={}", "x".repeat(200_000));
    let r = client()
        .post(node.url("/oauth/token"))
        .basic_auth(ADMIN_CLIENT_ID, Some(ADMIN_CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big.clone())
        .send()
        .await;
    // The server may answer before the client finished sending; then the client sees a reset instead.
    let mut refused = 0;
    if let Ok(r) = r {
        let (s, v) = response(r).await;
        assert_eq!(s, 413, "{v}");
        assert_eq!(v["error"], "invalid_request");
        refused += 1;
    }
    let chunks = futures_stream(big.into_bytes());
    let r = client()
        .post(node.url("/oauth/token"))
        .basic_auth(ADMIN_CLIENT_ID, Some(ADMIN_CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
        refused += 1;
    }
    assert!(refused >= 1, "no oversized request got its 413");
    // Introspecting garbage tokens: inactive, never an error.
    for junk in ["x", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", &"A".repeat(30_000)] {
        let (s, v) =
            node.post_form_basic("/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", junk)]).await;
        assert_eq!((s, v.clone()), (200, json!({"active": false})), "{junk:.20}");
    }
    // A token signed with the algorithm "none" or tampered with is inactive.
    let token = node.admin_token().await;
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = parts[1].replace('A', "B");
    let (_, v) = node
        .post_form_basic("/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &[("token", &parts.join("."))])
        .await;
    assert_eq!(v, json!({"active": false}));
    // The server is still fine.
    let (s, _) = node.get("/api/health").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn discovery_userinfo_health_and_metrics() {
    let node = Node::start().await;
    let (s, d) = node.get("/.well-known/openid-configuration").await;
    assert_eq!(s, 200);
    assert_eq!(d["issuer"], node.base);
    assert_eq!(d["token_endpoint"], format!("{}/oauth/token", node.base));
    assert_eq!(d["jwks_uri"], format!("{}/.well-known/jwks", node.base));
    let (s, d2) = node.get("/.well-known/oauth-authorization-server").await;
    assert_eq!((s, d2), (200, d));
    let (s, jwks) = node.get("/.well-known/jwks").await;
    assert_eq!(s, 200);
    let keys = jwks["keys"].as_array().unwrap();
    assert!(keys.len() >= 3, "EdDSA, ES256 and RS256 keys are published: {jwks}");
    assert!(keys.iter().all(|k| k.get("d").is_none() && k.get("p").is_none()), "no private parts in the JWKS");

    let (id, secret) = node.app_with_user("acme", "app-acme", json!({}), "erin", "Erin-Password-1").await;
    let (_, t) = node
        .post_form_basic(
            "/oauth/token",
            &id,
            &secret,
            &[
                ("grant_type", "password"),
                ("username", "erin"),
                ("password", "Erin-Password-1"),
                ("scope", "openid profile email"),
            ],
        )
        .await;
    let at = t["access_token"].as_str().unwrap();
    for path in ["/oauth/userinfo", "/api/userinfo"] {
        let r = node.http.get(node.url(path)).bearer_auth(at).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let u: Value = r.json().await.unwrap();
        assert_eq!(u["preferred_username"], "erin", "{u}");
        assert_eq!(u["email"], "erin@acme.example");
        assert_eq!(u["email_verified"], true);
        assert_eq!(u["aud"], id);
        assert_eq!(u["iss"], node.base);
    }
    // Not signed in: RFC 6750 on our path, Casdoor's envelope on Casdoor's path.
    let r = node.http.get(node.url("/oauth/userinfo")).bearer_auth("garbage").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (s, v) = node.get("/api/userinfo").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("error")));

    let (s, h) = node.get("/api/health").await;
    assert_eq!((s, h["status"].as_str(), h["leader"].as_u64()), (200, Some("ok"), Some(1)));
    let metrics = node.http.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for m in [
        "jeton_http_requests_total",
        "jeton_http_request_duration_seconds",
        "jeton_raft_term",
        "jeton_raft_applied_index",
        "jeton_raft_leader",
    ] {
        assert!(metrics.contains(m), "/metrics lacks {m}");
    }
}

/// A body sent in chunks, without Content-Length.
fn futures_stream(bytes: Vec<u8>) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    futures_util::stream::iter(chunks)
}

#[tokio::test]
async fn casdoor_token_formats_carry_their_claims_and_no_secrets() {
    let node = Node::start().await;
    let (s, v) = node
        .admin_post("add-organization", json!({"owner": "admin", "name": "globex", "passwordType": "argon2id"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node
        .admin_post("add-user", json!({"owner": "globex", "name": "yuki", "password": "Yuki-Password-1", "displayName": "Sato Yuki", "email": "yuki@globex.example", "properties": {"department": "design"}, "totpSecret": "JBSWY3DPEHPK3PXP"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node
        .admin_post(
            "add-role",
            json!({"owner": "globex", "name": "role-designers", "users": ["globex/yuki"], "isEnabled": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let formats = [
        ("JWT", json!({})),
        ("JWT-Empty", json!({})),
        ("JWT-Standard", json!({})),
        (
            "JWT-Custom",
            json!({"tokenFields": ["DisplayName", "Properties.department", "Roles"], "tokenAttributes": [{"name": "tenant", "category": "Static Value", "value": "globex:$user.owner", "type": "String"}]}),
        ),
    ];
    for (i, (format, extra)) in formats.into_iter().enumerate() {
        let mut app = json!({"owner": "admin", "name": format!("app-{i}"), "organization": "globex", "clientId": format!("client-{i}"), "clientSecret": "format-secret-0123456789", "grantTypes": ["password", "refresh_token"], "tokenFormat": format});
        for (k, v) in extra.as_object().unwrap() {
            app[k] = v.clone();
        }
        let (s, v) = node.admin_post("add-application", app).await;
        assert_eq!(s, 200, "{format}: {v}");
        // Casdoor's token path, and Casdoor's refresh path.
        let (s, t) = node
            .post_form(
                "/api/login/oauth/access_token",
                &[
                    ("grant_type", "password"),
                    ("client_id", &format!("client-{i}")),
                    ("client_secret", "format-secret-0123456789"),
                    ("username", "yuki"),
                    ("password", "Yuki-Password-1"),
                    ("scope", "openid profile"),
                ],
            )
            .await;
        assert_eq!(s, 200, "{format}: {t}");
        let claims = verify_with_jwks(&node, t["access_token"].as_str().unwrap()).await;
        let text = claims.to_string();
        assert!(!text.contains("JBSWY3DPEHPK3PXP") && !text.contains("$argon2id"), "{format} leaks a secret: {text}");
        assert_eq!(claims["tokenType"], "access-token", "{format}");
        match format {
            "JWT" => {
                assert_eq!(claims["name"], "yuki");
                assert_eq!(claims["displayName"], "Sato Yuki");
                assert_eq!(claims["passwordSalt"], "");
                assert_eq!(claims["roles"][0]["name"], "role-designers");
            }
            "JWT-Empty" => {
                assert_eq!(claims["name"], "yuki");
                assert!(claims.get("roles").is_none());
            }
            "JWT-Standard" => {
                assert_eq!(claims["preferred_username"], "yuki");
                assert_eq!(claims["name"], "Sato Yuki");
            }
            _ => {
                assert_eq!(claims["displayName"], "Sato Yuki");
                assert_eq!(claims["department"], "design");
                assert_eq!(claims["tenant"], "globex:globex");
                assert_eq!(claims["roles"][0]["name"], "role-designers");
                assert!(claims.get("email").is_none(), "only the configured fields");
            }
        }
        let (s, r) = node
            .post_form(
                "/api/login/oauth/refresh_token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", t["refresh_token"].as_str().unwrap()),
                    ("client_id", &format!("client-{i}")),
                    ("client_secret", "format-secret-0123456789"),
                ],
            )
            .await;
        assert_eq!(s, 200, "{format} refresh: {r}");
    }
}

#[tokio::test]
async fn new_applications_sign_rs256_unless_told_otherwise() {
    let node = Node::start().await;
    let (id, secret) = node.app_with_user("acme", "app-default", json!({}), "rita", "Rita-Password-1").await;
    let (s, v) = node.password_grant(&id, &secret, "rita", "Rita-Password-1").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(jwt_header(v["access_token"].as_str().unwrap())["alg"], "RS256");
    let (_, app) = node.admin_get("get-application?id=admin/app-default").await;
    assert_eq!(app["data"]["tokenSigningMethod"], "RS256", "{app}");
    // EdDSA is one setting away, and an update that sends the view back keeps the key.
    let mut changed = app["data"].clone();
    changed["tokenSigningMethod"] = json!("EdDSA");
    let (s, v) = node.admin_post("update-application", changed).await;
    assert_eq!(s, 200, "{v}");
    let (_, app) = node.admin_get("get-application?id=admin/app-default").await;
    let (s, v) = node.admin_post("update-application", app["data"].clone()).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.password_grant(&id, &secret, "rita", "Rita-Password-1").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(jwt_header(v["access_token"].as_str().unwrap())["alg"], "EdDSA");
}

/// RFC 6749 §2.3.1: client secrets and passwords never in a query string, on every OAuth endpoint.
#[tokio::test]
async fn secrets_in_the_query_string_are_refused() {
    let node = Node::start().await;
    let (id, secret) = node.app_with_user("acme", "app-acme", json!({}), "quinn", "Quinn-Password-1").await;
    let token = node.admin_token().await;
    let paths = [
        "/oauth/token",
        "/api/login/oauth/access_token",
        "/api/login/oauth/refresh_token",
        "/oauth/introspect",
        "/api/login/oauth/introspect",
        "/oauth/revoke",
    ];
    for path in paths {
        for query in [format!("client_id={id}&client_secret={secret}"), "password=Quinn-Password-1".to_string()] {
            let r = node
                .http
                .post(node.url(&format!("{path}?{query}")))
                .form(&[("grant_type", "password"), ("username", "quinn"), ("token", &token)])
                .send()
                .await
                .expect("request");
            let (s, v) = response(r).await;
            assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "{path}?{query}: {v}");
            assert!(v["error_description"].as_str().unwrap_or_default().contains("query"), "{v}");
        }
    }
    // In the body they work.
    let (s, v) = node
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("username", "quinn"),
                ("password", "Quinn-Password-1"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

/// Casdoor's Node SDK refreshes with HTTP Basic and the same credentials in a JSON body: accepted on
/// Casdoor's paths when they are the same, refused when they differ; `/oauth/token` stays strict.
#[tokio::test]
async fn repeated_client_credentials_on_casdoor_paths() {
    let node = Node::start().await;
    let (id, secret) = node.app_with_user("acme", "app-acme", json!({}), "sam", "Sam-Password-1").await;
    let (s, t) = node.password_grant(&id, &secret, "sam", "Sam-Password-1").await;
    assert_eq!(s, 200, "{t}");
    let refresh = |path: &'static str, rt: String, body_secret: String| {
        let body =
            json!({"client_id": id, "client_secret": body_secret, "grant_type": "refresh_token", "refresh_token": rt});
        node.http.post(node.url(path)).basic_auth(&id, Some(&secret)).json(&body).send()
    };
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    // Differing secrets: refused, and the refresh token is not used up.
    for path in ["/api/login/oauth/refresh_token", "/api/login/oauth/access_token"] {
        let (s, v) = response(refresh(path, rt.clone(), format!("{secret}-other")).await.unwrap()).await;
        assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "{path}: {v}");
    }
    // Our own path: one method per request, even when they are the same.
    let (s, v) = response(refresh("/oauth/token", rt.clone(), secret.clone()).await.unwrap()).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "{v}");
    // Casdoor's path, the same secret twice: the Node SDK's refreshToken works.
    let (s, v) = response(refresh("/api/login/oauth/refresh_token", rt, secret.clone()).await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    let at = v["access_token"].as_str().unwrap().to_string();
    // Twice again, now that the Basic header is remembered (it is not decoded any more).
    let (s, v) = response(
        refresh("/api/login/oauth/access_token", v["refresh_token"].as_str().unwrap().to_string(), secret.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // Introspection on Casdoor's path takes the repeat as well; ours does not.
    let form = [("token", at.as_str()), ("client_id", id.as_str()), ("client_secret", secret.as_str())];
    let r = node.http.post(node.url("/api/login/oauth/introspect")).basic_auth(&id, Some(&secret)).form(&form).send();
    let (s, v) = response(r.await.unwrap()).await;
    assert_eq!((s, v["active"].as_bool()), (200, Some(true)), "{v}");
    let r = node.http.post(node.url("/oauth/introspect")).basic_auth(&id, Some(&secret)).form(&form).send();
    let (s, v) = response(r.await.unwrap()).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "{v}");
}
