//! The source driver: polls this worker's partitions, parses, assigns event time and watermarks,
//! splits readings from late and malformed records, and feeds the dataflow's inputs.
//!
//! Watermark of a partition = highest event time seen there - allowed lateness. A reading below
//! its partition's watermark when it arrives is late. The worker holds its input capability at the
//! lowest watermark of its unfinished partitions (rounded down to the window granularity), so the
//! dataflow's frontier is the job's watermark: the minimum over all partitions of all workers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fleetflow_dataflows::time::align;
use fleetflow_dataflows::{Reading, Time};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::unordered_input::UnorderedHandle;
use timely::dataflow::operators::ActivateCapability;

use super::{Partition, Poll, Record, SourceError};
use crate::metrics::Metrics;
use crate::parse::{parse_line, Parsed};
use crate::rejected::Rejected;

/// An unordered timely input of `D` records.
pub type InputHandle<D> = UnorderedHandle<Time, CapacityContainerBuilder<Vec<D>>>;

/// The three inputs a driver feeds, with their capabilities.
pub struct SourceInputs {
    /// Accepted readings, at their bucketed event time.
    pub readings: (InputHandle<Reading>, ActivateCapability<Time>),
    /// Late readings.
    pub late: (InputHandle<Rejected>, ActivateCapability<Time>),
    /// Malformed records.
    pub errors: (InputHandle<Rejected>, ActivateCapability<Time>),
}

struct PartitionState {
    partition: Box<dyn Partition>,
    max_ts: Option<Time>,
    finished: bool,
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
    stop: Arc<AtomicBool>,
    accepted: Vec<Reading>,
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
        stop: Arc<AtomicBool>,
    ) -> Self {
        let partitions = partitions.into_iter().map(|partition| PartitionState { partition, max_ts: None, finished: false }).collect();
        let mut driver = SourceDriver {
            partitions,
            inputs: Some(inputs),
            lateness,
            granularity,
            metrics,
            stop,
            accepted: Vec::new(),
            late: Vec::new(),
            errors: Vec::new(),
        };
        driver.advance();
        driver
    }

    /// The lowest watermark over this worker's unfinished partitions (`None` when all finished).
    pub fn watermark(&self) -> Option<Time> {
        self.partitions.iter().filter(|p| !p.finished).map(|p| p.watermark(self.lateness)).min()
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
        if self.stop.load(Ordering::Relaxed) {
            for p in &mut self.partitions {
                p.finished = true;
            }
        }
        let active = self.partitions.iter().filter(|p| !p.finished).count().max(1);
        let share = (budget / active).max(1);
        let mut any_ready = false;
        for index in 0..self.partitions.len() {
            if self.partitions[index].finished {
                continue;
            }
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
        let lateness = self.lateness;
        let state = &mut self.partitions[index];
        let name = state.partition.name().to_string();
        let max_ts = &mut state.max_ts;
        let (accepted, late, errors) = (&mut self.accepted, &mut self.late, &mut self.errors);
        let (mut read, mut blank) = (0u64, 0u64);
        let status = state.partition.poll(max, &mut |record, offset| {
            read += 1;
            let (reading, raw) = match record {
                Record::Line(bytes) => match parse_line(bytes) {
                    Parsed::Reading(r) => (r, bytes),
                    Parsed::Blank => {
                        blank += 1;
                        return;
                    }
                    Parsed::Malformed(reason) => {
                        errors.push(Rejected {
                            record: bytes.to_vec(),
                            position: format!("{name}:{offset}"),
                            reason,
                            timestamp: None,
                            watermark: None,
                            arrived: now_ms(),
                        });
                        return;
                    }
                },
                Record::Reading(r) => (r, &[][..]),
            };
            if let Some(max) = *max_ts {
                let watermark = max.saturating_sub(lateness);
                if reading.timestamp < watermark {
                    let record = if raw.is_empty() { crate::encode::reading_line(&reading).into_bytes() } else { raw.to_vec() };
                    late.push(Rejected {
                        record,
                        position: format!("{name}:{offset}"),
                        reason: format!(
                            "late: event time {} ms is {} ms behind the watermark",
                            reading.timestamp,
                            watermark - reading.timestamp
                        ),
                        timestamp: Some(reading.timestamp),
                        watermark: Some(watermark),
                        arrived: now_ms(),
                    });
                    return;
                }
            }
            *max_ts = Some(max_ts.map_or(reading.timestamp, |m| m.max(reading.timestamp)));
            accepted.push(reading);
        })?;
        Metrics::add(&self.metrics.records_read, read);
        Metrics::add(&self.metrics.blank, blank);
        Ok(status)
    }

    /// Sends what the last poll produced: readings at their bucketed time, rejects at the capability.
    fn send(&mut self) {
        let Some(inputs) = self.inputs.as_mut() else { return };
        Metrics::add(&self.metrics.readings, self.accepted.len() as u64);
        Metrics::add(&self.metrics.late, self.late.len() as u64);
        Metrics::add(&self.metrics.malformed, self.errors.len() as u64);
        let granularity = self.granularity;
        let (handle, cap) = &mut inputs.readings;
        let mut rest = &self.accepted[..];
        while let Some(first) = rest.first() {
            let bucket = align(first.timestamp, granularity);
            let run = rest.iter().take_while(|r| align(r.timestamp, granularity) == bucket).count();
            let delayed = cap.delayed(&bucket);
            handle.activate().session(&delayed).give_iterator(rest[..run].iter().copied());
            rest = &rest[run..];
        }
        self.accepted.clear();
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
                        inputs.late.1.downgrade(&time);
                        inputs.errors.1.downgrade(&time);
                    }
                }
            }
        }
    }
}

/// Wall-clock now, epoch ms.
pub fn now_ms() -> Time {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Time).unwrap_or(0)
}
