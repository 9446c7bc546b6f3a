//! Sign-out: OIDC RP-Initiated Logout 1.0 at the `end_session_endpoint` (`/oauth/logout`), and Casdoor's
//! `/api/logout` with the same parameters.
//!
//! The session ends on every node (one replicated write). A relying party that names the user's session
//! (`id_token_hint`) signs them out at once; otherwise the user confirms on a page (a cross-site link cannot
//! sign anyone out). `post_logout_redirect_uri` is honoured only when it is registered for the client
//! (exactly), and then carries `state` back.

use std::net::IpAddr;
use std::time::Duration;

use askama::Template;
use hyper::body::Incoming;
use hyper::Request;
use serde_json::Value;

use super::super::Reply;
use super::{bad_request, cookie, csrf_checked, html, message, new_page, see_other, signed_in, Page, PageRequest};
use crate::service::Edge;
use crate::sessions::session_cookie_name;

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    page: &'a Page,
    user: &'a str,
    params: Vec<(&'static str, String)>,
}

/// The logout parameters a confirmation form carries on.
const CARRIED: [&str; 4] = ["id_token_hint", "post_logout_redirect_uri", "state", "client_id"];

/// `GET|POST /oauth/logout` and `/api/logout`.
pub(in crate::http) async fn logout(
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
    // The ID token names the client and the session; only a good token of this issuer counts (an expired
    // one is no hint: the user then confirms).
    let hint = edge.verify_signature(r.param("id_token_hint")).map(|(c, _)| c);
    let hint_client = hint.as_ref().and_then(|c| c.get("aud")).and_then(|a| match a {
        Value::String(s) => Some(s.clone()),
        Value::Array(v) => v.first().and_then(Value::as_str).map(str::to_string),
        _ => None,
    });
    let client_id = match (hint_client, r.param("client_id")) {
        (Some(h), c) if c.is_empty() || c == h => Some(h),
        (Some(_), _) => {
            return message(edge, &r, 400, "Sign-out failed", "client_id differs from the ID token's.", true)
        }
        (None, "") => None,
        (None, c) => Some(c.to_string()),
    };
    let app = client_id.and_then(|c| edge.client(&c).ok().flatten());
    let back = r.param("post_logout_redirect_uri");
    // Registered sign-out return addresses, or (none registered) the redirect URIs, as Keycloak's default
    // does; always an exact match.
    let back_ok = !back.is_empty()
        && app.as_ref().is_some_and(|a| {
            let registered = if a.app.post_logout_redirect_uris.is_empty() {
                &a.app.redirect_uris
            } else {
                &a.app.post_logout_redirect_uris
            };
            registered.iter().any(|u| u == back)
        });
    if !back.is_empty() && !back_ok {
        return message(
            edge,
            &r,
            400,
            "Sign-out failed",
            "The address to return to after signing out is not registered for the application.",
            true,
        );
    }
    let current = signed_in(edge, &r);
    if let Some((session, user)) = &current {
        let hint_matches = hint.as_ref().is_some_and(|c| {
            c.get("sid").and_then(Value::as_str) == Some(session.id.as_str())
                || c.get("sub").and_then(Value::as_str) == Some(user.id.as_str())
        });
        let confirmed = r.method == hyper::Method::POST && csrf_checked(edge, &r);
        if !hint_matches && !confirmed {
            let (page, set) = new_page(edge, &r, app.as_ref().map(|a| &a.app));
            let params =
                CARRIED.iter().filter(|k| !r.param(k).is_empty()).map(|k| (*k, r.param(k).to_string())).collect();
            let body = LogoutPage { page: &page, user: &user.name, params }.render().unwrap_or_default();
            return html(200, body, &page.nonce, set.as_slice());
        }
        if let Err(e) = edge.end_session(&session.id).await {
            tracing::warn!("sign-out: {e:?}");
            return message(edge, &r, 503, "Sign-out failed", "The service is busy. Try again in a moment.", true);
        }
    }
    let clear = cookie(edge, session_cookie_name(edge.config.sessions.secure_cookies), "", Some(0));
    if back_ok {
        let state = r.param("state");
        let location = if state.is_empty() {
            back.to_string()
        } else {
            let sep = if back.contains('?') { '&' } else { '?' };
            let q: String = form_urlencoded::Serializer::new(String::new()).append_pair("state", state).finish();
            format!("{back}{sep}{q}")
        };
        return see_other(&location, &[clear]);
    }
    let mut reply = message(edge, &r, 200, "Signed out", "You are signed out.", false);
    if let Ok(v) = hyper::header::HeaderValue::from_str(&clear) {
        reply.headers_mut().append(hyper::header::SET_COOKIE, v);
    }
    reply
}
