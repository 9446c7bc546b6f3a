//! The OAuth 2 / OIDC endpoints: token (ours and Casdoor's paths), device authorization, introspection,
//! revocation, userinfo.
//! Each decodes its request, asks [`crate::oauth`] and encodes the answer (errors as RFC 6749 §5.2 says).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, WWW_AUTHENTICATE};
use hyper::Request;

use super::decode::{decode, Credentials};
use super::{casdoor_error, json_reply, no_store, oauth_error, Reply};
use crate::error::OAuthError;
use crate::service::{ClientApp, Edge};

/// Which token path a request came in on.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Path {
    /// `/oauth/token`: one client authentication method per request.
    Ours,
    /// `/api/login/oauth/access_token`.
    Casdoor,
    /// `/api/login/oauth/refresh_token`: only `grant_type=refresh_token`.
    CasdoorRefresh,
}

pub(super) async fn token(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    ip: IpAddr,
    path: Path,
) -> Reply {
    let mut d = match decode(req, limit, timeout, Credentials::Client(edge)).await {
        Ok(d) => d,
        Err(e) => return oauth_error(&e),
    };
    if path == Path::CasdoorRefresh && d.params.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(&OAuthError::unsupported_grant_type("this endpoint only takes grant_type=refresh_token"));
    }
    let auth = d.client_auth(path != Path::Ours);
    match edge.token(&d.params, &auth, Some(ip)).await {
        Ok(t) => no_store(json_reply(200, t.body())),
        Err(e) => oauth_error(&e),
    }
}

/// `POST /oauth/device_authorization` and Casdoor's `POST /api/device-auth` (RFC 8628 §3.1): answered
/// with RFC 8628 §3.2's JSON, which has every key Casdoor's has.
pub(super) async fn device_authorization(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    casdoor: bool,
) -> Reply {
    let mut d = match decode(req, limit, timeout, Credentials::Client(edge)).await {
        Ok(d) => d,
        Err(e) => return oauth_error(&e),
    };
    let auth = d.client_auth(casdoor);
    match edge.start_device_authorization(&d.params, &auth).await {
        Ok(grant) => no_store(json_reply(200, grant.body())),
        Err(e) => oauth_error(&e),
    }
}

/// Decodes a request that names a token and authenticates its client (introspection, revocation).
async fn client_and_token(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    casdoor_path: bool,
) -> Result<(Arc<ClientApp>, String), OAuthError> {
    let mut d = decode(req, limit, timeout, Credentials::Client(edge)).await?;
    let auth = d.client_auth(casdoor_path);
    let caller = edge.client_from_request(&d.params, &auth)?;
    match d.params.remove("token").filter(|t| !t.is_empty()) {
        Some(token) => Ok((caller, token)),
        None => Err(OAuthError::invalid_request("token is required")),
    }
}

pub(super) async fn introspect(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    casdoor: bool,
) -> Reply {
    let result = match client_and_token(edge, req, limit, timeout, casdoor).await {
        Ok((caller, token)) => edge.introspect(&caller, &token),
        Err(e) => Err(e),
    };
    match result {
        Ok(body) => no_store(json_reply(200, body)),
        Err(e) => oauth_error(&e),
    }
}

pub(super) async fn revoke(edge: &Edge, req: Request<Incoming>, limit: usize, timeout: Duration) -> Reply {
    let result = match client_and_token(edge, req, limit, timeout, false).await {
        Ok((caller, token)) => edge.revoke(&caller, &token).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => no_store(json_reply(200, "{}")),
        Err(e) => oauth_error(&e),
    }
}

pub(super) async fn userinfo(
    edge: &Edge,
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    casdoor: bool,
) -> Reply {
    let d = match decode(req, limit, timeout, Credentials::Bearer).await {
        Ok(d) => d,
        Err(e) => return oauth_error(&e),
    };
    let token = d
        .bearer
        .clone()
        .or_else(|| d.params.get("access_token").cloned())
        .or_else(|| d.params.get("accessToken").cloned())
        .unwrap_or_default();
    let info = if token.is_empty() { Ok(None) } else { edge.userinfo(&token) };
    match info {
        Ok(Some(v)) => no_store(json_reply(200, v.to_string())),
        Ok(None) if casdoor => casdoor_error("Please login first"),
        Ok(None) => {
            let mut r = json_reply(
                401,
                r#"{"error":"invalid_token","error_description":"the access token is invalid, expired or revoked"}"#,
            );
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            r
        }
        Err(e) => oauth_error(&e),
    }
}
