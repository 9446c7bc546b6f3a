//! `jeton import casdoor`: reads a Casdoor database (PostgreSQL or MySQL/MariaDB) and writes its identity
//! state into Jeton as [`Command`]s.
//!
//! - [`source`]: the read-only connection, tables streamed row by row, columns by name;
//! - [`casdoor`]: one Casdoor row → one Jeton record, or the reason it cannot be;
//! - [`target`]: a running node (admin API) or a data dir, written in batches;
//! - [`report`]: counts, skipped rows, the summary table and the JSON report.
//!
//! Tables are read in dependency order (organizations, applications and their certs, groups, users,
//! roles, models, permissions with their policies, tokens, then the issuers to accept) and every table is
//! flushed before the next, so a record never reaches the node before what it refers to. Rows are never
//! all in memory: only the current batch, and small lookups (organizations' password schemes, imported
//! applications and certs, permission policies).
//!
//! Idempotent: the node drops items equal to what it already holds ("unchanged"), so a second run writes
//! nothing and an interrupted run picks up where it stopped.

pub mod casdoor;
pub mod progress;
pub mod report;
pub mod source;
pub mod target;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use jeton_edge::import::ApplyItem;
use jeton_raft::model::{AcceptedIssuer, Application};
use jeton_raft::{Command, PutMode};

use progress::Progress;
pub use progress::ProgressMode;
pub use report::Report;
use source::{Row, Source, Table};
pub use target::TargetSpec;
use target::{item_kind, Target};

/// Errors of an import.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Usage(String),
    #[error("reading the Casdoor database: {0}")]
    Source(String),
    #[error("writing: {0}")]
    Target(String),
    /// The target cannot be used at all (found before anything is read).
    #[error("{0}")]
    Unusable(String),
    /// `--strict` and a row could not be imported.
    #[error("aborted (--strict): {0}")]
    Strict(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What to import and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Database URL (`postgres://…`, `mysql://…`, `mariadb://…`).
    pub from: String,
    /// Only these organizations (empty: all).
    pub orgs: Vec<String>,
    pub dry_run: bool,
    pub target: TargetSpec,
    /// Import nothing if a row cannot be imported: every row is checked (a dry run) before anything is
    /// written. Rows kept out by design (the target's administrators) are not errors.
    pub strict: bool,
    /// Replace the target's administrator user (and, in a data dir, its admin application) with the
    /// imported ones instead of keeping them.
    pub replace_admin: bool,
    pub report: Option<PathBuf>,
    /// Items per batch (one Raft log entry each).
    pub batch_size: usize,
    /// Casdoor's `tableNamePrefix` (prefixes object tables and `permission_rule`, COMPAT §1.1).
    pub table_prefix: String,
    /// Issuers (Casdoor's `origin`) to accept on every imported application's tokens, besides those seen
    /// in the token table.
    pub issuers: Vec<String>,
    /// How progress shows (bars only ever on a terminal). `Quiet` also leaves out the dry run's list of
    /// what would be written: only errors are printed.
    pub progress: ProgressMode,
    /// "Now" in unix seconds: tokens expired by then are not carried over.
    pub now: i64,
}

/// Where a batched item came from, for the report.
struct Origin {
    table: &'static str,
    key: String,
}

/// A batch being written while the next one is read: its outcome, and what its items were.
struct InFlight {
    write: tokio::task::JoinHandle<Result<jeton_edge::import::ApplyResult, MigrateError>>,
    origins: Vec<Origin>,
    kinds: Vec<&'static str>,
}

struct Run {
    opts: Options,
    target: Arc<Target>,
    report: Report,
    batch: Vec<ApplyItem>,
    origins: Vec<Origin>,
    /// Batches being written, oldest first: at most [`Target::depth`]. Batches are proposed in order, so
    /// they apply in order (a record never precedes what it refers to); reading the database overlaps
    /// with the writes.
    in_flight: VecDeque<InFlight>,
    /// `importing`, or `checking` in the dry pass that precedes a `--strict` import.
    phase: &'static str,
}

impl Run {
    fn skip(&mut self, table: &'static str, key: &str, reason: impl Into<String>) -> Result<(), MigrateError> {
        let reason = reason.into();
        tracing::debug!(table, key, %reason, "row skipped");
        self.report.skip(table, key, &reason);
        if self.opts.strict {
            return Err(MigrateError::Strict(format!("{table} {key}: {reason}")));
        }
        Ok(())
    }

    async fn push(&mut self, table: &'static str, key: String, item: ApplyItem) -> Result<(), MigrateError> {
        self.batch.push(item);
        self.origins.push(Origin { table, key });
        if self.batch.len() >= self.opts.batch_size {
            self.flush().await?;
        }
        Ok(())
    }

    /// Submits the current batch without waiting for it (once fewer than the target's depth are in flight).
    async fn flush(&mut self) -> Result<(), MigrateError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= self.target.depth() {
            self.settle_oldest().await?;
        }
        let items = std::mem::take(&mut self.batch);
        let origins = std::mem::take(&mut self.origins);
        let kinds: Vec<&'static str> = items.iter().map(item_kind).collect();
        let write = self.target.submit(items, self.opts.dry_run).await?;
        self.in_flight.push_back(InFlight { write, origins, kinds });
        Ok(())
    }

    /// Waits for every batch being written and accounts for them (all of them, also after an error: the
    /// first error is returned).
    async fn settle(&mut self) -> Result<(), MigrateError> {
        let mut first_error = Ok(());
        while !self.in_flight.is_empty() {
            let r = self.settle_oldest().await;
            if first_error.is_ok() {
                first_error = r;
            }
        }
        first_error
    }

    /// Waits for the oldest batch being written and accounts for it.
    async fn settle_oldest(&mut self) -> Result<(), MigrateError> {
        let Some(InFlight { write, origins, kinds }) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let result = write.await.map_err(|e| MigrateError::Target(format!("writer task: {e}")))??;
        if self.opts.dry_run && self.phase == "importing" && self.opts.progress != ProgressMode::Quiet {
            for i in &result.would_write {
                if let (Some(o), Some(kind)) = (origins.get(*i), kinds.get(*i)) {
                    println!("would write {kind} {} ({})", o.key, o.table);
                }
            }
        }
        self.report.add_counts(&result.written, &result.unchanged);
        for a in &result.administrators {
            let (table, key) = origins.get(a.index).map(|o| (o.table, o.key.as_str())).unwrap_or(("?", "?"));
            self.report.administrator(table, key, a.replaced, &a.note);
        }
        for refusal in result.refused {
            let (table, key) = origins.get(refusal.index).map(|o| (o.table, o.key.as_str())).unwrap_or(("?", "?"));
            let key = key.to_string();
            self.skip(table, &key, format!("refused by the node: {}", refusal.reason))?;
        }
        Ok(())
    }

    fn table_name(&self, base: &str) -> String {
        match base {
            // Casdoor's own Casbin tables are never prefixed (COMPAT §1.1).
            "casbin_rule" | "casbin_user_rule" | "casbin_api_rule" => base.to_string(),
            _ => format!("{}{base}", self.opts.table_prefix),
        }
    }

    fn wanted_org(&self, org: &str) -> bool {
        self.opts.orgs.is_empty() || self.opts.orgs.iter().any(|o| o == org)
    }

    fn progress(&self, table: &str, len: u64) -> Progress {
        Progress::start(self.opts.progress, self.phase, table, Some(len))
    }
}

/// Streams one table through `each` (a row mapper), with a progress bar. Returns false if the table is
/// missing.
macro_rules! each_row {
    ($run:expr, $src:expr, $table:expr, $cols:expr, |$row:ident| $body:block) => {{
        let name = $run.table_name($table);
        let t: Option<Table> = $src.table(&name, $cols).await.map_err(|e| source_err(&$run.opts, e))?;
        match t {
            None => {
                $run.report.note_missing_table(&name);
                false
            }
            Some(t) => {
                let len = $src.count(&t).await.map_err(|e| source_err(&$run.opts, e))?;
                let mut bar = $run.progress($table, len);
                let mut rows = $src.rows(&t);
                while let Some(values) = rows.next().await {
                    let values = values.map_err(|e| source_err(&$run.opts, e))?;
                    let $row = Row { columns: &t.columns, values };
                    $run.report.read($table);
                    bar.row();
                    $body
                }
                drop(rows);
                bar.finish();
                $run.flush().await?;
                true
            }
        }
    }};
}

fn source_err(opts: &Options, e: sqlx::Error) -> MigrateError {
    MigrateError::Source(source::scrub(&e.to_string(), &opts.from))
}

/// Runs an import. The report is returned (and written to `--report`) also when the run fails.
///
/// Before anything is written the database is checked: Casdoor's tables are there (with `--table-prefix`)
/// and every `--org` exists, so an import that would match nothing fails saying why. With `--strict`, a
/// dry pass over every row comes first, and nothing is written if a row cannot be imported.
pub async fn run(opts: Options) -> (Report, Result<(), MigrateError>) {
    let started = Instant::now();
    let (mut report, result) = match Source::open(&opts.from).await {
        Ok(mut src) => {
            let done = match preflight(&opts, &mut src).await {
                Ok(()) => passes(&opts, &mut src).await,
                Err(e) => (Report::new(&opts), Err(e)),
            };
            src.close().await;
            done
        }
        Err(e) => (Report::new(&opts), Err(e)),
    };
    report.finish(started, result.as_ref().err());
    if let Some(path) = &opts.report {
        if let Err(e) = report.write_json(path) {
            return (report, Err(e));
        }
    }
    (report, result)
}

/// The import, preceded with `--strict` by a dry pass that finds every row in error (with `--dry-run`
/// that pass is the whole run).
async fn passes(opts: &Options, src: &mut Source) -> (Report, Result<(), MigrateError>) {
    if opts.strict {
        // Every row, not only the first in error: the report lists them all.
        let check = Options { dry_run: true, strict: false, ..opts.clone() };
        let phase = if opts.dry_run { "importing" } else { "checking" };
        let (mut report, result) = pass(check, src, phase).await;
        report.strict = true;
        if result.is_err() {
            return (report, result);
        }
        if report.skipped_count > 0 {
            let n = report.skipped_count;
            let e = format!("{n} row(s) cannot be imported (listed above and in --report); nothing was written");
            return (report, Err(MigrateError::Strict(e)));
        }
        if opts.dry_run {
            return (report, Ok(()));
        }
    }
    pass(opts.clone(), src, "importing").await
}

/// One pass over the database into the target.
async fn pass(opts: Options, src: &mut Source, phase: &'static str) -> (Report, Result<(), MigrateError>) {
    let report = Report::new(&opts);
    let target = match Target::open(&opts.target, opts.dry_run, opts.replace_admin).await {
        Ok(t) => t,
        Err(e) => return (report, Err(e)),
    };
    let mut run = Run {
        opts,
        target: Arc::new(target),
        report,
        batch: Vec::new(),
        origins: Vec::new(),
        in_flight: VecDeque::new(),
        phase,
    };
    let mut result = import(&mut run, src).await;
    // Whatever happened, the batches in flight finish (and are accounted for) before the target closes.
    let settled = run.settle().await;
    if result.is_ok() {
        result = settled;
    }
    let Run { target, report, .. } = run;
    if let Ok(target) = Arc::try_unwrap(target) {
        target.close().await;
    }
    (report, result)
}

/// Refuses an import that would match nothing: no organization table (no Casdoor database, or a wrong
/// `--table-prefix`), no organization at all, or an `--org` the database does not have.
async fn preflight(opts: &Options, src: &mut Source) -> Result<(), MigrateError> {
    let table = format!("{}organization", opts.table_prefix);
    let db = source::redact_url(&opts.from);
    let Some(t) = src.table(&table, &["name"]).await.map_err(|e| source_err(opts, e))? else {
        let similar = src.tables_ending_with("organization").await.map_err(|e| source_err(opts, e))?;
        let hint = match similar.first() {
            Some(found) => match found.strip_suffix("organization").unwrap_or_default() {
                "" => format!("; it has {found}: leave out --table-prefix"),
                prefix => format!("; it has {found}: use --table-prefix {prefix}"),
            },
            None => "; is it Casdoor's database?".to_string(),
        };
        return Err(MigrateError::Usage(format!("nothing to import: {db} has no table {table}{hint}")));
    };
    let mut names = BTreeSet::new();
    let mut rows = src.rows(&t);
    while let Some(values) = rows.next().await {
        let row = Row { columns: &t.columns, values: values.map_err(|e| source_err(opts, e))? };
        names.insert(row.string("name"));
    }
    drop(rows);
    if names.is_empty() {
        return Err(MigrateError::Usage(format!("nothing to import: {table} of {db} has no organizations")));
    }
    let unknown: Vec<&str> = opts.orgs.iter().filter(|o| !names.contains(*o)).map(String::as_str).collect();
    if !unknown.is_empty() {
        let mut known: Vec<&str> = names.iter().map(String::as_str).take(20).collect();
        if names.len() > known.len() {
            known.push("...");
        }
        return Err(MigrateError::Usage(format!(
            "nothing to import for --org {}: {db} has no such organization (it has {})",
            unknown.join(", "),
            known.join(", ")
        )));
    }
    Ok(())
}

async fn import(run: &mut Run, src: &mut Source) -> Result<(), MigrateError> {
    // Organizations: their password schemes are needed to check users.
    let mut org_types: HashMap<String, String> = HashMap::new();
    each_row!(run, src, "organization", casdoor::ORGANIZATION, |row| {
        let name = row.string("name");
        if !run.wanted_org(&name) {
            continue;
        }
        match casdoor::organization(&row) {
            Ok((org, dropped)) => {
                if let Some(why) = dropped {
                    run.report.password_dropped("organization", &name, &why);
                }
                org_types.insert(org.name.clone(), org.password_type.clone());
                run.push(
                    "organization",
                    name,
                    ApplyItem::Command(Command::PutOrganization { org, mode: PutMode::Upsert }),
                )
                .await?;
            }
            Err(why) => run.skip("organization", &name, why)?,
        }
    });

    // Applications (few) are read first to know which certs they sign with, and with which algorithms;
    // written after the certs.
    let mut apps: Vec<Application> = Vec::new();
    let mut signed_with: HashMap<String, Vec<&'static str>> = HashMap::new();
    each_row!(run, src, "application", casdoor::APPLICATION, |row| {
        let key = row.string("name");
        let org = row.string("organization");
        if !run.wanted_org(&org) {
            continue;
        }
        match casdoor::application(&row) {
            Ok(_) if !org_types.contains_key(&org) => {
                run.skip("application", &key, format!("its organization {org:?} is not imported"))?
            }
            Ok((app, changed)) => {
                for what in &changed {
                    run.report.redirect_uri_changed(&key, what);
                }
                if let Some(alg) = casdoor::casdoor_signing_algorithm(row.s("token_signing_method")) {
                    signed_with.entry(app.cert.clone()).or_default().push(alg);
                }
                apps.push(app)
            }
            Err(why) => run.skip("application", &key, why)?,
        }
    });
    let needed_certs: HashSet<String> = apps.iter().map(|a| a.cert.clone()).collect();

    let mut kids: HashSet<String> = HashSet::new();
    each_row!(run, src, "cert", casdoor::CERT, |row| {
        let name = row.string("name");
        let owner = row.string("owner");
        if !run.opts.orgs.is_empty() && !needed_certs.contains(&name) && !run.wanted_org(&owner) {
            continue;
        }
        match casdoor::cert(&row, signed_with.get(&name).map(Vec::as_slice).unwrap_or_default()) {
            Ok(casdoor::Cert::Signing(k)) => {
                if k.algorithm != row.s("crypto_algorithm") || k.accepted_algorithms.len() > 1 {
                    // Casdoor's applications signed with the key otherwise than its row says (COMPAT §5.2).
                    tracing::warn!(
                        cert = %name,
                        row = row.s("crypto_algorithm"),
                        signs = %k.algorithm,
                        accepts = %k.accepted_algorithms.join(" "),
                        "the cert's applications signed with other algorithms than the cert row says"
                    );
                }
                if !kids.insert(k.kid.clone()) {
                    // Casdoor finds certs by name only (COMPAT §11.18): the first one wins, as there.
                    run.skip("cert", &format!("{owner}/{name}"), "another cert has the same name (kid)")?;
                    continue;
                }
                run.push("cert", format!("{owner}/{name}"), ApplyItem::Key(k)).await?;
            }
            Ok(casdoor::Cert::NotSigning(why)) => run.report.not_imported(&format!("cert: {why}")),
            Err(why) => run.skip("cert", &format!("{owner}/{name}"), why)?,
        }
    });
    run.flush().await?;

    let mut app_names: BTreeMap<String, ()> = BTreeMap::new();
    for app in apps {
        if !kids.contains(&app.cert) {
            let why = format!("its signing cert {:?} is not imported", app.cert);
            run.skip("application", &app.name.clone(), why)?;
            continue;
        }
        app_names.insert(app.name.clone(), ());
        let name = app.name.clone();
        run.push("application", name, ApplyItem::Command(Command::PutApplication { app, mode: PutMode::Upsert }))
            .await?;
    }
    run.flush().await?;

    each_row!(run, src, "group", casdoor::GROUP, |row| {
        let key = format!("{}/{}", row.s("owner"), row.s("name"));
        if !run.wanted_org(row.s("owner")) {
            continue;
        }
        match casdoor::group(&row) {
            Ok(g) if !org_types.contains_key(&g.owner) => {
                run.skip("group", &key, format!("its organization {:?} is not imported", g.owner))?
            }
            Ok(group) => {
                run.push("group", key, ApplyItem::Command(Command::PutGroup { group, mode: PutMode::Upsert })).await?
            }
            Err(why) => run.skip("group", &key, why)?,
        }
    });

    each_row!(run, src, "user", casdoor::USER, |row| {
        let owner = row.s("owner");
        if !run.wanted_org(owner) {
            continue;
        }
        let key = format!("{owner}/{}", row.s("name"));
        let Some(org_type) = org_types.get(owner) else {
            let why = format!("its organization {owner:?} is not imported");
            run.skip("user", &key, why)?;
            continue;
        };
        match casdoor::user(&row, org_type) {
            Ok((user, dropped)) => {
                if let Some(why) = dropped {
                    run.report.password_dropped("user", &key, &why);
                }
                run.push("user", key, ApplyItem::Command(Command::PutUser { user, mode: PutMode::Upsert })).await?
            }
            Err(why) => run.skip("user", &key, why)?,
        }
    });

    each_row!(run, src, "role", casdoor::ROLE, |row| {
        let key = format!("{}/{}", row.s("owner"), row.s("name"));
        if !run.wanted_org(row.s("owner")) {
            continue;
        }
        match casdoor::role(&row) {
            Ok(r) if !org_types.contains_key(&r.owner) => {
                run.skip("role", &key, format!("its organization {:?} is not imported", r.owner))?
            }
            Ok(role) => {
                run.push("role", key, ApplyItem::Command(Command::PutRole { role, mode: PutMode::Upsert })).await?
            }
            Err(why) => run.skip("role", &key, why)?,
        }
    });

    each_row!(run, src, "model", casdoor::MODEL, |row| {
        let key = format!("{}/{}", row.s("owner"), row.s("name"));
        if !run.wanted_org(row.s("owner")) {
            continue;
        }
        match casdoor::model(&row) {
            Ok(model) => {
                run.push("model", key, ApplyItem::Command(Command::PutModel { model, mode: PutMode::Upsert })).await?
            }
            Err(why) => run.skip("model", &key, why)?,
        }
    });

    // Policies by permission id (`v5` = `owner/permission`, COMPAT §3.4), attached to their permission.
    let mut policies: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
    each_row!(run, src, "permission_rule", casdoor::RULE, |row| {
        let line: Vec<String> = ["ptype", "v0", "v1", "v2", "v3", "v4", "v5"].iter().map(|c| row.string(c)).collect();
        policies.entry(row.string("v5")).or_default().push((row.string("id"), line));
    });
    each_row!(run, src, "permission", casdoor::PERMISSION, |row| {
        let key = format!("{}/{}", row.s("owner"), row.s("name"));
        let lines = policies.remove(&key).unwrap_or_default();
        if !run.wanted_org(row.s("owner")) {
            continue;
        }
        let lines: Vec<Vec<String>> = lines.into_iter().map(|(_, l)| l).collect();
        match casdoor::permission(&row, lines) {
            Ok(p) if !org_types.contains_key(&p.owner) => {
                run.skip("permission", &key, format!("its organization {:?} is not imported", p.owner))?
            }
            Ok(permission) => {
                if !permission.adapter.is_empty() {
                    run.report.not_imported("permission: policies kept in another adapter's table");
                }
                run.push(
                    "permission",
                    key,
                    ApplyItem::Command(Command::PutPermission { permission, mode: PutMode::Upsert }),
                )
                .await?
            }
            Err(why) => run.skip("permission", &key, why)?,
        }
    });
    let mut orphans: Vec<(String, String)> = policies
        .into_iter()
        .filter(|(perm, _)| run.wanted_org(perm.split('/').next().unwrap_or_default()))
        .flat_map(|(perm, lines)| lines.into_iter().map(move |(id, _)| (id, perm.clone())))
        .collect();
    orphans.sort();
    for (id, perm) in orphans {
        run.skip("permission_rule", &id, format!("policy of unknown permission {perm:?}"))?;
    }

    // Tokens: valid ones verify by their signature (nothing to write but their issuer); revoked, DPoP-bound
    // and never-delivered ones become revocations; expired ones are left behind.
    let mut issuers: BTreeSet<(String, String)> = BTreeSet::new();
    let now = run.opts.now;
    each_row!(run, src, "token", casdoor::TOKEN, |row| {
        let key = format!("{}/{}", row.s("owner"), row.s("name"));
        if !run.wanted_org(row.s("organization")) {
            continue;
        }
        let app = row.string("application");
        if !app_names.contains_key(&app) {
            let why = format!("its application {app:?} is not imported");
            run.skip("token", &key, why)?;
            continue;
        }
        if !row.s("refresh_token").is_empty() {
            run.report.not_imported("token: refresh tokens (Casdoor's carry no kid; clients sign in again)");
        }
        match casdoor::token(&row, now) {
            Ok(casdoor::TokenFate::Expired) => run.report.not_imported("token: expired"),
            Ok(casdoor::TokenFate::Valid { issuer }) => {
                run.report.not_imported("token: valid, verifies by its signature (no record needed)");
                if !issuer.is_empty() {
                    issuers.insert((app, issuer));
                }
            }
            Ok(casdoor::TokenFate::Revoke { revocation, issuer, why }) => {
                run.report.not_imported(&format!("token: {why} (written as a revocation)"));
                if !issuer.is_empty() {
                    issuers.insert((app, issuer));
                }
                run.push("token", key, ApplyItem::Command(Command::Revoke { revocation })).await?;
            }
            Err(why) => run.skip("token", &key, why)?,
        }
    });

    for app in app_names.keys() {
        for issuer in &run.opts.issuers {
            issuers.insert((app.clone(), issuer.clone()));
        }
    }
    for (application, issuer) in issuers {
        let key = format!("{application} {issuer}");
        let accepted = AcceptedIssuer { application, issuer, source: "casdoor import".into() };
        run.push(
            "accepted_issuer",
            key,
            ApplyItem::Command(Command::PutAcceptedIssuer { accepted, mode: PutMode::Upsert }),
        )
        .await?;
    }
    run.flush().await?;
    Ok(())
}
