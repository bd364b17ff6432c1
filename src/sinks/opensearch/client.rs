//! HTTP to an OpenSearch cluster: its nodes used in turn (a request that cannot reach one goes to
//! the next), TLS with the system's roots and an optional CA file, basic or bearer auth read from
//! the environment once (never logged), gzip request bodies and a timeout per request.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use super::OpenSearchConfig;

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A setting cannot be used (a missing environment variable, an unreadable CA file).
    #[error("{field}: {message}")]
    Setting {
        /// The `sinks.NAME.FIELD`.
        field: String,
        /// What is wrong and the fix.
        message: String,
    },
    /// No node answered (connection refused, timeout, TLS failure).
    #[error("{0}")]
    Unreachable(String),
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// A client of one cluster.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    nodes: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    auth: Option<HeaderValue>,
    gzip: bool,
    timeout: Duration,
}

impl Client {
    /// A client for sink `name`'s cluster.
    pub fn new(name: &str, cfg: &OpenSearchConfig) -> Result<Client, ClientError> {
        let field = |f: &str| format!("sinks.{name}.{f}");
        let tls = tls_config(cfg.ca_file.as_deref()).map_err(|message| ClientError::Setting { field: field("ca_file"), message })?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        let http = HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        let auth = auth_header(cfg).map_err(|(f, message)| ClientError::Setting { field: field(f), message })?;
        let nodes = cfg.url.all().into_iter().map(|u| u.trim_end_matches('/').to_string()).collect();
        Ok(Client {
            http,
            nodes: Arc::new(nodes),
            next: Arc::new(AtomicUsize::new(0)),
            auth,
            gzip: cfg.gzip,
            timeout: crate::sinks::config::secs(cfg.request_timeout_secs),
        })
    }

    /// Sends `body` to `path` (`/_bulk`), on the next node; on to the following ones while a
    /// node cannot be reached. An answer of any status is an answer.
    pub async fn request(&self, method: Method, path: &str, body: Vec<u8>, content_type: &str) -> Result<Answer, ClientError> {
        let body = if self.gzip && !body.is_empty() { gzip(&body) } else { body };
        let body = Bytes::from(body);
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..self.nodes.len() {
            let node = &self.nodes[(first + i) % self.nodes.len()];
            match self.once(&method, &format!("{node}{path}"), body.clone(), content_type).await {
                Ok(answer) => return Ok(answer),
                Err(e) => errors.push(format!("{node}: {e}")),
            }
        }
        Err(ClientError::Unreachable(errors.join("; ")))
    }

    async fn once(&self, method: &Method, url: &str, body: Bytes, content_type: &str) -> Result<Answer, String> {
        let mut request = Request::builder().method(method.clone()).uri(url).header(CONTENT_TYPE, content_type);
        if self.gzip && !body.is_empty() {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(describe)?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Answer { status, body: String::from_utf8_lossy(&body).into_owned() })
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| format!("no answer within {:?}", self.timeout))?
    }

    /// The first node, for messages.
    pub fn first_node(&self) -> &str {
        self.nodes.first().map_or("", |n| n.as_str())
    }
}

/// An error with its causes, on one line.
fn describe(e: hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// gzip of `data`.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// TLS with the system's roots plus those of `ca_file`.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read {}: {e}; give a PEM file of CA certificates", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} is not a PEM file of certificates: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate; give a PEM file of CA certificates", path.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("{}: a certificate is not usable: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The `Authorization` header from the environment, marked sensitive (never logged).
fn auth_header(cfg: &OpenSearchConfig) -> Result<Option<HeaderValue>, (&'static str, String)> {
    use base64::Engine;
    let read = |field: &'static str, var: &str| {
        std::env::var(var).map_err(|_| (field, format!("the environment variable {var} is not set; export it or change {field}")))
    };
    let value = match (&cfg.username, &cfg.password_env, &cfg.token_env) {
        (Some(user), Some(var), _) => {
            let password = read("password_env", var)?;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
        }
        (_, _, Some(var)) => format!("Bearer {}", read("token_env", var)?),
        _ => return Ok(None),
    };
    let mut header =
        HeaderValue::from_str(&value).map_err(|_| ("token_env", "the credentials hold characters a header cannot".to_string()))?;
    header.set_sensitive(true);
    Ok(Some(header))
}
