//! The redirect URI rule of the authorization endpoint (`oauth::authorize::redirect_uri_allowed`): exact
//! match, loopback URIs with any port, and sub-domains of an `https://*.domain/path` entry when the
//! application opted in.
//!
//! Input: a flags byte (bit 0: the sub-domain opt-in), then the registered entries and the candidate URI,
//! separated by newlines (the last line is the candidate).
#![no_main]

use jeton_edge::oauth::authorize::redirect_uri_allowed;
use jeton_raft::model::Application;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut lines: Vec<&str> = text.split('\n').collect();
    let Some(candidate) = lines.pop() else {
        return;
    };
    let app = Application {
        redirect_uris: lines.iter().map(|l| l.to_string()).collect(),
        redirect_uri_subdomains: flags & 1 == 1,
        ..Default::default()
    };
    let allowed = redirect_uri_allowed(&app, candidate);
    // A registered URI (without a fragment) is always allowed; a URI with a fragment never is.
    if lines.contains(&candidate) && !candidate.is_empty() && !candidate.contains('#') {
        assert!(allowed, "a registered URI is refused: {candidate:?}");
    }
    if candidate.contains('#') {
        assert!(!allowed, "a URI with a fragment is allowed: {candidate:?}");
    }
    // Without the opt-in, only an exact match or a loopback URI on another port passes.
    if allowed && flags & 1 == 0 && !lines.contains(&candidate) {
        // Schemes and hosts compare case-insensitively (RFC 3986 §6.2.2.1).
        let lower = candidate.to_ascii_lowercase();
        let host_part = lower.split("://").nth(1).unwrap_or("");
        assert!(
            lower.starts_with("http://") && ["127.0.0.1", "[::1]", "localhost"].iter().any(|h| host_part.starts_with(h)),
            "a non-loopback URI passed without being registered: {candidate:?} in {lines:?}"
        );
    }
});
