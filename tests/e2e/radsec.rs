//! RadSec (RADIUS over TLS, RFC 6614) against a running node, driven by tests/e2e/radsec/client.py: a
//! client written from the RFCs with Python's ssl/hmac/hashlib, none of Jeton's code. Client certificates
//! are made here with rcgen: one signed by the CA the node is configured with, one self-signed.

use std::process::Command;

use serde_json::Value;

use crate::harness::{free_port, Node, ADMIN_PASSWORD};

/// A CA, a client certificate it signed, and a self-signed one, written into `dir`.
fn certificates(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "NAS CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut nas = CertificateParams::new(vec!["nas1.example".to_string()]).unwrap();
    nas.distinguished_name.push(DnType::CommonName, "nas1");
    nas.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    std::fs::write(dir.join("nas.pem"), nas.signed_by(&key, &issuer).unwrap().pem()).unwrap();
    std::fs::write(dir.join("nas-key.pem"), key.serialize_pem()).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["nas1.example".to_string()]).unwrap();
    std::fs::write(dir.join("other.pem"), other.cert.pem()).unwrap();
    std::fs::write(dir.join("other-key.pem"), other.signing_key.serialize_pem()).unwrap();
}

/// Runs the client; one JSON value per line it printed.
fn client(port: u16, server_ca: &std::path::Path, cert: &str, key: &str, requests: &[&str]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/radsec/client.py");
    let out = Command::new("timeout")
        .args(["30", "python3", script, &port.to_string()])
        .arg(server_ca)
        .args([cert, key])
        .args(requests)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn radsec_requires_a_client_certificate_of_the_configured_ca() {
    let tmp = tempfile::tempdir().unwrap();
    certificates(tmp.path());
    let port = free_port();
    let config = tmp.path().join("jeton.toml");
    std::fs::write(
        &config,
        format!(
            "[radius]\nradsec_addr = \"127.0.0.1:{port}\"\nradsec_ca = \"{}\"\nradsec_organization = \"built-in\"\n",
            tmp.path().join("ca.pem").display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let node = Node::start_in(&data, free_port(), &["--config", &config.to_string_lossy()]).await;
    // The server presents the node's self-signed certificate (no [tls] or radsec_cert configured).
    let server_ca = data.join("tls-cert.pem");
    let path = |f: &str| tmp.path().join(f).to_string_lossy().into_owned();

    let good = format!("admin:{ADMIN_PASSWORD}:");
    let replies =
        client(port, &server_ca, &path("nas.pem"), &path("nas-key.pem"), &[&good, "admin:wrong:", "nobody:x:"]);
    let code_for = |what: &str| {
        let r = replies.iter().find(|r| r["for"] == what).unwrap_or_else(|| panic!("no reply for {what}: {replies:?}"));
        assert_eq!(r["response_ok"], true, "{r}");
        assert_eq!(r["ma_ok"], true, "every reply carries a valid Message-Authenticator: {r}");
        r["code"].as_u64().unwrap()
    };
    assert_eq!(code_for("status"), 2, "Status-Server: Access-Accept");
    assert_eq!(replies.len(), 4, "{replies:?}");
    let codes: Vec<u64> = replies.iter().filter(|r| r["for"] == "admin").map(|r| r["code"].as_u64().unwrap()).collect();
    assert!(
        codes.contains(&2) && codes.contains(&3),
        "the right password accepted, the wrong one rejected: {replies:?}"
    );
    assert_eq!(code_for("nobody"), 3);

    for (cert, key) in [("other.pem", "other-key.pem"), ("-", "-")] {
        let (cert, key) = if cert == "-" { ("-".into(), "-".into()) } else { (path(cert), path(key)) };
        let replies = client(port, &server_ca, &cert, &key, &[&good]);
        assert!(
            replies.iter().all(|r| r.get("code").is_none()),
            "no answer without a certificate of the configured CA ({cert}): {replies:?}"
        );
    }

    let metrics = node.http.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("jeton_radius_requests_total{nas=\"radsec\",outcome=\"accept\"}")
                && !l.ends_with(" 0")),
        "RadSec requests counted under nas=radsec"
    );
}
