//! Casdoor rows → Jeton records (COMPAT §2, §3). Each function maps ONE row and says why when it cannot.
//!
//! What is deliberately not copied (COMPAT §11): the master password is only ever checked as a hash (the
//! node never compares it with the stored string); roles and permissions keep their `is_enabled`, `state`
//! and `expire_time` so the node can honour them; DPoP-bound tokens are revoked instead of becoming plain
//! bearer tokens.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jeton_edge::keys::KeyImport;
use jeton_edge::password::Scheme;
use jeton_raft::model::{
    Application, CasbinModel, Group, Organization, Permission, Revocation, Role, TokenAttribute, User,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::source::Row;

pub const ORGANIZATION: &[&str] = &[
    "owner",
    "logo",
    "theme_data",
    "name",
    "created_time",
    "display_name",
    "password_type",
    "password_salt",
    "master_password",
    "enable_soft_deletion",
    "tags",
    "default_token_format",
];

pub const USER: &[&str] = &[
    "owner",
    "name",
    "created_time",
    "updated_time",
    "deleted_time",
    "id",
    "type",
    "password",
    "password_salt",
    "password_type",
    "display_name",
    "first_name",
    "last_name",
    "avatar",
    "email",
    "email_verified",
    "phone",
    "country_code",
    "region",
    "location",
    "address",
    "affiliation",
    "title",
    "homepage",
    "bio",
    "tag",
    "language",
    "gender",
    "birthday",
    "real_name",
    "is_verified",
    "score",
    "is_admin",
    "is_forbidden",
    "is_deleted",
    "signup_application",
    "ldap",
    "groups",
    "properties",
    "uid_number",
    "preferred_mfa_type",
    "totp_secret",
    "last_change_password_time",
    "need_update_password",
];

pub const GROUP: &[&str] =
    &["owner", "name", "created_time", "display_name", "type", "parent_id", "is_top_group", "is_enabled", "gid_number"];

pub const APPLICATION: &[&str] = &[
    "owner",
    "logo",
    "homepage_url",
    "theme_data",
    "name",
    "created_time",
    "display_name",
    "organization",
    "cert",
    "client_id",
    "client_secret",
    "redirect_uris",
    "grant_types",
    "scopes",
    "token_format",
    "token_fields",
    "token_attributes",
    "expire_in_hours",
    "refresh_expire_in_hours",
    "failed_signin_limit",
    "failed_signin_frozen_time",
    "token_signing_method",
];

pub const CERT: &[&str] =
    &["owner", "name", "created_time", "display_name", "type", "crypto_algorithm", "certificate", "private_key"];

pub const ROLE: &[&str] = &[
    "owner",
    "name",
    "created_time",
    "display_name",
    "description",
    "users",
    "groups",
    "roles",
    "domains",
    "is_enabled",
];

pub const PERMISSION: &[&str] = &[
    "owner",
    "name",
    "created_time",
    "display_name",
    "description",
    "users",
    "groups",
    "roles",
    "domains",
    "model",
    "adapter",
    "resource_type",
    "resources",
    "actions",
    "effect",
    "is_enabled",
    "expire_time",
    "submitter",
    "approver",
    "approve_time",
    "state",
];

pub const MODEL: &[&str] = &["owner", "name", "created_time", "display_name", "description", "model_text"];

pub const RULE: &[&str] = &["id", "ptype", "v0", "v1", "v2", "v3", "v4", "v5"];

pub const TOKEN: &[&str] = &[
    "owner",
    "name",
    "created_time",
    "application",
    "organization",
    "user",
    "access_token",
    "refresh_token",
    "expires_in",
    "token_type",
    "code_is_used",
];

/// A row's `(owner, name)` key, both checked with [`check_name`].
fn owner_and_name(r: &Row) -> Result<(String, String), String> {
    let (owner, name) = (r.string("owner"), r.string("name"));
    check_name("owner", &owner)?;
    check_name("name", &name)?;
    Ok((owner, name))
}

/// Names become parts of keys and of `owner/name` ids: the node's own rule
/// ([`jeton_raft::apply::name_problem`], up to 255 characters as Casdoor's `varchar(255)`), checked here so
/// the row is reported instead of failing a whole batch.
pub fn check_name(what: &str, n: &str) -> Result<(), String> {
    match jeton_raft::apply::name_problem(n) {
        Some(problem) => Err(format!("{what}: {problem}")),
        None => Ok(()),
    }
}

/// A record to import, and — when its password (or master password) could not be kept — why. Such a
/// record is still imported, without it: the user exists (lists, groups, roles, LDAP, profile) and an
/// admin can set a password later.
pub type WithoutPassword<T> = (T, Option<String>);

/// Why a stored password cannot be kept: its scheme is not one of Casdoor's eight, or checking it would
/// cost more than one check may ([`jeton_edge::password::work`]). `type_name` is the effective scheme.
fn unusable_password(type_name: &str, stored: &str) -> Option<String> {
    match Scheme::parse(type_name) {
        None => Some(format!("unsupported password_type {type_name:?}")),
        Some(scheme) => jeton_edge::password::work(scheme, stored).err().map(|e| format!("password hash refused: {e}")),
    }
}

pub fn organization(r: &Row) -> Result<WithoutPassword<Organization>, String> {
    let name = r.string("name");
    check_name("name", &name)?;
    let mut password_type = r.string("password_type");
    let mut master_password = r.string("master_password");
    let mut dropped = None;
    if !password_type.is_empty() && Scheme::parse(&password_type).is_none() {
        dropped = Some(format!(
            "unsupported password_type {password_type:?}: imported without a scheme (passwords set later are hashed \
             with argon2id){}",
            if master_password.is_empty() { "" } else { " and without its master password" }
        ));
        password_type.clear();
        master_password.clear();
    } else if !master_password.is_empty() && !password_type.is_empty() {
        if let Some(why) = unusable_password(&password_type, &master_password) {
            dropped = Some(format!("master password not imported: {why}"));
            master_password.clear();
        }
    }
    let org = Organization {
        name,
        display_name: r.string("display_name"),
        created_time: r.string("created_time"),
        password_type,
        password_salt: r.string("password_salt"),
        master_password,
        enable_soft_deletion: r.b("enable_soft_deletion"),
        tags: r.list("tags")?,
        default_token_format: r.string("default_token_format"),
        logo: r.string("logo"),
        theme_color: theme_color(r),
        ..Default::default()
    };
    Ok((org, dropped))
}

/// A user of an organization whose password scheme is `org_type`.
pub fn user(r: &Row, org_type: &str) -> Result<WithoutPassword<User>, String> {
    let (owner, name) = owner_and_name(r)?;
    let id = r.string("id");
    if id.is_empty() || id.contains('\0') {
        return Err("user has no id".into());
    }
    let mut password = r.string("password");
    let mut password_type = r.string("password_type");
    let mut password_salt = r.string("password_salt");
    let dropped = match (password.is_empty(), password_type.is_empty()) {
        (true, _) => None,
        (false, false) => unusable_password(&password_type, &password),
        (false, true) => match unusable_password(org_type, &password) {
            Some(_) if Scheme::parse(org_type).is_none() => Some(format!(
                "password_type is empty and the organization's {org_type:?} is not a password scheme: the \
                 password could never be checked"
            )),
            other => other,
        },
    };
    if dropped.is_some() || (!password_type.is_empty() && Scheme::parse(&password_type).is_none()) {
        // No usable password: none at all, so the user cannot sign in with one until an admin sets one.
        password.clear();
        password_type.clear();
        password_salt.clear();
    }
    let properties = match r.json("properties")? {
        Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
        Value::Null => BTreeMap::new(),
        _ => return Err("column properties is not a JSON object".into()),
    };
    let user = User {
        owner,
        name,
        id,
        created_time: r.string("created_time"),
        updated_time: r.string("updated_time"),
        deleted_time: r.string("deleted_time"),
        r#type: r.string("type"),
        password,
        password_salt,
        password_type,
        display_name: r.string("display_name"),
        first_name: r.string("first_name"),
        last_name: r.string("last_name"),
        avatar: r.string("avatar"),
        email: r.string("email"),
        email_verified: r.b("email_verified"),
        phone: r.string("phone"),
        country_code: r.string("country_code"),
        region: r.string("region"),
        location: r.string("location"),
        address: r.list("address")?,
        affiliation: r.string("affiliation"),
        title: r.string("title"),
        homepage: r.string("homepage"),
        bio: r.string("bio"),
        tag: r.string("tag"),
        language: r.string("language"),
        gender: r.string("gender"),
        birthday: r.string("birthday"),
        real_name: r.string("real_name"),
        is_verified: r.b("is_verified"),
        score: r.i("score"),
        is_admin: r.b("is_admin"),
        is_forbidden: r.b("is_forbidden"),
        is_deleted: r.b("is_deleted"),
        signup_application: r.string("signup_application"),
        ldap: r.string("ldap"),
        groups: r.list("groups")?,
        properties,
        uid_number: r.i("uid_number"),
        preferred_mfa_type: r.string("preferred_mfa_type"),
        totp_secret: r.string("totp_secret"),
        last_change_password_time: r.string("last_change_password_time"),
        need_update_password: r.b("need_update_password"),
    };
    Ok((user, dropped))
}

pub fn group(r: &Row) -> Result<Group, String> {
    let (owner, name) = owner_and_name(r)?;
    Ok(Group {
        owner,
        name,
        display_name: r.string("display_name"),
        created_time: r.string("created_time"),
        r#type: r.string("type"),
        parent_id: r.string("parent_id"),
        is_top_group: r.b("is_top_group"),
        is_enabled: r.b("is_enabled"),
        gid_number: r.i("gid_number"),
    })
}

/// How one of Casdoor's redirect URI entries is carried over (COMPAT §6.6). Jeton matches redirect URIs
/// exactly (OAuth 2.0 Security BCP), with any port for loopback URIs and, per application and only when
/// asked for, sub-domains of an `https://*.domain/path` entry; Casdoor's looser rules must not silently widen
/// what an imported application accepts.
#[derive(Debug, PartialEq)]
pub enum CarriedRedirect {
    /// An absolute URI: kept as it is, matched exactly.
    Exact(String),
    /// A host-only entry (`app.example.com/cb`): kept as its `https://` URI, matched exactly.
    Narrowed(String),
    /// A regular expression or a sub-domain pattern: not carried, with why.
    Dropped(String),
}

/// Characters of Casdoor's regular-expression entries that no URI Jeton matches exactly contains.
const REGEX_CHARACTERS: &[char] = &['^', '$', '*', '(', ')', '[', ']', '|', '\\', '+', '{', '}'];

pub fn carry_redirect_uri(entry: &str) -> CarriedRedirect {
    let t = entry.trim();
    let pattern_help = "opt in per application with redirectUriSubdomains and an https://*.domain/path entry";
    if t.contains(REGEX_CHARACTERS) || t.contains(".*") {
        return CarriedRedirect::Dropped(format!("{t:?} is a regular expression; Jeton matches redirect URIs exactly"));
    }
    if let Some((scheme, rest)) = t.split_once("://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if scheme.is_empty() || host.is_empty() || t.contains('#') {
            return CarriedRedirect::Dropped(format!("{t:?} is not an absolute URI without a fragment"));
        }
        return CarriedRedirect::Exact(t.to_string());
    }
    if t.starts_with('.') {
        return CarriedRedirect::Dropped(format!("{t:?} stands for every sub-domain; {pattern_help}"));
    }
    let host = t.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() || !host.contains('.') && host != "localhost" {
        return CarriedRedirect::Dropped(format!("{t:?} names no host"));
    }
    let path = &t[host.len()..];
    let path = if path.is_empty() { "/" } else { path };
    CarriedRedirect::Narrowed(format!("https://{host}{path}"))
}

/// The primary colour of a row's `theme_data` (Casdoor's `{"colorPrimary": "#5734d3", ...}`), if it has one.
fn theme_color(r: &Row) -> String {
    match r.json("theme_data") {
        Ok(Value::Object(m)) => m.get("colorPrimary").and_then(Value::as_str).unwrap_or("").to_string(),
        _ => String::new(),
    }
}

/// An application; `cert` is the signing key's kid (Casdoor: empty = `cert-built-in`, §3.1). Redirect URIs
/// are carried by [`carry_redirect_uri`]; what changed is returned with the application, for the report.
pub fn application(r: &Row) -> Result<(Application, Vec<String>), String> {
    let name = r.string("name");
    check_name("name", &name)?;
    let client_id = r.string("client_id");
    check_name("client_id", &client_id)?;
    let organization = r.string("organization");
    check_name("organization", &organization)?;
    let secret = r.string("client_secret");
    let scopes = match r.json("scopes")? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                Value::Object(m) => m.get("name").and_then(Value::as_str).map(str::to_string),
                _ => None,
            })
            .filter(|s| !s.is_empty())
            .collect(),
        Value::Null => Vec::new(),
        _ => return Err("column scopes is not a JSON list".into()),
    };
    let token_attributes = match r.json("token_attributes")? {
        Value::Null => Vec::new(),
        v => serde_json::from_value::<Vec<TokenAttribute>>(v)
            .map_err(|e| format!("column token_attributes is not a list of attributes: {e}"))?,
    };
    let cert = match r.s("cert") {
        "" => "cert-built-in".to_string(),
        c => c.to_string(),
    };
    let mut redirect_uris = Vec::new();
    let mut changed = Vec::new();
    for entry in r.list("redirect_uris")? {
        match carry_redirect_uri(&entry) {
            CarriedRedirect::Exact(u) => redirect_uris.push(u),
            CarriedRedirect::Narrowed(u) => {
                changed
                    .push(format!("{entry:?} carried as {u:?} (exact match; Casdoor also took http and sub-domains)"));
                redirect_uris.push(u);
            }
            CarriedRedirect::Dropped(why) => changed.push(format!("not carried: {why}")),
        }
    }
    let app = Application {
        owner: "admin".into(),
        name,
        display_name: r.string("display_name"),
        created_time: r.string("created_time"),
        organization,
        client_id,
        client_secret_digest: if secret.is_empty() { Vec::new() } else { Sha256::digest(secret.as_bytes()).to_vec() },
        redirect_uris,
        grant_types: r.list("grant_types")?,
        scopes,
        token_format: r.string("token_format"),
        cert,
        expire_in_hours: r.f("expire_in_hours"),
        refresh_expire_in_hours: r.f("refresh_expire_in_hours"),
        token_fields: r.list("token_fields")?,
        token_attributes,
        failed_signin_limit: r.i("failed_signin_limit").clamp(0, i32::MAX as i64) as i32,
        failed_signin_frozen_time: r.i("failed_signin_frozen_time").clamp(0, i32::MAX as i64) as i32,
        logo: r.string("logo"),
        homepage_url: r.string("homepage_url"),
        theme_color: theme_color(r),
        ..Default::default()
    };
    Ok((app, changed))
}

/// What a cert row is.
pub enum Cert {
    /// A JWT signing key (type `x509`).
    Signing(KeyImport),
    /// Not a signing key (SSL/TLS or payment certificates): not imported, by design.
    NotSigning(String),
}

/// The algorithm Casdoor signs an application's tokens with, from its `token_signing_method` (COMPAT §5.2,
/// §11.7): the five methods it knows by name; RS256 for an empty method and for any other one that names
/// RSA (`RS384` included); none for the rest (`PS256`, `EdDSA`, ...), for which Casdoor fails to sign, so no
/// token of it exists. Whether the cert's key can sign it is checked with the key ([`cert`]).
pub fn casdoor_signing_algorithm(token_signing_method: &str) -> Option<&'static str> {
    match token_signing_method {
        "RS256" => Some("RS256"),
        "RS512" => Some("RS512"),
        "ES256" => Some("ES256"),
        "ES384" => Some("ES384"),
        "ES512" => Some("ES512"),
        m if m.is_empty() || m.contains("RS") => Some("RS256"),
        _ => None,
    }
}

/// A cert row. `signed_with` holds, per imported application using this cert, the algorithm Casdoor
/// signed its tokens with ([`casdoor_signing_algorithm`]); the cert row's own `crypto_algorithm` only says
/// what Casdoor's JWKS claimed. The key accepts exactly the algorithms of those its key could sign (Casdoor
/// failed on the others: an RSA algorithm with an EC key, an EC algorithm of another curve), and signs with
/// one of them: the row's algorithm when an application used it, else the one most applications used. A
/// cert no application signed with keeps the row's algorithm.
pub fn cert(r: &Row, signed_with: &[&str]) -> Result<Cert, String> {
    let name = r.string("name");
    check_name("name", &name)?;
    let kind = r.string("type");
    if !kind.eq_ignore_ascii_case("x509") {
        return Ok(Cert::NotSigning(format!("{kind} certificate, not a token signing key")));
    }
    let mut k = KeyImport {
        kid: name.clone(),
        owner: r.string("owner"),
        display_name: r.string("display_name"),
        algorithm: r.string("crypto_algorithm"),
        created_at: r.unix("created_time"),
        certificate: r.string("certificate"),
        private_key: r.string("private_key"),
        accepted_algorithms: Vec::new(),
    };
    // Per algorithm the key can sign: how many applications signed with it.
    let mut produced: BTreeMap<&str, usize> = BTreeMap::new();
    for alg in signed_with {
        if let Some(n) = produced.get_mut(alg) {
            *n += 1;
        } else if jeton_edge::keys::parse_import(&KeyImport { algorithm: alg.to_string(), ..k.clone() }).is_ok() {
            produced.insert(alg, 1);
        }
    }
    if !produced.contains_key(k.algorithm.as_str()) {
        if let Some((alg, _)) = produced.iter().max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0))) {
            k.algorithm = alg.to_string();
        }
    }
    k.accepted_algorithms = match produced.is_empty() {
        true => vec![k.algorithm.clone()],
        false => produced.keys().map(|a| a.to_string()).collect(),
    };
    // Checked here so a bad key is reported with its row (the node checks again when it seals it).
    jeton_edge::keys::parse_import(&k).map_err(|e| e.to_string())?;
    Ok(Cert::Signing(k))
}

pub fn role(r: &Row) -> Result<Role, String> {
    let (owner, name) = owner_and_name(r)?;
    Ok(Role {
        owner,
        name,
        display_name: r.string("display_name"),
        created_time: r.string("created_time"),
        description: r.string("description"),
        users: r.list("users")?,
        groups: r.list("groups")?,
        roles: r.list("roles")?,
        domains: r.list("domains")?,
        is_enabled: r.b("is_enabled"),
    })
}

pub fn model(r: &Row) -> Result<CasbinModel, String> {
    let (owner, name) = owner_and_name(r)?;
    Ok(CasbinModel {
        owner,
        name,
        display_name: r.string("display_name"),
        created_time: r.string("created_time"),
        description: r.string("description"),
        model_text: r.string("model_text"),
    })
}

/// A permission with its policy lines (from `permission_rule`, §3.4).
pub fn permission(r: &Row, policies: Vec<Vec<String>>) -> Result<Permission, String> {
    let (owner, name) = owner_and_name(r)?;
    Ok(Permission {
        owner,
        name,
        display_name: r.string("display_name"),
        created_time: r.string("created_time"),
        description: r.string("description"),
        users: r.list("users")?,
        groups: r.list("groups")?,
        roles: r.list("roles")?,
        domains: r.list("domains")?,
        model: r.string("model"),
        adapter: r.string("adapter"),
        resource_type: r.string("resource_type"),
        resources: r.list("resources")?,
        actions: r.list("actions")?,
        effect: r.string("effect"),
        is_enabled: r.b("is_enabled"),
        expire_time: r.string("expire_time"),
        submitter: r.string("submitter"),
        approver: r.string("approver"),
        approve_time: r.string("approve_time"),
        state: r.string("state"),
        policies,
    })
}

/// The claims of a JWT, read without verifying (the node verifies tokens itself).
pub fn jwt_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// What becomes of an issued token (§5.1, §5.6, §5.7).
#[derive(Debug, PartialEq)]
pub enum TokenFate {
    /// Expired: nothing to carry over.
    Expired,
    /// Still valid: it verifies by its signature with the imported key; its issuer must be accepted.
    Valid { issuer: String },
    /// Must stop working at the node: revoked in Casdoor (`expires_in` 0), never handed out (authorization
    /// code not exchanged), or DPoP-bound (the node checks no DPoP proofs, so it must not become a bearer
    /// token).
    Revoke { revocation: Revocation, issuer: String, why: &'static str },
}

pub fn token(r: &Row, now: i64) -> Result<TokenFate, String> {
    let claims = jwt_claims(r.s("access_token")).ok_or("access_token is not a JWT")?;
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or("access token has no exp")?;
    let jti = claims.get("jti").and_then(Value::as_str).unwrap_or_default().to_string();
    let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or_default().to_string();
    if exp <= now {
        return Ok(TokenFate::Expired);
    }
    if jti.is_empty() {
        return Err("access token has no jti".into());
    }
    let created = r.unix("created_time");
    let revoke = |why| TokenFate::Revoke {
        revocation: Revocation { jti: jti.clone(), expires_at: exp, revoked_at: created },
        issuer: issuer.clone(),
        why,
    };
    if r.i("expires_in") <= 0 {
        return Ok(revoke("revoked in Casdoor"));
    }
    if r.s("token_type").eq_ignore_ascii_case("DPoP") {
        return Ok(revoke("DPoP-bound"));
    }
    if r.has("code_is_used") && !r.b("code_is_used") {
        return Ok(revoke("authorization code never exchanged"));
    }
    Ok(TokenFate::Valid { issuer })
}

#[cfg(test)]
mod tests {

    #[test]
    fn redirect_uris_are_carried_exactly_and_casdoor_patterns_are_reported() {
        use super::{carry_redirect_uri, CarriedRedirect::*};
        assert_eq!(carry_redirect_uri("https://app.example.com/cb"), Exact("https://app.example.com/cb".into()));
        assert_eq!(carry_redirect_uri(" http://127.0.0.1:8080/cb?x=1 "), Exact("http://127.0.0.1:8080/cb?x=1".into()));
        assert_eq!(carry_redirect_uri("app.example.com/cb"), Narrowed("https://app.example.com/cb".into()));
        assert_eq!(carry_redirect_uri("app.example.com"), Narrowed("https://app.example.com/".into()));
        for dropped in
            ["^https://.*\\.example\\.com/cb$", ".example.com", "https://x.example.com/cb#f", "cb", "https:///cb"]
        {
            assert!(matches!(carry_redirect_uri(dropped), Dropped(_)), "{dropped}");
        }
    }

    use std::collections::HashMap;

    use super::*;

    fn row<'a>(columns: &'a HashMap<&'static str, usize>, values: &[Option<&str>]) -> Row<'a> {
        Row { columns, values: values.iter().map(|v| v.map(str::to_string)).collect() }
    }

    #[test]
    fn json_lists_accept_every_empty_form_and_null_is_zero() {
        let cols: HashMap<&'static str, usize> = [("groups", 0), ("is_admin", 1), ("score", 2)].into_iter().collect();
        for empty in [None, Some(""), Some("null"), Some("[]"), Some("  null ")] {
            let r = row(&cols, &[empty, None, None]);
            assert_eq!(r.list("groups"), Ok(vec![]), "{empty:?}");
            assert!(!r.b("is_admin"));
            assert_eq!(r.i("score"), 0);
        }
        let r = row(&cols, &[Some(r#"["acme/a","acme/b"]"#), Some("1"), Some("7")]);
        assert_eq!(r.list("groups").expect("list"), ["acme/a", "acme/b"]);
        assert!(r.b("is_admin"));
        assert_eq!(r.i("score"), 7);
        // PostgreSQL booleans as text.
        let r = row(&cols, &[Some("{"), Some("true"), Some("x")]);
        assert!(r.b("is_admin"));
        assert!(r.list("groups").is_err(), "broken JSON is an error, not an empty list");
        // A column the table does not have reads as its zero value.
        assert_eq!(r.s("no_such_column"), "");
    }

    /// A user whose password cannot be checked is imported without one (and says why); a user whose row
    /// is broken (name, id) is refused. A 255-character non-ASCII name is a name.
    #[test]
    fn users_without_a_usable_password_are_kept_and_bad_names_refused() {
        let cols: HashMap<&'static str, usize> =
            [("owner", 0), ("name", 1), ("id", 2), ("password", 3), ("password_type", 4), ("password_salt", 5)]
                .into_iter()
                .collect();
        let user_of = |password: &str, password_type: &str, org_type: &str| {
            let values = [Some("acme"), Some("a"), Some("u-1"), Some(password), Some(password_type), Some("salt")];
            user(&row(&cols, &values), org_type)
        };
        let (u, dropped) = user_of("x", "plain", "bcrypt").unwrap();
        assert_eq!((u.password.as_str(), u.password_type.as_str(), dropped), ("x", "plain", None));
        let (u, dropped) = user_of("x", "", "bcrypt").unwrap();
        assert_eq!((u.password.as_str(), dropped), ("x", None), "empty = the organization's scheme");
        for (password_type, org_type, why) in [
            ("sha3", "bcrypt", "sha3"),
            ("", "", "organization's \"\" is not a password scheme"),
            ("", "sha1", "not a password scheme"),
            ("argon2id", "bcrypt", "over the cap"),
        ] {
            let huge =
                "$argon2id$v=19$m=2097152,t=1,p=4$AAECAwQFBgcICQoLDA0ODw$Tn6Kri1FkXIcvNI846j3rVw0u9kaBVJAs9hHaQ38LzM";
            let password = if password_type == "argon2id" { huge } else { "x" };
            let (u, dropped) = user_of(password, password_type, org_type).unwrap();
            assert!(dropped.as_deref().is_some_and(|d| d.contains(why)), "{password_type}/{org_type}: {dropped:?}");
            assert_eq!((u.password.as_str(), u.password_type.as_str(), u.password_salt.as_str()), ("", "", ""));
            assert_eq!((u.owner.as_str(), u.name.as_str(), u.id.as_str()), ("acme", "a", "u-1"));
        }
        // No password and an unknown type: nothing is lost, the type is not kept.
        let (u, dropped) = user_of("", "sha3", "bcrypt").unwrap();
        assert_eq!((u.password_type.as_str(), dropped), ("", None));
        let long = "ü".repeat(255);
        let values = [Some("acme"), Some(long.as_str()), Some("u-2"), Some(""), Some(""), None];
        assert_eq!(user(&row(&cols, &values), "bcrypt").unwrap().0.name, long, "255 characters, 510 bytes");
        let longer = "ü".repeat(256);
        let values = [Some("acme"), Some(longer.as_str()), Some("u-2"), Some(""), Some(""), None];
        assert!(user(&row(&cols, &values), "bcrypt").unwrap_err().contains("255 characters"));
        let slash = row(&cols, &[Some("acme"), Some("a/b"), Some("u-1"), Some(""), Some("")]);
        assert!(user(&slash, "bcrypt").is_err());
        let no_id = row(&cols, &[Some("acme"), Some("a"), None, Some(""), Some("")]);
        assert!(user(&no_id, "bcrypt").is_err());
    }

    #[test]
    fn casdoor_signs_by_the_applications_method_not_the_cert_row() {
        // COMPAT §5.2 and §11.7.
        for (method, alg) in [
            ("", Some("RS256")),
            ("RS256", Some("RS256")),
            ("RS384", Some("RS256")),
            ("RS512", Some("RS512")),
            ("ES256", Some("ES256")),
            ("ES384", Some("ES384")),
            ("ES512", Some("ES512")),
            ("PS256", None),
            ("EdDSA", None),
            ("HS256", None),
        ] {
            assert_eq!(casdoor_signing_algorithm(method), alg, "{method:?}");
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/casdoor/keys/");
        let file = |f: &str| std::fs::read_to_string(format!("{dir}{f}")).expect("fixture key");
        let cols: HashMap<&'static str, usize> =
            [("name", 0), ("type", 1), ("crypto_algorithm", 2), ("certificate", 3), ("private_key", 4)]
                .into_iter()
                .collect();
        let imported = |name: &str, row_alg: &str, signed_with: &[&str]| {
            let (pem, key) = (file(&format!("{name}.pem")), file(&format!("{name}.key")));
            let values = [Some(name), Some("x509"), Some(row_alg), Some(pem.as_str()), Some(key.as_str())];
            match cert(&row(&cols, &values), signed_with) {
                Ok(Cert::Signing(k)) => (k.algorithm, k.accepted_algorithms),
                Ok(Cert::NotSigning(why)) => panic!("{why}"),
                Err(e) => panic!("{name}: {e}"),
            }
        };
        let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The row says RS512, the application signed RS256 (its method RS384): RS256 it is.
        assert_eq!(imported("cert-acme-rs512", "RS512", &["RS256"]), ("RS256".into(), strs(&["RS256"])));
        // Two applications, two algorithms: both verify; it signs with the row's, which one of them used.
        assert_eq!(
            imported("cert-acme-rs512", "RS512", &["RS256", "RS512", "RS256"]),
            ("RS512".into(), strs(&["RS256", "RS512"]))
        );
        // Without the row's among them, the one most applications used.
        assert_eq!(
            imported("cert-built-in", "PS256", &["RS512", "RS256", "RS512"]),
            ("RS512".into(), strs(&["RS256", "RS512"]))
        );
        // What the key could not sign, Casdoor never issued: an EC algorithm with an RSA key, RS256 (an empty
        // method) with an EC key, ES384 with a P-256 key.
        assert_eq!(imported("cert-acme-rs512", "RS512", &["ES256"]), ("RS512".into(), strs(&["RS512"])));
        assert_eq!(imported("cert-acme-es256", "ES256", &["RS256", "ES384"]), ("ES256".into(), strs(&["ES256"])));
        // No application: the row's algorithm alone.
        assert_eq!(imported("cert-globex-es384", "ES384", &[]), ("ES384".into(), strs(&["ES384"])));
    }

    fn jwt(claims: &str) -> String {
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn token_fates() {
        let cols: HashMap<&'static str, usize> =
            [("access_token", 0), ("expires_in", 1), ("token_type", 2), ("code_is_used", 3), ("created_time", 4)]
                .into_iter()
                .collect();
        let valid = jwt(r#"{"exp":2000,"jti":"admin/t1","iss":"https://auth.example.com"}"#);
        let t = |tok: &str, expires_in: &str, typ: &str, used: &str| {
            let values = [Some(tok), Some(expires_in), Some(typ), Some(used), Some("2026-11-20T08:00:00Z")];
            token(&row(&cols, &values), 1000)
        };
        assert_eq!(
            t(&valid, "3600", "Bearer", "true"),
            Ok(TokenFate::Valid { issuer: "https://auth.example.com".into() })
        );
        assert!(matches!(t(&valid, "0", "Bearer", "true"), Ok(TokenFate::Revoke { why: "revoked in Casdoor", .. })));
        assert!(matches!(t(&valid, "3600", "DPoP", "1"), Ok(TokenFate::Revoke { why: "DPoP-bound", .. })));
        assert!(matches!(t(&valid, "3600", "Bearer", "false"), Ok(TokenFate::Revoke { .. })));
        let expired = jwt(r#"{"exp":999,"jti":"admin/t2"}"#);
        assert_eq!(t(&expired, "0", "Bearer", "true"), Ok(TokenFate::Expired));
        assert!(t("not-a-jwt", "3600", "Bearer", "true").is_err());
        if let Ok(TokenFate::Revoke { revocation, .. }) = t(&valid, "0", "Bearer", "true") {
            assert_eq!(revocation.jti, "admin/t1");
            assert_eq!(revocation.expires_at, 2000);
        }
    }
}
