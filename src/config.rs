//! Configuration: built-in defaults, then the TOML file (`--config`), then `JETON_*` environment
//! variables, then command-line flags; each later source overrides the earlier ones.
//!
//! A relative path written in the config file (`data_dir`, `tls.cert`/`key`, `cluster.ca`/`cert`/`key`/
//! `bootstrap`/`join_token_file`, `security.kek_file`) is relative to the file's folder: a service starts in a working directory of its
//! own (systemd: `/`), not beside its config. Paths from the environment or flags are relative to the
//! working directory, as on any command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

/// Everything `jeton serve` can be told. Field docs are the reference; `conf/jeton.toml` shows them all.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id in the Raft cluster.
    pub node_id: u64,
    /// Where the node keeps its state (sled database, identity, key-encryption key, TLS files).
    pub data_dir: PathBuf,
    /// `iss` of the tokens. Empty: `http(s)://<http.addr>`. Set it to the public URL clients use; to keep
    /// tokens imported from Casdoor valid, set it to Casdoor's `origin`.
    pub issuer: String,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub raft: RaftConfig,
    pub cluster: ClusterConfig,
    pub security: SecurityConfig,
    pub ldap: LdapConfig,
    pub radius: RadiusConfig,
    pub sessions: SessionsConfig,
    pub device: DeviceConfig,
}

/// `[sessions]`: browser sign-in sessions (single sign-on).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Longest a session lasts, seconds (an application's `sessionLifetimeSecs` overrides it).
    pub lifetime_secs: i64,
    /// A session unused this long ends, seconds; 0: no idle limit (an application's `sessionIdleSecs`
    /// overrides it).
    pub idle_secs: i64,
    /// How long an authorization code is good for, seconds (1 to 600; OAuth 2.0 Security BCP: short).
    pub code_lifetime_secs: i64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig { lifetime_secs: 10 * 3600, idle_secs: 30 * 60, code_lifetime_secs: 60 }
    }
}

/// `[device]`: the device authorization grant (RFC 8628), for CLIs and consoles.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceConfig {
    /// How long a device code and its user code are good for, seconds: the user's time to open the
    /// verification page, sign in and approve.
    pub code_lifetime_secs: i64,
    /// Seconds a device must wait between two polls of the token endpoint; faster polls are answered
    /// `slow_down`.
    pub interval_secs: i64,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        let d = jeton_edge::oauth::device::DeviceSettings::default();
        DeviceConfig { code_lifetime_secs: d.code_lifetime_secs, interval_secs: d.interval_secs }
    }
}

/// The LDAP directory: binds and searches over the replicated state (README "LDAP").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// Plain LDAP listener (StartTLS offered). Empty: none.
    pub addr: String,
    /// LDAPS listener (TLS from the first byte). Empty: none.
    pub ldaps_addr: String,
    /// PEM certificate chain and key for LDAPS and StartTLS. Empty: the `[tls]` ones, else the self-signed
    /// certificate for localhost the node keeps in its data dir.
    pub cert: String,
    pub key: String,
    /// Offer StartTLS on the plain listener.
    pub starttls: bool,
    /// Refuse simple binds with a password on a connection without TLS (answered confidentialityRequired).
    pub require_confidentiality: bool,
    /// Written after `ou=<organization>` in naming contexts and DNs, e.g. `dc=example,dc=com`.
    pub suffix: String,
    /// Open connections at most (both listeners together); further clients wait.
    pub max_connections: usize,
    /// Open connections from one client address at most; further ones are closed at once.
    pub max_connections_per_address: usize,
    /// Largest message accepted, in bytes; a larger one ends the connection.
    pub max_message_bytes: usize,
    /// Seconds to receive each message, the idle time before it included.
    pub read_timeout_secs: u64,
    /// Seconds to write each answer.
    pub write_timeout_secs: u64,
    /// Seconds to finish a TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Most entries a search (or one page of a paged search) returns.
    pub size_limit: usize,
    /// Seconds a search may run.
    pub time_limit_secs: u64,
    /// Seconds operations in flight get to finish at shutdown.
    pub shutdown_grace_secs: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            addr: "127.0.0.1:1389".into(),
            ldaps_addr: String::new(),
            cert: String::new(),
            key: String::new(),
            starttls: true,
            require_confidentiality: false,
            suffix: String::new(),
            max_connections: 4096,
            max_connections_per_address: 256,
            max_message_bytes: 64 * 1024,
            read_timeout_secs: 300,
            write_timeout_secs: 30,
            tls_handshake_timeout_secs: 10,
            size_limit: 1000,
            time_limit_secs: 30,
            shutdown_grace_secs: 5,
        }
    }
}

/// The RADIUS server (README "RADIUS"): authentication and accounting over UDP for NAS clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RadiusConfig {
    /// Authentication listener (UDP). Empty: none.
    pub addr: String,
    /// Accounting listener (UDP). Empty: none.
    pub acct_addr: String,
    /// Quick start: a client 127.0.0.1 (and ::1) with this shared secret. Prefer `[[radius.clients]]`.
    pub secret: String,
    /// Organization of requests without a Class attribute when their client names none.
    pub default_organization: String,
    /// Seconds a TOTP challenge can be answered.
    pub challenge_ttl_secs: u64,
    /// Seconds a reply is kept to answer a retransmitted request with (RFC 5080 §2.2.2).
    pub duplicate_window_secs: u64,
    /// Requests worked on at once; more are dropped (the NAS retransmits).
    pub max_in_flight: usize,
    pub clients: Vec<RadiusClientConfig>,
    pub replies: Vec<RadiusReplyConfig>,
    /// RadSec (RADIUS over TLS, RFC 6614) listener, e.g. `0.0.0.0:2083`. Empty (the default): none.
    pub radsec_addr: String,
    /// PEM CA certificate(s) that RadSec client certificates must chain to (required with `radsec_addr`).
    pub radsec_ca: String,
    /// PEM certificate chain and key of the RadSec server. Empty: the `[tls]` ones, else the node's
    /// self-signed one.
    pub radsec_cert: String,
    pub radsec_key: String,
    /// Organization of RadSec requests without a Class attribute; empty: `default_organization`.
    pub radsec_organization: String,
    /// Open RadSec connections at most.
    pub radsec_max_connections: usize,
    /// Seconds a RadSec connection may stay idle.
    pub radsec_idle_timeout_secs: u64,
    /// Organizations whose users get an NT-hash credential (sealed) at their next password sign-in, so that
    /// MS-CHAPv2 works for them although their passwords are stored hashed. Empty (the default): none.
    pub nt_hash_organizations: Vec<String>,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        RadiusConfig {
            addr: "127.0.0.1:1812".into(),
            acct_addr: "127.0.0.1:1813".into(),
            secret: String::new(),
            default_organization: "built-in".into(),
            challenge_ttl_secs: 120,
            duplicate_window_secs: 10,
            max_in_flight: 4096,
            clients: Vec::new(),
            replies: Vec::new(),
            radsec_addr: String::new(),
            radsec_ca: String::new(),
            radsec_cert: String::new(),
            radsec_key: String::new(),
            radsec_organization: String::new(),
            radsec_max_connections: 256,
            radsec_idle_timeout_secs: 600,
            nt_hash_organizations: Vec::new(),
        }
    }
}

/// One NAS client (`[[radius.clients]]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusClientConfig {
    /// Its name in logs and metrics. Default: its address.
    #[serde(default)]
    pub name: String,
    /// An address (`10.0.0.5`) or a network (`10.0.0.0/24`, `2001:db8::/48`) it sends from.
    pub address: String,
    /// Its shared secret, or `secret_file`: a file holding it (trailing newline ignored).
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub secret_file: String,
    /// Drop its Access-Requests that carry no Message-Authenticator (BlastRADIUS). Turn off only for
    /// legacy gear that cannot send one; a warning is logged.
    #[serde(default = "yes")]
    pub require_message_authenticator: bool,
    /// Organization of its requests without a Class attribute.
    #[serde(default)]
    pub organization: String,
}

fn yes() -> bool {
    true
}

impl std::fmt::Debug for RadiusClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadiusClientConfig")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("secret_file", &self.secret_file)
            .field("require_message_authenticator", &self.require_message_authenticator)
            .field("organization", &self.organization)
            .finish_non_exhaustive()
    }
}

/// Access-Accept attributes for an organization's users (`[[radius.replies]]`): for everyone in it, or
/// for the members of `group`, or the holders of `role`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusReplyConfig {
    pub organization: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub role: String,
    /// Attribute name → value: `Class`, `Filter-Id`, `Session-Timeout`, `Idle-Timeout`, `Reply-Message`,
    /// `Vendor-<vendor id>-<type>`.
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl RadiusConfig {
    /// The listener settings: clients with their secrets read, reply attributes parsed.
    pub fn settings(&self) -> anyhow::Result<jeton_edge::radius::RadiusSettings> {
        use jeton_edge::radius::{NasClient, RadiusSettings, ReplyAttribute, ReplyRule, RuleMatch};
        let mut clients = Vec::new();
        if !self.secret.is_empty() {
            for network in ["127.0.0.1/32", "::1/128"] {
                clients.push(NasClient {
                    name: "localhost".into(),
                    network: network.parse().expect("a network"),
                    secret: self.secret.as_bytes().to_vec(),
                    require_message_authenticator: true,
                    organization: String::new(),
                });
            }
        }
        for c in &self.clients {
            let network: ipnet::IpNet = match c.address.parse() {
                Ok(n) => n,
                Err(_) => match c.address.parse::<std::net::IpAddr>() {
                    Ok(ip) => ip.into(),
                    Err(_) => bail!("radius.clients: {:?} is neither an address nor a network", c.address),
                },
            };
            let secret = match (c.secret.is_empty(), c.secret_file.is_empty()) {
                (false, true) => c.secret.clone(),
                (true, false) => std::fs::read_to_string(&c.secret_file)
                    .with_context(|| format!("cannot read radius secret_file {}", c.secret_file))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
                _ => bail!("radius.clients {:?}: give exactly one of secret and secret_file", c.address),
            };
            if secret.is_empty() {
                bail!("radius.clients {:?}: the secret is empty", c.address);
            }
            let name = if c.name.is_empty() { c.address.clone() } else { c.name.clone() };
            clients.push(NasClient {
                name,
                network,
                secret: secret.into_bytes(),
                require_message_authenticator: c.require_message_authenticator,
                organization: c.organization.clone(),
            });
        }
        let mut replies = Vec::new();
        for r in &self.replies {
            let when = match (r.group.is_empty(), r.role.is_empty()) {
                (true, true) => RuleMatch::Everyone,
                (false, true) => RuleMatch::Group(r.group.clone()),
                (true, false) => RuleMatch::Role(r.role.clone()),
                (false, false) => bail!("radius.replies for {:?}: give group or role, not both", r.organization),
            };
            let attributes = r
                .attributes
                .iter()
                .map(|(k, v)| ReplyAttribute::parse(k, v))
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| anyhow::anyhow!("radius.replies for {:?}: {e}", r.organization))?;
            replies.push(ReplyRule { organization: r.organization.clone(), when, attributes });
        }
        Ok(RadiusSettings {
            clients,
            default_organization: self.default_organization.clone(),
            replies,
            challenge_ttl: std::time::Duration::from_secs(self.challenge_ttl_secs),
            duplicate_window: std::time::Duration::from_secs(self.duplicate_window_secs),
            max_in_flight: self.max_in_flight,
        })
    }
}

/// Joining other nodes. A node without `ca`, `cert` and `key` runs as a cluster of one and opens no
/// node-to-node listener.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// PEM certificate of the cluster CA: the only issuer whose node certificates are accepted.
    pub ca: String,
    /// PEM certificate of this node, signed by the cluster CA (`jeton cluster cert --node-id` makes one); it
    /// names the node id. `{node_id}` in the path is replaced by this node's id.
    pub cert: String,
    /// PEM private key of this node (`{node_id}` as in `cert`).
    pub key: String,
    /// Raft address (host:port) of a member of the cluster to join on first start. A node that is already
    /// a member ignores it.
    pub join: String,
    /// With `join`: stay a non-voting learner (serves reads; does not slow commits).
    pub learner: bool,
    /// With `join`: the join token that admits this node (`jeton cluster admit`); wins over
    /// `join_token_file`. Prefer `join_token_file` or `JETON_JOIN_TOKEN`, which keep it out of the config.
    pub join_token: String,
    /// With `join`: a file holding the join token (`jeton cluster cert` writes `NAME.join`). `{node_id}` as
    /// in `cert`.
    pub join_token_file: String,
    /// Without `join`, when this node creates a new cluster (its very first start): the bootstrap file of
    /// `jeton cluster ca` / `cert` (`bootstrap.json`), which names the cluster and admits the nodes whose
    /// certificates were made with it. Ignored afterwards.
    pub bootstrap: String,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.ca.is_empty() || !self.cert.is_empty() || !self.key.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the HTTP(S) listener.
    pub addr: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Open connections at most; further clients wait.
    pub max_connections: usize,
    /// Open connections from one client address at most; further ones are closed at once.
    pub max_connections_per_address: usize,
    /// Seconds to receive request headers.
    pub header_timeout_secs: u64,
    /// Seconds a connection with no request in progress stays open (HTTP/1 keep-alive and HTTP/2 alike).
    pub idle_timeout_secs: u64,
    /// Seconds to receive a request body.
    pub body_timeout_secs: u64,
    /// Seconds in-flight requests get to finish at shutdown.
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve HTTPS.
    pub enabled: bool,
    /// PEM certificate chain file.
    pub cert: String,
    /// PEM private key file.
    pub key: String,
    /// Without cert/key: generate a self-signed certificate for localhost into the data dir (local use).
    pub self_signed: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Address peers reach this node at (recorded in the membership).
    pub addr: String,
    /// Address the node-to-node listener binds. Empty: `addr`. (In containers: `0.0.0.0:8001`.)
    pub listen: String,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// MiB of sled page cache (records read from disk stay there).
    pub storage_cache_mb: u64,
    /// Connections the node-to-node listener holds open at once; one past it is closed at once.
    pub max_connections: usize,
    /// Seconds a node-to-node connection may stay idle (also the time to send a request's headers).
    pub idle_timeout_secs: u64,
    /// A node has caught up (it may become a voter) when its log is at most this many entries behind the
    /// leader's.
    pub catch_up_lag: u64,
    /// Seconds a joining node, or one added with `cluster add-learner`, gets to catch up; past them the
    /// join fails and the node stays a learner. Set it alike on every node: a joining node waits as long.
    pub catch_up_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// File with the key-encryption key (64 hex chars). Empty: `<data_dir>/kek`, created on first start.
    /// Every node of a cluster needs the same key. `JETON_KEK` overrides it.
    pub kek_file: String,
    /// Organization whose users are global administrators.
    pub admin_org: String,
    /// The built-in administration application.
    pub admin_app: String,
    /// Password checks (bcrypt, argon2id, ...) running at once.
    pub password_check_concurrency: usize,
    /// MiB of memory the password checks running at once may reserve together (argon2: its `m` each).
    pub password_memory_budget_mib: u32,
    /// A failed sign-in is answered no earlier than this many ms after it began (no timing differences).
    pub password_failure_floor_ms: u64,
    /// Failed password checks from one address within `ip_failure_window_secs` before it is refused.
    pub ip_failure_limit: u32,
    pub ip_failure_window_secs: u64,
    /// Entries of the introspection cache.
    pub introspection_cache_entries: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            data_dir: PathBuf::from("./jeton-data"),
            issuer: String::new(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            raft: RaftConfig::default(),
            cluster: ClusterConfig::default(),
            security: SecurityConfig::default(),
            ldap: LdapConfig::default(),
            radius: RadiusConfig::default(),
            sessions: SessionsConfig::default(),
            device: DeviceConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: "127.0.0.1:8000".into(),
            max_body_bytes: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_address: 256,
            header_timeout_secs: 30,
            idle_timeout_secs: 60,
            body_timeout_secs: 30,
            shutdown_grace_secs: 10,
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            addr: "127.0.0.1:8001".into(),
            listen: String::new(),
            snapshot_every: 10_000,
            heartbeat_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            storage_cache_mb: 64,
            max_connections: 512,
            idle_timeout_secs: 60,
            catch_up_lag: 100,
            catch_up_timeout_secs: 600,
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            kek_file: String::new(),
            admin_org: "built-in".into(),
            admin_app: "app-built-in".into(),
            password_check_concurrency: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            password_memory_budget_mib: 512,
            password_failure_floor_ms: jeton_edge::passwords::DEFAULT_FAILURE_FLOOR_MS,
            ip_failure_limit: 50,
            ip_failure_window_secs: 300,
            introspection_cache_entries: 1_000_000,
        }
    }
}

/// Values given on the command line or in the environment (already merged by clap).
#[derive(Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<String>,
    pub ldap_addr: Option<String>,
    pub ldaps_addr: Option<String>,
    pub radius_addr: Option<String>,
    pub radius_acct_addr: Option<String>,
    pub radius_secret: Option<String>,
    pub node_id: Option<u64>,
    pub issuer: Option<String>,
    pub raft_addr: Option<String>,
    pub join: Option<String>,
    pub learner: bool,
    pub join_token: Option<String>,
}

impl Config {
    /// Loads the file (if any) and applies the overrides, then checks the result.
    pub fn load(file: Option<&Path>, o: Overrides) -> anyhow::Result<Config> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let mut cfg = toml::from_str::<Config>(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?;
                // Parsed once more as a table: only a data_dir the file sets is the file's.
                let sets_data_dir = toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("data_dir"));
                cfg.resolve_relative_paths(path.parent().unwrap_or(Path::new("")), sets_data_dir);
                cfg
            }
            None => Config::default(),
        };
        if let Some(v) = o.data_dir {
            cfg.data_dir = v;
        }
        if let Some(v) = o.http_addr {
            cfg.http.addr = v;
        }
        if let Some(v) = o.ldap_addr {
            cfg.ldap.addr = v;
        }
        if let Some(v) = o.ldaps_addr {
            cfg.ldap.ldaps_addr = v;
        }
        if let Some(v) = o.radius_addr {
            cfg.radius.addr = v;
        }
        if let Some(v) = o.radius_acct_addr {
            cfg.radius.acct_addr = v;
        }
        if let Some(v) = o.radius_secret {
            cfg.radius.secret = v;
        }
        if let Some(v) = o.node_id {
            cfg.node_id = v;
        }
        if let Some(v) = o.issuer {
            cfg.issuer = v;
        }
        if let Some(v) = o.raft_addr {
            cfg.raft.addr = v;
        }
        if let Some(v) = o.join {
            cfg.cluster.join = v;
        }
        if o.learner {
            cfg.cluster.learner = true;
        }
        if let Some(v) = o.join_token {
            cfg.cluster.join_token = v;
        }
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&mut self) -> anyhow::Result<()> {
        let addr: SocketAddr = self
            .http
            .addr
            .parse()
            .with_context(|| format!("http.addr {:?} is not an address like 127.0.0.1:8000", self.http.addr))?;
        if self.node_id == 0 {
            bail!("node_id must be at least 1");
        }
        if self.http.max_body_bytes < 1024 {
            bail!("http.max_body_bytes must be at least 1024");
        }
        if self.http.max_connections == 0 {
            bail!("http.max_connections must be at least 1");
        }
        if self.http.max_connections_per_address == 0 {
            bail!("http.max_connections_per_address must be at least 1");
        }
        if self.http.idle_timeout_secs == 0 {
            bail!("http.idle_timeout_secs must be at least 1");
        }
        if self.security.password_check_concurrency == 0 || self.security.password_memory_budget_mib == 0 {
            bail!("security.password_check_concurrency and password_memory_budget_mib must be at least 1");
        }
        if self.device.code_lifetime_secs < 1 || self.device.interval_secs < 1 {
            bail!("device.code_lifetime_secs and device.interval_secs must be at least 1");
        }
        if self.security.password_failure_floor_ms > 60_000 {
            bail!("security.password_failure_floor_ms is at most 60000 (one minute)");
        }
        if self.tls.enabled && !self.tls.self_signed && (self.tls.cert.is_empty() || self.tls.key.is_empty()) {
            bail!("tls.enabled needs tls.cert and tls.key, or tls.self_signed = true");
        }
        if self.raft.election_timeout_min_ms <= self.raft.heartbeat_ms
            || self.raft.election_timeout_max_ms <= self.raft.election_timeout_min_ms
        {
            bail!("raft: need heartbeat_ms < election_timeout_min_ms < election_timeout_max_ms");
        }
        if self.cluster.enabled()
            && (self.cluster.ca.is_empty() || self.cluster.cert.is_empty() || self.cluster.key.is_empty())
        {
            bail!("cluster: ca, cert and key go together (jeton cluster ca / jeton cluster cert make them)");
        }
        // `--join https://host:port/` is accepted as well as `host:port`.
        let join = self.cluster.join.trim();
        let join = join.strip_prefix("https://").or_else(|| join.strip_prefix("http://")).unwrap_or(join);
        self.cluster.join = join.trim_end_matches('/').to_string();
        if !self.cluster.join.is_empty() && !self.cluster.enabled() {
            bail!("joining a cluster needs mutual TLS between nodes: set cluster.ca, cluster.cert and cluster.key");
        }
        if self.cluster.learner && self.cluster.join.is_empty() {
            bail!("--learner only makes sense with --join");
        }
        if self.raft.max_connections == 0 {
            bail!("raft.max_connections must be at least 1");
        }
        for (name, addr) in [("ldap.addr", &self.ldap.addr), ("ldap.ldaps_addr", &self.ldap.ldaps_addr)] {
            if !addr.is_empty() && addr.parse::<SocketAddr>().is_err() {
                bail!("{name} {addr:?} is not an address like 127.0.0.1:1389 (empty: no listener)");
            }
        }
        if self.radius.challenge_ttl_secs == 0
            || self.radius.duplicate_window_secs == 0
            || self.radius.max_in_flight == 0
        {
            bail!(
                "radius.challenge_ttl_secs, radius.duplicate_window_secs and radius.max_in_flight must be at least 1"
            );
        }
        self.radius.settings()?;
        if !self.radius.radsec_addr.is_empty() && self.radius.radsec_ca.is_empty() {
            bail!("radius.radsec_addr needs radius.radsec_ca: the CA that RadSec client certificates must chain to");
        }
        if self.radius.radsec_cert.is_empty() != self.radius.radsec_key.is_empty() {
            bail!("radius.radsec_cert and radius.radsec_key go together");
        }
        if self.radius.radsec_max_connections == 0 || self.radius.radsec_idle_timeout_secs == 0 {
            bail!("radius.radsec_max_connections and radius.radsec_idle_timeout_secs must be at least 1");
        }
        if self.ldap.cert.is_empty() != self.ldap.key.is_empty() {
            bail!("ldap.cert and ldap.key go together");
        }
        if self.ldap.max_connections == 0 || self.ldap.max_connections_per_address == 0 {
            bail!("ldap.max_connections and ldap.max_connections_per_address must be at least 1");
        }
        if self.ldap.size_limit == 0 || self.ldap.time_limit_secs == 0 {
            bail!("ldap.size_limit and ldap.time_limit_secs must be at least 1 (they bound what one search holds)");
        }
        if self.ldap.max_message_bytes < 1024 {
            bail!("ldap.max_message_bytes must be at least 1024");
        }
        if self.ldap.read_timeout_secs == 0
            || self.ldap.write_timeout_secs == 0
            || self.ldap.tls_handshake_timeout_secs == 0
        {
            bail!("ldap timeouts must be at least 1 second");
        }
        if !self.ldap.suffix.is_empty()
            && jeton_edge::directory::parse_dn(&self.ldap.suffix).is_none_or(|d| d.iter().any(|r| r.key == "ou"))
        {
            bail!("ldap.suffix {:?} must be a DN without ou= (e.g. dc=example,dc=com)", self.ldap.suffix);
        }
        if self.raft.idle_timeout_secs == 0 {
            bail!("raft.idle_timeout_secs must be at least 1");
        }
        if self.raft.catch_up_timeout_secs == 0 {
            bail!("raft.catch_up_timeout_secs must be at least 1");
        }
        let id = self.node_id.to_string();
        for path in [&mut self.cluster.cert, &mut self.cluster.key, &mut self.cluster.join_token_file] {
            *path = path.replace("{node_id}", &id);
        }
        if self.raft.listen.is_empty() {
            self.raft.listen = self.raft.addr.clone();
        }
        if self.issuer.is_empty() {
            let scheme = if self.tls.enabled { "https" } else { "http" };
            self.issuer = format!("{scheme}://{addr}");
        }
        let issuer = self.issuer.trim_end_matches('/').to_string();
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            bail!("issuer must be an http(s) URL, got {:?}", self.issuer);
        }
        self.issuer = issuer;
        Ok(())
    }

    /// Makes the relative paths read from a config file relative to its folder (see the module doc). The
    /// built-in default `data_dir`, when the file sets none, stays relative to the working directory.
    fn resolve_relative_paths(&mut self, folder: &Path, file_sets_data_dir: bool) {
        if folder.as_os_str().is_empty() {
            return;
        }
        if file_sets_data_dir && self.data_dir.is_relative() {
            self.data_dir = folder.join(&self.data_dir);
        }
        for path in [
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.ldap.cert,
            &mut self.ldap.key,
            &mut self.cluster.ca,
            &mut self.cluster.cert,
            &mut self.cluster.key,
            &mut self.cluster.bootstrap,
            &mut self.cluster.join_token_file,
            &mut self.security.kek_file,
            &mut self.radius.radsec_ca,
            &mut self.radius.radsec_cert,
            &mut self.radius.radsec_key,
        ]
        .into_iter()
        .chain(self.radius.clients.iter_mut().map(|c| &mut c.secret_file))
        {
            if !path.is_empty() && Path::new(path.as_str()).is_relative() {
                *path = folder.join(path.as_str()).to_string_lossy().into_owned();
            }
        }
    }

    pub fn kek_path(&self) -> PathBuf {
        if self.security.kek_file.is_empty() {
            self.data_dir.join("kek")
        } else {
            PathBuf::from(&self.security.kek_file)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_config_parses() {
        let text = include_str!("../conf/jeton.toml");
        let cfg: Config = toml::from_str(text).expect("conf/jeton.toml must parse");
        assert_eq!(cfg.http.addr, "127.0.0.1:8000");
        assert!(cfg.radius.nt_hash_organizations.is_empty(), "no organization opted in by default");
        assert_eq!(cfg.device, DeviceConfig::default(), "the example shows the defaults");
    }

    #[test]
    fn radius_clients_and_replies_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("wlc.secret"), "wlc-secret\n").expect("secret file");
        let text = r#"
            [radius]
            secret = "quick"
            nt_hash_organizations = ["acme", "globex"]
            [[radius.clients]]
            name = "core"
            address = "10.0.10.0/24"
            secret = "core-secret"
            organization = "acme"
            [[radius.clients]]
            address = "10.0.20.7"
            secret_file = "wlc.secret"
            require_message_authenticator = false
            [[radius.replies]]
            organization = "acme"
            group = "engineering"
            attributes = { "Filter-Id" = "eng", "Session-Timeout" = "60", "Vendor-9-1" = "shell:priv-lvl=15" }
        "#;
        let path = dir.path().join("jeton.toml");
        std::fs::write(&path, text).expect("config");
        let cfg = Config::load(Some(&path), Overrides::default()).expect("loads");
        let s = cfg.radius.settings().expect("settings");
        let names: Vec<&str> = s.clients.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["localhost", "localhost", "core", "10.0.20.7"]);
        assert!(s.clients[2].network.contains(&"10.0.10.99".parse::<std::net::IpAddr>().unwrap()));
        assert_eq!(s.clients[3].secret, b"wlc-secret", "secret_file read, relative to the config, newline cut");
        assert!(s.clients[2].require_message_authenticator && !s.clients[3].require_message_authenticator);
        assert_eq!(s.replies[0].attributes.len(), 3);
        assert_eq!(cfg.radius.nt_hash_organizations, ["acme", "globex"]);

        let refused = |extra: &str| {
            let cfg: Config = toml::from_str(&format!("[radius]\n{extra}")).expect("parses");
            cfg.radius.settings().is_err()
        };
        assert!(refused("[[radius.clients]]\naddress = \"nonsense\"\nsecret = \"x\""));
        assert!(refused("[[radius.clients]]\naddress = \"10.0.0.1\""), "no secret");
        assert!(refused("[[radius.clients]]\naddress = \"10.0.0.1\"\nsecret = \"x\"\nsecret_file = \"f\""));
        assert!(refused("[[radius.replies]]\norganization = \"a\"\ngroup = \"g\"\nrole = \"r\"\nattributes = {}"));
        assert!(refused("[[radius.replies]]\norganization = \"a\"\nattributes = { \"Framed-Pool\" = \"p\" }"));
    }

    #[test]
    fn three_node_examples_parse_and_check() {
        for (id, text) in [
            (1, include_str!("../conf/cluster/node-1.toml")),
            (2, include_str!("../conf/cluster/node-2.toml")),
            (3, include_str!("../conf/cluster/node-3.toml")),
        ] {
            let mut cfg: Config = toml::from_str(text).expect("conf/cluster example must parse");
            cfg.check().expect("conf/cluster example must pass the checks");
            assert_eq!(cfg.node_id, id);
            assert_eq!(cfg.cluster.join.is_empty(), id == 1);
            // Node 1 creates the cluster from the bootstrap file; the others join with their tokens.
            assert_eq!(cfg.cluster.bootstrap.is_empty(), id != 1);
            assert_eq!(cfg.cluster.join_token_file.is_empty(), id == 1);
        }
        let mut compose: Config = toml::from_str(include_str!("../deploy/compose-node.toml")).expect("compose config");
        assert!(compose.cluster.enabled());
        // One file for the three nodes: `{node_id}` names each node's own files.
        compose.node_id = 2;
        compose.check().expect("compose config must pass the checks");
        assert_eq!(compose.cluster.cert, "/certs/node-2.pem");
        assert_eq!(compose.cluster.key, "/certs/node-2-key.pem");
        assert_eq!(compose.cluster.join_token_file, "/certs/node-2.join");
        assert_eq!(compose.cluster.bootstrap, "/certs/bootstrap.json");
    }

    /// Relative paths in a config file are relative to its folder; absolute ones, the built-in default
    /// data dir and values from flags or the environment are left as they are.
    #[test]
    fn relative_paths_in_a_config_file_resolve_against_its_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        let file = etc.join("jeton.toml");
        std::fs::write(
            &file,
            "data_dir = \"state\"\n[tls]\ncert = \"tls/cert.pem\"\nkey = \"/abs/key.pem\"\n\
             [cluster]\nca = \"ca.pem\"\ncert = \"node.pem\"\nkey = \"node-key.pem\"\n\
             bootstrap = \"bootstrap.json\"\njoin_token_file = \"node.join\"\n\
             [security]\nkek_file = \"kek\"\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&file), Overrides::default()).unwrap();
        assert_eq!(cfg.data_dir, etc.join("state"));
        assert_eq!(Path::new(&cfg.tls.cert), etc.join("tls/cert.pem"));
        assert_eq!(cfg.tls.key, "/abs/key.pem");
        assert_eq!(Path::new(&cfg.cluster.ca), etc.join("ca.pem"));
        assert_eq!(Path::new(&cfg.cluster.key), etc.join("node-key.pem"));
        assert_eq!(Path::new(&cfg.cluster.bootstrap), etc.join("bootstrap.json"));
        assert_eq!(Path::new(&cfg.cluster.join_token_file), etc.join("node.join"));
        assert_eq!(cfg.kek_path(), etc.join("kek"));
        let flag = Overrides { data_dir: Some(PathBuf::from("here")), ..Default::default() };
        assert_eq!(Config::load(Some(&file), flag).unwrap().data_dir, PathBuf::from("here"));
        std::fs::write(&file, "node_id = 2\n").unwrap();
        assert_eq!(Config::load(Some(&file), Overrides::default()).unwrap().data_dir, Config::default().data_dir);
    }

    /// The config packaged for the systemd unit keeps its data dir where the unit lets the node write, and
    /// so do the cluster examples the unit's comment offers.
    #[test]
    fn packaged_configs_write_only_where_the_unit_allows() {
        let unit = include_str!("../deploy/jeton.service");
        let writable: Vec<&str> =
            unit.lines().filter_map(|l| l.strip_prefix("ReadWritePaths=")).flat_map(|l| l.split_whitespace()).collect();
        assert!(!writable.is_empty(), "the unit names ReadWritePaths");
        for (name, text) in [
            ("deploy/jeton.toml", include_str!("../deploy/jeton.toml")),
            ("conf/cluster/node-1.toml", include_str!("../conf/cluster/node-1.toml")),
            ("conf/cluster/node-2.toml", include_str!("../conf/cluster/node-2.toml")),
            ("conf/cluster/node-3.toml", include_str!("../conf/cluster/node-3.toml")),
        ] {
            let mut cfg: Config = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            cfg.check().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(cfg.data_dir.is_absolute(), "{name}: data_dir must be absolute under the unit");
            assert!(
                writable.iter().any(|w| cfg.data_dir.starts_with(w)),
                "{name}: {:?} not in {writable:?}",
                cfg.data_dir
            );
        }
    }

    /// README's cluster commands name the hosts `conf/cluster` configures.
    #[test]
    fn readme_and_cluster_examples_use_the_same_host_names() {
        let readme = include_str!("../README.md");
        let mut hosts = Vec::new();
        for text in [
            include_str!("../conf/cluster/node-1.toml"),
            include_str!("../conf/cluster/node-2.toml"),
            include_str!("../conf/cluster/node-3.toml"),
        ] {
            let cfg: Config = toml::from_str(text).unwrap();
            let host = cfg.raft.addr.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap();
            let domain = host.split_once('.').map(|(_, d)| d.to_string()).unwrap();
            hosts.push((host, domain));
        }
        assert!(readme.contains(&hosts[0].0), "README names {}", hosts[0].0);
        let domain = &hosts[0].1;
        // Every node-N.<domain> README mentions is in the examples' domain.
        for (i, _) in readme.match_indices("node-") {
            let rest = &readme[i..];
            let name: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.').collect();
            let name = name.trim_end_matches('.');
            // A host name has a domain of several labels; `node-2.toml` or `ca/node-2.join` are files.
            if let Some((_, d)) = name.split_once('.').filter(|(_, d)| d.contains('.')) {
                assert_eq!(d, domain, "README host {name} is not in conf/cluster's domain {domain}");
            }
        }
    }

    #[test]
    fn flags_override_file_and_bad_values_are_refused() {
        let cfg =
            Config::load(None, Overrides { http_addr: Some("127.0.0.1:9999".into()), ..Default::default() }).unwrap();
        assert_eq!(cfg.issuer, "http://127.0.0.1:9999");
        let err =
            Config::load(None, Overrides { http_addr: Some("nonsense".into()), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("http.addr"));
        let err = Config::load(None, Overrides { node_id: Some(0), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("node_id"));
        assert!(toml::from_str::<Config>("unknown_key = 1").is_err());
    }
}
