//! The account pages of a signed-in user: `/account` (where they are signed in, with a button to sign each
//! session out; the applications they allowed, with a button to take it back; two-step verification; a
//! link to their passkeys) and `/account/totp` (set up an authenticator app, or turn it off with a code).
//!
//! The pages need the browser's session cookie. Without one they say so and send the user to sign in
//! through one of their applications: a sign-in always belongs to an application (its organization, its
//! lockout rule, its session lifetime), and `/account` is not one. Every form posts back here with a CSRF
//! token; the services do the work ([`crate::sessions`], [`crate::mfa`]).

use std::net::IpAddr;
use std::time::Duration;

use askama::Template;
use hyper::body::Incoming;
use hyper::{Method, Request};
use jeton_raft::model::{BrowserSession, User};

use super::enrolment::{enrolment_page, open_enrolment, EnrolForm, EnrolTarget, RecoveryCodesPage};
use super::{
    bad_request, cookie, csrf_checked, csrf_refused, html, message, new_page, see_other, signed_in, Brand, Page,
    PageRequest,
};
use crate::clock::rfc3339;
use crate::http::Reply;
use crate::mfa::Codes;
use crate::passwords::{LockoutRule, Refused};
use crate::service::Edge;
use crate::sessions::session_cookie_name;

/// A session as the account page lists it.
struct SessionView {
    id: String,
    device: String,
    ip: String,
    since: String,
    last_seen: String,
    applications: String,
    current: bool,
}

/// A consent as the account page lists it.
struct ConsentView {
    application: String,
    scopes: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    page: &'a Page,
    user: &'a str,
    sessions: Vec<SessionView>,
    consents: Vec<ConsentView>,
    totp_on: bool,
    recovery_left: usize,
}

#[derive(Template)]
#[template(path = "totp_remove.html")]
struct TotpRemovePage<'a> {
    page: &'a Page,
    since: String,
    recovery_left: usize,
    error: &'a str,
}

/// A page of `user`'s own account: their organization's brand.
fn account_page(edge: &Edge, r: &PageRequest, user: &User) -> (Page, Option<String>) {
    let (mut page, set) = new_page(edge, r, None);
    if let Ok(Some(org)) = edge.store.organization(&user.owner) {
        let org = org.get();
        let name = if org.display_name.is_empty() { org.name.as_str() } else { org.display_name.as_str() };
        page.brand = Brand::new(name.to_string(), org.logo.as_str(), org.theme_color.as_str());
    }
    (page, set)
}

/// What a browser without a session is told.
fn not_signed_in(edge: &Edge, r: &PageRequest) -> Reply {
    message(
        edge,
        r,
        401,
        "You are not signed in",
        "Open one of your organization's applications and sign in there, then come back to this page.",
        true,
    )
}

fn internal(edge: &Edge, r: &PageRequest, what: &str, e: impl std::fmt::Display) -> Reply {
    tracing::error!("account page: {what}: {e}");
    message(edge, r, 500, "Something went wrong", "Try again in a moment.", true)
}

/// `GET|POST /account`: the page, and its forms (`action` `end-session` with `session`, `revoke-consent`
/// with `application`).
pub(in crate::http) async fn account(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    ip: IpAddr,
) -> Reply {
    let r = match PageRequest::read(req, limit, timeout, ip).await {
        Ok(r) => r,
        Err(e) => return bad_request(edge, e),
    };
    let Some((session, user)) = signed_in(edge, &r) else {
        return not_signed_in(edge, &r);
    };
    if r.method != Method::POST {
        return overview(edge, &r, &session, &user);
    }
    if !csrf_checked(edge, &r) {
        return csrf_refused(edge, &r);
    }
    match r.param("action") {
        "end-session" => {
            let id = r.param("session").to_string();
            if let Err(e) = edge.end_sessions_of(&user.id, std::slice::from_ref(&id)).await {
                return internal(edge, &r, "ending a session", e);
            }
            if id == session.id {
                // This browser's own session: it is signed out here too.
                let name = session_cookie_name(edge.config.sessions.secure_cookies);
                let gone = cookie(edge, name, "", Some(0));
                let (page, set) = account_page(edge, &r, &user);
                let text = "This browser is signed out. Sign in again through one of your applications.";
                let body = super::MessagePage { page: &page, title: "Signed out", message: text, is_error: false }
                    .render()
                    .unwrap_or_default();
                let cookies: Vec<String> = std::iter::once(gone).chain(set).collect();
                return html(200, body, &page.nonce, &cookies);
            }
            see_other("/account", &[])
        }
        "revoke-consent" => match edge.revoke_consent(&user.id, r.param("application"), &[]).await {
            Ok(_) => see_other("/account", &[]),
            Err(e) => internal(edge, &r, "revoking a consent", e),
        },
        _ => message(edge, &r, 400, "Unknown action", "Go back to your account page and try again.", true),
    }
}

/// The account page itself.
fn overview(edge: &Edge, r: &PageRequest, current: &BrowserSession, user: &User) -> Reply {
    let sessions = match edge.sessions_of(&user.id) {
        Ok(s) => s,
        Err(e) => return internal(edge, r, "listing sessions", e),
    };
    let consents = match edge.consents_of(&user.id) {
        Ok(c) => c,
        Err(e) => return internal(edge, r, "listing consents", e),
    };
    let totp = match edge.totp_status(&user.id) {
        Ok(t) => t,
        Err(e) => return internal(edge, r, "reading the TOTP factor", e),
    };
    let sessions = sessions
        .into_iter()
        .map(|s| SessionView {
            device: if s.user_agent.is_empty() {
                "Unknown browser".to_string()
            } else {
                s.user_agent.chars().take(80).collect()
            },
            ip: s.client_ip.clone(),
            since: rfc3339(s.auth_time),
            last_seen: rfc3339(s.last_seen),
            applications: s.applications.join(", "),
            current: s.id == current.id,
            id: s.id,
        })
        .collect();
    let consents =
        consents.into_iter().map(|c| ConsentView { application: c.application, scopes: c.scopes.join(" ") }).collect();
    let (page, set) = account_page(edge, r, user);
    let body = AccountPage {
        page: &page,
        user: &user.full_name(),
        sessions,
        consents,
        totp_on: totp.is_some(),
        recovery_left: totp.as_ref().map_or(0, |t| t.recovery_codes_left),
    }
    .render()
    .unwrap_or_default();
    html(200, body, &page.nonce, set.as_slice())
}

/// `GET|POST /account/totp`: set up an authenticator app (`action` `enrol`, with the sealed `enrolment` and
/// its `code`), or turn it off (`action` `remove`, with a current `code`: a session alone does not take
/// a factor away).
pub(in crate::http) async fn account_totp(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    ip: IpAddr,
) -> Reply {
    let r = match PageRequest::read(req, limit, timeout, ip).await {
        Ok(r) => r,
        Err(e) => return bad_request(edge, e),
    };
    let Some((_, user)) = signed_in(edge, &r) else {
        return not_signed_in(edge, &r);
    };
    let status = match edge.totp_status(&user.id) {
        Ok(s) => s,
        Err(e) => return internal(edge, &r, "reading the TOTP factor", e),
    };
    let (page, set) = account_page(edge, &r, &user);
    let remove_page = |error: &str, status: u16| {
        let (since, left) = status_fields(edge, &user);
        let body = TotpRemovePage { page: &page, since, recovery_left: left, error }.render().unwrap_or_default();
        html(status, body, &page.nonce, set.as_slice())
    };
    let enrol_page = |enrolment, error: &str| {
        let form = EnrolForm { user: &user, enrolment, target: EnrolTarget::Account, error };
        enrolment_page(edge, &r, &page, set.as_slice(), form)
    };
    if r.method != Method::POST {
        return match status {
            Some(_) => remove_page("", 200),
            None => enrol_page(None, ""),
        };
    }
    if !csrf_checked(edge, &r) {
        return csrf_refused(edge, &r);
    }
    match (r.param("action"), status) {
        ("enrol", Some(_)) => remove_page("Two-step verification is on already: turn it off first to change it.", 409),
        ("enrol", None) => {
            let Some(enrolment) = open_enrolment(edge, &r, &user) else {
                return enrol_page(None, "The page was open too long. Scan the new code.");
            };
            match edge.enrol_totp(&user, &enrolment.secret, r.param("code")).await {
                Ok(Some(enrolled)) => {
                    let body = RecoveryCodesPage {
                        page: &page,
                        codes: &enrolled.recovery_codes,
                        in_sign_in: false,
                        request: "",
                        signed_in: "",
                    }
                    .render()
                    .unwrap_or_default();
                    html(200, body, &page.nonce, set.as_slice())
                }
                Ok(None) => enrol_page(
                    Some(enrolment),
                    "The code is incorrect. Check the app's clock and try the current code.",
                ),
                Err(e) => internal(edge, &r, "enrolling TOTP", e),
            }
        }
        ("remove", None) => see_other("/account", &[]),
        ("remove", Some(_)) => {
            let code = r.param("code");
            let checked =
                edge.check_second_factor(&user, code, Codes::TotpOrRecovery, Some(ip), LockoutRule::HomeApplication);
            match checked.await {
                Ok(()) => match edge.remove_totp(&user).await {
                    Ok(_) => see_other("/account", &[]),
                    Err(e) => internal(edge, &r, "removing TOTP", e),
                },
                Err(Refused::Locked { .. } | Refused::RateLimited) => {
                    remove_page("Too many attempts. Wait a few minutes, then try again.", 429)
                }
                Err(Refused::Internal(e)) => internal(edge, &r, "checking a code", e),
                Err(_) => remove_page("The code is incorrect or was used already.", 401),
            }
        }
        _ => message(edge, &r, 400, "Unknown action", "Go back to your account page and try again.", true),
    }
}

/// When the user's factor was set up, and how many recovery codes it has left (read afresh).
fn status_fields(edge: &Edge, user: &User) -> (String, usize) {
    match edge.totp_status(&user.id) {
        Ok(Some(s)) => (rfc3339(s.enrolled_at), s.recovery_codes_left),
        _ => (String::new(), 0),
    }
}
