//! Roles and groups: records without rules of their own, written as they come.

use jeton_raft::{Command, PutMode};
use serde_json::{json, Value};

use super::{fail, AdminReply};
use crate::clock::rfc3339_now;
use crate::service::Edge;

impl Edge {
    pub(super) async fn put_simple<T: serde::de::DeserializeOwned>(
        &self,
        body: &Value,
        mode: PutMode,
        cmd: impl Fn(T, PutMode) -> Command,
    ) -> AdminReply {
        match simple_body::<T>(body) {
            Ok(v) => self.commit(cmd(v, mode)).await,
            Err(refused) => refused,
        }
    }
}

/// A record of a kind without rules of its own (roles, groups), stamped with the time it is created at
/// unless the body says.
pub(crate) fn simple_body<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, AdminReply> {
    let mut body = body.clone();
    if let Some(m) = body.as_object_mut() {
        m.entry("createdTime").or_insert_with(|| json!(rfc3339_now()));
    }
    serde_json::from_value::<T>(body).map_err(|e| fail(400, format!("invalid object: {e}")))
}
