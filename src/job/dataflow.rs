//! One worker's dataflow: the source inputs, the analyses over the readings and the reference
//! tables, a route operator for every output stream, and the notices that carry failures and
//! pauses to every worker (see [`crate::failure`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use fleetflow_dataflows::analysis::{Analysis, Core, Settings};
use fleetflow_dataflows::query::LiveQuery;
use fleetflow_dataflows::{Reading, Time};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::unordered_input::UnorderedInput;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Inspect, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};

use super::references::{Sessions, TableFile};
use super::JobError;
use crate::encode;
use crate::failure::FailureNotices;
use crate::operations::alert_positions::Watcher;
use crate::operations::live_state::LiveState;
use crate::operations::metrics::Metrics;
use crate::rejected::Rejected;
use crate::route::operator::{route, tap_for};
use crate::route::Router;
use crate::sources::driver::SourceInputs;
use crate::stream::StreamName;

/// What building the dataflow hands the worker loop.
pub struct Built {
    /// The inputs the source driver feeds.
    pub inputs: SourceInputs,
    /// This worker's side of the failure and pause notices.
    pub notices: FailureNotices,
    /// The state the analyses published for their queries by date.
    pub queries: Vec<Box<dyn LiveQuery>>,
    /// The readings' frontier: the job's watermark.
    pub watermark: ProbeHandle<Time>,
    /// The outputs' frontier: what every worker's sinks have delivered (behind the notices).
    pub durable: ProbeHandle<Time>,
}

/// The analyses to build, with their settings.
pub type Analyses = [(&'static dyn Analysis, Settings)];

/// Builds the dataflow on `worker`: readings and rejects from the source inputs, the analyses
/// over them and over `sessions`' reference tables, each output routed by `router`.
pub fn build(
    worker: &mut timely::worker::Worker,
    config: &crate::config::Config,
    (analyses, tables): (&Analyses, &[TableFile]),
    router: &Rc<RefCell<Router>>,
    sessions: &mut Sessions,
    (live, metrics): (&Arc<LiveState>, &Arc<Metrics>),
    checkpoints: &fleetflow_dataflows::checkpoint::Checkpoints,
) -> Result<Built, JobError> {
    let (watermark_probe, done_probe) = (ProbeHandle::new(), ProbeHandle::new());
    let params = config.params();
    worker.dataflow::<Time, _, _>(|scope| {
        let ((readings_handle, readings_cap), readings) = scope.new_unordered_input();
        let ((late_handle, late_cap), late) = scope.new_unordered_input::<CapacityContainerBuilder<Vec<Rejected>>>();
        let ((errors_handle, errors_cap), errors) = scope.new_unordered_input::<CapacityContainerBuilder<Vec<Rejected>>>();
        let ((reread_handle, reread_cap), reread) = scope.new_unordered_input();
        let readings: StreamVec<'_, Time, Reading> = readings;
        // Each output operator's failure notices (see `failure`).
        let mut notices = Vec::new();
        if router.borrow().wants(StreamName::RAW) {
            // Only when routed: a second consumer of the readings costs a copy of every batch.
            // (Readings an earlier run archived before it stopped exactly are not archived again.)
            notices.push(route(readings.clone().map(|r| encode::raw(&r)), StreamName::RAW, router, |_, _, _| {}));
        }
        let readings = readings.concat(reread).probe_with(&watermark_probe);
        // Where the vehicles of the latest alerts are, for the status page (built on every process).
        let (serving, mut watcher) = (live.serving.load(std::sync::atomic::Ordering::Relaxed), Watcher::new(live.alert_positions.clone()));
        let readings = readings.inspect_core(move |event| {
            if let (true, Ok((_, batch))) = (serving, event) {
                watcher.observe(batch);
            }
        });
        let rows = sessions.rows.to_collection(scope);
        let buggy = sessions.buggy.to_collection(scope);
        // (Every reading's offset is kept in its window only for an analysis that reads them.)
        let keep_offsets = analyses.iter().any(|(a, _)| a.uses_offsets(config.reference.vin_sensors.is_some()));
        let clock: fleetflow_dataflows::analysis::Clock = Rc::new(crate::clock::now_ms);
        let mut core = Core::new(readings, rows, buggy, &params, keep_offsets, clock).with_checkpoints(checkpoints.clone());
        if config.reference.vin_sensors.is_none() {
            core = core.without_reference();
        }
        for ((analysis, table, _), session) in tables.iter().zip(sessions.tables.iter_mut()) {
            core.add_table(analysis, table.name, session.to_collection(scope));
        }
        // Each output is attached to its sinks as its analysis declares it, so the first streams
        // are handed off before later analyses run in the same step.
        let attach: &mut fleetflow_dataflows::analysis::OutputSink<'_, '_> = &mut |stream, records| {
            let name = StreamName::parse(stream).unwrap_or(StreamName::ERRORS);
            notices.push(route(records, name, router, tap_for(name, live, metrics)));
        };
        let published = fleetflow_dataflows::analysis::build(&mut core, analyses, attach);
        // The latest window of each vehicle, for the HTTP API (after the outputs' hand-off). Built
        // whether or not this process serves the API: every process of a cluster must build the
        // same dataflow (one without an API would otherwise mismatch channels and stall progress).
        let (l, serving) = (live.clone(), live.serving.load(std::sync::atomic::Ordering::Relaxed));
        core.speed_windows().inspect_core(move |event| {
            if let (true, Ok((_, windows))) = (serving, event) {
                l.note_windows(windows);
            }
        });
        notices.push(route(late.map(|r| encode::rejected(&r)), StreamName::LATE, router, |_, _, _| {}));
        notices.push(route(errors.map(|r| encode::rejected(&r)), StreamName::ERRORS, router, |_, _, _| {}));
        let (failures, notices) = FailureNotices::build(scope, notices);
        notices.probe_with(&done_probe);
        let inputs = SourceInputs {
            readings: (readings_handle, readings_cap),
            reread: (reread_handle, reread_cap),
            late: (late_handle, late_cap),
            errors: (errors_handle, errors_cap),
        };
        let queries = published?;
        if let Some(e) = checkpoints.restore_errors().into_iter().next() {
            return Err(JobError::Checkpoint(e.to_string()));
        }
        Ok(Built { inputs, notices: failures, queries, watermark: watermark_probe.clone(), durable: done_probe.clone() })
    })
}
