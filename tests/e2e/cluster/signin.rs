//! Browser sign-in on a three-node cluster, as behind a load balancer that sends each request anywhere:
//! a code issued by one node is redeemed on another and refused, as a replay, on the third; a session
//! started on one node signs the user in on every node, and signing out on one ends it on all.

use serde_json::json;

use super::Cluster;
use crate::oidc_rp::{web_app, Authorization, Browser, ORG, PASSWORD, REDIRECT_URI, USER};

#[tokio::test(flavor = "multi_thread")]
async fn codes_and_sessions_work_across_nodes_and_sign_out_ends_them_everywhere() {
    let mut c = Cluster::new(3).await;
    for id in 1..=3u8 {
        c.start(id, if id == 1 { None } else { Some(1) }, &[]).await;
    }
    let (client_id, secret) = c.node(1).app_with_user(ORG, "app-web", web_app("app-web"), USER, PASSWORD).await;
    let second = web_app("app-second");
    let mut second = second;
    second["clientSecret"] = json!("app-second-secret-0123456789");
    let (s, v) = c.node(2).admin_post("add-application", second).await;
    assert_eq!(s, 200, "{v}");
    // Every node has the applications and the user before the browser arrives.
    for id in 1..=3u8 {
        let mut ready = false;
        for _ in 0..100 {
            let (_, user) = c.node(id).admin_get(&format!("get-user?id={ORG}/{USER}")).await;
            let (_, app) = c.node(id).admin_get("get-application?id=admin/app-second").await;
            ready = user["data"]["id"].is_string() && app["data"]["name"] == json!("app-second");
            if ready {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(ready, "node {id} has not applied the user and the applications");
    }
    let mut browser = Browser::new();

    // Signed in on node 1; the code goes to node 2, then again to node 3.
    let auth = Authorization::new(&client_id);
    let callback = browser.sign_in(c.node(1), &auth).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", callback["code"].as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", auth.verifier.as_str()),
    ];
    let (s, tokens) = c.node(2).post_form_basic("/oauth/token", &client_id, &secret, &form).await;
    assert_eq!(s, 200, "a code of node 1 redeemed on node 2: {tokens}");
    let access = tokens["access_token"].as_str().expect("access_token").to_string();
    let (s, v) = c.node(3).post_form_basic("/oauth/token", &client_id, &secret, &form).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "the same code on node 3: {v}");
    // The replay revoked the first redemption's access token, on every node.
    for id in 1..=3u8 {
        let mut active = true;
        for _ in 0..50 {
            let (_, v) =
                c.node(id).post_form_basic("/oauth/introspect", &client_id, &secret, &[("token", &access)]).await;
            active = v["active"] == json!(true);
            if !active {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(!active, "node {id} still calls the replayed code's access token active");
    }

    // The session of node 1 signs the browser in to another application on node 3, without a prompt.
    let other = Authorization::new("app-second-client").with("prompt", Some("none"));
    let callback = browser.authorize(c.node(3), &other).await;
    assert!(callback.contains_key("code"), "single sign-on through node 3: {callback:?}");

    // Signing out on node 2 (the relying party names the session with its ID token) ends the session on
    // node 3 too: the cookie, kept from before, no longer signs anyone in.
    let kept = browser.cookies.clone();
    let id_token = tokens["id_token"].as_str().expect("id_token");
    let answer = browser.get(&c.node(2).url(&format!("/oauth/logout?id_token_hint={id_token}"))).await;
    assert_eq!(answer.status, 200, "signed out on node 2: {}", answer.body);
    assert!(answer.body.contains("signed out"), "{}", answer.body);
    let mut login_required = false;
    for _ in 0..50 {
        browser.cookies = kept.clone();
        let again = Authorization::new(&client_id).with("prompt", Some("none"));
        let callback = browser.authorize(c.node(3), &again).await;
        if callback.get("error").map(String::as_str) == Some("login_required") {
            login_required = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(login_required, "the session signed out on node 2 still works on node 3");
}
