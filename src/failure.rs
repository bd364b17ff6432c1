//! A worker's failure or its pause for an exact stop, told to every worker of every process
//! through the dataflow.
//!
//! A failed sink settles the records it lost (so the dataflow can drain), and a process's stop flag
//! reaches only its own workers. Without more, the outputs' frontier would move past the lost
//! records and a Kafka source could commit offsets for readings whose outputs were never written,
//! and the other processes of a cluster would read on while the failed one waited for them.
//!
//! So a failure travels as data, broadcast to every worker: the output operators send a notice at
//! the earliest time they still hold (at or before any record the failure may have lost) before they
//! let go of it, and each worker sends one at the readings' frontier when it fails for another
//! reason. Every worker's durable frontier (the probe behind offset commits) passes that time only
//! after its own copy of the notice has arrived, so a worker reads the notice no later than the
//! frontier that would have let it commit past the loss, and commits nothing more.
//!
//! An exact stop (SIGTERM on a Kafka source) travels the same way: a worker that stops reading
//! announces that it has paused. Every worker that hears of a pause pauses too and announces it,
//! so a signal to one process stops the whole cluster. No worker commits before it has heard every
//! worker's pause (until then another could still be reading, and move the frontier), and no
//! worker closes its inputs before it has heard that every worker committed and halted: the
//! frontier would otherwise move past the stop (to the lowest capability left) and close windows
//! that a worker not yet halted would write, partial. A checkpointed job's workers also tell each
//! other which boundaries they hold their state saved as of, for a checkpoint named after a
//! frontier (an exact stop's, an idle input's): it takes the latest that all hold, so that its
//! parts agree.

use std::cell::RefCell;
use std::rc::Rc;

use fleetflow_dataflows::Time;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::unordered_input::{UnorderedHandle, UnorderedInput};
use timely::dataflow::operators::core::Concatenate;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{ActivateCapability, Inspect};
use timely::dataflow::{Scope, StreamVec};

/// What one worker tells every worker.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Notice {
    /// A worker failed, with its error (`worker N failed: ...`).
    Failed(String),
    /// Worker N stopped reading for an exact stop: its readings' capability stays where it is
    /// (the time, or none when its inputs are closed).
    Paused(usize, Option<Time>),
    /// Worker N committed at the exact stop's frontier and writes nothing more.
    Halted(usize),
    /// Worker N holds its state saved as of these boundaries, below the frontier the checkpoint
    /// of this name is taken at: it takes the latest that every worker holds.
    Saved(usize, Time, Vec<Time>),
}

/// Where a worker sends its own notices.
type NoticeInput = UnorderedHandle<Time, CapacityContainerBuilder<Vec<Notice>>>;

/// What a worker has heard from all workers (itself included).
#[derive(Default)]
struct Heard {
    /// The first failure.
    failure: Option<String>,
    /// The workers that have paused, with their readings' capability.
    paused: std::collections::BTreeMap<usize, Option<Time>>,
    /// The workers that have committed an exact stop.
    halted: std::collections::BTreeSet<usize>,
    /// By checkpoint name, the boundaries each worker holds its state saved as of.
    saved: std::collections::BTreeMap<Time, std::collections::BTreeMap<usize, Vec<Time>>>,
}

/// This worker's side of the notices: where it announces its own failure or pause, and what it
/// heard from any worker (itself included).
pub struct FailureNotices {
    /// This worker's notices, at a capability that follows the readings' frontier (dropped once
    /// the readings are done: the dataflow is draining and no worker reads on).
    input: Option<(NoticeInput, ActivateCapability<Time>)>,
    heard: Rc<RefCell<Heard>>,
    announced: bool,
    paused: bool,
    /// The checkpoints this worker told the boundaries it holds for.
    saved: std::collections::BTreeSet<Time>,
}

impl FailureNotices {
    /// Gathers `notices` (the output operators' own) with this worker's announcements, broadcasts
    /// them to every worker and keeps the first heard. Probe the returned stream: its frontier
    /// passes a notice's time only after this worker has heard it.
    pub fn build<'scope>(
        scope: Scope<'scope, Time>,
        notices: Vec<StreamVec<'scope, Time, Notice>>,
    ) -> (Self, StreamVec<'scope, Time, Notice>) {
        let ((handle, cap), own) = scope.new_unordered_input::<CapacityContainerBuilder<Vec<Notice>>>();
        let heard = Rc::new(RefCell::new(Heard::default()));
        let seen = heard.clone();
        let all = scope.concatenate(notices.into_iter().chain(std::iter::once(own))).broadcast().inspect(move |notice: &Notice| {
            let mut seen = seen.borrow_mut();
            match notice {
                Notice::Failed(f) => drop(seen.failure.get_or_insert_with(|| f.clone())),
                Notice::Paused(worker, cap) => drop(seen.paused.insert(*worker, *cap)),
                Notice::Halted(worker) => drop(seen.halted.insert(*worker)),
                Notice::Saved(worker, name, at) => drop(seen.saved.entry(*name).or_default().insert(*worker, at.clone())),
            }
        });
        (FailureNotices { input: Some((handle, cap)), heard, announced: false, paused: false, saved: Default::default() }, all)
    }

    /// Moves this worker's announcement capability up to the readings' frontier (`None`: they are
    /// done, and it is dropped).
    pub fn follow(&mut self, readings: Option<Time>) {
        match readings {
            None => self.input = None,
            Some(t) => {
                if let Some((_, cap)) = self.input.as_mut() {
                    if *cap.time() < t {
                        cap.downgrade(&t);
                    }
                }
            }
        }
    }

    /// Tells every worker that this one failed (once; later calls do nothing).
    pub fn announce(&mut self, failure: &str) {
        if std::mem::replace(&mut self.announced, true) {
            return;
        }
        self.send(Notice::Failed(failure.to_string()));
    }

    /// Tells every worker that worker `index` has paused for an exact stop with its readings'
    /// capability at `cap` (once).
    pub fn announce_pause(&mut self, index: usize, cap: Option<Time>) {
        if !std::mem::replace(&mut self.paused, true) {
            self.send(Notice::Paused(index, cap));
        }
    }

    fn send(&mut self, notice: Notice) {
        if let Some((handle, cap)) = self.input.as_mut() {
            handle.activate().session(&*cap).give(notice);
        }
    }

    /// The first failure heard from any worker, this one's included.
    pub fn heard(&self) -> Option<String> {
        self.heard.borrow().failure.clone()
    }

    /// Whether any worker has paused for an exact stop (then this one must pause too).
    pub fn pause_heard(&self) -> bool {
        !self.heard.borrow().paused.is_empty()
    }

    /// How many workers have paused for an exact stop.
    pub fn paused(&self) -> usize {
        self.heard.borrow().paused.len()
    }

    /// Once all `peers` workers have paused, where the readings' frontier stops: the lowest of
    /// their capabilities (`Some(None)`: every worker's inputs are closed). A worker's own view of
    /// the frontier may lag this (progress travels apart from the notices); this one is final.
    pub fn pause_frontier(&self, peers: usize) -> Option<Option<Time>> {
        let heard = self.heard.borrow();
        (heard.paused.len() >= peers).then(|| heard.paused.values().flatten().min().copied())
    }

    /// Tells every worker that worker `index` committed the exact stop and writes nothing more.
    pub fn announce_halt(&mut self, index: usize) {
        self.send(Notice::Halted(index));
    }

    /// Tells every worker the boundaries worker `index` holds its state saved as of, below the
    /// frontier of the checkpoint named `name` (once a name).
    pub fn announce_saved(&mut self, index: usize, name: Time, boundaries: Vec<Time>) {
        if self.saved.insert(name) {
            self.send(Notice::Saved(index, name, boundaries));
        }
    }

    /// Whether this worker has told the boundaries it holds for the checkpoint named `name`.
    pub fn saved_announced(&self, name: Time) -> bool {
        self.saved.contains(&name)
    }

    /// Once all `peers` workers have told the boundaries they hold for the checkpoint named
    /// `name`: the latest that every one holds (`Some(None)`: none). Each worker saves a boundary when its own operators see their
    /// frontier pass it, and one that sees its frontier jump over a boundary saves only the
    /// latest, so workers can hold different ones; a checkpoint whose parts hold state as of
    /// different boundaries would mix them (see `PartsWritten::agree` in the state store).
    pub fn common_boundary(&self, name: Time, peers: usize) -> Option<Option<Time>> {
        latest_held_by_all(self.heard.borrow().saved.get(&name)?, peers)
    }

    /// How many workers have committed an exact stop: once all have, the inputs may close (the
    /// frontier then moves on, closing windows that no worker writes any more).
    pub fn halted(&self) -> usize {
        self.heard.borrow().halted.len()
    }
}

/// Once all `peers` workers told what they hold (`saved`): the latest boundary every one holds.
fn latest_held_by_all(saved: &std::collections::BTreeMap<usize, Vec<Time>>, peers: usize) -> Option<Option<Time>> {
    if saved.len() < peers {
        return None;
    }
    let mut all = saved.values();
    let first: std::collections::BTreeSet<Time> = all.next().map(|b| b.iter().copied().collect()).unwrap_or_default();
    let common = all.fold(first, |held, b| held.into_iter().filter(|t| b.contains(t)).collect());
    Some(common.last().copied())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use timely::dataflow::operators::vec::Input;
    use timely::dataflow::operators::Probe;
    use timely::dataflow::ProbeHandle;

    use super::*;

    /// Runs two workers: each builds the notices with one stand-in output operator (an input),
    /// does `each(worker index, input, notices)` and steps until the probe is done, checking at
    /// every step that the probe never passes `notice_at` before a notice is heard. Returns what
    /// each worker heard.
    fn two_workers(
        notice_at: Option<Time>,
        each: impl Fn(usize, &mut timely::dataflow::operators::vec::input::Handle<Time, Notice>, &mut FailureNotices) + Send + Sync + 'static,
    ) -> Vec<Option<String>> {
        let heard = Arc::new(Mutex::new(vec![None, None]));
        let out = heard.clone();
        timely::execute(timely::Config::process(2), move |worker| {
            let index = worker.index();
            let probe = ProbeHandle::new();
            let (mut input, mut failures) = worker.dataflow::<Time, _, _>(|scope| {
                let (input, stand_in) = scope.new_input::<Notice>();
                let (failures, all) = FailureNotices::build(scope, vec![stand_in]);
                all.probe_with(&probe);
                (input, failures)
            });
            each(index, &mut input, &mut failures);
            drop(input);
            let mut steps = 0;
            while !probe.done() {
                // The readings' frontier moves on to 100, then they are done.
                failures.follow((steps < 20).then_some(100));
                worker.step();
                steps += 1;
                if let Some(t) = notice_at.filter(|t| !probe.less_equal(t)) {
                    assert!(failures.heard().is_some(), "worker {index}: the frontier passed {t} before the notice at {t} was heard");
                }
            }
            out.lock().unwrap()[index] = failures.heard();
        })
        .unwrap();
        let heard = heard.lock().unwrap().clone();
        heard
    }

    #[test]
    fn every_worker_hears_an_output_operators_notice_before_its_frontier_passes_the_notice() {
        let heard = two_workers(Some(5), |index, input, _| {
            input.advance_to(5);
            if index == 0 {
                input.send(Notice::Failed("worker 0 failed: a sink".to_string()));
            }
        });
        assert_eq!(heard, vec![Some("worker 0 failed: a sink".to_string()); 2]);
    }

    #[test]
    fn an_announced_failure_is_heard_by_every_worker_once() {
        // Announced at the readings' frontier, which has not passed 0 yet.
        let heard = two_workers(Some(0), |index, input, failures| {
            input.advance_to(5);
            if index == 1 {
                failures.announce("worker 1 failed: a source");
                failures.announce("worker 1 failed: again");
            }
        });
        assert_eq!(heard, vec![Some("worker 1 failed: a source".to_string()); 2]);
    }

    #[test]
    fn without_a_failure_nothing_is_heard_and_the_dataflow_completes() {
        let heard = two_workers(None, |_, input, _| input.advance_to(5));
        assert_eq!(heard, vec![None, None]);
    }

    #[test]
    fn the_stop_takes_the_latest_boundary_every_worker_holds() {
        let saved = |each: &[&[Time]]| each.iter().enumerate().map(|(w, b)| (w, b.to_vec())).collect();
        assert_eq!(latest_held_by_all(&saved(&[&[60, 120, 180], &[120, 180, 240], &[180]]), 3), Some(Some(180)));
        assert_eq!(latest_held_by_all(&saved(&[&[60, 120], &[180]]), 2), Some(None), "none in common");
        assert_eq!(latest_held_by_all(&saved(&[&[60, 120]]), 2), None, "one worker has not told yet");
        assert_eq!(latest_held_by_all(&saved(&[&[60]]), 1), Some(Some(60)));
    }

    #[test]
    fn a_pause_and_the_boundaries_held_reach_every_worker_and_each_pauses_in_turn() {
        let paused = Arc::new(Mutex::new(vec![0, 0]));
        let out = paused.clone();
        timely::execute(timely::Config::process(2), move |worker| {
            let index = worker.index();
            let probe = ProbeHandle::new();
            let mut notices = worker.dataflow::<Time, _, _>(|scope| {
                let (notices, all) = FailureNotices::build(scope, Vec::new());
                all.probe_with(&probe);
                notices
            });
            assert!(!notices.pause_heard());
            if index == 1 {
                notices.announce_pause(1, Some(7));
                notices.announce_pause(1, Some(3));
            }
            // (Bounded by time, not steps: the other worker's thread may start late.)
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while notices.paused() < 2 && std::time::Instant::now() < deadline {
                if notices.pause_heard() {
                    notices.announce_pause(index, Some(5 + index as Time));
                }
                notices.follow(Some(100));
                worker.step();
            }
            notices.announce_saved(index, 7, if index == 0 { vec![60, 120, 180] } else { vec![60, 120, 240] });
            notices.announce_saved(index, 9, vec![60 * (index as Time + 1)]);
            let told = |n: &FailureNotices| n.common_boundary(7, 2).is_some() && n.common_boundary(9, 2).is_some();
            while !told(&notices) && std::time::Instant::now() < deadline {
                notices.follow(Some(100));
                worker.step();
            }
            assert_eq!(notices.common_boundary(7, 2), Some(Some(120)), "the latest boundary both hold");
            assert_eq!(notices.common_boundary(9, 2), Some(None), "none in common, for another checkpoint");
            assert_eq!(notices.common_boundary(7, 3), None, "not every worker told");
            assert_eq!(notices.common_boundary(8, 2), None, "nothing told for this one");
            assert_eq!(notices.heard(), None, "a pause is no failure");
            assert_eq!(notices.pause_frontier(2), Some(Some(5)), "the lowest capability announced, each announced once");
            assert_eq!(notices.pause_frontier(3), None, "not every worker paused");
            notices.follow(None);
            while !probe.done() {
                worker.step();
            }
            out.lock().unwrap()[index] = notices.paused();
        })
        .unwrap();
        assert_eq!(*paused.lock().unwrap(), vec![2, 2], "each worker heard both pauses, each once");
    }
}
