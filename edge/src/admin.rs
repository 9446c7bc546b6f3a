//! The admin API: create, read, update and delete organizations, users, applications, signing keys, roles
//! and groups, on Casdoor's paths and in Casdoor's JSON shapes (`/api/get-users?owner=ORG`, `/api/add-user`,
//! ...), so Casdoor SDKs work unchanged.
//!
//! Authorized by a Bearer token of a global administrator (a user of the admin organization, or the admin
//! application's own client-credentials token) or by HTTP Basic with the admin application's client id and
//! secret. Anything else gets 401/403 and changes nothing. Answers use Casdoor's envelope
//! `{"status","msg","data","data2"}`, with an HTTP status that matches.

use jeton_raft::cluster::MembershipChange;
use jeton_raft::model::{AcceptedAlgorithms, Application, Group, Organization, Role, SigningKey, User};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jeton_raft::{Command, CommandResponse, Outcome, PutMode, ReplicaNode, WriteError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::EdgeError;
use crate::keys::{Alg, Kek, KeyImport};
use crate::oauth::Params;
use crate::service::{now, sha256, Edge};

/// An admin API answer: HTTP status and Casdoor envelope.
pub struct AdminReply {
    pub status: u16,
    pub body: Value,
}

fn ok(data: Value) -> AdminReply {
    AdminReply { status: 200, body: json!({"status": "ok", "msg": "", "data": data, "data2": null}) }
}

fn ok2(data: Value, data2: Value) -> AdminReply {
    AdminReply { status: 200, body: json!({"status": "ok", "msg": "", "data": data, "data2": data2}) }
}

fn fail(status: u16, msg: impl Into<String>) -> AdminReply {
    AdminReply { status, body: json!({"status": "error", "msg": msg.into(), "data": null, "data2": null}) }
}

/// An admin API call that may go ahead: its path is served and its caller is an administrator. Only
/// [`Edge::admin_gate`] makes one.
pub struct AdminGrant {
    path: &'static str,
}

impl AdminGrant {
    /// `POST /api/jeton/apply`, whose body may be large.
    pub fn is_apply(&self) -> bool {
        self.path == APPLY_PATH
    }
}

/// Casdoor's own admin paths (not Jeton's import and cluster APIs): where Casdoor's SDKs may authenticate
/// with `clientId` / `clientSecret` query parameters.
pub fn casdoor_path(path: &str) -> bool {
    ADMIN_PATHS.contains(&path) && path != APPLY_PATH && !path.contains("cluster") && path != "rotate-cert"
}

const APPLY_PATH: &str = "jeton/apply";

/// Who is calling the admin API.
pub enum Caller {
    Admin,
    NotAdmin,
    Anonymous(&'static str),
}

/// The credentials of an admin request, as the front end found them.
pub struct AdminAuth<'a> {
    pub bearer: Option<&'a str>,
    pub basic: Option<(&'a str, &'a str)>,
}

const MASK: &str = "***";

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Splits `owner/name`.
fn split_id(id: &str) -> Option<(&str, &str)> {
    let (o, n) = id.split_once('/')?;
    (!o.is_empty() && !n.is_empty() && !n.contains('/')).then_some((o, n))
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A user as the admin API shows it: no hash, salt or TOTP secret.
fn user_view(u: &User) -> Value {
    let mut v = to_value(u);
    if let Some(m) = v.as_object_mut() {
        let pw = if u.password.is_empty() { "" } else { MASK };
        m.insert("password".into(), json!(pw));
        m.insert("passwordSalt".into(), json!(""));
        m.insert("totpSecret".into(), json!(""));
    }
    v
}

/// An organization as the admin API shows it: the master password and the organization salt masked, as a
/// user's password is (sending `***` back keeps the stored value).
fn org_view(o: &Organization) -> Value {
    let mut v = to_value(o);
    if let Some(m) = v.as_object_mut() {
        // Casdoor's organizations all belong to `admin`.
        m.insert("owner".into(), json!("admin"));
        for (key, stored) in [("masterPassword", &o.master_password), ("passwordSalt", &o.password_salt)] {
            m.insert(key.into(), json!(if stored.is_empty() { "" } else { MASK }));
        }
    }
    v
}

/// A signing key as Casdoor's `cert`: public parts only, with Casdoor's JSON types (`createdTime` is
/// RFC 3339 text). `retireAt` (unix seconds, 0 while the key signs) is Jeton's own.
fn cert_view(k: &SigningKey) -> Value {
    json!({
        "owner": k.owner, "name": k.kid, "createdTime": rfc3339(k.created_at), "displayName": k.display_name,
        "scope": "JWT", "type": "x509", "cryptoAlgorithm": k.algorithm, "certificate": k.certificate,
        "publicKey": k.public_key_pem, "privateKey": "", "retireAt": k.retire_at,
    })
}

/// RFC 3339 (UTC) of unix seconds.
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The JSON body of a write call, normalized ([`normalize_sdk_body`]), or the 400 to answer.
pub(crate) fn write_body(body: &[u8]) -> Result<Value, AdminReply> {
    match serde_json::from_slice(body) {
        Ok(mut v) => {
            normalize_sdk_body(&mut v);
            Ok(v)
        }
        Err(e) => Err(fail(400, format!("the body is not valid JSON: {e}"))),
    }
}

/// Write bodies as Casdoor's SDKs send them: `null` for an absent value (dropped, so the field takes its
/// default) and `[""]` for an empty list (the Python SDK's default for `grantTypes`, `tags`, `users`, ...;
/// empty strings are dropped from lists).
fn normalize_sdk_body(body: &mut Value) {
    if let Some(m) = body.as_object_mut() {
        m.retain(|_, v| !v.is_null());
        for v in m.values_mut() {
            if let Some(list) = v.as_array_mut() {
                list.retain(|item| item.as_str() != Some(""));
            }
        }
    }
}

impl Edge {
    /// An application as the admin API shows it: the secret is never readable (only its digest is
    /// stored); `scopes` as Casdoor's scope objects; `tokenSigningMethod` the algorithm of its key; the
    /// lockout limits the effective ones (a limit stored as 0 means Casdoor's default).
    fn app_view(&self, a: &Application) -> Value {
        app_fields(a, self.keyring.get(&a.cert).map(|k| k.alg.as_str()).unwrap_or(""))
    }
}

/// [`Edge::app_view`] for an application whose key has algorithm `alg`.
fn app_fields(a: &Application, alg: &str) -> Value {
    let mut v = to_value(a);
    if let Some(m) = v.as_object_mut() {
        m.remove("clientSecretDigest");
        m.insert("clientSecret".into(), json!(MASK));
        m.insert("tokenSigningMethod".into(), json!(alg));
        let lockout = crate::passwords::Lockout::of(a);
        m.insert("failedSigninLimit".into(), json!(lockout.limit));
        m.insert("failedSigninFrozenTime".into(), json!(lockout.frozen_for.as_secs() / 60));
        let scopes: Vec<Value> =
            a.scopes.iter().map(|s| json!({"name": s, "displayName": s, "description": ""})).collect();
        m.insert("scopes".into(), Value::Array(scopes));
    }
    v
}

impl Edge {
    /// Decides who the caller is.
    pub fn admin_caller(&self, auth: &AdminAuth) -> Caller {
        if let Some((id, secret)) = auth.basic {
            return match self.authenticate_client(id, secret) {
                Ok(c) if c.is_admin_app => Caller::Admin,
                Ok(_) => Caller::NotAdmin,
                Err(_) => Caller::Anonymous("client authentication failed"),
            };
        }
        let Some(token) = auth.bearer else {
            return Caller::Anonymous("an admin Bearer token or the admin client's credentials are required");
        };
        match self.check_token(token) {
            Ok(Some(t)) if !t.is_refresh => match &t.user {
                Some(u) if u.owner == self.config.admin_org => Caller::Admin,
                None if t.client.is_admin_app => Caller::Admin,
                _ => Caller::NotAdmin,
            },
            _ => Caller::Anonymous("the token is invalid, expired or revoked"),
        }
    }

    /// Checks an admin API call before its body is read: the path exists, the method fits it, and the
    /// caller is an administrator. `path` is the part after `/api/`. What comes back opens
    /// [`Edge::admin`]; a refusal is the answer to send (404, 405, 401 or 403).
    pub fn admin_gate(&self, path: &str, method: &str, auth: &AdminAuth) -> Result<AdminGrant, AdminReply> {
        let Some(path) = ADMIN_PATHS.iter().find(|p| **p == path) else {
            return Err(fail(404, format!("unknown API /api/{path}")));
        };
        let is_read = path.starts_with("get-");
        if is_read != (method == "GET") && !(is_read && method == "POST") {
            return Err(fail(405, format!("use {} for /api/{path}", if is_read { "GET" } else { "POST" })));
        }
        match self.admin_caller(auth) {
            Caller::Admin => Ok(AdminGrant { path }),
            Caller::NotAdmin => Err(fail(403, "this API is for administrators")),
            Caller::Anonymous(why) => Err(fail(401, why)),
        }
    }

    /// Serves one admin API call that [`Edge::admin_gate`] let through.
    pub async fn admin(&self, grant: AdminGrant, query: &Params, body: &[u8]) -> AdminReply {
        let path = grant.path;
        let is_read = path.starts_with("get-");
        if grant.is_apply() {
            return self.apply_request(body).await;
        }
        let body: Value = if is_read || body.is_empty() {
            Value::Null
        } else {
            match write_body(body) {
                Ok(v) => v,
                Err(refused) => return refused,
            }
        };
        let q = |k: &str| query.get(k).map(String::as_str).unwrap_or("");
        let page = match Page::from_query(q("p"), q("pageSize")) {
            Ok(p) => p,
            Err(msg) => return fail(400, msg),
        };
        if is_read && q("consistency") == "linearizable" {
            // Wait until this node has applied everything the leader had committed: a read after a write
            // acknowledged anywhere in the cluster sees it.
            if let Err(e) = self.node.linearizable_barrier().await {
                return fail(503, format!("no linearizable read: {e}"));
            }
        }
        match path {
            "get-cluster-status" => ok(to_value(&self.node.status())),
            "cluster-add-learner" | "cluster-promote" | "cluster-remove" => self.cluster_change(path, &body).await,
            "cluster-admit" => self.cluster_admit(&body).await,
            "get-organizations" => self.list(page, self.store.organizations(), org_view),
            "get-organization" => self.get_one(q("id"), |_, n| self.store.organization(n), org_view),
            "add-organization" => self.put_organization(&body, PutMode::Create).await,
            "update-organization" => self.put_organization(&body, PutMode::Update).await,
            "delete-organization" => self.delete(&body, |_, n| Command::DeleteOrganization { name: n.into() }).await,
            "get-users" => self.list(page, self.store.users(q("owner")), user_view),
            "get-user" => self.get_one(q("id"), |o, n| self.store.user(o, n), user_view),
            "add-user" => self.put_user(&body, PutMode::Create).await,
            "update-user" => self.put_user(&body, PutMode::Update).await,
            "delete-user" => self.delete(&body, |o, n| Command::DeleteUser { owner: o.into(), name: n.into() }).await,
            "get-applications" => self.list(page, self.store.applications(), |a| self.app_view(a)),
            "get-application" => self.get_one(q("id"), |_, n| self.store.application(n), |a| self.app_view(a)),
            "add-application" => self.put_application(&body, PutMode::Create).await,
            "update-application" => self.put_application(&body, PutMode::Update).await,
            "delete-application" => self.delete(&body, |_, n| Command::DeleteApplication { name: n.into() }).await,
            "get-certs" => self.list(page, self.store.signing_keys(), cert_view),
            "get-cert" => self.get_one(q("id"), |_, n| self.store.signing_key(n), cert_view),
            "add-cert" => self.add_cert(&body).await,
            "rotate-cert" => self.rotate_cert(q("id"), &body).await,
            "delete-cert" => self.delete(&body, |_, n| Command::DeleteSigningKey { kid: n.into() }).await,
            "get-roles" => self.list(page, self.store.roles(q("owner")), |r: &Role| to_value(r)),
            "get-role" => self.get_one(q("id"), |o, n| self.store.role(o, n), |r: &Role| to_value(r)),
            "add-role" => {
                self.put_simple(&body, PutMode::Create, |role: Role, mode| Command::PutRole { role, mode }).await
            }
            "update-role" => {
                self.put_simple(&body, PutMode::Update, |role: Role, mode| Command::PutRole { role, mode }).await
            }
            "delete-role" => self.delete(&body, |o, n| Command::DeleteRole { owner: o.into(), name: n.into() }).await,
            "get-groups" => self.list(page, self.store.groups(q("owner")), |g: &Group| to_value(g)),
            "get-group" => self.get_one(q("id"), |o, n| self.store.group(o, n), |g: &Group| to_value(g)),
            "add-group" => {
                self.put_simple(&body, PutMode::Create, |group: Group, mode| Command::PutGroup { group, mode }).await
            }
            "update-group" => {
                self.put_simple(&body, PutMode::Update, |group: Group, mode| Command::PutGroup { group, mode }).await
            }
            "delete-group" => self.delete(&body, |o, n| Command::DeleteGroup { owner: o.into(), name: n.into() }).await,
            _ => fail(404, "unknown admin API"),
        }
    }

    /// A list, or one page of it with the total count in `data2` (Casdoor's `p` / `pageSize`). Records
    /// outside the page are counted, not decoded.
    fn list<T, I, F>(&self, page: Option<Page>, records: I, view: F) -> AdminReply
    where
        T: jeton_raft::store::Stored,
        T::Archived: rkyv::Portable,
        I: Iterator<Item = Result<jeton_raft::Record<T>, jeton_raft::RaftError>>,
        F: Fn(&T) -> Value,
    {
        let (skip, take) = page.map(|p| ((p.number - 1).saturating_mul(p.size), p.size)).unwrap_or((0, usize::MAX));
        let mut out = Vec::new();
        let mut total = 0usize;
        for r in records {
            total += 1;
            if total <= skip || out.len() >= take {
                continue;
            }
            match r.and_then(|r| r.to_owned()) {
                Ok(v) => out.push(view(&v)),
                Err(e) => {
                    tracing::error!("admin list: {e}");
                    return fail(500, "internal error");
                }
            }
        }
        match page {
            Some(_) => ok2(Value::Array(out), json!(total)),
            None => ok(Value::Array(out)),
        }
    }

    fn get_one<T, G, F>(&self, id: &str, get: G, view: F) -> AdminReply
    where
        T: jeton_raft::store::Stored,
        T::Archived: rkyv::Portable,
        G: Fn(&str, &str) -> Result<Option<jeton_raft::Record<T>>, jeton_raft::RaftError>,
        F: Fn(&T) -> Value,
    {
        let Some((owner, name)) = split_id(id) else {
            return fail(400, "id must be owner/name");
        };
        match get(owner, name).and_then(|r| r.map(|r| r.to_owned()).transpose()) {
            // Casdoor answers a missing object with data null.
            Ok(None) => ok(Value::Null),
            Ok(Some(v)) => ok(view(&v)),
            Err(e) => {
                tracing::error!("admin get: {e}");
                fail(500, "internal error")
            }
        }
    }

    /// Writes a command and maps its outcome to an answer.
    async fn commit(&self, cmd: Command) -> AdminReply {
        match self.write(cmd).await {
            Ok(Outcome::Applied) => ok(json!("Affected")),
            Ok(Outcome::Conflict(m)) => fail(409, m),
            Ok(Outcome::NotFound(m)) => fail(404, m),
            Ok(Outcome::Invalid(m)) => fail(400, m),
            Ok(Outcome::Reused) => fail(400, "refused"),
            Err(e) => write_failed(e),
        }
    }

    /// `cluster-add-learner` (`{"id": N, "addr": "host:port"}`: answers once the learner has caught up),
    /// `cluster-promote` (`{"id": N, "force": false}`: refused with 409 while N has not caught up, unless
    /// forced) and `cluster-remove` (`{"id": N}`): membership changes, carried out by the leader.
    async fn cluster_change(&self, path: &str, body: &Value) -> AdminReply {
        let Some(id) = body.get("id").and_then(Value::as_u64) else {
            return fail(400, "id (a node id) is required");
        };
        let change = match path {
            "cluster-add-learner" => match body.get("addr").and_then(Value::as_str) {
                Some(addr) if !addr.is_empty() => MembershipChange::AddLearner { id, addr: addr.to_string() },
                _ => return fail(400, "addr (the node's Raft address, host:port) is required"),
            },
            "cluster-promote" => match body.get("force") {
                None | Some(Value::Null) => MembershipChange::Promote { id, force: false },
                Some(Value::Bool(force)) => MembershipChange::Promote { id, force: *force },
                Some(_) => return fail(400, "force must be true or false"),
            },
            _ => MembershipChange::Remove { id },
        };
        match self.node.change_membership(change).await {
            Ok(()) => ok(to_value(&self.node.status())),
            Err(WriteError::Invalid(m)) => fail(400, m),
            Err(WriteError::NotCaughtUp(m)) => fail(409, m),
            Err(e) => write_failed(e.into()),
        }
    }

    /// `cluster-admit` (`{"id": N, "ttlHours": H}`, default 24 h): admits node N to join, and answers the
    /// one-time join token it needs (`data.token`; shown once, only its digest is stored).
    async fn cluster_admit(&self, body: &Value) -> AdminReply {
        let Some(id) = body.get("id").and_then(Value::as_u64).filter(|id| *id > 0) else {
            return fail(400, "id (a node id, from 1) is required");
        };
        let hours = match body.get("ttlHours") {
            None | Some(Value::Null) => 24,
            Some(v) => match v.as_u64().filter(|h| (1..=24 * 30).contains(h)) {
                Some(h) => h,
                None => return fail(400, "ttlHours must be a whole number of hours from 1 to 720"),
            },
        };
        let token = match jeton_raft::admission::JoinToken::generate(&self.node.identity.cluster, id) {
            Ok(t) => t,
            Err(e) => return fail(500, e),
        };
        let admission = token.admission(now(), hours as i64 * 3600);
        let expires_at = admission.expires_at;
        match self.write(Command::AdmitNode { admission }).await {
            Ok(Outcome::Applied) => ok(json!({
                "id": id,
                "cluster": self.node.identity.cluster,
                "token": token.expose(),
                "expiresAt": expires_at,
            })),
            Ok(Outcome::Invalid(m)) => fail(400, m),
            Ok(other) => fail(400, format!("{other:?}")),
            Err(e) => write_failed(e),
        }
    }

    async fn delete(&self, body: &Value, cmd: impl Fn(&str, &str) -> Command) -> AdminReply {
        let owner = body.get("owner").and_then(Value::as_str).unwrap_or_default();
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            return fail(400, "name is required");
        }
        self.commit(cmd(owner, name)).await
    }

    async fn put_simple<T: serde::de::DeserializeOwned>(
        &self,
        body: &Value,
        mode: PutMode,
        cmd: impl Fn(T, PutMode) -> Command,
    ) -> AdminReply {
        match simple_body::<T>(body) {
            Ok(v) => self.commit(cmd(v, mode)).await,
            Err(refused) => refused,
        }
    }

    async fn put_organization(&self, body: &Value, mode: PutMode) -> AdminReply {
        let mut org: Organization = match serde_json::from_value(body.clone()) {
            Ok(o) => o,
            Err(e) => return fail(400, format!("invalid organization: {e}")),
        };
        let existing = match self.store.organization(&org.name).and_then(|r| r.map(|r| r.to_owned()).transpose()) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("admin put_organization: {e}");
                return fail(500, "internal error");
            }
        };
        let old = existing.unwrap_or_default();
        // What the views mask comes back masked: keep what is stored.
        let keeps_master = org.master_password == MASK;
        if keeps_master {
            org.master_password = old.master_password.clone();
        }
        if org.password_salt == MASK {
            org.password_salt = old.password_salt.clone();
        }
        if org.created_time.is_empty() {
            org.created_time = if old.created_time.is_empty() { rfc3339_now() } else { old.created_time.clone() };
        }
        let scheme = match org_scheme(&org, !keeps_master) {
            Ok(scheme) => scheme,
            Err(refused) => return refused,
        };
        if keeps_master
            && !org.master_password.is_empty()
            && (org.password_type != old.password_type || org.password_salt != old.password_salt)
        {
            // The stored master password is a hash made with the old scheme and salt: it would never match.
            return fail(400, "changing passwordType or passwordSalt needs the masterPassword again (or empty)");
        }
        if let (false, Some(scheme)) = (keeps_master || org.master_password.is_empty(), scheme) {
            // A master password sent here is the password itself: it is stored hashed with the
            // organization's scheme and salt, as Casdoor's update-organization does (COMPAT §4.3).
            match self.passwords.hash(scheme, &org.master_password, &org.password_salt).await {
                Ok(hashed) => org.master_password = hashed,
                Err(e) => return fail(400, format!("masterPassword not accepted: {e}")),
            }
        }
        self.commit(Command::PutOrganization { org, mode }).await
    }

    async fn put_user(&self, body: &Value, mode: PutMode) -> AdminReply {
        let mut user: User = match serde_json::from_value(body.clone()) {
            Ok(u) => u,
            Err(e) => return fail(400, format!("invalid user: {e}")),
        };
        let existing = match self.store.user(&user.owner, &user.name).and_then(|r| r.map(|r| r.to_owned()).transpose())
        {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("admin put_user: {e}");
                return fail(500, "internal error");
            }
        };
        if user.created_time.is_empty() {
            user.created_time = existing.as_ref().map(|e| e.created_time.clone()).unwrap_or_else(rfc3339_now);
        }
        user.updated_time = rfc3339_now();
        if user.id.is_empty() {
            user.id = existing.as_ref().map(|e| e.id.clone()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        }
        // Secrets the admin API never shows come back masked or empty: keep what is stored.
        if let Some(old) = &existing {
            if user.totp_secret.is_empty() {
                user.totp_secret = old.totp_secret.clone();
            }
        }
        let keep_password = user.password == MASK || (user.password.is_empty() && existing.is_some());
        if keep_password {
            match &existing {
                Some(old) => {
                    user.password = old.password.clone();
                    user.password_type = old.password_type.clone();
                    user.password_salt = old.password_salt.clone();
                }
                None => user.password.clear(),
            }
        } else if !user.password.is_empty() && body.get("passwordType").and_then(Value::as_str).unwrap_or("").is_empty()
        {
            // A plaintext password: hash it with the organization's scheme (argon2id if it has none).
            let org_type = match self.store.organization(&user.owner) {
                Ok(Some(o)) => o.get().password_type.as_str().to_string(),
                Ok(None) => return fail(400, format!("organization {} does not exist", user.owner)),
                Err(e) => {
                    tracing::error!("admin put_user: {e}");
                    return fail(500, "internal error");
                }
            };
            use crate::passwords::schemes::{self, PasswordError, Scheme};
            let scheme = match Scheme::parse(&org_type) {
                Some(Scheme::Plain) | None => Scheme::Argon2id,
                Some(s) => s,
            };
            let salt = schemes::new_salt();
            // In the same hashing slots and memory budget as sign-ins.
            match self.passwords.hash(scheme, &user.password, &salt).await {
                Ok(h) => {
                    user.password = h;
                    user.password_type = scheme.as_str().to_string();
                    user.password_salt = salt;
                }
                Err(e @ PasswordError::Hashing(_)) => {
                    tracing::error!("admin put_user: {e}");
                    return fail(500, "internal error");
                }
                Err(e) => return fail(400, format!("password not accepted: {e}")),
            }
        } else if let Err(refused) = check_stored_hash(&user) {
            return refused;
        }
        self.commit(Command::PutUser { user, mode }).await
    }

    async fn put_application(&self, body: &Value, mode: PutMode) -> AdminReply {
        let ApplicationBody { mut app, secret, signing_method } = match application_body(body) {
            Ok(b) => b,
            Err(refused) => return refused,
        };
        let existing = match self.store.application(&app.name).and_then(|r| r.map(|r| r.to_owned()).transpose()) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("admin put_application: {e}");
                return fail(500, "internal error");
            }
        };
        if app.created_time.is_empty() {
            app.created_time = existing.as_ref().map(|e| e.created_time.clone()).unwrap_or_else(rfc3339_now);
        }
        if app.client_id.is_empty() {
            app.client_id = existing.as_ref().map(|e| e.client_id.clone()).unwrap_or_else(|| random_hex(10));
        }
        if secret.is_empty() || secret == MASK {
            match &existing {
                Some(old) => app.client_secret_digest = old.client_secret_digest.clone(),
                // Casdoor generates one and shows it in get-application; Jeton keeps only a digest, so it
                // could never show it: the caller chooses it (README, "Admin API").
                None => {
                    return fail(
                        400,
                        "clientSecret is required: Jeton stores only its digest and cannot show it later; choose one of at least 16 characters",
                    )
                }
            }
        } else {
            if secret.len() < 16 {
                return fail(400, "clientSecret must have at least 16 characters");
            }
            app.client_secret_digest = sha256(secret.as_bytes()).to_vec();
        }
        if app.grant_types.is_empty() {
            app.grant_types = vec!["client_credentials".into(), "password".into(), "refresh_token".into()];
        }
        if app.token_format.is_empty() {
            app.token_format = "JWT-Standard".into();
        }
        if !["JWT", "JWT-Empty", "JWT-Standard", "JWT-Custom"].contains(&app.token_format.as_str()) {
            return fail(400, format!("unknown tokenFormat {}", app.token_format));
        }
        if app.expire_in_hours <= 0.0 || !app.expire_in_hours.is_finite() {
            app.expire_in_hours = existing.as_ref().map(|e| e.expire_in_hours).filter(|h| *h > 0.0).unwrap_or(1.0);
        }
        // A key named together with an algorithm it does not sign with: the one the application had gives
        // way to the algorithm (the view sends both back); any other is a contradiction.
        if !app.cert.is_empty() && !signing_method.is_empty() {
            let named = self.keyring.get(&app.cert).map(|k| k.alg);
            if named != Alg::parse(&signing_method) {
                if existing.as_ref().is_some_and(|e| e.cert == app.cert) {
                    app.cert.clear();
                } else {
                    return fail(
                        400,
                        format!("cert {} does not sign with tokenSigningMethod {signing_method}", app.cert),
                    );
                }
            }
        }
        if app.cert.is_empty() {
            // RS256 unless told otherwise: what OIDC Core requires every relying party to support, Casdoor's
            // default, and the only algorithm Casdoor's Node SDK verifies (EdDSA is faster: README).
            let alg = if signing_method.is_empty() { Some(Alg::RS256) } else { Alg::parse(&signing_method) };
            let Some(alg) = alg else {
                return fail(400, format!("unsupported tokenSigningMethod {signing_method}"));
            };
            // An update that names no key keeps the application's key, unless it asks for another algorithm.
            let keeps = |kid: &String| {
                !kid.is_empty() && (signing_method.is_empty() || self.keyring.get(kid).is_some_and(|k| k.alg == alg))
            };
            match existing.as_ref().map(|e| e.cert.clone()).filter(keeps) {
                Some(c) => app.cert = c,
                None => match self.keyring.default_for(alg) {
                    Some(k) => app.cert = k.kid.clone(),
                    None => {
                        return fail(400, format!("no active {} signing key; add one with /api/add-cert", alg.as_str()))
                    }
                },
            }
        }
        self.commit(Command::PutApplication { app, mode }).await
    }

    async fn add_cert(&self, body: &Value) -> AdminReply {
        let (kid, owner, alg) = match cert_body(body) {
            Ok(c) => c,
            Err(refused) => return refused,
        };
        let kek = &self.kek;
        let key = match crate::keys::generate(alg, &kid, &owner, kek, now()) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!("generating key: {e}");
                return fail(500, "internal error");
            }
        };
        self.commit(Command::PutSigningKey { key, mode: PutMode::Create }).await
    }

    /// Rotates a key: a new key of the same algorithm takes over; the old one stays in the JWKS until every
    /// token it signed has expired.
    async fn rotate_cert(&self, id: &str, body: &Value) -> AdminReply {
        let old_kid =
            split_id(id).map(|(_, n)| n).or_else(|| body.get("name").and_then(Value::as_str)).unwrap_or_default();
        let old = match self.store.signing_key(old_kid).and_then(|r| r.map(|r| r.to_owned()).transpose()) {
            Ok(Some(k)) => k,
            Ok(None) => return fail(404, format!("signing key {old_kid} does not exist")),
            Err(e) => {
                tracing::error!("rotate: {e}");
                return fail(500, "internal error");
            }
        };
        let Some(alg) = Alg::parse(&old.algorithm).filter(|a| Alg::GENERATED.contains(a)) else {
            return fail(400, format!("keys of algorithm {} cannot be generated here", old.algorithm));
        };
        // Longest lifetime of any token the old key may have signed.
        let mut longest = 0i64;
        for a in self.store.applications().flatten() {
            let a = a.get();
            if a.cert.as_str() == old_kid {
                let access = (a.expire_in_hours.to_native() * 3600.0) as i64;
                let refresh = (a.refresh_expire_in_hours.to_native() * 3600.0) as i64;
                longest = longest.max(access).max(refresh);
            }
        }
        let t = now();
        let new_kid = format!("{}-{}", old_kid.split("-r").next().unwrap_or(old_kid), random_hex(4));
        let new = match crate::keys::generate(alg, &new_kid, &old.owner, &self.kek, t) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!("generating key: {e}");
                return fail(500, "internal error");
            }
        };
        let reply = self
            .commit(Command::RotateSigningKey { old_kid: old_kid.to_string(), new, retire_at: t + longest + 60 })
            .await;
        if reply.status == 200 {
            ok2(json!("Affected"), json!({"name": new_kid, "retireAt": t + longest + 60}))
        } else {
            reply
        }
    }
}

/// What an add-cert body asks for: the key's id (`name`), its owner (`admin` by default) and the algorithm
/// to generate it for (`cryptoAlgorithm`, RS256 by default like Casdoor's).
pub(crate) fn cert_body(body: &Value) -> Result<(String, String, Alg), AdminReply> {
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
    let owner = body.get("owner").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("admin");
    let alg_name = body.get("cryptoAlgorithm").and_then(Value::as_str).filter(|a| !a.is_empty()).unwrap_or("RS256");
    let Some(alg) = Alg::parse(alg_name).filter(|a| Alg::GENERATED.contains(a)) else {
        return Err(fail(400, format!("cryptoAlgorithm must be one of EdDSA, ES256, RS256 (got {alg_name})")));
    };
    if name.is_empty() {
        return Err(fail(400, "name is required"));
    }
    Ok((name.to_string(), owner.to_string(), alg))
}

/// A record of a kind without rules of its own (roles, groups), stamped with the time it is created at
/// unless the body says.
pub(crate) fn simple_body<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, AdminReply> {
    let mut body = body.clone();
    if let Some(m) = body.as_object_mut() {
        m.entry("createdTime").or_insert_with(|| json!(rfc3339_now()));
    }
    serde_json::from_value::<T>(body).map_err(|e| fail(400, format!("invalid object: {e}")))
}

/// A stored password hash set as is (with its `passwordType`): its scheme must be one of Casdoor's and one
/// check of it within the cost cap. Without a type there is nothing to check here.
pub(crate) fn check_stored_hash(user: &User) -> Result<(), AdminReply> {
    if user.password_type.is_empty() {
        return Ok(());
    }
    let Some(scheme) = crate::passwords::schemes::Scheme::parse(&user.password_type) else {
        return Err(fail(400, format!("unsupported passwordType {}", user.password_type)));
    };
    crate::passwords::schemes::work(scheme, &user.password)
        .map(|_| ())
        .map_err(|e| fail(400, format!("password hash refused: {e}")))
}

/// An organization's password scheme: one of Casdoor's, or none — but not none when a master password
/// comes in clear, to be hashed with it.
pub(crate) fn org_scheme(
    org: &Organization,
    master_in_clear: bool,
) -> Result<Option<crate::passwords::schemes::Scheme>, AdminReply> {
    match crate::passwords::schemes::Scheme::parse(&org.password_type) {
        None if !org.password_type.is_empty() => {
            Err(fail(400, format!("unsupported passwordType {}", org.password_type)))
        }
        None if master_in_clear && !org.master_password.is_empty() => {
            Err(fail(400, "a masterPassword needs the organization's passwordType"))
        }
        scheme => Ok(scheme),
    }
}

/// What an application body says: the record, and the secret and signing algorithm it names (neither is a
/// field of the record).
pub(crate) struct ApplicationBody {
    pub(crate) app: Application,
    pub(crate) secret: String,
    pub(crate) signing_method: String,
}

/// Reads an application body: Casdoor's scope objects become names, a digest the caller sent is ignored
/// (only the digest of `clientSecret` is stored), and the owner is always `admin`.
pub(crate) fn application_body(body: &Value) -> Result<ApplicationBody, AdminReply> {
    let mut body = body.clone();
    let Some(m) = body.as_object_mut() else {
        return Err(fail(400, "the body must be a JSON object"));
    };
    // Only the digest of a secret is stored; a client cannot set the digest itself.
    m.remove("clientSecretDigest");
    // Casdoor's scopes are objects (`{name, displayName, description}`, as the views show them); plain
    // names are taken too.
    if let Some(Value::Array(scopes)) = m.get_mut("scopes") {
        for scope in scopes.iter_mut() {
            if let Some(name) = scope.get("name").and_then(Value::as_str) {
                *scope = json!(name);
            }
        }
    }
    let secret = m.remove("clientSecret").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let signing_method =
        m.remove("tokenSigningMethod").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let mut app: Application = match serde_json::from_value(body) {
        Ok(a) => a,
        Err(e) => return Err(fail(400, format!("invalid application: {e}"))),
    };
    app.owner = "admin".into();
    Ok(ApplicationBody { app, secret, signing_method })
}

/// A page of a list: 1-based number and size (at most 1000).
#[derive(Clone, Copy)]
pub(crate) struct Page {
    number: usize,
    size: usize,
}

impl Page {
    pub(crate) fn from_query(p: &str, size: &str) -> Result<Option<Page>, &'static str> {
        if p.is_empty() && size.is_empty() {
            return Ok(None);
        }
        let number = if p.is_empty() { Ok(1) } else { p.parse::<usize>() };
        let size = if size.is_empty() { Ok(10) } else { size.parse::<usize>() };
        match (number, size) {
            (Ok(n), Ok(s)) if n >= 1 && (1..=1000).contains(&s) => Ok(Some(Page { number: n, size: s })),
            _ => Err("p must be a page number from 1 and pageSize from 1 to 1000"),
        }
    }
}

/// Random lower-case hex of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // The OS refused randomness: use v4 UUIDs' random bits instead (also from the OS generator).
        let mut s = String::new();
        while s.len() < bytes * 2 {
            s.push_str(&uuid::Uuid::new_v4().simple().to_string());
        }
        s.truncate(bytes * 2);
        return s;
    }
    hex::encode(buf)
}

/// Every admin path this node serves.
pub const ADMIN_PATHS: &[&str] = &[
    "get-cluster-status",
    "cluster-add-learner",
    "cluster-promote",
    "cluster-remove",
    "cluster-admit",
    "get-organizations",
    "get-organization",
    "add-organization",
    "update-organization",
    "delete-organization",
    "get-users",
    "get-user",
    "add-user",
    "update-user",
    "delete-user",
    "get-applications",
    "get-application",
    "add-application",
    "update-application",
    "delete-application",
    "get-certs",
    "get-cert",
    "add-cert",
    "rotate-cert",
    "delete-cert",
    "get-roles",
    "get-role",
    "add-role",
    "update-role",
    "delete-role",
    "get-groups",
    "get-group",
    "add-group",
    "update-group",
    "delete-group",
    APPLY_PATH,
];

/// A write that did not happen (or whose fate is unknown): 503 with the reason.
fn write_failed(e: EdgeError) -> AdminReply {
    tracing::warn!("admin write: {e}");
    fail(503, e.to_string())
}

/// Largest body `POST /api/jeton/apply` accepts.
pub const APPLY_BODY_LIMIT: usize = 256 << 20;

/// One thing to apply: a command, or a key pair to seal with the node's key-encryption key and store.
// Items are built once and moved into a batch; boxing the command would only add an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum ApplyItem {
    Command(Command),
    Key(KeyImport),
}

/// `POST /api/jeton/apply`: items applied as one `Command::Each`, after dropping those that would change
/// nothing.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct ApplyRequest {
    pub items: Vec<ApplyItem>,
    /// Only say what would be written.
    pub dry_run: bool,
    /// Lets one import keep several requests in flight: `run` names the import, `seq` (from 0) numbers its
    /// batches, and the node proposes a batch only after the one before it of the same run, whatever order
    /// the requests arrive in. Empty `run`: the request is applied on its own.
    pub run: String,
    pub seq: u64,
    /// Replace the node's own administrator user (`<admin org>/admin`) with the imported one. Without it
    /// the node's administrator is kept (see [`ApplyResult::administrators`]).
    pub replace_admin: bool,
}

/// The target's own administrators, which an import never replaces silently: the admin application and
/// the `admin` user of the admin organization. A record an import brings for either is kept out (and
/// reported) unless replacing it is allowed.
#[derive(Debug, Clone, Copy)]
pub struct Administrators<'a> {
    pub org: &'a str,
    pub app: &'a str,
    /// Replace the `admin` user with the imported one.
    pub replace_user: bool,
    /// Replace the admin application (never over the admin API: the import runs with its credentials).
    pub replace_app: bool,
}

/// An item that would replace one of the target's administrators, and what became of it.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct AdministratorItem {
    /// Position in the request's items.
    pub index: usize,
    pub kind: String,
    /// Written over the target's administrator (dry run: would be); otherwise kept out.
    pub replaced: bool,
    pub note: String,
}

/// An item that was not applied.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Refusal {
    /// Position in the request's items.
    pub index: usize,
    pub kind: String,
    pub reason: String,
}

/// What an apply did (or, for a dry run, would do), counted per command kind.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct ApplyResult {
    pub written: BTreeMap<String, u64>,
    pub unchanged: BTreeMap<String, u64>,
    pub refused: Vec<Refusal>,
    /// Dry runs only: the positions of the items that would be written.
    pub would_write: Vec<usize>,
    /// Items that would replace one of the target's administrators: kept out, or (when allowed) written.
    /// Kept-out items are neither written nor refused: that is by design, not an error.
    pub administrators: Vec<AdministratorItem>,
}

/// Applies import items to a node: keys are sealed with `kek`, items equal to the stored state are counted
/// unchanged and dropped, the rest is written as ONE log entry ([`Command::Each`]) in which the state
/// machine judges every item on its own: refused ones are left out (and reported), the others are written.
///
/// The target's `admins` are kept unless replacing them is allowed (see [`Administrators`]).
pub async fn apply_items(
    node: &ReplicaNode,
    kek: &Kek,
    items: Vec<ApplyItem>,
    dry_run: bool,
    admins: Administrators<'_>,
) -> Result<ApplyResult, EdgeError> {
    let mut prepared = prepare_items(node, kek, items, dry_run, admins)?;
    match prepared.command.take() {
        Some(cmd) => prepared.finish(node.write(cmd).await?),
        None => Ok(prepared.result),
    }
}

/// [`apply_items`] on the leader without waiting for the write: returns once the batch is checked and
/// proposed, with what resolves to its result once applied. Batches proposed one after the other apply in
/// that order, so a caller can have several in flight (the next is checked while the previous applies).
pub async fn propose_items(
    node: &ReplicaNode,
    kek: &Kek,
    items: Vec<ApplyItem>,
    dry_run: bool,
    admins: Administrators<'_>,
) -> Result<impl std::future::Future<Output = Result<ApplyResult, EdgeError>> + Send + 'static, EdgeError> {
    let mut prepared = prepare_items(node, kek, items, dry_run, admins)?;
    let applied = match prepared.command.take() {
        Some(cmd) => Some(node.propose(cmd).await?),
        None => None,
    };
    Ok(async move {
        match applied {
            Some(applied) => prepared.finish(applied.await?),
            None => Ok(prepared.result),
        }
    })
}

/// A batch of import items checked against the state: what is already known of the result, and the one
/// command to write (none when nothing is left to write, or for a dry run).
struct PreparedItems {
    result: ApplyResult,
    command: Option<Command>,
    /// Position and kind of each command inside `command`.
    positions: Vec<(usize, &'static str)>,
    /// Items in `command` that replace one of the target's administrators (reported once written).
    replacing: Vec<AdministratorItem>,
}

impl PreparedItems {
    /// The result, once the state machine has answered `command`.
    fn finish(mut self, response: CommandResponse) -> Result<ApplyResult, EdgeError> {
        if response.outcomes.len() != self.positions.len() {
            return Err(EdgeError::Unexpected(format!(
                "the node answered {} outcomes for {} commands",
                response.outcomes.len(),
                self.positions.len()
            )));
        }
        for ((index, kind), outcome) in self.positions.into_iter().zip(response.outcomes) {
            match outcome {
                Outcome::Applied => {
                    *self.result.written.entry(kind.to_string()).or_default() += 1;
                    if let Some(at) = self.replacing.iter().position(|r| r.index == index) {
                        self.result.administrators.push(self.replacing.swap_remove(at));
                    }
                }
                other => {
                    self.result.refused.push(Refusal { index, kind: kind.to_string(), reason: outcome_text(&other) })
                }
            }
        }
        Ok(self.result)
    }
}

/// The first half of [`apply_items`]: seals keys, drops unchanged items, refuses what an import may not
/// write, and builds the command for the rest.
fn prepare_items(
    node: &ReplicaNode,
    kek: &Kek,
    items: Vec<ApplyItem>,
    dry_run: bool,
    admins: Administrators<'_>,
) -> Result<PreparedItems, EdgeError> {
    let mut result = ApplyResult::default();
    let mut replacing = Vec::new();
    let mut pending: Vec<(usize, Command)> = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let refuse = |kind: &str, reason: String| Refusal { index, kind: kind.to_string(), reason };
        // Signing keys only come as key items: sealed here, with the algorithms their tokens may carry (a
        // record of its own, written after the key). Other commands are not for imports.
        let commands = match item {
            ApplyItem::Key(k) => match crate::keys::import_pem(&k, kek) {
                Ok(key) => {
                    let kid = key.kid.clone();
                    let mut commands = vec![Command::PutSigningKey { key, mode: PutMode::Upsert }];
                    if !k.accepted_algorithms.is_empty() {
                        let accepted = AcceptedAlgorithms { kid, algorithms: k.accepted_algorithms };
                        commands.push(Command::PutAcceptedAlgorithms { accepted, mode: PutMode::Upsert });
                    }
                    commands
                }
                Err(e) => {
                    result.refused.push(refuse("put_signing_key", e.to_string()));
                    continue;
                }
            },
            ApplyItem::Command(cmd) => {
                let allowed = matches!(
                    cmd,
                    Command::PutOrganization { .. }
                        | Command::PutUser { .. }
                        | Command::PutApplication { .. }
                        | Command::PutRole { .. }
                        | Command::PutGroup { .. }
                        | Command::PutPermission { .. }
                        | Command::PutModel { .. }
                        | Command::PutAcceptedIssuer { .. }
                        | Command::Revoke { .. }
                        | Command::IssueRefreshToken { .. }
                );
                if !allowed {
                    result.refused.push(refuse(cmd.kind(), "not a command an import may apply".into()));
                    continue;
                }
                vec![cmd]
            }
        };
        for cmd in commands {
            if node.store.unchanged(&cmd)? {
                *result.unchanged.entry(cmd.kind().to_string()).or_default() += 1;
                continue;
            }
            if let Some((replace, note)) = replaces_administrator(node, &cmd, admins)? {
                let item = AdministratorItem { index, kind: cmd.kind().to_string(), replaced: replace, note };
                if !replace {
                    result.administrators.push(item);
                    continue;
                }
                replacing.push(item);
            }
            pending.push((index, cmd));
        }
    }
    if dry_run || pending.is_empty() {
        for (index, cmd) in &pending {
            *result.written.entry(cmd.kind().to_string()).or_default() += 1;
            if dry_run && result.would_write.last() != Some(index) {
                result.would_write.push(*index);
            }
        }
        result.administrators.append(&mut replacing);
        return Ok(PreparedItems { result, command: None, positions: Vec::new(), replacing });
    }
    let (positions, commands): (Vec<(usize, &'static str)>, Vec<Command>) =
        pending.into_iter().map(|(i, c)| ((i, c.kind()), c)).unzip();
    Ok(PreparedItems { result, command: Some(Command::Each { commands }), positions, replacing })
}

/// Whether `cmd` would replace one of the target's administrators, and if so whether that is allowed, with
/// a note for the report.
fn replaces_administrator(
    node: &ReplicaNode,
    cmd: &Command,
    admins: Administrators<'_>,
) -> Result<Option<(bool, String)>, EdgeError> {
    Ok(match cmd {
        Command::PutApplication { app, .. }
            if app.name == admins.app && node.store.application(admins.app)?.is_some() =>
        {
            Some(match admins.replace_app {
                true => (true, "the target's admin application, replaced by the imported one (--replace-admin)".into()),
                false => (false, "the target's admin application, kept (the credentials it has stay valid)".into()),
            })
        }
        Command::PutUser { user, .. }
            if user.owner == admins.org && user.name == "admin" && node.store.user(admins.org, "admin")?.is_some() =>
        {
            Some(match admins.replace_user {
                true => (true, "the target's administrator, replaced by the imported one (--replace-admin)".into()),
                false => (
                    false,
                    "the target's administrator, kept (its password stays valid; --replace-admin replaces it)".into(),
                ),
            })
        }
        _ => None,
    })
}

impl Edge {
    /// Applies batch `seq` of import `run`, whose turn it is, and hands the turn on as soon as the batch is
    /// proposed (on the leader) or written (elsewhere), so the next batch is checked while this one applies.
    async fn apply_in_turn(
        &self,
        run: &str,
        seq: u64,
        items: Vec<ApplyItem>,
        dry_run: bool,
        admins: Administrators<'_>,
    ) -> Result<ApplyResult, EdgeError> {
        let leader = self.node.raft.metrics().borrow().current_leader == Some(self.node.id);
        if !leader {
            let r = apply_items(&self.node, &self.kek, items, dry_run, admins).await;
            self.apply_turns.done(run, seq);
            return r;
        }
        let proposed = propose_items(&self.node, &self.kek, items, dry_run, admins).await;
        self.apply_turns.done(run, seq);
        proposed?.await
    }
}

/// Whose turn it is among the batches of each import sending several at once (see [`ApplyRequest::run`]).
#[derive(Default)]
pub(crate) struct ApplyTurns {
    /// Import → the next batch to propose, and when the import was last heard of.
    next: std::sync::Mutex<HashMap<String, (u64, std::time::Instant)>>,
    changed: tokio::sync::Notify,
}

impl ApplyTurns {
    /// Waits until batch `seq` of `run` may go. False if it never will (a batch before it is missing, or
    /// this one already went).
    async fn wait(&self, run: &str, seq: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            let next = self.next.lock().unwrap_or_else(|p| p.into_inner()).get(run).map(|e| e.0).unwrap_or(0);
            if next == seq {
                return true;
            }
            if next > seq || tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }

    /// Batch `seq` of `run` has gone: the next one may.
    fn done(&self, run: &str, seq: u64) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        next.retain(|_, (_, seen)| now.duration_since(*seen) < Duration::from_secs(3600));
        next.insert(run.to_string(), (seq + 1, now));
        drop(next);
        self.changed.notify_waiters();
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Applied => "applied".into(),
        Outcome::Conflict(m) | Outcome::NotFound(m) | Outcome::Invalid(m) => m.clone(),
        Outcome::Reused => "refused".into(),
    }
}

impl Edge {
    /// `POST /api/jeton/apply` (the caller is already known to be an administrator).
    async fn apply_request(&self, body: &[u8]) -> AdminReply {
        let req: ApplyRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return fail(400, format!("the body is not an apply request: {e}")),
        };
        // The admin application is never replaced here: the import runs with its credentials.
        let admins = Administrators {
            org: &self.config.admin_org,
            app: &self.config.admin_app,
            replace_user: req.replace_admin,
            replace_app: false,
        };
        let applied = if req.run.is_empty() {
            apply_items(&self.node, &self.kek, req.items, req.dry_run, admins).await
        } else {
            if !self.apply_turns.wait(&req.run, req.seq, Duration::from_secs(120)).await {
                return fail(
                    409,
                    format!(
                        "batch {} of import {} came out of order (its predecessor never arrived)",
                        req.seq, req.run
                    ),
                );
            }
            self.apply_in_turn(&req.run, req.seq, req.items, req.dry_run, admins).await
        };
        match applied {
            Ok(result) => ok(to_value(&result)),
            Err(e) => {
                tracing::error!("apply: {e}");
                fail(503, format!("the write did not happen: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use jeton_raft::model::{Application, Group, Organization, Role, SigningKey, TokenAttribute, User};
    use serde_json::{json, Value};

    use super::{cert_view, normalize_sdk_body, org_view, user_view, ApplyTurns};

    /// The JSON type of a field in Casdoor's Go structs, from the column types of COMPAT §2 (VARCHAR/TEXT →
    /// string, INTEGER/BIGINT/DOUBLE → number, BOOL → bool, "JSON list" → array of strings or of objects,
    /// "JSON object" → object). Casdoor's Go SDK decodes into those structs: another type fails it.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Ty {
        Str,
        Num,
        Bool,
        StrList,
        ObjList,
        Obj,
    }
    use Ty::*;

    fn ty_of(v: &Value) -> Option<Ty> {
        Some(match v {
            Value::String(_) => Str,
            Value::Number(_) => Num,
            Value::Bool(_) => Bool,
            Value::Object(_) => Obj,
            Value::Array(a) if a.iter().all(Value::is_string) && a.iter().any(Value::is_string) => StrList,
            Value::Array(a) if a.iter().all(Value::is_object) && !a.is_empty() => ObjList,
            _ => return None,
        })
    }

    /// COMPAT §2.1 organization (the fields the view emits).
    const ORGANIZATION: &[(&str, Ty)] = &[
        ("owner", Str),
        ("name", Str),
        ("createdTime", Str),
        ("displayName", Str),
        ("passwordType", Str),
        ("passwordSalt", Str),
        ("masterPassword", Str),
        ("enableSoftDeletion", Bool),
        ("tags", StrList),
        ("defaultTokenFormat", Str),
    ];
    /// COMPAT §2.2 user.
    const USER: &[(&str, Ty)] = &[
        ("owner", Str),
        ("name", Str),
        ("id", Str),
        ("createdTime", Str),
        ("updatedTime", Str),
        ("deletedTime", Str),
        ("type", Str),
        ("password", Str),
        ("passwordSalt", Str),
        ("passwordType", Str),
        ("displayName", Str),
        ("firstName", Str),
        ("lastName", Str),
        ("avatar", Str),
        ("email", Str),
        ("emailVerified", Bool),
        ("phone", Str),
        ("countryCode", Str),
        ("region", Str),
        ("location", Str),
        ("address", StrList),
        ("affiliation", Str),
        ("title", Str),
        ("homepage", Str),
        ("bio", Str),
        ("tag", Str),
        ("language", Str),
        ("gender", Str),
        ("birthday", Str),
        ("realName", Str),
        ("isVerified", Bool),
        ("score", Num),
        ("isAdmin", Bool),
        ("isForbidden", Bool),
        ("isDeleted", Bool),
        ("signupApplication", Str),
        ("ldap", Str),
        ("groups", StrList),
        ("properties", Obj),
        ("uidNumber", Num),
        ("preferredMfaType", Str),
        ("totpSecret", Str),
        ("lastChangePasswordTime", Str),
        ("needUpdatePassword", Bool),
    ];
    /// COMPAT §2.4 application.
    const APPLICATION: &[(&str, Ty)] = &[
        ("owner", Str),
        ("name", Str),
        ("displayName", Str),
        ("createdTime", Str),
        ("organization", Str),
        ("clientId", Str),
        ("clientSecret", Str),
        ("redirectUris", StrList),
        ("grantTypes", StrList),
        ("scopes", ObjList),
        ("tokenFormat", Str),
        ("tokenSigningMethod", Str),
        ("cert", Str),
        ("expireInHours", Num),
        ("refreshExpireInHours", Num),
        ("tokenFields", StrList),
        ("tokenAttributes", ObjList),
        ("failedSigninLimit", Num),
        ("failedSigninFrozenTime", Num),
    ];
    /// COMPAT §2.5 cert; `publicKey` and `retireAt` are Jeton's own (extra fields are ignored by decoders).
    const CERT: &[(&str, Ty)] = &[
        ("owner", Str),
        ("name", Str),
        ("createdTime", Str),
        ("displayName", Str),
        ("scope", Str),
        ("type", Str),
        ("cryptoAlgorithm", Str),
        ("certificate", Str),
        ("privateKey", Str),
        ("publicKey", Str),
        ("retireAt", Num),
    ];
    /// COMPAT §2.7 role.
    const ROLE: &[(&str, Ty)] = &[
        ("owner", Str),
        ("name", Str),
        ("createdTime", Str),
        ("displayName", Str),
        ("description", Str),
        ("users", StrList),
        ("groups", StrList),
        ("roles", StrList),
        ("domains", StrList),
        ("isEnabled", Bool),
    ];
    /// COMPAT §2.3 group.
    const GROUP: &[(&str, Ty)] = &[
        ("owner", Str),
        ("name", Str),
        ("createdTime", Str),
        ("displayName", Str),
        ("type", Str),
        ("parentId", Str),
        ("isTopGroup", Bool),
        ("isEnabled", Bool),
        ("gidNumber", Num),
    ];

    /// Every field a view emits is in Casdoor's table with the same JSON type, and every field of the table
    /// is emitted. Lists are filled so that their element type shows.
    fn check(kind: &str, view: &Value, table: &[(&str, Ty)]) {
        let obj = view.as_object().unwrap_or_else(|| panic!("{kind}: not an object: {view}"));
        for (k, v) in obj {
            let expected = table.iter().find(|(f, _)| f == k).map(|(_, t)| *t);
            let expected = expected.unwrap_or_else(|| panic!("{kind}.{k} is not a field of Casdoor's {kind}: {v}"));
            assert_eq!(ty_of(v), Some(expected), "{kind}.{k} = {v}: Casdoor's Go struct has {expected:?}");
        }
        for (f, _) in table {
            assert!(obj.contains_key(*f), "{kind}.{f} is missing from the view");
        }
    }

    #[test]
    fn admin_views_keep_the_json_types_of_casdoors_structs() {
        let s = |x: &str| x.to_string();
        let org = Organization {
            name: s("acme"),
            master_password: s("hash"),
            password_salt: s("salt"),
            tags: vec![s("staff")],
            ..Default::default()
        };
        check("organization", &org_view(&org), ORGANIZATION);
        let user = User {
            address: vec![s("1 Main St")],
            groups: vec![s("acme/dev")],
            properties: [(s("k"), s("v"))].into(),
            ..Default::default()
        };
        check("user", &user_view(&user), USER);
        let key = SigningKey { kid: s("k1"), algorithm: s("RS256"), created_at: 1_700_000_000, ..Default::default() };
        let cert = cert_view(&key);
        check("cert", &cert, CERT);
        assert_eq!(cert["createdTime"], "2023-11-14T22:13:20Z");
        let role = Role {
            users: vec![s("acme/a")],
            groups: vec![s("acme/g")],
            roles: vec![s("acme/r")],
            domains: vec![s("d")],
            ..Default::default()
        };
        check("role", &super::to_value(&role), ROLE);
        check("group", &super::to_value(&Group::default()), GROUP);
        let app = Application {
            redirect_uris: vec![s("https://a/cb")],
            grant_types: vec![s("password")],
            scopes: vec![s("read")],
            token_fields: vec![s("Email")],
            token_attributes: vec![TokenAttribute { name: s("t"), ..Default::default() }],
            client_secret_digest: vec![1; 32],
            ..Default::default()
        };
        let view = super::app_fields(&app, "RS256");
        check("application", &view, APPLICATION);
        assert_eq!(view["scopes"][0]["name"], "read");
    }

    #[test]
    fn organization_secrets_are_masked_and_sdk_bodies_normalized() {
        let org = Organization { name: "acme".into(), master_password: "h".into(), ..Default::default() };
        let v = org_view(&org);
        assert_eq!((v["masterPassword"].as_str(), v["passwordSalt"].as_str()), (Some("***"), Some("")));
        let mut body = json!({"name": "x", "grantTypes": [""], "tags": ["", "a"], "cert": null, "expireInHours": 0});
        normalize_sdk_body(&mut body);
        assert_eq!(body, json!({"name": "x", "grantTypes": [], "tags": ["a"], "expireInHours": 0}));
    }

    /// Batches of one import go in their numbered order whatever order they arrive in; a batch whose
    /// predecessor never comes is refused after the wait; imports do not wait for each other.
    #[tokio::test]
    async fn batches_take_turns_in_their_order() {
        let turns = Arc::new(ApplyTurns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for seq in [2u64, 0, 1] {
            let (turns, order) = (turns.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                assert!(turns.wait("run-a", seq, Duration::from_secs(5)).await);
                order.lock().unwrap().push(seq);
                turns.done("run-a", seq);
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
        assert!(!turns.wait("run-a", 1, Duration::from_millis(50)).await, "a batch that already went");
        assert!(!turns.wait("run-a", 5, Duration::from_millis(50)).await, "batches 3 and 4 never came");
        assert!(turns.wait("run-b", 0, Duration::from_millis(50)).await, "another import starts at once");
    }
}
