//! The admin API: create, read, update and delete organizations, users, applications, signing keys, roles
//! and groups, on Casdoor's paths and in Casdoor's JSON shapes (`/api/get-users?owner=ORG`, `/api/add-user`,
//! ...), so Casdoor SDKs work unchanged; read RADIUS accounting sessions; list and end users' browser
//! sessions, list and revoke their consents, reset their second factor.
//!
//! Authorized by a Bearer token of a global administrator (a user of the admin organization, or the admin
//! application's own client-credentials token) or by HTTP Basic with the admin application's client id and
//! secret. Anything else gets 401/403 and changes nothing. Answers use Casdoor's envelope
//! `{"status","msg","data","data2"}`, with an HTTP status that matches.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::Request;
use jeton_raft::model::{Group, Role};
use jeton_raft::{Command, Outcome, PutMode};
use serde_json::{json, Value};

use super::decode::{announces_body, authorization, parse_form, read_body};
use super::{json_reply, Reply};
use crate::error::EdgeError;
use crate::oauth::Params;
use crate::service::Edge;

mod accounting;
pub(crate) mod application;
mod apply;
pub(crate) mod cert;
mod cluster;
pub(crate) mod organization;
mod passkey;
mod session;
pub(crate) mod simple;
pub(crate) mod user;

use cert::cert_view;
use organization::org_view;
use user::user_view;

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
    kind: Kind,
    op: Op,
}

impl AdminGrant {
    /// `POST /api/jeton/apply`, whose body may be large.
    pub fn is_apply(&self) -> bool {
        self.kind == Kind::Import
    }
}

/// Casdoor's own admin paths (not Jeton's import and cluster APIs): where Casdoor's SDKs may authenticate
/// with `clientId` / `clientSecret` query parameters.
pub fn casdoor_path(path: &str) -> bool {
    lookup(path).is_some_and(|(kind, op)| {
        !matches!(kind, Kind::Cluster | Kind::Import | Kind::RadiusAccounting) && op != Op::Rotate
    })
}

/// What an admin path acts on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Cluster,
    Organization,
    User,
    Application,
    Cert,
    Role,
    Group,
    /// `jeton/apply`: a batch of an import.
    Import,
    /// RADIUS accounting sessions (read only; Jeton's own paths, named as Casdoor would).
    RadiusAccounting,
    /// Users' browser sessions.
    Session,
    /// What users allowed applications.
    Consent,
    /// Users' second factors.
    Mfa,
    /// A user's passkeys (list, remove; Jeton's own paths, named as Casdoor would).
    Passkey,
}

/// What an admin path does to its [`Kind`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    List,
    Get,
    Add,
    Update,
    Delete,
    Rotate,
    AddLearner,
    Promote,
    Remove,
    Admit,
    Apply,
}

impl Op {
    /// Reads are `GET` (or `POST`, as some SDKs send them); everything else is `POST`.
    fn is_read(self) -> bool {
        matches!(self, Op::List | Op::Get)
    }
}

/// Every admin path this node serves (the part after `/api/`), with what it acts on and what it does: the
/// one place a path is spelled. [`Edge::admin_gate`] and [`casdoor_path`] look paths up here; [`Edge::admin`]
/// dispatches on kind and operation.
const PATHS: &[(&str, Kind, Op)] = &[
    ("get-cluster-status", Kind::Cluster, Op::Get),
    ("cluster-add-learner", Kind::Cluster, Op::AddLearner),
    ("cluster-promote", Kind::Cluster, Op::Promote),
    ("cluster-remove", Kind::Cluster, Op::Remove),
    ("cluster-admit", Kind::Cluster, Op::Admit),
    ("get-organizations", Kind::Organization, Op::List),
    ("get-organization", Kind::Organization, Op::Get),
    ("add-organization", Kind::Organization, Op::Add),
    ("update-organization", Kind::Organization, Op::Update),
    ("delete-organization", Kind::Organization, Op::Delete),
    ("get-users", Kind::User, Op::List),
    ("get-user", Kind::User, Op::Get),
    ("add-user", Kind::User, Op::Add),
    ("update-user", Kind::User, Op::Update),
    ("delete-user", Kind::User, Op::Delete),
    ("get-applications", Kind::Application, Op::List),
    ("get-application", Kind::Application, Op::Get),
    ("add-application", Kind::Application, Op::Add),
    ("update-application", Kind::Application, Op::Update),
    ("delete-application", Kind::Application, Op::Delete),
    ("get-certs", Kind::Cert, Op::List),
    ("get-cert", Kind::Cert, Op::Get),
    ("add-cert", Kind::Cert, Op::Add),
    ("rotate-cert", Kind::Cert, Op::Rotate),
    ("delete-cert", Kind::Cert, Op::Delete),
    ("get-roles", Kind::Role, Op::List),
    ("get-role", Kind::Role, Op::Get),
    ("add-role", Kind::Role, Op::Add),
    ("update-role", Kind::Role, Op::Update),
    ("delete-role", Kind::Role, Op::Delete),
    ("get-groups", Kind::Group, Op::List),
    ("get-group", Kind::Group, Op::Get),
    ("add-group", Kind::Group, Op::Add),
    ("update-group", Kind::Group, Op::Update),
    ("delete-group", Kind::Group, Op::Delete),
    ("get-radius-accountings", Kind::RadiusAccounting, Op::List),
    ("get-radius-accounting", Kind::RadiusAccounting, Op::Get),
    ("get-sessions", Kind::Session, Op::List),
    ("delete-session", Kind::Session, Op::Delete),
    ("get-consents", Kind::Consent, Op::List),
    ("revoke-consent", Kind::Consent, Op::Delete),
    ("delete-mfa", Kind::Mfa, Op::Delete),
    ("get-webauthn-credentials", Kind::Passkey, Op::List),
    ("delete-webauthn-credential", Kind::Passkey, Op::Delete),
    ("jeton/apply", Kind::Import, Op::Apply),
];

/// What the admin path `path` acts on and does, if it is one.
fn lookup(path: &str) -> Option<(Kind, Op)> {
    PATHS.iter().find(|(p, ..)| *p == path).map(|(_, kind, op)| (*kind, *op))
}

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

/// Splits `owner/name`.
fn split_id(id: &str) -> Option<(&str, &str)> {
    let (o, n) = id.split_once('/')?;
    (!o.is_empty() && !n.is_empty() && !n.contains('/')).then_some((o, n))
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
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
        let Some((kind, op)) = lookup(path) else {
            return Err(fail(404, format!("unknown API /api/{path}")));
        };
        let is_read = op.is_read();
        if is_read != (method == "GET") && !(is_read && method == "POST") {
            return Err(fail(405, format!("use {} for /api/{path}", if is_read { "GET" } else { "POST" })));
        }
        match self.admin_caller(auth) {
            Caller::Admin => Ok(AdminGrant { kind, op }),
            Caller::NotAdmin => Err(fail(403, "this API is for administrators")),
            Caller::Anonymous(why) => Err(fail(401, why)),
        }
    }

    /// Serves one admin API call that [`Edge::admin_gate`] let through.
    pub async fn admin(&self, grant: AdminGrant, query: &Params, body: &[u8]) -> AdminReply {
        let AdminGrant { kind, op } = grant;
        let is_read = op.is_read();
        if kind == Kind::Import {
            return self.apply_request(body).await;
        }
        if kind == Kind::Mfa {
            // Casdoor reads its parameters from a form (or the query), not JSON.
            return self.admin_delete_mfa(query, body).await;
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
        match (kind, op) {
            (Kind::Cluster, Op::Get) => ok(to_value(&self.node.status())),
            (Kind::Cluster, Op::AddLearner | Op::Promote | Op::Remove) => self.cluster_change(op, &body).await,
            (Kind::Cluster, Op::Admit) => self.cluster_admit(&body).await,
            (Kind::Organization, Op::List) => self.list(page, self.store.organizations(), org_view),
            (Kind::Organization, Op::Get) => self.get_one(q("id"), |_, n| self.store.organization(n), org_view),
            (Kind::Organization, Op::Add) => self.put_organization(&body, PutMode::Create).await,
            (Kind::Organization, Op::Update) => self.put_organization(&body, PutMode::Update).await,
            (Kind::Organization, Op::Delete) => {
                self.delete(&body, |_, n| Command::DeleteOrganization { name: n.into() }).await
            }
            (Kind::User, Op::List) => self.list(page, self.store.users(q("owner")), user_view),
            (Kind::User, Op::Get) => self.get_one(q("id"), |o, n| self.store.user(o, n), user_view),
            (Kind::User, Op::Add) => self.put_user(&body, PutMode::Create).await,
            (Kind::User, Op::Update) => self.put_user(&body, PutMode::Update).await,
            (Kind::User, Op::Delete) => {
                self.delete(&body, |o, n| Command::DeleteUser { owner: o.into(), name: n.into() }).await
            }
            (Kind::Application, Op::List) => self.list(page, self.store.applications(), |a| self.app_view(a)),
            (Kind::Application, Op::Get) => {
                self.get_one(q("id"), |_, n| self.store.application(n), |a| self.app_view(a))
            }
            (Kind::Application, Op::Add) => self.put_application(&body, PutMode::Create).await,
            (Kind::Application, Op::Update) => self.put_application(&body, PutMode::Update).await,
            (Kind::Application, Op::Delete) => {
                self.delete(&body, |_, n| Command::DeleteApplication { name: n.into() }).await
            }
            (Kind::Cert, Op::List) => self.list(page, self.store.signing_keys(), cert_view),
            (Kind::Cert, Op::Get) => self.get_one(q("id"), |_, n| self.store.signing_key(n), cert_view),
            (Kind::Cert, Op::Add) => self.add_cert(&body).await,
            (Kind::Cert, Op::Rotate) => self.rotate_cert(q("id"), &body).await,
            (Kind::Cert, Op::Delete) => self.delete(&body, |_, n| Command::DeleteSigningKey { kid: n.into() }).await,
            (Kind::Role, Op::List) => self.list(page, self.store.roles(q("owner")), |r: &Role| to_value(r)),
            (Kind::Role, Op::Get) => self.get_one(q("id"), |o, n| self.store.role(o, n), |r: &Role| to_value(r)),
            (Kind::Role, Op::Add) => {
                self.put_simple(&body, PutMode::Create, |role: Role, mode| Command::PutRole { role, mode }).await
            }
            (Kind::Role, Op::Update) => {
                self.put_simple(&body, PutMode::Update, |role: Role, mode| Command::PutRole { role, mode }).await
            }
            (Kind::Role, Op::Delete) => {
                self.delete(&body, |o, n| Command::DeleteRole { owner: o.into(), name: n.into() }).await
            }
            (Kind::Group, Op::List) => self.list(page, self.store.groups(q("owner")), |g: &Group| to_value(g)),
            (Kind::Group, Op::Get) => self.get_one(q("id"), |o, n| self.store.group(o, n), |g: &Group| to_value(g)),
            (Kind::Group, Op::Add) => {
                self.put_simple(&body, PutMode::Create, |group: Group, mode| Command::PutGroup { group, mode }).await
            }
            (Kind::Group, Op::Update) => {
                self.put_simple(&body, PutMode::Update, |group: Group, mode| Command::PutGroup { group, mode }).await
            }
            (Kind::Group, Op::Delete) => {
                self.delete(&body, |o, n| Command::DeleteGroup { owner: o.into(), name: n.into() }).await
            }
            (Kind::RadiusAccounting, Op::List) => self.radius_accountings(q("owner"), q("user"), page),
            (Kind::RadiusAccounting, Op::Get) => self.radius_accounting(q("id")),
            (Kind::Session, Op::List) => self.admin_sessions(q("owner"), q("user"), page),
            (Kind::Session, Op::Delete) => self.admin_delete_session(&body).await,
            (Kind::Consent, Op::List) => self.admin_consents(q("owner"), q("user"), page),
            (Kind::Consent, Op::Delete) => self.admin_revoke_consent(&body).await,
            (Kind::Passkey, Op::List) => self.list_passkeys(q("userId"), q("id")),
            (Kind::Passkey, Op::Delete) => self.delete_passkey(&body).await,
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

    async fn delete(&self, body: &Value, cmd: impl Fn(&str, &str) -> Command) -> AdminReply {
        let owner = body.get("owner").and_then(Value::as_str).unwrap_or_default();
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            return fail(400, "name is required");
        }
        self.commit(cmd(owner, name)).await
    }
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

/// A write that did not happen (or whose fate is unknown): 503 with the reason.
fn write_failed(e: EdgeError) -> AdminReply {
    tracing::warn!("admin write: {e}");
    fail(503, e.to_string())
}

/// Casdoor's error envelope with an HTTP status, for the admin API.
fn admin_error(status: u16, msg: &str) -> Reply {
    json_reply(status, json!({"status": "error", "msg": msg, "data": null, "data2": null}).to_string())
}

/// The admin API. The caller is checked from the headers (and, on Casdoor's paths, the `clientId` /
/// `clientSecret` query parameters Casdoor's Python SDK sends) before a byte of the body is read: an
/// unauthenticated `POST /api/jeton/apply` with a 200 MiB body is answered 401 at once.
pub(super) async fn handle(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration) -> Reply {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_start_matches("/api/");
    // Parameters come from the query string only: bodies are JSON objects (or import batches), read
    // into their own types.
    let query = match parts.uri.query().map(parse_form).transpose() {
        Ok(q) => q.unwrap_or_default(),
        Err(e) => return admin_error(e.status, &e.description),
    };
    let auth = match authorization(&parts.headers, None) {
        Ok(a) => a,
        Err(e) => return admin_error(e.status, &e.description),
    };
    // Casdoor falls back from Basic to these parameters; its Python SDK sends nothing else.
    let query_credentials = match (&auth.basic, &auth.bearer, query.get("clientId"), query.get("clientSecret")) {
        (None, None, Some(id), Some(secret)) if casdoor_path(path) => Some((id.as_str(), secret.as_str())),
        _ => None,
    };
    let admin_auth = AdminAuth {
        bearer: auth.bearer.as_deref(),
        basic: auth.basic.as_ref().map(|(a, b)| (a.as_str(), b.as_str())).or(query_credentials),
    };
    let method = parts.method.as_str();
    let grant = match edge.admin_gate(path, method, &admin_auth) {
        Ok(grant) => grant,
        Err(refused) => {
            let mut r = json_reply(refused.status, refused.body.to_string());
            if announces_body(&parts.headers) {
                // The body was not read: the connection cannot carry another request.
                r.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            }
            return r;
        }
    };
    // Imports send large batches: a body limit of their own.
    let limit = if grant.is_apply() { apply::APPLY_BODY_LIMIT.max(limit) } else { limit };
    let body = match read_body(&parts.headers, body, limit, timeout).await {
        Ok(b) => b,
        Err(e) => {
            let mut r = admin_error(e.status, &e.description);
            if e.status == 413 || e.status == 408 {
                r.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            }
            return r;
        }
    };
    let r = edge.admin(grant, &query, &body).await;
    json_reply(r.status, r.body.to_string())
}

#[cfg(test)]
mod tests {
    use jeton_raft::model::{
        AccountingSession, Application, Group, Organization, Role, SigningKey, TokenAttribute, User,
    };
    use serde_json::{json, Value};

    use super::accounting::accounting_view;
    use super::application::app_fields;
    use super::cert::cert_view;
    use super::normalize_sdk_body;
    use super::organization::org_view;
    use super::user::user_view;

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

    /// Casdoor's `RadiusAccounting` struct (`object/radius.go`; `time.Time` is a string in JSON), then
    /// Jeton's own fields.
    const RADIUS_ACCOUNTING: &[(&str, Ty)] = &[
        ("owner", Str),
        ("name", Str),
        ("createdTime", Str),
        ("username", Str),
        ("serviceType", Num),
        ("nasId", Str),
        ("nasIpAddr", Str),
        ("nasPortId", Str),
        ("nasPortType", Num),
        ("nasPort", Num),
        ("framedIpAddr", Str),
        ("framedIpNetmask", Str),
        ("acctSessionId", Str),
        ("acctSessionTime", Num),
        ("acctInputTotal", Num),
        ("acctOutputTotal", Num),
        ("acctInputPackets", Num),
        ("acctOutputPackets", Num),
        ("acctTerminateCause", Num),
        ("lastUpdate", Str),
        ("acctStartTime", Str),
        ("acctStopTime", Str),
        ("nasClient", Str),
        ("acctMultiSessionId", Str),
        ("acctStatusType", Str),
        ("callingStationId", Str),
        ("calledStationId", Str),
        ("eventCount", Num),
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
        let view = app_fields(&app, "RS256");
        check("application", &view, APPLICATION);
        assert_eq!(view["scopes"][0]["name"], "read");
        let session = AccountingSession { start_time: 1_700_000_000, ..Default::default() };
        let view = accounting_view(&session);
        check("radius_accounting", &view, RADIUS_ACCOUNTING);
        // Times never set are Go's zero time, which Casdoor's struct decodes (an empty string it does not).
        assert_eq!(
            (view["acctStartTime"].as_str(), view["acctStopTime"].as_str()),
            (Some("2023-11-14T22:13:20Z"), Some("0001-01-01T00:00:00Z"))
        );
    }

    /// Every path is spelled once; reads are exactly the `get-` paths; Casdoor's SDKs may authenticate
    /// with query parameters on Casdoor's own paths only.
    #[test]
    fn the_path_table_has_each_path_once() {
        for (i, (path, _, op)) in super::PATHS.iter().enumerate() {
            assert!(!super::PATHS[..i].iter().any(|(p, ..)| p == path), "{path} twice");
            assert_eq!(op.is_read(), path.starts_with("get-"), "{path}");
        }
        assert!(super::casdoor_path("get-users") && super::casdoor_path("add-cert"));
        // Like the other account objects (sessions, consents), passkeys take the Python SDK's credentials.
        assert!(super::casdoor_path("get-webauthn-credentials") && super::casdoor_path("get-sessions"));
        for path in [
            "jeton/apply",
            "rotate-cert",
            "cluster-admit",
            "get-cluster-status",
            "get-radius-accountings",
            "get-radius-accounting",
            "get-nothing",
        ] {
            assert!(!super::casdoor_path(path), "{path}");
        }
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
}
