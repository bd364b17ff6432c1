//! The analyses' queries by date (see [`fleetflow_dataflows::query`]) as the job answers them: a
//! closed day from the records written for it (kept as they pass the route stage, or read back
//! from a sink that stores them), an open day from every worker's live state plus the records
//! its workers have already written for it. Nothing here knows a query's fields.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetflow_dataflows::query::{by_key, top, QuerySpec};
use fleetflow_dataflows::time::{align, DAY_MS};
use fleetflow_dataflows::Time;
use serde_json::{json, Value};

use crate::encode::Encoded;
use crate::operations::stored_records::StoredRecords;

/// Closed days kept in memory per query (older ones are read back from a sink).
const CLOSED_DAYS_KEPT: usize = 8;
/// How long a query waits for the workers.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a day cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A closed day this run did not see and no sink stores.
    #[error("{date} is closed and its {stream} output is not stored here (route {stream} to a folder sink)")]
    NotStored {
        /// `YYYY-MM-DD`.
        date: String,
        /// The stream that would hold it.
        stream: &'static str,
    },
    /// No enabled analysis declares the query.
    #[error("no enabled analysis answers {0:?}")]
    Unknown(String),
    /// The workers did not answer in time (shutting down).
    #[error("the job did not answer within {QUERY_TIMEOUT:?}")]
    Timeout,
}

/// One query by date of an enabled analysis, with the records of its stream written so far.
pub struct DateQuery {
    /// What the analysis declared.
    pub spec: &'static QuerySpec,
    /// Sinks its stream is routed to that can read records back.
    stores: Vec<Arc<dyn StoredRecords>>,
    /// Rows written by this run, by day (the latest closed days).
    written: Mutex<BTreeMap<Time, Vec<Value>>>,
    /// Days ending at or before this have all their records noted in `written`.
    closed_to: AtomicU64,
}

impl DateQuery {
    /// The query `spec`, reading closed days it did not see from `stores`.
    pub fn new(spec: &'static QuerySpec, stores: Vec<Arc<dyn StoredRecords>>) -> Self {
        DateQuery { spec, stores, written: Mutex::new(BTreeMap::new()), closed_to: AtomicU64::new(0) }
    }

    /// Notes records of the query's stream as they are written (each by the day it is filed at).
    pub fn note(&self, records: &[Encoded]) {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            if let Some(row) = (self.spec.row_of)(&r.line) {
                written.entry(align(r.time, DAY_MS)).or_default().push(row);
            }
        }
        while written.len() > CLOSED_DAYS_KEPT {
            written.pop_first();
        }
    }

    /// Every record of days ending at or before `t` has been noted.
    pub fn closed_to(&self, t: Time) {
        self.closed_to.fetch_max(t, Ordering::Relaxed);
    }

    /// The answer for the UTC day starting at `day`: `{date, source, complete, <name>: rows}`.
    /// For an open day `ask_workers` gives every worker's rows from live state.
    pub fn answer(&self, day: Time, ask_workers: impl FnOnce() -> Result<Vec<Value>, QueryError>) -> Result<Value, QueryError> {
        let date = crate::encode::date(day);
        let closed = day + DAY_MS <= self.closed_to.load(Ordering::Relaxed);
        let noted = self.written.lock().unwrap_or_else(|p| p.into_inner()).get(&day).cloned();
        let (source, mut rows) = if closed {
            let rows = match noted {
                Some(rows) => rows,
                None => self.stored(day).ok_or(QueryError::NotStored { date: date.clone(), stream: self.spec.stream })?,
            };
            ("output", rows)
        } else {
            // Open: the workers' open state, plus the rows of workers that have already closed it.
            let mut rows = noted.unwrap_or_default();
            rows.extend(ask_workers()?);
            ("live", rows)
        };
        by_key(self.spec, &mut rows);
        Ok(json!({ "date": date, "source": source, "complete": closed, self.spec.name: rows }))
    }

    /// The day's `n` rows of the highest rank (none if it cannot be answered).
    pub fn top(&self, day: Time, n: usize, ask_workers: impl FnOnce() -> Result<Vec<Value>, QueryError>) -> Vec<Value> {
        let rows = self.answer(day, ask_workers).ok().and_then(|mut a| a.get_mut(self.spec.name).map(Value::take));
        match rows {
            Some(Value::Array(rows)) => top(self.spec, rows, n),
            _ => Vec::new(),
        }
    }

    /// A closed day's rows from the first sink that stores it.
    fn stored(&self, day: Time) -> Option<Vec<Value>> {
        let lines = self.stores.iter().find_map(|s| s.day(self.spec.stream, day))?;
        Some(lines.iter().filter_map(|l| (self.spec.row_of)(l)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetflow_dataflows::analyses::daily_speeders::SPEEDERS_BY_DATE;

    const DAY: Time = 1_764_028_800_000; // 2025-11-25

    struct Store;
    impl StoredRecords for Store {
        fn day(&self, stream: &str, day: Time) -> Option<Vec<Vec<u8>>> {
            (stream == "daily_speeders" && day == DAY).then(|| {
                vec![
                    br#"{"vin":"B","date":"2025-11-25","speeding_readings":2,"max_speed":70.5}"#.to_vec(),
                    br#"{"vin":"A","date":"2025-11-25","speeding_readings":9,"max_speed":99.0}"#.to_vec(),
                    b"not a record".to_vec(),
                ]
            })
        }
    }

    fn vins(answer: &Value) -> Vec<&str> {
        answer["speeders"].as_array().unwrap().iter().map(|r| r["vin"].as_str().unwrap()).collect()
    }

    #[test]
    fn a_closed_day_not_seen_in_this_run_comes_from_a_sink_that_stores_it() {
        let q = DateQuery::new(&SPEEDERS_BY_DATE, vec![Arc::new(Store)]);
        q.closed_to(DAY + 2 * DAY_MS);
        let never = || -> Result<Vec<Value>, QueryError> { panic!("a closed day does not ask the workers") };
        let answer = q.answer(DAY, never).unwrap();
        assert_eq!((answer["source"].as_str(), answer["complete"].as_bool()), (Some("output"), Some(true)));
        assert_eq!(vins(&answer), ["A", "B"], "ordered by the key field");
        assert!(matches!(q.answer(DAY + DAY_MS, never), Err(QueryError::NotStored { .. })));
        assert_eq!(q.top(DAY, 1, never)[0]["vin"], "A", "the most speeding readings first");
    }

    #[test]
    fn an_open_day_is_the_workers_rows_and_those_already_written() {
        let q = DateQuery::new(&SPEEDERS_BY_DATE, Vec::new());
        let written = Encoded {
            line: br#"{"vin":"C","date":"2025-11-26","speeding_readings":1,"max_speed":66.0}"#.to_vec(),
            time: DAY + DAY_MS,
            key: None,
        };
        q.note(&[written]);
        q.closed_to(DAY + DAY_MS);
        let answer = q.answer(DAY + DAY_MS, || Ok(vec![json!({"vin": "A", "speeding_readings": 3, "max_speed": 80.0})])).unwrap();
        assert_eq!((answer["source"].as_str(), answer["complete"].as_bool()), (Some("live"), Some(false)));
        assert_eq!(vins(&answer), ["A", "C"]);
        assert!(matches!(q.answer(DAY + DAY_MS, || Err(QueryError::Timeout)), Err(QueryError::Timeout)));
    }
}
