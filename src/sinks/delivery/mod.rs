//! Delivering one batch to an AWS service, whatever the service: send, resend only the records
//! that failed, back off on throttling and server errors, and dead-letter what is still failing
//! when the retry budget is spent. Each service implements [`Deliver`] for one request.

pub mod dead_letter;
pub mod dispatch;
pub mod in_flight;
pub mod ledger;
pub mod retry;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_firehose::config::http::HttpResponse;
use aws_sdk_firehose::error::{ProvideErrorMetadata, SdkError};
use tracing::{error, warn};

use crate::operations::metrics::Metrics;
use crate::operations::sink_counters::SinkCounters;
use crate::sinks::delivery::dead_letter::DeadLetter;
use crate::sinks::delivery::retry::RetryPolicy;

/// How one request went.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The service answered; these records (by index) failed, each with its error and whether
    /// trying again may help. The others were delivered.
    Answered(Vec<(usize, String, bool)>),
    /// The request as a whole failed.
    Failed {
        /// What went wrong.
        error: String,
        /// Whether trying again may help (throttling, 5xx, timeouts, connection failures).
        retryable: bool,
    },
}

/// One service's request.
pub trait Deliver: Send + Sync + 'static {
    /// A record as the service takes it.
    type Item: Send + Sync + 'static;
    /// Sends `items` to `target` once.
    fn send(&self, target: &str, items: &[Self::Item]) -> impl Future<Output = Attempt> + Send;
    /// The item's data, as the dead-letter folder keeps it.
    fn data(item: &Self::Item) -> &[u8];
}

/// Error codes that mean "slow down" rather than "this is wrong".
const THROTTLING: [&str; 8] = [
    "ThrottlingException",
    "Throttling",
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "LimitExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "KMSThrottlingException",
];

/// Whether a service error code means "try again later".
pub fn retryable_code(code: &str) -> bool {
    THROTTLING.contains(&code) || code == "InternalFailure" || code == "InternalError" || code.starts_with("ExpiredToken")
}

/// An SDK error as one line, and whether it is worth retrying.
pub fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &SdkError<E, HttpResponse>) -> Attempt {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let retryable = match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        _ => status.is_some_and(|s| s >= 500 || s == 429) || e.code().is_some_and(retryable_code),
    };
    Attempt::Failed { error: error_text(e), retryable }
}

/// An SDK error as one line: HTTP status, error code and message, or the cause chain.
pub fn error_text<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &SdkError<E, HttpResponse>) -> String {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let mut error = crate::aws::describe(e);
    if let Some(code) = e.code() {
        error = format!("{code}: {}", e.message().unwrap_or(&error));
    }
    if let Some(s) = status {
        error = format!("HTTP {s}: {error}");
    }
    error
}

/// Sends `items` to `target` until each is delivered or dead-lettered. Returns an error only if
/// records could not even be dead-lettered (then the sink stops the job).
pub async fn deliver<D: Deliver>(
    service: Arc<D>,
    target: String,
    mut items: Vec<D::Item>,
    policy: RetryPolicy,
    dead_letter: Arc<DeadLetter>,
    counters: Arc<SinkCounters>,
) -> Result<(), String> {
    let started = Instant::now();
    let mut attempt = 0u32;
    let mut give_up: Vec<(D::Item, String)> = Vec::new();
    while !items.is_empty() {
        attempt += 1;
        Metrics::add(&counters.requests, 1);
        let (mut retry, mut last_error) = (Vec::new(), String::new());
        match service.send(&target, &items).await {
            Attempt::Answered(failed) => {
                Metrics::add(&counters.delivered, (items.len() - failed.len()) as u64);
                let mut failed = failed.into_iter().peekable();
                for (i, item) in items.drain(..).enumerate() {
                    match failed.next_if(|(j, _, _)| *j == i) {
                        Some((_, e, true)) => {
                            last_error = e;
                            retry.push(item);
                        }
                        Some((_, e, false)) => {
                            counters.note_error(&e);
                            give_up.push((item, e));
                        }
                        None => {}
                    }
                }
            }
            Attempt::Failed { error, retryable: true } => {
                Metrics::add(&counters.failed_requests, 1);
                last_error = error;
                retry = std::mem::take(&mut items);
            }
            Attempt::Failed { error, retryable: false } => {
                Metrics::add(&counters.failed_requests, 1);
                counters.note_error(&error);
                give_up.extend(items.drain(..).map(|i| (i, error.clone())));
            }
        }
        if !last_error.is_empty() {
            counters.note_error(&last_error);
        }
        if retry.is_empty() {
            break;
        }
        let wait = policy.backoff(attempt);
        if !policy.may_retry(started, wait) {
            give_up.extend(retry.into_iter().map(|i| (i, format!("{last_error} (still failing after {attempt} attempts)"))));
            break;
        }
        Metrics::add(&counters.retried, retry.len() as u64);
        warn!("{target}: {} records failed ({last_error}); attempt {} in {:?}", retry.len(), attempt + 1, wait);
        tokio::time::sleep(wait).await;
        items = retry;
    }
    if give_up.is_empty() {
        return Ok(());
    }
    // Group by error so each file says why its records are there.
    give_up.sort_by(|a, b| a.1.cmp(&b.1));
    for group in give_up.chunk_by(|a, b| a.1 == b.1) {
        let data: Vec<&[u8]> = group.iter().map(|(item, _)| D::data(item)).collect();
        match dead_letter.write(&target, &group[0].1, attempt, &data) {
            Ok(path) => {
                Metrics::add(&counters.dead_lettered, data.len() as u64);
                error!("{target}: {} records dead-lettered to {} ({})", data.len(), path.display(), group[0].1);
            }
            Err(e) => return Err(format!("{target}: could not dead-letter {} undeliverable records: {e}", data.len())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Fails records by a script, one entry per call.
    struct Scripted {
        script: Mutex<Vec<Attempt>>,
        seen: Mutex<Vec<Vec<u32>>>,
    }

    impl Deliver for Scripted {
        type Item = (u32, Vec<u8>);
        fn send(&self, _target: &str, items: &[Self::Item]) -> impl Future<Output = Attempt> + Send {
            self.seen.lock().unwrap().push(items.iter().map(|i| i.0).collect());
            let mut script = self.script.lock().unwrap();
            let next = if script.is_empty() { Attempt::Answered(vec![]) } else { script.remove(0) };
            async move { next }
        }
        fn data(item: &Self::Item) -> &[u8] {
            &item.1
        }
    }

    fn run(script: Vec<Attempt>, budget: Duration) -> (Vec<Vec<u32>>, Vec<String>, Arc<SinkCounters>) {
        let dir = tempfile::tempdir().unwrap();
        let service = Arc::new(Scripted { script: Mutex::new(script), seen: Mutex::new(vec![]) });
        let counters = Arc::new(SinkCounters::default());
        let policy = RetryPolicy { base: Duration::from_millis(1), cap: Duration::from_millis(4), budget };
        let items = (0..5).map(|i| (i, format!("r{i}\n").into_bytes())).collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let dl = Arc::new(DeadLetter::new(dir.path(), "s", "t".into()));
        rt.block_on(deliver(service.clone(), "target".into(), items, policy, dl, counters.clone())).unwrap();
        let mut dead = Vec::new();
        // The dead-letter folder of sink "s", target "target".
        for f in std::fs::read_dir(dir.path().join("s").join("target")).into_iter().flatten() {
            dead.extend(std::fs::read_to_string(f.unwrap().path()).unwrap().lines().map(|l| l.to_string()));
        }
        let seen = service.seen.lock().unwrap().clone();
        (seen, dead, counters)
    }

    #[test]
    fn resends_only_the_failed_records() {
        let (seen, dead, c) = run(
            vec![
                Attempt::Answered(vec![(1, "ServiceUnavailableException: slow down".into(), true), (3, "x".into(), true)]),
                Attempt::Failed { error: "HTTP 500".into(), retryable: true },
                Attempt::Answered(vec![(0, "InternalFailure".into(), true)]),
            ],
            Duration::from_secs(10),
        );
        assert_eq!(seen, vec![vec![0, 1, 2, 3, 4], vec![1, 3], vec![1, 3], vec![1]]);
        assert!(dead.is_empty());
        assert_eq!(Metrics::get(&c.delivered), 5);
        assert_eq!(Metrics::get(&c.retried), 2 + 2 + 1);
        assert_eq!(Metrics::get(&c.requests), 4);
    }

    #[test]
    fn dead_letters_permanent_failures_and_what_outlasts_the_budget() {
        let always = (0..1000).map(|_| Attempt::Failed { error: "HTTP 503".into(), retryable: true });
        let first = (0..5).map(|i| if i == 2 { (i, "InvalidArgument: too big".into(), false) } else { (i, "HTTP 503".into(), true) });
        let script = std::iter::once(Attempt::Answered(first.collect())).chain(always).collect();
        let (seen, dead, c) = run(script, Duration::from_millis(50));
        assert!(seen.len() > 2, "retried within the budget");
        assert_eq!(dead.len(), 5, "every record is in the dead-letter folder: {dead:?}");
        assert_eq!(dead.iter().filter(|l| l.contains("too big")).count(), 1);
        assert_eq!(dead.iter().filter(|l| l.contains("HTTP 503") && l.contains("still failing")).count(), 4);
        assert_eq!(Metrics::get(&c.dead_lettered), 5);
        assert_eq!(Metrics::get(&c.delivered), 0);
    }
}
