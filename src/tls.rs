//! TLS for the HTTP and LDAP listeners (rustls with the aws-lc-rs provider).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{LdapConfig, RadiusConfig, TlsConfig};

/// Builds the HTTP server config from configured files, or from a self-signed certificate kept in the data
/// dir.
pub fn server_config(tls: &TlsConfig, data_dir: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut cfg = certified(&tls.cert, &tls.key, data_dir, None)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The config of LDAPS and StartTLS: `[ldap]` cert and key, else `[tls]`'s, else the self-signed ones.
pub fn ldap_server_config(
    ldap: &LdapConfig,
    tls: &TlsConfig,
    data_dir: &Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (cert, key) = if !ldap.cert.is_empty() { (&ldap.cert, &ldap.key) } else { (&tls.cert, &tls.key) };
    Ok(Arc::new(certified(cert, key, data_dir, None)?))
}

/// The RadSec server's TLS: the `[radius]` certificate, else the `[tls]` one, else the self-signed one;
/// client certificates required, chaining to `radsec_ca` (RFC 6614 §2.3).
pub fn radsec_server_config(
    radius: &RadiusConfig,
    tls: &TlsConfig,
    data_dir: &Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (cert, key) =
        if !radius.radsec_cert.is_empty() { (&radius.radsec_cert, &radius.radsec_key) } else { (&tls.cert, &tls.key) };
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&radius.radsec_ca)
        .with_context(|| format!("cannot read radius.radsec_ca {}", radius.radsec_ca))?
    {
        let ca = ca.with_context(|| format!("invalid PEM in {}", radius.radsec_ca))?;
        roots.add(ca).with_context(|| format!("unusable CA certificate in {}", radius.radsec_ca))?;
    }
    if roots.is_empty() {
        bail!("no CA certificate in radius.radsec_ca {}", radius.radsec_ca);
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .context("radius.radsec_ca cannot verify client certificates")?;
    Ok(Arc::new(certified(cert, key, data_dir, Some(verifier))?))
}

/// A server config with the certificate in `cert`/`key`, or (both empty) the self-signed one kept in the
/// data dir, made on first use.
fn certified(
    cert: &str,
    key: &str,
    data_dir: &Path,
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> anyhow::Result<rustls::ServerConfig> {
    let (cert_path, key_path) = if !cert.is_empty() {
        (Path::new(cert).to_path_buf(), Path::new(key).to_path_buf())
    } else {
        let (c, k) = (data_dir.join("tls-cert.pem"), data_dir.join("tls-key.pem"));
        if !c.exists() || !k.exists() {
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])
                .context("generating a self-signed certificate")?;
            std::fs::write(&c, cert.cert.pem()).with_context(|| format!("writing {}", c.display()))?;
            jeton_edge::keys::write_private_file(&k, cert.signing_key.serialize_pem().as_bytes())?;
            tracing::info!(cert = %c.display(), "generated a self-signed TLS certificate for localhost");
        }
        (c, k)
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("cannot read TLS certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid PEM in {}", cert_path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("cannot read TLS key {}", key_path.display()))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(certs, key).context("the TLS certificate and key do not match")
}
