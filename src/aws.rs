//! The AWS side of the job: one small tokio runtime per process that runs every AWS request (the
//! dataflow's worker threads never block on the network, they hand batches over), and the SDK
//! configuration from the standard chain (environment, profile, instance role) plus the sink's
//! own region and endpoint override (for emulators). Credentials are never logged.

use std::sync::OnceLock;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Where and how a sink talks to AWS.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AwsSettings {
    /// The region; none takes it from the standard chain (`AWS_REGION`, the profile).
    pub region: Option<String>,
    /// An endpoint to use instead of AWS's (an emulator such as moto, or a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// How long one request may take before it counts as failed (and is retried).
    pub request_timeout: Duration,
}

/// AWS set-up errors.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No region anywhere.
    #[error("{field}: no AWS region; set region = \"eu-west-1\" (or whichever) in the sink, or AWS_REGION")]
    NoRegion {
        /// The config field to set.
        field: String,
    },
    /// A resource the sink writes to is missing or unreachable at start-up.
    #[error("{field}: {message}")]
    Resource {
        /// The config field naming the resource.
        field: String,
        /// What failed, and what to do.
        message: String,
    },
}

/// The process's AWS runtime: two threads, enough to keep many requests in flight.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("fleetflow-aws").enable_all().build() {
            Ok(rt) => rt,
            // Without threads the process cannot run at all; say so rather than limp on.
            Err(e) => panic!("starting the AWS runtime threads: {e}"),
        }
    })
}

/// Loads the SDK configuration for `settings`. SDK retries are off: the sinks retry themselves
/// (resending only what failed, with their own budget and dead-letter folder).
pub fn load(settings: &AwsSettings, field: &str) -> Result<SdkConfig, AwsError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled()).timeout_config(
        TimeoutConfig::builder().operation_attempt_timeout(settings.request_timeout).connect_timeout(Duration::from_secs(5)).build(),
    );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    let config = runtime().block_on(loader.load());
    if config.region().is_none() {
        return Err(AwsError::NoRegion { field: format!("{field}.region") });
    }
    Ok(config)
}

/// The error of an SDK call as one line, with its cause chain (the SDK's `Display` alone is
/// often just "service error").
pub fn describe<E: std::error::Error>(e: &E) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
