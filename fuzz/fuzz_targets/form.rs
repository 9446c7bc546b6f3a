//! The OAuth endpoints' parameters: query string, form body and JSON body (`http::parse_form` and what
//! `decode` does with a request), as raw bytes from a client.
//!
//! Input: a flags byte, then `query 0xFF content-type 0xFF body`. Flags: bit 0 a query string is present,
//! bits 1-2 the content type (none, form, JSON, or the one in the input), bit 3 a client endpoint.
#![no_main]

use jeton_edge::fuzzing::request_params;
use jeton_edge::http::parse_form;
use jeton_edge::oauth::Params;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |b| *b == 0xFF);
    let (query, content_type, body) =
        (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    // A query string reaches the decoder as text (hyper has checked the URI).
    let query = std::str::from_utf8(query).ok().filter(|_| flags & 1 == 1);
    let content_type = match (flags >> 1) & 3 {
        0 => "",
        1 => "application/x-www-form-urlencoded",
        2 => "application/json",
        _ => std::str::from_utf8(content_type).unwrap_or(""),
    };
    let client = flags & 8 != 0;
    if let Ok(params) = request_params(query, content_type, body, client) {
        assert!(params.len() <= Params::MAX, "{} parameters", params.len());
        if client {
            // A secret never comes from the query string of a client endpoint.
            let from_query = query.map(|q| parse_form(q).expect("the query parsed once"));
            for secret in ["client_secret", "password"] {
                assert!(!from_query.as_ref().is_some_and(|q| q.contains_key(secret)), "{secret} in the query");
            }
        }
    }
    if let Ok(form) = std::str::from_utf8(body) {
        if let Ok(params) = parse_form(form) {
            assert!(params.len() <= Params::MAX);
        }
    }
});
