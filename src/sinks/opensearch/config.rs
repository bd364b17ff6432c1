//! `[sinks.NAME] kind = "opensearch"`: an OpenSearch or Elasticsearch cluster, one document per
//! record, through the `_bulk` API.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::index::IndexPattern;
use crate::sinks::config::{check_retries, default_dead_letter, default_request_timeout_secs, default_retry_secs, in_range};

/// One node's URL or several.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Urls {
    /// One node.
    One(String),
    /// Several nodes, used in turn (a failed request goes to the next).
    Many(Vec<String>),
}

impl Urls {
    /// Every URL given.
    pub fn all(&self) -> Vec<String> {
        match self {
            Urls::One(u) => vec![u.clone()],
            Urls::Many(v) => v.clone(),
        }
    }
}

/// An OpenSearch sink's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSearchConfig {
    /// The cluster: `http(s)://host:port`, one or a list.
    pub url: Urls,
    /// The index of each record: `{stream}` is the stream's name, a date pattern in braces
    /// (`{yyyy.MM.dd}`, `{yyyy-MM}`, with `yyyy MM dd HH`) the record's event time, UTC.
    #[serde(default = "default_index")]
    pub index: String,
    /// Basic auth: the user name (its password comes from `password_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic auth: the environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Bearer auth: the environment variable holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// A PEM file of CA certificates trusted besides the system's (a cluster's own CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Documents per `_bulk` request at most.
    #[serde(default = "default_batch_docs")]
    pub batch_docs: usize,
    /// MiB of documents per `_bulk` request at most (before compression).
    #[serde(default = "default_batch_mib")]
    pub batch_mib: f64,
    /// Compress request bodies with gzip.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Send a partial batch this many seconds after its first record.
    #[serde(default = "default_buffer_secs")]
    pub buffer_secs: f64,
    /// MiB in flight at most per worker; beyond it the dataflow waits.
    #[serde(default = "default_in_flight_mib")]
    pub max_in_flight_mib: f64,
    /// Seconds a failing batch is retried before it goes to the dead-letter folder.
    #[serde(default = "default_retry_secs")]
    pub retry_secs: f64,
    /// Seconds one request may take.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: f64,
    /// Where undeliverable records go (a folder per sink under it).
    #[serde(default = "default_dead_letter")]
    pub dead_letter_dir: PathBuf,
}

fn default_index() -> String {
    "fleetflow-{stream}-{yyyy.MM.dd}".to_string()
}
fn default_batch_docs() -> usize {
    1000
}
fn default_batch_mib() -> f64 {
    5.0
}
fn default_true() -> bool {
    true
}
fn default_buffer_secs() -> f64 {
    1.0
}
fn default_in_flight_mib() -> f64 {
    32.0
}

impl OpenSearchConfig {
    /// A sink for `url` with the defaults.
    pub fn new(url: &str) -> Self {
        OpenSearchConfig {
            url: Urls::One(url.to_string()),
            index: default_index(),
            username: None,
            password_env: None,
            token_env: None,
            ca_file: None,
            batch_docs: default_batch_docs(),
            batch_mib: default_batch_mib(),
            gzip: true,
            buffer_secs: default_buffer_secs(),
            max_in_flight_mib: default_in_flight_mib(),
            retry_secs: default_retry_secs(),
            request_timeout_secs: default_request_timeout_secs(),
            dead_letter_dir: default_dead_letter(),
        }
    }

    /// Checks the URLs, the index pattern, the auth settings and the limits.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let urls = self.url.all();
        if urls.is_empty() {
            return Err(format!("sinks.{name}.url: no URL; give \"http://host:9200\" or a list of them"));
        }
        for u in &urls {
            let scheme_ok = u.starts_with("http://") || u.starts_with("https://");
            if !scheme_ok || u.parse::<hyper::Uri>().is_err() {
                return Err(format!(
                    "sinks.{name}.url: {u:?} is not an http:// or https:// URL; give e.g. \"https://search.example:9200\""
                ));
            }
        }
        IndexPattern::parse(&self.index).map_err(|e| format!("sinks.{name}.index: {e}"))?;
        if self.token_env.is_some() && (self.username.is_some() || self.password_env.is_some()) {
            return Err(format!("sinks.{name}.token_env: set either token_env (bearer) or username and password_env (basic), not both"));
        }
        if self.username.is_some() != self.password_env.is_some() {
            return Err(format!(
                "sinks.{name}.password_env: basic auth needs both username and password_env (the variable holding the password)"
            ));
        }
        if !(1..=100_000).contains(&self.batch_docs) {
            return Err(format!("sinks.{name}.batch_docs: {} is out of range; use 1 to 100000 documents", self.batch_docs));
        }
        in_range(name, "batch_mib", self.batch_mib, (0.01, 100.0), "MiB (OpenSearch takes 100 MiB a request by default)")?;
        in_range(name, "buffer_secs", self.buffer_secs, (0.0, 900.0), "seconds")?;
        in_range(name, "max_in_flight_mib", self.max_in_flight_mib, (self.batch_mib, 4096.0), "MiB (at least one batch)")?;
        check_retries(name, self.retry_secs, self.request_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::first_error as error;

    #[test]
    fn settings_are_checked_by_name() {
        let base = "[sinks.s]\nkind = \"opensearch\"\n";
        assert_eq!(error(&format!("{base}url = \"http://127.0.0.1:9200\"\n")), "");
        assert_eq!(error(&format!("{base}url = [\"http://a:9200\", \"https://b:9200\"]\nindex = \"x-{{stream}}\"\n")), "");
        assert!(error(&format!("{base}url = \"127.0.0.1:9200\"\n")).starts_with("sinks.s.url: \"127.0.0.1:9200\" is not an http"));
        assert!(error(&format!("{base}url = []\n")).starts_with("sinks.s.url: no URL"));
        assert!(error(&format!("{base}url = \"http://a\"\nindex = \"Fleet\"\n")).starts_with("sinks.s.index:"));
        let both = format!("{base}url = \"http://a\"\ntoken_env = \"T\"\nusername = \"u\"\npassword_env = \"P\"\n");
        assert!(error(&both).starts_with("sinks.s.token_env: set either"));
        assert!(error(&format!("{base}url = \"http://a\"\nusername = \"u\"\n")).starts_with("sinks.s.password_env"));
        assert!(error(&format!("{base}url = \"http://a\"\nbatch_docs = 0\n")).starts_with("sinks.s.batch_docs: 0"));
        assert!(error(&format!("{base}url = \"http://a\"\nbulk = 1\n")).contains("bulk"), "unknown fields are named");
    }

    #[test]
    fn raw_cannot_be_indexed() {
        let e = error("[sinks.s]\nkind = \"opensearch\"\nurl = \"http://a\"\n[routes]\nraw = [\"s\"]\n");
        assert!(e.starts_with("routes.raw: sink \"s\" indexes JSON records"), "{e}");
    }
}
