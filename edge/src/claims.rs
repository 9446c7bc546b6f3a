//! The claims of access and refresh tokens.
//!
//! Every token carries the RFC 9068 claims (`iss sub aud exp iat nbf jti client_id scope`). On top of those,
//! an application's `token_format` decides the Casdoor claims its clients read (COMPAT §5.4): `JWT`,
//! `JWT-Empty`, `JWT-Standard` or `JWT-Custom`. Secrets never go into a token: no password hash or salt,
//! TOTP secret or recovery codes (Casdoor puts some of them in `JWT` tokens, §11.3; we emit those keys
//! empty so clients that read them still parse).

use jeton_raft::model::{Application, Role, User};
use serde_json::{json, Map, Value};

/// `tokenType` values.
pub const ACCESS: &str = "access-token";
pub const REFRESH: &str = "refresh-token";

/// What a token is minted for.
pub struct Subject<'a> {
    /// `None` for client credentials: the token is the application's own.
    pub user: Option<&'a User>,
    /// The user's roles (COMPAT §3.3), for `JWT` and `JWT-Custom`.
    pub roles: &'a [Role],
}

/// The registered and Casdoor-common parts of one token.
pub struct TokenFrame<'a> {
    pub issuer: &'a str,
    pub app: &'a Application,
    pub scope: &'a str,
    pub nonce: &'a str,
    pub jti: &'a str,
    pub iat: i64,
    pub exp: i64,
    /// `access-token` or `refresh-token`.
    pub token_type: &'static str,
}

/// Builds the claims of a token.
pub fn build(frame: &TokenFrame, subject: &Subject) -> Map<String, Value> {
    let app = frame.app;
    let mut c = Map::new();
    match subject.user {
        Some(user) => match app.token_format.as_str() {
            "JWT" => full_user(&mut c, user, subject.roles),
            "JWT-Standard" | "" => standard(&mut c, user, frame.scope),
            "JWT-Custom" => custom(&mut c, user, subject.roles, app),
            _ => empty(&mut c, user),
        },
        None => {
            // Client credentials: the application acts for itself (Casdoor: user = application name).
            c.insert("owner".into(), json!(app.organization));
            c.insert("name".into(), json!(app.name));
        }
    }
    c.insert("tokenType".into(), json!(frame.token_type));
    if app.token_format == "JWT-Custom" && frame.token_type == REFRESH {
        // Casdoor's JWT-Custom refresh tokens say so in an extra key (COMPAT §5.4).
        c.insert("tokenType".into(), json!(ACCESS));
        c.insert("TokenType".into(), json!(REFRESH));
    }
    if !frame.nonce.is_empty() || app.token_format == "JWT-Custom" {
        c.insert("nonce".into(), json!(frame.nonce));
    }
    if !frame.scope.is_empty() || app.token_format == "JWT-Custom" {
        c.insert("scope".into(), json!(frame.scope));
    }
    c.insert("azp".into(), json!(app.client_id));
    c.insert("client_id".into(), json!(app.client_id));
    c.insert("iss".into(), json!(frame.issuer));
    let sub = match subject.user {
        Some(u) => u.id.clone(),
        None => format!("admin/{}", app.name),
    };
    c.insert("sub".into(), json!(sub));
    c.insert("aud".into(), json!([app.client_id]));
    c.insert("exp".into(), json!(frame.exp));
    c.insert("nbf".into(), json!(frame.iat));
    c.insert("iat".into(), json!(frame.iat));
    c.insert("jti".into(), json!(frame.jti));
    c
}

fn empty(c: &mut Map<String, Value>, u: &User) {
    c.insert("owner".into(), json!(u.owner));
    c.insert("name".into(), json!(u.name));
    c.insert("id".into(), json!(u.id));
    c.insert("displayName".into(), json!(u.display_name));
    c.insert("avatar".into(), json!(u.avatar));
    c.insert("email".into(), json!(u.email));
    if u.email_verified {
        c.insert("email_verified".into(), json!(true));
    }
    c.insert("phone".into(), json!(u.phone));
}

fn standard(c: &mut Map<String, Value>, u: &User, scope: &str) {
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            c.insert(k.into(), json!(v));
        }
    };
    put("preferred_username", &u.name);
    put("name", &u.display_name);
    put("picture", &u.avatar);
    put("email", &u.email);
    put("gender", &u.gender);
    c.insert("owner".into(), json!(u.owner));
    c.insert("id".into(), json!(u.id));
    if u.email_verified {
        c.insert("email_verified".into(), json!(true));
    }
    let scopes: Vec<&str> = if scope.contains(',') {
        scope.split(',').map(str::trim).collect()
    } else {
        scope.split_whitespace().collect()
    };
    if scopes.contains(&"phone") && !u.phone.is_empty() {
        c.insert("phone_number".into(), json!(u.phone));
    }
    let street: String =
        if scopes.contains(&"address") { u.address.iter().map(|l| format!("{l}\n")).collect() } else { String::new() };
    c.insert(
        "address".into(),
        json!({"formatted": "", "street_address": street, "locality": "", "region": "", "postal_code": "", "country": ""}),
    );
}

/// `JWT`: the user record (without secrets) with roles, permissions and groups.
fn full_user(c: &mut Map<String, Value>, u: &User, roles: &[Role]) {
    let fields = json!({
        "owner": u.owner, "name": u.name, "createdTime": u.created_time, "updatedTime": u.updated_time,
        "deletedTime": u.deleted_time, "id": u.id, "type": u.r#type,
        // Secrets are emitted empty (COMPAT §11.3 recommendation).
        "password": "", "passwordSalt": "", "passwordType": "",
        "displayName": u.display_name, "firstName": u.first_name, "lastName": u.last_name, "avatar": u.avatar,
        "email": u.email, "email_verified": u.email_verified, "phone": u.phone, "countryCode": u.country_code,
        "region": u.region, "location": u.location, "address": u.address, "affiliation": u.affiliation,
        "title": u.title, "homepage": u.homepage, "bio": u.bio, "language": u.language, "gender": u.gender,
        "birthday": u.birthday, "score": u.score, "isAdmin": u.is_admin, "isForbidden": u.is_forbidden,
        "isDeleted": u.is_deleted, "signupApplication": u.signup_application, "ldap": u.ldap,
        "preferredMfaType": u.preferred_mfa_type, "recoveryCodes": [], "totpSecret": "",
        "properties": u.properties, "roles": roles.iter().map(role_object).collect::<Vec<_>>(),
        "permissions": [], "groups": u.groups, "tag": u.tag,
    });
    if let Value::Object(m) = fields {
        c.extend(m);
    }
}

/// A role as Casdoor puts it in tokens: `users` is always null.
pub fn role_object(r: &Role) -> Value {
    json!({
        "owner": r.owner, "name": r.name, "createdTime": r.created_time, "displayName": r.display_name,
        "description": r.description, "users": null, "groups": r.groups, "roles": r.roles,
        "domains": r.domains, "isEnabled": r.is_enabled,
    })
}

/// The value of a user field named as in Casdoor's Go struct (`DisplayName`, `Email`, `Roles`, ...).
fn user_field(u: &User, roles: &[Role], field: &str, names_only: bool) -> Option<Value> {
    Some(match field {
        "Owner" => json!(u.owner),
        "Name" => json!(u.name),
        "Id" => json!(u.id),
        "Type" => json!(u.r#type),
        "DisplayName" => json!(u.display_name),
        "FirstName" => json!(u.first_name),
        "LastName" => json!(u.last_name),
        "Avatar" => json!(u.avatar),
        "Email" => json!(u.email),
        "EmailVerified" => json!(u.email_verified),
        "Phone" => json!(u.phone),
        "CountryCode" => json!(u.country_code),
        "Region" => json!(u.region),
        "Location" => json!(u.location),
        "Address" => json!(u.address),
        "Affiliation" => json!(u.affiliation),
        "Title" => json!(u.title),
        "Homepage" => json!(u.homepage),
        "Bio" => json!(u.bio),
        "Tag" => json!(u.tag),
        "Language" => json!(u.language),
        "Gender" => json!(u.gender),
        "Birthday" => json!(u.birthday),
        "Score" => json!(u.score),
        "IsAdmin" => json!(u.is_admin),
        "IsForbidden" => json!(u.is_forbidden),
        "IsDeleted" => json!(u.is_deleted),
        "SignupApplication" => json!(u.signup_application),
        "Groups" => json!(u.groups),
        "Properties" => json!(u.properties),
        "Roles" if names_only => json!(roles.iter().map(|r| r.name.clone()).collect::<Vec<_>>()),
        "Roles" => json!(roles.iter().map(role_object).collect::<Vec<_>>()),
        "Permissions" | "permissionNames" => json!([]),
        _ => return None,
    })
}

/// `DisplayName` → `displayName`, `IdCard` → `idCard`.
fn claim_name(field: &str) -> String {
    let mut chars = field.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `JWT-Custom`: the application's `token_fields` and `token_attributes`.
fn custom(c: &mut Map<String, Value>, u: &User, roles: &[Role], app: &Application) {
    for field in &app.token_fields {
        if let Some(key) = field.strip_prefix("Properties.") {
            if let Some(v) = u.properties.get(key) {
                c.insert(key.to_string(), json!(v));
            }
        } else if field == "permissionNames" {
            c.insert("permissionNames".into(), json!([]));
        } else if let Some(v) = user_field(u, roles, field, false) {
            c.insert(claim_name(field), v);
        }
    }
    for attr in &app.token_attributes {
        let values: Vec<Value> = if attr.category == "Existing Field" {
            match user_field(u, roles, &attr.value, true) {
                Some(Value::Array(a)) => a,
                Some(v) => vec![v],
                None => vec![],
            }
        } else {
            expand_template(&attr.value, u, roles).into_iter().map(Value::String).collect()
        };
        if values.is_empty() {
            continue;
        }
        let v = if attr.r#type == "String" { values[0].clone() } else { Value::Array(values) };
        c.insert(attr.name.clone(), v);
    }
}

/// Expands `$user.roles` / `$user.groups` (one result each) and `$user.owner|name|email|id|phone`.
fn expand_template(template: &str, u: &User, roles: &[Role]) -> Vec<String> {
    let simple = |t: &str| {
        t.replace("$user.owner", &u.owner)
            .replace("$user.name", &u.name)
            .replace("$user.email", &u.email)
            .replace("$user.id", &u.id)
            .replace("$user.phone", &u.phone)
    };
    if template.contains("$user.roles") {
        roles.iter().map(|r| simple(&template.replace("$user.roles", &r.name))).collect()
    } else if template.contains("$user.groups") {
        u.groups.iter().map(|g| simple(&template.replace("$user.groups", g))).collect()
    } else if template.contains("$user.permissions") {
        Vec::new()
    } else {
        vec![simple(template)]
    }
}

/// The roles of a user (COMPAT §3.3): direct roles (user listed, or a shared group), then every role of
/// the same organization that has one of them as a sub-role, transitively.
pub fn roles_of(user: &User, org_roles: &[Role]) -> Vec<Role> {
    let full = user.full_name();
    let mut included: Vec<bool> = org_roles
        .iter()
        .map(|r| r.users.iter().any(|x| x == &full) || r.groups.iter().any(|g| user.groups.contains(g)))
        .collect();
    loop {
        let mut grew = false;
        for (i, r) in org_roles.iter().enumerate() {
            if included[i] {
                continue;
            }
            let has_included_child = r.roles.iter().any(|child| {
                org_roles.iter().enumerate().any(|(j, cr)| included[j] && format!("{}/{}", cr.owner, cr.name) == *child)
            });
            if has_included_child {
                included[i] = true;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    org_roles.iter().zip(included).filter(|(_, inc)| *inc).map(|(r, _)| r.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, users: &[&str], groups: &[&str], roles: &[&str]) -> Role {
        Role {
            owner: "acme".into(),
            name: name.into(),
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn roles_follow_users_groups_and_sub_roles() {
        // The fixture's shape (COMPAT §10.6): role-staff has sub-roles role-engineers and role-admins.
        let roles = vec![
            role("role-admins", &["acme/alice"], &[], &[]),
            role("role-engineers", &["acme/carol"], &["acme/engineering"], &[]),
            role("role-staff", &[], &[], &["acme/role-engineers", "acme/role-admins"]),
            role("role-unrelated", &["acme/zed"], &[], &[]),
        ];
        let bob = User {
            owner: "acme".into(),
            name: "bob".into(),
            groups: vec!["acme/engineering".into()],
            ..Default::default()
        };
        let names: Vec<String> = roles_of(&bob, &roles).into_iter().map(|r| r.name).collect();
        assert_eq!(names, vec!["role-engineers", "role-staff"]);
        let alice = User { owner: "acme".into(), name: "alice".into(), ..Default::default() };
        let names: Vec<String> = roles_of(&alice, &roles).into_iter().map(|r| r.name).collect();
        assert_eq!(names, vec!["role-admins", "role-staff"]);
        let nobody = User { owner: "acme".into(), name: "x".into(), ..Default::default() };
        assert!(roles_of(&nobody, &roles).is_empty());
    }

    #[test]
    fn no_secret_reaches_a_full_token() {
        let u = User {
            owner: "acme".into(),
            name: "alice".into(),
            id: "u1".into(),
            password: "$2a$10$secret".into(),
            password_salt: "saltsalt".into(),
            totp_secret: "JBSWY3DPEHPK3PXP".into(),
            ..Default::default()
        };
        let app = Application { token_format: "JWT".into(), client_id: "c1".into(), ..Default::default() };
        let frame = TokenFrame {
            issuer: "https://i",
            app: &app,
            scope: "openid",
            nonce: "",
            jti: "admin/x",
            iat: 1,
            exp: 2,
            token_type: ACCESS,
        };
        let claims = Value::Object(build(&frame, &Subject { user: Some(&u), roles: &[] })).to_string();
        assert!(!claims.contains("$2a$10$secret"));
        assert!(!claims.contains("saltsalt"));
        assert!(!claims.contains("JBSWY3DPEHPK3PXP"));
        assert!(claims.contains(r#""passwordSalt":"""#));
    }

    #[test]
    fn custom_format_maps_fields_and_attributes() {
        let mut u = User { owner: "globex".into(), name: "yuki".into(), email: "y@g.jp".into(), ..Default::default() };
        u.properties.insert("department".into(), "design".into());
        let app = Application {
            token_format: "JWT-Custom".into(),
            token_fields: vec!["DisplayName".into(), "Properties.department".into(), "Email".into()],
            token_attributes: vec![jeton_raft::model::TokenAttribute {
                name: "tenant".into(),
                category: "Static Value".into(),
                value: "globex:$user.owner".into(),
                r#type: "String".into(),
            }],
            ..Default::default()
        };
        let frame =
            TokenFrame { issuer: "i", app: &app, scope: "", nonce: "", jti: "j", iat: 1, exp: 2, token_type: ACCESS };
        let c = build(&frame, &Subject { user: Some(&u), roles: &[] });
        assert_eq!(c["department"], json!("design"));
        assert_eq!(c["email"], json!("y@g.jp"));
        assert_eq!(c["tenant"], json!("globex:globex"));
        assert_eq!(c["displayName"], json!(""));
        assert_eq!(c["nonce"], json!(""));
    }
}
