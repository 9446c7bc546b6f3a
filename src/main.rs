//! `jeton`: the node binary. CLI, configuration, wiring a node together, shutdown.

mod bootstrap;
mod cluster_cli;
mod config;
mod import;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jeton_edge::http::HttpSettings;
use jeton_edge::keys::Kek;
use jeton_edge::ldap::LdapSettings;
use jeton_edge::metrics::Metrics;
use jeton_edge::{Edge, EdgeConfig};
use jeton_raft::node::{ClusterOptions, RaftSettings};
use jeton_raft::{Command, ReplicaNode};

use crate::config::{Config, Overrides};

/// sled materializes and frees large pages on every write and the HTTP paths allocate per request; glibc's
/// allocator spent a fifth of a node's CPU in malloc/consolidation under replicated writes.
/// (`--no-default-features` builds with the system allocator, for comparisons.)
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "jeton",
    version,
    about = "Edge token service: OAuth 2 / OIDC from Raft-replicated, in-memory identity state"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run a node. With no arguments: data in ./jeton-data, HTTP on 127.0.0.1:8000.
    Serve {
        /// TOML configuration file (see conf/jeton.toml).
        #[arg(long, env = "JETON_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory.
        #[arg(long, env = "JETON_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// HTTP listen address.
        #[arg(long, env = "JETON_HTTP_ADDR")]
        http_addr: Option<String>,
        /// LDAP listen address (StartTLS offered); "" for none. Default 127.0.0.1:1389.
        #[arg(long, env = "JETON_LDAP_ADDR")]
        ldap_addr: Option<String>,
        /// LDAPS listen address; "" (the default) for none.
        #[arg(long, env = "JETON_LDAPS_ADDR")]
        ldaps_addr: Option<String>,
        /// RADIUS authentication listen address (UDP); "" for none. Default 127.0.0.1:1812. Listens only
        /// when a client is configured ([[radius.clients]] or --radius-secret).
        #[arg(long, env = "JETON_RADIUS_ADDR")]
        radius_addr: Option<String>,
        /// RADIUS accounting listen address (UDP); "" for none. Default 127.0.0.1:1813.
        #[arg(long, env = "JETON_RADIUS_ACCT_ADDR")]
        radius_acct_addr: Option<String>,
        /// Quick start: accept RADIUS from 127.0.0.1 with this shared secret (prefer the environment
        /// variable: command lines are visible to other local users).
        #[arg(long, env = "JETON_RADIUS_SECRET", hide_env_values = true)]
        radius_secret: Option<String>,
        /// This node's Raft id.
        #[arg(long, env = "JETON_NODE_ID")]
        node_id: Option<u64>,
        /// Token issuer URL.
        #[arg(long, env = "JETON_ISSUER")]
        issuer: Option<String>,
        /// Address peers reach this node at.
        #[arg(long, env = "JETON_RAFT_ADDR")]
        raft_addr: Option<String>,
        /// On first start, join the cluster of the node at this Raft address (host:port) instead of
        /// starting a new one. Needs [cluster] ca, cert and key. Ignored (with an info line) once the
        /// data dir holds a membership: a member restarts with whatever other nodes are up.
        #[arg(long, env = "JETON_JOIN")]
        join: Option<String>,
        /// With --join: stay a non-voting learner.
        #[arg(long, env = "JETON_LEARNER")]
        learner: bool,
        /// With --join: the join token that admits this node (`jeton cluster admit`). The environment
        /// variable keeps it out of the process list.
        #[arg(long, env = "JETON_JOIN_TOKEN", hide_env_values = true)]
        join_token: Option<String>,
    },
    /// Cluster certificates and membership.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Import another identity server's state (Casdoor).
    Import {
        #[command(subcommand)]
        source: import::ImportSource,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Create a cluster CA (ca.pem, ca-key.pem) for node-to-node mutual TLS, and the bootstrap file of a
    /// new cluster (bootstrap.json: its name, and the admissions `cluster cert` adds).
    Ca {
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a node certificate signed by the cluster CA, naming the node id, and the node's join token
    /// for the first start of a new cluster (NAME.join; its digest goes into the CA dir's bootstrap.json).
    Cert {
        /// Directory holding ca.pem and ca-key.pem (and bootstrap.json).
        #[arg(long)]
        ca_dir: PathBuf,
        /// File name of the certificate (NAME.pem, NAME-key.pem, NAME.join).
        #[arg(long)]
        name: String,
        /// The id of the node the certificate is for (its node_id); peers know the node by it.
        #[arg(long)]
        node_id: u64,
        /// Host names and IP addresses peers use to reach the node (repeat).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Show what a node knows of the cluster. Admin credentials: JETON_ADMIN_CLIENT_ID / _SECRET.
    Status {
        #[command(flatten)]
        node: cluster_cli::NodeApi,
        /// Ask for a linearizable answer (confirmed with the leader).
        #[arg(long)]
        linearizable: bool,
    },
    /// Admit a node to join: prints the one-time join token it starts with (`--join-token`,
    /// JETON_JOIN_TOKEN or cluster.join_token_file). Admin credentials as for `status`.
    Admit {
        #[command(flatten)]
        node: cluster_cli::NodeApi,
        /// The node id to admit (the id in its certificate).
        #[arg(long)]
        id: u64,
        /// Hours the token stays valid.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u64,
    },
    /// Add a node as a non-voting learner and wait until it has caught up: its log at most
    /// raft.catch_up_lag entries behind the leader's. Fails if it has not within the leader's
    /// raft.catch_up_timeout_secs (600); the node then stays a learner. The node itself starts with --join,
    /// --learner and a join token (`cluster admit`). The leader logs its progress every 5 s.
    AddLearner {
        #[command(flatten)]
        node: cluster_cli::NodeApi,
        #[arg(long)]
        id: u64,
        /// The new node's Raft address.
        #[arg(long)]
        addr: String,
    },
    /// Make a learner a voter. Refused while it has not caught up (its matched log index more than
    /// raft.catch_up_lag entries behind the leader's last index), unless --force.
    Promote {
        #[command(flatten)]
        node: cluster_cli::NodeApi,
        #[arg(long)]
        id: u64,
        /// Promote it even if it has not caught up (a voter that lags slows or stops commits).
        #[arg(long)]
        force: bool,
    },
    /// Remove a node from the cluster.
    Remove {
        #[command(flatten)]
        node: cluster_cli::NodeApi,
        #[arg(long)]
        id: u64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `import --quiet` prints only errors, unless JETON_LOG asks for more.
    let default_log = match &cli.command {
        Commands::Import { source } if source.quiet() => "error",
        _ => "info,openraft=warn,sled=warn",
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("JETON_LOG").unwrap_or_else(|_| default_log.into());
    if matches!(cli.command, Commands::Cluster { .. }) {
        // The certificate verifier logs every failure it returns; the tool reports it, once, itself.
        if let Ok(quiet) = "rustls_platform_verifier=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: journald, `docker logs` and files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Commands::Serve {
                config,
                data_dir,
                http_addr,
                ldap_addr,
                ldaps_addr,
                radius_addr,
                radius_acct_addr,
                radius_secret,
                node_id,
                issuer,
                raft_addr,
                join,
                learner,
                join_token,
            } => {
                let overrides = Overrides {
                    data_dir,
                    http_addr,
                    ldap_addr,
                    ldaps_addr,
                    radius_addr,
                    radius_acct_addr,
                    radius_secret,
                    node_id,
                    issuer,
                    raft_addr,
                    join,
                    learner,
                    join_token,
                };
                let cfg = Config::load(config.as_deref(), overrides)?;
                serve(cfg).await
            }
            Commands::Cluster { command } => cluster(command).await,
            Commands::Import { source } => import::run(source).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let admin_env = bootstrap::AdminEnv::from_env()?;
    // Bind first: a taken port is reported before anything is written to the data dir.
    let listener = bind_listener(&cfg.http.addr, "").await?;
    let ldap_listener = match cfg.ldap.addr.as_str() {
        "" => None,
        addr => Some(bind_listener(addr, " (LDAP)").await?),
    };
    let ldaps_listener = match cfg.ldap.ldaps_addr.as_str() {
        "" => None,
        addr => Some(bind_listener(addr, " (LDAPS)").await?),
    };
    let radius = cfg.radius.settings()?;
    let (radius_socket, radius_acct_socket) = if radius.clients.is_empty() {
        if !cfg.radius.addr.is_empty() || !cfg.radius.acct_addr.is_empty() {
            tracing::debug!("RADIUS off: no client configured ([[radius.clients]] or --radius-secret)");
        }
        (None, None)
    } else {
        (bind_udp(&cfg.radius.addr, " (RADIUS)").await?, bind_udp(&cfg.radius.acct_addr, " (RADIUS accounting)").await?)
    };
    let radsec_listener = match cfg.radius.radsec_addr.as_str() {
        "" => None,
        addr => Some(bind_listener(addr, " (RadSec)").await?),
    };
    let tls = if cfg.tls.enabled {
        std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
        Some(tls::server_config(&cfg.tls, &cfg.data_dir)?)
    } else {
        None
    };
    let cluster_tls = if cfg.cluster.enabled() {
        let tls = jeton_raft::network::ClusterTls::load(
            std::path::Path::new(&cfg.cluster.ca),
            std::path::Path::new(&cfg.cluster.cert),
            std::path::Path::new(&cfg.cluster.key),
        )
        .map_err(|e| anyhow::anyhow!("cluster TLS: {e}"))?;
        Some(Arc::new(tls))
    } else {
        None
    };
    let raft_listener = match &cluster_tls {
        Some(_) => Some(tokio::net::TcpListener::bind(&cfg.raft.listen).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                anyhow::anyhow!("cannot listen on {} (raft): the address is already in use", cfg.raft.listen)
            }
            _ => anyhow::anyhow!("cannot listen on {} (raft): {e}", cfg.raft.listen),
        })?),
        None => None,
    };
    let join = Some(cfg.cluster.join.clone()).filter(|j| !j.is_empty());
    // The key-encryption key: every node of a cluster needs the same one. A node that starts a cluster
    // creates it; a node that joins receives it from the cluster over mutual TLS unless it has one.
    let kek_path = cfg.kek_path();
    let env_kek = std::env::var("JETON_KEK").ok().filter(|k| !k.is_empty());
    let local_kek = match env_kek {
        Some(k) => Some(k),
        None if join.is_none() => {
            std::fs::create_dir_all(&cfg.data_dir)
                .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
            Kek::load_or_create(&kek_path)?;
            Some(std::fs::read_to_string(&kek_path)?.trim().to_string())
        }
        None => match std::fs::read_to_string(&kek_path) {
            Ok(k) => Some(k.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => anyhow::bail!("cannot read {}: {e}", kek_path.display()),
        },
    };
    // A key that is not one stops the start before Raft opens the data dir.
    if let Some(k) = &local_kek {
        Kek::from_hex(k).with_context(|| match std::env::var_os("JETON_KEK").filter(|k| !k.is_empty()) {
            Some(_) => "JETON_KEK".to_string(),
            None => kek_path.display().to_string(),
        })?;
    }
    let settings = RaftSettings {
        snapshot_every: cfg.raft.snapshot_every,
        heartbeat_ms: cfg.raft.heartbeat_ms,
        election_timeout_ms: (cfg.raft.election_timeout_min_ms, cfg.raft.election_timeout_max_ms),
        storage_cache_bytes: cfg.raft.storage_cache_mb << 20,
        catch_up_lag: cfg.raft.catch_up_lag,
        catch_up_timeout: std::time::Duration::from_secs(cfg.raft.catch_up_timeout_secs),
    };
    // A member restarting with `join` still set needs no token: one that cannot be read then is ignored.
    let member_before = cfg.data_dir.join("identity.json").exists();
    let join_token = match (&join, cluster_cli::join_token(&cfg.cluster)) {
        (None, _) => None,
        (Some(_), Ok(token)) => token,
        (Some(_), Err(_)) if member_before => None,
        (Some(_), Err(e)) => return Err(e),
    };
    // Read only when this node is about to create a new cluster; afterwards it plays no part.
    let bootstrap =
        if join.is_none() && !cfg.cluster.bootstrap.is_empty() && !cfg.data_dir.join("identity.json").exists() {
            Some(cluster_cli::read_bootstrap(std::path::Path::new(&cfg.cluster.bootstrap))?)
        } else {
            None
        };
    let options = ClusterOptions {
        tls: cluster_tls,
        listener: raft_listener,
        join: join.clone(),
        learner: cfg.cluster.learner,
        join_secret: local_kek.clone(),
        join_token,
        bootstrap,
        limits: jeton_raft::cluster::ListenerLimits {
            max_connections: cfg.raft.max_connections,
            idle_timeout: Duration::from_secs(cfg.raft.idle_timeout_secs),
        },
    };
    let node = ReplicaNode::start(&cfg.data_dir, cfg.node_id, &cfg.raft.addr, &settings, options).await?;
    let edge = match prepare_edge(&cfg, &node, local_kek, &kek_path, join.is_some(), &admin_env).await {
        Ok(edge) => edge,
        Err(e) => {
            // Raft is running: stop it before reporting (dropping it instead makes openraft log a
            // spurious "error reporting metrics" as it goes).
            node.shutdown().await;
            return Err(e);
        }
    };
    // LDAPS and StartTLS: the [ldap] certificate, else the [tls] one, else the node's self-signed one (made
    // here, once the start can no longer fail for a reason of its own).
    let ldap_tls = if ldaps_listener.is_some() || (ldap_listener.is_some() && cfg.ldap.starttls) {
        match tls::ldap_server_config(&cfg.ldap, &cfg.tls, &cfg.data_dir) {
            Ok(t) => Some(t),
            Err(e) => {
                node.shutdown().await;
                return Err(e);
            }
        }
    } else {
        None
    };
    let invalidation = edge.spawn_invalidation();
    let upkeep = {
        let metrics = edge.metrics.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                metrics.upkeep();
            }
        })
    };
    let pruning = spawn_pruning(edge.clone());
    let http = HttpSettings {
        tls,
        max_connections: cfg.http.max_connections,
        max_connections_per_address: cfg.http.max_connections_per_address,
        header_timeout: Duration::from_secs(cfg.http.header_timeout_secs),
        idle_timeout: Duration::from_secs(cfg.http.idle_timeout_secs),
        body_timeout: Duration::from_secs(cfg.http.body_timeout_secs),
        shutdown_grace: Duration::from_secs(cfg.http.shutdown_grace_secs),
    };
    tracing::info!(
        node = cfg.node_id,
        addr = %cfg.http.addr,
        issuer = %cfg.issuer,
        tls = cfg.tls.enabled,
        data_dir = %cfg.data_dir.display(),
        "jeton serving"
    );
    let ldap = LdapSettings {
        tls: ldap_tls,
        starttls: cfg.ldap.starttls,
        require_confidentiality: cfg.ldap.require_confidentiality,
        suffix: cfg.ldap.suffix.clone(),
        max_connections: cfg.ldap.max_connections,
        max_connections_per_address: cfg.ldap.max_connections_per_address,
        max_message_bytes: cfg.ldap.max_message_bytes,
        read_timeout: Duration::from_secs(cfg.ldap.read_timeout_secs),
        write_timeout: Duration::from_secs(cfg.ldap.write_timeout_secs),
        tls_handshake_timeout: Duration::from_secs(cfg.ldap.tls_handshake_timeout_secs),
        size_limit: cfg.ldap.size_limit,
        time_limit: Duration::from_secs(cfg.ldap.time_limit_secs),
        shutdown_grace: Duration::from_secs(cfg.ldap.shutdown_grace_secs),
    };
    if let Some(l) = &ldap_listener {
        tracing::info!(addr = %l.local_addr()?, starttls = ldap.tls.is_some() && ldap.starttls, "LDAP serving");
    }
    if let Some(l) = &ldaps_listener {
        tracing::info!(addr = %l.local_addr()?, "LDAPS serving");
    }
    // One shutdown signal for every listener.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let when_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ldap_serving = (ldap_listener.is_some() || ldaps_listener.is_some()).then(|| {
        tokio::spawn(jeton_edge::ldap::serve(
            edge.clone(),
            ldap_listener,
            ldaps_listener,
            ldap,
            when_stopped(stopped.clone()),
        ))
    });
    for (socket, what) in [(&radius_socket, "RADIUS"), (&radius_acct_socket, "RADIUS accounting")] {
        if let Some(s) = socket {
            tracing::info!(addr = %s.local_addr()?, clients = radius.clients.len(), "{what} serving");
        }
    }
    let radsec = match radsec_listener {
        Some(listener) => {
            let tls = tls::radsec_server_config(&cfg.radius, &cfg.tls, &cfg.data_dir)?;
            tracing::info!(addr = %listener.local_addr()?, "RadSec serving");
            let settings = jeton_edge::radius::radsec::RadSecSettings {
                tls,
                organization: cfg.radius.radsec_organization.clone(),
                max_connections: cfg.radius.radsec_max_connections,
                idle_timeout: Duration::from_secs(cfg.radius.radsec_idle_timeout_secs),
            };
            Some((listener, settings))
        }
        None => None,
    };
    let radius_serving = (radius_socket.is_some() || radius_acct_socket.is_some() || radsec.is_some()).then(|| {
        tokio::spawn(jeton_edge::radius::serve(
            edge.clone(),
            radius_socket,
            radius_acct_socket,
            radsec,
            radius,
            when_stopped(stopped.clone()),
        ))
    });
    jeton_edge::http::serve(edge.clone(), listener, http, when_stopped(stopped)).await;
    if let Some(ldap) = ldap_serving {
        let _ = ldap.await;
    }
    if let Some(radius) = radius_serving {
        let _ = radius.await;
    }
    signal.abort();
    pruning.abort();
    upkeep.abort();
    invalidation.abort();
    node.shutdown().await;
    tracing::info!("jeton stopped");
    Ok(())
}

/// Everything between a started Raft node and serving: the key-encryption key, the first-start
/// administrators (or the warning that `JETON_ADMIN_*` are ignored), metrics and the edge service. On an
/// error the caller stops the node.
/// Binds a listener; a taken or impossible address is an error naming it (`what`: which listener).
async fn bind_listener(addr: &str, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| bind_error(addr, what, e))
}

fn bind_error(addr: &str, what: &str, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            anyhow::anyhow!("cannot listen on {addr}{what}: the address is already in use (is another jeton running?)")
        }
        _ => anyhow::anyhow!("cannot listen on {addr}{what}: {e}"),
    }
}

/// Binds a UDP socket, or none for an empty address; errors as [`bind_listener`]'s.
async fn bind_udp(addr: &str, what: &str) -> anyhow::Result<Option<tokio::net::UdpSocket>> {
    if addr.is_empty() {
        return Ok(None);
    }
    tokio::net::UdpSocket::bind(addr).await.map(Some).map_err(|e| bind_error(addr, what, e))
}

async fn prepare_edge(
    cfg: &Config,
    node: &ReplicaNode,
    local_kek: Option<String>,
    kek_path: &std::path::Path,
    joined: bool,
    admin_env: &bootstrap::AdminEnv,
) -> anyhow::Result<Arc<Edge>> {
    let kek_hex = match (local_kek, node.received_secret.clone()) {
        (Some(local), Some(cluster)) if local != cluster.trim() => anyhow::bail!(
            "this node's key-encryption key ({}) differs from the cluster's: it could not use the cluster's signing keys",
            kek_path.display()
        ),
        (Some(local), _) => local,
        (None, Some(cluster)) => {
            jeton_edge::keys::write_private_file(kek_path, cluster.trim().as_bytes())?;
            node.set_join_secret(cluster.trim());
            cluster.trim().to_string()
        }
        (None, None) => {
            anyhow::bail!("no key-encryption key: the cluster shared none; set JETON_KEK or security.kek_file")
        }
    };
    let kek = Kek::from_hex(&kek_hex)?;
    let (org, app) = (&cfg.security.admin_org, &cfg.security.admin_app);
    let created = match joined {
        // A joining node receives the state; the cluster was bootstrapped where it started.
        true => None,
        false => bootstrap::bootstrap(node, &kek, org, app, admin_env).await?,
    };
    match created {
        Some(created) => {
            // Printed once, to the terminal, never to the log.
            println!("jeton: first start — created organization {org:?}, user {org}/admin and application {app:?}");
            if let Some(p) = &created.admin_password {
                println!("  admin password:      {p}");
            }
            println!("  admin client_id:     {}", created.client_id);
            if let Some(s) = &created.client_secret {
                println!("  admin client_secret: {s}");
            }
            println!("  (shown only now; set JETON_ADMIN_PASSWORD / JETON_ADMIN_CLIENT_ID / JETON_ADMIN_CLIENT_SECRET to choose them)");
        }
        None => bootstrap::warn_if_ignored(node, org, app, admin_env).await?,
    }
    let metrics = Metrics::install().map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    let edge_cfg = EdgeConfig {
        issuer: cfg.issuer.clone(),
        admin_org: cfg.security.admin_org.clone(),
        admin_app: cfg.security.admin_app.clone(),
        max_body_bytes: cfg.http.max_body_bytes,
        introspection_cache_entries: cfg.security.introspection_cache_entries,
        passwords: jeton_edge::passwords::PasswordConfig {
            check_concurrency: cfg.security.password_check_concurrency,
            memory_budget_kib: cfg.security.password_memory_budget_mib.saturating_mul(1024),
            failure_floor: Duration::from_millis(cfg.security.password_failure_floor_ms),
            ip_failure_limit: cfg.security.ip_failure_limit,
            ip_failure_window: Duration::from_secs(cfg.security.ip_failure_window_secs),
            nt_hash_organizations: cfg.radius.nt_hash_organizations.clone(),
        },
        sessions: jeton_edge::sessions::SessionSettings {
            lifetime_secs: cfg.sessions.lifetime_secs.max(60),
            idle_secs: cfg.sessions.idle_secs.max(0),
            code_lifetime_secs: cfg.sessions.code_lifetime_secs.clamp(1, 600),
            // Cookies are `Secure` when browsers reach the node over https (the issuer says how).
            secure_cookies: cfg.issuer.starts_with("https://"),
        },
        device: jeton_edge::oauth::device::DeviceSettings {
            code_lifetime_secs: cfg.device.code_lifetime_secs.max(1),
            interval_secs: cfg.device.interval_secs.max(1),
        },
    };
    Ok(Edge::new(node.clone(), kek, edge_cfg, metrics)?)
}

async fn cluster(command: ClusterCommand) -> anyhow::Result<()> {
    use serde_json::json;
    match command {
        ClusterCommand::Ca { out } => cluster_cli::make_ca(&out),
        ClusterCommand::Cert { ca_dir, name, node_id, hosts, out } => {
            cluster_cli::make_cert(&ca_dir, &name, node_id, &hosts, &out)
        }
        ClusterCommand::Admit { node, id, ttl_hours } => {
            cluster_cli::admin_call(&node, "cluster-admit", Some(json!({"id": id, "ttlHours": ttl_hours}))).await
        }
        ClusterCommand::Status { node, linearizable } => {
            let path = if linearizable { "get-cluster-status?consistency=linearizable" } else { "get-cluster-status" };
            cluster_cli::admin_call(&node, path, None).await
        }
        ClusterCommand::AddLearner { node, id, addr } => {
            eprintln!(
                "adding node {id} ({addr}) as a learner and waiting until it has caught up (at most the leader's \
                 raft.catch_up_timeout_secs; the leader logs its progress)"
            );
            cluster_cli::admin_call(&node, "cluster-add-learner", Some(json!({"id": id, "addr": addr}))).await
        }
        ClusterCommand::Promote { node, id, force } => {
            cluster_cli::admin_call(&node, "cluster-promote", Some(json!({"id": id, "force": force}))).await
        }
        ClusterCommand::Remove { node, id } => {
            cluster_cli::admin_call(&node, "cluster-remove", Some(json!({"id": id}))).await
        }
    }
}

/// How long a RADIUS accounting session is kept after its latest event (its Stop, or the last update of a
/// session whose Stop never came).
const ACCOUNTING_RETENTION_SECS: i64 = 90 * 24 * 3600;
/// Most accounting sessions one pruning round removes, so that one log entry stays small; rounds run every
/// five minutes, which removes up to about 2.9 million sessions a day.
const ACCOUNTING_PRUNE_LIMIT: u32 = 10_000;

/// Periodically drops expired revocations, refresh tokens and retired keys, and accounting sessions past
/// their retention (on the leader only).
fn spawn_pruning(edge: Arc<Edge>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        tick.tick().await;
        loop {
            tick.tick().await;
            if edge.node.leader() != Some(edge.node.id) || edge.node.is_removed() {
                continue;
            }
            let now = jeton_edge::clock::now();
            if let Err(e) = edge.write(Command::Prune { now }).await {
                tracing::warn!("pruning expired records: {e}");
            }
            let before = now.saturating_sub(ACCOUNTING_RETENTION_SECS);
            if let Err(e) = edge.write(Command::PruneAccounting { before, limit: ACCOUNTING_PRUNE_LIMIT }).await {
                tracing::warn!("pruning accounting sessions: {e}");
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
