#![recursion_limit = "256"]
//! Jeton's protocol front ends and the services behind them.
//!
//! # Layout
//!
//! Front ends (they decode a protocol, call the services, and encode the answers):
//! - [`http`]: the HTTP listener (hyper + rustls), the one route table, request decoding; the OAuth,
//!   discovery and health endpoints, and in [`http::admin`] the Casdoor-compatible admin API;
//! - [`ldap`]: the LDAP listeners (ldap3_proto codec, LDAPS and StartTLS with rustls), binds and searches.
//!
//! Services (typed requests in, domain results out; no `hyper` or `ldap3_proto` type in a signature):
//! - [`service`]: [`Edge`], the shared handle (store, node, keys, caches, invalidation) every front end gets;
//! - [`oauth`]: token issuance, introspection (and its cache), revocation, userinfo, and in
//!   [`oauth::authorize`] the authorization code flow (requests, the redirect URI rule, codes, ID tokens);
//! - [`mfa`]: second factors (TOTP codes used once cluster-wide, recovery codes, counted by the lockout) for
//!   the pages and RADIUS; setting up and removing a user's factor; whether MFA is required;
//! - [`totp`]: RFC 6238 codes, and TOTP secrets sealed with the key-encryption key (never in a user record);
//! - [`passkeys`]: WebAuthn passkeys (webauthn-rs): registration, sign-in without a username or as second
//!   factor, the issuer as relying party, ceremony state sealed for the browser;
//! - [`sessions`]: browser sessions (SSO), CSRF tokens, sign-in state sealed for the browser to carry;
//! - [`passwords`]: password sign-in (lookup, lockout, limits, hashing slots, timing floor), challenge-response
//!   proofs, in [`passwords::schemes`] the Casdoor password schemes, and in [`passwords::nt_credential`] the
//!   NT-hash credentials MS-CHAPv2 checks hashed passwords with;
//! - [`directory`]: organizations, users and groups as directory entries; filters, access, indexed searches;
//! - [`import`]: the apply request and the batch pipeline behind `POST /api/jeton/apply` and `migrate/`;
//! - [`builtin`]: the objects a new cluster starts with.
//!
//! Leaves (they import no other module of this crate but one another and [`error`]):
//! - [`keys`]: signing keys, their encryption at rest, the keyring and JWKS;
//! - [`claims`]: what goes into a token, per Casdoor token format;
//! - [`clock`]: the one `now()`, and RFC 3339 text;
//! - [`secrets`]: SHA-256, random hex, the keyed digests introspection answers are cached under;
//! - `generation`: values worked out from the state and kept until it changes (organizations, lockout
//!   rules, who an LDAP viewer is);
//! - [`metrics`]: Prometheus metrics;
//! - [`error`]: [`EdgeError`] for the node, [`OAuthError`] for what a client is told.
//!
//! Shared by the listeners: `listener` (connection limits, accept, drain, TLS handshake). Hidden:
//! `fuzzing`, the private decoders, for the fuzz targets in `fuzz/`.
//!
//! Directions (each can be checked with grep): front ends never import one another (`crate::ldap` does not
//! appear in `http/`, nor `crate::http` in `ldap/`); leaf services (`keys`, `claims`, `clock`, `secrets`,
//! `passwords`, `import`) never import `service.rs`, so no cycle goes through [`Edge`].

pub mod builtin;
pub mod claims;
pub mod clock;
pub mod directory;
#[cfg(test)]
mod directory_state_tests;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod generation;
pub mod http;
pub mod import;
pub mod keys;
pub mod ldap;
pub(crate) mod listener;
pub mod metrics;
pub mod mfa;
pub mod oauth;
pub mod passkeys;
pub mod passwords;
pub mod radius;
pub mod secrets;
/// The password schemes under their former path.
pub use passwords::schemes as password;
pub mod service;
pub mod sessions;
pub mod totp;

pub use error::{EdgeError, OAuthError};
pub use service::{Edge, EdgeConfig};
