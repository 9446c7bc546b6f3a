//! The device flow's verification page (RFC 8628 §3.3), `GET|POST /device`: the user types the code their
//! device shows (or follows `verification_uri_complete`, which fills it in), signs in on the same login
//! page as for any authorization if the browser has no session, sees which application asks for what, and
//! allows or denies.
//!
//! Steps, all on `/device`: `GET` shows the code form; `POST` with `user_code` checks the code (a wrong one
//! counts against the address, see [`Edge::device_prompt`]) and shows the login page or the confirmation;
//! `POST` with `decision` records the user's answer. The user always confirms, even for an application
//! that skips consent: a code typed from someone else's screen must not connect their device unnoticed
//! (RFC 8628 §5.4).

use std::net::IpAddr;
use std::time::Duration;

use askama::Template;
use hyper::body::Incoming;
use hyper::{Method, Request};
use jeton_raft::model::{Application, User};

use super::super::Reply;
use super::{
    bad_request, csrf_checked, csrf_refused, html, login_page, message, new_page, scope_meaning, signed_in,
    Continuation, Page, PageRequest,
};
use crate::oauth::device::{display_user_code, DevicePrompt, DeviceRefusal};
use crate::service::Edge;

#[derive(Template)]
#[template(path = "device.html")]
struct CodePage<'a> {
    page: &'a Page,
    user_code: &'a str,
    error: &'a str,
}

#[derive(Template)]
#[template(path = "device_confirm.html")]
struct ConfirmPage<'a> {
    page: &'a Page,
    user_code: &'a str,
    user: &'a str,
    scopes: Vec<(String, &'static str)>,
}

/// The one answer to a code that does not lead anywhere, whatever the reason (no enumeration).
const INVALID_CODE: &str = "That code is invalid or has expired. Check the code on your device and try again.";

/// `GET|POST /device`.
pub(in crate::http) async fn device(
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
    if r.method == Method::GET {
        // From `verification_uri_complete`: the code is filled in, and the user still submits it.
        return code_page(edge, &r, r.param("user_code"), "", 200);
    }
    if !csrf_checked(edge, &r) {
        return csrf_refused(edge, &r);
    }
    let prompt = match edge.device_prompt(r.param("user_code"), Some(ip)) {
        Ok(p) => p,
        Err(why) => return refused(edge, &r, why),
    };
    let current = signed_in(edge, &r).filter(|(_, user)| may_approve(user, &prompt.client.app));
    let Some((session, user)) = current else {
        return login_page(edge, &r, &Continuation::Device(prompt), "", 200, &[]);
    };
    let decision = r.param("decision");
    if decision.is_empty() {
        return confirm_page(edge, &r, &prompt, &user, &[]);
    }
    let approve = decision == "allow";
    match edge.decide_device_authorization(&prompt, approve, &session).await {
        Ok(()) if approve => message(
            edge,
            &r,
            200,
            "Device connected",
            "You may return to your device: it is signed in and will continue on its own.",
            false,
        ),
        Ok(()) => message(
            edge,
            &r,
            200,
            "Request denied",
            "The device was not given access to your account. You may close this page.",
            false,
        ),
        Err(why) => refused(edge, &r, why),
    }
}

/// Whether `user` may answer for `app`: a user of its organization who may sign in (else the login page
/// asks for one who is).
fn may_approve(user: &User, app: &Application) -> bool {
    user.owner == app.organization && crate::passwords::may_sign_in(user).is_ok()
}

/// The code form, with `user_code` filled in and an error if there is one.
fn code_page(edge: &Edge, r: &PageRequest, user_code: &str, error: &str, status: u16) -> Reply {
    let (page, set) = new_page(edge, r, None);
    let shown: String = user_code.chars().take(16).collect();
    let body = CodePage { page: &page, user_code: &shown, error }.render().unwrap_or_default();
    html(status, body, &page.nonce, set.as_slice())
}

/// The page for a user code that cannot go on: the code form again, with why.
pub(super) fn refused(edge: &Edge, r: &PageRequest, why: DeviceRefusal) -> Reply {
    match why {
        DeviceRefusal::Unknown => code_page(edge, r, "", INVALID_CODE, 400),
        DeviceRefusal::TooManyAttempts => {
            code_page(edge, r, "", "Too many wrong codes. Wait a few minutes, then try again.", 429)
        }
        DeviceRefusal::Failed(e) if e.status == 503 => {
            code_page(edge, r, "", "The service is busy. Try again in a moment.", 503)
        }
        DeviceRefusal::Failed(_) => code_page(edge, r, "", "That failed on our side. Try again.", 500),
    }
}

/// Asks the signed-in user whether the device may have what it asks for.
pub(super) fn confirm_page(
    edge: &Edge,
    r: &PageRequest,
    prompt: &DevicePrompt,
    user: &User,
    cookies: &[String],
) -> Reply {
    let (page, set) = new_page(edge, r, Some(&prompt.client.app));
    let scopes = prompt.scopes.iter().map(|s| (s.clone(), scope_meaning(s))).collect();
    let body = ConfirmPage { page: &page, user_code: &display_user_code(&prompt.user_code), user: &user.name, scopes }
        .render()
        .unwrap_or_default();
    let all: Vec<String> = cookies.iter().cloned().chain(set).collect();
    html(200, body, &page.nonce, &all)
}
