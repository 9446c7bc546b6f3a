//! Casdoor's own SDKs against a node, as a Casdoor user would run them: the Python SDK (PyPI `casdoor`) and
//! the Node SDK (npm `casdoor-nodejs-sdk`). Each script in `tests/e2e/sdk/` calls every SDK method whose
//! endpoint Jeton serves and checks the results; it exits non-zero at the first failed check, and the test
//! fails with its output. `tests/e2e/sdk/install.sh` installs both (`.ci/run` runs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/sdk")
}

/// Runs `program script` with the node's address and the admin application's credentials; panics with
/// the script's output unless it succeeds.
fn run_script(node: &Node, program: &Path, script: &Path, org: &str) -> String {
    let out = Command::new(program)
        .arg(script)
        .current_dir(script.parent().unwrap_or(Path::new(".")))
        .env("JETON_URL", &node.base)
        .env("JETON_ADMIN_CLIENT_ID", ADMIN_CLIENT_ID)
        .env("JETON_ADMIN_CLIENT_SECRET", ADMIN_CLIENT_SECRET)
        .env("JETON_SDK_ORG", org)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{text}\nnode log:\n{}",
        script.display(),
        out.status,
        node.output()
    );
    text
}

fn missing(what: &str, path: &Path) -> ! {
    panic!(
        "{what} is not installed ({} is missing): run `bash tests/e2e/sdk/install.sh` (.ci/run does)",
        path.display()
    )
}

#[tokio::test]
async fn casdoor_python_sdk_works_unchanged() {
    let python = sdk_dir().join(".venv/bin/python");
    if !python.exists() {
        missing("Casdoor's Python SDK", &python);
    }
    let node = Node::start().await;
    let out = run_script(&node, &python, &sdk_dir().join("python/run_sdk.py"), "sdk-py");
    assert!(out.contains("python sdk: all checks passed"), "{out}");
    // The SDK sent the admin secret in every query string: none of it reached the log.
    assert!(!node.output().contains(ADMIN_CLIENT_SECRET), "the admin secret is in the log");
}

#[tokio::test]
async fn casdoor_node_sdk_works_unchanged() {
    let module = sdk_dir().join("node/node_modules/casdoor-nodejs-sdk/package.json");
    if !module.exists() {
        missing("Casdoor's Node SDK", &module);
    }
    let node = Node::start().await;
    let out = run_script(&node, Path::new("node"), &sdk_dir().join("node/run_sdk.js"), "sdk-node");
    assert!(out.contains("node sdk: all checks passed"), "{out}");
}
