//! Writes the seed corpora, `corpus/<target>/`, from the project's real test inputs: the forms, headers and
//! admin bodies the end-to-end tests send, tokens the fixture's node mints with real keys of every
//! algorithm, the password hashes of the Casdoor fixtures and of the schemes' tests, Casdoor's PEM keys,
//! node-to-node bodies built from real commands, and a snapshot file the node wrote.
//!
//! `cargo run --release --example seeds` (from `fuzz/`). Replaces the seed files it writes; `keys.json`
//! is kept (delete it to make new keys: every token seed changes then).

use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jeton_edge::import::{ApplyItem, ApplyRequest};
use jeton_edge::keys::KeyImport;
use jeton_edge::oauth::{ClientAuth, Params};
use jeton_edge::password::{self as schemes, Scheme};
use jeton_fuzz::{client_of, fuzz_dir, join, test_fixture, Fixture, USERS};
use jeton_raft::cluster::{ClusterInfo, InfoRequest, JoinRequest, MembershipChange, WireError};
use jeton_raft::model::{
    AccountingEvent, AccountingStatus, Admission, CasbinModel, Organization, Permission, RefreshState, RefreshToken,
    Revocation, User,
};
use jeton_raft::{Command, CommandResponse, Entry, Outcome, PutMode, TypeConfig};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};
use serde::Serialize;
use serde_json::json;

/// Writes one seed file.
fn seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus().join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn corpus() -> PathBuf {
    fuzz_dir().join("corpus")
}

fn main() {
    // Each run starts from nothing: a seed that is no longer made goes away.
    for target in [
        "form",
        "authorization",
        "jwt",
        "admin",
        "node_bodies",
        "password_hashes",
        "pem_import",
        "snapshot",
        "ldap",
        "radius",
        "redirect_uri",
    ] {
        let _ = std::fs::remove_dir_all(corpus().join(target));
    }
    let f = Fixture::start();
    forms();
    authorization();
    let tokens = tokens(&f);
    jwt(&f, &tokens);
    admin();
    password_hashes();
    pem_import();
    let snapshot = snapshot(&f);
    node_bodies(&snapshot);
    ldap();
    radius();
    redirect_uris();
    println!("seeds written to {}", corpus().display());
}

/// The forms and query strings of the end-to-end tests (tests/e2e/harness.rs, oauth.rs, tokens.rs,
/// http.rs), and Casdoor SDK requests.
fn forms() {
    let cases: &[(&str, u8, &str, &str, &str)] = &[
        // (name, flags, query, content type, body); flags: bit 0 query, bits 1-2 content type, bit 3 client.
        ("client-credentials", 0b1010, "", "", "grant_type=client_credentials"),
        (
            "password",
            0b1010,
            "",
            "",
            "grant_type=password&username=alice&password=Alice%232024%21&scope=openid+profile",
        ),
        ("password-query-secret", 0b1011, "client_secret=x&grant_type=password", "", "username=quinn"),
        ("refresh", 0b1010, "", "", "grant_type=refresh_token&refresh_token=eyJhbGciOiJFZERTQSJ9.e30.sig&scope=openid"),
        ("introspect", 0b1010, "", "", "token=x&token_type_hint=access_token"),
        ("repeated", 0b1010, "", "", "a=1&b=2&a=3"),
        ("escapes", 0b0010, "", "", "a=1&token=abc.def-ghi_j&&s=x+y%21&flag&e=%zz%F0%9F%94%91"),
        ("casdoor-query", 0b1001, "grant_type=password&client_id=c&username=u", "", ""),
        (
            "json",
            0b1100,
            "",
            "",
            r#"{"grant_type":"client_credentials","client_id":"c","client_secret":"s","n":1,"x":null,"o":{"a":[1]}}"#,
        ),
        (
            "json-with-query",
            0b1101,
            "scope=openid",
            "",
            r#"{"grant_type":"password","username":"alice","password":"pw","scope":"x"}"#,
        ),
        ("other-type", 0b0111, "", "text/plain; charset=utf-8", "grant_type=client_credentials"),
        ("form-charset", 0b0111, "", "Application/X-WWW-Form-Urlencoded; charset=UTF-8", "token=abc"),
        ("userinfo-query", 0b0001, "access_token=eyJ.eyJ.sig", "", ""),
        ("admin-query", 0b0001, "clientId=admin-client&clientSecret=admin-secret&p=2&pageSize=10&owner=acme", "", ""),
    ];
    for (name, flags, query, ct, body) in cases {
        seed("form", name, &[vec![*flags], join(&[query.as_bytes(), ct.as_bytes(), body.as_bytes()])].concat());
    }
    let many: Vec<String> = (0..70).map(|i| format!("k{i}=v")).collect();
    seed("form", "past-the-cap", &[vec![0b0010], join(&[b"", b"", many.join("&").as_bytes()])].concat());
}

/// The Authorization headers of tests/e2e/http.rs and harness.rs, and the unit test of Basic decoding.
fn authorization() {
    let basic = |s: &str| format!("Basic {}", STANDARD.encode(s));
    let (id, secret) = client_of("gen-eddsa");
    let raw = [
        ("basic", basic(&format!("{id}:{secret}"))),
        ("basic-lowercase", format!("basic  {}  ", STANDARD.encode("a:b"))),
        ("basic-escaped", basic("my%20client:s%3Acret+x")),
        ("basic-wrong", basic("wrong:wrong")),
        ("basic-garbage", "Basic %%%".into()),
        ("bearer", "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln".into()),
        ("other-scheme", "Digest username=x".into()),
    ];
    for (name, value) in raw {
        seed("authorization", name, &[&[0u8], value.as_bytes()].concat());
    }
    for (name, creds) in [
        ("decoded", "my%20client:s%3Acret+x"),
        ("decoded-plain", "client-gen-eddsa:secret-gen-eddsa-0123456789"),
        ("decoded-no-colon", "no-colon"),
        ("decoded-ampersand", "id:pass&word"),
    ] {
        seed("authorization", name, &[&[1u8], creds.as_bytes()].concat());
    }
    seed("authorization", "bearer-only", &[&[2u8], b"abc.def.ghi".as_slice()].concat());
}

/// Real tokens: every application's client-credentials token, password-grant tokens of each user (access
/// and refresh), as the token endpoint mints them.
fn tokens(f: &Fixture) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let grant = |kid: &str, params: &[(&str, &str)]| {
        let (id, secret) = client_of(kid);
        let p: Params = params.iter().copied().collect();
        let auth = ClientAuth { basic: Some((id, secret)), ..Default::default() };
        f.runtime.block_on(f.edge.token(&p, &auth, None)).unwrap_or_else(|e| panic!("{kid}: {e:?}"))
    };
    for (i, key) in f.keys.iter().enumerate() {
        let t = grant(&key.kid, &[("grant_type", "client_credentials")]);
        out.push((format!("cc-{}", key.kid), t.access_token));
        let (_, name, password) = USERS[1 + i % 2];
        let t = grant(
            &key.kid,
            &[("grant_type", "password"), ("username", name), ("password", password), ("scope", "openid profile")],
        );
        out.push((format!("pw-{}", key.kid), t.access_token));
        if !t.refresh_token.is_empty() {
            out.push((format!("refresh-{}", key.kid), t.refresh_token));
        }
    }
    let t = grant("admin", &[("grant_type", "client_credentials")]);
    out.push(("cc-admin".into(), t.access_token));
    out
}

fn jwt(f: &Fixture, tokens: &[(String, String)]) {
    for (i, (name, token)) in tokens.iter().enumerate() {
        seed("jwt", name, &[&[0u8, i as u8], token.as_bytes()].concat());
        // The claims of the same token, to be signed again (mode 1) by another key.
        let claims = token.split('.').nth(1).and_then(|c| URL_SAFE_NO_PAD.decode(c).ok()).expect("claims");
        seed("jwt", &format!("claims-{name}"), &[&[1u8, (i * 7) as u8], claims.as_slice()].concat());
    }
    let exp = jeton_edge::clock::now() + 3600;
    let claims = |extra: serde_json::Value| {
        let mut c = json!({"iss": jeton_fuzz::ISSUER, "exp": exp, "jti": "admin/x", "client_id": "client-gen-eddsa", "sub": "00000000-0000-4000-8000-000000000001"});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        c.to_string().into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("expired", claims(json!({"exp": 1}))),
        ("not-yet", claims(json!({"nbf": exp}))),
        ("nbf-text", claims(json!({"nbf": "soon"}))),
        ("no-exp", br#"{"iss":"https://jeton.fuzz"}"#.to_vec()),
        ("foreign-issuer", claims(json!({"iss": jeton_fuzz::FOREIGN_ISSUER, "aud": ["client-gen-eddsa"]}))),
        ("other-issuer", claims(json!({"iss": "https://evil.example"}))),
        ("revoked", claims(json!({"jti": jeton_fuzz::REVOKED_JTI}))),
        ("refresh-unknown", claims(json!({"token_type": "refresh-token", "tokenType": "refresh-token"}))),
        ("admin-sub", claims(json!({"sub": "admin/app-built-in", "client_id": "client-admin"}))),
        ("not-object", b"[1,2,3]".to_vec()),
    ];
    for (i, (name, c)) in cases.into_iter().enumerate() {
        seed("jwt", &format!("signed-{name}"), &[&[1u8, i as u8], c.as_slice()].concat());
    }
    // Headers of other shapes, signed as they are (mode 2).
    for (i, header) in [
        r#"{"alg":"RS256","kid":"imp-rs512","typ":"JWT"}"#,
        r#"{"alg":"PS256","kid":"imp-rs512"}"#,
        r#"{"alg":"none","kid":"gen-eddsa"}"#,
        r#"{"alg":"HS256","kid":"gen-rs256"}"#,
        r#"{"alg":"ES512","kid":"imp-es512","crit":["b64"]}"#,
    ]
    .iter()
    .enumerate()
    {
        let c = claims(json!({}));
        seed("jwt", &format!("header-{i}"), &[vec![2u8, (i * 3 + 4) as u8], join(&[header.as_bytes(), &c])].concat());
    }
    let _ = f;
}

/// The admin bodies of tests/e2e/admin.rs and import.rs; an apply request with every kind of item.
fn admin() {
    let bodies: &[(u8, &str, serde_json::Value)] = &[
        (1, "org", json!({"owner": "admin", "name": "acme", "displayName": "Acme", "passwordType": "bcrypt"})),
        (
            1,
            "org-master",
            json!({"owner": "admin", "name": "globex", "passwordType": "argon2id", "masterPassword": "$argon2id$v=19$m=65536,t=1,p=2$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM", "passwordSalt": "***", "tags": [""]}),
        ),
        (
            2,
            "user",
            json!({"owner": "acme", "name": "frank", "password": "Frank-Password-1", "displayName": "Frank", "email": "frank@acme.example", "properties": {"department": "ops"}}),
        ),
        (
            2,
            "user-hash",
            json!({"owner": "acme", "name": "dave", "password": "pbkdf2_sha256$260000$WWuUIcorrZ6VAhd11pt4uz$zD/X/8zZPfeeGp7HDivT47WqGUlmTpKYoYsCtzZPak4=", "passwordType": "pbkdf2-django", "passwordSalt": "WWuUIcorrZ6VAhd11pt4uz", "isAdmin": false, "score": 1000, "groups": null}),
        ),
        (2, "user-bad-name", json!({"owner": "acme", "name": "bad/name"})),
        (
            3,
            "app",
            json!({"owner": "admin", "name": "app-acme", "organization": "acme", "clientSecret": "app-acme-secret-0123456789", "clientId": "acme-client", "grantTypes": ["password"]}),
        ),
        (
            3,
            "app-scopes",
            json!({"owner": "admin", "name": "app-rs", "organization": "acme", "tokenSigningMethod": "RS256", "failedSigninLimit": 3, "failedSigninFrozenTime": 2, "scopes": [{"name": "openid", "displayName": "OpenID", "description": ""}, "profile"], "expireInHours": 168.5, "tokenFields": [""], "clientSecretDigest": [1, 2]}),
        ),
        (
            4,
            "role",
            json!({"owner": "acme", "name": "staff", "users": ["acme/alice"], "roles": [], "domains": [""], "isEnabled": true}),
        ),
        (
            5,
            "group",
            json!({"owner": "acme", "name": "engineering", "parentId": "acme", "isTopGroup": true, "gidNumber": 1001}),
        ),
    ];
    for (mode, name, body) in bodies {
        seed("admin", name, &[vec![*mode], body.to_string().into_bytes()].concat());
    }
    seed("admin", "not-json", b"\x01{not json");
    let org = Organization { name: "acme".into(), password_type: "bcrypt".into(), ..Default::default() };
    let user = User {
        owner: "acme".into(),
        name: "alice".into(),
        id: "00000000-0000-4000-8000-000000000001".into(),
        password: "$2a$10$..CA.uOD/eaGAOmJB.yMBurGSUo5vM6h/j4WsVYFtBHNBL0/GbtTS".into(),
        password_type: "bcrypt".into(),
        ..Default::default()
    };
    let admin = User { owner: "built-in".into(), name: "admin".into(), ..Default::default() };
    let key = KeyImport {
        kid: "cert-acme-es256".into(),
        owner: "admin".into(),
        algorithm: "ES256".into(),
        certificate: test_fixture("casdoor/keys/cert-acme-es256.pem"),
        private_key: test_fixture("casdoor/keys/cert-acme-es256.key"),
        accepted_algorithms: vec!["ES256".into()],
        ..Default::default()
    };
    let request = ApplyRequest {
        items: vec![
            ApplyItem::Command(Command::PutOrganization { org, mode: PutMode::Upsert }),
            ApplyItem::Command(Command::PutUser { user, mode: PutMode::Upsert }),
            ApplyItem::Command(Command::PutUser { user: admin, mode: PutMode::Upsert }),
            ApplyItem::Key(key),
            ApplyItem::Command(Command::Revoke {
                revocation: Revocation { jti: "admin/x".into(), expires_at: 4_102_444_800, revoked_at: 1 },
            }),
            ApplyItem::Command(Command::DeleteOrganization { name: "acme".into() }),
        ],
        dry_run: true,
        run: "import-1".into(),
        seq: 0,
        replace_admin: false,
    };
    seed("admin", "apply", &[vec![0u8], serde_json::to_vec(&request).expect("json")].concat());
    seed("admin", "apply-empty", b"\x00{\"items\":[],\"dryRun\":false}");
    for (name, body) in [
        ("cert", json!({"owner": "admin", "name": "cert-new", "cryptoAlgorithm": "ES256"})),
        ("cert-bad", json!({"name": "cert-x", "cryptoAlgorithm": "ES512"})),
    ] {
        seed("admin", name, &[vec![6u8], body.to_string().into_bytes()].concat());
    }
    seed("admin", "page", b"\x07p=2&pageSize=10");
    seed("admin", "page-bad", b"\x07p=0&pageSize=5000");
}

/// Hash strings of every scheme: the worked examples of the schemes' unit tests (COMPAT §4.4), the users
/// of the Casdoor fixture database, and values over the cost cap.
fn password_hashes() {
    const PW: &str = "P@ssw0rd!";
    const SALT: &str = "a1b2c3d4e5f6a7b8c9d0";
    let index = |s: Scheme| match s {
        Scheme::Plain => 0u8,
        Scheme::Salt => 1,
        Scheme::Sha512Salt => 2,
        Scheme::Md5Salt => 3,
        Scheme::Bcrypt => 4,
        Scheme::Argon2id => 5,
        Scheme::Pbkdf2Salt => 6,
        Scheme::Pbkdf2Django => 7,
    };
    let mut cases: Vec<(String, Scheme, String, String)> = vec![
        ("plain".into(), Scheme::Plain, PW.into(), String::new()),
        ("salt".into(), Scheme::Salt, "3fe4d69687154f529287365e03634b26fd63641b8e9b037b649f418766ae27e0".into(), SALT.into()),
        ("sha512".into(), Scheme::Sha512Salt, "9a585872fc4a94ba2fe0f7e9625bcfccc1050dab20b56df35a1c8915a3d8325616c0172284c2f4fe9471667c9c4f1fbdc0d371684caee74cdf9d39d82383a383".into(), String::new()),
        ("md5".into(), Scheme::Md5Salt, "1e9bfccb6cc6e1b82d737f240ac47e3c".into(), SALT.into()),
        ("bcrypt-10".into(), Scheme::Bcrypt, "$2a$10$..CA.uOD/eaGAOmJB.yMBurGSUo5vM6h/j4WsVYFtBHNBL0/GbtTS".into(), String::new()),
        ("bcrypt-over".into(), Scheme::Bcrypt, "$2a$17$..CA.uOD/eaGAOmJB.yMBurGSUo5vM6h/j4WsVYFtBHNBL0/GbtTS".into(), String::new()),
        ("argon2".into(), Scheme::Argon2id, "$argon2id$v=19$m=65536,t=1,p=2$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM".into(), String::new()),
        ("argon2-over".into(), Scheme::Argon2id, "$argon2id$v=19$m=1048576,t=64,p=1$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM".into(), String::new()),
        ("pbkdf2-salt".into(), Scheme::Pbkdf2Salt, "0+//X0Mf1k0wXBSpMlr0QpsVF3kC3pZGYT15vxkCyQp23oBm1UUEWApxs7dwDxw/RDFvo0hvg0gPU2TzHwCa9g==".into(), "c2FsdHlzYWx0MTIzNDU2Nw==".into()),
        ("django".into(), Scheme::Pbkdf2Django, "pbkdf2_sha256$260000$W7xPuZ2qTa9LkV3mNc8RbE$bDUY3amX12gm/93nkhSJHpmWECc9xlFcNRBzcRgAzeg=".into(), "ignored".into()),
        ("django-over".into(), Scheme::Pbkdf2Django, "pbkdf2_sha256$4000000000$x$y".into(), String::new()),
    ];
    // Cheap hashes of each scheme, so the fuzzer starts from values it can check on every run.
    let cheap_argon = "$argon2id$v=19$m=8,t=1,p=1$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM";
    cases.push(("argon2-cheap".into(), Scheme::Argon2id, cheap_argon.into(), String::new()));
    let cheap_bcrypt = "$2b$04$..CA.uOD/eaGAOmJB.yMBurGSUo5vM6h/j4WsVYFtBHNBL0/GbtTS";
    cases.push(("bcrypt-cheap".into(), Scheme::Bcrypt, cheap_bcrypt.into(), String::new()));
    // Zero passes: argon2 refuses it, and `work` once counted its 4 GB against the memory budget.
    let no_pass = "$argon2id$v=19$m=4000000,t=0,p=1$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM";
    cases.push(("argon2-no-pass".into(), Scheme::Argon2id, no_pass.into(), String::new()));
    cases.push(("django-cheap".into(), Scheme::Pbkdf2Django, "pbkdf2_sha256$1000$s$h".into(), String::new()));
    // The users of the Casdoor fixture database: `'<hash>', '<salt>', '<type>'` in its user rows.
    let sql = test_fixture("casdoor/seed-postgres.sql");
    let quoted: Vec<&str> = sql.split('\'').skip(1).step_by(2).collect();
    for w in quoted.windows(3) {
        if let Some(scheme) = Scheme::parse(w[2]) {
            if !w[0].is_empty() && cases.iter().all(|c| c.2 != w[0]) {
                cases.push((format!("casdoor-{}-{}", w[2], cases.len()), scheme, w[0].to_string(), w[1].to_string()));
            }
        }
    }
    for (name, scheme, stored, salt) in &cases {
        for (org, org_salt, master) in [("", "", ""), ("sha512-salt", "gl0b3xSalt2024", "b51722396cab1cf9b3cbb66c1131b0e9225c2fecb63c33255781983c86f8b0291430061031183c7a3d26f3650d388dab61e587b83cda811121bbeea23bb7aae0")] {
            let fields: [&[u8]; 6] =
                [PW.as_bytes(), stored.as_bytes(), salt.as_bytes(), org.as_bytes(), org_salt.as_bytes(), master.as_bytes()];
            let suffix = if org.is_empty() { "" } else { "-master" };
            // The fixed-cost PBKDF2 check (27,500 iterations) runs only with bit 7 and a byte sum divisible
            // by 8 (password_hashes.rs): on one seed of its own, padded with an ignored field to run it.
            let pbkdf2 = *scheme == Scheme::Pbkdf2Salt && org.is_empty() && name == "pbkdf2-salt";
            let mut input = [vec![index(*scheme) | if pbkdf2 { 0x80 } else { 0 }], join(&fields)].concat();
            if pbkdf2 {
                input.push(0xFF);
                while input.iter().map(|b| *b as u32).sum::<u32>() % 8 != 0 {
                    input.push(b'=');
                }
            }
            seed("password_hashes", &format!("{name}{suffix}"), &input);
        }
    }
    // A value as the product writes it, per scheme.
    for scheme in [Scheme::Salt, Scheme::Md5Salt, Scheme::Plain] {
        let stored = schemes::hash(scheme, PW, SALT).expect("hash");
        seed(
            "password_hashes",
            &format!("hashed-{}", scheme.as_str()),
            &[vec![index(scheme)], join(&[PW.as_bytes(), stored.as_bytes(), SALT.as_bytes()])].concat(),
        );
    }
}

/// Casdoor's fixture keys (PKCS#8 RSA, PKCS#1 RSA, SEC1 P-256/384/521) with their certificates, as PEM and as
/// DER.
fn pem_import() {
    let alg_index = |a: &str| jeton_edge::keys::Alg::ALL.iter().position(|x| x.as_str() == a).expect("alg") as u8;
    for (cert, alg, accepted) in [
        ("cert-built-in", "RS256", ""),
        ("cert-acme-rs512", "RS512", "RS256,PS256"),
        ("cert-built-in", "PS384", ""),
        ("cert-acme-es256", "ES256", "ES256"),
        ("cert-globex-es384", "ES384", ""),
        ("cert-globex-es512", "ES512", ""),
        ("portal.acme.example", "RS256", ""),
    ] {
        let key = test_fixture(&format!("casdoor/keys/{cert}.key"));
        let pem = test_fixture(&format!("casdoor/keys/{cert}.pem"));
        let sel = alg_index(alg);
        seed(
            "pem_import",
            &format!("{cert}-{alg}"),
            &[vec![sel], join(&[key.as_bytes(), pem.as_bytes(), accepted.as_bytes()])].concat(),
        );
        // The key's DER under its own label, without the certificate.
        let label = key.lines().next().unwrap_or_default().trim_start_matches("-----BEGIN ").trim_end_matches("-----");
        let der: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(der).expect("base64");
        let label_bits = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "RSA PSS PRIVATE KEY"]
            .iter()
            .position(|l| *l == label)
            .unwrap_or(0) as u8;
        seed("pem_import", &format!("{cert}-{alg}-der"), &[vec![sel | 0x80 | label_bits << 5], join(&[&der])].concat());
    }
    // The generated keys' public halves as they are stored (not private keys: refused).
    for k in jeton_fuzz::signing_keys().iter().take(3) {
        seed(
            "pem_import",
            &format!("public-{}", k.kid),
            &[vec![alg_index(&k.algorithm)], join(&[k.public_key_pem.as_bytes(), k.certificate.as_bytes()])].concat(),
        );
    }
}

/// A snapshot file of the fixture's node with records of every kind, and each of its records alone.
fn snapshot(f: &Fixture) -> Vec<u8> {
    let now = jeton_edge::clock::now();
    let mut extra = vec![
        Command::PutPermission {
            permission: Permission {
                owner: "acme".into(),
                name: "read".into(),
                users: vec!["acme/alice".into()],
                resources: vec!["app-acme".into()],
                actions: vec!["Read".into()],
                effect: "Allow".into(),
                is_enabled: true,
                ..Default::default()
            },
            mode: PutMode::Create,
        },
        Command::PutModel {
            model: CasbinModel {
                owner: "acme".into(),
                name: "rbac".into(),
                model_text: "[request_definition]\nr = sub, obj, act\n".into(),
                ..Default::default()
            },
            mode: PutMode::Create,
        },
        Command::IssueRefreshToken {
            token: RefreshToken {
                id: "refresh-1".into(),
                family: "family-1".into(),
                application: "app-gen-eddsa".into(),
                user: "00000000-0000-4000-8000-000000000001".into(),
                scope: "openid".into(),
                issued_at: now,
                expires_at: now + 3600,
                access_jti: "admin/y".into(),
                access_expires_at: now + 3600,
                state: RefreshState::Active,
            },
        },
        Command::RecordSigninFailure { account: "acme/alice".into(), now, limit: 5, frozen_secs: 900 },
        Command::AdmitNode {
            admission: Admission { node_id: 2, token_digest: "ab".repeat(32), expires_at: now + 3600, created_at: now },
        },
        Command::RecordAccounting {
            event: AccountingEvent {
                status: AccountingStatus::InterimUpdate,
                event_time: now,
                nas_client: "nas-1".into(),
                acct_session_id: "80000001".into(),
                organization: "acme".into(),
                user_name: "alice".into(),
                session_time: 600,
                input_octets: AccountingEvent::octets(1_000, 1),
                output_octets: AccountingEvent::octets(2_000, 0),
                input_packets: 10,
                output_packets: 20,
                nas_ip_address: "192.0.2.1".into(),
                nas_port: Some(1),
                framed_ip_address: "10.0.0.7".into(),
                ..Default::default()
            },
        },
    ];
    // An NT-hash credential of alice, sealed as a sign-in in an organization that opted in seals it.
    let (_, alice, password) = USERS[1];
    let alice = f.edge.store.user("acme", alice).expect("read").expect("alice").to_owned().expect("decode");
    let hash = jeton_edge::passwords::nt_credential::nt_hash(password);
    let credential = jeton_edge::passwords::nt_credential::seal(&f.edge.kek, &alice, &hash).expect("seal");
    extra.push(Command::PutNtCredential { credential });
    f.runtime.block_on(async {
        let outcome = f.edge.node.write(Command::Batch { commands: extra }).await.expect("write").outcome;
        assert_eq!(outcome, Outcome::Applied);
        f.edge.node.raft.trigger().snapshot().await.expect("snapshot");
        for _ in 0..200 {
            if f.edge.node.raft.metrics().borrow().snapshot.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let dir = f.dir.join("snapshots");
    let meta: SnapshotMeta<u64, openraft::BasicNode> =
        serde_json::from_slice(&std::fs::read(dir.join("current.json")).expect("current.json")).expect("meta");
    let data = std::fs::read(dir.join(format!("{}.snap", meta.snapshot_id))).expect("snapshot file");
    seed("snapshot", "fixture", &data);
    // Each record alone.
    let mut rest = &data[..];
    let mut i = 0;
    while rest.len() >= 4 {
        let klen = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let vlen = u32::from_be_bytes(rest[4 + klen..8 + klen].try_into().unwrap()) as usize;
        let (record, next) = rest.split_at(8 + klen + vlen);
        let prefix = String::from_utf8_lossy(&record[4..5]).into_owned();
        seed("snapshot", &format!("record-{i:03}-{prefix}"), record);
        rest = next;
        i += 1;
    }
    data
}

/// Node-to-node bodies built from real values, in postcard (odd selectors) and JSON (even).
fn node_bodies(snapshot: &[u8]) {
    fn both<T: Serialize>(name: &str, ty: u8, value: &T) {
        seed(
            "node_bodies",
            &format!("{name}-postcard"),
            &[vec![ty << 1 | 1], postcard::to_allocvec(value).expect("postcard")].concat(),
        );
        seed(
            "node_bodies",
            &format!("{name}-json"),
            &[vec![ty << 1], serde_json::to_vec(value).expect("json")].concat(),
        );
    }
    let leader = CommittedLeaderId::new(3, 1);
    let log_id = |index| LogId::new(leader, index);
    let vote = Vote::new_committed(3, 1);
    let membership = Membership::new(
        vec![[1u64, 2, 3].into_iter().collect()],
        [
            (1u64, openraft::BasicNode::new("127.0.0.1:7001")),
            (2, openraft::BasicNode::new("127.0.0.1:7002")),
            (3, openraft::BasicNode::new("127.0.0.1:7003")),
            (4, openraft::BasicNode::new("127.0.0.1:7004")),
        ]
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>(),
    );
    let commands = jeton_fuzz::commands();
    let entries: Vec<Entry> = vec![
        Entry { log_id: log_id(10), payload: EntryPayload::Blank },
        Entry { log_id: log_id(11), payload: EntryPayload::Membership(membership.clone()) },
        Entry { log_id: log_id(12), payload: EntryPayload::Normal(commands[commands.len() - 3].clone()) },
        Entry {
            log_id: log_id(13),
            payload: EntryPayload::Normal(Command::Each { commands: commands[10..14].to_vec() }),
        },
    ];
    let append: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote,
        prev_log_id: Some(log_id(9)),
        entries: entries.clone(),
        leader_commit: Some(log_id(9)),
    };
    both("append", 0, &append);
    both(
        "append-heartbeat",
        0,
        &AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: Some(log_id(13)),
            entries: vec![],
            leader_commit: Some(log_id(13)),
        },
    );
    both("vote", 1, &VoteRequest::new(Vote::new(4, 2), Some(log_id(13))));
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(13)),
        last_membership: StoredMembership::new(Some(log_id(11)), membership.clone()),
        snapshot_id: format!("T3-N1-13-{}", 1_700_000_000_000_000_000u128),
    };
    let chunk = |offset: usize, len: usize, done| InstallSnapshotRequest::<TypeConfig> {
        vote,
        meta: meta.clone(),
        offset: offset as u64,
        data: snapshot[offset..(offset + len).min(snapshot.len())].to_vec(),
        done,
    };
    both("snapshot-first", 2, &chunk(0, 512, false));
    both("snapshot-last", 2, &chunk(512, 2048, true));
    let mut bad = chunk(0, 16, true);
    bad.meta.snapshot_id = "../../etc/passwd".into();
    both("snapshot-bad-id", 2, &bad);
    let token = jeton_raft::admission::JoinToken::generate("fuzz-cluster", 4).expect("token");
    both("info", 3, &InfoRequest { node_id: 4, token: Some(token.secret.clone()) });
    both(
        "join",
        4,
        &JoinRequest { node_id: 4, addr: "127.0.0.1:7004".into(), learner: false, token: Some(token.secret.clone()) },
    );
    for (i, cmd) in commands.iter().enumerate().step_by(3) {
        both(&format!("write-{i}-{}", cmd.kind()), 5, cmd);
    }
    both("write-batch", 5, &Command::Batch { commands: commands[14..18].to_vec() });
    both(
        "write-nested",
        5,
        &Command::Batch { commands: vec![Command::Each { commands: vec![Command::Prune { now: 1 }] }] },
    );
    // Commands nested 2,000 deep: overflowed the decoder's stack before `command::MAX_NESTING`.
    let mut deep: Vec<u8> = [24u8, 1].repeat(2000);
    deep.extend([23, 0]);
    seed("node_bodies", "write-nested-too-deep-postcard", &[vec![5 << 1 | 1], deep].concat());
    both("membership-add", 6, &MembershipChange::AddLearner { id: 4, addr: "127.0.0.1:7004".into() });
    both(
        "membership-join",
        6,
        &MembershipChange::Join { id: 4, addr: "127.0.0.1:7004".into(), token: Some(token.secret), learner: false },
    );
    both("membership-remove", 6, &MembershipChange::Remove { id: 2 });
    both("read-index", 7, &());
    both("member", 8, &2u64);
    both("append-answer", 9, &Ok::<_, openraft::error::RaftError<u64>>(AppendEntriesResponse::<u64>::Success));
    both("append-conflict", 9, &Ok::<_, openraft::error::RaftError<u64>>(AppendEntriesResponse::<u64>::Conflict));
    both("vote-answer", 10, &Ok::<_, openraft::error::RaftError<u64>>(VoteResponse::new(vote, Some(log_id(13)), true)));
    both(
        "snapshot-answer",
        11,
        &Ok::<_, openraft::error::RaftError<u64, openraft::error::InstallSnapshotError>>(InstallSnapshotResponse {
            vote,
        }),
    );
    both(
        "info-answer",
        12,
        &ClusterInfo {
            cluster: "fuzz-cluster".into(),
            leader: Some(1),
            secret: Some("ab".repeat(32)),
            members: vec![1, 2, 3],
        },
    );
    both("write-answer", 13, &Ok::<_, WireError>(CommandResponse { outcome: Outcome::Applied, ..Default::default() }));
    both("write-refused", 13, &Err::<CommandResponse, _>(WireError::Invalid("no".into())));
    both("membership-answer", 14, &Err::<(), _>(WireError::NotLeader));
    both("read-index-answer", 15, &Ok::<_, WireError>(Some(13u64)));
    both("member-answer", 16, &true);
    // Log entries as sled stores them.
    for (i, e) in entries.iter().enumerate() {
        let stored = jeton_raft::fuzzing::encode_entry(e).expect("encode");
        seed("node_bodies", &format!("entry-{i}"), &[vec![17 << 1], stored].concat());
        seed(
            "node_bodies",
            &format!("entry-{i}-json"),
            &[vec![17 << 1], serde_json::to_vec(e).expect("json")].concat(),
        );
    }
}

/// LDAP streams: the operations clients send, alone and pipelined on one connection.
fn ldap() {
    use ldap3_proto::control::LdapControl;
    use ldap3_proto::proto::*;
    use tokio_util::codec::Encoder;

    let encode = |msgs: Vec<LdapMsg>| {
        let mut buf = bytes::BytesMut::new();
        for m in msgs {
            ldap3_proto::LdapCodec::default().encode(m, &mut buf).expect("encode");
        }
        buf.to_vec()
    };
    let bind = |dn: &str, pw: &str| {
        LdapMsg::new(
            1,
            LdapOp::BindRequest(LdapBindRequest { version: 3, dn: dn.into(), cred: LdapBindCred::Simple(pw.into()) }),
        )
    };
    let search = |id: i32, base: &str, filter: &str, ctrl: Vec<LdapControl>| {
        // ldap3_proto's filter-string parser is narrower than RFC 4515 (no spaces in values, for one).
        let filter = ldap3_proto::parse_ldap_filter_str(filter)
            .unwrap_or_else(|_| LdapFilter::Equality("uid".into(), filter.into()));
        LdapMsg::new_with_ctrls(
            id,
            LdapOp::SearchRequest(LdapSearchRequest {
                base: base.into(),
                scope: LdapSearchScope::Subtree,
                aliases: LdapDerefAliases::Never,
                sizelimit: 10,
                timelimit: 5,
                typesonly: false,
                filter,
                attrs: vec!["uid".into(), "+".into()],
            }),
            ctrl,
        )
    };
    seed("ldap", "bind-casdoor", &encode(vec![bind("cn=alice,ou=acme,dc=example,dc=com", "secret")]));
    seed("ldap", "bind-uid-escaped", &encode(vec![bind("uid=a\\,b\\2Cc,ou=acme", "x")]));
    seed("ldap", "bind-anonymous", &encode(vec![bind("", "")]));
    let filters = [
        "(uid=alice)",
        "(&(objectClass=posixAccount)(mail=alice@acme.example))",
        "(|(cn=al*ce)(sn=*x*)(givenName=*e))",
        "(!(uidNumber>=1000))",
        "(uidNumber<=99999999999)",
        "(displayName~=alice example)",
        "(memberOf=cn=sales,ou=acme,dc=example,dc=com)",
        "(entryUUID=*)",
        "(cn:caseExactMatch:=alice)",
    ];
    for (i, f) in filters.iter().enumerate() {
        seed("ldap", &format!("search-{i}"), &encode(vec![search(2, "ou=acme,dc=example,dc=com", f, vec![])]));
    }
    let paged = LdapControl::SimplePagedResults { size: 2, cookie: b"cookie".to_vec() };
    seed("ldap", "search-paged", &encode(vec![search(3, "ou=*", "(objectClass=*)", vec![paged])]));
    let compare = LdapMsg::new(
        4,
        LdapOp::CompareRequest(LdapCompareRequest {
            dn: "uid=alice,ou=acme".into(),
            atype: "mail".into(),
            val: b"alice@acme.example".to_vec(),
        }),
    );
    let whoami = LdapMsg::new(
        5,
        LdapOp::ExtendedRequest(LdapExtendedRequest { name: "1.3.6.1.4.1.4203.1.11.3".into(), value: None }),
    );
    let starttls = LdapMsg::new(
        6,
        LdapOp::ExtendedRequest(LdapExtendedRequest { name: "1.3.6.1.4.1.1466.20037".into(), value: None }),
    );
    seed(
        "ldap",
        "session",
        &encode(vec![
            bind("cn=admin,ou=built-in", "pw"),
            search(2, "", "(objectClass=*)", vec![]),
            compare,
            whoami,
            LdapMsg::new(7, LdapOp::AbandonRequest(2)),
            starttls,
            LdapMsg::new(8, LdapOp::UnbindRequest),
        ]),
    );
}

/// RADIUS datagrams as a NAS sends them, signed with the target's secret (`fuzzing-secret`): PAP with a
/// Message-Authenticator, CHAP, MS-CHAPv2, a TOTP answer with State, Status-Server, accounting with
/// gigawords; and a truncated one.
fn radius() {
    use jeton_edge::radius::crypto::{self, attr, code, ms};
    const SECRET: &[u8] = b"fuzzing-secret";
    let auth: [u8; 16] = *b"0123456789abcdef";
    let packet = |code: u8, attributes: &[(u8, Vec<u8>)], with_ma: bool| {
        let mut p = vec![code, 7, 0, 0];
        p.extend_from_slice(&auth);
        for (t, v) in attributes {
            p.push(*t);
            p.push(2 + v.len() as u8);
            p.extend_from_slice(v);
        }
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        if with_ma {
            crypto::insert_message_authenticator(&mut p).expect("insert");
            // A request's Message-Authenticator is the reply's rule with its own authenticator.
            crypto::sign_reply(&mut p, &auth, SECRET).expect("sign");
            p[4..20].copy_from_slice(&auth);
        }
        p
    };
    let user = (attr::USER_NAME, b"heidi".to_vec());
    let pap = (attr::USER_PASSWORD, crypto::pap_encrypt(b"password", SECRET, &auth).expect("pap"));
    seed(
        "radius",
        "pap",
        &packet(code::ACCESS_REQUEST, &[user.clone(), pap.clone(), (attr::CLASS, b"acme".to_vec())], true),
    );
    seed("radius", "pap-no-ma", &packet(code::ACCESS_REQUEST, &[user.clone(), pap.clone()], false));
    let chap = crypto::chap_password(1, b"password", &auth);
    seed("radius", "chap", &packet(code::ACCESS_REQUEST, &[user.clone(), (attr::CHAP_PASSWORD, chap.to_vec())], true));
    let challenge = [9u8; 16];
    let response = crypto::mschapv2_response(&crypto::nt_hash("password"), &challenge, &[3u8; 16], 1, b"heidi");
    let vsa = |t, v: &[u8]| (attr::VENDOR_SPECIFIC, crypto::vendor_value(ms::VENDOR, t, v).expect("vsa"));
    seed(
        "radius",
        "mschapv2",
        &packet(
            code::ACCESS_REQUEST,
            &[user.clone(), vsa(ms::CHAP_CHALLENGE, &challenge), vsa(ms::CHAP2_RESPONSE, &response)],
            true,
        ),
    );
    seed(
        "radius",
        "totp-answer",
        &packet(code::ACCESS_REQUEST, &[user.clone(), pap, (attr::STATE, vec![5; 16])], true),
    );
    seed("radius", "status-server", &packet(code::STATUS_SERVER, &[], true));
    let mut acct = packet(
        code::ACCOUNTING_REQUEST,
        &[
            user,
            (40, 2u32.to_be_bytes().to_vec()),
            (44, b"session-1".to_vec()),
            (42, 100u32.to_be_bytes().to_vec()),
            (52, 1u32.to_be_bytes().to_vec()),
            (4, vec![10, 0, 0, 1]),
        ],
        false,
    );
    // The Request Authenticator of RFC 2866 is a reply's Response Authenticator over zeros.
    crypto::sign_reply(&mut acct, &[0; 16], SECRET).expect("sign");
    assert!(crypto::accounting_request_ok(&acct, SECRET));
    seed("radius", "accounting-stop", &acct);
    let whole = packet(code::ACCESS_REQUEST, &[(attr::USER_NAME, b"truncated".to_vec())], true);
    seed("radius", "truncated", &whole[..whole.len() - 5]);
}

/// Registered redirect URIs and candidates: the cases of the redirect rule's unit tests (exact, loopback
/// with another port, the sub-domain opt-in, and near misses).
fn redirect_uris() {
    let cases: &[(&str, u8, &str)] = &[
        ("exact", 0, "https://app.example.com/cb\nhttps://app.example.com/cb"),
        ("trailing-slash", 0, "https://app.example.com/cb\nhttps://app.example.com/cb/"),
        ("loopback-port", 0, "http://127.0.0.1/cb\nhttp://127.0.0.1:53121/cb"),
        ("loopback-v6", 0, "http://[::1]:8080/cb?x=1\nhttp://[::1]:1/cb?x=1"),
        ("userinfo", 0, "http://127.0.0.1/cb\nhttp://127.0.0.1@evil.example.com/cb"),
        ("subdomain", 1, "https://*.example.com/cb\nhttps://a.b.example.com/cb"),
        ("subdomain-off", 0, "https://*.example.com/cb\nhttps://a.example.com/cb"),
        ("fragment", 0, "https://app.example.com/cb#x\nhttps://app.example.com/cb#x"),
    ];
    for (name, flags, text) in cases {
        seed("redirect_uri", name, &[&[*flags], text.as_bytes()].concat());
    }
}
