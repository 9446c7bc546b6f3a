//! `jeton import casdoor`: the command line of the importer (the work is in `jeton-migrate`).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use jeton_migrate::{Options, ProgressMode, TargetSpec};

/// Without a terminal, a progress line this often while a table is read.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Subcommand)]
pub enum ImportSource {
    /// Import a Casdoor database: organizations, users (with their password hashes), applications
    /// (client credentials unchanged), signing certs (same keys and kids), groups, roles, permissions with
    /// their Casbin models and policies, and what issued tokens need (revocations, accepted issuers).
    Casdoor(CasdoorArgs),
}

#[derive(Args)]
pub struct CasdoorArgs {
    /// Casdoor's database: postgres://USER:PASS@HOST/DB or mysql://USER:PASS@HOST/DB (read only).
    #[arg(long, env = "JETON_IMPORT_FROM")]
    from: String,
    /// Import only this organization (repeatable). Default: all.
    #[arg(long = "org", value_name = "NAME")]
    orgs: Vec<String>,
    /// Print what would be written, with counts per kind; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// A running node's base URL (its admin API). Credentials: --client-id/--client-secret, --token, or
    /// ID:SECRET@ in the URL.
    #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
    into: Option<String>,
    /// A node's data dir, before the node's first start (or while it is stopped).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Admin application client id for --into.
    #[arg(long, env = "JETON_ADMIN_CLIENT_ID", default_value = "", hide_default_value = true)]
    client_id: String,
    /// Admin application client secret for --into.
    #[arg(
        long,
        env = "JETON_ADMIN_CLIENT_SECRET",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    client_secret: String,
    /// An administrator's Bearer token for --into (instead of client credentials).
    #[arg(long, env = "JETON_IMPORT_TOKEN", default_value = "", hide_env_values = true, hide_default_value = true)]
    token: String,
    /// Node id for a new --data-dir (an existing one keeps its own).
    #[arg(long, default_value_t = 1)]
    node_id: u64,
    /// Raft address recorded for a new --data-dir.
    #[arg(long, default_value = "127.0.0.1:8001")]
    raft_addr: String,
    /// Import nothing if any row cannot be imported: every row is checked first (a dry pass), and the
    /// rows in error are listed (default: report them and import the rest). The target's own
    /// administrators, kept by design, are not errors.
    #[arg(long)]
    strict: bool,
    /// Replace the target's administrator user (`built-in/admin` of a node) with Casdoor's; into a data
    /// dir, its `app-built-in` too. Default: keep them (and say so in the summary).
    #[arg(long)]
    replace_admin: bool,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Records per write (one Raft log entry each).
    #[arg(long, default_value_t = 2000)]
    batch_size: usize,
    /// Casdoor's tableNamePrefix setting.
    #[arg(long, default_value = "")]
    table_prefix: String,
    /// Casdoor's `origin` (token issuer): tokens of imported applications with this `iss` stay valid
    /// (repeatable). Issuers found in Casdoor's token table are always accepted.
    #[arg(long = "casdoor-issuer", value_name = "URL")]
    issuers: Vec<String>,
    /// Print only errors: no progress, no summary (the --report file is still written).
    #[arg(long)]
    quiet: bool,
}

impl ImportSource {
    /// `--quiet`: only errors are printed.
    pub fn quiet(&self) -> bool {
        match self {
            ImportSource::Casdoor(a) => a.quiet,
        }
    }
}

/// Runs the import; the summary goes to stdout, progress to stderr: bars on a terminal, else a log line
/// every few seconds. A run that stops before reading anything prints only its error.
pub async fn run(source: ImportSource) -> anyhow::Result<()> {
    let ImportSource::Casdoor(a) = source;
    let target = match (a.into, a.data_dir) {
        (Some(url), None) => {
            TargetSpec::Node { url, client_id: a.client_id, client_secret: a.client_secret, token: a.token }
        }
        (None, Some(dir)) => TargetSpec::DataDir { dir, node_id: a.node_id, raft_addr: a.raft_addr },
        (None, None) if a.dry_run => TargetSpec::Nowhere,
        _ => anyhow::bail!("say where to import into: --into URL or --data-dir DIR (or --dry-run alone)"),
    };
    if a.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let opts = Options {
        from: a.from,
        orgs: a.orgs,
        dry_run: a.dry_run,
        target,
        strict: a.strict,
        replace_admin: a.replace_admin,
        report: a.report,
        batch_size: a.batch_size,
        table_prefix: a.table_prefix,
        issuers: a.issuers,
        progress: match (a.quiet, std::io::stderr().is_terminal()) {
            (true, _) => ProgressMode::Quiet,
            (false, true) => ProgressMode::Bars,
            (false, false) => ProgressMode::Log { every: PROGRESS_EVERY },
        },
        now: jeton_edge::clock::now(),
    };
    let (report, result) = jeton_migrate::run(opts).await;
    if !a.quiet && !report.rows_read.is_empty() {
        print!("{}", report.summary());
    }
    result?;
    Ok(())
}
