//! One `_bulk` request: documents as NDJSON (an `index` action with the index and a deterministic
//! id, then the record's JSON line), and the per-item answer read back: refused items (400-class,
//! such as `mapper_parsing_exception`) are final, 429 and 5xx items are tried again.

use hyper::Method;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::client::{Client, ClientError};
use crate::sinks::delivery::{Attempt, Deliver};

/// One document.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// The index it goes to.
    pub index: String,
    /// Its id: the same record gets the same id, so a repeat overwrites instead of adding.
    pub id: String,
    /// The record's JSON line, newline-terminated.
    pub line: Vec<u8>,
}

/// The id of the record `line` of `stream`: the first 128 bits of SHA-256 over both, in base64url
/// (22 characters). A record written again after a restart is the same line, so the same id.
pub fn doc_id(stream: &str, line: &[u8]) -> String {
    use base64::Engine;
    let mut hash = Sha256::new();
    hash.update(stream.as_bytes());
    hash.update(b"\n");
    hash.update(line.strip_suffix(b"\n").unwrap_or(line));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash.finalize()[..16])
}

/// The bytes the documents take in a request (action line and document).
pub fn request_bytes(doc: &Doc) -> usize {
    doc.index.len() + doc.id.len() + 32 + doc.line.len()
}

/// The NDJSON body of a `_bulk` request.
pub fn body(docs: &[Doc]) -> Vec<u8> {
    let mut out = Vec::with_capacity(docs.iter().map(request_bytes).sum());
    for doc in docs {
        // Index names and ids need no JSON escaping: both are checked or generated (see index.rs).
        out.extend_from_slice(b"{\"index\":{\"_index\":\"");
        out.extend_from_slice(doc.index.as_bytes());
        out.extend_from_slice(b"\",\"_id\":\"");
        out.extend_from_slice(doc.id.as_bytes());
        out.extend_from_slice(b"\"}}\n");
        out.extend_from_slice(&doc.line);
        if !doc.line.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

#[derive(Deserialize)]
struct BulkAnswer {
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::BTreeMap<String, Item>>,
}

#[derive(Deserialize)]
struct Item {
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: String,
}

/// Whether an HTTP status means "try again later" (throttling, server errors, auth that an
/// operator may be fixing).
fn retryable(status: u16) -> bool {
    status == 429 || status >= 500 || status == 401 || status == 403 || status == 408
}

/// How a `_bulk` request of `count` documents went, from its HTTP status and body.
pub fn read_answer(status: u16, text: &str, count: usize) -> Attempt {
    if !(200..300).contains(&status) {
        let short: String = text.chars().take(300).collect();
        return Attempt::Failed { error: format!("HTTP {status}: {short}"), retryable: retryable(status) };
    }
    let answer: BulkAnswer = match serde_json::from_str(text) {
        Ok(a) => a,
        Err(e) => return Attempt::Failed { error: format!("the _bulk answer is not readable: {e}"), retryable: true },
    };
    if !answer.errors {
        return Attempt::Answered(Vec::new());
    }
    if answer.items.len() != count {
        let error = format!("the _bulk answer has {} items for {count} documents", answer.items.len());
        return Attempt::Failed { error, retryable: true };
    }
    let failed = answer.items.iter().enumerate().filter_map(|(i, item)| {
        let item = item.values().next()?;
        if (200..300).contains(&item.status) {
            return None;
        }
        let (kind, reason) = item.error.as_ref().map_or(("", ""), |e| (e.kind.as_str(), e.reason.as_str()));
        Some((i, format!("HTTP {} {kind}: {reason}", item.status), retryable(item.status)))
    });
    Attempt::Answered(failed.collect())
}

/// `_bulk` calls to one cluster.
pub struct BulkApi {
    client: Client,
}

impl BulkApi {
    /// Calls through `client`.
    pub fn new(client: Client) -> Self {
        BulkApi { client }
    }
}

/// Only what `read_answer` reads: the rest of a large answer is not sent.
const BULK_PATH: &str = "/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason";

impl Deliver for BulkApi {
    type Item = Doc;

    fn send(&self, _target: &str, items: &[Doc]) -> impl std::future::Future<Output = Attempt> + Send {
        let request = body(items);
        let count = items.len();
        let client = self.client.clone();
        async move {
            match client.request(Method::POST, BULK_PATH, request, "application/x-ndjson").await {
                Ok(answer) => read_answer(answer.status, &answer.body, count),
                Err(ClientError::Unreachable(e)) => Attempt::Failed { error: e, retryable: true },
                Err(e) => Attempt::Failed { error: e.to_string(), retryable: false },
            }
        }
    }

    fn data(item: &Doc) -> &[u8] {
        &item.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_same_for_the_same_record_only() {
        let a = doc_id("alerts", b"{\"vin\":\"A\"}\n");
        assert_eq!(a, doc_id("alerts", b"{\"vin\":\"A\"}"), "the newline is not part of the record");
        assert_eq!(a.len(), 22);
        assert_ne!(a, doc_id("speeders", b"{\"vin\":\"A\"}\n"));
        assert_ne!(a, doc_id("alerts", b"{\"vin\":\"B\"}\n"));
    }

    #[test]
    fn the_body_is_ndjson_pairs() {
        let docs = vec![Doc { index: "i-1".into(), id: "x".into(), line: b"{\"a\":1}\n".to_vec() }];
        assert_eq!(body(&docs), b"{\"index\":{\"_index\":\"i-1\",\"_id\":\"x\"}}\n{\"a\":1}\n");
    }

    #[test]
    fn refused_items_are_final_and_throttled_ones_are_retried() {
        let text = r#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [avg_speed]"}}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}"#;
        let Attempt::Answered(failed) = read_answer(200, text, 3) else { panic!("answered") };
        assert_eq!(failed.len(), 2);
        assert_eq!(failed[0], (1, "HTTP 400 mapper_parsing_exception: failed to parse field [avg_speed]".to_string(), false));
        assert!(failed[1].2 && failed[1].0 == 2);
        assert_eq!(read_answer(200, r#"{"errors":false}"#, 3), Attempt::Answered(vec![]));
        assert!(matches!(read_answer(503, "busy", 3), Attempt::Failed { retryable: true, .. }));
        assert!(matches!(read_answer(413, "too large", 3), Attempt::Failed { retryable: false, .. }));
        assert!(matches!(read_answer(200, r#"{"errors":true,"items":[]}"#, 3), Attempt::Failed { retryable: true, .. }));
    }
}
