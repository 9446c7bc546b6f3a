//! Organizations: their view (secrets masked) and their writes (the master password hashed with the
//! organization's own scheme).

use jeton_raft::model::Organization;
use jeton_raft::{Command, PutMode};
use serde_json::{json, Value};

use super::{fail, to_value, AdminReply, MASK};
use crate::clock::rfc3339_now;
use crate::service::Edge;

/// An organization as the admin API shows it: the master password and the organization salt masked, as a
/// user's password is (sending `***` back keeps the stored value).
pub(super) fn org_view(o: &Organization) -> Value {
    let mut v = to_value(o);
    if let Some(m) = v.as_object_mut() {
        // Casdoor's organizations all belong to `admin`.
        m.insert("owner".into(), json!("admin"));
        for (key, stored) in [("masterPassword", &o.master_password), ("passwordSalt", &o.password_salt)] {
            m.insert(key.into(), json!(if stored.is_empty() { "" } else { MASK }));
        }
    }
    v
}

impl Edge {
    pub(super) async fn put_organization(&self, body: &Value, mode: PutMode) -> AdminReply {
        let mut org: Organization = match serde_json::from_value(body.clone()) {
            Ok(o) => o,
            Err(e) => return fail(400, format!("invalid organization: {e}")),
        };
        let existing = match self.store.organization(&org.name).and_then(|r| r.map(|r| r.to_owned()).transpose()) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("admin put_organization: {e}");
                return fail(500, "internal error");
            }
        };
        let old = existing.unwrap_or_default();
        // What the views mask comes back masked: keep what is stored.
        let keeps_master = org.master_password == MASK;
        if keeps_master {
            org.master_password = old.master_password.clone();
        }
        if org.password_salt == MASK {
            org.password_salt = old.password_salt.clone();
        }
        if org.created_time.is_empty() {
            org.created_time = if old.created_time.is_empty() { rfc3339_now() } else { old.created_time.clone() };
        }
        let scheme = match org_scheme(&org, !keeps_master) {
            Ok(scheme) => scheme,
            Err(refused) => return refused,
        };
        if keeps_master
            && !org.master_password.is_empty()
            && (org.password_type != old.password_type || org.password_salt != old.password_salt)
        {
            // The stored master password is a hash made with the old scheme and salt: it would never match.
            return fail(400, "changing passwordType or passwordSalt needs the masterPassword again (or empty)");
        }
        if let (false, Some(scheme)) = (keeps_master || org.master_password.is_empty(), scheme) {
            // A master password sent here is the password itself: it is stored hashed with the
            // organization's scheme and salt, as Casdoor's update-organization does (COMPAT §4.3).
            match self.passwords.hash(scheme, &org.master_password, &org.password_salt).await {
                Ok(hashed) => org.master_password = hashed,
                Err(e) => return fail(400, format!("masterPassword not accepted: {e}")),
            }
        }
        self.commit(Command::PutOrganization { org, mode }).await
    }
}

/// An organization's password scheme: one of Casdoor's, or none — but not none when a master password
/// comes in clear, to be hashed with it.
pub(crate) fn org_scheme(
    org: &Organization,
    master_in_clear: bool,
) -> Result<Option<crate::passwords::schemes::Scheme>, AdminReply> {
    match crate::passwords::schemes::Scheme::parse(&org.password_type) {
        None if !org.password_type.is_empty() => {
            Err(fail(400, format!("unsupported passwordType {}", org.password_type)))
        }
        None if master_in_clear && !org.master_password.is_empty() => {
            Err(fail(400, "a masterPassword needs the organization's passwordType"))
        }
        scheme => Ok(scheme),
    }
}
