//! End-to-end tests: real `jeton` processes on loopback, driven with real clients — reqwest for HTTP and
//! jwt-simple (a JWT library Jeton does not use) to verify tokens against the published JWKS.
//!
//! One test binary with a module per area, so the build stays fast.

mod admin;
mod cluster;
mod deploy;
mod harness;
mod http;
mod import;
mod lifecycle;
mod oauth;
mod passwords;
mod sdk;
mod tokens;
