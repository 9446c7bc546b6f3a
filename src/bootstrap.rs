//! First start: the built-in organization, its admin user, the admin application and signing keys.

use anyhow::{bail, Context};
use jeton_edge::keys::{self, Alg, Kek};
use jeton_edge::service::now;
use jeton_edge::{admin::random_hex, password};
use jeton_raft::model::{Application, Organization, User};
use jeton_raft::{Command, Outcome, PutMode, ReplicaNode};

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
    let t = now();
    let created = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let mut commands = Vec::new();
    let mut eddsa_kid = String::new();
    for alg in Alg::GENERATED {
        let kid = format!("jeton-{}-{}", alg.as_str().to_lowercase(), random_hex(4));
        // RSA key generation takes a moment; this runs once, before the listener starts.
        let key = tokio::task::block_in_place(|| keys::generate(alg, &kid, "admin", kek, t))?;
        if alg == Alg::EdDSA {
            eddsa_kid = kid;
        }
        commands.push(Command::PutSigningKey { key, mode: PutMode::Create });
    }
    commands.push(Command::PutOrganization {
        org: Organization {
            name: admin_org.into(),
            display_name: "Built-in Organization".into(),
            created_time: created.clone(),
            password_type: "argon2id".into(),
            ..Default::default()
        },
        mode: PutMode::Create,
    });
    let salt = password::new_salt();
    let hash = tokio::task::spawn_blocking({
        let (p, s) = (password.clone(), salt.clone());
        move || password::hash(password::Scheme::Argon2id, &p, &s)
    })
    .await?
    .context("hashing the admin password")?;
    commands.push(Command::PutUser {
        user: User {
            owner: admin_org.into(),
            name: "admin".into(),
            id: uuid::Uuid::new_v4().to_string(),
            created_time: created.clone(),
            r#type: "normal-user".into(),
            password: hash,
            password_type: "argon2id".into(),
            password_salt: salt,
            display_name: "Admin".into(),
            is_admin: true,
            ..Default::default()
        },
        mode: PutMode::Create,
    });
    commands.push(Command::PutApplication {
        app: Application {
            owner: "admin".into(),
            name: admin_app.into(),
            display_name: "Jeton administration".into(),
            created_time: created,
            organization: admin_org.into(),
            client_id: client_id.clone(),
            client_secret_digest: jeton_edge::service::sha256(secret.as_bytes()).to_vec(),
            grant_types: vec!["client_credentials".into(), "password".into(), "refresh_token".into()],
            token_format: "JWT-Standard".into(),
            cert: eddsa_kid,
            expire_in_hours: 1.0,
            refresh_expire_in_hours: 168.0,
            ..Default::default()
        },
        mode: PutMode::Create,
    });
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
