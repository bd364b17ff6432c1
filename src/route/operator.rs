//! The route operator: where an output stream of the dataflow meets the [`Router`], holding a
//! capability for what its sinks have not delivered yet (the durable frontier), and the taps that
//! feed the live state and latency measurements after a hand-off.

use std::sync::Arc;

use fleetflow_dataflows::Time;
use timely::dataflow::channels::pact::Pipeline as Local;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::Router;
use crate::encode::Encoded;
use crate::failure::Notice;
use crate::operations::live_state::LiveState;
use crate::operations::metrics::Metrics;
use crate::stream::{StreamName, Timing};

/// Attaches an output stream to the router: hand each encoded record to the stream's sinks.
///
/// The returned stream's frontier is how far this stream's output is durable: the operator holds a
/// capability for the times of records its sinks have not flushed yet, so a probe on it tells what
/// every worker has delivered (what Kafka offsets may be committed for). Its records are failure
/// notices (see [`crate::failure`]). `tap` sees each batch after its hand-off, with its timely time,
/// and then the input frontier.
pub fn route<'scope>(
    stream: StreamVec<'scope, Time, Encoded>,
    name: StreamName,
    router: &std::rc::Rc<std::cell::RefCell<Router>>,
    mut tap: impl FnMut(&[Encoded], Time, Option<Time>) + 'static,
) -> StreamVec<'scope, Time, Notice> {
    let router = router.clone();
    let wanted = router.borrow().wants(name);
    let stream = to_writers(stream, name, &router.borrow());
    let scope = stream.scope();
    let worker = scope.index();
    stream.unary_frontier(Local, name.as_str(), move |_cap, info| {
        router.borrow_mut().on_flush(scope.activator_for(info.address));
        // Times not yet durable, with where the sinks stood when they were written.
        let mut held: Vec<(crate::route::FlushMark, timely::dataflow::operators::Capability<Time>)> = Vec::new();
        let mut announced = false;
        move |(input, frontier),
              output: &mut timely::dataflow::operators::generic::OutputBuilderSession<
            '_,
            Time,
            timely::container::CapacityContainerBuilder<Vec<Notice>>,
        >| {
            input.for_each_stamp(|cap, data| {
                let mut router = router.borrow_mut();
                let time = cap.least().copied().unwrap_or(0);
                let mut wrote = false;
                for batch in data {
                    if wanted && !router.suppressed(name, time) {
                        wrote |= router.write(name, time, batch) > 0;
                        if name.timing() == Timing::WindowClose {
                            // Windows travel at their last millisecond: they ended at `time + 1`.
                            router.metrics().windows_handed_off(time + 1, batch.len() as u64);
                        }
                    }
                    tap(batch, time, None);
                    batch.clear();
                }
                if wrote {
                    if let Some(c) = cap.retain_least(0) {
                        // One entry per time, waiting for the latest records written at it (or one
                        // per flush, when nothing was flushed since the last entry was written).
                        let mark = router.mark(name);
                        let merge = held.last().is_some_and(|(m, last)| last.time() == c.time() || !router.delivered_since(name, m));
                        match held.last_mut() {
                            Some((m, last)) if merge => {
                                *m = mark;
                                if c.time() < last.time() {
                                    *last = c;
                                }
                            }
                            _ => held.push((mark, c)),
                        }
                    }
                }
            });
            let sealed_to = frontier.frontier().first().copied().unwrap_or(Time::MAX);
            tap(&[], sealed_to, Some(sealed_to));
            if wanted {
                router.borrow_mut().seal(name, sealed_to);
            }
            let router = router.borrow();
            if !announced {
                // The job failed: before letting go of records the failure may have lost (a failed
                // sink settles them), tell every worker at the earliest time still held, so none
                // commits offsets past them (see `failure`).
                if let (Some(failure), Some((_, cap))) = (router.failure(), held.iter().min_by_key(|(_, c)| *c.time())) {
                    output.session(cap).give(Notice::Failed(format!("worker {worker} failed: {failure}")));
                    announced = true;
                }
            }
            held.retain(|(mark, _)| !router.durable(name, mark));
        }
    })
}

/// Moves the records of `name` to the workers whose sinks write them.
fn to_writers<'scope>(stream: StreamVec<'scope, Time, Encoded>, name: StreamName, router: &Router) -> StreamVec<'scope, Time, Encoded> {
    use timely::dataflow::operators::core::Exchange;
    if router.gathered(name) {
        // A sink that commits its writes in one transaction has one writer.
        stream.exchange(|_: &Encoded| 0)
    } else if router.sealed(name) {
        // Sealed files hold all records of one event hour: they are gathered on its owner.
        let peers = stream.scope().peers();
        stream.exchange(move |record: &Encoded| {
            crate::sinks::folder::staged::owner(record.time / crate::stored_files::layout::HOUR_MS, peers) as u64
        })
    } else {
        stream
    }
}

/// A batch handed off (with its timely time), or the input frontier (with no batch).
pub type Tap = Box<dyn FnMut(&[Encoded], Time, Option<Time>)>;

/// What the runtime does with a batch of a stream after its hand-off: feed the live state behind
/// the HTTP API and the latency measurements.
pub fn tap_for(name: StreamName, live: &Arc<LiveState>, metrics: &Arc<Metrics>) -> Tap {
    let (live, metrics) = (live.clone(), metrics.clone());
    let answers: Vec<usize> =
        live.date_queries.iter().enumerate().filter(|(_, q)| q.spec.stream == name.as_str()).map(|(i, _)| i).collect();
    if !answers.is_empty() {
        // The stream answers queries by date: its records as written, and which days are closed.
        return Box::new(move |records, _, frontier| {
            for q in answers.iter().map(|i| &live.date_queries[*i]) {
                q.note(records);
                if let Some(f) = frontier {
                    q.closed_to(f);
                }
            }
        });
    }
    match name.timing() {
        Timing::Detection => Box::new(move |alerts, time, _| {
            if alerts.is_empty() {
                return;
            }
            // Alerts travel at their window's last millisecond.
            metrics.alerts_handed_off(std::iter::repeat_n(time + 1, alerts.len()));
            live.note_alerts(alerts)
        }),
        Timing::WindowClose | Timing::Untimed => Box::new(|_, _, _| {}),
    }
}
