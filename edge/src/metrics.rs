//! Prometheus metrics: requests and latency by endpoint, cache hits, password checks, Raft state.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The node's metrics. Without an installed recorder (benches, unit tests) every call is a no-op.
#[derive(Clone, Default)]
pub struct Metrics {
    handle: Option<PrometheusHandle>,
}

impl Metrics {
    /// Installs the process-wide Prometheus recorder.
    pub fn install() -> Result<Metrics, String> {
        let handle = PrometheusBuilder::new()
            .set_buckets(&[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
            .map_err(|e| e.to_string())?
            .install_recorder()
            .map_err(|e| e.to_string())?;
        Ok(Metrics { handle: Some(handle) })
    }

    /// Metrics that record nothing.
    pub fn disabled() -> Metrics {
        Metrics { handle: None }
    }

    /// One HTTP request: endpoint label, status class, time to the response.
    pub fn request(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        if self.handle.is_none() {
            return;
        }
        let class = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        counter!("jeton_http_requests_total", "endpoint" => endpoint, "status" => class).increment(1);
        histogram!("jeton_http_request_duration_seconds", "endpoint" => endpoint).record(elapsed.as_secs_f64());
    }

    pub fn introspection_cache(&self, hit: bool) {
        if self.handle.is_some() {
            counter!("jeton_introspection_cache_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
        }
    }

    pub fn password_check(&self, ok: bool) {
        if self.handle.is_some() {
            counter!("jeton_password_checks_total", "result" => if ok { "ok" } else { "failed" }).increment(1);
        }
    }

    pub fn token_issued(&self, grant: &'static str) {
        if self.handle.is_some() {
            counter!("jeton_tokens_issued_total", "grant" => grant).increment(1);
        }
    }

    pub fn record_write(&self, kind: &'static str, elapsed: Duration) {
        if self.handle.is_some() {
            histogram!("jeton_raft_write_duration_seconds", "command" => kind).record(elapsed.as_secs_f64());
        }
    }

    /// Renders the text exposition format, after refreshing the Raft gauges.
    pub fn render(&self, raft: &jeton_raft::Raft, node_id: u64) -> String {
        let Some(handle) = &self.handle else {
            return String::new();
        };
        let m = raft.metrics().borrow().clone();
        gauge!("jeton_raft_term").set(m.current_term as f64);
        gauge!("jeton_raft_leader").set(m.current_leader.map(|l| l as f64).unwrap_or(-1.0));
        gauge!("jeton_raft_is_leader").set(if m.current_leader == Some(node_id) { 1.0 } else { 0.0 });
        gauge!("jeton_raft_applied_index").set(m.last_applied.map(|l| l.index as f64).unwrap_or(0.0));
        gauge!("jeton_raft_last_log_index").set(m.last_log_index.map(|i| i as f64).unwrap_or(0.0));
        handle.render()
    }
}
