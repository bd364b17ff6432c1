//! The OpenSearch sink over TLS with credentials, against a small HTTPS server of the test's own
//! (the real node of `tests/opensearch.rs` runs without its security plugin): certificates made
//! with `openssl`, a CA the system does not know given in `ca_file`, the bearer token and the
//! basic-auth password read from the environment and sent on every request, request bodies gzip.
//! Without the CA the start-up check refuses the certificate with one line naming the field.

use std::convert::Infallible;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fleetflow::encode::Encoded;
use fleetflow::operations::sink_counters::SinkCounters;
use fleetflow::sinks::opensearch::{build, OpenSearchConfig};
use fleetflow::sinks::Sink;
use fleetflow::stream::StreamName;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What the server saw: per request, method, path, `Authorization` and the body's documents.
type Seen = Arc<Mutex<Vec<(String, String, String, usize)>>>;

/// A CA and a certificate for 127.0.0.1 signed by it, under `dir`.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=fleetflow test CA",
    ]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

async fn answer(request: Request<hyper::body::Incoming>, seen: Seen) -> Result<Response<Full<Bytes>>, Infallible> {
    let (method, path) = (request.method().to_string(), request.uri().path().to_string());
    let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let gzip = request.headers().get("content-encoding").is_some_and(|v| v == "gzip");
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut text = String::new();
    if gzip {
        flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
    }
    let docs = text.lines().count() / 2;
    seen.lock().unwrap().push((method, path, auth, docs));
    let reply = if docs > 0 { r#"{"errors":false}"# } else { r#"{"version":{"number":"2.19.6"}}"# };
    Ok(Response::new(Full::new(Bytes::from(reply))))
}

/// An HTTPS server on a free port; returns its port.
fn serve(dir: &Path, seen: Seen) -> u16 {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("node.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("node.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = fleetflow::aws::runtime().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    fleetflow::aws::runtime().spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |r| answer(r, seen.clone()));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
            });
        }
    });
    port
}

fn record(i: u32) -> Encoded {
    let line = format!("{{\"vin\":\"V{i}\",\"window_start\":\"2025-11-25T10:00:00.000Z\",\"window_end\":\"2025-11-25T10:05:00.000Z\",\"avg_speed\":81.5}}\n");
    Encoded { line: line.into_bytes(), time: 1_764_064_800_000, key: None }
}

#[test]
fn documents_go_over_tls_with_the_credentials_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let seen: Seen = Arc::default();
    let url = format!("https://127.0.0.1:{}", serve(dir.path(), seen.clone()));
    std::env::set_var("FLEETFLOW_TEST_OS_TOKEN", "s3cret-token");
    std::env::set_var("FLEETFLOW_TEST_OS_PASSWORD", "pa55");

    let mut cfg = OpenSearchConfig::new(&url);
    cfg.token_env = Some("FLEETFLOW_TEST_OS_TOKEN".into());
    let refused = build::prepare("search", &cfg, true).err().expect("the system does not know the test's CA").to_string();
    assert!(refused.starts_with("sinks.search.url: no node answered") && refused.contains("certificate"), "{refused}");

    cfg.ca_file = Some(dir.path().join("ca.pem"));
    cfg.dead_letter_dir = dir.path().join("dead");
    let prepared = build::prepare("search", &cfg, true).unwrap();
    let mut sink = prepared.instance("search", "w0", Arc::new(SinkCounters::default()));
    let alerts = StreamName::parse("alerts").unwrap();
    for i in 0..2500 {
        sink.write(alerts, 0, &record(i)).unwrap();
    }
    sink.flush().unwrap();
    assert_eq!((sink.written(alerts), sink.delivered(alerts)), (2500, 2500));
    let requests = seen.lock().unwrap().clone();
    assert!(requests.iter().all(|(_, _, auth, _)| auth == "Bearer s3cret-token"), "every request carries the token");
    let bulk: Vec<usize> = requests.iter().filter(|(m, p, _, _)| m == "POST" && p == "/_bulk").map(|s| s.3).collect();
    assert_eq!((bulk.iter().sum::<usize>(), bulk.iter().max().copied()), (2500, Some(1000)), "gzip bodies of at most batch_docs: {bulk:?}");

    let mut basic = OpenSearchConfig::new(&url);
    (basic.username, basic.password_env, basic.ca_file) =
        (Some("fleetflow".into()), Some("FLEETFLOW_TEST_OS_PASSWORD".into()), cfg.ca_file.clone());
    build::prepare("search", &basic, true).unwrap();
    let last = seen.lock().unwrap().last().map(|r| r.2.clone());
    assert_eq!(last.as_deref(), Some("Basic ZmxlZXRmbG93OnBhNTU="), "base64 of fleetflow:pa55");

    basic.password_env = Some("FLEETFLOW_TEST_OS_UNSET".into());
    let unset = build::prepare("search", &basic, true).err().unwrap().to_string();
    assert_eq!(
        unset,
        "sinks.search.password_env: the environment variable FLEETFLOW_TEST_OS_UNSET is not set; export it or change password_env"
    );
}
