//! Browser sign-in state of users, for administrators: sessions, consents and second factors.
//!
//! - `GET /api/get-sessions?owner=ORG[&user=NAME][&p=N&pageSize=M]`: an organization's live sessions, in
//!   the rows of Casdoor's `Session` (`owner`, `name` = the user, `application`, `createdTime`,
//!   `sessionId`: one row per user and application, newest first). A Jeton session is one single sign-on
//!   session shared by the applications it signed in to, so it appears in the row of each (a session that
//!   has not reached an application yet in the row with `application` empty). Jeton adds `sessions`: each
//!   session of the row in detail (times, address, browser, methods).
//! - `POST /api/delete-session` with `{"owner", "name"}`: ends the user's sessions; with `application`,
//!   those of that row; with `sessionId` (a list), those sessions. Every node forgets them at once; the
//!   ended sessions' cookies no longer sign anyone in. `data` is Casdoor's `Affected` / `Unaffected`.
//! - `GET /api/get-consents?owner=ORG[&user=NAME]`: what users allowed applications (Casdoor keeps these as
//!   the user's `applicationScopes`, `ConsentRecord`s; its API has no list of them): `owner`, `name`,
//!   `application` (`owner/name` of the application, as Casdoor names it), `grantedScopes`, `createdTime`.
//! - `POST /api/revoke-consent` with `{"owner", "name", "application", "grantedScopes"}`: takes the scopes
//!   back (Casdoor's path; there the signed-in user revokes their own); without `grantedScopes`, the whole
//!   consent. The application asks again at the next sign-in.
//! - `POST /api/delete-mfa` with `owner` and `name` (query, form or JSON, as Casdoor reads them): resets the
//!   user's second factor: the TOTP factor is removed and MFA turned off (`preferredMfaType` empty). If
//!   their organization requires MFA, they set up a new factor at their next sign-in.

use std::collections::BTreeMap;

use jeton_raft::model::{BrowserSession, User};
use serde_json::{json, Value};

use super::{fail, ok, ok2, split_id, AdminReply, Page};
use crate::clock::rfc3339;
use crate::oauth::Params;
use crate::service::Edge;

/// Rows answered when the request names no page (the largest page there is).
const UNPAGED: usize = 1000;

/// One session in detail: what Jeton adds to Casdoor's rows.
fn session_detail(s: &BrowserSession) -> Value {
    json!({
        "id": s.id,
        "createdTime": rfc3339(s.auth_time),
        "lastSeen": rfc3339(s.last_seen),
        "expiresAt": rfc3339(s.expires_at),
        "idleTimeout": s.idle_secs,
        "clientIp": s.client_ip,
        "userAgent": s.user_agent,
        "amr": s.amr,
        "acr": s.acr,
        "applications": s.applications,
    })
}

/// Sessions as Casdoor's rows: one per user and application, newest first.
fn session_rows(sessions: &[BrowserSession]) -> Vec<Value> {
    let mut rows: BTreeMap<(String, String, String), Vec<&BrowserSession>> = BTreeMap::new();
    for s in sessions {
        let apps: Vec<&str> =
            if s.applications.is_empty() { vec![""] } else { s.applications.iter().map(String::as_str).collect() };
        for app in apps {
            rows.entry((s.owner.clone(), s.name.clone(), app.to_string())).or_default().push(s);
        }
    }
    let mut rows: Vec<(i64, Value)> = rows
        .into_iter()
        .map(|((owner, name, application), sessions)| {
            let created = sessions.iter().map(|s| s.auth_time).min().unwrap_or(0);
            let row = json!({
                "owner": owner,
                "name": name,
                "application": application,
                "createdTime": rfc3339(created),
                "sessionId": sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
                "sessions": sessions.iter().map(|s| session_detail(s)).collect::<Vec<_>>(),
            });
            (created, row)
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    rows.into_iter().map(|(_, row)| row).collect()
}

/// `owner` and `name` of a write: the JSON body's, else the query's (Casdoor's `delete-mfa` reads a form,
/// which arrives here as the query or a form body).
fn owner_and_name(body: &Value, query: &Params) -> (String, String) {
    let from = |k: &str| {
        body.get(k).and_then(Value::as_str).or_else(|| query.get(k).map(String::as_str)).unwrap_or_default().to_string()
    };
    (from("owner"), from("name"))
}

impl Edge {
    /// The user `owner/name`, if there is one.
    fn admin_user(&self, owner: &str, name: &str) -> Result<Option<User>, AdminReply> {
        match self.store.user(owner, name).and_then(|r| r.map(|r| r.to_owned()).transpose()) {
            Ok(u) => Ok(u),
            Err(e) => {
                tracing::error!("admin: reading user {owner}/{name}: {e}");
                Err(fail(500, "internal error"))
            }
        }
    }

    /// `get-sessions` (see the module documentation).
    pub(super) fn admin_sessions(&self, owner: &str, user: &str, page: Option<Page>) -> AdminReply {
        if owner.is_empty() {
            return fail(400, "owner is required");
        }
        let live = if user.is_empty() {
            let at = crate::clock::now();
            let mut live = Vec::new();
            for record in self.store.sessions() {
                match record.and_then(|r| r.to_owned()) {
                    Ok(s) if s.owner == owner && s.is_live(at) => live.push(s),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!("admin sessions: {e}");
                        return fail(500, "internal error");
                    }
                }
            }
            live
        } else {
            match self.admin_user(owner, user) {
                Ok(Some(u)) => match self.sessions_of(&u.id) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!("admin sessions: {e}");
                        return fail(500, "internal error");
                    }
                },
                Ok(None) => Vec::new(),
                Err(refused) => return refused,
            }
        };
        let rows = session_rows(&live);
        let total = rows.len();
        let (skip, take) = page.map(|p| ((p.number - 1).saturating_mul(p.size), p.size)).unwrap_or((0, UNPAGED));
        let rows: Vec<Value> = rows.into_iter().skip(skip).take(take).collect();
        ok2(Value::Array(rows), json!(total))
    }

    /// `delete-session` (see the module documentation).
    pub(super) async fn admin_delete_session(&self, body: &Value) -> AdminReply {
        let owner = body.get("owner").and_then(Value::as_str).unwrap_or_default();
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        if owner.is_empty() || name.is_empty() {
            return fail(400, "owner and name (the user) are required");
        }
        let user = match self.admin_user(owner, name) {
            Ok(Some(u)) => u,
            Ok(None) => return ok(json!("Unaffected")),
            Err(refused) => return refused,
        };
        let application = body.get("application").and_then(Value::as_str).unwrap_or_default();
        let ids: Vec<String> = match body.get("sessionId") {
            Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            Some(Value::String(id)) if !id.is_empty() => vec![id.clone()],
            _ => Vec::new(),
        };
        let ended = if !ids.is_empty() {
            self.end_sessions_of(&user.id, &ids).await
        } else if !application.is_empty() {
            match self.sessions_of(&user.id) {
                Ok(live) => {
                    let ids: Vec<String> = live
                        .into_iter()
                        .filter(|s| s.applications.iter().any(|a| a == application))
                        .map(|s| s.id)
                        .collect();
                    self.end_sessions_of(&user.id, &ids).await
                }
                Err(e) => Err(e),
            }
        } else {
            self.end_all_sessions_of(&user.id).await
        };
        match ended {
            Ok(0) => ok(json!("Unaffected")),
            Ok(_) => ok(json!("Affected")),
            Err(e) => super::write_failed(e),
        }
    }

    /// `get-consents` (see the module documentation).
    pub(super) fn admin_consents(&self, owner: &str, user: &str, page: Option<Page>) -> AdminReply {
        if owner.is_empty() {
            return fail(400, "owner is required");
        }
        let consents = if user.is_empty() {
            let prefix = format!("{owner}/");
            let mut all = Vec::new();
            for record in self.store.consents() {
                match record.and_then(|r| r.to_owned()) {
                    Ok(c) if c.user.starts_with(&prefix) => all.push(c),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!("admin consents: {e}");
                        return fail(500, "internal error");
                    }
                }
            }
            all.sort_by(|a, b| (&a.user, &a.application).cmp(&(&b.user, &b.application)));
            all
        } else {
            match self.admin_user(owner, user) {
                Ok(Some(u)) => match self.consents_of(&u.id) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!("admin consents: {e}");
                        return fail(500, "internal error");
                    }
                },
                Ok(None) => Vec::new(),
                Err(refused) => return refused,
            }
        };
        let total = consents.len();
        let (skip, take) = page.map(|p| ((p.number - 1).saturating_mul(p.size), p.size)).unwrap_or((0, UNPAGED));
        let rows: Vec<Value> = consents
            .iter()
            .skip(skip)
            .take(take)
            .map(|c| {
                let (owner, name) = split_id(&c.user).unwrap_or(("", c.user.as_str()));
                json!({
                    "owner": owner,
                    "name": name,
                    "application": self.application_id(&c.application),
                    "grantedScopes": c.scopes,
                    "createdTime": rfc3339(c.granted_at),
                })
            })
            .collect();
        ok2(Value::Array(rows), json!(total))
    }

    /// Casdoor's id of an application: `owner/name`.
    fn application_id(&self, name: &str) -> String {
        match self.store.application(name) {
            Ok(Some(a)) => format!("{}/{}", a.get().owner, name),
            _ => format!("admin/{name}"),
        }
    }

    /// `revoke-consent` (see the module documentation). `data` is whether anything was taken back.
    pub(super) async fn admin_revoke_consent(&self, body: &Value) -> AdminReply {
        let owner = body.get("owner").and_then(Value::as_str).unwrap_or_default();
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        // Casdoor names the application `owner/name`; Jeton's consents know it by name.
        let application = body.get("application").and_then(Value::as_str).unwrap_or_default();
        let application = application.rsplit('/').next().unwrap_or_default();
        if owner.is_empty() || name.is_empty() || application.is_empty() {
            return fail(400, "owner, name (the user) and application are required");
        }
        let scopes: Vec<String> = match body.get("grantedScopes") {
            Some(Value::Array(s)) => s.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => Vec::new(),
        };
        let user = match self.admin_user(owner, name) {
            Ok(Some(u)) => u,
            Ok(None) => return ok(json!(false)),
            Err(refused) => return refused,
        };
        match self.revoke_consent(&user.id, application, &scopes).await {
            Ok(revoked) => ok(json!(revoked)),
            Err(e) => super::write_failed(e),
        }
    }

    /// `delete-mfa` (see the module documentation). `data`: the user's second factors afterwards, in the
    /// shape of Casdoor's `MfaProps` (all off).
    pub(super) async fn admin_delete_mfa(&self, query: &Params, body: &[u8]) -> AdminReply {
        let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let form = match std::str::from_utf8(body).ok().filter(|_| json_body.is_null()) {
            Some(text) => crate::http::decode::parse_form(text).unwrap_or_default(),
            None => Params::new(),
        };
        let (mut owner, mut name) = owner_and_name(&json_body, query);
        if owner.is_empty() || name.is_empty() {
            (owner, name) = owner_and_name(&Value::Null, &form);
        }
        if owner.is_empty() || name.is_empty() {
            return fail(400, "owner and name (the user) are required");
        }
        let user = match self.admin_user(&owner, &name) {
            Ok(Some(u)) => u,
            Ok(None) => return fail(404, format!("user {owner}/{name} does not exist")),
            Err(refused) => return refused,
        };
        if let Err(e) = self.reset_mfa(&user).await {
            return super::write_failed(e);
        }
        let off = |mfa_type: &str| json!({"enabled": false, "isPreferred": false, "mfaType": mfa_type, "secret": "", "recoveryCodes": []});
        ok(json!([off("sms"), off("email"), off(crate::mfa::APP_MFA_TYPE)]))
    }
}
