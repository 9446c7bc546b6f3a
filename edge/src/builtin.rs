//! The built-in objects a new cluster starts with: signing keys (one per generated algorithm), the
//! administrators' organization, its `admin` user and the admin application. `jeton serve` writes them on
//! first start; the start-up benchmark writes the same with fixed values.

use jeton_raft::model::{Application, Organization, User};
use jeton_raft::{Command, PutMode};

use crate::keys::{self, Alg, Kek};
use crate::secrets::sha256;
use crate::EdgeError;

/// What varies between a real first start and a benchmark's.
pub struct BuiltIn<'a> {
    pub admin_org: &'a str,
    pub admin_app: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    /// The admin user's password hash (argon2id) and salt.
    pub password_hash: String,
    pub password_salt: String,
    pub admin_user_id: String,
    /// RFC 3339 creation time of the records; `now` (unix seconds) of the keys.
    pub created: String,
    pub now: i64,
    /// Key ids are `jeton-<alg>-<kid_suffix>`.
    pub kid_suffix: &'a str,
}

/// The commands that create the built-in objects (to be written as one batch). Generating the RSA key takes
/// a moment: call it off the I/O threads.
pub fn commands(kek: &Kek, b: BuiltIn<'_>) -> Result<Vec<Command>, EdgeError> {
    let mut commands = Vec::new();
    // The admin application signs RS256, as new applications do (EdDSA is one setting away).
    let mut rs256_kid = String::new();
    for alg in Alg::GENERATED {
        let kid = format!("jeton-{}-{}", alg.as_str().to_lowercase(), b.kid_suffix);
        let key = keys::generate(alg, &kid, "admin", kek, b.now)?;
        if alg == Alg::RS256 {
            rs256_kid = kid.clone();
        }
        commands.push(Command::PutSigningKey { key, mode: PutMode::Create });
    }
    commands.push(Command::PutOrganization {
        org: Organization {
            name: b.admin_org.into(),
            display_name: "Built-in Organization".into(),
            created_time: b.created.clone(),
            password_type: "argon2id".into(),
            ..Default::default()
        },
        mode: PutMode::Create,
    });
    commands.push(Command::PutUser {
        user: User {
            owner: b.admin_org.into(),
            name: "admin".into(),
            id: b.admin_user_id,
            created_time: b.created.clone(),
            r#type: "normal-user".into(),
            password: b.password_hash,
            password_type: "argon2id".into(),
            password_salt: b.password_salt,
            display_name: "Admin".into(),
            is_admin: true,
            ..Default::default()
        },
        mode: PutMode::Create,
    });
    commands.push(Command::PutApplication {
        app: Application {
            owner: "admin".into(),
            name: b.admin_app.into(),
            display_name: "Jeton administration".into(),
            created_time: b.created,
            organization: b.admin_org.into(),
            client_id: b.client_id.into(),
            client_secret_digest: sha256(b.client_secret.as_bytes()).to_vec(),
            grant_types: vec!["client_credentials".into(), "password".into(), "refresh_token".into()],
            token_format: "JWT-Standard".into(),
            cert: rs256_kid,
            expire_in_hours: 1.0,
            refresh_expire_in_hours: 168.0,
            ..Default::default()
        },
        mode: PutMode::Create,
    });
    Ok(commands)
}
