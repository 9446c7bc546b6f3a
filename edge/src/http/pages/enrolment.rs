//! Setting up TOTP: the enrolment page (a QR code of the `otpauth://` URI, the key to type, a code to
//! prove it), used on the account page and inside sign-in when MFA is required and the user has no factor
//! yet (`POST /login/totp/enrol`, then the recovery codes, then `POST /login/continue` back to the
//! authorization request).
//!
//! The secret being enrolled is not stored until a code proves the app has it: it travels in the form,
//! sealed for the user and the browser it was made for ([`PendingEnrolment`]), so a wrong code shows the
//! same QR code again and any node can take the next step.

use std::net::IpAddr;
use std::time::Duration;

use askama::Template;
use hyper::body::Incoming;
use hyper::Request;
use jeton_raft::model::User;

use super::{
    bad_request, begin_session, carried_continuation, continue_signed_in, csrf_checked, csrf_refused, html, login_page,
    new_page, pending_sign_in, seal_pending, signed_in, totp_page, Continuation, Page, PageRequest,
};
use crate::clock::now;
use crate::http::Reply;
use crate::service::Edge;
use crate::sessions::{csrf_cookie_name, Authentication};

/// A secret on its way to being enrolled, sealed into the enrolment form.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct PendingEnrolment {
    pub(super) user_id: String,
    pub(super) secret: String,
    pub(super) exp: i64,
    /// The CSRF cookie it was made for: it works only in that browser.
    pub(super) csrf: String,
}

const ENROLMENT_PURPOSE: &str = "jeton totp enrolment 1";
/// How long an enrolment page works: time to install an app and scan the code.
const ENROLMENT_SECS: i64 = 15 * 60;

/// A session just started inside sign-in, sealed into the recovery-codes page's continue form.
#[derive(serde::Serialize, serde::Deserialize)]
struct SignedIn {
    session_id: String,
    exp: i64,
    csrf: String,
}

const SIGNED_IN_PURPOSE: &str = "jeton signed in 1";
/// How long the recovery codes may stay on screen before "Continue" (the authorization request is re-checked
/// then; `max_age` and `prompt=login` count from the sign-in).
const SIGNED_IN_SECS: i64 = 15 * 60;

#[derive(Template)]
#[template(path = "totp_enrol.html")]
struct EnrolPage<'a> {
    page: &'a Page,
    qr: &'a str,
    secret: &'a str,
    enrolment: &'a str,
    action: &'a str,
    in_sign_in: bool,
    request: &'a str,
    pending: &'a str,
    error: &'a str,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub(super) struct RecoveryCodesPage<'a> {
    pub(super) page: &'a Page,
    pub(super) codes: &'a [String],
    pub(super) in_sign_in: bool,
    pub(super) request: &'a str,
    pub(super) signed_in: &'a str,
}

/// The CSRF cookie value the browser sent (empty when none).
fn csrf_cookie(edge: &Edge, r: &PageRequest) -> String {
    r.cookie(csrf_cookie_name(edge.config.sessions.secure_cookies)).unwrap_or_default()
}

/// The enrolment a form carried back, if it is for `user`, from this browser, and not too old.
pub(super) fn open_enrolment(edge: &Edge, r: &PageRequest, user: &User) -> Option<PendingEnrolment> {
    let csrf = csrf_cookie(edge, r);
    let e: PendingEnrolment = edge.open_from_browser(ENROLMENT_PURPOSE, r.param("enrolment"))?;
    (e.user_id == user.id && e.exp > now() && e.csrf == csrf).then_some(e)
}

/// A QR code of `text` as inline SVG (`svg#qr`); empty if it cannot be made (the key is shown anyway).
fn qr_svg(text: &str) -> String {
    use qrcode::render::svg;
    let Ok(code) = qrcode::QrCode::new(text.as_bytes()) else {
        return String::new();
    };
    let image = code.render::<svg::Color>().min_dimensions(200, 200).build();
    // Inline in HTML: no XML declaration; an id for the page contract, a name for screen readers.
    let image = match image.find("<svg") {
        Some(at) => &image[at..],
        None => return String::new(),
    };
    image.replacen("<svg ", r#"<svg id="qr" role="img" aria-label="QR code of the key" "#, 1)
}

/// Who an authenticator app says the code is for: the organization (its display name), as Casdoor names it.
fn issuer_of(edge: &Edge, user: &User) -> String {
    match edge.store.organization(&user.owner) {
        Ok(Some(o)) if !o.get().display_name.is_empty() => o.get().display_name.as_str().to_string(),
        _ => user.owner.clone(),
    }
}

/// Where an enrolment page's form goes, and what it carries besides the enrolment.
pub(super) enum EnrolTarget<'a> {
    /// The account page.
    Account,
    /// Inside sign-in: the authorization request and the sealed password step.
    SignIn { request: &'a str, pending: &'a str },
}

/// What an enrolment page shows: whose, which enrolment (a new secret when none: else the one a form
/// carried, after a wrong code), where its form goes, and the error to say.
pub(super) struct EnrolForm<'a> {
    pub(super) user: &'a User,
    pub(super) enrolment: Option<PendingEnrolment>,
    pub(super) target: EnrolTarget<'a>,
    pub(super) error: &'a str,
}

/// The enrolment page.
pub(super) fn enrolment_page(
    edge: &Edge,
    r: &PageRequest,
    page: &Page,
    cookies: &[String],
    form: EnrolForm<'_>,
) -> Reply {
    let EnrolForm { user, enrolment, target, error } = form;
    let enrolment = match enrolment {
        Some(e) => e,
        None => match crate::totp::new_secret() {
            Ok(secret) => PendingEnrolment {
                user_id: user.id.clone(),
                secret,
                exp: now() + ENROLMENT_SECS,
                csrf: csrf_cookie(edge, r),
            },
            Err(e) => {
                tracing::error!("enrolment page: {e}");
                return super::message(edge, r, 500, "Something went wrong", "Try again in a moment.", true);
            }
        },
    };
    let sealed = match edge.seal_for_browser(ENROLMENT_PURPOSE, &enrolment) {
        Ok(s) => s,
        Err(_) => return super::message(edge, r, 500, "Something went wrong", "Try again in a moment.", true),
    };
    let uri = crate::totp::otpauth_uri(&issuer_of(edge, user), &user.name, &enrolment.secret);
    let (action, in_sign_in, request, pending) = match target {
        EnrolTarget::Account => ("/account/totp", false, "", ""),
        EnrolTarget::SignIn { request, pending } => ("/login/totp/enrol", true, request, pending),
    };
    let body = EnrolPage {
        page,
        qr: &qr_svg(&uri),
        secret: &crate::totp::grouped(&enrolment.secret),
        enrolment: &sealed,
        action,
        in_sign_in,
        request,
        pending,
        error,
    }
    .render()
    .unwrap_or_default();
    let status = if error.is_empty() { 200 } else { 400 };
    html(status, body, &page.nonce, cookies)
}

/// The enrolment step of a sign-in: the password checked out (`auth`), MFA is required and the user has
/// no factor.
pub(super) fn in_sign_in(
    edge: &Edge,
    r: &PageRequest,
    to: &Continuation,
    user: &User,
    auth: &Authentication,
    enrolment: Option<PendingEnrolment>,
    error: &str,
) -> Reply {
    let (page, set) = new_page(edge, r, Some(to.app()));
    let pending = match seal_pending(edge, r, auth) {
        Ok(p) => p,
        Err(_) => return login_page(edge, r, to, "Signing in failed on our side. Try again.", 500, &[]),
    };
    let request = to.carried();
    let target = EnrolTarget::SignIn { request: &request, pending: &pending };
    enrolment_page(edge, r, &page, set.as_slice(), EnrolForm { user, enrolment, target, error })
}

/// `POST /login/totp/enrol`: the code that proves the new factor, inside sign-in. Right: the factor is
/// stored, the session starts, and the recovery codes are shown with a button that continues the
/// authorization request.
pub(in crate::http) async fn login_enrol(
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
    if !csrf_checked(edge, &r) {
        return csrf_refused(edge, &r);
    }
    let to = match carried_continuation(edge, &r) {
        Ok(to) => to,
        Err(page) => return *page,
    };
    let (user, auth) = match pending_sign_in(edge, &r, &to) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    match edge.totp_credential(&user.id) {
        // A factor was set up meanwhile (another tab): it is the one to show.
        Ok(Some(_)) => return totp_page(edge, &r, &to, &auth, ""),
        Ok(None) => {}
        Err(e) => {
            tracing::error!("sign-in enrolment: {e}");
            return login_page(edge, &r, &to, "Signing in failed on our side. Try again.", 500, &[]);
        }
    }
    let Some(enrolment) = open_enrolment(edge, &r, &user) else {
        return in_sign_in(edge, &r, &to, &user, &auth, None, "The page was open too long. Scan the new code.");
    };
    let enrolled = match edge.enrol_totp(&user, &enrolment.secret, r.param("code")).await {
        Ok(Some(enrolled)) => enrolled,
        Ok(None) => {
            let wrong = "The code is incorrect. Check the app's clock and try the current code.";
            return in_sign_in(edge, &r, &to, &user, &auth, Some(enrolment), wrong);
        }
        Err(e) => {
            tracing::error!("sign-in enrolment: {e}");
            let failed = "Setting up failed on our side. Try again.";
            return in_sign_in(edge, &r, &to, &user, &auth, Some(enrolment), failed);
        }
    };
    let (session, set) = match begin_session(edge, &r, &to, &user, &auth.with_second_factor()).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    let signed_in =
        SignedIn { session_id: session.id.clone(), exp: now() + SIGNED_IN_SECS, csrf: csrf_cookie(edge, &r) };
    let Ok(signed_in) = edge.seal_for_browser(SIGNED_IN_PURPOSE, &signed_in) else {
        return login_page(edge, &r, &to, "Signing in failed on our side. Try again.", 500, &[set]);
    };
    let (page, csrf_set) = new_page(edge, &r, Some(to.app()));
    let body = RecoveryCodesPage {
        page: &page,
        codes: &enrolled.recovery_codes,
        in_sign_in: true,
        request: &to.carried(),
        signed_in: &signed_in,
    }
    .render()
    .unwrap_or_default();
    let cookies: Vec<String> = std::iter::once(set).chain(csrf_set).collect();
    html(200, body, &page.nonce, &cookies)
}

/// `POST /login/continue`: after the recovery codes, the authorization request goes on under the session
/// that sign-in started (as fresh: the user has just authenticated).
pub(in crate::http) async fn login_continue(
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
    if !csrf_checked(edge, &r) {
        return csrf_refused(edge, &r);
    }
    let to = match carried_continuation(edge, &r) {
        Ok(to) => to,
        Err(page) => return *page,
    };
    let csrf = csrf_cookie(edge, &r);
    let sealed: Option<SignedIn> = edge.open_from_browser(SIGNED_IN_PURPOSE, r.param("signed_in"));
    let current = signed_in(edge, &r);
    match (sealed, current) {
        (Some(s), Some((session, user))) if s.exp > now() && s.csrf == csrf && s.session_id == session.id => {
            continue_signed_in(edge, &r, &to, &session, &user, &[]).await
        }
        _ => login_page(edge, &r, &to, "The sign-in took too long. Sign in again.", 401, &[]),
    }
}
