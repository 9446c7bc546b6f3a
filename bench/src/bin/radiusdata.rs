//! The data dir of the RADIUS bench (`bench/radius.sh`): the users FreeRADIUS holds in
//! `../shared/bench-peers` (`user%05d` / `secret%05d`, its `files` users file), in Jeton organizations that
//! the load client names in the Class attribute.
//!
//! ```text
//! radiusdata --data-dir DIR [--users 10000] [--slow-users 200] [--batch 2000]
//! radiusdata --time-hashes
//! ```
//! Organizations (each user's password is `secret` and the same number):
//! - `radius-plain`: `user00001`… in Casdoor's `plain` scheme (FreeRADIUS holds `Cleartext-Password`s);
//! - `radius-salt`: the same users in Casdoor's `salt` scheme (salted SHA-256, one random salt per user);
//! - `radius-bcrypt`, `radius-argon2id`: `--slow-users` of them hashed as Casdoor hashes new passwords
//!   (bcrypt cost 10; argon2id 64 MiB, one pass, two lanes): each check is bound by the hash, so a few
//!   hundred users are enough for a rate, and hashing 10,000 of them would take minutes.
//!
//! Everything else is what `jeton serve` writes on its first start, so the binary serves the dir as is.
//!
//! `--time-hashes`: what one password check costs in each of these schemes on one core, as the server
//! runs it (`schemes::verify` on a hash `schemes::hash` made, with `jeton`'s allocator), to set the
//! server's CPU per request against: the rest is the request's own work.

use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use jeton_bench::{arg_value, count_arg, populate_orgs, BenchOrg};
use jeton_edge::passwords::schemes::{self, Scheme};

const USAGE: &str =
    "usage: radiusdata --data-dir DIR [--users 10000] [--slow-users 200] [--batch 2000] | radiusdata --time-hashes";

// As `jeton` (its default `mimalloc` feature): an argon2id check's 64 MiB come from the allocator, and
// what they cost (fresh pages from the kernel, or reused ones) depends on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The schemes of the data set.
const SCHEMES: [Scheme; 4] = [Scheme::Plain, Scheme::Salt, Scheme::Bcrypt, Scheme::Argon2id];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--time-hashes") {
        return match time_hashes() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("radiusdata: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(dir) = arg_value(&args, "--data-dir") else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let counts = (|| {
        let users = count_arg(&args, "--users", 10_000)?;
        let slow = count_arg(&args, "--slow-users", 200)?;
        let batch = count_arg(&args, "--batch", 2000)?;
        if users.max(slow) > 99_999 {
            return Err("at most 99,999 users: names have five digits, as in FreeRADIUS' users file".to_string());
        }
        Ok((users, slow, batch))
    })();
    let (users, slow, batch) = match counts {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let orgs = [
        BenchOrg { name: "radius-plain", scheme: Scheme::Plain, users, digits: 5 },
        BenchOrg { name: "radius-salt", scheme: Scheme::Salt, users, digits: 5 },
        BenchOrg { name: "radius-bcrypt", scheme: Scheme::Bcrypt, users: slow, digits: 5 },
        BenchOrg { name: "radius-argon2id", scheme: Scheme::Argon2id, users: slow, digits: 5 },
    ];
    match populate_orgs(Path::new(&dir), "radiusdata", &orgs, &[], batch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("radiusdata: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the median CPU time of one successful check per scheme, on this thread (15 samples of at least
/// 20 ms each). CPU time rather than wall time: on a machine shared with other work, the wall time counts
/// the waits for a core too.
fn time_hashes() -> Result<(), String> {
    for scheme in SCHEMES {
        let salt = if scheme.salt_inside() || scheme == Scheme::Plain { String::new() } else { schemes::new_salt() };
        let stored = schemes::hash(scheme, "secret00001", &salt).map_err(|e| e.to_string())?;
        let check = || schemes::verify(scheme, black_box("secret00001"), black_box(&stored), black_box(&salt));
        if !check() {
            return Err(format!("{} does not verify its own hash", scheme.as_str()));
        }
        // Enough repetitions that one sample lasts 20 ms at least.
        let started = Instant::now();
        let mut reps = 0u32;
        while started.elapsed() < Duration::from_millis(20) {
            black_box(check());
            reps += 1;
        }
        let mut samples = Vec::with_capacity(15);
        for _ in 0..15 {
            let t = thread_cpu_ns()?;
            for _ in 0..reps {
                black_box(check());
            }
            samples.push((thread_cpu_ns()? - t) as f64 / 1e3 / f64::from(reps));
        }
        samples.sort_by(f64::total_cmp);
        println!(
            "{:<9} one check: {:>10.2} us CPU (median of 15 samples of {reps}; min {:.2}, max {:.2})",
            scheme.as_str(),
            samples[7],
            samples[0],
            samples[14]
        );
    }
    Ok(())
}

/// The CPU time this thread has run, in nanoseconds (the first field of Linux's
/// `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Result<u64, String> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").map_err(|e| format!("schedstat: {e}"))?;
    stat.split_whitespace().next().and_then(|v| v.parse().ok()).ok_or_else(|| format!("schedstat: {stat:?}"))
}
