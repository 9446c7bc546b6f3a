//! How far an import is, table by table: bars on a terminal, a log line every few seconds elsewhere (a
//! service's journal, CI, `kubectl logs`), nothing with `--quiet`.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars on stderr (which must be a terminal).
    Bars,
    /// A log line (`info`) every `every` while a table is read — rows done out of the table's rows, and
    /// rows per second since the previous line — and one when the table is done.
    Log { every: Duration },
    /// Nothing (`--quiet`).
    Quiet,
}

/// The progress of reading one table.
pub enum Progress {
    Bar(ProgressBar),
    Log(TableLog),
    Quiet,
}

impl Progress {
    /// Starts showing the progress of `phase` (`importing`, `checking`) through `table` of `total` rows.
    pub fn start(mode: ProgressMode, phase: &'static str, table: &str, total: Option<u64>) -> Progress {
        match mode {
            ProgressMode::Bars => {
                let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
                if let Ok(style) =
                    ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)")
                {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(table.to_string());
                Progress::Bar(bar)
            }
            ProgressMode::Log { every } => Progress::Log(TableLog::new(phase, table, total, every, Instant::now())),
            ProgressMode::Quiet => Progress::Quiet,
        }
    }

    /// One more row read.
    pub fn row(&mut self) {
        match self {
            Progress::Bar(bar) => bar.inc(1),
            Progress::Log(log) => {
                if let Some(line) = log.row(Instant::now()) {
                    tracing::info!("{line}");
                }
            }
            Progress::Quiet => {}
        }
    }

    /// The table is read.
    pub fn finish(self) {
        match self {
            Progress::Bar(bar) => bar.finish_and_clear(),
            Progress::Log(log) => tracing::info!("{}", log.finished(Instant::now())),
            Progress::Quiet => {}
        }
    }
}

/// The log lines of one table (the clock is passed in, so the lines can be tested).
pub struct TableLog {
    phase: &'static str,
    table: String,
    total: Option<u64>,
    every: Duration,
    started: Instant,
    done: u64,
    /// When the last line was due, and how many rows were done then.
    last: (Instant, u64),
}

impl TableLog {
    pub fn new(phase: &'static str, table: &str, total: Option<u64>, every: Duration, now: Instant) -> TableLog {
        TableLog { phase, table: table.to_string(), total, every, started: now, done: 0, last: (now, 0) }
    }

    /// Counts a row; the line to log if one is due at `now`.
    pub fn row(&mut self, now: Instant) -> Option<String> {
        self.done += 1;
        let since = now.saturating_duration_since(self.last.0);
        if since < self.every {
            return None;
        }
        let rate = per_second(self.done - self.last.1, since);
        self.last = (now, self.done);
        let done = match self.total {
            Some(total) => format!("{}/{total}", self.done),
            None => self.done.to_string(),
        };
        Some(format!("{} {}: {done} rows, {rate:.0} rows/s", self.phase, self.table))
    }

    /// The line that closes the table.
    pub fn finished(&self, now: Instant) -> String {
        let took = now.saturating_duration_since(self.started);
        format!(
            "{} {}: {} rows in {:.1} s, {:.0} rows/s",
            self.phase,
            self.table,
            self.done,
            took.as_secs_f64(),
            per_second(self.done, took)
        )
    }
}

fn per_second(rows: u64, took: Duration) -> f64 {
    match took.as_secs_f64() {
        s if s > 0.0 => rows as f64 / s,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line every `every`, with rows done out of the total and the rate since the previous line; none
    /// in between; a closing line with the average.
    #[test]
    fn log_lines_come_every_few_seconds_with_rate_and_count() {
        let t0 = Instant::now();
        let mut log = TableLog::new("importing", "user", Some(10_000), Duration::from_secs(5), t0);
        let mut lines = Vec::new();
        // 1,000 rows a second for 12 seconds (one row per millisecond).
        for ms in 1..=12_000u64 {
            if let Some(line) = log.row(t0 + Duration::from_millis(ms)) {
                lines.push(line);
            }
        }
        assert_eq!(
            lines,
            ["importing user: 5000/10000 rows, 1000 rows/s", "importing user: 10000/10000 rows, 1000 rows/s"]
        );
        assert_eq!(log.finished(t0 + Duration::from_secs(12)), "importing user: 12000 rows in 12.0 s, 1000 rows/s");
        // Unknown total: the count alone.
        let mut log = TableLog::new("checking", "token", None, Duration::from_secs(1), t0);
        assert_eq!(log.row(t0 + Duration::from_millis(500)), None);
        assert_eq!(log.row(t0 + Duration::from_secs(2)).as_deref(), Some("checking token: 2 rows, 1 rows/s"));
    }
}
