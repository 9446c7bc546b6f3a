//! Criterion bench of the form / query parser every OAuth request goes through (`jeton_edge::http::
//! parse_form`), on the usual small body and on the attack the cap answers: a 256 KiB body of unique keys.
//!
//! "before" is the parser as it was until the parameter cap (kept here, not in the product, so that both
//! run in one report): every key was checked against every key seen before it, and nothing stopped the
//! loop, so 256 KiB of unique keys cost time quadratic in their number. "after" is the product's parser:
//! at most `Params::MAX` parameters, past which the request is refused, so each key is checked against at
//! most that many and the keys past the cap are never decoded.
//!
//! Run: `cargo bench -p jeton-bench --bench parse`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use jeton_edge::http::parse_form;

/// The parser before the cap: a vector searched for every new key, no limit.
fn parse_form_before(input: &str) -> Result<Vec<(String, String)>, String> {
    let mut params: Vec<(String, String)> = Vec::with_capacity(4);
    for pair in input.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = if pair.contains(['%', '+']) {
            match form_urlencoded::parse(pair.as_bytes()).next() {
                Some((k, v)) => (k.into_owned(), v.into_owned()),
                None => continue,
            }
        } else {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_string(), v.to_string())
        };
        if params.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("parameter {k} is repeated"));
        }
        params.push((k, v));
    }
    Ok(params)
}

/// `k0=v&k1=v&...` up to `bytes` bytes: every key unique.
fn unique_keys(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 16);
    let mut i = 0usize;
    while s.len() < bytes {
        if i > 0 {
            s.push('&');
        }
        s.push_str(&format!("k{i}=v"));
        i += 1;
    }
    s
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("form parse");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(10);
    let usual = "grant_type=client_credentials&scope=openid%20profile&client_id=app-client&client_secret=s3cret";
    g.bench_function("usual 4 parameters, after", |b| b.iter(|| parse_form(black_box(usual)).expect("parses")));
    g.bench_function("usual 4 parameters, before", |b| b.iter(|| parse_form_before(black_box(usual)).expect("parses")));
    let attack = unique_keys(256 * 1024);
    g.bench_function("256 KiB of unique keys, after (refused at the cap)", |b| {
        b.iter(|| parse_form(black_box(&attack)).expect_err("past the cap"))
    });
    g.bench_function("256 KiB of unique keys, before", |b| {
        b.iter(|| parse_form_before(black_box(&attack)).expect("no cap"))
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
