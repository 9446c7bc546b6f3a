//! The HTTP front end under misuse: too many parameters, an unauthenticated import with a huge body, idle
//! HTTP/1 and HTTP/2 connections, and one address opening too many connections. Raw sockets (TCP, rustls,
//! hyper's client connections), so that what the server does with the connection itself can be seen.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::harness::*;

/// How long a test waits for something the server must do by itself (close a connection, answer). Only a
/// bound for a failing test; the server's own timeouts in these tests are 2 s or far longer than this.
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn more_parameters_than_the_cap_get_invalid_request() {
    let node = Node::start().await;
    let mut form: Vec<(String, String)> = vec![("grant_type".into(), "client_credentials".into())];
    form.extend((0..63).map(|i| (format!("extra{i}"), "x".to_string())));
    let (s, v) = node.post_form_basic("/oauth/token", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &pairs(&form)).await;
    assert_eq!(s, 200, "64 parameters are within the cap: {v}");
    form.push(("one_more".into(), "x".into()));
    let (s, v) = node.post_form_basic("/oauth/token", ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, &pairs(&form)).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "65 parameters: {v}");
    // The same in a query string, in a JSON body, and on introspection.
    let query: Vec<String> = (0..65).map(|i| format!("q{i}=1")).collect();
    let r = node
        .http
        .post(node.url(&format!("/oauth/introspect?{}", query.join("&"))))
        .basic_auth(ADMIN_CLIENT_ID, Some(ADMIN_CLIENT_SECRET))
        .form(&[("token", "x")])
        .send()
        .await
        .expect("request");
    let (s, v) = response(r).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "65 query parameters: {v}");
    let body: serde_json::Map<String, Value> = (0..65).map(|i| (format!("j{i}"), Value::from("1"))).collect();
    let r = node
        .http
        .post(node.url("/api/login/oauth/access_token"))
        .basic_auth(ADMIN_CLIENT_ID, Some(ADMIN_CLIENT_SECRET))
        .json(&body)
        .send()
        .await
        .expect("request");
    let (s, v) = response(r).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "65 JSON members: {v}");
}

fn pairs(form: &[(String, String)]) -> Vec<(&str, &str)> {
    form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Sends `head` (request line and headers) and a few body bytes, and reads what the server answers before
/// the rest of the announced body ever comes.
async fn answer_before_the_body(port: u16, head: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    tcp.write_all(head.as_bytes()).await.expect("send headers");
    tcp.write_all(br#"{"items":["#).await.expect("send a little body");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&got).contains("\r\n\r\n{") && got.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer while the body was still announced: the server waits for 200 MiB");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn unauthenticated_apply_is_refused_before_its_body_is_read() {
    // A body timeout far longer than the test waits: only an answer that does not wait for the body passes.
    let node = Node::start_configured("body_timeout_secs = 600", false).await;
    let big = 200u64 << 20;
    let head = |auth: &str| {
        format!(
            "POST /api/jeton/apply HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}Content-Length: {big}\r\n\r\n"
        )
    };
    let answer = answer_before_the_body(node.port, &head("")).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "no credentials: {answer}");
    let wrong =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{ADMIN_CLIENT_ID}:not-the-secret"));
    let answer = answer_before_the_body(node.port, &head(&format!("Authorization: Basic {wrong}\r\n"))).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "wrong secret: {answer}");
    // A valid client that is not the admin application: 403, also without reading the body.
    let (id, secret) = node.app_with_user("acme", "app-acme", serde_json::json!({}), "eve", "Eve-Password-1").await;
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{id}:{secret}"));
    let answer = answer_before_the_body(node.port, &head(&format!("Authorization: Basic {basic}\r\n"))).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "non-admin client: {answer}");
    // The Casdoor SDK's query credentials do not open Jeton's own import API.
    let r = node
        .http
        .post(node.url(&format!("/api/jeton/apply?clientId={ADMIN_CLIENT_ID}&clientSecret={ADMIN_CLIENT_SECRET}")))
        .json(&serde_json::json!({"items": [], "dryRun": true}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    // The administrator still imports.
    let (s, v) = node.admin_post("jeton/apply", serde_json::json!({"items": [], "dryRun": true})).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = node.get("/api/health").await;
    assert_eq!(s, 200);
}

/// Accepts the node's self-signed certificate (the tests talk to their own node on loopback).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls12_signature(message, cert, signature)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection to the node from `source` (any 127.x address: each is a different client address to
/// the server), offering `alpn`.
async fn tls_connect(port: u16, source: &str, alpn: &[u8]) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse::<IpAddr>().map_err(std::io::Error::other)?, 0))?;
    let tcp = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}

/// An HTTP/2 connection (ALPN h2) that has answered one request: its sender, and its driver task, which
/// ends when the connection does.
async fn h2_connection(
    port: u16,
    source: &str,
) -> std::io::Result<(hyper::client::conn::http2::SendRequest<Empty<Bytes>>, tokio::task::JoinHandle<()>)> {
    let tls = tls_connect(port, source, b"h2").await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the server negotiates HTTP/2");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(format!("https://localhost:{port}/api/health"))
        .body(Empty::<Bytes>::new())
        .map_err(std::io::Error::other)?;
    let resp = sender.send_request(req).await.map_err(std::io::Error::other)?;
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.map_err(std::io::Error::other)?;
    Ok((sender, driver))
}

#[tokio::test]
async fn idle_http2_and_http1_connections_are_closed() {
    // Headers may take long; a connection with nothing in progress may not.
    let node = Node::start_configured("idle_timeout_secs = 2\nheader_timeout_secs = 120", true).await;

    // HTTP/2: hyper's keep-alive only pings, so without an idle timer this connection stays forever.
    let (_sender, driver) = h2_connection(node.port, "127.0.0.1").await.expect("h2 connection");
    let ended = tokio::time::timeout(PATIENCE, driver).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection is still open");

    // HTTP/1.1 keep-alive over the same listener.
    let mut tls = tls_connect(node.port, "127.0.0.1", b"http/1.1").await.expect("tls");
    tls.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("send");
    let mut got = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed.is_ok(), "the idle HTTP/1.1 keep-alive connection is still open");

    // A connection in use is not cut: requests spread over more than the idle timeout, each within it.
    let (mut sender, driver) = h2_connection(node.port, "127.0.0.1").await.expect("h2 connection");
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let req = hyper::Request::get(format!("https://localhost:{}/api/health", node.port))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = sender.send_request(req).await.expect("the busy connection stays open");
        assert_eq!(resp.status(), 200);
    }
    drop(sender);
    driver.abort();
}

#[tokio::test]
async fn one_address_cannot_open_more_than_its_connection_limit() {
    let node = Node::start_configured("max_connections_per_address = 3", true).await;
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(h2_connection(node.port, "127.0.0.2").await.unwrap_or_else(|e| panic!("connection {i}: {e}")));
    }
    // The fourth from the same address is closed before the TLS handshake.
    let fourth = h2_connection(node.port, "127.0.0.2").await;
    assert!(fourth.is_err(), "a 4th connection from 127.0.0.2 was served");
    // Another address is not affected.
    let other = h2_connection(node.port, "127.0.0.3").await.expect("127.0.0.3 is within its own limit");
    drop(other);
    // Once one of the three ends, the address may connect again.
    let (sender, driver) = open.pop().expect("three open");
    drop(sender);
    driver.abort();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if h2_connection(node.port, "127.0.0.2").await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the freed slot never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = node.http.get(node.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("jeton_http_connections_refused_total"), "{metrics}");
}
