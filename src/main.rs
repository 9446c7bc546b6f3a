//! `jeton`: the node binary. CLI, configuration, wiring a node together, shutdown.

mod bootstrap;
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
use jeton_edge::metrics::Metrics;
use jeton_edge::{Edge, EdgeConfig};
use jeton_raft::node::RaftSettings;
use jeton_raft::{Command, ReplicaNode};

use crate::config::{Config, Overrides};

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
        /// This node's Raft id.
        #[arg(long, env = "JETON_NODE_ID")]
        node_id: Option<u64>,
        /// Token issuer URL.
        #[arg(long, env = "JETON_ISSUER")]
        issuer: Option<String>,
        /// Address peers reach this node at.
        #[arg(long, env = "JETON_RAFT_ADDR")]
        raft_addr: Option<String>,
    },
    /// Import another identity server's state (Casdoor).
    Import {
        #[command(subcommand)]
        source: import::ImportSource,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JETON_LOG")
                .unwrap_or_else(|_| "info,openraft=warn,sled=warn".into()),
        )
        .with_writer(std::io::stderr)
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
            Commands::Serve { config, data_dir, http_addr, node_id, issuer, raft_addr } => {
                let cfg =
                    Config::load(config.as_deref(), Overrides { data_dir, http_addr, node_id, issuer, raft_addr })?;
                serve(cfg).await
            }
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
    // Bind first: a taken port is reported before anything is written to the data dir.
    let listener = tokio::net::TcpListener::bind(&cfg.http.addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "cannot listen on {}: the address is already in use (is another jeton running?)",
            cfg.http.addr
        ),
        _ => anyhow::anyhow!("cannot listen on {}: {e}", cfg.http.addr),
    })?;
    let tls = if cfg.tls.enabled {
        std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
        Some(tls::server_config(&cfg.tls, &cfg.data_dir)?)
    } else {
        None
    };
    let settings = RaftSettings {
        snapshot_every: cfg.raft.snapshot_every,
        heartbeat_ms: cfg.raft.heartbeat_ms,
        election_timeout_ms: (cfg.raft.election_timeout_min_ms, cfg.raft.election_timeout_max_ms),
        storage_cache_bytes: cfg.raft.storage_cache_mb << 20,
    };
    let node = ReplicaNode::start(&cfg.data_dir, cfg.node_id, &cfg.raft.addr, &settings).await?;
    let kek = match std::env::var("JETON_KEK").ok().filter(|k| !k.is_empty()) {
        Some(hex_key) => Kek::from_hex(&hex_key)?,
        None => Kek::load_or_create(&cfg.kek_path())?,
    };
    if let Some(created) = bootstrap::bootstrap(&node, &kek, &cfg.security.admin_org, &cfg.security.admin_app).await? {
        // Printed once, to the terminal, never to the log.
        println!(
            "jeton: first start — created organization {:?}, user {}/admin and application {:?}",
            cfg.security.admin_org, cfg.security.admin_org, cfg.security.admin_app
        );
        if let Some(p) = &created.admin_password {
            println!("  admin password:      {p}");
        }
        println!("  admin client_id:     {}", created.client_id);
        if let Some(s) = &created.client_secret {
            println!("  admin client_secret: {s}");
        }
        println!("  (shown only now; set JETON_ADMIN_PASSWORD / JETON_ADMIN_CLIENT_ID / JETON_ADMIN_CLIENT_SECRET to choose them)");
    }
    let metrics = Metrics::install().map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    let edge_cfg = EdgeConfig {
        issuer: cfg.issuer.clone(),
        admin_org: cfg.security.admin_org.clone(),
        admin_app: cfg.security.admin_app.clone(),
        max_body_bytes: cfg.http.max_body_bytes,
        introspection_cache_entries: cfg.security.introspection_cache_entries,
        password_check_concurrency: cfg.security.password_check_concurrency,
        ip_failure_limit: cfg.security.ip_failure_limit,
        ip_failure_window: Duration::from_secs(cfg.security.ip_failure_window_secs),
    };
    let edge = Edge::new(node.clone(), kek, edge_cfg, metrics)?;
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
        header_timeout: Duration::from_secs(cfg.http.header_timeout_secs),
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
    jeton_edge::http::serve(edge.clone(), listener, http, shutdown_signal()).await;
    pruning.abort();
    upkeep.abort();
    invalidation.abort();
    node.shutdown().await;
    tracing::info!("jeton stopped");
    Ok(())
}

/// Periodically drops expired revocations, refresh tokens and retired keys (on the leader only).
fn spawn_pruning(edge: Arc<Edge>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        tick.tick().await;
        loop {
            tick.tick().await;
            if edge.node.leader() != Some(edge.node.id) {
                continue;
            }
            if let Err(e) = edge.write(Command::Prune { now: jeton_edge::service::now() }).await {
                tracing::warn!("pruning expired records: {e}");
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
