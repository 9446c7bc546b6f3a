//! The admin API: CRUD on Casdoor's paths, key rotation, and refusal without admin credentials.

use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test]
async fn admin_crud_of_organizations_users_and_applications() {
    let node = Node::start().await;
    let (s, v) = node
        .admin_post(
            "add-organization",
            json!({"owner": "admin", "name": "acme", "displayName": "Acme", "passwordType": "bcrypt"}),
        )
        .await;
    assert_eq!((s, &v["status"], &v["data"]), (200, &json!("ok"), &json!("Affected")), "{v}");
    let (s, v) = node.admin_post("add-organization", json!({"owner": "admin", "name": "acme"})).await;
    assert_eq!((s, v["status"].as_str()), (409, Some("error")), "creating twice conflicts: {v}");
    let (_, v) = node.admin_get("get-organizations?owner=admin").await;
    let names: Vec<&str> = v["data"].as_array().unwrap().iter().filter_map(|o| o["name"].as_str()).collect();
    assert!(names.contains(&"acme") && names.contains(&"built-in"), "{names:?}");
    // Casdoor's paging: one page and the total count.
    let (_, v) = node.admin_get("get-organizations?owner=admin&p=2&pageSize=1").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["data2"], 2);
    let (s, _) = node.admin_get("get-organizations?owner=admin&p=0&pageSize=1").await;
    assert_eq!(s, 400);

    // Users: create with a plaintext password (hashed with the org's scheme), read, update, delete.
    let (s, v) = node.admin_post("add-user", json!({"owner": "acme", "name": "frank", "password": "Frank-Password-1", "displayName": "Frank", "email": "frank@acme.example", "properties": {"department": "ops"}})).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = node.admin_get("get-user?id=acme/frank").await;
    let u = &v["data"];
    assert_eq!(u["displayName"], "Frank");
    assert_eq!(u["passwordType"], "bcrypt");
    assert_eq!(u["password"], "***", "the hash is never shown");
    assert_eq!(u["passwordSalt"], "");
    assert_eq!(u["properties"]["department"], "ops");
    let user_id = u["id"].as_str().unwrap().to_string();
    assert_eq!(user_id.len(), 36, "users get a UUID");
    let mut changed = u.clone();
    changed["displayName"] = json!("Frank Renamed");
    let (s, v) = node.admin_post("update-user?id=acme/frank", changed).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = node.admin_get("get-users?owner=acme").await;
    let users = v["data"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["displayName"], "Frank Renamed");
    assert_eq!(users[0]["id"], user_id.as_str(), "the id survives an update");

    // The password still works after the update (a masked password keeps the stored hash).
    let (s, v) = node.admin_post("add-application", json!({"owner": "admin", "name": "app-acme", "organization": "acme", "clientSecret": "app-acme-secret-0123456789", "clientId": "acme-client", "grantTypes": ["password"]})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.password_grant("acme-client", "app-acme-secret-0123456789", "frank", "Frank-Password-1").await;
    assert_eq!(s, 200, "{v}");

    // Applications: the secret is never readable, so the caller chooses it; a client id is generated.
    let (_, v) = node.admin_get("get-application?id=admin/app-acme").await;
    assert_eq!(v["data"]["clientId"], "acme-client");
    assert_eq!(v["data"]["clientSecret"], "***");
    assert!(v["data"].get("clientSecretDigest").is_none());
    let (s, v) = node
        .admin_post("add-application", json!({"owner": "admin", "name": "app-generated", "organization": "acme"}))
        .await;
    assert_eq!((s, v["status"].as_str()), (400, Some("error")), "no clientSecret: {v}");
    assert!(v["msg"].as_str().unwrap().contains("clientSecret is required"), "{v}");
    let csecret = "generated-app-secret-0123456789";
    let (s, v) = node
        .admin_post(
            "add-application",
            json!({"owner": "admin", "name": "app-generated", "organization": "acme", "clientSecret": csecret}),
        )
        .await;
    assert_eq!((s, &v["data"]), (200, &json!("Affected")), "{v}");
    let (_, v) = node.admin_get("get-application?id=admin/app-generated").await;
    let cid = v["data"]["clientId"].as_str().unwrap().to_string();
    assert_eq!(cid.len(), 20, "a generated client id: {v}");
    let (s, v) = node.post_form_basic("/oauth/token", &cid, csecret, &[("grant_type", "client_credentials")]).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = node
        .admin_post(
            "add-application",
            json!({"owner": "admin", "name": "app-dup", "organization": "acme", "clientId": "acme-client", "clientSecret": csecret}),
        )
        .await;
    assert_eq!(s, 409, "a client id is unique");
    let (s, _) = node
        .admin_post(
            "add-application",
            json!({"owner": "admin", "name": "app-orphan", "organization": "no-such-org", "clientSecret": csecret}),
        )
        .await;
    assert_eq!(s, 400, "an application needs an existing organization");

    // Deleting a user makes its tokens inactive.
    let (_, t) = node.password_grant("acme-client", "app-acme-secret-0123456789", "frank", "Frank-Password-1").await;
    let at = t["access_token"].as_str().unwrap().to_string();
    let (_, v) =
        node.post_form_basic("/oauth/introspect", "acme-client", "app-acme-secret-0123456789", &[("token", &at)]).await;
    assert_eq!(v["active"], true);
    let (s, v) = node.admin_post("delete-user", json!({"owner": "acme", "name": "frank"})).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = node.admin_get("get-user?id=acme/frank").await;
    assert_eq!(v["data"], Value::Null);
    let (_, v) =
        node.post_form_basic("/oauth/introspect", "acme-client", "app-acme-secret-0123456789", &[("token", &at)]).await;
    assert_eq!(v, json!({"active": false}), "a deleted user's token is inactive (cached answer dropped)");

    // A changed secret takes effect at once, also for a client whose Basic header was accepted a moment ago
    // (accepted headers are remembered).
    for _ in 0..2 {
        let (s, v) = node
            .post_form_basic("/oauth/introspect", "acme-client", "app-acme-secret-0123456789", &[("token", &at)])
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, v) = node.admin_get("get-application?id=admin/app-acme").await;
    let mut app = v["data"].clone();
    app["clientSecret"] = json!("app-acme-secret-rotated-0123");
    let (s, v) = node.admin_post("update-application?id=admin/app-acme", app).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) =
        node.post_form_basic("/oauth/introspect", "acme-client", "app-acme-secret-0123456789", &[("token", &at)]).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")), "the old secret is refused: {v}");
    let (s, v) = node
        .post_form_basic("/oauth/introspect", "acme-client", "app-acme-secret-rotated-0123", &[("token", &at)])
        .await;
    assert_eq!(s, 200, "the new secret works: {v}");

    // An organization with applications cannot be deleted; without them it can.
    let (s, _) = node.admin_post("delete-organization", json!({"owner": "admin", "name": "acme"})).await;
    assert_eq!(s, 400);
    for app in ["app-acme", "app-generated"] {
        let (s, v) = node.admin_post("delete-application", json!({"owner": "admin", "name": app})).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = node.admin_post("delete-organization", json!({"owner": "admin", "name": "acme"})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.admin_post("delete-organization", json!({"owner": "admin", "name": "acme"})).await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test]
async fn disabling_a_user_deactivates_its_tokens_and_logins() {
    let node = Node::start().await;
    let (id, secret) = node.app_with_user("acme", "app-acme", json!({}), "judy", "Judy-Password-1").await;
    let (_, t) = node.password_grant(&id, &secret, "judy", "Judy-Password-1").await;
    let at = t["access_token"].as_str().unwrap().to_string();
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let (_, v) = node.admin_get("get-user?id=acme/judy").await;
    let mut u = v["data"].clone();
    u["isForbidden"] = json!(true);
    let (s, v) = node.admin_post("update-user?id=acme/judy", u).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = node.post_form_basic("/oauth/introspect", &id, &secret, &[("token", &at)]).await;
    assert_eq!(v, json!({"active": false}));
    let (s, v) = node.password_grant(&id, &secret, "judy", "Judy-Password-1").await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    let (s, v) = node
        .post_form_basic("/oauth/token", &id, &secret, &[("grant_type", "refresh_token"), ("refresh_token", &rt)])
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn admin_api_refuses_without_admin_credentials_and_changes_nothing() {
    let node = Node::start().await;
    let (id, secret) = node.app_with_user("acme", "app-acme", json!({}), "mallory", "Mallory-Password-1").await;
    let attempt = json!({"owner": "admin", "name": "evil-org"});
    // No credentials.
    let r = node.http.post(node.url("/api/add-organization")).json(&attempt).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Garbage bearer.
    let r =
        node.http.post(node.url("/api/add-organization")).bearer_auth("garbage").json(&attempt).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Wrong admin secret.
    let r = node
        .http
        .post(node.url("/api/add-organization"))
        .basic_auth(ADMIN_CLIENT_ID, Some("wrong"))
        .json(&attempt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A valid non-admin client and a valid non-admin user token: 403.
    let r = node
        .http
        .post(node.url("/api/add-organization"))
        .basic_auth(&id, Some(&secret))
        .json(&attempt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, t) = node.password_grant(&id, &secret, "mallory", "Mallory-Password-1").await;
    let user_token = t["access_token"].as_str().unwrap();
    let r =
        node.http.post(node.url("/api/add-organization")).bearer_auth(user_token).json(&attempt).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = node.http.get(node.url("/api/get-users?owner=acme")).bearer_auth(user_token).send().await.unwrap();
    assert_eq!(r.status(), 403, "reads are refused too");
    // Nothing changed.
    let (_, v) = node.admin_get("get-organization?id=admin/evil-org").await;
    assert_eq!(v["data"], Value::Null);

    // Admin tokens: the admin app's client-credentials token and an admin user's password-grant token.
    let admin_cc = node.admin_token().await;
    let r = node
        .http
        .post(node.url("/api/add-organization"))
        .bearer_auth(&admin_cc)
        .json(&json!({"owner": "admin", "name": "org-by-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, t) = node.password_grant(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, "admin", ADMIN_PASSWORD).await;
    let admin_user = t["access_token"].as_str().expect("admin password grant");
    let r = node
        .http
        .get(node.url("/api/get-organization?id=admin/org-by-token"))
        .bearer_auth(admin_user)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Malformed admin input.
    let r = node
        .http
        .post(node.url("/api/add-user"))
        .basic_auth(ADMIN_CLIENT_ID, Some(ADMIN_CLIENT_SECRET))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, _) = node.admin_post("add-user", json!({"owner": "acme", "name": "bad/name"})).await;
    assert_eq!(s, 400);
    let (s, _) = node.admin_post("add-user", json!({"owner": "nowhere", "name": "x"})).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_verifying() {
    let node = Node::start().await;
    let (id, secret) = node
        .app_with_user("acme", "app-acme", json!({"tokenSigningMethod": "ES256"}), "grace", "Grace-Password-1")
        .await;
    let (_, t) = node.post_form_basic("/oauth/token", &id, &secret, &[("grant_type", "client_credentials")]).await;
    let old_token = t["access_token"].as_str().unwrap().to_string();
    let old_kid = jwt_header(&old_token)["kid"].as_str().unwrap().to_string();
    let (s, v) = node.admin_post(&format!("rotate-cert?id=admin/{old_kid}"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    let new_kid = v["data2"]["name"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid);
    let (_, t) = node.post_form_basic("/oauth/token", &id, &secret, &[("grant_type", "client_credentials")]).await;
    let new_token = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(jwt_header(&new_token)["kid"], new_kid.as_str(), "the new key signs");
    verify_with_jwks(&node, &new_token).await;
    verify_with_jwks(&node, &old_token).await;
    let (_, v) = node.post_form_basic("/oauth/introspect", &id, &secret, &[("token", &old_token)]).await;
    assert_eq!(v["active"], true, "tokens of the retired key stay valid until they expire");
    let (_, certs) = node.admin_get("get-certs?owner=admin").await;
    let old = certs["data"].as_array().unwrap().iter().find(|c| c["name"] == old_kid.as_str()).unwrap().clone();
    assert!(old["retireAt"].as_i64().unwrap() > 0);
    assert_eq!(old["privateKey"], "", "private keys are never shown");
    let (s, _) = node.admin_post(&format!("rotate-cert?id=admin/{old_kid}"), json!({})).await;
    assert_eq!(s, 400, "a retired key cannot be rotated again");
}

/// Reading an object that does not exist answers 200 with `data: null` on every get-* (Casdoor's answer,
/// which its SDKs expect), while updating or deleting one answers 404.
#[tokio::test]
async fn reading_a_missing_object_answers_data_null() {
    let node = Node::start().await;
    for path in [
        "get-organization?id=admin/no-such-org",
        "get-user?id=built-in/no-such-user",
        "get-application?id=admin/no-such-app",
        "get-cert?id=admin/no-such-cert",
        "get-role?id=built-in/no-such-role",
        "get-group?id=built-in/no-such-group",
    ] {
        let (s, v) = node.admin_get(path).await;
        assert_eq!(s, 200, "{path}: {v}");
        assert_eq!((&v["status"], &v["data"]), (&json!("ok"), &Value::Null), "{path}: {v}");
    }
    let (s, v) = node.admin_post("update-user", json!({"owner": "built-in", "name": "no-such-user"})).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = node.admin_post("delete-application", json!({"owner": "admin", "name": "no-such-app"})).await;
    assert_eq!(s, 404, "{v}");
}

/// Application views show what was stored: the signing method is the algorithm of the key the application
/// signs with, and the lockout limits are the effective ones (Casdoor's 5 and 15 when stored as 0).
#[tokio::test]
async fn application_views_show_signing_method_and_lockout_limits() {
    let node = Node::start().await;
    let (s, v) = node.admin_post("add-organization", json!({"owner": "admin", "name": "acme"})).await;
    assert_eq!(s, 200, "{v}");
    for (name, extra) in [
        ("app-es", json!({"tokenSigningMethod": "ES256"})),
        ("app-rs", json!({"tokenSigningMethod": "RS256", "failedSigninLimit": 3, "failedSigninFrozenTime": 2})),
    ] {
        let secret = format!("{name}-secret-0123456789");
        let mut body = json!({"owner": "admin", "name": name, "organization": "acme", "clientSecret": secret});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, v) = node.admin_post("add-application", body).await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, v) = node.admin_get("get-application?id=admin/app-es").await;
    assert_eq!(v["data"]["tokenSigningMethod"], "ES256", "{v}");
    assert_eq!((&v["data"]["failedSigninLimit"], &v["data"]["failedSigninFrozenTime"]), (&json!(5), &json!(15)), "{v}");
    let (_, v) = node.admin_get("get-application?id=admin/app-rs").await;
    assert_eq!(v["data"]["tokenSigningMethod"], "RS256", "{v}");
    assert_eq!((&v["data"]["failedSigninLimit"], &v["data"]["failedSigninFrozenTime"]), (&json!(3), &json!(2)), "{v}");
    // The list shows the same, and the admin application signs with the built-in RS256 key.
    let (_, v) = node.admin_get("get-applications?owner=admin").await;
    let apps = v["data"].as_array().expect("list");
    let es = apps.iter().find(|a| a["name"] == "app-es").expect("app-es listed");
    assert_eq!(es["tokenSigningMethod"], "ES256", "{v}");
    let builtin = apps.iter().find(|a| a["name"] == "app-built-in").expect("app-built-in listed");
    assert_eq!(builtin["tokenSigningMethod"], "RS256", "{v}");
}

/// Organizations: the master password and the organization salt are masked like user passwords, and
/// sending the mask back keeps what is stored.
#[tokio::test]
async fn organization_secrets_are_masked_and_kept() {
    let node = Node::start().await;
    let org = json!({"owner": "admin", "name": "acme", "passwordType": "salt", "passwordSalt": "org-salt-1", "masterPassword": "Acme-Master-1", "displayName": "Acme"});
    let (s, v) = node.admin_post("add-organization", org.clone()).await;
    assert_eq!(s, 200, "{v}");
    for api in ["get-organization?id=admin/acme", "get-organizations?owner=admin"] {
        let (_, v) = node.admin_get(api).await;
        let text = v.to_string();
        assert!(!text.contains("org-salt-1") && !text.contains("Acme-Master-1"), "{api} shows a secret: {text}");
    }
    let (_, v) = node.admin_get("get-organization?id=admin/acme").await;
    let mut shown = v["data"].clone();
    assert_eq!((shown["masterPassword"].as_str(), shown["passwordSalt"].as_str()), (Some("***"), Some("***")));
    shown["displayName"] = json!("Acme Renamed");
    let (s, v) = node.admin_post("update-organization?id=admin/acme", shown.clone()).await;
    assert_eq!(s, 200, "{v}");
    // The master password is stored hashed with the organization's scheme and salt (as Casdoor's
    // update-organization does), never as sent: a dry-run import of the plaintext would change the record.
    let mut plain = org.clone();
    plain["displayName"] = json!("Acme Renamed");
    plain["createdTime"] = shown["createdTime"].clone();
    let item = json!({"command": {"PutOrganization": {"org": plain, "mode": "Upsert"}}});
    let (s, v) = node.admin_post("jeton/apply", json!({"items": [item], "dryRun": true})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["written"]["put_organization"], 1, "the plaintext master password was stored: {v}");
    // ... and it still opens the organization's accounts after the masked round trip (salt and hash kept).
    let app = json!({"owner": "admin", "name": "app-acme", "organization": "acme", "clientId": "acme-client",
        "clientSecret": "acme-client-secret-0123", "grantTypes": ["password"]});
    let (s, v) = node.admin_post("add-application", app).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) =
        node.admin_post("add-user", json!({"owner": "acme", "name": "ann", "password": "Ann-Password-1"})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.password_grant("acme-client", "acme-client-secret-0123", "ann", "Acme-Master-1").await;
    assert_eq!(s, 200, "the master password: {v}");
    // A new salt with the master password kept would orphan its hash: refused, with the reason.
    shown["passwordSalt"] = json!("org-salt-2");
    let (s, v) = node.admin_post("update-organization?id=admin/acme", shown).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["msg"].as_str().unwrap_or_default().contains("masterPassword"), "{v}");
}

/// Casdoor's Python SDK sends the admin credentials as `clientId` / `clientSecret` query parameters: taken
/// on Casdoor's admin paths, and the secret never reaches the log.
#[tokio::test]
async fn casdoor_query_credentials_open_the_admin_api() {
    let node = Node::start().await;
    let q = format!("clientId={ADMIN_CLIENT_ID}&clientSecret={ADMIN_CLIENT_SECRET}");
    let r = node.http.get(node.url(&format!("/api/get-organizations?owner=admin&{q}"))).send().await.unwrap();
    let (s, v) = response(r).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    let r = node
        .http
        .post(node.url(&format!("/api/add-organization?id=admin/qorg&{q}")))
        .body(json!({"owner": "admin", "name": "qorg"}).to_string())
        .send()
        .await
        .unwrap();
    let (s, v) = response(r).await;
    assert_eq!((s, v["data"].as_str()), (200, Some("Affected")), "a JSON body without a content type: {v}");
    let wrong = format!("clientId={ADMIN_CLIENT_ID}&clientSecret=wrong-secret");
    let r = node.http.get(node.url(&format!("/api/get-organizations?owner=admin&{wrong}"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A non-admin client's query credentials: 403.
    let (id, secret) = node.app_with_user("acme", "app-acme", json!({}), "una", "Una-Password-1").await;
    let r = node
        .http
        .get(node.url(&format!("/api/get-organizations?owner=admin&clientId={id}&clientSecret={secret}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Jeton's own cluster API does not take them.
    let r = node.http.get(node.url(&format!("/api/get-cluster-status?{q}"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(!node.output().contains(ADMIN_CLIENT_SECRET), "the secret reached the log");
}
