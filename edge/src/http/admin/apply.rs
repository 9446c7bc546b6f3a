//! `POST /api/jeton/apply`: an import's batch, decoded here and applied by [`crate::import`].

use std::time::Duration;

use super::{fail, ok, to_value, AdminReply};
use crate::import::{apply_in_turn, apply_items, Administrators, ApplyRequest};
use crate::service::Edge;

/// Largest body `POST /api/jeton/apply` accepts.
pub(super) const APPLY_BODY_LIMIT: usize = 256 << 20;

impl Edge {
    /// `POST /api/jeton/apply` (the caller is already known to be an administrator).
    pub(super) async fn apply_request(&self, body: &[u8]) -> AdminReply {
        let req: ApplyRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return fail(400, format!("the body is not an apply request: {e}")),
        };
        // The admin application is never replaced here: the import runs with its credentials.
        let admins = Administrators {
            org: &self.config.admin_org,
            app: &self.config.admin_app,
            replace_user: req.replace_admin,
            replace_app: false,
        };
        let applied = if req.run.is_empty() {
            apply_items(&self.node, &self.kek, req.items, req.dry_run, admins).await
        } else {
            if !self.apply_turns.wait(&req.run, req.seq, Duration::from_secs(120)).await {
                return fail(
                    409,
                    format!(
                        "batch {} of import {} came out of order (its predecessor never arrived)",
                        req.seq, req.run
                    ),
                );
            }
            apply_in_turn(&self.node, &self.kek, &self.apply_turns, req, admins).await
        };
        match applied {
            Ok(result) => ok(to_value(&result)),
            Err(e) => {
                tracing::error!("apply: {e}");
                fail(503, format!("the write did not happen: {e}"))
            }
        }
    }
}
