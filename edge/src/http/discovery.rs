//! The discovery documents (`/.well-known/openid-configuration`, `/.well-known/oauth-authorization-server`):
//! built from the issuer once, when the listener starts.

use bytes::Bytes;
use serde_json::json;

use crate::oauth::device::DEVICE_CODE_GRANT;

/// The discovery documents, encoded once.
pub(super) struct Discovery {
    pub(super) openid: Bytes,
}

impl Discovery {
    pub(super) fn new(issuer: &str) -> Discovery {
        let doc = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/oauth/authorize"),
            "token_endpoint": format!("{issuer}/oauth/token"),
            "device_authorization_endpoint": format!("{issuer}/oauth/device_authorization"),
            "introspection_endpoint": format!("{issuer}/oauth/introspect"),
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
            "end_session_endpoint": format!("{issuer}/oauth/logout"),
            "jwks_uri": format!("{issuer}/.well-known/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": ["authorization_code", "client_credentials", "password", "refresh_token",
                DEVICE_CODE_GRANT],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
                "ES384", "ES512", "EdDSA"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile", "address", "phone", "offline_access"],
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "acr_values_supported": ["pwd", "mfa"],
            "authorization_response_iss_parameter_supported": true,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "claims_parameter_supported": false,
            "ui_locales_supported": ["en"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "auth_time", "nonce", "acr", "amr",
                "sid", "at_hash", "azp", "client_id", "scope", "owner", "name", "preferred_username", "given_name",
                "family_name", "email", "email_verified", "picture", "website", "gender", "birthdate", "locale",
                "phone", "phone_number", "address", "groups", "roles"],
        });
        Discovery { openid: Bytes::from(doc.to_string()) }
    }
}
