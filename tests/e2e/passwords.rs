//! Password sign-in through the password grant: attempts counted when they start, the cost cap of one
//! check, LDAP-backed users.

use serde_json::{json, Value};

use crate::harness::Node;

/// A counter of the node's `/metrics` with its labels, e.g. `jeton_password_checks_total{result="failed"}`
/// (0 when it was never incremented).
async fn counter(node: &Node, series: &str) -> f64 {
    let text = node.http.get(node.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}

const FAILED_CHECKS: &str = r#"jeton_password_checks_total{result="failed"}"#;

/// 50 wrong passwords at once for one user: only as many are hashed as the lockout limit allows (the
/// attempts running count like failures), the others are refused before any hashing, and the right
/// password afterwards gets no token while the account is locked.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_guesses_are_counted_when_they_start() {
    let node = Node::start().await;
    let (id, secret) = node.app_with_user("acme", "app-acme", json!({}), "carol", "Carol-Password-1").await;
    let before = counter(&node, FAILED_CHECKS).await;
    let guesses = (0..50).map(|i| {
        let (node, id, secret) = (&node, &id, &secret);
        async move { node.password_grant(id, secret, "carol", &format!("guess-{i}")).await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for (s, v) in &answers {
        assert!(*s == 400 || *s == 429, "{s} {v}");
        assert_eq!(v["error"], "invalid_grant", "{v}");
        *statuses.entry(*s).or_default() += 1;
    }
    let tried = statuses.get(&400).copied().unwrap_or(0);
    assert!(tried <= 5, "{tried} of 50 parallel guesses were tried, the limit is 5: {statuses:?}");
    let hashed = counter(&node, FAILED_CHECKS).await - before;
    assert!(hashed <= 5.0, "{hashed} wrong passwords were hashed, the limit is 5");
    assert!(hashed >= 1.0, "some guess must have been checked");
    let (s, v) = node.password_grant(&id, &secret, "carol", "Carol-Password-1").await;
    assert_eq!(s, 429, "the right password right after the guesses must not get a token: {v}");
    assert!(v.get("access_token").is_none(), "{v}");
    let refused = counter(&node, r#"jeton_password_refusals_total{reason="locked"}"#).await;
    assert!(refused >= 45.0, "refused before hashing: {refused}");
}

/// An argon2 hash is accepted as is up to 256 MiB·passes for one check; over that the admin API refuses it
/// with a clear 400 and stores nothing, on add-user and update-user alike (also as a master password).
#[tokio::test]
async fn the_admin_api_refuses_hashes_over_the_cost_cap() {
    let node = Node::start().await;
    let (id, secret) = node.app_with_user("acme", "app-acme", json!({}), "dave", "Dave-Password-1").await;
    let argon = |m: u32, t: u32| {
        // The worked example of COMPAT §4.4 (password P@ssw0rd!) with other parameters: fine for the cap,
        // which is decided before anything is computed.
        format!("$argon2id$v=19$m={m},t={t},p=2$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM")
    };
    // 1 GiB × 64 passes: each parameter within its old cap, the product far over the cap.
    for (m, t) in [(1_048_576, 64), (2_097_152, 1), (65_536, 5)] {
        let body = json!({"owner": "acme", "name": "huge", "password": argon(m, t), "passwordType": "argon2id"});
        let (s, v) = node.admin_post("add-user", body).await;
        assert_eq!(s, 400, "m={m} t={t}: {v}");
        assert_eq!(v["status"], "error");
        let msg = v["msg"].as_str().unwrap_or_default();
        assert!(msg.contains("over the cap") && msg.contains("KiB·passes"), "{msg}");
    }
    let (_, v) = node.admin_get("get-user?id=acme/huge").await;
    assert_eq!(v["data"], Value::Null, "nothing was stored: {v}");
    // The worked example itself (64 MiB × 1) is taken as is and signs in.
    let body = json!({"owner": "acme", "name": "worked", "password": argon(65_536, 1), "passwordType": "argon2id"});
    let (s, v) = node.admin_post("add-user", body).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.password_grant(&id, &secret, "worked", "P@ssw0rd!").await;
    assert_eq!(s, 200, "{v}");
    // update-user with an over-cap hash: refused, the old password still works.
    let (_, mut dave) = node.admin_get("get-user?id=acme/dave").await;
    dave["data"]["password"] = json!(argon(1_048_576, 64));
    dave["data"]["passwordType"] = json!("argon2id");
    let (s, v) = node.admin_post("update-user", dave["data"].clone()).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = node.password_grant(&id, &secret, "dave", "Dave-Password-1").await;
    assert_eq!(s, 200, "{v}");
    // bcrypt over cost 16 likewise.
    let body = json!({"owner": "acme", "name": "slow", "password": "$2a$20$..CA.uOD/eaGAOmJB.yMBurGSUo5vM6h/j4WsVYFtBHNBL0/GbtTS", "passwordType": "bcrypt"});
    let (s, v) = node.admin_post("add-user", body).await;
    assert_eq!(s, 400, "{v}");
    // (A master password set here is the password itself, hashed by the node with its default costs; an
    // over-cap master password hash can only come from an import, which drops and reports it.)
}

/// A user with a non-empty `ldap` field is checked against the upstream directory in Casdoor, never against
/// its local hash. This node has no upstream LDAP client: such a user gets no token by password, with the
/// answer a wrong password gets.
#[tokio::test]
async fn ldap_backed_users_never_sign_in_with_their_local_hash() {
    let node = Node::start().await;
    let (id, secret) = node.app_with_user("acme", "app-acme", json!({}), "erin", "Erin-Password-1").await;
    let body = json!({"owner": "acme", "name": "walter", "password": "Walter-Local-1", "ldap": "ldap-acme"});
    let (s, v) = node.admin_post("add-user", body).await;
    assert_eq!(s, 200, "{v}");
    let (_, walter) = node.admin_get("get-user?id=acme/walter").await;
    assert_eq!(walter["data"]["password"], "***", "walter has a local hash: {walter}");
    let (s, v) = node.password_grant(&id, &secret, "walter", "Walter-Local-1").await;
    assert_eq!(s, 400, "an LDAP-backed user got a token with the local hash: {v}");
    let (s_wrong, wrong) = node.password_grant(&id, &secret, "erin", "not-erins").await;
    assert_eq!((s_wrong, &wrong), (s, &v), "same answer as a wrong password");
    // Without the ldap field the same hash signs in.
    let mut w = walter["data"].clone();
    w["ldap"] = json!("");
    let (s, r) = node.admin_post("update-user", w).await;
    assert_eq!(s, 200, "{r}");
    let (s, v) = node.password_grant(&id, &secret, "walter", "Walter-Local-1").await;
    assert_eq!(s, 200, "{v}");
}
