//! The OpenSearch (and Elasticsearch) sink: each record becomes one document of the index its
//! pattern names (`fleetflow-{stream}-{yyyy.MM.dd}` by the record's event time), with an id
//! derived from the record, so a record written again after a restart overwrites itself.
//! Documents go in `_bulk` requests bounded by count and bytes, gzip-compressed; items the
//! cluster refuses as bad data go to the dead-letter folder with the reason and are not retried;
//! throttled items (429), server errors and unreachable nodes are retried with backoff within
//! `retry_secs`, then dead-lettered. A record counts as delivered once OpenSearch acknowledged it
//! (or it was dead-lettered): that is what the job's durable frontier and checkpoints rest on.

pub mod build;
pub mod bulk;
pub mod client;
mod config;
pub mod index;
pub mod setup;

pub use config::{OpenSearchConfig, Urls};

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetflow_dataflows::Time;

use crate::encode::Encoded;
use crate::operations::sink_counters::SinkCounters;
use crate::sinks::delivery::dead_letter::DeadLetter;
use crate::sinks::delivery::dispatch::Dispatcher;
use crate::sinks::delivery::retry::RetryPolicy;
use crate::sinks::{Sink, SinkError};
use crate::stream::StreamName;
use bulk::{doc_id, request_bytes, BulkApi, Doc};
use index::IndexPattern;

/// How an OpenSearch sink behaves.
#[derive(Clone, Debug)]
pub struct OpenSearchOptions {
    /// The index of each record.
    pub index: IndexPattern,
    /// Documents per request at most.
    pub batch_docs: usize,
    /// Bytes per request at most (before compression).
    pub batch_bytes: usize,
    /// Send a partial batch this long after its first document.
    pub buffer_interval: Duration,
    /// Bytes in flight at most; beyond it the dataflow waits.
    pub max_in_flight_bytes: usize,
    /// Retries.
    pub retry: RetryPolicy,
}

/// The documents of one stream waiting for a request.
#[derive(Default)]
struct Pending {
    docs: Vec<Doc>,
    bytes: usize,
    /// When the first document came.
    since: Option<Instant>,
    /// The index of the last span of event time seen, and its start.
    index: Option<(Time, String)>,
}

/// Writes output streams to OpenSearch indices.
pub struct OpenSearchSink {
    dispatcher: Dispatcher<BulkApi>,
    options: OpenSearchOptions,
    pending: Vec<Pending>,
}

impl OpenSearchSink {
    /// A sink calling `api`, dead-lettering into `dead_letter`, counting into `counters`.
    pub fn new(api: BulkApi, options: OpenSearchOptions, dead_letter: Arc<DeadLetter>, counters: Arc<SinkCounters>) -> Self {
        let dispatcher = Dispatcher::new(Arc::new(api), options.retry.clone(), dead_letter, counters, options.max_in_flight_bytes);
        OpenSearchSink { dispatcher, options, pending: StreamName::all().map(|_| Pending::default()).collect() }
    }

    /// The index of a record of `stream` at `time`, formatted once per span of event time.
    fn index(&mut self, stream: StreamName, time: Time) -> String {
        let span = self.options.index.span();
        let start = if span == Time::MAX { 0 } else { time - time % span };
        let pending = &mut self.pending[stream.index()];
        match &pending.index {
            Some((at, index)) if *at == start => index.clone(),
            _ => {
                let index = self.options.index.format(stream.as_str(), time);
                pending.index = Some((start, index.clone()));
                index
            }
        }
    }

    fn send(&mut self, stream: StreamName) {
        let pending = &mut self.pending[stream.index()];
        pending.since = None;
        if pending.docs.is_empty() {
            return;
        }
        let docs = std::mem::take(&mut pending.docs);
        let bytes = std::mem::take(&mut pending.bytes);
        let lines = docs.len() as u64;
        self.dispatcher.dispatch(stream, stream.as_str(), docs, lines, bytes);
    }
}

impl Sink for OpenSearchSink {
    fn write(&mut self, stream: StreamName, _stamp: Time, record: &Encoded) -> Result<(), SinkError> {
        self.dispatcher.wrote(stream);
        let index = self.index(stream, record.time);
        let doc = Doc { index, id: doc_id(stream.as_str(), &record.line), line: record.line.clone() };
        let bytes = request_bytes(&doc);
        let pending = &mut self.pending[stream.index()];
        if !pending.docs.is_empty() && pending.bytes + bytes > self.options.batch_bytes {
            self.send(stream);
        }
        let pending = &mut self.pending[stream.index()];
        pending.docs.push(doc);
        pending.bytes += bytes;
        pending.since.get_or_insert_with(Instant::now);
        if pending.docs.len() >= self.options.batch_docs || pending.bytes >= self.options.batch_bytes {
            self.send(stream);
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<(), SinkError> {
        for stream in StreamName::all() {
            if self.pending[stream.index()].since.is_some_and(|s| s.elapsed() >= self.options.buffer_interval) {
                self.send(stream);
            }
        }
        self.dispatcher.settle()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        for stream in StreamName::all() {
            self.send(stream);
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
