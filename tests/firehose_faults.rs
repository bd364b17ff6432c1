//! The Firehose sink against a small Firehose-compatible server (AWS JSON 1.1 `PutRecordBatch`)
//! that answers by a script: partial failures, throttling, 500s, slow responses and responses
//! that come after the client's timeout. Every record is accepted exactly once (the server counts
//! records only in answers the client received), none is lost, and the bytes in flight at the
//! server never pass the sink's bound.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fleetflow::aws::AwsSettings;
use fleetflow::encode::Encoded;
use fleetflow::operations::metrics::Metrics;
use fleetflow::operations::sink_counters::SinkCounters;
use fleetflow::sinks::delivery::dead_letter::DeadLetter;
use fleetflow::sinks::delivery::retry::RetryPolicy;
use fleetflow::sinks::firehose::{FirehoseOptions, FirehoseSink};
use fleetflow::sinks::Sink;
use fleetflow::stream::StreamName;
use serde_json::{json, Value};

mod common;
use common::files_under;
use common::firehose::{error, records_of};

#[derive(Default)]
struct Server {
    calls: AtomicUsize,
    /// Records accepted, per delivery stream, in answers the client received.
    accepted: Mutex<BTreeMap<String, Vec<String>>>,
    in_flight: Mutex<(usize, usize)>,
    faults: Mutex<BTreeMap<&'static str, usize>>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Answer {
    Ok,
    ServerError,
    Throttled,
    Partial,
    Slow,
    /// Answers 500 after the client gave up (it times out after 1 s).
    TooLate,
}

fn script(call: usize) -> Answer {
    match call % 9 {
        1 => Answer::ServerError,
        2 => Answer::Throttled,
        3 | 7 => Answer::Partial,
        4 => Answer::Slow,
        5 => Answer::TooLate,
        _ => Answer::Ok,
    }
}

async fn handle(state: Arc<Server>, headers: HeaderMap, body: String) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    if target != "Firehose_20150804.PutRecordBatch" {
        return error(400, "UnknownOperationException");
    }
    let (stream, records) = records_of(&body);
    assert!(records.len() <= 500 && records.iter().map(String::len).sum::<usize>() <= 4 << 20, "within the service limits");
    // Counts the request in flight until it is answered or the client goes away.
    struct InFlight(Arc<Server>, usize);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.in_flight.lock().unwrap().0 -= self.1;
        }
    }
    let _counted = {
        let mut f = state.in_flight.lock().unwrap();
        f.0 += body.len();
        f.1 = f.1.max(f.0);
        InFlight(state.clone(), body.len())
    };
    let answer = script(state.calls.fetch_add(1, Ordering::SeqCst));
    *state.faults.lock().unwrap().entry(format!("{answer:?}").leak()).or_default() += 1;
    let response = match answer {
        Answer::ServerError => error(500, "InternalFailure"),
        Answer::Throttled => error(503, "ServiceUnavailableException"),
        Answer::TooLate => {
            // The client gives up after 1 s and closes the connection, which drops this handler.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            error(500, "InternalFailure")
        }
        Answer::Ok | Answer::Slow | Answer::Partial => {
            if answer == Answer::Slow {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let mut responses = Vec::new();
            let mut failed = 0;
            let mut accepted = state.accepted.lock().unwrap();
            for (i, r) in records.into_iter().enumerate() {
                if answer == Answer::Partial && i % 3 == 1 {
                    failed += 1;
                    responses.push(json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"}));
                } else {
                    accepted.entry(stream.clone()).or_default().push(r);
                    responses.push(json!({"RecordId": format!("r{i}")}));
                }
            }
            let body = json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": responses}).to_string();
            (StatusCode::OK, [("content-type", "application/x-amz-json-1.1")], body).into_response()
        }
    };
    response
}

/// Starts the server on a loopback port, on the AWS runtime.
fn start() -> (Arc<Server>, String) {
    start_at("127.0.0.1:0")
}

/// Starts the server at `address`.
fn start_at(address: &str) -> (Arc<Server>, String) {
    let state = Arc::new(Server::default());
    let s = state.clone();
    let app = axum::Router::new().route("/", axum::routing::post(move |h: HeaderMap, b: String| handle(s.clone(), h, b)));
    let rt = fleetflow::aws::runtime();
    let listener = rt.block_on(tokio::net::TcpListener::bind(address)).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    (state, url)
}

fn sink(url: &str, dead: &std::path::Path, max_in_flight: usize, budget: Duration, counters: Arc<SinkCounters>) -> FirehoseSink {
    for (k, v) in [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    let settings =
        AwsSettings { region: Some("us-east-1".into()), endpoint_url: Some(url.into()), request_timeout: Duration::from_secs(1) };
    let client = aws_sdk_firehose::Client::new(&fleetflow::aws::load(&settings, "sinks.test").unwrap());
    let options = FirehoseOptions {
        delivery_stream: "faults-{stream}".into(),
        pack: false,
        buffer_interval: Duration::from_millis(50),
        max_in_flight_bytes: max_in_flight,
        retry: RetryPolicy { base: Duration::from_millis(20), cap: Duration::from_millis(200), budget },
    };
    FirehoseSink::new(client, &options, Arc::new(DeadLetter::new(dead, "test", "w0".into())), counters)
}

#[test]
fn every_record_arrives_exactly_once_through_every_fault() {
    let (server, url) = start();
    let dir = tempfile::tempdir().unwrap();
    let counters = Arc::new(SinkCounters::default());
    let limit = 64 * 1024;
    let mut sink = sink(&url, dir.path(), limit, Duration::from_secs(60), counters.clone());
    let streams = [StreamName::parse("speeders").unwrap(), StreamName::parse("alerts").unwrap()];
    let mut written: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..20_000u32 {
        let stream = streams[(i % 7 == 0) as usize];
        let line = format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat((i % 50) as usize));
        sink.write(stream, 0, &Encoded { line: line.clone().into_bytes(), time: 0, key: None }).unwrap();
        written.entry(format!("faults-{}", stream.as_str())).or_default().push(line);
        if i % 1000 == 0 {
            sink.poll().unwrap();
        }
    }
    sink.flush().unwrap();
    for s in streams {
        assert_eq!(sink.delivered(s), sink.written(s), "after a flush everything is durable");
    }
    let mut accepted = server.accepted.lock().unwrap().clone();
    for lines in accepted.values_mut().chain(written.values_mut()) {
        lines.sort();
    }
    assert_eq!(accepted, written, "each record accepted exactly once");
    let faults = server.faults.lock().unwrap().clone();
    for kind in ["ServerError", "Throttled", "Partial", "Slow", "TooLate"] {
        assert!(faults.get(kind).copied().unwrap_or(0) > 0, "the script played {kind}: {faults:?}");
    }
    let peak = server.in_flight.lock().unwrap().1;
    // Base64 makes a request about 4/3 of its records' bytes, plus JSON framing.
    assert!(peak <= limit * 4 / 3 + 32 * 1024, "bytes in flight stayed bounded: {peak}");
    assert!(Metrics::get(&counters.retried) > 0 && Metrics::get(&counters.dead_lettered) == 0);
    assert_eq!(Metrics::get(&counters.delivered), 20_000);
}

#[test]
fn an_unreachable_endpoint_dead_letters_after_the_budget() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let counters = Arc::new(SinkCounters::default());
    let mut s = sink(&format!("http://127.0.0.1:{port}"), dir.path(), 1 << 20, Duration::from_millis(500), counters.clone());
    for i in 0..10 {
        s.write(StreamName::parse("speeders").unwrap(), 0, &Encoded { line: format!("{i}\n").into_bytes(), time: 0, key: None }).unwrap();
    }
    s.flush().unwrap();
    assert_eq!(s.delivered(StreamName::parse("speeders").unwrap()), 10, "dead-lettered records count as durable");
    assert_eq!(Metrics::get(&counters.dead_lettered), 10);
    let files: Vec<_> = files_under(dir.path());
    let text: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    assert_eq!(text.lines().count(), 10, "each record in the dead-letter folder once");
    assert!(text.contains("dispatch failure") || text.contains("connect"), "{text}");
}

#[test]
fn a_record_above_the_record_limit_is_dead_lettered_and_the_rest_delivered() {
    let (server, url) = start();
    let dir = tempfile::tempdir().unwrap();
    let counters = Arc::new(SinkCounters::default());
    let mut s = sink(&url, dir.path(), 1 << 20, Duration::from_secs(60), counters.clone());
    let huge = format!("{{\"pad\":\"{}\"}}\n", "y".repeat(1_100_000));
    let lines = ["{\"a\":1}\n".to_string(), huge.clone(), "{\"b\":2}\n".to_string()];
    for l in &lines {
        s.write(StreamName::ERRORS, 0, &Encoded { line: l.clone().into_bytes(), time: 0, key: None }).unwrap();
    }
    s.flush().unwrap();
    assert_eq!(s.delivered(StreamName::ERRORS), 3);
    let mut accepted = server.accepted.lock().unwrap().get("faults-errors").cloned().unwrap_or_default();
    accepted.sort();
    assert_eq!(accepted, vec![lines[0].clone(), lines[2].clone()]);
    let dead: Vec<Value> = files_under(dir.path())
        .iter()
        .flat_map(|f| std::fs::read_to_string(f).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<Value>>())
        .collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["data"].as_str().unwrap(), huge);
    assert!(dead[0]["error"].as_str().unwrap().contains("above Firehose's limit"), "{}", dead[0]);
}

#[test]
fn an_outage_shorter_than_the_retry_budget_loses_and_repeats_nothing() {
    // Nothing listens on the port for the first 1.5 s (connections refused), then the server is back.
    let address = format!("127.0.0.1:{}", common::two_free_ports());
    let dir = tempfile::tempdir().unwrap();
    let counters = Arc::new(SinkCounters::default());
    let mut s = sink(&format!("http://{address}"), dir.path(), 1 << 20, Duration::from_secs(60), counters.clone());
    let back = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        start_at(&address).0
    });
    let mut written = Vec::new();
    for i in 0..3_000u32 {
        let line = format!("{{\"n\":{i}}}\n");
        s.write(StreamName::parse("speeders").unwrap(), 0, &Encoded { line: line.clone().into_bytes(), time: 0, key: None }).unwrap();
        written.push(line);
        if i % 100 == 0 {
            s.poll().unwrap();
        }
    }
    s.flush().unwrap();
    let server = back.join().unwrap();
    let mut accepted = server.accepted.lock().unwrap().get("faults-speeders").cloned().unwrap_or_default();
    accepted.sort();
    written.sort();
    assert_eq!(accepted, written, "every record delivered once the endpoint is back, none twice");
    assert!(Metrics::get(&counters.failed_requests) > 0, "the outage was seen");
    assert_eq!(Metrics::get(&counters.dead_lettered), 0);
    assert!(files_under(dir.path()).is_empty(), "nothing dead-lettered");
}
