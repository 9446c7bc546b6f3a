//! What an import did: rows read per table, records written / unchanged per kind, rows skipped (table,
//! key, reason) and what is left behind by design. Printed as a table; written as JSON with `--report`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::{MigrateError, Options};

/// Skipped rows kept in the report word for word; past this only their count grows.
const SKIPPED_KEPT: usize = 10_000;

#[derive(Serialize, Debug, Clone)]
pub struct Skipped {
    pub table: String,
    pub key: String,
    pub reason: String,
}

/// A record for one of the target's own administrators (its admin application, its `admin` user): kept
/// out, or replaced with `--replace-admin`.
#[derive(Serialize, Debug, Clone)]
pub struct Administrator {
    pub table: String,
    pub key: String,
    pub replaced: bool,
    pub note: String,
}

#[derive(Serialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The database URL without credentials.
    pub source: String,
    pub target: String,
    pub dry_run: bool,
    pub strict: bool,
    pub elapsed_secs: f64,
    /// Rows read, per table.
    pub rows_read: BTreeMap<String, u64>,
    /// Records written (dry run: that would be written), per command kind.
    pub written: BTreeMap<String, u64>,
    /// Records the target already held exactly so, per command kind.
    pub unchanged: BTreeMap<String, u64>,
    /// Rows that could not be imported (or that the node refused).
    pub skipped_count: u64,
    pub skipped: Vec<Skipped>,
    /// Rows imported without their password (users: no usable password, an admin can set one) or master
    /// password (organizations), with the reason: a scheme Casdoor does not have, or a hash over the cost
    /// cap of one check.
    pub passwords_dropped_count: u64,
    pub passwords_dropped: Vec<Skipped>,
    /// Redirect URIs of applications not carried over as they were: Casdoor's regular expressions and
    /// sub-domain patterns (dropped: Jeton matches exactly, and sub-domains only by an explicit opt-in) and
    /// host-only entries (narrowed to their `https://` URI).
    pub redirect_uris_changed_count: u64,
    pub redirect_uris_changed: Vec<Skipped>,
    /// Rows left behind by design, by reason (expired tokens, SSL certificates, ...).
    pub not_imported: BTreeMap<String, u64>,
    /// Rows for the target's own administrators, and whether they were kept out or replaced them.
    pub administrators: Vec<Administrator>,
    /// Tables the database does not have.
    pub missing_tables: Vec<String>,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

/// Counts a row and keeps it word for word while fewer than [`SKIPPED_KEPT`] are kept.
fn keep(count: &mut u64, rows: &mut Vec<Skipped>, table: &str, key: &str, reason: &str) {
    *count += 1;
    if rows.len() < SKIPPED_KEPT {
        rows.push(Skipped { table: table.into(), key: key.into(), reason: reason.into() });
    }
}

impl Report {
    pub fn new(opts: &Options) -> Report {
        Report {
            source: crate::source::redact_url(&opts.from),
            target: opts.target.describe(),
            dry_run: opts.dry_run,
            strict: opts.strict,
            ..Default::default()
        }
    }

    pub fn read(&mut self, table: &str) {
        *self.rows_read.entry(table.to_string()).or_default() += 1;
    }

    pub fn skip(&mut self, table: &str, key: &str, reason: &str) {
        keep(&mut self.skipped_count, &mut self.skipped, table, key, reason);
    }

    pub fn password_dropped(&mut self, table: &str, key: &str, reason: &str) {
        tracing::debug!(table, key, reason, "imported without its password");
        keep(&mut self.passwords_dropped_count, &mut self.passwords_dropped, table, key, reason);
    }

    pub fn redirect_uri_changed(&mut self, application: &str, what: &str) {
        keep(&mut self.redirect_uris_changed_count, &mut self.redirect_uris_changed, "application", application, what);
    }

    pub fn not_imported(&mut self, why: &str) {
        *self.not_imported.entry(why.to_string()).or_default() += 1;
    }

    pub fn administrator(&mut self, table: &str, key: &str, replaced: bool, note: &str) {
        let a = Administrator { table: table.into(), key: key.into(), replaced, note: note.into() };
        self.administrators.push(a);
    }

    pub fn note_missing_table(&mut self, table: &str) {
        self.missing_tables.push(table.to_string());
    }

    pub fn add_counts(&mut self, written: &BTreeMap<String, u64>, unchanged: &BTreeMap<String, u64>) {
        for (k, n) in written {
            *self.written.entry(k.clone()).or_default() += n;
        }
        for (k, n) in unchanged {
            *self.unchanged.entry(k.clone()).or_default() += n;
        }
    }

    pub fn finish(&mut self, started: Instant, error: Option<&MigrateError>) {
        self.elapsed_secs = started.elapsed().as_secs_f64();
        self.error = error.map(|e| e.to_string());
    }

    /// Total records written (dry run: that would be).
    pub fn total_written(&self) -> u64 {
        self.written.values().sum()
    }

    pub fn write_json(&self, path: &Path) -> Result<(), MigrateError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| MigrateError::Io(std::io::Error::other(e)))?;
        std::fs::write(path, json)?;
        Ok(())
    }

    /// The summary table printed at the end.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let verb = if self.dry_run { "would write" } else { "written" };
        let _ = writeln!(out, "Casdoor import from {} into {}", self.source, self.target);
        let _ = writeln!(out, "{:<28} {:>12}", "table", "rows read");
        for (t, n) in &self.rows_read {
            let _ = writeln!(out, "{t:<28} {n:>12}");
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<28} {:>12} {:>12}", "record kind", verb, "unchanged");
        let mut kinds: Vec<&String> = self.written.keys().chain(self.unchanged.keys()).collect();
        kinds.sort();
        kinds.dedup();
        for k in kinds {
            let w = self.written.get(k).copied().unwrap_or(0);
            let u = self.unchanged.get(k).copied().unwrap_or(0);
            let _ = writeln!(out, "{k:<28} {w:>12} {u:>12}");
        }
        let _ =
            writeln!(out, "{:<28} {:>12} {:>12}", "total", self.total_written(), self.unchanged.values().sum::<u64>());
        if !self.not_imported.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "left behind by design:");
            for (why, n) in &self.not_imported {
                let _ = writeln!(out, "  {n:>8}  {why}");
            }
        }
        if !self.administrators.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "the target's administrators:");
            for a in &self.administrators {
                let what = match (a.replaced, self.dry_run) {
                    (true, true) => "would replace",
                    (true, false) => "replaced",
                    (false, _) => "kept",
                };
                let _ = writeln!(out, "  {what:<13} {} {}: {}", a.table, a.key, a.note);
            }
        }
        /// A count and the first rows of a list.
        fn rows(out: &mut String, title: &str, count: u64, rows: &[Skipped]) {
            let _ = writeln!(out);
            let _ = writeln!(out, "{title}: {count}");
            for s in rows.iter().take(50) {
                let _ = writeln!(out, "  {} {}: {}", s.table, s.key, s.reason);
            }
            if rows.len() > 50 {
                let _ = writeln!(out, "  ... (all of them in --report)");
            }
        }
        if self.redirect_uris_changed_count > 0 {
            rows(
                &mut out,
                "redirect URIs not carried as they were",
                self.redirect_uris_changed_count,
                &self.redirect_uris_changed,
            );
        }
        if self.passwords_dropped_count > 0 {
            rows(&mut out, "imported without their password", self.passwords_dropped_count, &self.passwords_dropped);
        }
        rows(&mut out, "skipped rows", self.skipped_count, &self.skipped);
        if !self.missing_tables.is_empty() {
            let _ = writeln!(out, "tables not in the database: {}", self.missing_tables.join(", "));
        }
        let _ = writeln!(out, "took {:.1} s", self.elapsed_secs);
        out
    }
}
