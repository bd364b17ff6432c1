//! Live queries: questions an analysis answers from its state while the job runs.
//!
//! A query is by UTC date: "the rows of my output stream `stream` for this day". Once the day is
//! closed its answer is the stream's records filed on that day, as written; while it is open, each
//! worker answers from the analysis's state between two steps ([`LiveQuery::open_rows`]), and the
//! union of the workers' rows with the records already written for the day is the day so far.
//! The analysis declares its queries in its [`crate::analysis::Spec`] and publishes the state that
//! answers them with [`crate::analysis::Context::live_query`]; the runtime serves every declared
//! query alike (the HTTP API at `/<name>?date=YYYY-MM-DD`, the status page's tables), knowing none
//! of their fields.

use serde_json::Value;

use crate::time::Time;

/// A query by date an analysis declares.
#[derive(Debug)]
pub struct QuerySpec {
    /// Its name: the HTTP API answers it at `/<name>?date=YYYY-MM-DD`.
    pub name: &'static str,
    /// What it answers, in words.
    pub about: &'static str,
    /// The output stream (of the same analysis) whose records settle a day: a closed day's answer.
    pub stream: &'static str,
    /// The answer row of one record of `stream` (its JSON line), or none if the line is not one.
    pub row_of: fn(&[u8]) -> Option<Value>,
    /// The field rows are ordered by (ascending) and told apart by.
    pub key_field: &'static str,
    /// The field a "top" table ranks rows by (descending).
    pub rank_field: &'static str,
    /// The answer's fields with a heading each, in the order a table shows them.
    pub columns: &'static [(&'static str, &'static str)],
}

/// The state that answers a query on one worker, published by its analysis.
pub trait LiveQuery {
    /// The query answered.
    fn spec(&self) -> &'static QuerySpec;

    /// This worker's rows for the UTC day starting at `day` (epoch ms) from state whose records
    /// are not written yet: what the stream will say of the day if no more readings come, less
    /// what it has already said.
    fn open_rows(&self, day: Time) -> Vec<Value>;
}

/// Orders `rows` by the query's key field.
pub fn by_key(spec: &QuerySpec, rows: &mut [Value]) {
    rows.sort_by(|a, b| compare(&a[spec.key_field], &b[spec.key_field]));
}

/// The `n` rows of the highest rank (ties by key).
pub fn top(spec: &QuerySpec, mut rows: Vec<Value>, n: usize) -> Vec<Value> {
    rows.sort_by(|a, b| compare(&b[spec.rank_field], &a[spec.rank_field]).then_with(|| compare(&a[spec.key_field], &b[spec.key_field])));
    rows.truncate(n);
    rows
}

/// Numbers by value, text by text, numbers before text.
fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.as_str().cmp(&b.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    static SPEC: QuerySpec =
        QuerySpec { name: "q", about: "", stream: "s", row_of: |_| None, key_field: "vin", rank_field: "n", columns: &[] };

    #[test]
    fn rows_by_key_and_top_by_rank_then_key() {
        let mut rows = vec![json!({"vin": "B", "n": 2}), json!({"vin": "A", "n": 2}), json!({"vin": "C", "n": 10})];
        by_key(&SPEC, &mut rows);
        assert_eq!(rows.iter().map(|r| r["vin"].as_str().unwrap()).collect::<String>(), "ABC");
        let top = top(&SPEC, rows, 2);
        assert_eq!(top, vec![json!({"vin": "C", "n": 10}), json!({"vin": "A", "n": 2})], "10 before 2 (numbers, not text)");
    }
}
