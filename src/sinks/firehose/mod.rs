//! The Amazon Kinesis Data Firehose sink: each output stream to a delivery stream (a name with
//! `{stream}` in it serves several), records as newline-terminated JSON lines, optionally packed
//! several to a record, sent with `PutRecordBatch` within the service limits. Partial failures
//! resend only the failed records; throttling and server errors back off; what still fails after
//! the retry budget goes to the dead-letter folder. A record counts as delivered once Firehose
//! accepted it (or it was dead-lettered): that is what lets the Kafka source commit.

pub mod build;
mod config;
pub use config::FirehoseConfig;

pub mod batch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;

use crate::encode::Encoded;
use crate::operations::sink_counters::SinkCounters;
use crate::sinks::delivery::dead_letter::DeadLetter;
use crate::sinks::delivery::dispatch::Dispatcher;
use crate::sinks::delivery::retry::RetryPolicy;
use crate::sinks::delivery::{classify, Attempt, Deliver};
use crate::sinks::{Sink, SinkError};
use crate::stream::StreamName;
use batch::{Batch, Batcher};

/// How a Firehose sink behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct FirehoseOptions {
    /// The delivery stream's name; `{stream}` is replaced by the output stream's name.
    pub delivery_stream: String,
    /// Pack several lines into one record (up to the record limit).
    pub pack: bool,
    /// Send a partial batch this long after its first line.
    pub buffer_interval: Duration,
    /// Bytes in flight at most; beyond it the dataflow waits.
    pub max_in_flight_bytes: usize,
    /// Retries.
    pub retry: RetryPolicy,
}

/// One `PutRecordBatch` call.
pub struct FirehoseApi {
    client: Client,
}

impl FirehoseApi {
    /// Calls through `client`.
    pub fn new(client: Client) -> Self {
        FirehoseApi { client }
    }
}

impl Deliver for FirehoseApi {
    type Item = Vec<u8>;

    fn send(&self, target: &str, items: &[Vec<u8>]) -> impl std::future::Future<Output = Attempt> + Send {
        let records: Result<Vec<Record>, _> = items.iter().map(|d| Record::builder().data(Blob::new(d.clone())).build()).collect();
        let request = records.map(|r| self.client.put_record_batch().delivery_stream_name(target).set_records(Some(r)));
        async move {
            let request = match request {
                Ok(r) => r,
                Err(e) => return Attempt::Failed { error: e.to_string(), retryable: false },
            };
            match request.send().await {
                Ok(out) if out.failed_put_count() == 0 => Attempt::Answered(Vec::new()),
                Ok(out) => Attempt::Answered(
                    out.request_responses()
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| {
                            // Per-record failures (ServiceUnavailableException, InternalFailure) are transient.
                            r.error_code().map(|c| (i, format!("{c}: {}", r.error_message().unwrap_or("")), true))
                        })
                        .collect(),
                ),
                Err(e) => classify(&e),
            }
        }
    }

    fn data(item: &Vec<u8>) -> &[u8] {
        item
    }
}

struct StreamState {
    batcher: Batcher,
    /// When the first line of the open batch came.
    since: Option<Instant>,
}

/// Writes output streams to Firehose delivery streams.
pub struct FirehoseSink {
    dispatcher: Dispatcher<FirehoseApi>,
    targets: Vec<String>,
    streams: Vec<StreamState>,
    interval: Duration,
}

impl FirehoseSink {
    /// A sink calling `client`, dead-lettering into `dead_letter`, counting into `counters`.
    pub fn new(client: Client, options: &FirehoseOptions, dead_letter: Arc<DeadLetter>, counters: Arc<SinkCounters>) -> Self {
        let dispatcher =
            Dispatcher::new(Arc::new(FirehoseApi::new(client)), options.retry.clone(), dead_letter, counters, options.max_in_flight_bytes);
        FirehoseSink {
            dispatcher,
            targets: StreamName::all().map(|s| target(&options.delivery_stream, s)).collect(),
            streams: StreamName::all().map(|_| StreamState { batcher: Batcher::new(options.pack), since: None }).collect(),
            interval: options.buffer_interval,
        }
    }

    fn send(&mut self, stream: StreamName, batch: Batch) {
        let target = &self.targets[stream.index()];
        self.dispatcher.dispatch(stream, target, batch.records, batch.lines, batch.bytes);
    }

    fn send_open(&mut self, stream: StreamName) {
        let state = &mut self.streams[stream.index()];
        state.since = None;
        if let Some(batch) = state.batcher.take() {
            self.send(stream, batch);
        }
    }
}

/// The delivery stream for `stream`.
pub fn target(pattern: &str, stream: StreamName) -> String {
    pattern.replace("{stream}", stream.as_str())
}

impl Sink for FirehoseSink {
    fn write(&mut self, stream: StreamName, _stamp: fleetflow_dataflows::Time, record: &Encoded) -> Result<(), SinkError> {
        self.dispatcher.wrote(stream);
        let state = &mut self.streams[stream.index()];
        match state.batcher.push(&record.line) {
            Ok(None) => {}
            Ok(Some(full)) => self.send(stream, full),
            Err(too_large) => {
                // Keep the order of the ledger: what was gathered before goes first.
                self.send_open(stream);
                let target = self.targets[stream.index()].clone();
                self.dispatcher.refuse(stream, &target, &too_large.to_string(), &record.line)?;
            }
        }
        let state = &mut self.streams[stream.index()];
        if state.batcher.lines() > 0 {
            state.since.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<(), SinkError> {
        for stream in StreamName::all() {
            if self.streams[stream.index()].since.is_some_and(|s| s.elapsed() >= self.interval) {
                self.send_open(stream);
            }
        }
        self.dispatcher.settle()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        for stream in StreamName::all() {
            self.send_open(stream);
        }
        self.dispatcher.wait_idle()
    }

    fn written(&self, stream: StreamName) -> u64 {
        self.dispatcher.written(stream)
    }

    fn delivered(&self, stream: StreamName) -> u64 {
        self.dispatcher.delivered(stream)
    }
}
