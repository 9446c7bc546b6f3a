//! Token state that must not go stale: a cached introspection answer of a long-lived token (200 hours,
//! longer than any lifetime the cache's indexes ever had) goes inactive as soon as the token is revoked,
//! its user forbidden or deleted, its application deleted or its signing key deleted; a refresh token
//! belongs to its user's id, not to a name someone else can take.

use serde_json::{json, Value};

use crate::harness::*;

const HOURS: f64 = 200.0;

/// Introspection with the admin application's credentials (it may see every organization's tokens). Asked
/// twice: the second answer comes from the cache when the first was active.
async fn introspect(node: &Node, token: &str) -> Value {
    let form = [("token", token)];
    let (s, first) = node.post_form_basic("/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &form).await;
    assert_eq!(s, 200, "{first}");
    let (_, second) = node.post_form_basic("/oauth/introspect", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &form).await;
    assert_eq!(first, second, "the cached answer is the computed one");
    first
}

async fn active(node: &Node, token: &str) -> bool {
    let v = introspect(node, token).await;
    if v == json!({"active": false}) {
        return false;
    }
    assert_eq!(v["active"], true, "{v}");
    true
}

/// Adds a user to `org` with a password.
async fn add_user(node: &Node, org: &str, name: &str, password: &str) {
    let (s, v) = node.admin_post("add-user", json!({"owner": org, "name": name, "password": password})).await;
    assert_eq!(s, 200, "{v}");
}

/// A password grant; returns (access token, refresh token).
async fn sign_in(node: &Node, app: &(String, String), user: &str, password: &str) -> (String, String) {
    let (s, v) = node.password_grant(&app.0, &app.1, user, password).await;
    assert_eq!(s, 200, "{user}: {v}");
    let at = v["access_token"].as_str().expect("access_token").to_string();
    (at, v["refresh_token"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn long_lived_tokens_go_inactive_when_their_state_changes() {
    let node = Node::start().await;
    let (s, v) =
        node.admin_post("add-cert", json!({"owner": "admin", "name": "cert-long", "cryptoAlgorithm": "ES256"})).await;
    assert_eq!(s, 200, "{v}");
    let long = json!({"expireInHours": HOURS, "refreshExpireInHours": 2.0 * HOURS, "cert": "cert-long"});
    let acme = node.app_with_user("acme", "app-acme", long, "alice", "Alice-Password-1").await;
    for u in ["bob", "carol", "dave"] {
        add_user(&node, "acme", u, &format!("{u}-Password-1")).await;
    }
    let (s, v) = node.password_grant(&acme.0, &acme.1, "alice", "Alice-Password-1").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expires_in"], 200 * 3600, "{v}");
    let alice = v["access_token"].as_str().expect("at").to_string();
    let (bob, _) = sign_in(&node, &acme, "bob", "bob-Password-1").await;
    let (carol, _) = sign_in(&node, &acme, "carol", "carol-Password-1").await;
    let (dave, _) = sign_in(&node, &acme, "dave", "dave-Password-1").await;
    for t in [&alice, &bob, &carol, &dave] {
        assert!(active(&node, t).await, "a fresh 200-hour token is active");
    }

    // Revoked.
    let (s, v) = node.post_form_basic("/oauth/revoke", &acme.0, &acme.1, &[("token", &alice)]).await;
    assert_eq!(s, 200, "{v}");
    assert!(!active(&node, &alice).await, "revoked");

    // Forbidden: the user as the admin API shows it, sent back with isForbidden.
    let (_, v) = node.admin_get("get-user?id=acme/bob").await;
    let mut forbidden = v["data"].clone();
    forbidden["isForbidden"] = json!(true);
    let (s, v) = node.admin_post("update-user", forbidden).await;
    assert_eq!(s, 200, "{v}");
    assert!(!active(&node, &bob).await, "the user is forbidden");

    // Deleted.
    let (s, v) = node.admin_post("delete-user", json!({"owner": "acme", "name": "carol"})).await;
    assert_eq!(s, 200, "{v}");
    assert!(!active(&node, &carol).await, "the user is deleted");

    // The signing key rotated: its tokens stay valid while it is kept for them; deleted, they are not.
    let (s, v) = node.admin_post("rotate-cert?id=admin/cert-long", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert!(active(&node, &dave).await, "a rotated-out key still verifies the tokens it signed");
    let (s, v) = node.admin_post("delete-cert", json!({"owner": "admin", "name": "cert-long"})).await;
    assert_eq!(s, 200, "{v}");
    assert!(!active(&node, &dave).await, "its signing key is deleted");

    // The application deleted: its users' tokens and its own client-credentials tokens.
    let globex =
        node.app_with_user("globex", "app-globex", json!({"expireInHours": HOURS}), "erin", "Erin-Password-1").await;
    let (erin, _) = sign_in(&node, &globex, "erin", "Erin-Password-1").await;
    let (s, v) =
        node.post_form_basic("/oauth/token", &globex.0, &globex.1, &[("grant_type", "client_credentials")]).await;
    assert_eq!(s, 200, "{v}");
    let own = v["access_token"].as_str().expect("at").to_string();
    assert!(active(&node, &erin).await && active(&node, &own).await);
    let (s, v) = node.admin_post("delete-application", json!({"owner": "admin", "name": "app-globex"})).await;
    assert_eq!(s, 200, "{v}");
    assert!(!active(&node, &erin).await, "the application is deleted");
    assert!(!active(&node, &own).await, "the application is deleted");
}

/// `acme/alice` deleted and created again is another person: the first alice's refresh token must not
/// mint tokens for her, and the first alice's access token is inactive.
#[tokio::test]
async fn a_refresh_token_belongs_to_the_user_id_not_the_name() {
    let node = Node::start().await;
    let app = node.app_with_user("acme", "app-acme", json!({}), "alice", "Alice-Password-1").await;
    let (at, rt) = sign_in(&node, &app, "alice", "Alice-Password-1").await;
    assert!(!rt.is_empty());
    let (_, first) = node.admin_get("get-user?id=acme/alice").await;
    let first_id = first["data"]["id"].as_str().expect("id").to_string();
    assert!(active(&node, &at).await);

    let (s, v) = node.admin_post("delete-user", json!({"owner": "acme", "name": "alice"})).await;
    assert_eq!(s, 200, "{v}");
    add_user(&node, "acme", "alice", "Another-Alice-1").await;
    let (_, second) = node.admin_get("get-user?id=acme/alice").await;
    assert_ne!(second["data"]["id"], first_id, "the new alice has a new id");

    let (s, v) = node
        .post_form_basic("/oauth/token", &app.0, &app.1, &[("grant_type", "refresh_token"), ("refresh_token", &rt)])
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "the first alice's refresh token: {v}");
    assert!(!active(&node, &at).await, "the first alice's access token");
    assert!(!active(&node, &rt).await, "the first alice's refresh token, introspected");
    let r = node.http.get(node.url("/oauth/userinfo")).bearer_auth(&at).send().await.expect("userinfo");
    assert_eq!(r.status(), 401);

    // The new alice signs in and refreshes as herself.
    let (at2, rt2) = sign_in(&node, &app, "alice", "Another-Alice-1").await;
    let v = introspect(&node, &at2).await;
    assert_eq!(v["sub"], second["data"]["id"], "{v}");
    let (s, v) = node
        .post_form_basic("/oauth/token", &app.0, &app.1, &[("grant_type", "refresh_token"), ("refresh_token", &rt2)])
        .await;
    assert_eq!(s, 200, "{v}");
}
