#![recursion_limit = "256"]
//! Jeton's protocol front ends and the services behind them.
//!
//! - [`http`]: the HTTP listener (hyper + rustls), routing and request decoding;
//! - [`oauth`]: token issuance, introspection, revocation, userinfo;
//! - [`admin`]: the Casdoor-compatible admin API;
//! - [`builtin`]: the objects a new cluster starts with;
//! - [`service`]: [`Edge`], the state and caches the services share;
//! - [`introspection_cache`]: introspection answers and the index that drops them when their state changes;
//! - [`claims`]: what goes into a token, per Casdoor token format;
//! - [`keys`]: signing keys, their encryption at rest, the keyring and JWKS;
//! - [`passwords`]: password sign-in (lookup, lockout, limits, hashing slots, timing floor) and, in
//!   [`passwords::schemes`], the Casdoor password schemes;
//! - [`metrics`]: Prometheus metrics;
//! - `fuzzing` (hidden): the private decoders, for the fuzz targets in `fuzz/`.

pub mod admin;
pub mod builtin;
pub mod claims;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod introspection_cache;
#[cfg(test)]
mod introspection_cache_state_tests;
pub mod keys;
pub mod metrics;
pub mod oauth;
pub mod passwords;
/// The password schemes under their former path.
pub use passwords::schemes as password;
pub mod service;

pub use error::{EdgeError, OAuthError};
pub use service::{Edge, EdgeConfig};
