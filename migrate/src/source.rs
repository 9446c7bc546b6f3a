//! Reading a Casdoor database: one connection inside a read-only transaction, tables streamed row by row.
//!
//! Columns are selected by name, and only those the table has (older Casdoor versions lack some; COMPAT
//! §1.8). Every value is read as text (`::text` / `CAST(.. AS CHAR)`), so booleans (`BOOL` vs
//! `TINYINT(1)`), numbers and JSON read the same on both back ends; a missing column or SQL NULL reads as
//! the zero value (§1.5).

use std::collections::HashMap;
use std::str::FromStr;

use futures_util::stream::{BoxStream, StreamExt};
// Dynamic SQL here is built only from our own column and table names, quoted (never from row data).
use sqlx::{AssertSqlSafe, Connection, MySqlConnection, PgConnection, Row as _};

use crate::MigrateError;

/// Which SQL dialect the source speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
}

/// An open, read-only view of a Casdoor database.
pub enum Source {
    Pg(PgConnection),
    My(MySqlConnection),
}

/// Hides the password (and user name) of a database URL, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("***");
                let _ = u.set_password(None);
            }
            // Query strings may carry passwords too (e.g. `?password=`).
            if u.query().is_some() {
                u.set_query(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable URL>".into(),
    }
}

/// Removes every occurrence of the URL's secrets from a message (driver errors may quote them).
pub fn scrub(msg: &str, url: &str) -> String {
    let mut out = msg.to_string();
    if let Ok(u) = reqwest::Url::parse(url) {
        // Only a URL with something to hide is rewritten (the rewrite also normalizes it).
        if !u.username().is_empty() || u.password().is_some() || u.query().is_some() {
            out = out.replace(url, &redact_url(url));
        }
        if let Some(p) = u.password().filter(|p| p.len() >= 3) {
            out = out.replace(p, "***");
            if let Some(decoded) = percent_decode(p) {
                out = out.replace(&decoded, "***");
            }
        }
    } else {
        out = out.replace(url, &redact_url(url));
    }
    out
}

/// Decodes `%XX` escapes (URL user info); `None` if the result is not UTF-8 or an escape is broken.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A row: the selected columns' values as text, by column name.
pub struct Row<'a> {
    pub columns: &'a HashMap<&'static str, usize>,
    pub values: Vec<Option<String>>,
}

impl Row<'_> {
    /// Whether the table has this column.
    pub fn has(&self, col: &str) -> bool {
        self.columns.contains_key(col)
    }
    /// Text value; missing column or NULL = "".
    pub fn s(&self, col: &str) -> &str {
        self.columns.get(col).and_then(|&i| self.values.get(i)).and_then(|v| v.as_deref()).unwrap_or("")
    }
    pub fn string(&self, col: &str) -> String {
        self.s(col).to_string()
    }
    /// Boolean from `true`/`t`/`1` (PostgreSQL `BOOL` as text, MySQL `TINYINT(1)`).
    pub fn b(&self, col: &str) -> bool {
        matches!(self.s(col).trim(), "1" | "t" | "true" | "TRUE" | "T")
    }
    /// Integer; anything unparsable = 0.
    pub fn i(&self, col: &str) -> i64 {
        let s = self.s(col).trim();
        s.parse::<i64>().or_else(|_| s.parse::<f64>().map(|f| f as i64)).unwrap_or(0)
    }
    pub fn f(&self, col: &str) -> f64 {
        self.s(col).trim().parse::<f64>().ok().filter(|f| f.is_finite()).unwrap_or(0.0)
    }
    /// A JSON-text column: `null`, `[]`, "" and SQL NULL are all "empty" (§1.4).
    pub fn json(&self, col: &str) -> Result<serde_json::Value, String> {
        let s = self.s(col).trim();
        if s.is_empty() || s == "null" {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(s).map_err(|e| format!("column {col} is not JSON: {e}"))
    }
    /// A JSON list of strings (empty forms accepted).
    pub fn list(&self, col: &str) -> Result<Vec<String>, String> {
        match self.json(col)? {
            serde_json::Value::Null => Ok(Vec::new()),
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(s),
                    serde_json::Value::Null => Ok(String::new()),
                    other => Ok(other.to_string()),
                })
                .collect(),
            _ => Err(format!("column {col} is not a JSON list")),
        }
    }
    /// Unix seconds of an RFC 3339 column; 0 when empty or unparsable.
    pub fn unix(&self, col: &str) -> i64 {
        parse_rfc3339(self.s(col)).unwrap_or(0)
    }
}

pub fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Reading a whole table is one long statement by design: no "slow statement" warnings, no statement logs
/// (which would also name the database).
fn quiet<O: sqlx::ConnectOptions>(o: O) -> O {
    o.log_statements(log::LevelFilter::Off)
        .log_slow_statements(log::LevelFilter::Off, std::time::Duration::from_secs(3600))
}

/// A table as it will be read: its quoted name and the selected columns.
pub struct Table {
    pub name: String,
    pub columns: HashMap<&'static str, usize>,
    select: String,
    count: String,
}

impl Source {
    /// Connects and opens a read-only, repeatable-read transaction: the import sees one snapshot and cannot
    /// write (only SELECTs are ever sent; the transaction is rolled back at the end).
    pub async fn open(url: &str) -> Result<Source, MigrateError> {
        let err = |e: sqlx::Error| MigrateError::Source(scrub(&e.to_string(), url));
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = quiet(sqlx::postgres::PgConnectOptions::from_str(url).map_err(err)?);
            let mut c = PgConnection::connect_with(&opts).await.map_err(err)?;
            sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut c).await.map_err(err)?;
            Ok(Source::Pg(c))
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let opts = quiet(sqlx::mysql::MySqlConnectOptions::from_str(&url).map_err(err)?);
            let mut c = MySqlConnection::connect_with(&opts).await.map_err(err)?;
            sqlx::raw_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut c)
                .await
                .map_err(err)?;
            sqlx::raw_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .execute(&mut c)
                .await
                .map_err(err)?;
            Ok(Source::My(c))
        } else {
            Err(MigrateError::Usage("--from must be a postgres://, mysql:// or mariadb:// URL".into()))
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Source::Pg(_) => Dialect::Postgres,
            Source::My(_) => Dialect::MySql,
        }
    }

    /// Ends the read-only transaction.
    pub async fn close(self) {
        match self {
            Source::Pg(mut c) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut c).await;
                let _ = c.close().await;
            }
            Source::My(mut c) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut c).await;
                let _ = c.close().await;
            }
        }
    }

    fn quote(&self, ident: &str) -> String {
        match self {
            Source::Pg(_) => format!("\"{}\"", ident.replace('"', "\"\"")),
            Source::My(_) => format!("`{}`", ident.replace('`', "``")),
        }
    }

    /// The columns a table has (empty when the table does not exist).
    async fn existing_columns(&mut self, table: &str) -> Result<Vec<String>, sqlx::Error> {
        self.names(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
            "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ?",
            table,
        )
        .await
    }

    /// The tables whose name ends with `suffix` (to suggest a `--table-prefix`), in name order.
    pub async fn tables_ending_with(&mut self, suffix: &str) -> Result<Vec<String>, sqlx::Error> {
        self.names(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND right(table_name, length($1)) = $1 ORDER BY 1",
            "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND RIGHT(table_name, CHAR_LENGTH(?)) = ? ORDER BY 1",
            suffix,
        )
        .await
    }

    /// The first column of a catalog query (`pg` or `my` by dialect) about `arg`, bound to every
    /// placeholder, without NULLs.
    async fn names(&mut self, pg: &'static str, my: &'static str, arg: &str) -> Result<Vec<String>, sqlx::Error> {
        let rows = match self {
            Source::Pg(c) => sqlx::query(pg)
                .bind(arg)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| r.try_get::<Option<String>, _>(0))
                .collect::<Result<Vec<_>, _>>()?,
            Source::My(c) => {
                let mut q = sqlx::query(my);
                for _ in 0..my.matches('?').count() {
                    q = q.bind(arg);
                }
                q.fetch_all(&mut *c)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<Option<String>, _>(0))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(rows.into_iter().flatten().collect())
    }

    /// Prepares reading `wanted` columns of `table` (those it has). `None` if the table does not exist.
    pub async fn table(&mut self, table: &str, wanted: &[&'static str]) -> Result<Option<Table>, sqlx::Error> {
        let have = self.existing_columns(table).await?;
        if have.is_empty() {
            return Ok(None);
        }
        let mut columns = HashMap::new();
        let mut exprs = Vec::new();
        for &w in wanted {
            if have.iter().any(|h| h == w) {
                columns.insert(w, exprs.len());
                exprs.push(match self {
                    Source::Pg(_) => format!("{}::text", self.quote(w)),
                    Source::My(_) => format!("CAST({} AS CHAR)", self.quote(w)),
                });
            }
        }
        if exprs.is_empty() {
            exprs.push("1".into());
        }
        let quoted = self.quote(table);
        // In primary-key order: records then reach the node's store in key order, so its B-tree is written
        // sequentially instead of at random pages (a 1M-user import was several times slower unsorted).
        let order = if columns.contains_key("owner") && columns.contains_key("name") {
            format!(" ORDER BY {}, {}", self.quote("owner"), self.quote("name"))
        } else {
            String::new()
        };
        Ok(Some(Table {
            name: table.to_string(),
            columns,
            select: format!("SELECT {} FROM {quoted}{order}", exprs.join(", ")),
            count: format!("SELECT CAST(COUNT(*) AS CHAR(20)) FROM {quoted}"),
        }))
    }

    /// Number of rows of a table (for the progress bar).
    pub async fn count(&mut self, t: &Table) -> Result<u64, sqlx::Error> {
        let sql = match self {
            Source::Pg(_) => t.count.replace("CAST(COUNT(*) AS CHAR(20))", "COUNT(*)::text"),
            Source::My(_) => t.count.clone(),
        };
        let v: Option<String> = match self {
            Source::Pg(c) => sqlx::query(AssertSqlSafe(sql.clone())).fetch_one(&mut *c).await?.try_get(0)?,
            Source::My(c) => sqlx::query(AssertSqlSafe(sql.clone())).fetch_one(&mut *c).await?.try_get(0)?,
        };
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// Streams the rows of a table (values in the order of `t.columns`' indexes).
    pub fn rows<'a>(&'a mut self, t: &'a Table) -> BoxStream<'a, Result<Vec<Option<String>>, sqlx::Error>> {
        fn values<R: sqlx::Row>(row: R) -> Result<Vec<Option<String>>, sqlx::Error>
        where
            for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            usize: sqlx::ColumnIndex<R>,
        {
            (0..row.len()).map(|i| row.try_get::<Option<String>, _>(i)).collect()
        }
        match self {
            Source::Pg(c) => {
                sqlx::query(AssertSqlSafe(t.select.clone())).fetch(&mut *c).map(|r| r.and_then(values)).boxed()
            }
            Source::My(c) => {
                sqlx::query(AssertSqlSafe(t.select.clone())).fetch(&mut *c).map(|r| r.and_then(values)).boxed()
            }
        }
    }
}
