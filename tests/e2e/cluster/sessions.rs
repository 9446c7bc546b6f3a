//! Browser sessions on a three-node cluster: a session started on one node signs the browser in on the
//! others, and ending it through the admin API of another node ends it everywhere: its cookie no longer
//! signs anyone in on the third.

use serde_json::{json, Value};

use super::Cluster;
use crate::browser::AuthorizationRequest;
use crate::signin_admin::{add_user, org_and_app, silent, Agent};

/// The live session rows of acme on `node`, read after it has applied everything committed.
async fn sessions_on(c: &Cluster, node: u8) -> Vec<Value> {
    let (s, v) = c.node(node).admin_get("get-sessions?owner=acme&consistency=linearizable").await;
    assert_eq!(s, 200, "{v}");
    v["data"].as_array().expect("rows").clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_ended_on_one_node_signs_nobody_in_on_another() {
    let c = Cluster::three(10_000).await;
    let (client_id, _) = org_and_app(c.node(1), "acme", "app-acme", true, json!({})).await;
    add_user(c.node(1), "acme", "jo", "Jo-Password-1", None).await;
    let (s, v) = c.node(3).admin_get("get-user?id=acme/jo&consistency=linearizable").await;
    assert_eq!((s, v["data"]["name"].as_str()), (200, Some("jo")), "node 3 has the user: {v}");

    // Signed in through node 1.
    let browser = Agent::new();
    let request = AuthorizationRequest::new(&client_id, "http://127.0.0.1:9/callback");
    browser.sign_in(c.node(1), &request, "jo", "Jo-Password-1").await.code();
    assert!(browser.cookie("jeton_session").is_some());

    // Node 3 knows the session: a silent authorization there answers with a code.
    let rows = sessions_on(&c, 3).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    silent(&browser, c.node(3), &client_id).await.code();

    // Ended through node 2's admin API.
    let (s, v) = c.node(2).admin_post("delete-session", json!({"owner": "acme", "name": "jo"})).await;
    assert_eq!((s, v["data"].as_str()), (200, Some("Affected")), "{v}");
    assert!(sessions_on(&c, 3).await.is_empty(), "node 3 applied the end");
    let page = silent(&browser, c.node(3), &client_id).await;
    assert_eq!(page.redirect_param("error").as_deref(), Some("login_required"), "{:?}", page.location);
    let page = silent(&browser, c.node(1), &client_id).await;
    assert_eq!(page.redirect_param("error").as_deref(), Some("login_required"), "{:?}", page.location);
}
