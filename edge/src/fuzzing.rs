//! Entry points for the fuzz targets (`fuzz/`): the decoders of what clients send that are private to
//! their modules, reachable without a socket. Not an API: nothing here is meant for another use, and each
//! function only runs the code the endpoints run.

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use jeton_raft::model::{Group, Organization, Role, User};

use crate::oauth::Params;
use crate::OAuthError;

/// The parameters of an OAuth request with this query string, `Content-Type` and body, as the endpoints
/// decode them (`client`: a client endpoint, which refuses a secret in the query string).
pub fn request_params(
    query: Option<&str>,
    content_type: &str,
    body: &[u8],
    client: bool,
) -> Result<Params, OAuthError> {
    let mut params = crate::http::query_params(query, client)?;
    crate::http::add_body_params(&mut params, content_type, body)?;
    Ok(params)
}

/// What an `Authorization` header says: HTTP Basic credentials (id and secret, URL-decoded) and a Bearer
/// token.
pub type Credentials = (Option<(String, String)>, Option<String>);

/// Decodes an `Authorization` header value as the endpoints do.
pub fn authorization(value: HeaderValue) -> Result<Credentials, OAuthError> {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    let auth = crate::http::authorization(&headers, None)?;
    Ok((auth.basic, auth.bearer))
}

/// The kinds of admin API write bodies decoded into records.
#[derive(Debug, Clone, Copy)]
pub enum AdminBody {
    Organization,
    User,
    Application,
    Role,
    Group,
    /// `add-cert`: the key to generate (not generated here).
    Cert,
}

/// Decodes an admin API write body of `kind` and runs the checks that need no state; the HTTP status of
/// the refusal otherwise.
pub fn admin_body(kind: AdminBody, body: &[u8]) -> Result<(), u16> {
    let status = |r: crate::admin::AdminReply| r.status;
    let value = crate::admin::write_body(body).map_err(status)?;
    match kind {
        AdminBody::Organization => {
            let org: Organization = serde_json::from_value(value).map_err(|_| 400u16)?;
            crate::admin::org_scheme(&org, true).map(|_| ()).map_err(status)
        }
        AdminBody::User => {
            let user: User = serde_json::from_value(value).map_err(|_| 400u16)?;
            crate::admin::check_stored_hash(&user).map_err(status)
        }
        AdminBody::Application => crate::admin::application_body(&value).map(|_| ()).map_err(status),
        AdminBody::Role => crate::admin::simple_body::<Role>(&value).map(|_| ()).map_err(status),
        AdminBody::Group => crate::admin::simple_body::<Group>(&value).map(|_| ()).map_err(status),
        AdminBody::Cert => crate::admin::cert_body(&value).map(|_| ()).map_err(status),
    }
}

/// Whether the admin API's paging parameters (`p`, `pageSize`) are accepted.
pub fn admin_page(p: &str, size: &str) -> bool {
    crate::admin::Page::from_query(p, size).is_ok()
}
