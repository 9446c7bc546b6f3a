//! `jeton cluster …`: certificates for node-to-node TLS, join tokens, and membership changes through a
//! node's admin API.

use std::path::Path;

use anyhow::{bail, Context};
use jeton_raft::admission::{Bootstrap, JoinToken};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The bootstrap file in a CA dir (see [`Bootstrap`]).
const BOOTSTRAP: &str = "bootstrap.json";

/// The CA's subject. Node certificates name it as their issuer; which CA it is comes from its key.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Jeton");
    dn.push(DnType::CommonName, "Jeton cluster CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    Ok(params)
}

/// `jeton cluster ca --out DIR`: `DIR/ca.pem`, `DIR/ca-key.pem` and `DIR/bootstrap.json` (a new cluster name).
pub fn make_ca(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (cert_path, key_path) = (out.join("ca.pem"), out.join("ca-key.pem"));
    if cert_path.exists() || key_path.exists() {
        bail!("{} already holds a CA; refusing to replace it (every node certificate depends on it)", out.display());
    }
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    std::fs::write(&cert_path, cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
    jeton_edge::keys::write_private_file(&key_path, key.serialize_pem().as_bytes())?;
    let bootstrap = Bootstrap::new();
    write_bootstrap(&out.join(BOOTSTRAP), &bootstrap)?;
    println!("cluster CA: {} (key {}; keep the key off the nodes)", cert_path.display(), key_path.display());
    println!("bootstrap file of the new cluster {}: {}", bootstrap.cluster, out.join(BOOTSTRAP).display());
    Ok(())
}

fn write_bootstrap(path: &Path, bootstrap: &Bootstrap) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(bootstrap)?;
    json.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Reads a bootstrap file (`cluster.bootstrap`).
pub fn read_bootstrap(path: &Path) -> anyhow::Result<Bootstrap> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the bootstrap file {}", path.display()))?;
    Bootstrap::parse(&bytes).map_err(|e| anyhow::anyhow!("bootstrap file {}: {e}", path.display()))
}

/// The join token of the config (`cluster.join_token`, `--join-token`/`JETON_JOIN_TOKEN`, or the file
/// `cluster.join_token_file`), if any.
pub fn join_token(cluster: &crate::config::ClusterConfig) -> anyhow::Result<Option<JoinToken>> {
    let text = if !cluster.join_token.is_empty() {
        cluster.join_token.clone()
    } else if !cluster.join_token_file.is_empty() {
        std::fs::read_to_string(&cluster.join_token_file)
            .with_context(|| format!("cannot read the join token file {}", cluster.join_token_file))?
    } else {
        return Ok(None);
    };
    JoinToken::parse(&text).map(Some).map_err(|e| anyhow::anyhow!("join token: {e}"))
}

/// `jeton cluster cert --ca-dir DIR --name NAME --node-id N --host H… --out DIR`: `NAME.pem` and `NAME-key.pem`,
/// valid as server and client certificate for the given host names and IP addresses and naming node N
/// (a `jeton:node:N` URI); and `NAME.join`, node N's join token for the first start of a new cluster, whose
/// digest goes into `DIR/bootstrap.json`.
pub fn make_cert(ca_dir: &Path, name: &str, node_id: u64, hosts: &[String], out: &Path) -> anyhow::Result<()> {
    if node_id == 0 {
        bail!("--node-id: node ids start at 1");
    }
    if hosts.is_empty() {
        bail!("give at least one --host: the names and addresses peers use to reach this node");
    }
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("--name must be a plain file name");
    }
    let ca_key_path = ca_dir.join("ca-key.pem");
    let ca_key_pem =
        std::fs::read_to_string(&ca_key_path).with_context(|| format!("cannot read {}", ca_key_path.display()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).with_context(|| format!("{} is not a key", ca_key_path.display()))?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut params = CertificateParams::new(hosts.to_vec())?;
    let node_uri = format!("{}{node_id}", jeton_raft::network::NODE_URI_PREFIX);
    params.subject_alt_names.push(SanType::URI(node_uri.try_into()?));
    params.distinguished_name.push(DnType::OrganizationName, "Jeton");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (cert_path, key_path) = (out.join(format!("{name}.pem")), out.join(format!("{name}-key.pem")));
    std::fs::write(&cert_path, cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
    jeton_edge::keys::write_private_file(&key_path, key.serialize_pem().as_bytes())?;
    println!("node certificate of node {node_id}: {} (key {})", cert_path.display(), key_path.display());

    // The join token for a new cluster's first start. A CA dir of an earlier version has no bootstrap file:
    // start one.
    let bootstrap_path = ca_dir.join(BOOTSTRAP);
    let mut bootstrap = if bootstrap_path.exists() { read_bootstrap(&bootstrap_path)? } else { Bootstrap::new() };
    let token = JoinToken::generate(&bootstrap.cluster, node_id).map_err(|e| anyhow::anyhow!(e))?;
    bootstrap.admit(&token);
    let token_path = out.join(format!("{name}.join"));
    // A token of an earlier certificate of this name is replaced (its admission is replaced too).
    match std::fs::remove_file(&token_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            bail!("cannot replace {}: {e}", token_path.display())
        }
        _ => {}
    }
    jeton_edge::keys::write_private_file(&token_path, format!("{}\n", token.expose()).as_bytes())?;
    write_bootstrap(&bootstrap_path, &bootstrap)?;
    println!(
        "join token of node {node_id}: {} (admitted by {} when it creates cluster {})",
        token_path.display(),
        bootstrap_path.display(),
        bootstrap.cluster
    );
    Ok(())
}

/// Where a `cluster` sub-command reaches a node's admin API, and which certificate it trusts there.
#[derive(clap::Args, Debug)]
pub struct NodeApi {
    /// The node's HTTP URL.
    #[arg(long, env = "JETON_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// For an https URL: trust only this certificate (PEM) — the CA that signed the node's certificate,
    /// or the node's own self-signed certificate (tls-cert.pem in its data dir). Without it, the
    /// system's trusted CAs.
    #[arg(long, env = "JETON_CACERT", value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
}

/// A membership operation or status query through a node's admin API.
pub async fn admin_call(node: &NodeApi, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(id), Some(secret)) = (env("JETON_ADMIN_CLIENT_ID"), env("JETON_ADMIN_CLIENT_SECRET")) else {
        bail!("set JETON_ADMIN_CLIENT_ID and JETON_ADMIN_CLIENT_SECRET (the admin application's credentials)");
    };
    let mut client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(620));
    if let Some(path) = &node.cacert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read --cacert {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .with_context(|| format!("--cacert {}: no PEM certificate in it", path.display()))?;
        client = client.tls_certs_only(certs);
    }
    let client = client.build().context("cannot set up the HTTP client")?;
    let url = format!("{}/api/{path}", node.url.trim_end_matches('/'));
    let req = match body {
        Some(b) => client.post(&url).json(&b),
        None => client.get(&url),
    };
    let resp = match req.basic_auth(id, Some(secret)).send().await {
        Ok(r) => r,
        Err(e) => bail!("{}", unreachable(&node.url, node.cacert.is_some(), &e)),
    };
    let status = resp.status();
    let answer: serde_json::Value = resp.json().await.with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() || answer.get("status").and_then(|s| s.as_str()) != Some("ok") {
        bail!("{}: {}", status, answer.get("msg").and_then(|m| m.as_str()).unwrap_or("refused"));
    }
    println!("{}", serde_json::to_string_pretty(answer.get("data").unwrap_or(&serde_json::Value::Null))?);
    Ok(())
}

/// Why a node could not be reached, in one line: each cause in the error's chain once (reqwest repeats
/// the URL and the innermost cause on several levels), and what to do about a certificate it does not
/// trust.
fn unreachable(url: &str, has_cacert: bool, e: &reqwest::Error) -> String {
    let mut causes: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        // reqwest's and hyper's own levels only say "sending" and "connecting" around the cause.
        let wrapper = text.starts_with("error sending request") || text.starts_with("client error (");
        if !wrapper && !causes.iter().any(|c| c.contains(&text)) {
            causes.retain(|c| !text.contains(c.as_str()));
            causes.push(text);
        }
        next = err.source();
    }
    let chain = if causes.is_empty() { e.to_string() } else { causes.join(": ") };
    let mut line = format!("cannot reach {url}: {chain}");
    if chain.contains("certificate") {
        line.push_str(if has_cacert {
            " (the node's certificate is not signed by --cacert, or does not name this host)"
        } else {
            " (give --cacert FILE: the CA that signed the node's certificate, or the node's own self-signed \
             certificate, tls-cert.pem in its data dir)"
        });
    }
    line
}
