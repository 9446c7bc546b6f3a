//! End-to-end tests: real `jeton` processes on loopback, driven with real clients — reqwest for HTTP,
//! jwt-simple (a JWT library Jeton does not use) to verify tokens against the published JWKS, OpenLDAP's
//! ldap-utils and the ldap3 crate for LDAP, FreeRADIUS' radclient and radtest and a Python client written
//! from the RFCs (tests/e2e/radius/client.py) for RADIUS, and another (tests/e2e/radsec/client.py) for RadSec,
//! and a headless Chromium driven through chromedriver (WebDriver, fantoccini) for the browser sign-in pages,
//! and Python's authlib as an OpenID Connect relying party (tests/e2e/oidc_rp/rp.py) for the browser sign-in,
//! and a software WebAuthn authenticator (a p256 key) for the passkey ceremonies' failure cases.
//!
//! One test binary with a module per area, so the build stays fast.

mod admin;
mod browser;
mod cluster;
mod deploy;
mod device;
mod harness;
mod http;
mod import;
mod ldap;
mod lifecycle;
mod oauth;
mod oidc_rp;
mod passkeys;
mod passwords;
mod radius;
mod radius_nthash;
mod radsec;
mod sdk;
mod signin_admin;
mod tokens;
