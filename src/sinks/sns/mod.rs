//! The Amazon SNS sink: one message per record (alerts, typically) to a topic, sent with
//! `PublishBatch` (up to 10 messages, 256 KiB a call) at most `max_per_sec` messages a second
//! per process. Each message has a readable subject and body (the body ends with the record's
//! JSON line) and message attributes `vin`, `kind`, `window` and `window_start` for
//! subscription filter policies. Retried and dead-lettered like the Firehose sink.

pub mod build;
mod config;
pub use config::SnsConfig;

use std::num::NonZeroU32;
use std::sync::Arc;

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use aws_sdk_sns::Client;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;

use crate::encode::Encoded;
use crate::operations::sink_counters::SinkCounters;
use crate::sinks::delivery::dead_letter::DeadLetter;
use crate::sinks::delivery::dispatch::Dispatcher;
use crate::sinks::delivery::retry::RetryPolicy;
use crate::sinks::delivery::{classify, Attempt, Deliver};
use crate::sinks::{Sink, SinkError};
use crate::stream::StreamName;

/// Messages per `PublishBatch` call.
pub const MAX_MESSAGES_PER_CALL: usize = 10;
/// Bytes per call (and so per message), all messages and attributes together.
pub const MAX_BYTES_PER_CALL: usize = 256 * 1024;
/// Characters in a subject.
pub const MAX_SUBJECT_CHARS: usize = 100;

/// One message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The subject line.
    pub subject: String,
    /// The body: a readable sentence, a blank line, the record's JSON line.
    pub body: String,
    /// Filterable attributes.
    pub attributes: Vec<(&'static str, String)>,
    /// The record as written (kept for the dead-letter folder).
    pub line: Vec<u8>,
}

impl Message {
    /// Bytes SNS counts for the message.
    pub fn size(&self) -> usize {
        self.subject.len() + self.body.len() + self.attributes.iter().map(|(k, v)| k.len() + v.len() + "String".len()).sum::<usize>()
    }
}

/// The message for a record of `stream`.
pub fn message(stream: StreamName, record: &Encoded) -> Message {
    let json = String::from_utf8_lossy(&record.line).trim_end().to_string();
    let value: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
    let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
    let vin = text("vin");
    let (start, end) = (text("window_start"), text("window_end"));
    let avg = value.get("avg_speed").and_then(Value::as_f64);
    let detection = stream.timing() == crate::stream::Timing::Detection;
    let (subject, sentence) = match (detection, &vin, &start, &end, avg) {
        (true, Some(vin), Some(s), Some(e), Some(avg)) => (
            format!("Speeding alert: {vin} averaged {avg:.1} mph"),
            format!("Vehicle {vin} averaged {avg:.1} mph over the window from {s} to {e}."),
        ),
        (_, Some(vin), _, _, _) => {
            (format!("fleetflow {}: {vin}", stream.as_str()), format!("A {} record for vehicle {vin}.", stream.as_str()))
        }
        _ => (format!("fleetflow {}", stream.as_str()), format!("A {} record.", stream.as_str())),
    };
    let mut attributes = vec![("kind", stream.as_str().to_string())];
    if let Some(v) = vin {
        attributes.push(("vin", v));
    }
    if let (Some(s), Some(e)) = (&start, &end) {
        attributes.push(("window", format!("{s}/{e}")));
        attributes.push(("window_start", s.clone()));
    }
    Message { subject: subject_line(&subject), body: format!("{sentence}\n\n{json}"), attributes, line: record.line.clone() }
}

/// A subject SNS accepts: printable ASCII, no line breaks, at most 100 characters.
fn subject_line(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(MAX_SUBJECT_CHARS).collect()
}

/// `PublishBatch` calls, rate-limited.
pub struct SnsApi {
    client: Client,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl SnsApi {
    /// Calls through `client`, sharing `limiter` with the process's other instances of the sink.
    pub fn new(client: Client, limiter: Arc<DefaultDirectRateLimiter>) -> Self {
        SnsApi { client, limiter }
    }
}

/// A limiter of `per_sec` messages a second (bursts up to one call's worth).
pub fn limiter(per_sec: u32) -> Arc<DefaultDirectRateLimiter> {
    let rate = NonZeroU32::new(per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(MAX_MESSAGES_PER_CALL as u32).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)))
}

impl Deliver for SnsApi {
    type Item = Message;

    fn send(&self, target: &str, items: &[Message]) -> impl std::future::Future<Output = Attempt> + Send {
        let entries: Result<Vec<PublishBatchRequestEntry>, _> = items
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut e = PublishBatchRequestEntry::builder().id(i.to_string()).subject(&m.subject).message(&m.body);
                for (k, v) in &m.attributes {
                    e = e.message_attributes(*k, MessageAttributeValue::builder().data_type("String").string_value(v).build()?);
                }
                e.build()
            })
            .collect();
        let request = entries.map(|e| self.client.publish_batch().topic_arn(target).set_publish_batch_request_entries(Some(e)));
        let (limiter, n) = (self.limiter.clone(), items.len() as u32);
        async move {
            let request = match request {
                Ok(r) => r,
                Err(e) => return Attempt::Failed { error: e.to_string(), retryable: false },
            };
            if let Some(n) = NonZeroU32::new(n) {
                // A call never holds more than the burst, so this cannot fail; wait for the tokens.
                let _ = limiter.until_n_ready(n).await;
            }
            match request.send().await {
                Ok(out) => Attempt::Answered(
                    out.failed()
                        .iter()
                        .filter_map(|f| {
                            let index = f.id().parse::<usize>().ok()?;
                            let retryable = !f.sender_fault() || crate::sinks::delivery::retryable_code(f.code());
                            Some((index, format!("{}: {}", f.code(), f.message().unwrap_or("")), retryable))
                        })
                        .collect(),
                ),
                Err(e) => classify(&e),
            }
        }
    }

    fn data(item: &Message) -> &[u8] {
        &item.line
    }
}

/// Publishes output streams to an SNS topic.
pub struct SnsSink {
    dispatcher: Dispatcher<SnsApi>,
    topic_arn: String,
    pending: Vec<Vec<Message>>,
}

impl SnsSink {
    /// A sink publishing to `topic_arn`.
    pub fn new(
        api: SnsApi,
        topic_arn: String,
        retry: RetryPolicy,
        dead_letter: Arc<DeadLetter>,
        counters: Arc<SinkCounters>,
        max_in_flight_bytes: usize,
    ) -> Self {
        SnsSink {
            dispatcher: Dispatcher::new(Arc::new(api), retry, dead_letter, counters, max_in_flight_bytes),
            topic_arn,
            pending: StreamName::all().map(|_| Vec::new()).collect(),
        }
    }

    fn send(&mut self, stream: StreamName) {
        let pending = std::mem::take(&mut self.pending[stream.index()]);
        let mut batch: Vec<Message> = Vec::new();
        let mut bytes = 0;
        for m in pending {
            if !batch.is_empty() && (batch.len() == MAX_MESSAGES_PER_CALL || bytes + m.size() > MAX_BYTES_PER_CALL) {
                let n = batch.len() as u64;
                self.dispatcher.dispatch(stream, &self.topic_arn, std::mem::take(&mut batch), n, bytes);
                bytes = 0;
            }
            bytes += m.size();
            batch.push(m);
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            self.dispatcher.dispatch(stream, &self.topic_arn, batch, n, bytes);
        }
    }
}

impl Sink for SnsSink {
    fn write(&mut self, stream: StreamName, _stamp: fleetflow_dataflows::Time, record: &Encoded) -> Result<(), SinkError> {
        self.dispatcher.wrote(stream);
        let m = message(stream, record);
        if m.size() > MAX_BYTES_PER_CALL {
            self.send(stream);
            let error = format!("a message of {} bytes is above SNS's limit of {MAX_BYTES_PER_CALL} bytes", m.size());
            return self.dispatcher.refuse(stream, &self.topic_arn.clone(), &error, &record.line);
        }
        self.pending[stream.index()].push(m);
        if self.pending[stream.index()].len() >= MAX_MESSAGES_PER_CALL {
            self.send(stream);
        }
        Ok(())
    }

    /// Alerts should not wait: whatever is pending goes out at every poll.
    fn poll(&mut self) -> Result<(), SinkError> {
        for stream in StreamName::all() {
            if !self.pending[stream.index()].is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_read_well_and_carry_filterable_attributes() {
        let line = b"{\"vin\":\"1HGCM82633A004352\",\"window_start\":\"2025-11-25T10:00:00.000Z\",\"window_end\":\"2025-11-25T10:05:00.000Z\",\"avg_speed\":84.25}\n";
        let m = message(StreamName::named("alerts"), &Encoded { line: line.to_vec(), time: 0, key: None });
        assert_eq!(m.subject, "Speeding alert: 1HGCM82633A004352 averaged 84.2 mph");
        assert!(m.body.starts_with(
            "Vehicle 1HGCM82633A004352 averaged 84.2 mph over the window from 2025-11-25T10:00:00.000Z to 2025-11-25T10:05:00.000Z."
        ));
        assert_eq!(m.body.lines().last().unwrap().as_bytes(), &line[..line.len() - 1]);
        assert!(m.attributes.contains(&("vin", "1HGCM82633A004352".to_string())));
        assert!(m.attributes.contains(&("kind", "alerts".to_string())));
        assert!(m.attributes.contains(&("window", "2025-11-25T10:00:00.000Z/2025-11-25T10:05:00.000Z".to_string())));
    }

    #[test]
    fn any_record_gets_a_valid_subject() {
        let m = message(StreamName::ERRORS, &Encoded { line: b"{\"record\":\"\\u00e9\\n\"}\n".to_vec(), time: 0, key: None });
        assert_eq!(m.subject, "fleetflow errors");
        let long = format!("{{\"vin\":\"{}\"}}\n", "\u{e9}".repeat(200));
        let m = message(StreamName::named("speeders"), &Encoded { line: long.into_bytes(), time: 0, key: None });
        assert!(m.subject.len() <= MAX_SUBJECT_CHARS && m.subject.is_ascii());
    }

    #[test]
    fn the_limiter_holds_the_rate() {
        let limiter = limiter(20);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let started = std::time::Instant::now();
        rt.block_on(async {
            for _ in 0..5 {
                limiter.until_n_ready(NonZeroU32::new(10).unwrap()).await.unwrap();
            }
        });
        // 50 messages at 20/s with a burst of 10: at least 2 s.
        assert!(started.elapsed() >= std::time::Duration::from_millis(1900), "{:?}", started.elapsed());
    }
}
