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
//! runs it (`schemes::verify` on a hash `schemes::hash` made), to set the server's CPU per request
//! against: the rest is the request's own work.

use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use jeton_bench::{arg_value, count_arg, populate_orgs, BenchOrg};
use jeton_edge::passwords::schemes::{self, Scheme};

const USAGE: &str =
    "usage: radiusdata --data-dir DIR [--users 10000] [--slow-users 200] [--batch 2000] | radiusdata --time-hashes";

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

/// Prints the median time of one successful check per scheme, on this thread (checks repeated for at
/// least 0.3 s, in 15 samples).
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
        let mut samples: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..reps {
                    black_box(check());
                }
                t.elapsed().as_secs_f64() * 1e6 / f64::from(reps)
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        println!(
            "{:<9} one check: {:>10.2} us (median of 15 samples of {reps}; min {:.2}, max {:.2})",
            scheme.as_str(),
            samples[7],
            samples[0],
            samples[14]
        );
    }
    Ok(())
}
