//! First start: the built-in organization, its admin user, the admin application and signing keys.

use anyhow::{bail, Context};
use jeton_edge::builtin::{self, BuiltIn};
use jeton_edge::keys::Kek;
use jeton_edge::service::now;
use jeton_edge::{admin::random_hex, password};
use jeton_raft::{Command, Outcome, ReplicaNode};

/// Credentials created at first start; printed once.
pub struct Created {
    pub admin_password: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
}

/// Creates the built-in objects if the state has none yet. Returns what was generated.
pub async fn bootstrap(
    node: &ReplicaNode,
    kek: &Kek,
    admin_org: &str,
    admin_app: &str,
) -> anyhow::Result<Option<Created>> {
    if node.store.organization(admin_org)?.is_some() {
        return Ok(None);
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (password, password_given) = match env("JETON_ADMIN_PASSWORD") {
        Some(p) => (p, true),
        None => (random_hex(12), false),
    };
    let client_id = env("JETON_ADMIN_CLIENT_ID").unwrap_or_else(|| random_hex(10));
    let (secret, secret_given) = match env("JETON_ADMIN_CLIENT_SECRET") {
        Some(s) => (s, true),
        None => (random_hex(20), false),
    };
    if secret.len() < 16 {
        bail!("JETON_ADMIN_CLIENT_SECRET must have at least 16 characters");
    }
    let created = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let salt = password::new_salt();
    let hash = tokio::task::spawn_blocking({
        let (p, s) = (password.clone(), salt.clone());
        move || password::hash(password::Scheme::Argon2id, &p, &s)
    })
    .await?
    .context("hashing the admin password")?;
    let built_in = BuiltIn {
        admin_org,
        admin_app,
        client_id: &client_id,
        client_secret: &secret,
        password_hash: hash,
        password_salt: salt,
        admin_user_id: uuid::Uuid::new_v4().to_string(),
        created,
        now: now(),
        kid_suffix: &random_hex(4),
    };
    // RSA key generation takes a moment; this runs once, before the listener starts.
    let commands = tokio::task::block_in_place(|| builtin::commands(kek, built_in))?;
    match node.write(Command::Batch { commands }).await?.outcome {
        Outcome::Applied => {}
        other => bail!("bootstrap refused by the state machine: {other:?}"),
    }
    Ok(Some(Created {
        admin_password: (!password_given).then_some(password),
        client_id,
        client_secret: (!secret_given).then_some(secret),
    }))
}
