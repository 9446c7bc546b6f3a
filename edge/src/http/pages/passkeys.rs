//! The passkey endpoints of the pages (the ceremonies are [`crate::passkeys`]'): sign-in with a passkey,
//! alone or as second factor, and the user's passkeys on `/account/passkeys`.
//!
//! The page's script (`/assets/passkey.js`) asks for a ceremony's options with a small form POST answered
//! in JSON (`…/options`), hands them to `navigator.credentials`, and posts the authenticator's answer back
//! in an ordinary form (`POST /passkey/login`, `POST /account/passkeys`): the server then answers as it
//! does for every form, with a redirect (or the `form_post` page) to go on, or the page again with its
//! error. Every request carries the page's CSRF token, and one the browser says came from another site or
//! origin (`Sec-Fetch-Site`, `Origin`) is refused.

use std::net::IpAddr;
use std::time::Duration;

use askama::Template;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::Request;
use jeton_raft::model::User;
use serde_json::json;

use super::{
    bad_request, carried_continuation, csrf_checked, csrf_refused, finish_sign_in, html, login_page, message, new_page,
    open_pending, see_other, signed_in, totp_page, Page, PageRequest, PendingSignIn,
};
use crate::clock::{now, rfc3339};
use crate::error::OAuthError;
use crate::http::{json_reply, no_store, Reply};
use crate::passkeys::{passkey_amr, PasskeyFor, PasskeyRefused};
use crate::service::Edge;
use crate::sessions::{csrf_cookie_name, Authentication};

/// What a passkey that cannot sign in is told (no telling a removed passkey from one of another
/// organization, or a forged answer).
const PASSKEY_REFUSED: &str = "This passkey cannot sign you in here.";
const PASSKEY_EXPIRED: &str = "The passkey request expired. Try again.";
const OUR_SIDE: &str = "Signing in failed on our side. Try again.";

#[derive(Template)]
#[template(path = "account_passkeys.html")]
struct PasskeysPage<'a> {
    page: &'a Page,
    user: &'a str,
    passkeys: Vec<ListedPasskey>,
    error: &'a str,
}

/// A passkey as `/account/passkeys` lists it.
struct ListedPasskey {
    id: String,
    name: String,
    created: String,
    last_used: String,
}

/// Whether the browser says the request came from a page of the issuer's origin. A browser that says
/// nothing (an old one, or a non-browser client) is let through: the CSRF token is what protects the
/// form. `Origin: null` is what a same-origin POST carries under the pages' `no-referrer` policy.
fn from_own_pages(edge: &Edge, r: &PageRequest) -> bool {
    let header = |name: &str| r.headers.get(name).and_then(|v| v.to_str().ok());
    let site_ok = header("sec-fetch-site").is_none_or(|s| s == "same-origin" || s == "none");
    let origin_ok = match header("origin") {
        None | Some("null") => true,
        Some(o) => edge.issuer_origin().as_deref() == Some(o),
    };
    site_ok && origin_ok
}

fn csrf_cookie(edge: &Edge, r: &PageRequest) -> String {
    r.cookie(csrf_cookie_name(edge.config.sessions.secure_cookies)).unwrap_or_default()
}

/// A JSON answer for the page's script: never cached, never sniffed.
fn json_answer(status: u16, body: serde_json::Value) -> Reply {
    let mut r = no_store(json_reply(status, body.to_string()));
    r.headers_mut().insert(hyper::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// A refusal the page's script shows the user (`error_description`).
fn json_refusal(status: u16, text: &str) -> Reply {
    json_answer(status, json!({"error": "invalid_request", "error_description": text}))
}

fn options_refused(e: PasskeyRefused) -> Reply {
    match e {
        PasskeyRefused::TooMany => json_refusal(
            400,
            &format!("You have {} passkeys, the most allowed: remove one first.", crate::passkeys::MAX_PASSKEYS),
        ),
        PasskeyRefused::Failed(e) if e.status == 503 => {
            json_refusal(503, "The service is busy. Try again in a moment.")
        }
        PasskeyRefused::Failed(_) => json_refusal(500, "Passkeys are not available on our side."),
        PasskeyRefused::Expired => json_refusal(401, "The sign-in took too long. Sign in again."),
        _ => json_refusal(400, "There is no passkey to use here."),
    }
}

/// The user of a pending sign-in (password checked, second factor to come) the form carried, if it is
/// this browser's, not expired, and the user may still sign in.
fn pending_user(edge: &Edge, r: &PageRequest) -> Option<(PendingSignIn, User)> {
    let pending = open_pending(edge, r)?;
    let user = edge.store.user_by_id(&pending.user_id).ok()??.to_owned().ok()?;
    crate::passwords::may_sign_in(&user).is_ok().then_some((pending, user))
}

/// `POST /passkey/login/options` (`csrf`, and `pending` for a second factor): the options of a passkey
/// sign-in, as JSON `{"publicKey": …, "state": …}`.
pub(in crate::http) async fn sign_in_options(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    ip: IpAddr,
) -> Reply {
    let r = match PageRequest::read(req, limit, timeout, ip).await {
        Ok(r) => r,
        Err(e) => return json_refusal(e.status, &e.description),
    };
    if !from_own_pages(edge, &r) || !csrf_checked(edge, &r) {
        return json_refusal(403, "This page has expired. Reload it.");
    }
    let user = if r.param("pending").is_empty() {
        None
    } else {
        match pending_user(edge, &r) {
            Some((_, user)) => Some(user),
            None => return options_refused(PasskeyRefused::Expired),
        }
    };
    match edge.start_passkey_sign_in(user.as_ref(), &csrf_cookie(edge, &r)) {
        Ok(options) => json_answer(200, options),
        Err(e) => options_refused(e),
    }
}

/// `POST /passkey/login`: the authenticator's answer (`credential`, `state`), with the authorization
/// request (`request`) and, for a second factor, the pending sign-in (`pending`). Signs the user in and
/// takes the request on, like the password and TOTP steps.
pub(in crate::http) async fn sign_in(
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
    if !from_own_pages(edge, &r) || !csrf_checked(edge, &r) {
        return csrf_refused(edge, &r);
    }
    let to = match carried_continuation(edge, &r) {
        Ok(to) => to,
        Err(page) => return *page,
    };
    let csrf = csrf_cookie(edge, &r);
    let (state, credential) = (r.param("state"), r.param("credential"));
    if !r.param("pending").is_empty() {
        // The second factor, after the password.
        let Some((pending, user)) = pending_user(edge, &r) else {
            return login_page(edge, &r, &to, "The sign-in took too long. Sign in again.", 401, &[]);
        };
        let before =
            Authentication { user_id: user.id.clone(), amr: pending.amr.clone(), auth_time: pending.auth_time };
        return match edge.finish_passkey_sign_in(PasskeyFor::User(&user), &csrf, state, credential).await {
            Ok(done) => {
                let auth = Authentication { amr: passkey_amr(&pending.amr, done.user_verified), ..before };
                finish_sign_in(edge, &r, &to, &user, &auth).await
            }
            Err(PasskeyRefused::Expired) => totp_page(edge, &r, &to, &before, PASSKEY_EXPIRED),
            Err(PasskeyRefused::Failed(_)) => totp_page(edge, &r, &to, &before, OUR_SIDE),
            Err(_) => totp_page(edge, &r, &to, &before, "This passkey cannot be used for this account."),
        };
    }
    let who = PasskeyFor::Organization(&to.app().organization);
    match edge.finish_passkey_sign_in(who, &csrf, state, credential).await {
        Ok(done) => {
            let auth = Authentication {
                user_id: done.user.id.clone(),
                amr: passkey_amr(&[], done.user_verified),
                auth_time: now(),
            };
            finish_sign_in(edge, &r, &to, &done.user, &auth).await
        }
        Err(PasskeyRefused::Expired) => login_page(edge, &r, &to, PASSKEY_EXPIRED, 401, &[]),
        Err(PasskeyRefused::Failed(e)) if e.status == 503 => {
            login_page(edge, &r, &to, "The service is busy. Try again in a moment.", 503, &[])
        }
        Err(PasskeyRefused::Failed(_)) => login_page(edge, &r, &to, OUR_SIDE, 500, &[]),
        Err(_) => login_page(edge, &r, &to, PASSKEY_REFUSED, 401, &[]),
    }
}

/// The page of a request to `/account/passkeys` made without a live session.
fn not_signed_in(edge: &Edge, r: &PageRequest) -> Reply {
    message(
        edge,
        r,
        401,
        "Sign in first",
        "Your session has ended. Sign in to an application again, then come back to manage your passkeys.",
        true,
    )
}

fn passkeys_page(edge: &Edge, r: &PageRequest, user: &User, error: &str, status: u16) -> Reply {
    let listed = match edge.passkeys_of(&user.id) {
        Ok(list) => list,
        Err(e) => {
            tracing::error!("listing passkeys: {e:?}");
            return message(edge, r, 500, "Passkeys", OUR_SIDE, true);
        }
    };
    let day = |t: i64| if t > 0 { rfc3339(t).get(..10).unwrap_or_default().to_string() } else { String::new() };
    let passkeys = listed
        .into_iter()
        .map(|p| ListedPasskey {
            created: day(p.created_at),
            last_used: day(p.last_used_at),
            id: p.credential_id,
            name: p.name,
        })
        .collect();
    let (page, set) = new_page(edge, r, None);
    let body = PasskeysPage { page: &page, user: &user.name, passkeys, error }.render().unwrap_or_default();
    html(status, body, &page.nonce, set.as_slice())
}

/// `GET /account/passkeys`: the signed-in user's passkeys, each with its remove button, and the button
/// that adds one.
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
    match signed_in(edge, &r) {
        Some((_, user)) => passkeys_page(edge, &r, &user, "", 200),
        None => not_signed_in(edge, &r),
    }
}

/// `POST /account/passkeys/options` (`csrf`): the options of a registration for the signed-in user, as
/// JSON `{"publicKey": …, "state": …}`.
pub(in crate::http) async fn registration_options(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    ip: IpAddr,
) -> Reply {
    let r = match PageRequest::read(req, limit, timeout, ip).await {
        Ok(r) => r,
        Err(e) => return json_refusal(e.status, &e.description),
    };
    if !from_own_pages(edge, &r) || !csrf_checked(edge, &r) {
        return json_refusal(403, "This page has expired. Reload it.");
    }
    let Some((_, user)) = signed_in(edge, &r) else {
        return json_refusal(401, "Your session has ended. Sign in again.");
    };
    match edge.start_passkey_registration(&user, &csrf_cookie(edge, &r)) {
        Ok(options) => json_answer(200, options),
        Err(e) => options_refused(e),
    }
}

/// `POST /account/passkeys`: the authenticator's answer to a registration (`credential`, `state`) and the
/// name the user gave it (`name`, optional). Back to the list when it is stored.
pub(in crate::http) async fn register(
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
    if !from_own_pages(edge, &r) || !csrf_checked(edge, &r) {
        return csrf_refused(edge, &r);
    }
    let Some((_, user)) = signed_in(edge, &r) else {
        return not_signed_in(edge, &r);
    };
    let csrf = csrf_cookie(edge, &r);
    let done =
        edge.finish_passkey_registration(&user, &csrf, r.param("state"), r.param("credential"), r.param("name")).await;
    let error = match done {
        Ok(p) => {
            tracing::info!(user = %user.id, credential = %p.credential_id, "passkey registered");
            return see_other("/account/passkeys", &[]);
        }
        Err(PasskeyRefused::Expired) => PASSKEY_EXPIRED,
        Err(PasskeyRefused::Registered) => "This passkey is registered already.",
        Err(PasskeyRefused::TooMany) => "You have the most passkeys allowed: remove one first.",
        Err(PasskeyRefused::Failed(_)) => "Adding the passkey failed on our side. Try again.",
        Err(_) => "The authenticator's answer could not be verified. Try again.",
    };
    passkeys_page(edge, &r, &user, error, 400)
}

/// `POST /account/passkeys/delete` (`credential_id`): removes one of the signed-in user's passkeys.
pub(in crate::http) async fn remove(
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
    if !from_own_pages(edge, &r) || !csrf_checked(edge, &r) {
        return csrf_refused(edge, &r);
    }
    let Some((_, user)) = signed_in(edge, &r) else {
        return not_signed_in(edge, &r);
    };
    match edge.remove_passkey(&user.id, r.param("credential_id")).await {
        Ok(true) => see_other("/account/passkeys", &[]),
        Ok(false) => passkeys_page(edge, &r, &user, "That passkey is not one of yours, or is gone already.", 404),
        Err(OAuthError { status, .. }) => {
            passkeys_page(edge, &r, &user, "Removing the passkey failed on our side. Try again.", status.max(500))
        }
    }
}
