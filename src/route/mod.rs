//! The route stage: each named output stream goes to the sinks the configuration names for it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub mod operator;

use crate::encode::Encoded;
use crate::operations::metrics::Metrics;
use crate::sinks::{NamedSink, Sink, SinkError};
use crate::stream::{Routes, StreamName};

/// A sink shared by the output operators of one worker.
pub type SharedSink = Rc<RefCell<Box<dyn Sink>>>;

/// How many records of a stream each of its sinks had accepted (and delivered) just after a record
/// was written: the record is durable once every one of them has delivered as many as it accepted.
pub type FlushMark = Vec<(u64, u64)>;

/// The sinks' errors: the first not yet reported by [`Router::check`], and the job's first failure,
/// kept after it was reported (the output operators announce it to every worker before they let
/// go of records it may have lost, see [`crate::failure`]).
#[derive(Default)]
struct Failed {
    unreported: Option<SinkError>,
    first: Option<String>,
}

impl Failed {
    /// A sink reports an error in the same call that settles the records it lost, so the failure
    /// is known here before any output operator sees those records settled.
    fn note(&mut self, e: SinkError) {
        self.first.get_or_insert_with(|| e.to_string());
        self.unreported.get_or_insert(e);
    }
}

/// One worker's routing table: for each stream, the sinks that receive it.
pub struct Router {
    routes: Vec<Vec<SharedSink>>,
    sinks: Vec<SharedSink>,
    metrics: Arc<Metrics>,
    failed: Failed,
    /// The job failed: records are no longer written (counted in `discarded`).
    halted: bool,
    /// Output operators to wake when a flush may have made their records durable.
    activators: Vec<timely::scheduling::Activator>,
    /// Records at timely times below this were delivered by an earlier run (Kafka restart).
    suppress_below: fleetflow_dataflows::Time,
    /// Only window records filed under event times in `[start, end)` are written (a replay's days).
    range: Option<(fleetflow_dataflows::Time, fleetflow_dataflows::Time)>,
    /// Each sink's shared counters (the status page's sink health), in the order of `sinks`.
    health: Vec<Arc<crate::operations::sink_counters::SinkCounters>>,
}

impl Router {
    /// A router over the named `sinks`, sending each stream to the sinks `routes` names for it.
    pub fn new(sinks: Vec<NamedSink>, routes: &Routes, metrics: Arc<Metrics>) -> Self {
        let health = sinks.iter().map(|(name, _)| metrics.sink(name)).collect();
        let sinks: Vec<(String, SharedSink)> = sinks.into_iter().map(|(name, s)| (name, Rc::new(RefCell::new(s)))).collect();
        let mut table = vec![Vec::new(); StreamName::count()];
        for (stream, names) in routes {
            table[stream.index()] = sinks.iter().filter(|(name, _)| names.contains(name)).map(|(_, s)| s.clone()).collect();
        }
        Router {
            routes: table,
            sinks: sinks.into_iter().map(|(_, s)| s).collect(),
            metrics,
            failed: Failed::default(),
            halted: false,
            activators: Vec::new(),
            suppress_below: 0,
            range: None,
            health,
        }
    }

    /// Publishes, as worker `worker`, how many records each sink was handed and has settled.
    pub fn publish(&self, worker: usize) {
        for (sink, counters) in self.sinks.iter().zip(&self.health) {
            let s = sink.borrow();
            let (handed, settled) = StreamName::all().fold((0, 0), |(h, d), n| (h + s.written(n), d + s.delivered(n)));
            counters.ledgers.lock().unwrap_or_else(|p| p.into_inner()).insert(worker, (handed, settled));
        }
    }

    /// Window outputs at timely times below `time` are not written again (an earlier run did).
    pub fn suppress_below(&mut self, time: fleetflow_dataflows::Time) {
        self.suppress_below = time;
        for sink in &self.sinks {
            sink.borrow_mut().resumed_below(time);
        }
    }

    /// Writes only records filed under event times in `[start, end)`, except `late` and `errors`
    /// (a replay reads a margin around its days for context, and writes just its days).
    pub fn keep_only(&mut self, start: fleetflow_dataflows::Time, end: fleetflow_dataflows::Time) {
        self.range = Some((start, end));
    }

    /// Whether a sink of `stream` needs all records of an event hour on one worker.
    pub fn sealed(&self, stream: StreamName) -> bool {
        self.routes[stream.index()].iter().any(|s| s.borrow().sealed())
    }

    /// Whether a sink of `stream` needs all of its records on the job's first worker.
    pub fn gathered(&self, stream: StreamName) -> bool {
        self.routes[stream.index()].iter().any(|s| s.borrow().single_writer())
    }

    /// Lets every sink that commits with checkpoints commit the outputs of checkpoint `c` (see
    /// [`Sink::commit_checkpoint`]); `false` if one cannot at this checkpoint.
    pub fn commit_checkpoint(&mut self, c: &crate::sinks::CheckpointCommit) -> Result<bool, SinkError> {
        for sink in &self.sinks {
            if !sink.borrow_mut().commit_checkpoint(c)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// No record of `stream` below `frontier` will come: lets sealed sinks write complete files.
    pub fn seal(&mut self, stream: StreamName, frontier: fleetflow_dataflows::Time) {
        let mut errors = Vec::new();
        for sink in &self.routes[stream.index()] {
            if let Err(e) = sink.borrow_mut().seal(stream, frontier) {
                errors.push((sink.clone(), e));
            }
        }
        self.note_failures(errors);
    }

    /// Whether a record of `stream` at timely time `time` was already delivered by an earlier run.
    pub fn suppressed(&self, stream: StreamName, time: fleetflow_dataflows::Time) -> bool {
        time < self.suppress_below && !matches!(stream, StreamName::LATE | StreamName::ERRORS)
    }

    /// The job's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether any sink receives `stream` (streams with none are not encoded at all).
    pub fn wants(&self, stream: StreamName) -> bool {
        !self.routes[stream.index()].is_empty()
    }

    /// Registers an output operator to wake after flushes.
    pub fn on_flush(&mut self, activator: timely::scheduling::Activator) {
        self.activators.push(activator);
    }

    /// Where the stream's sinks stand now.
    pub fn mark(&self, stream: StreamName) -> FlushMark {
        self.routes[stream.index()]
            .iter()
            .map(|s| {
                let s = s.borrow();
                (s.written(stream), s.delivered(stream))
            })
            .collect()
    }

    /// Whether any of the stream's sinks delivered records since `mark` was taken.
    pub fn delivered_since(&self, stream: StreamName, mark: &FlushMark) -> bool {
        self.routes[stream.index()].iter().zip(mark).any(|(s, (_, delivered))| s.borrow().delivered(stream) > *delivered)
    }

    /// Whether everything written at `mark` is durable.
    pub fn durable(&self, stream: StreamName, mark: &FlushMark) -> bool {
        self.routes[stream.index()].iter().zip(mark).all(|(s, (written, _))| s.borrow().delivered(stream) >= *written)
    }

    /// Hands a batch of records, produced at dataflow time `stamp`, to the stream's sinks, and
    /// returns how many it handed (records outside [`Router::keep_only`] are not). A sink error is
    /// kept and reported by [`Router::check`]. The shared counters move once per batch.
    pub fn write(&mut self, stream: StreamName, stamp: fleetflow_dataflows::Time, records: &[Encoded]) -> u64 {
        if self.halted {
            Metrics::add(&self.metrics.discarded, records.len() as u64);
            return 0;
        }
        let (mut written, mut outside, mut errors) = (0, 0, Vec::new());
        for record in records {
            if let Some((start, end)) = self.range {
                if !(start..end).contains(&record.time) && !matches!(stream, StreamName::LATE | StreamName::ERRORS) {
                    outside += 1;
                    continue;
                }
            }
            written += 1;
            for sink in &self.routes[stream.index()] {
                if let Err(e) = sink.borrow_mut().write(stream, stamp, record) {
                    errors.push((sink.clone(), e));
                }
            }
        }
        self.note_failures(errors);
        Metrics::add(&self.metrics.outside_range, outside);
        Metrics::add(&self.metrics.out[stream.index()], written);
        written
    }

    fn delivered_count(&self) -> u64 {
        self.sinks.iter().map(|s| StreamName::all().map(|n| s.borrow().delivered(n)).sum::<u64>()).sum()
    }

    fn wake(&self) {
        for a in &self.activators {
            a.activate();
        }
    }

    /// Lets sinks flush on their buffering hints; wakes the output operators if any did.
    pub fn poll(&mut self) {
        let before = self.delivered_count();
        let mut errors = Vec::new();
        for sink in &self.sinks {
            if let Err(e) = sink.borrow_mut().poll() {
                errors.push((sink.clone(), e));
            }
        }
        self.note_failures(errors);
        if self.delivered_count() != before {
            self.wake();
        }
    }

    /// Flushes every sink (at shutdown, and once the sources are done).
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.flush_each(|sink| sink.flush())
    }

    /// This worker is about to write its part of checkpoint `c` (see [`Sink::prepare_checkpoint`]).
    pub fn prepare_checkpoint(&mut self, c: &crate::sinks::CheckpointCommit) -> Result<(), SinkError> {
        self.flush_each(|sink| sink.prepare_checkpoint(c))
    }

    /// This worker learned that checkpoint `name` is complete (see [`Sink::checkpoint_complete`]).
    pub fn checkpoint_complete(&mut self, name: fleetflow_dataflows::Time) -> Result<(), SinkError> {
        self.flush_each(|sink| sink.checkpoint_complete(name))
    }

    /// The job starts from checkpoint `name` (0: none); `first`: on the job's first worker
    /// (see [`Sink::restore_checkpoint`]).
    pub fn restore_checkpoint(&mut self, name: fleetflow_dataflows::Time, first: bool) -> Result<(), SinkError> {
        self.flush_each(|sink| sink.restore_checkpoint(name, first))
    }

    /// An exact stop: every sink delivers what it was given, even files not complete yet.
    pub fn flush_for_stop(&mut self) -> Result<(), SinkError> {
        self.flush_each(|sink| sink.flush_for_stop())
    }

    /// Applies a flush to every sink, keeping the first error, then wakes the output operators.
    fn flush_each(&mut self, flush: impl Fn(&mut Box<dyn Sink>) -> Result<(), SinkError>) -> Result<(), SinkError> {
        let mut errors = Vec::new();
        for sink in &self.sinks {
            if let Err(e) = flush(&mut sink.borrow_mut()) {
                errors.push((sink.clone(), e));
            }
        }
        self.note_failures(errors);
        self.wake();
        self.check()
    }

    /// Notes each sink's error as the job's failure and as that sink's latest error.
    fn note_failures(&mut self, errors: Vec<(SharedSink, SinkError)>) {
        for (sink, e) in errors {
            let i = self.sinks.iter().position(|s| Rc::ptr_eq(s, &sink));
            if let Some(counters) = i.and_then(|i| self.health.get(i)) {
                counters.note_error(&e.to_string());
            }
            self.failed.note(e);
        }
    }

    /// Whether every record written to any sink has been delivered.
    pub fn settled(&self) -> bool {
        self.sinks.iter().all(|s| {
            let s = s.borrow();
            StreamName::all().all(|n| s.delivered(n) >= s.written(n))
        })
    }

    /// Writes nothing more (the job failed, or stopped exactly): [`Router::write`] counts what it is given as discarded.
    pub fn halt(&mut self) {
        if !self.halted {
            for sink in &self.sinks {
                sink.borrow_mut().abandon();
            }
        }
        self.halted = true;
    }

    /// The job's first failure, if it has failed.
    pub fn failure(&self) -> Option<&str> {
        self.failed.first.as_deref()
    }

    /// The first sink error since the last check, if any.
    pub fn check(&mut self) -> Result<(), SinkError> {
        match self.failed.unreported.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
