//! The discovery documents (`/.well-known/openid-configuration`, `/.well-known/oauth-authorization-server`):
//! built from the issuer once, when the listener starts.

use bytes::Bytes;
use serde_json::json;

/// The discovery documents, encoded once.
pub(super) struct Discovery {
    pub(super) openid: Bytes,
}

impl Discovery {
    pub(super) fn new(issuer: &str) -> Discovery {
        let doc = json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/oauth/token"),
            "introspection_endpoint": format!("{issuer}/oauth/introspect"),
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
            "jwks_uri": format!("{issuer}/.well-known/jwks"),
            // No browser flow (authorization endpoint) is served by this node.
            "response_types_supported": [],
            "grant_types_supported": ["client_credentials", "password", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "RS384", "RS512", "ES256", "EdDSA"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile", "address", "phone", "offline_access"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "owner", "name",
                "preferred_username", "email", "email_verified", "picture", "phone_number", "address"],
        });
        Discovery { openid: Bytes::from(doc.to_string()) }
    }
}
