//! A Firehose-compatible endpoint (AWS JSON 1.1 `PutRecordBatch`) in the test process, which a
//! test can take down and bring back: while down it answers every call with 503
//! `ServiceUnavailableException`, as Firehose does when it sheds load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};

/// The delivery stream and the records (decoded) of a `PutRecordBatch` body.
pub fn records_of(body: &str) -> (String, Vec<String>) {
    let request: Value = serde_json::from_str(body).expect("a PutRecordBatch body");
    let stream = request["DeliveryStreamName"].as_str().expect("DeliveryStreamName").to_string();
    let data = |r: &Value| base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().expect("Data")).expect("base64");
    let records = request["Records"].as_array().expect("Records").iter().map(|r| String::from_utf8(data(r)).expect("UTF-8")).collect();
    (stream, records)
}

/// An error answer as Firehose gives it.
pub fn error(status: u16, kind: &str) -> Response {
    let body = json!({"__type": kind, "message": "scripted fault"}).to_string();
    (StatusCode::from_u16(status).expect("a status"), [("content-type", "application/x-amz-json-1.1")], body).into_response()
}

/// The endpoint's state: what it accepted, and whether it is down.
#[derive(Default)]
pub struct Endpoint {
    /// Records accepted, per delivery stream, in the order they came.
    pub accepted: Mutex<BTreeMap<String, Vec<String>>>,
    /// Calls refused while down.
    pub refused: AtomicUsize,
    down: AtomicBool,
}

impl Endpoint {
    /// Starts an endpoint on a loopback port: it and its URL.
    pub fn start() -> (Arc<Endpoint>, String) {
        let state = Arc::new(Endpoint::default());
        let s = state.clone();
        let app = axum::Router::new().route("/", axum::routing::post(move |h: HeaderMap, b: String| s.clone().answer(h, b)));
        let rt = fleetflow::aws::runtime();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        rt.spawn(async move { axum::serve(listener, app).await });
        (state, url)
    }

    /// Takes the endpoint down (`true`) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The records accepted for `delivery_stream`.
    pub fn records(&self, delivery_stream: &str) -> Vec<String> {
        self.accepted.lock().expect("not poisoned").get(delivery_stream).cloned().unwrap_or_default()
    }

    async fn answer(self: Arc<Self>, headers: HeaderMap, body: String) -> Response {
        let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
        if target == "Firehose_20150804.DescribeDeliveryStream" {
            let name: Value = serde_json::from_str(&body).unwrap_or_default();
            let description = json!({
                "DeliveryStreamName": name["DeliveryStreamName"],
                "DeliveryStreamARN": "arn:aws:firehose:us-east-1:123456789012:deliverystream/test",
                "DeliveryStreamStatus": "ACTIVE",
                "DeliveryStreamType": "DirectPut",
                "VersionId": "1",
                "Destinations": [],
                "HasMoreDestinations": false
            });
            return (
                StatusCode::OK,
                [("content-type", "application/x-amz-json-1.1")],
                json!({"DeliveryStreamDescription": description}).to_string(),
            )
                .into_response();
        }
        if target != "Firehose_20150804.PutRecordBatch" {
            return error(400, "UnknownOperationException");
        }
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return error(503, "ServiceUnavailableException");
        }
        let (stream, records) = records_of(&body);
        let responses: Vec<Value> = (0..records.len()).map(|i| json!({"RecordId": format!("r{i}")})).collect();
        self.accepted.lock().expect("not poisoned").entry(stream).or_default().extend(records);
        let body = json!({"FailedPutCount": 0, "Encrypted": false, "RequestResponses": responses}).to_string();
        (StatusCode::OK, [("content-type", "application/x-amz-json-1.1")], body).into_response()
    }
}
