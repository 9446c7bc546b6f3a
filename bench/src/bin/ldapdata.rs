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

use jeton_bench::{apply, built_in_commands, sample_user, write_users};
use jeton_edge::keys::Kek;
use jeton_edge::passwords::schemes::{self, Scheme};
use jeton_raft::model::{Organization, User};
use jeton_raft::node::RaftSettings;
use jeton_raft::{Command, PutMode, ReplicaNode};

const USAGE: &str = "usage: ldapdata --data-dir DIR --set 10k|1m [--batch 2000]";
/// The organization administrator every organization gets; the bench searches as them.
const ADMIN_NAME: &str = "ldapadmin";
const ADMIN_PASSWORD: &str = "ldapadmin-secret";

/// One organization of a set: its name, password scheme, users, and the width of the number in the names.
struct Org {
    name: &'static str,
    scheme: Scheme,
    users: u64,
    digits: usize,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let (Some(dir), Some(set)) = (value("--data-dir"), value("--set")) else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let batch = match value("--batch").map(|b| b.parse::<u64>()) {
        None => 2000,
        Some(Ok(b)) if b > 0 => b,
        Some(_) => {
            eprintln!("--batch must be a number of at least 1");
            return ExitCode::FAILURE;
        }
    };
    let orgs = match set.as_str() {
        "10k" => vec![
            Org { name: "bench", scheme: Scheme::Salt, users: 10_000, digits: 5 },
            Org { name: "bench-plain", scheme: Scheme::Plain, users: 10_000, digits: 5 },
        ],
        "1m" => vec![
            Org { name: "small", scheme: Scheme::Salt, users: 100, digits: 7 },
            Org { name: "big", scheme: Scheme::Salt, users: 1_000_000, digits: 7 },
        ],
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match populate(Path::new(&dir), &orgs, batch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ldapdata: {e}");
            ExitCode::FAILURE
        }
    }
}

fn populate(dir: &Path, orgs: &[Org], batch: u64) -> Result<(), String> {
    if dir.join("db").exists() || dir.join("identity.json").exists() {
        return Err(format!("{} already holds a node; ldapdata needs a new data dir", dir.display()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let node = ReplicaNode::start(dir, 1, "127.0.0.1:7001", &RaftSettings::default(), Default::default())
            .await
            .map_err(|e| format!("starting the node: {e}"))?;
        // The file `jeton serve` reads the key-encryption key from, so the binary can open the keys.
        let kek = Kek::load_or_create(&dir.join("kek")).map_err(|e| e.to_string())?;
        let mut commands = built_in_commands(&kek, "ldapdata-admin", "ldapdata-admin-secret-0123456789")?;
        for (n, org) in orgs.iter().enumerate() {
            commands.push(Command::PutOrganization {
                org: Organization {
                    name: org.name.into(),
                    display_name: format!("LDAP bench {}", org.name),
                    created_time: "2026-11-20T08:00:00Z".into(),
                    password_type: org.scheme.as_str().into(),
                    ..Default::default()
                },
                mode: PutMode::Create,
            });
            // Numbered past the users, so its id is its own.
            let mut admin = user(org, n, org.users, ADMIN_NAME, ADMIN_PASSWORD)?;
            admin.is_admin = true;
            commands.push(Command::PutUser { user: admin, mode: PutMode::Create });
        }
        apply(&node, Command::Batch { commands }).await?;
        for (n, org) in orgs.iter().enumerate() {
            eprintln!("populate: organization {} ({} users, {})", org.name, org.users, org.scheme.as_str());
            write_users(&node, org.users, batch, |i| {
                let k = i + 1;
                let name = format!("user{k:0width$}", width = org.digits);
                user(org, n, i, &name, &format!("secret{k:0width$}", width = org.digits))
            })
            .await?;
        }
        node.shutdown().await;
        Ok::<(), String>(())
    })?;
    eprintln!("ldapdata: done: {}", dir.display());
    Ok(())
}

/// User number `i` of organization number `n`: the bench's realistic user record with this name and password.
fn user(org: &Org, n: usize, i: u64, name: &str, password: &str) -> Result<User, String> {
    let mut u = sample_user(i);
    let salt =
        if org.scheme.salt_inside() || org.scheme == Scheme::Plain { String::new() } else { schemes::new_salt() };
    u.owner = org.name.into();
    u.name = name.into();
    u.id = format!("0b6a1b7e-7c1d-4a53-{:04x}-{i:012x}", n + 1);
    u.email = format!("{name}@{}.bench.example", org.name);
    u.password_type = org.scheme.as_str().into();
    u.password = schemes::hash(org.scheme, password, &salt).map_err(|e| e.to_string())?;
    u.password_salt = salt;
    u.signup_application = String::new();
    u.groups = vec![format!("{}/engineering", org.name)];
    Ok(u)
}
