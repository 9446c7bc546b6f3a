//! First start: the built-in organization, its admin user, the admin application and signing keys. On a
//! later start: a warning for each `JETON_ADMIN_*` that differs from what is stored, since they act only
//! on the first start.

use anyhow::{bail, Context};
use jeton_edge::builtin::{self, BuiltIn};
use jeton_edge::clock::now;
use jeton_edge::keys::Kek;
use jeton_edge::secrets::sha256;
use jeton_edge::{password, secrets::random_hex};
use jeton_raft::{Command, Outcome, ReplicaNode};
use subtle::ConstantTimeEq;

/// Credentials created at first start; printed once.
pub struct Created {
    pub admin_password: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
}

/// The administrator credentials chosen with `JETON_ADMIN_PASSWORD`, `JETON_ADMIN_CLIENT_ID` and
/// `JETON_ADMIN_CLIENT_SECRET` (unset or empty: generated at first start). Read and checked before the
/// node opens its data dir, so a bad value stops the start before anything is written.
pub struct AdminEnv {
    password: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

impl AdminEnv {
    pub fn from_env() -> anyhow::Result<AdminEnv> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let admin = AdminEnv {
            password: env("JETON_ADMIN_PASSWORD"),
            client_id: env("JETON_ADMIN_CLIENT_ID"),
            client_secret: env("JETON_ADMIN_CLIENT_SECRET"),
        };
        if admin.client_secret.as_ref().is_some_and(|s| s.len() < 16) {
            bail!("JETON_ADMIN_CLIENT_SECRET must have at least 16 characters");
        }
        Ok(admin)
    }
}

/// Creates the built-in objects if the state has none yet. Returns what was generated.
pub async fn bootstrap(
    node: &ReplicaNode,
    kek: &Kek,
    admin_org: &str,
    admin_app: &str,
    env: &AdminEnv,
) -> anyhow::Result<Option<Created>> {
    if node.store.organization(admin_org)?.is_some() {
        return Ok(None);
    }
    let password = env.password.clone().unwrap_or_else(|| random_hex(12));
    let client_id = env.client_id.clone().unwrap_or_else(|| random_hex(10));
    let secret = env.client_secret.clone().unwrap_or_else(|| random_hex(20));
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
        admin_password: env.password.is_none().then_some(password),
        client_id,
        client_secret: env.client_secret.is_none().then_some(secret),
    }))
}

/// On a start that did not create the administrators (a restart, or a node that joined a cluster): warns
/// about each `JETON_ADMIN_*` that is set but differs from what the state holds, since they act only on
/// the first start. Values are never logged: the client id is compared as is, the secret by its SHA-256
/// digest (all that is stored) in constant time, the password by verifying it against the stored hash
/// of `<admin_org>/admin` with the user's own scheme, off the async threads.
pub async fn warn_if_ignored(
    node: &ReplicaNode,
    admin_org: &str,
    admin_app: &str,
    env: &AdminEnv,
) -> anyhow::Result<()> {
    let app = node.store.application(admin_app)?.map(|r| r.to_owned()).transpose()?;
    let ignored = "it acts only on the first start; the stored value is kept";
    if let Some(id) = &env.client_id {
        if app.as_ref().is_none_or(|a| a.client_id != *id) {
            tracing::warn!(
                "JETON_ADMIN_CLIENT_ID differs from the client id of the admin application {admin_app}: {ignored} \
                 (change it with /api/update-application)"
            );
        }
    }
    if let Some(secret) = &env.client_secret {
        let same = app.as_ref().is_some_and(|a| bool::from(sha256(secret.as_bytes()).ct_eq(&a.client_secret_digest)));
        if !same {
            tracing::warn!(
                "JETON_ADMIN_CLIENT_SECRET differs from the secret of the admin application {admin_app}: {ignored} \
                 (change it with /api/update-application)"
            );
        }
    }
    if let Some(given) = env.password.clone() {
        let org = node.store.organization(admin_org)?.map(|r| r.to_owned()).transpose()?;
        let user = node.store.user(admin_org, "admin")?.map(|r| r.to_owned()).transpose()?;
        let same = match (org, user) {
            (Some(org), Some(user)) => tokio::task::spawn_blocking(move || {
                let policy = password::OrgPolicy {
                    password_type: &org.password_type,
                    password_salt: &org.password_salt,
                    // The organization's master password is not this user's password.
                    master_password: "",
                };
                let stored = password::StoredPassword {
                    password: &user.password,
                    password_type: &user.password_type,
                    password_salt: &user.password_salt,
                };
                password::check(&policy, &stored, &given) == Ok(password::Accepted::Password)
            })
            .await
            .context("checking JETON_ADMIN_PASSWORD")?,
            _ => false,
        };
        if !same {
            tracing::warn!(
                "JETON_ADMIN_PASSWORD is not the password of {admin_org}/admin: {ignored} \
                 (change it with /api/update-user)"
            );
        }
    }
    Ok(())
}
