//! Installing a snapshot as a follower does when the leader sends one: peak memory and time.
//!
//! ```text
//! snapinstall --from DATA_DIR [--into DIR] [--cache-mb 64]
//! ```
//! `DATA_DIR` is a node's data dir holding a snapshot (`startup populate --snapshot` makes one of 1,000,000
//! users). A fresh state machine (a new sled database in `DIR`, default a temporary dir, with the page cache
//! of a node) receives the snapshot file the way a follower does (`begin_receiving_snapshot`, the bytes in
//! 1 MiB chunks) and installs it (`install_snapshot`). Printed as `key=value` lines: the process's resident
//! memory (VmRSS) and peak (VmHWM) before and after the install, the time the install took, the records
//! the state then holds. Run it once per process: the peak is the process's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use jeton_raft::storage::StateMachine;
use jeton_raft::{Node, NodeId, Store};
use openraft::storage::RaftStateMachine;
use openraft::SnapshotMeta;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let Some(from) = value("--from") else {
        eprintln!("usage: snapinstall --from DATA_DIR [--into DIR] [--cache-mb 64]");
        return ExitCode::FAILURE;
    };
    let cache_mb: u64 = match value("--cache-mb").map(|v| v.parse()) {
        None => 64,
        Some(Ok(v)) => v,
        Some(Err(_)) => {
            eprintln!("--cache-mb: not a number");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("snapinstall: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Path::new(&from), value("--into").map(PathBuf::from), cache_mb)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snapinstall: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(from: &Path, into: Option<PathBuf>, cache_mb: u64) -> Result<(), String> {
    let meta_path = from.join("snapshots/current.json");
    let meta: SnapshotMeta<NodeId, Node> =
        serde_json::from_slice(&std::fs::read(&meta_path).map_err(|e| format!("{}: {e}", meta_path.display()))?)
            .map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let data_path = from.join(format!("snapshots/{}.snap", meta.snapshot_id));
    let size = std::fs::metadata(&data_path).map_err(|e| format!("{}: {e}", data_path.display()))?.len();
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = into.unwrap_or_else(|| tmp.path().to_path_buf());
    let db = sled::Config::new()
        .path(dir.join("db"))
        .cache_capacity(cache_mb << 20)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| e.to_string())?;
    let store = Store::open(&db).map_err(|e| e.to_string())?;
    let mut sm = StateMachine::open(&db, store.clone(), dir.join("snapshots")).map_err(|e| e.to_string())?;
    println!("snapshot_bytes={size}");
    let (rss, hwm) = jeton_bench::memory_kib(None);
    println!("before_rss_kib={rss}");
    println!("before_hwm_kib={hwm}");

    let started = Instant::now();
    let mut incoming = sm.begin_receiving_snapshot().await.map_err(|e| e.to_string())?;
    let mut source = tokio::fs::File::open(&data_path).await.map_err(|e| e.to_string())?;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = tokio::io::AsyncReadExt::read(&mut source, &mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        tokio::io::AsyncWriteExt::write_all(&mut incoming, &chunk[..n]).await.map_err(|e| e.to_string())?;
    }
    let received = started.elapsed();
    sm.install_snapshot(&meta, incoming).await.map_err(|e| e.to_string())?;
    let installed = started.elapsed();
    let (rss, hwm) = jeton_bench::memory_kib(None);
    println!("receive_seconds={:.1}", received.as_secs_f64());
    println!("install_seconds={:.1}", (installed - received).as_secs_f64());
    println!("after_rss_kib={rss}");
    println!("peak_hwm_kib={hwm}");
    let users = store.count(jeton_raft::store::key::USER);
    println!("users={users}");
    eprintln!(
        "installed a {:.0} MB snapshot ({users} users) in {:.1} s (received in {:.1} s); peak RSS {:.0} MiB, RSS after {:.0} MiB",
        size as f64 / 1e6,
        (installed - received).as_secs_f64(),
        received.as_secs_f64(),
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    drop(sm);
    drop(store);
    let _ = db.flush();
    Ok(())
}
