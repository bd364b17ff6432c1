//! Building OpenSearch sinks: once per process the client and the check that the cluster answers
//! with the credentials given; then one sink per worker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;

use super::bulk::BulkApi;
use super::client::{Client, ClientError};
use super::index::IndexPattern;
use super::{OpenSearchConfig, OpenSearchOptions, OpenSearchSink};
use crate::aws::AwsError;
use crate::operations::sink_counters::SinkCounters;
use crate::sinks::delivery::dead_letter::DeadLetter;
use crate::sinks::delivery::retry::RetryPolicy;

/// An OpenSearch sink connected and checked, ready for each worker.
pub struct PreparedOpenSearch {
    client: Client,
    options: OpenSearchOptions,
    dead_letter: PathBuf,
}

/// Connects sink `name` and, if `used` (some stream is routed to it), checks that its cluster
/// answers and takes its credentials.
pub fn prepare(name: &str, cfg: &OpenSearchConfig, used: bool) -> Result<PreparedOpenSearch, AwsError> {
    let resource = |field: &str, message: String| AwsError::Resource { field: format!("sinks.{name}.{field}"), message };
    let client = Client::new(name, cfg).map_err(|e| match e {
        ClientError::Setting { field, message } => AwsError::Resource { field, message },
        ClientError::Unreachable(message) => AwsError::Resource { field: format!("sinks.{name}.url"), message },
    })?;
    if used {
        check(&client).map_err(|(field, message)| resource(field, message))?;
    }
    let index = IndexPattern::parse(&cfg.index).map_err(|e| resource("index", e))?;
    let options = OpenSearchOptions {
        index,
        batch_docs: cfg.batch_docs,
        batch_bytes: (cfg.batch_mib * 1024.0 * 1024.0) as usize,
        buffer_interval: Duration::from_secs_f64(cfg.buffer_secs),
        max_in_flight_bytes: (cfg.max_in_flight_mib * 1024.0 * 1024.0) as usize,
        retry: RetryPolicy::with_budget(cfg.retry_secs),
    };
    Ok(PreparedOpenSearch { client, options, dead_letter: cfg.dead_letter_dir.clone() })
}

/// Whether the cluster answers `GET /` with the credentials: the field to fix and why if not.
fn check(client: &Client) -> Result<(), (&'static str, String)> {
    let answer = crate::aws::runtime().block_on(client.request(Method::GET, "/", Vec::new(), "application/json"));
    match answer {
        Ok(a) if (200..300).contains(&a.status) => Ok(()),
        Ok(a) if a.status == 401 || a.status == 403 => Err((
            "username",
            format!("{} refused the credentials (HTTP {}); check username/password_env or token_env", client.first_node(), a.status),
        )),
        Ok(a) => {
            Err(("url", format!("{} answered HTTP {} to GET /; is it an OpenSearch or Elasticsearch node?", client.first_node(), a.status)))
        }
        Err(e) => Err(("url", format!("no node answered ({e}); start the cluster or fix the url"))),
    }
}

impl PreparedOpenSearch {
    /// Worker `tag`'s instance of sink `name`.
    pub fn instance(&self, name: &str, tag: &str, counters: Arc<SinkCounters>) -> OpenSearchSink {
        let dead_letter = Arc::new(DeadLetter::new(&self.dead_letter, name, tag.to_string()));
        OpenSearchSink::new(BulkApi::new(self.client.clone()), self.options.clone(), dead_letter, counters)
    }

    /// The client, for `fleetflow opensearch setup`.
    pub fn client(&self) -> &Client {
        &self.client
    }
}
