//! Criterion benches of the hot functions, grouped so that what competes sits side by side in one report:
//! - `mint`: signing one user access token per algorithm (the claims JSON built once, outside the loop),
//!   building that claims JSON alone, and the whole client_credentials grant through `Edge::token`;
//! - `verify`: `LoadedKey::verify` of that token per algorithm, and the bare signature check in aws-lc;
//! - `introspect`: `Edge::introspect` answered from the cache, and computed (cache miss), with the parts of a
//!   miss (`verify_signature`, `check_token`) and the case of one user holding many live tokens;
//! - `record`: a user record read in place (rkyv) versus deserialized, with and without the sled lookup.
//!
//! Run: `cargo bench -p jeton-bench` (one group: `cargo bench -p jeton-bench -- introspect`; a fast pass:
//! `-- --quick`). Each bench measures for 3 s with 30 samples, so the suite takes a few minutes on 2 cores.
//! Quote ratios from one run, not absolute times: the machines are noisy.

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::signature::{self, ParsedPublicKey, UnparsedPublicKey, VerificationAlgorithm};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion};
use jeton_bench::Fixture;
use jeton_edge::keys::Alg;

/// Short groups: the whole suite must fit in a few minutes.
fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    g
}

fn mint(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut g = group(c, "mint");
    let claims = fx.user_claims_json();
    for alg in Alg::GENERATED {
        let key = fx.key(alg);
        g.bench_function(format!("sign {}", alg.as_str()), |b| {
            b.iter(|| key.sign(&key.access_header, black_box(&claims)).expect("sign"))
        });
    }
    // The other Ed25519 implementation in the tree signing the same input (the key does not change the cost).
    let token = fx.user_token(Alg::EdDSA);
    let (input, _) = token.rsplit_once('.').expect("compact JWS");
    let dalek = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    g.bench_function("EdDSA signature only, ed25519-dalek sign", |b| {
        b.iter(|| ed25519_dalek::Signer::sign(&dalek, black_box(input.as_bytes())))
    });
    // What a mint costs besides the signature: claims of a JWT-Standard user token, serialized.
    g.bench_function("claims build + JSON", |b| b.iter(|| fx.user_claims_json()));
    g.bench_function("client_credentials grant (EdDSA)", |b| b.iter(|| fx.client_credentials()));
    g.finish();
}

fn verify(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut g = group(c, "verify");
    for alg in Alg::GENERATED {
        let key = fx.key(alg);
        let token = fx.user_token(alg);
        g.bench_function(alg.as_str(), |b| b.iter(|| key.verify(black_box(&token)).expect("verifies")));
    }
    // The bare signature check inside it, to tell the cryptography from the JWT handling (base64, header
    // and claims JSON, validation). jsonwebtoken hands aws-lc the raw public key on every call ("key parsed
    // per call"); aws-lc can also keep a parsed key ("key parsed once").
    for alg in Alg::GENERATED {
        let token = fx.user_token(alg);
        let (input, sig) = token.rsplit_once('.').expect("compact JWS");
        let sig = URL_SAFE_NO_PAD.decode(sig).expect("base64url");
        let (algorithm, public) = public_key(&fx, alg);
        let unparsed = UnparsedPublicKey::new(algorithm, public.clone());
        unparsed.verify(input.as_bytes(), &sig).expect("verifies");
        g.bench_function(format!("{} signature only, key parsed per call", alg.as_str()), |b| {
            b.iter(|| unparsed.verify(black_box(input.as_bytes()), &sig).expect("verifies"))
        });
        let parsed = ParsedPublicKey::new(algorithm, &public).expect("public key");
        g.bench_function(format!("{} signature only, key parsed once", alg.as_str()), |b| {
            b.iter(|| parsed.verify_sig(black_box(input.as_bytes()), &sig).expect("verifies"))
        });
    }
    // The other Ed25519 implementation in the tree, for comparison.
    let token = fx.user_token(Alg::EdDSA);
    let (input, sig) = token.rsplit_once('.').expect("compact JWS");
    let sig = ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).expect("base64url")).expect("sig");
    let raw: [u8; 32] = public_key(&fx, Alg::EdDSA).1.try_into().expect("32 bytes");
    let dalek = ed25519_dalek::VerifyingKey::from_bytes(&raw).expect("public key");
    g.bench_function("EdDSA signature only, ed25519-dalek verify_strict", |b| {
        b.iter(|| dalek.verify_strict(black_box(input.as_bytes()), &sig).expect("verifies"))
    });
    g.finish();
}

/// aws-lc's verification algorithm for `alg` and the public key in the form `UnparsedPublicKey` takes
/// (Ed25519: the 32 raw bytes; P-256: the uncompressed point; RSA: DER, here the SubjectPublicKeyInfo).
fn public_key(fx: &Fixture, alg: Alg) -> (&'static dyn VerificationAlgorithm, Vec<u8>) {
    let jwk = &fx.key(alg).jwk;
    let b64 = |k: &str| URL_SAFE_NO_PAD.decode(jwk[k].as_str().expect("jwk member")).expect("base64url");
    match alg {
        Alg::EdDSA => (&signature::ED25519, b64("x")),
        Alg::ES256 => (&signature::ECDSA_P256_SHA256_FIXED, [vec![4], b64("x"), b64("y")].concat()),
        _ => {
            let kid = fx.key(alg).kid.clone();
            let stored = fx.edge.store.signing_key(&kid).expect("read").expect("stored").to_owned().expect("decode");
            let body: String = stored.public_key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
            (&signature::RSA_PKCS1_2048_8192_SHA256, STANDARD.decode(body).expect("PEM body"))
        }
    }
}

fn introspect(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut g = group(c, "introspect");
    let client = fx.edge.authenticate_client(jeton_bench::CLIENT_ID, jeton_bench::CLIENT_SECRET).expect("client");
    let token = fx.client_credentials();
    for t in [token.clone(), fx.user_token(Alg::EdDSA)] {
        let answer = fx.edge.introspect(&client, &t).expect("introspect");
        assert!(answer.starts_with(br#"{"active":true"#), "{answer:?}");
    }
    g.bench_function("cache hit", |b| b.iter(|| fx.edge.introspect(&client, black_box(&token)).expect("introspect")));
    // What a miss computes before the answer is built and cached, without any cache: signature, expiry,
    // issuer (`verify_signature`), then revocation, client and subject (`check_token`).
    let user_token = fx.user_token(Alg::EdDSA);
    for (kind, t) in [("client_credentials", &token), ("user", &user_token)] {
        g.bench_function(format!("verify_signature, {kind} token"), |b| {
            b.iter(|| fx.edge.verify_signature(black_box(t)).expect("valid"))
        });
        g.bench_function(format!("check_token, {kind} token"), |b| {
            b.iter(|| fx.edge.check_token(black_box(t)).expect("checked").expect("active"))
        });
    }
    // Cache misses: every timed call gets a token minted for it in the (untimed) set-up of `iter_batched`,
    // so each is introspected exactly once and misses the token cache, while the application cache stays
    // warm, as it does in production for a known client. (`Edge::invalidate(&Change::Everything)` would
    // also empty the caches, but it reloads the whole keyring, RSA included, for every iteration and makes
    // the client lookup miss as well: a colder case than a fresh token from a known client.) The timed call
    // verifies the signature, checks the revocation set, and builds and caches the answer; the user token
    // also reads its subject by id and decodes it. User tokens rotate over the fixture's 2,000 users.
    g.bench_function("cache miss, client_credentials token (EdDSA)", |b| {
        b.iter_batched(
            || fx.client_credentials(),
            |t| fx.edge.introspect(&client, &t).expect("introspect"),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("cache miss, user token (EdDSA)", |b| {
        b.iter_batched(
            || fx.user_token(Alg::EdDSA),
            |t| fx.edge.introspect(&client, &t).expect("introspect"),
            BatchSize::SmallInput,
        )
    });
    // One user holding many live tokens (a service account on the password grant, a busy user): every
    // cached answer of the user is linked in the index that a change to the user follows (a set per user,
    // no cap), so a miss adds one link to a large set. Here user 1 gets 300 answers cached first.
    for _ in 0..300 {
        fx.edge.introspect(&client, &fx.user_token_of(Alg::EdDSA, 1)).expect("introspect");
    }
    g.bench_function("cache miss, user token, user with 256+ cached answers", |b| {
        b.iter_batched(
            || fx.user_token_of(Alg::EdDSA, 1),
            |t| fx.edge.introspect(&client, &t).expect("introspect"),
            BatchSize::SmallInput,
        )
    });
    let repeated = fx.user_token_of(Alg::EdDSA, 1);
    fx.edge.introspect(&client, &repeated).expect("introspect");
    g.bench_function("same token again, user with 256+ cached answers", |b| {
        b.iter(|| fx.edge.introspect(&client, black_box(&repeated)).expect("introspect"))
    });
    g.finish();
}

fn record(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut g = group(c, "record");
    let store = fx.edge.store.clone();
    let (org, name) = (fx.users[0].owner.as_str(), fx.users[0].name.as_str());
    // What a hot path reads of a user: the flags that make its tokens inactive and the fields of a claim set.
    g.bench_function("lookup + read in place (rkyv)", |b| {
        b.iter(|| {
            let rec = store.user(black_box(org), black_box(name)).expect("read").expect("exists");
            let u = rec.get();
            (u.is_forbidden, u.is_deleted, u.id.len(), u.email.len(), u.display_name.len(), u.groups.len())
        })
    });
    g.bench_function("lookup + deserialize", |b| {
        b.iter(|| {
            let u =
                store.user(black_box(org), black_box(name)).expect("read").expect("exists").to_owned().expect("decode");
            (u.is_forbidden, u.is_deleted, u.id.len(), u.email.len(), u.display_name.len(), u.groups.len())
        })
    });
    // The same without the sled lookup: the record is already at hand.
    let rec = store.user(org, name).expect("read").expect("exists");
    g.bench_function("read in place (rkyv), record held", |b| {
        b.iter(|| {
            let u = black_box(&rec).get();
            (u.is_forbidden, u.is_deleted, u.id.len(), u.email.len(), u.display_name.len(), u.groups.len())
        })
    });
    g.bench_function("deserialize, record held", |b| {
        b.iter(|| {
            let u = black_box(&rec).to_owned().expect("decode");
            (u.is_forbidden, u.is_deleted, u.id.len(), u.email.len(), u.display_name.len(), u.groups.len())
        })
    });
    g.finish();
}

criterion_group!(benches, mint, verify, introspect, record);
criterion_main!(benches);
