//! Criterion benches of the hot functions, side by side in one run:
//! - `mint`: signing an access token per algorithm, and the whole client_credentials grant;
//! - `verify`: verifying a token per algorithm;
//! - `introspect`: introspection answered from the cache, and computed (cache miss);
//! - `record`: reading a user record in place (rkyv) versus deserializing it.
//!
//! Run: `cargo bench -p jeton-bench` (add `-- --quick` for a fast pass). Quote ratios, not absolute times.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jeton_bench::Fixture;
use jeton_edge::claims::{self, Subject, TokenFrame};
use jeton_edge::keys::Alg;
use jeton_raft::Change;

fn mint(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut g = c.benchmark_group("mint");
    g.measurement_time(Duration::from_secs(3)).sample_size(30);
    let user = fx.user();
    for alg in [Alg::EdDSA, Alg::ES256, Alg::RS256] {
        let key = fx.key(alg);
        let app = fx.app.clone();
        g.bench_function(alg.as_str(), |b| {
            b.iter(|| {
                let frame = TokenFrame {
                    issuer: "https://jeton.bench",
                    app: &app,
                    scope: "openid profile",
                    nonce: "",
                    jti: "admin/00000000-0000-4000-8000-000000000000",
                    iat: 1_800_000_000,
                    exp: 1_800_003_600,
                    token_type: claims::ACCESS,
                };
                let c = claims::build(&frame, &Subject { user: Some(&user), roles: &[] });
                key.sign(&key.access_header, &serde_json::to_vec(&c).expect("json")).expect("sign")
            })
        });
    }
    g.bench_function("client_credentials grant (EdDSA)", |b| b.iter(|| fx.client_credentials()));
    g.finish();
}

fn verify(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut g = c.benchmark_group("verify");
    g.measurement_time(Duration::from_secs(3)).sample_size(30);
    for alg in [Alg::EdDSA, Alg::ES256, Alg::RS256] {
        let key = fx.key(alg);
        let token =
            key.sign(&key.access_header, br#"{"iss":"https://jeton.bench","exp":4000000000,"sub":"x"}"#).expect("sign");
        g.bench_function(alg.as_str(), |b| b.iter(|| key.verify(&token).expect("verifies")));
    }
    g.finish();
}

fn introspect(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut g = c.benchmark_group("introspect");
    g.measurement_time(Duration::from_secs(3)).sample_size(30);
    let token = fx.client_credentials();
    let client = fx.edge.authenticate_client(&fx.client_id, &fx.client_secret).expect("client");
    g.bench_function("cache hit", |b| b.iter(|| fx.edge.introspect(&client, &token).expect("introspect")));
    // A miss: the cache is emptied before each (untimed) iteration, so the timed call verifies the
    // signature, reads the revocation set, the client and the subject, and builds the answer.
    let edge = fx.edge.clone();
    g.bench_function("cache miss", |b| {
        b.iter_batched(
            || edge.invalidate(&Change::Everything),
            |_| edge.introspect(&client, &token).expect("introspect"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn record(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut g = c.benchmark_group("record");
    g.measurement_time(Duration::from_secs(3)).sample_size(30);
    let store = fx.edge.store.clone();
    g.bench_function("user read in place (rkyv)", |b| {
        b.iter(|| {
            let rec = store.user("bench", "alice").expect("read").expect("exists");
            let u = rec.get();
            (u.is_forbidden, u.is_deleted, u.id.len(), u.email.len())
        })
    });
    g.bench_function("user deserialized", |b| {
        b.iter(|| {
            let u = store.user("bench", "alice").expect("read").expect("exists").to_owned().expect("decode");
            (u.is_forbidden, u.is_deleted, u.id.len(), u.email.len())
        })
    });
    g.finish();
}

criterion_group!(benches, mint, verify, introspect, record);
criterion_main!(benches);
