//! Where imported items go: a running node (its admin API, `POST /api/jeton/apply`), a node's data dir
//! before its first start (opened here with [`ReplicaNode`]), or nowhere (a dry run without a target).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jeton_edge::import::{apply_items, propose_items, Administrators, ApplyItem, ApplyRequest, ApplyResult};
use jeton_edge::keys::Kek;
use jeton_raft::node::RaftSettings;
use jeton_raft::ReplicaNode;

use crate::source::{percent_decode, redact_url, scrub};
use crate::MigrateError;

/// What the user asked to write into.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// A running node. Credentials: the admin application's client id and secret (HTTP Basic, also taken
    /// from the URL's user info) or an admin Bearer token.
    Node { url: String, client_id: String, client_secret: String, token: String },
    /// A node's data dir, before the node's first start (or while it is stopped).
    DataDir { dir: PathBuf, node_id: u64, raft_addr: String },
    /// Nothing (dry run only).
    Nowhere,
}

impl TargetSpec {
    /// For reports and logs: never a credential.
    pub fn describe(&self) -> String {
        match self {
            TargetSpec::Node { url, .. } => format!("node {}", redact_url(url)),
            TargetSpec::DataDir { dir, .. } => format!("data dir {}", dir.display()),
            TargetSpec::Nowhere => "nowhere (dry run)".into(),
        }
    }
}

pub enum Target {
    Node {
        http: reqwest::Client,
        endpoint: String,
        basic: Option<(String, String)>,
        token: String,
        url: String,
        /// Names this import to the node, which proposes its batches in `seq` order (two are in flight).
        run: String,
        seq: std::sync::atomic::AtomicU64,
        /// `--replace-admin`: the node replaces its administrator user with the imported one.
        replace_admin: bool,
    },
    DataDir {
        node: Box<ReplicaNode>,
        kek: Kek,
        replace_admin: bool,
    },
    Nowhere,
}

/// A data dir's administrators: those `jeton serve` creates with its default settings (a data dir does not
/// say which organization and application its node's config names). In a fresh data dir there are none
/// yet, and the imported ones become the node's.
const DATA_DIR_ADMIN_ORG: &str = "built-in";
const DATA_DIR_ADMIN_APP: &str = "app-built-in";

impl Target {
    /// Opens the target; a node is asked once (an empty dry-run batch) so that a wrong URL or wrong
    /// credentials stop the import before anything is read.
    pub async fn open(spec: &TargetSpec, dry_run: bool, replace_admin: bool) -> Result<Target, MigrateError> {
        match spec {
            TargetSpec::Node { url, client_id, client_secret, token } => {
                let mut u = reqwest::Url::parse(url)
                    .map_err(|e| MigrateError::Usage(format!("--into {}: {e}", redact_url(url))))?;
                let mut basic = (!client_id.is_empty()).then(|| (client_id.clone(), client_secret.clone()));
                if !u.username().is_empty() {
                    let decode = |s: &str| percent_decode(s).unwrap_or_else(|| s.to_string());
                    basic = Some((decode(u.username()), decode(u.password().unwrap_or(""))));
                    let _ = u.set_username("");
                    let _ = u.set_password(None);
                }
                if basic.is_none() && token.is_empty() {
                    return Err(MigrateError::Usage(
                        "--into needs the admin application's credentials: --client-id/--client-secret \
                         (or JETON_ADMIN_CLIENT_ID/JETON_ADMIN_CLIENT_SECRET), a Bearer --token, or id:secret@ in the URL"
                            .into(),
                    ));
                }
                let endpoint = u.join("/api/jeton/apply").map_err(|e| MigrateError::Usage(e.to_string()))?;
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(600))
                    .build()
                    .map_err(|e| MigrateError::Target(e.to_string()))?;
                let target = Target::Node {
                    http,
                    endpoint: endpoint.to_string(),
                    basic,
                    token: token.clone(),
                    url: url.clone(),
                    run: uuid::Uuid::new_v4().to_string(),
                    seq: Default::default(),
                    replace_admin,
                };
                // Not numbered: a request of its own, outside the import's sequence.
                match target.request(Vec::new(), true, None).await {
                    Ok(_) => Ok(target),
                    Err(MigrateError::Target(why)) => {
                        Err(MigrateError::Unusable(format!("cannot import into {}: {why}", spec.describe())))
                    }
                    Err(other) => Err(other),
                }
            }
            TargetSpec::DataDir { dir, node_id, raft_addr } => {
                if dry_run && !dir.join("db").exists() {
                    // Nothing there yet: everything would be written, and a dry run creates nothing.
                    return Ok(Target::Nowhere);
                }
                let id = read_node_id(dir).unwrap_or(*node_id);
                let node = ReplicaNode::start(dir, id, raft_addr, &RaftSettings::default(), Default::default())
                    .await
                    .map_err(|e| MigrateError::Unusable(e.to_string()))?;
                let kek = match std::env::var("JETON_KEK").ok().filter(|k| !k.is_empty()) {
                    Some(hex_key) => Kek::from_hex(&hex_key),
                    None if dry_run && !dir.join("kek").exists() => Kek::from_hex(&"00".repeat(32)),
                    None => Kek::load_or_create(&dir.join("kek")),
                }
                .map_err(|e| MigrateError::Target(e.to_string()))?;
                Ok(Target::DataDir { node: Box::new(node), kek, replace_admin })
            }
            TargetSpec::Nowhere => Ok(Target::Nowhere),
        }
    }

    /// How many batches may be in flight at once. Into a data dir, batches are proposed in order from here
    /// (see [`Target::submit`]); over HTTP, each request carries its place in the import and the node
    /// proposes them in that order. Either way the next batch is checked while the previous one applies.
    pub fn depth(&self) -> usize {
        match self {
            Target::DataDir { .. } => 3,
            Target::Node { .. } => 2,
            Target::Nowhere => 1,
        }
    }

    /// Starts applying one batch: into a data dir, the batch is checked and proposed before this returns
    /// (so batches keep their order); the task finishes once it is applied.
    pub async fn submit(
        self: &Arc<Self>,
        items: Vec<ApplyItem>,
        dry_run: bool,
    ) -> Result<tokio::task::JoinHandle<Result<ApplyResult, MigrateError>>, MigrateError> {
        let target_err = |e: jeton_edge::EdgeError| MigrateError::Target(e.to_string());
        if let Target::DataDir { node, kek, replace_admin } = &**self {
            let admins = data_dir_admins(*replace_admin);
            let applied = propose_items(node, kek, items, dry_run, admins).await.map_err(target_err)?;
            return Ok(tokio::spawn(async move { applied.await.map_err(target_err) }));
        }
        // The batch's place in the import is taken here, in submission order, not in the task.
        let seq = self.next_seq();
        let target = self.clone();
        Ok(tokio::spawn(async move { target.apply(items, dry_run, Some(seq)).await }))
    }

    /// The next batch number of an import into a node.
    fn next_seq(&self) -> u64 {
        match self {
            Target::Node { seq, .. } => seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            _ => 0,
        }
    }

    /// Applies (or, dry, evaluates) batch number `seq` (into a node: its place in the import).
    async fn apply(&self, items: Vec<ApplyItem>, dry_run: bool, seq: Option<u64>) -> Result<ApplyResult, MigrateError> {
        match self {
            Target::Node { .. } => self.request(items, dry_run, seq).await,
            Target::DataDir { node, kek, replace_admin } => {
                apply_items(node, kek, items, dry_run, data_dir_admins(*replace_admin))
                    .await
                    .map_err(|e| MigrateError::Target(e.to_string()))
            }
            Target::Nowhere => {
                let mut r = ApplyResult::default();
                for (i, item) in items.iter().enumerate() {
                    *r.written.entry(item_kind(item).to_string()).or_default() += 1;
                    r.would_write.push(i);
                }
                Ok(r)
            }
        }
    }

    /// One `POST /api/jeton/apply` to the node: batch `seq` of this import, or (`None`) a request of its own.
    async fn request(
        &self,
        items: Vec<ApplyItem>,
        dry_run: bool,
        seq: Option<u64>,
    ) -> Result<ApplyResult, MigrateError> {
        match self {
            Target::Node { http, endpoint, basic, token, url, run, replace_admin, .. } => {
                let (run, seq) = match seq {
                    Some(seq) => (run.clone(), seq),
                    None => (String::new(), 0),
                };
                let request = ApplyRequest { items, dry_run, run, seq, replace_admin: *replace_admin };
                let body =
                    serde_json::to_vec(&request).map_err(|e| MigrateError::Target(format!("encoding a batch: {e}")))?;
                // Not `application/json`: the node would also read a JSON body as request parameters.
                let mut req = http
                    .post(endpoint)
                    .header(reqwest::header::CONTENT_TYPE, "application/vnd.jeton.apply+json")
                    .body(body);
                req = match basic {
                    Some((id, secret)) => req.basic_auth(id, Some(secret)),
                    None => req.bearer_auth(token),
                };
                let resp = req.send().await.map_err(|e| MigrateError::Target(scrub(&with_causes(&e), url)))?;
                let status = resp.status();
                let text = resp.text().await.map_err(|e| MigrateError::Target(scrub(&e.to_string(), url)))?;
                let envelope: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if !status.is_success() || envelope.get("status").and_then(|s| s.as_str()) != Some("ok") {
                    let msg = envelope.get("msg").and_then(|m| m.as_str()).unwrap_or(&text).to_string();
                    return Err(MigrateError::Target(format!("the node answered {status}: {msg}")));
                }
                serde_json::from_value(envelope.get("data").cloned().unwrap_or_default())
                    .map_err(|e| MigrateError::Target(format!("unexpected answer from the node: {e}")))
            }
            _ => Err(MigrateError::Target("not a node".into())),
        }
    }

    /// Stops a data-dir node cleanly (flushes).
    pub async fn close(self) {
        if let Target::DataDir { node, .. } = self {
            node.shutdown().await;
        }
    }
}

/// A data dir's administrators (see [`DATA_DIR_ADMIN_ORG`]): kept unless `--replace-admin`, which there
/// may replace the admin application too (no import runs with its credentials).
fn data_dir_admins(replace_admin: bool) -> Administrators<'static> {
    Administrators {
        org: DATA_DIR_ADMIN_ORG,
        app: DATA_DIR_ADMIN_APP,
        replace_user: replace_admin,
        replace_app: replace_admin,
    }
}

pub fn item_kind(item: &ApplyItem) -> &'static str {
    match item {
        ApplyItem::Command(c) => c.kind(),
        ApplyItem::Key(_) => "put_signing_key",
    }
}

/// An error with its causes ("error sending request: ... : Connection refused").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// The node id recorded in a data dir, if it has one.
fn read_node_id(dir: &Path) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("identity.json")).ok()?).ok()?;
    v.get("node_id")?.as_u64()
}
