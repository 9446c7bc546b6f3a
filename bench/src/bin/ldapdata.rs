//! Data dirs for the LDAP bench (`bench/ldap.sh`): the users slapd holds in `../shared/bench-peers`
//! (`user%05d` / `secret%05d`), in Jeton organizations.
//!
//! ```text
//! ldapdata --data-dir DIR --set 10k [--batch 2000]
//! ldapdata --data-dir DIR --set 1m  [--batch 2000]
//! ```
//! `10k`: organization `bench` with users `user00001`…`user10000` (password `secret00001`…) hashed with
//! Casdoor's `salt` scheme (salted SHA-256, one random salt per user — the scheme nearest slapd's `{SSHA}`),
//! organization `bench-plain` with the same users and passwords in Casdoor's `plain` scheme (slapd's
//! `ou=plain` holds cleartext `userPassword`s), and in each an organization administrator `ldapadmin` /
//! `ldapadmin-secret` that may search it (bind DN `uid=ldapadmin,ou=bench`).
//! `1m`: organizations `small` (100 users) and `big` (1,000,000 users), `user0000001`… / `secret0000001`…,
//! `salt` scheme, each with its `ldapadmin`: one user's search and bind among 100 and among 1,000,000.
//!
//! Everything else is what `jeton serve` writes on its first start, so the binary serves the dir as is.

use std::path::Path;
use std::process::ExitCode;

use jeton_bench::{arg_value, count_arg, populate_orgs, BenchOrg, ExtraUser};
use jeton_edge::passwords::schemes::Scheme;

const USAGE: &str = "usage: ldapdata --data-dir DIR --set 10k|1m [--batch 2000]";
/// The organization administrator every organization gets; the bench searches as them.
const ADMIN: ExtraUser = ExtraUser { name: "ldapadmin", password: "ldapadmin-secret", is_admin: true };

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(set)) = (arg_value(&args, "--data-dir"), arg_value(&args, "--set")) else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let batch = match count_arg(&args, "--batch", 2000) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let orgs = match set.as_str() {
        "10k" => vec![
            BenchOrg { name: "bench", scheme: Scheme::Salt, users: 10_000, digits: 5 },
            BenchOrg { name: "bench-plain", scheme: Scheme::Plain, users: 10_000, digits: 5 },
        ],
        "1m" => vec![
            BenchOrg { name: "small", scheme: Scheme::Salt, users: 100, digits: 7 },
            BenchOrg { name: "big", scheme: Scheme::Salt, users: 1_000_000, digits: 7 },
        ],
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match populate_orgs(Path::new(&dir), "ldapdata", &orgs, &[ADMIN], batch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ldapdata: {e}");
            ExitCode::FAILURE
        }
    }
}
