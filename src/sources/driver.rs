//! The source driver: polls this worker's partitions, parses, assigns event time and watermarks,
//! splits readings from late and malformed records, and feeds the dataflow's inputs.
//!
//! Watermark of a partition = highest event time seen there - allowed lateness. A reading below
//! its partition's watermark when it arrives is late. The worker holds its input capability at the
//! lowest watermark of its unfinished partitions (rounded down to the window granularity), so the
//! dataflow's frontier is the job's watermark: the minimum over all partitions of all workers.
//!
//! A partition that may fall silent (Kafka) and has had no data for the idle timeout stops holding
//! the watermark back; when data returns it holds it again, and its readings below the capability
//! (which moved on without it) are late.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetflow_dataflows::time::align;
use fleetflow_dataflows::{Reading, Time};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::unordered_input::UnorderedHandle;
use timely::dataflow::operators::ActivateCapability;

use super::{Partition, Poll, Record, Run, SourceError};
use crate::clock::now_ms;
use crate::operations::metrics::Metrics;
use crate::parse::{parse_line, Parsed};
use crate::rejected::Rejected;

/// An unordered timely input of `D` records.
pub type InputHandle<D> = UnorderedHandle<Time, CapacityContainerBuilder<Vec<D>>>;

/// The inputs a driver feeds, with their capabilities.
pub struct SourceInputs {
    /// Accepted readings, at their bucketed event time.
    pub readings: (InputHandle<Reading>, ActivateCapability<Time>),
    /// Accepted readings that an earlier run read before it stopped exactly: they enter the
    /// windows again, but that run already archived them (`raw`).
    pub reread: (InputHandle<Reading>, ActivateCapability<Time>),
    /// Late readings.
    pub late: (InputHandle<Rejected>, ActivateCapability<Time>),
    /// Malformed records.
    pub errors: (InputHandle<Rejected>, ActivateCapability<Time>),
}

struct PartitionState {
    partition: Box<dyn Partition>,
    max_ts: Option<Time>,
    finished: bool,
    last_data: Instant,
}

impl PartitionState {
    fn watermark(&self, lateness: Time) -> Time {
        self.max_ts.map(|m| m.saturating_sub(lateness)).unwrap_or(0)
    }
}

/// Drives one worker's partitions into the dataflow.
pub struct SourceDriver {
    partitions: Vec<PartitionState>,
    inputs: Option<SourceInputs>,
    lateness: Time,
    granularity: Time,
    metrics: Arc<Metrics>,
    idle_timeout: Option<Duration>,
    clock: Box<dyn Fn() -> Instant>,
    /// The time the inputs' capabilities are at: no reading below it can be sent.
    floor: Time,
    /// Readings more than this many ms ahead of the wall clock are errors (none: no check).
    max_future: Option<Time>,
    /// When all outputs derived from a reading of this event time are delivered (for commits).
    completion: Box<dyn Fn(Time) -> Time>,
    /// The boundary of the checkpoint the dataflow was restored from (0: none): readings before
    /// it that were not late are in the restored state.
    restored: Time,
    accepted: Vec<Reading>,
    reread: Vec<Reading>,
    late: Vec<Rejected>,
    errors: Vec<Rejected>,
}

impl SourceDriver {
    /// A driver over `partitions` (this worker's share), with `lateness` ms of allowed lateness and
    /// timestamps rounded down to `granularity` ms (the tumbling window length).
    pub fn new(
        partitions: Vec<Box<dyn Partition>>,
        inputs: SourceInputs,
        lateness: Time,
        granularity: Time,
        metrics: Arc<Metrics>,
    ) -> Self {
        let now = Instant::now();
        let partitions = partitions
            .into_iter()
            .map(|partition| {
                let max_ts = partition.resumed_max_ts();
                PartitionState { partition, max_ts, finished: false, last_data: now }
            })
            .collect();
        let mut driver = SourceDriver {
            partitions,
            inputs: Some(inputs),
            lateness,
            granularity,
            metrics,
            idle_timeout: None,
            clock: Box::new(Instant::now),
            floor: 0,
            max_future: None,
            completion: Box::new(|ts| ts),
            restored: 0,
            accepted: Vec::new(),
            reread: Vec::new(),
            late: Vec::new(),
            errors: Vec::new(),
        };
        driver.advance();
        driver
    }

    /// Readings more than `limit` ahead of the wall clock go to `errors` (`None`: no check).
    pub fn with_max_future(mut self, limit: Option<Duration>) -> Self {
        self.max_future = limit.map(|d| d.as_millis() as Time);
        self
    }

    /// Lets partitions that may fall silent stop holding the watermark after `timeout` without data.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Sets when the outputs derived from a reading of a given event time are all delivered.
    pub fn with_completion(mut self, completion: impl Fn(Time) -> Time + 'static) -> Self {
        self.completion = Box::new(completion);
        self
    }

    /// The dataflow was restored from a checkpoint at boundary `at`: the inputs start there, and
    /// a reading read again before it that its partition's watermark accepts was accepted before
    /// the checkpoint and is in the restored state, so it is dropped (one below the watermark is
    /// late, as it was).
    pub fn with_restored(mut self, at: Time) -> Self {
        self.restored = at;
        self.floor = self.floor.max(at);
        self.advance();
        self
    }

    /// Where each partition must be read again from to restore a checkpoint at `at` (see
    /// [`Partition::position_at`]).
    pub fn positions_at(&mut self, at: Time, durable: Time, read_all: bool) -> Vec<super::SavedPosition> {
        self.partitions.iter_mut().filter_map(|p| p.partition.position_at(at, durable, read_all)).collect()
    }

    /// Commits a complete checkpoint's positions of this worker's partitions (for monitoring).
    pub fn commit_positions(&mut self, positions: &[super::SavedPosition], durable: Time) -> Result<(), SourceError> {
        for p in &mut self.partitions {
            if let Some(position) = positions.iter().find(|s| s.partition == p.partition.name()) {
                p.partition.commit_position(position, durable)?;
            }
        }
        Ok(())
    }

    /// Commits, in every partition that commits, what the durable frontier has passed.
    pub fn commit(&mut self, durable: Time, force: bool) -> Result<(), SourceError> {
        for p in &mut self.partitions {
            if p.partition.commits() {
                p.partition.commit(durable, force)?;
            }
        }
        Ok(())
    }

    /// The last commit of the run, in every partition that commits: what completes before
    /// `settled` (`Time::MAX`: everything read), with `durable` as the time below which a restart
    /// writes nothing again (see [`Partition::commit_last`]).
    pub fn commit_last(&mut self, settled: Time, durable: Time) -> Result<(), SourceError> {
        for p in &mut self.partitions {
            if p.partition.commits() {
                p.partition.commit_last(settled, durable)?;
            }
        }
        Ok(())
    }

    /// Stops reading: every partition counts as finished and the inputs are closed, so the
    /// dataflow's frontier moves on and every open window closes.
    pub fn close(&mut self) {
        for p in &mut self.partitions {
            p.finished = true;
        }
        self.inputs = None;
    }

    /// Replaces the clock that idleness is measured with (for tests).
    pub fn with_clock(mut self, clock: impl Fn() -> Instant + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    fn idle(&self, p: &PartitionState, now: Instant) -> bool {
        p.partition.may_idle() && self.idle_timeout.is_some_and(|t| now.duration_since(p.last_data) >= t)
    }

    /// This worker's watermark: the lowest over its unfinished partitions that are not idle (`None`
    /// when all are finished). When every unfinished partition is idle, the highest of their
    /// watermarks: the last partition to fall silent does not hold back what it already passed.
    pub fn watermark(&self) -> Option<Time> {
        let now = (self.clock)();
        let unfinished: Vec<&PartitionState> = self.partitions.iter().filter(|p| !p.finished).collect();
        if unfinished.is_empty() {
            return None;
        }
        let holding = unfinished.iter().filter(|p| !self.idle(p, now)).map(|p| p.watermark(self.lateness)).min();
        let watermark = holding.unwrap_or_else(|| unfinished.iter().map(|p| p.watermark(self.lateness)).max().unwrap_or(0));
        Some(watermark.max(self.floor))
    }

    /// Consumer lag of the partitions that know it, by partition name.
    pub fn lags(&self) -> Vec<(String, i64)> {
        self.partitions
            .iter()
            .filter(|p| !p.finished)
            .filter_map(|p| p.partition.lag().map(|l| (p.partition.name().to_string(), l)))
            .collect()
    }

    /// Where the readings' capability is (`None`: the inputs are closed).
    pub fn capability(&self) -> Option<Time> {
        self.inputs.as_ref().map(|i| *i.readings.1.time())
    }

    /// Whether every partition is finished (and the inputs are closed).
    pub fn finished(&self) -> bool {
        self.inputs.is_none()
    }

    /// Reads up to `budget` records over the partitions. `Ready` if more are available now.
    pub fn pump(&mut self, budget: usize) -> Result<Poll, SourceError> {
        if self.inputs.is_none() {
            return Ok(Poll::Finished);
        }
        let active = self.partitions.iter().filter(|p| !p.finished).count().max(1);
        let share = (budget / active).max(1);
        let mut any_ready = false;
        for index in 0..self.partitions.len() {
            if self.partitions[index].finished {
                continue;
            }
            // (A split file's chunk starts from the running maximum the chunks before it reached.)
            let state = &mut self.partitions[index];
            state.max_ts = state.max_ts.max(state.partition.carried_max());
            let status = self.poll_partition(index, share)?;
            self.send();
            match status {
                Poll::Ready => any_ready = true,
                Poll::Pending => {}
                Poll::Finished => self.partitions[index].finished = true,
            }
        }
        self.advance();
        Ok(if self.inputs.is_none() {
            Poll::Finished
        } else if any_ready {
            Poll::Ready
        } else {
            Poll::Pending
        })
    }

    fn poll_partition(&mut self, index: usize, max: usize) -> Result<Poll, SourceError> {
        let (lateness, floor, max_future, restored) = (self.lateness, self.floor, self.max_future, self.restored);
        let judge = Judge { lateness, floor, max_future, wall: now_ms(), restored };
        let completion = &self.completion;
        let now = (self.clock)();
        let (PartitionState { partition, max_ts, last_data, .. }, metrics) = (&mut self.partitions[index], &self.metrics);
        let (accepted, reread, late, errors) = (&mut self.accepted, &mut self.reread, &mut self.late, &mut self.errors);
        let (mut read, mut blank, mut delivered_before) = (0u64, 0u64, [0u64; 2]);
        // Offsets of the rejects of this poll; their positions are asked of the partition afterwards.
        let (mut late_at, mut error_at) = (Vec::new(), Vec::new());
        let tracking = partition.commits();
        let delivered_earlier = partition.delivered_earlier();
        // Per record: when all its outputs are delivered, and when its eager ones (`late`,
        // `errors` at the capability, `raw` at its bucket) are; nothing eager for what an earlier
        // run delivered.
        let (mut runs, mut emitted): (Vec<Run>, Vec<Run>) = (Vec::new(), Vec::new());
        let granularity = self.granularity;
        let status = partition.poll(max, &mut |record, offset| {
            read += 1;
            *last_data = now;
            if let Record::Message { sent, .. } = &record {
                metrics.note_read(offset, *sent);
            }
            // An earlier run that stopped exactly delivered the rejects and raw lines of what it read.
            let again = delivered_earlier.contains(offset);
            // (A reading in a restored checkpoint's state is read but not sent again.)
            let mut restored = false;
            let reading = match judge.judge(record, *max_ts) {
                Verdict::Reading(r) => Some(r),
                Verdict::Restored(r) => {
                    restored = true;
                    Some(r)
                }
                Verdict::Blank => {
                    blank += 1;
                    None
                }
                v @ (Verdict::Late(_) | Verdict::Malformed(_)) if again => {
                    delivered_before[usize::from(matches!(v, Verdict::Malformed(_)))] += 1;
                    None
                }
                Verdict::Malformed(r) => {
                    errors.push(r);
                    error_at.push(offset);
                    None
                }
                Verdict::Late(r) => {
                    late.push(r);
                    late_at.push(offset);
                    None
                }
            };
            // Rejects and blanks are delivered with the capability's time, readings with their windows.
            let Some(reading) = reading else {
                if tracking {
                    Run::push(&mut runs, offset, judge.floor, None);
                    Run::push_exact(&mut emitted, offset, if again { 0 } else { judge.floor });
                }
                return;
            };
            *max_ts = Some(max_ts.map_or(reading.timestamp, |m| m.max(reading.timestamp)));
            if tracking {
                Run::push(&mut runs, offset, completion(reading.timestamp), Some(reading.timestamp));
                Run::push_exact(&mut emitted, offset, if again || restored { 0 } else { align(reading.timestamp, granularity) });
            }
            match (restored, again) {
                (true, _) => {}
                (false, true) => reread.push(reading),
                (false, false) => accepted.push(reading),
            }
        })?;
        if tracking {
            partition.track(&runs, &emitted);
        }
        for (r, offset) in late.iter_mut().zip(late_at).chain(errors.iter_mut().zip(error_at)) {
            r.position = partition.position(offset);
        }
        self.count(read, blank, delivered_before);
        Ok(status)
    }

    /// Counts records read, blank lines, and rejects an earlier run delivered (`late`, `errors`).
    fn count(&self, read: u64, blank: u64, [late, malformed]: [u64; 2]) {
        if read > 0 {
            use std::sync::atomic::Ordering::Relaxed;
            let now = now_ms();
            let _ = self.metrics.first_read_ms.compare_exchange(0, now, Relaxed, Relaxed);
            self.metrics.last_read_ms.fetch_max(now, Relaxed);
        }
        Metrics::add(&self.metrics.records_read, read);
        Metrics::add(&self.metrics.blank, blank);
        Metrics::add(&self.metrics.late, late);
        Metrics::add(&self.metrics.malformed, malformed);
    }

    /// Sends what the last poll produced: readings at their bucketed time, rejects at the capability.
    fn send(&mut self) {
        let Some(inputs) = self.inputs.as_mut() else { return };
        Metrics::add(&self.metrics.readings, (self.accepted.len() + self.reread.len()) as u64);
        Metrics::add(&self.metrics.late, self.late.len() as u64);
        Metrics::add(&self.metrics.malformed, self.errors.len() as u64);
        self.metrics.note_reject("late", self.late.last());
        self.metrics.note_reject("errors", self.errors.last());
        send_readings(&mut inputs.readings, &mut self.accepted, self.granularity);
        send_readings(&mut inputs.reread, &mut self.reread, self.granularity);
        if !self.late.is_empty() {
            let (handle, cap) = &mut inputs.late;
            handle.activate().session(&*cap).give_iterator(self.late.drain(..));
        }
        if !self.errors.is_empty() {
            let (handle, cap) = &mut inputs.errors;
            handle.activate().session(&*cap).give_iterator(self.errors.drain(..));
        }
    }

    /// Moves the capabilities up to the watermark, or drops them when every partition is finished.
    fn advance(&mut self) {
        match self.watermark() {
            None => self.inputs = None,
            Some(watermark) => {
                let time = align(watermark, self.granularity);
                if let Some(inputs) = self.inputs.as_mut() {
                    if *inputs.readings.1.time() < time {
                        inputs.readings.1.downgrade(&time);
                        inputs.reread.1.downgrade(&time);
                        inputs.late.1.downgrade(&time);
                        inputs.errors.1.downgrade(&time);
                        self.floor = time;
                    }
                }
            }
        }
    }
}

/// Sends readings at their bucketed event times and empties `readings`.
fn send_readings(input: &mut (InputHandle<Reading>, ActivateCapability<Time>), readings: &mut Vec<Reading>, granularity: Time) {
    if readings.is_empty() {
        return;
    }
    let (handle, cap) = input;
    // Out-of-order readings around a window boundary alternate between two times: group them
    // (a stable sort, linear on the few runs it finds) so each time is one message, not hundreds.
    readings.sort_by_key(|r| align(r.timestamp, granularity));
    // (Activating the input schedules it: only when there is something to send.)
    let mut output = handle.activate();
    let mut rest = &readings[..];
    while let Some(first) = rest.first() {
        let bucket = align(first.timestamp, granularity);
        let run = rest.iter().take_while(|r| align(r.timestamp, granularity) == bucket).count();
        let delayed = cap.delayed(&bucket);
        output.session(&delayed).give_iterator(rest[..run].iter().copied());
        rest = &rest[run..];
    }
    readings.clear();
}

/// What becomes of one record.
enum Verdict {
    /// A blank line.
    Blank,
    /// An error, with its reason.
    Malformed(Rejected),
    /// A late reading.
    Late(Rejected),
    /// A reading for the windows.
    Reading(Reading),
    /// A reading already in the state a checkpoint restored.
    Restored(Reading),
}

/// The rules a record is judged by, as they stand for one poll.
struct Judge {
    lateness: Time,
    /// The inputs' capability: no reading below it can enter the windows.
    floor: Time,
    max_future: Option<Time>,
    /// Wall-clock now, epoch ms.
    wall: Time,
    /// The restored checkpoint's boundary (0: none).
    restored: Time,
}

impl Judge {
    /// Parses a record and judges it against its partition's highest event time `max_ts`.
    fn judge(&self, record: Record<'_>, max_ts: Option<Time>) -> Verdict {
        let (parsed, raw, key, wall) = match record {
            Record::Line(bytes) => (parse_line(bytes), bytes, None, self.wall),
            Record::Message { payload, key, .. } => (parse_line(payload), payload, key, self.wall),
            Record::Reading(r) => (Parsed::Reading(r), &[][..], None, self.wall),
            Record::Parsed { line, reading, wall } => (Parsed::Reading(reading), line, None, wall),
            Record::Oversized { head, len } => (Parsed::Malformed(crate::parse::oversized(len)), head, None, self.wall),
        };
        let reading = match parsed {
            Parsed::Reading(r) => r,
            Parsed::Blank => return Verdict::Blank,
            Parsed::Malformed(reason) => {
                // An oversized record is kept by its head only: the error says how long it was.
                let kept = if raw.len() > crate::parse::MAX_RECORD_BYTES { &raw[..crate::parse::OVERSIZED_HEAD] } else { raw };
                return Verdict::Malformed(rejected(kept.to_vec(), reason, None));
            }
        };
        let record = || if raw.is_empty() { crate::encode::reading_line(&reading).into_bytes() } else { raw.to_vec() };
        if let Some(key) = key.filter(|k| !k.eq_ignore_ascii_case(reading.vin.as_str().as_bytes())) {
            let reason = format!("message key {:?} is not the reading's vin {}", String::from_utf8_lossy(key), reading.vin);
            return Verdict::Malformed(rejected(raw.to_vec(), reason, None));
        }
        if let Some(ahead) = too_far_ahead(self.max_future, reading.timestamp, wall) {
            // One device with a bad clock must not push the watermark ahead and make every
            // other reading late.
            let reason = format!(
                "timestamp {} ms is {ahead} ms ahead of the wall clock, more than windows.max_future_secs allows",
                reading.timestamp
            );
            return Verdict::Malformed(rejected(record(), reason, None));
        }
        let partition_watermark = max_ts.map_or(0, |m| m.saturating_sub(self.lateness));
        if reading.timestamp < self.restored && reading.timestamp >= partition_watermark {
            return Verdict::Restored(reading);
        }
        let watermark = partition_watermark.max(self.floor);
        if reading.timestamp >= watermark {
            return Verdict::Reading(reading);
        }
        let behind = watermark - reading.timestamp;
        let reason = if partition_watermark > reading.timestamp {
            format!("late: event time {} ms is {behind} ms behind the watermark", reading.timestamp)
        } else {
            format!(
                "late: event time {} ms is {behind} ms behind the job's watermark, which moved on while this partition was idle",
                reading.timestamp
            )
        };
        Verdict::Late(rejected(record(), reason, Some((reading.timestamp, watermark))))
    }
}

/// How far `ts` is ahead of the wall clock `wall` (epoch ms), when that is more than `max_future`
/// allows (`None`: no check): such a reading is an error, and moves no watermark.
pub(crate) fn too_far_ahead(max_future: Option<Time>, ts: Time, wall: Time) -> Option<Time> {
    max_future.and_then(|limit| ts.checked_sub(wall).filter(|ahead| *ahead > limit))
}

/// A rejected record (its position is filled in after the poll).
fn rejected(record: Vec<u8>, reason: String, late: Option<(Time, Time)>) -> Rejected {
    Rejected { record, position: String::new(), reason, timestamp: late.map(|l| l.0), watermark: late.map(|l| l.1), arrived: now_ms() }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;
    use std::rc::Rc;

    use fleetflow_dataflows::Vin;
    use timely::dataflow::operators::core::unordered_input::UnorderedInput;

    use super::*;

    /// A partition fed by the test, that may idle like a Kafka partition.
    struct Scripted {
        name: String,
        queue: Rc<RefCell<VecDeque<Reading>>>,
    }

    impl Partition for Scripted {
        fn name(&self) -> &str {
            &self.name
        }
        fn poll(&mut self, max: usize, emit: &mut dyn FnMut(Record<'_>, u64)) -> Result<Poll, SourceError> {
            for _ in 0..max {
                match self.queue.borrow_mut().pop_front() {
                    Some(r) => emit(Record::Reading(r), r.record_id),
                    None => return Ok(Poll::Pending),
                }
            }
            Ok(Poll::Ready)
        }
        fn may_idle(&self) -> bool {
            true
        }
    }

    /// A dataflow of the driver's four inputs on `worker`.
    fn inputs_on(worker: &mut timely::worker::Worker) -> SourceInputs {
        worker.dataflow::<Time, _, _>(|scope| {
            let (readings, _) = scope.new_unordered_input();
            let (late, _) = scope.new_unordered_input();
            let (errors, _) = scope.new_unordered_input();
            let (reread, _) = scope.new_unordered_input();
            SourceInputs { readings, reread, late, errors }
        })
    }

    fn reading(ts: Time) -> Reading {
        Reading { record_id: ts, timestamp: ts, vin: Vin::parse(b"1HGCM82633A004352").unwrap(), lon: 0.0, lat: 0.0, speed: 1.0 }
    }

    #[test]
    fn idle_partitions_stop_holding_and_hold_again_when_data_returns() {
        timely::execute_directly(|worker| {
            let inputs = inputs_on(worker);
            let (a, b) = (Rc::new(RefCell::new(VecDeque::new())), Rc::new(RefCell::new(VecDeque::new())));
            let parts: Vec<Box<dyn Partition>> =
                vec![Box::new(Scripted { name: "a".into(), queue: a.clone() }), Box::new(Scripted { name: "b".into(), queue: b.clone() })];
            let start = Instant::now();
            let clock = Rc::new(Cell::new(start));
            let c = clock.clone();
            let metrics = Arc::new(Metrics::new(1));
            let mut driver = SourceDriver::new(parts, inputs, 5_000, 60_000, metrics.clone())
                .with_idle_timeout(Duration::from_secs(10))
                .with_clock(move || c.get());

            a.borrow_mut().extend([reading(600_000), reading(700_000)]);
            driver.pump(100).unwrap();
            assert_eq!(driver.watermark(), Some(0), "b has said nothing yet: it holds the watermark");

            clock.set(start + Duration::from_secs(11));
            a.borrow_mut().push_back(reading(800_000));
            driver.pump(100).unwrap();
            assert_eq!(driver.watermark(), Some(795_000), "b is idle: a alone sets the watermark");

            // b returns: a reading below the job's capability (780 s) is late, one above holds again.
            b.borrow_mut().extend([reading(700_000), reading(790_000)]);
            driver.pump(100).unwrap();
            assert_eq!(driver.watermark(), Some(785_000), "b holds the watermark again");
            assert_eq!(Metrics::get(&metrics.late), 1);
            assert_eq!(Metrics::get(&metrics.readings), 4);
        });
    }

    #[test]
    fn restored_from_a_checkpoint_readings_before_it_are_dropped_unless_late() {
        timely::execute_directly(|worker| {
            let inputs = inputs_on(worker);
            let a = Rc::new(RefCell::new(VecDeque::new()));
            let parts: Vec<Box<dyn Partition>> = vec![Box::new(Scripted { name: "a".into(), queue: a.clone() })];
            let metrics = Arc::new(Metrics::new(1));
            let mut driver = SourceDriver::new(parts, inputs, 5_000, 60_000, metrics.clone()).with_restored(120_000);
            assert_eq!(driver.capability(), Some(120_000), "the inputs start at the checkpoint's boundary");
            // Read again from before the boundary: 100 s and 119 s are in the restored state;
            // 130 s and 200 s are new; 150 s is behind its partition's watermark (195 s): late.
            a.borrow_mut().extend([reading(100_000), reading(119_000), reading(130_000), reading(200_000), reading(150_000)]);
            driver.pump(100).unwrap();
            assert_eq!(Metrics::get(&metrics.readings), 2, "130 s and 200 s enter the windows");
            assert_eq!(Metrics::get(&metrics.late), 1, "150 s is late, as it was");
        });
    }
}
