//! Prometheus metrics: HTTP requests and latency by endpoint, LDAP operations, cache hits, password checks,
//! Raft state.
//!
//! Handles are registered once at start-up: on the hot path a metric update is an atomic add, without
//! building label sets or looking anything up.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Endpoint labels of `jeton_http_requests_total` and `jeton_http_request_duration_seconds`.
pub const ENDPOINTS: [&str; 10] =
    ["jwks", "introspect", "token", "revoke", "userinfo", "discovery", "health", "metrics", "admin", "other"];
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];
const GRANTS: [&str; 3] = ["client_credentials", "password", "refresh_token"];
/// Reasons of `jeton_password_refusals_total`: sign-ins answered without running a hash.
const REFUSALS: [&str; 4] = ["locked", "rate_limited", "not_checkable", "no_challenge_credential"];
/// Listeners, for `jeton_<listener>_connections_refused_total`.
const LISTENERS: [&str; 2] = ["http", "ldap"];
/// Results of `jeton_ldap_binds_total`.
const BIND_RESULTS: [&str; 3] = ["ok", "failed", "anonymous"];
/// Operation labels of `jeton_ldap_operation_seconds`.
pub const LDAP_OPS: [&str; 6] = ["bind", "search", "compare", "whoami", "starttls", "other"];

struct Handles {
    prometheus: PrometheusHandle,
    requests: Vec<[Counter; 4]>,
    latency: Vec<Histogram>,
    cache_hit: Counter,
    cache_miss: Counter,
    password_ok: Counter,
    password_failed: Counter,
    password_refused: [Counter; 4],
    tokens: [Counter; 3],
    connections_refused: [Counter; 2],
    ldap_binds: [Counter; 3],
    ldap_searches: Counter,
    ldap_entries: Counter,
    ldap_latency: [Histogram; 6],
}

/// The node's metrics. Without an installed recorder (benches, unit tests) every call is a no-op.
#[derive(Clone, Default)]
pub struct Metrics {
    handles: Option<Arc<Handles>>,
}

impl Metrics {
    /// Installs the process-wide Prometheus recorder and registers every metric.
    pub fn install() -> Result<Metrics, String> {
        let prometheus = PrometheusBuilder::new()
            .set_buckets(&[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
            .map_err(|e| e.to_string())?
            .install_recorder()
            .map_err(|e| e.to_string())?;
        let requests = ENDPOINTS
            .iter()
            .map(|e| CLASSES.map(|c| counter!("jeton_http_requests_total", "endpoint" => *e, "status" => c)))
            .collect();
        let latency =
            ENDPOINTS.iter().map(|e| histogram!("jeton_http_request_duration_seconds", "endpoint" => *e)).collect();
        Ok(Metrics {
            handles: Some(Arc::new(Handles {
                prometheus,
                requests,
                latency,
                cache_hit: counter!("jeton_introspection_cache_total", "result" => "hit"),
                cache_miss: counter!("jeton_introspection_cache_total", "result" => "miss"),
                password_ok: counter!("jeton_password_checks_total", "result" => "ok"),
                password_failed: counter!("jeton_password_checks_total", "result" => "failed"),
                password_refused: REFUSALS.map(|r| counter!("jeton_password_refusals_total", "reason" => r)),
                tokens: GRANTS.map(|g| counter!("jeton_tokens_issued_total", "grant" => g)),
                connections_refused: LISTENERS
                    .map(|l| counter!(format!("jeton_{l}_connections_refused_total"), "reason" => "per_address_limit")),
                ldap_binds: BIND_RESULTS.map(|r| counter!("jeton_ldap_binds_total", "result" => r)),
                ldap_searches: counter!("jeton_ldap_searches_total"),
                ldap_entries: counter!("jeton_ldap_entries_total"),
                ldap_latency: LDAP_OPS.map(|op| histogram!("jeton_ldap_operation_seconds", "op" => op)),
            })),
        })
    }

    /// Metrics that record nothing.
    pub fn disabled() -> Metrics {
        Metrics { handles: None }
    }

    /// One HTTP request: endpoint (one of [`ENDPOINTS`]), status, time to the response.
    pub fn request(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        let Some(h) = &self.handles else {
            return;
        };
        let i = ENDPOINTS.iter().position(|e| *e == endpoint).unwrap_or(ENDPOINTS.len() - 1);
        let class = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        h.requests[i][class].increment(1);
        h.latency[i].record(elapsed.as_secs_f64());
    }

    pub fn introspection_cache(&self, hit: bool) {
        if let Some(h) = &self.handles {
            if hit { &h.cache_hit } else { &h.cache_miss }.increment(1);
        }
    }

    /// A password check that ran a hash, and whether it matched.
    pub fn password_check(&self, ok: bool) {
        if let Some(h) = &self.handles {
            if ok { &h.password_ok } else { &h.password_failed }.increment(1);
        }
    }

    /// A connection to `listener` (`http` or `ldap`) closed at once because its address had too many open.
    pub fn connection_refused(&self, listener: &'static str) {
        if let Some(h) = &self.handles {
            let i = LISTENERS.iter().position(|l| *l == listener).unwrap_or(0);
            h.connections_refused[i].increment(1);
        }
    }

    /// An LDAP bind: `ok`, `failed` or `anonymous`.
    pub fn ldap_bind(&self, result: &'static str) {
        if let Some(h) = &self.handles {
            if let Some(i) = BIND_RESULTS.iter().position(|r| *r == result) {
                h.ldap_binds[i].increment(1);
            }
        }
    }

    /// An LDAP search and the entries it returned.
    pub fn ldap_search(&self, entries: u64) {
        if let Some(h) = &self.handles {
            h.ldap_searches.increment(1);
            h.ldap_entries.increment(entries);
        }
    }

    /// Time to answer one LDAP operation (one of [`LDAP_OPS`]).
    pub fn ldap_operation(&self, op: &'static str, elapsed: Duration) {
        if let Some(h) = &self.handles {
            let i = LDAP_OPS.iter().position(|o| *o == op).unwrap_or(LDAP_OPS.len() - 1);
            h.ldap_latency[i].record(elapsed.as_secs_f64());
        }
    }

    /// A sign-in refused without hashing: `locked`, `rate_limited`, `not_checkable` (unknown login, no
    /// usable password, LDAP-backed user) or `no_challenge_credential` (a CHAP or MS-CHAPv2 proof for a user
    /// with neither a password in clear nor an NT-hash credential it can use).
    pub fn password_refused(&self, reason: &'static str) {
        if let Some(h) = &self.handles {
            if let Some(i) = REFUSALS.iter().position(|r| *r == reason) {
                h.password_refused[i].increment(1);
            }
        }
    }

    pub fn token_issued(&self, grant: &'static str) {
        if let Some(h) = &self.handles {
            if let Some(i) = GRANTS.iter().position(|g| *g == grant) {
                h.tokens[i].increment(1);
            }
        }
    }

    /// Raft write latency by command kind (writes are rare: registration per call is fine).
    pub fn record_write(&self, kind: &'static str, elapsed: Duration) {
        if self.handles.is_some() {
            histogram!("jeton_raft_write_duration_seconds", "command" => kind).record(elapsed.as_secs_f64());
        }
    }

    /// Folds recorded histogram samples into their buckets. Must run periodically: without it samples
    /// accumulate in memory until the next scrape.
    pub fn upkeep(&self) {
        if let Some(h) = &self.handles {
            h.prometheus.run_upkeep();
        }
    }

    /// Renders the text exposition format, after refreshing the Raft gauges.
    pub fn render(&self, node: &jeton_raft::ReplicaNode) -> String {
        let Some(h) = &self.handles else {
            return String::new();
        };
        let node_id = node.id;
        // 1 when a write could be committed now (what `/api/health?writable` says); 1 once removed.
        gauge!("jeton_raft_has_quorum").set(if node.has_quorum() { 1.0 } else { 0.0 });
        gauge!("jeton_node_removed").set(if node.is_removed() { 1.0 } else { 0.0 });
        let m = node.raft.metrics().borrow().clone();
        gauge!("jeton_raft_term").set(m.current_term as f64);
        gauge!("jeton_raft_leader").set(m.current_leader.map(|l| l as f64).unwrap_or(-1.0));
        gauge!("jeton_raft_is_leader").set(if m.current_leader == Some(node_id) { 1.0 } else { 0.0 });
        gauge!("jeton_raft_applied_index").set(m.last_applied.map(|l| l.index as f64).unwrap_or(0.0));
        gauge!("jeton_raft_last_log_index").set(m.last_log_index.map(|i| i as f64).unwrap_or(0.0));
        h.prometheus.render()
    }
}
