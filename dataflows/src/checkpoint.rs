//! Checkpoints of operator state "as of" event times.
//!
//! A checkpoint boundary is an event time `T`, a multiple of the checkpoint interval (itself a
//! multiple of the tumbling window). The state of the dataflow *as of `T`* is what the readings
//! before `T` produced, and nothing else. It is consistent without barriers because timely tells
//! every operator when its input frontier passes `T`: from then on no input before `T` can arrive.
//! Each stateful operator applies its inputs in time order once the frontier has passed them
//! (inputs at or after `T` wait), so when its frontier passes `T` its state is exactly the state
//! as of `T`, and it saves it ([`OperatorState::passing`]) before applying anything later:
//!
//! - tumbling windows aligned to `T` hold nothing as of `T` (every window ending at or before `T`
//!   is closed and emitted; every open one holds readings at or after `T` only), so they save
//!   nothing: the readings at or after `T` are read again;
//! - sliding windows (daily speeders' days, the alerts' panes) save their open windows, the alert
//!   episodes their vehicles above the threshold, [`crate::windows::Ordered`] each key's state.
//!
//! Outputs before `T` were emitted before the frontier passed `T`; the runtime completes a
//! checkpoint only once its sinks have delivered them (the durable frontier has passed `T`), and
//! records with it, per source partition, where a re-read must start so that every reading at or
//! after `T` is read again. On restore the operators take their state back (each worker the keys
//! it owns, whatever the worker count that saved it), the runtime drops re-read readings before
//! `T` (they are in the state) and writes no output before `T` again.
//!
//! Operators that register here are named; a worker's checkpoint at `T` is complete when every
//! registered operator has saved `T`. An operator whose frontier jumps over several boundaries
//! saves the highest one only, so a boundary may be skipped; the next one is taken.
//!
//! Most operators save a snapshot: their whole state as of `T`. An operator whose state is the
//! records of a recent stretch of event time (the reference join holds every window of the
//! correction horizon, each with its readings' offsets) saves increments instead
//! ([`Checkpoints::increments`]): the records that entered since the latest checkpoint this worker
//! knows to be complete ([`Checkpoints::completed_through`]). The runtime keeps the increments of
//! the complete checkpoints within the operator's horizon and restores all of them: together
//! they hold every record that entered from a complete checkpoint at or before `T - horizon` up
//! to `T` (each part reaches back to a complete checkpoint, so a checkpoint skipped or never
//! completed leaves no gap), some twice; the operator keeps one of each.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::time::{align, Time};

/// Saved states kept per operator until the runtime writes them (older ones are dropped: their
/// checkpoint is skipped, a newer one completes). Each is a copy of the operator's state, so this
/// bounds the memory checkpoints take while the sinks have not yet delivered a boundary; a
/// budget in bytes ([`Checkpoints::with_budget`]) bounds it further.
///
/// The oldest are dropped, never the newest: every worker saves the boundaries its operators'
/// frontiers pass, so the newest are the ones every worker holds, and a checkpoint's parts must
/// all be as of one boundary. (Keeping the oldest waiting and skipping newer ones instead was
/// tried: which boundaries a worker skipped then depended on when it wrote its parts, and the
/// workers' parts of an exact stop disagreed.)
const KEPT: usize = 8;

/// Why restored state could not be used.
#[derive(Debug, thiserror::Error)]
#[error("checkpointed state of operator {operator} cannot be read ({reason}); it was written by another version: remove the state folder to start afresh")]
pub struct RestoreError {
    /// The operator.
    pub operator: String,
    /// What failed.
    pub reason: String,
}

/// What encoding operator states cost on a worker.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Encoded {
    /// Time spent encoding.
    pub time: std::time::Duration,
    /// Bytes encoded.
    pub bytes: u64,
    /// States encoded (one per operator per boundary).
    pub states: u64,
}

/// A saved state's bytes (kept as encoded: a million vehicles' state is hundreds of megabytes,
/// not copied again to be shared).
pub type SavedBytes = Rc<Vec<u8>>;

/// One operator's saved states by boundary, shared with the registry.
type SavedStates = Rc<RefCell<BTreeMap<Time, SavedBytes>>>;

/// What an operator saves at a boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Its whole state as of the boundary.
    Snapshot,
    /// What entered since the latest checkpoint known complete.
    Increments,
}

/// State a restart gives back: what every worker saved as of `at`.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    /// The checkpoint's boundary.
    pub at: Time,
    /// Each operator's saved states, one per worker that saved it.
    pub states: BTreeMap<String, Vec<Vec<u8>>>,
    /// Each increments operator's saved increments: every worker's, of every checkpoint kept
    /// within its horizon (see the module's comment).
    pub increments: BTreeMap<String, Vec<Vec<u8>>>,
}

/// One worker's checkpoint registry: the operators that save state, what they saved, and what a
/// restart gave back. Cloned handles share it.
#[derive(Clone)]
pub struct Checkpoints {
    inner: Rc<RefCell<Registry>>,
}

struct Registry {
    every: Time,
    restored: Option<Restored>,
    errors: Vec<RestoreError>,
    /// Time spent encoding states, their bytes, and how many, since the registry was made.
    encoded: Encoded,
    /// Bytes the saved states may take together (the oldest boundaries are dropped beyond it,
    /// the newest always kept), and how many boundaries were dropped for it.
    budget: u64,
    dropped: u64,
    owner: (usize, usize),
    operators: Vec<(String, SavedStates, Kind)>,
    /// The boundary of the latest checkpoint this worker knows to be complete (the restored one
    /// at first).
    known_complete: Time,
}

impl Checkpoints {
    /// No checkpoints: operators save nothing and start empty.
    pub fn off() -> Self {
        Self::every(0, None, (0, 1))
    }

    /// Checkpoints every `every` ms of event time (0: off), restoring `restored` if given, on
    /// worker `index` of `peers` (which owns the keys routed to it).
    pub fn every(every: Time, restored: Option<Restored>, (index, peers): (usize, usize)) -> Self {
        let registry = Registry {
            every,
            known_complete: restored.as_ref().map_or(0, |r| r.at),
            restored,
            errors: Vec::new(),
            encoded: Default::default(),
            budget: u64::MAX,
            dropped: 0,
            owner: (index, peers.max(1)),
            operators: Vec::new(),
        };
        Checkpoints { inner: Rc::new(RefCell::new(registry)) }
    }

    /// The interval, ms (0: off).
    pub fn interval(&self) -> Time {
        self.inner.borrow().every
    }

    /// Bounds the bytes of the states saved and not yet released to `bytes` together: beyond
    /// it, the oldest boundary saved is dropped by every operator (its checkpoint is skipped;
    /// the newest boundary is always kept, whatever its size).
    pub fn with_budget(self, bytes: u64) -> Self {
        self.inner.borrow_mut().budget = bytes.max(1);
        self
    }

    /// How many boundaries were dropped to keep the saved states within the budget.
    pub fn dropped(&self) -> u64 {
        self.inner.borrow().dropped
    }

    /// The boundary the dataflow was restored as of, if any.
    pub fn restored_at(&self) -> Option<Time> {
        self.inner.borrow().restored.as_ref().map(|r| r.at)
    }

    /// Registers a stateful operator called `name` (a second one of the same name gets `#2`...)
    /// that saves its whole state at each boundary.
    pub fn operator(&self, name: &str) -> OperatorState {
        self.register(name, Kind::Snapshot)
    }

    /// Registers an operator called `name` that saves increments: at each boundary, what entered
    /// since the latest checkpoint known complete ([`OperatorState::known_complete`]); a restore
    /// hands it every increment kept (see the module's comment).
    pub fn increments(&self, name: &str) -> OperatorState {
        self.register(name, Kind::Increments)
    }

    fn register(&self, name: &str, kind: Kind) -> OperatorState {
        let mut registry = self.inner.borrow_mut();
        let taken = registry.operators.iter().filter(|(n, _, _)| n == name || n.starts_with(&format!("{name}#"))).count();
        let name = if taken == 0 { name.to_string() } else { format!("{name}#{}", taken + 1) };
        let saved = Rc::new(RefCell::new(BTreeMap::new()));
        registry.operators.push((name.clone(), saved.clone(), kind));
        let restored = registry.restored.as_mut().map(|r| {
            let states = match kind {
                Kind::Snapshot => r.states.remove(&name),
                Kind::Increments => r.increments.remove(&name),
            };
            (r.at, states.unwrap_or_default())
        });
        let next = restored.as_ref().map_or(0, |(at, _)| at + registry.every.max(1));
        let restored = restored.map(|r| r.1);
        OperatorState { name, every: registry.every, next, saved, restored, owner: registry.owner, registry: Rc::downgrade(&self.inner) }
    }

    /// What encoding states cost so far on this worker.
    pub fn encoded(&self) -> Encoded {
        self.inner.borrow().encoded
    }

    /// The restored states that could not be read (the runtime refuses to run on them).
    pub fn restore_errors(&self) -> Vec<RestoreError> {
        std::mem::take(&mut self.inner.borrow_mut().errors)
    }

    /// The latest boundary every registered operator has saved (none if there is no operator).
    pub fn complete(&self) -> Option<Time> {
        self.complete_all().pop()
    }

    /// Every boundary all registered operators have saved, oldest first.
    pub fn complete_all(&self) -> Vec<Time> {
        let registry = self.inner.borrow();
        let Some(first) = registry.operators.first() else { return Vec::new() };
        let saved: Vec<Time> = first.1.borrow().keys().copied().collect();
        saved.into_iter().filter(|t| registry.operators.iter().all(|(_, s, _)| s.borrow().contains_key(t))).collect()
    }

    /// Every snapshot operator's state saved for boundary `at` (those that saved it).
    pub fn states_at(&self, at: Time) -> Vec<(String, SavedBytes)> {
        self.saved_at(at, Kind::Snapshot)
    }

    /// Every increments operator's increment saved for boundary `at` (those that saved it).
    pub fn increments_at(&self, at: Time) -> Vec<(String, SavedBytes)> {
        self.saved_at(at, Kind::Increments)
    }

    fn saved_at(&self, at: Time, kind: Kind) -> Vec<(String, SavedBytes)> {
        let registry = self.inner.borrow();
        let of_kind = registry.operators.iter().filter(|(_, _, k)| *k == kind);
        of_kind.filter_map(|(name, saved, _)| saved.borrow().get(&at).map(|s| (name.clone(), s.clone()))).collect()
    }

    /// Whether an operator saves increments (the runtime then keeps their history).
    pub fn has_increments(&self) -> bool {
        self.inner.borrow().operators.iter().any(|(_, _, k)| *k == Kind::Increments)
    }

    /// Forgets the states saved for boundaries up to `at`.
    pub fn release_through(&self, at: Time) {
        for (_, saved, _) in &self.inner.borrow().operators {
            saved.borrow_mut().retain(|t, _| *t > at);
        }
    }

    /// The runtime learned that a checkpoint of the state as of `at` is complete: increments
    /// saved from now on start there.
    pub fn completed_through(&self, at: Time) {
        let mut registry = self.inner.borrow_mut();
        registry.known_complete = registry.known_complete.max(at);
    }

    /// Whether any stateful operator registered.
    pub fn has_operators(&self) -> bool {
        !self.inner.borrow().operators.is_empty()
    }

    /// Names of the registered operators.
    pub fn operators(&self) -> Vec<String> {
        self.inner.borrow().operators.iter().map(|(n, _, _)| n.clone()).collect()
    }
}

impl Registry {
    /// Drops the oldest boundary saved, from every operator, while the saved states take more
    /// than the budget and more than one boundary is saved.
    fn keep_within_budget(&mut self) {
        loop {
            let (mut bytes, mut boundaries) = (0u64, std::collections::BTreeSet::new());
            for (_, saved, _) in &self.operators {
                for (t, b) in saved.borrow().iter() {
                    bytes += b.len() as u64;
                    boundaries.insert(*t);
                }
            }
            let Some(&oldest) = boundaries.first().filter(|_| bytes > self.budget && boundaries.len() > 1) else { return };
            for (_, saved, _) in &self.operators {
                saved.borrow_mut().remove(&oldest);
            }
            self.dropped += 1;
        }
    }
}

thread_local! {
    /// The registry of the dataflow being built on this thread (see [`building`]).
    static BUILDING: RefCell<Option<Checkpoints>> = const { RefCell::new(None) };
}

/// While the returned guard lives, operators built on this thread register with `checkpoints`
/// through [`operator_of_dataflow`] (generic operators such as [`crate::windows::Ordered`], which
/// analyses build without a handle to the registry).
pub fn building(checkpoints: &Checkpoints) -> BuildGuard {
    let previous = BUILDING.with(|b| b.replace(Some(checkpoints.clone())));
    BuildGuard { previous }
}

/// Restores the registry that was current before [`building`].
pub struct BuildGuard {
    previous: Option<Checkpoints>,
}

impl Drop for BuildGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        BUILDING.with(|b| *b.borrow_mut() = previous);
    }
}

/// Registers `name` with the registry of the dataflow being built (see [`building`]); off when
/// there is none (a dataflow built outside the runtime, a test).
pub fn operator_of_dataflow(name: &str) -> OperatorState {
    BUILDING.with(|b| b.borrow().clone()).unwrap_or_else(Checkpoints::off).operator(name)
}

/// One stateful operator's side of the registry.
pub struct OperatorState {
    name: String,
    every: Time,
    /// The next boundary to save.
    next: Time,
    saved: SavedStates,
    restored: Option<Vec<Vec<u8>>>,
    owner: (usize, usize),
    registry: std::rc::Weak<RefCell<Registry>>,
}

impl OperatorState {
    /// Before the operator applies inputs at time `t` (or, with `t` its input frontier, after it
    /// applied every input before it): its state now is its state as of every boundary at or
    /// below `t` not saved yet, and the highest of them is saved. `state(boundary)` is called
    /// only then.
    pub fn passing<S: Serialize>(&mut self, t: Time, state: impl FnOnce(Time) -> S) {
        self.passing_encoded(t, |boundary| bincode::serialize(&state(boundary)));
    }

    /// As [`OperatorState::passing`], for an operator that encodes its state itself, as bincode
    /// encodes the type it restores (for a large state: without building a copy of it first).
    pub fn passing_encoded(&mut self, t: Time, encode: impl FnOnce(Time) -> bincode::Result<Vec<u8>>) {
        if self.every == 0 || t == Time::MAX {
            return;
        }
        let boundary = align(t, self.every);
        if boundary < self.next.max(self.every) {
            return;
        }
        // (A state that cannot be encoded is a bug in its type; the boundary is then skipped.)
        let started = std::time::Instant::now();
        let encoded = encode(boundary);
        if let (Some(registry), Ok(bytes)) = (self.registry.upgrade(), &encoded) {
            let mut registry = registry.borrow_mut();
            registry.encoded.time += started.elapsed();
            registry.encoded.bytes += bytes.len() as u64;
            registry.encoded.states += 1;
        }
        if let Ok(bytes) = encoded {
            let mut saved = self.saved.borrow_mut();
            saved.insert(boundary, Rc::new(bytes));
            while saved.len() > KEPT {
                saved.pop_first();
            }
        }
        if let Some(registry) = self.registry.upgrade() {
            registry.borrow_mut().keep_within_budget();
        }
        self.next = boundary + self.every;
    }

    /// Takes the states every worker saved for this operator at the restored checkpoint (empty
    /// when not restoring). The operator keeps the keys it owns ([`OperatorState::owns`]). A
    /// state that cannot be read is left out and reported by [`Checkpoints::restore_errors`].
    pub fn restored<S: DeserializeOwned>(&mut self) -> Vec<S> {
        let parts = self.restored.take().unwrap_or_default();
        let mut states = Vec::with_capacity(parts.len());
        for bytes in &parts {
            match bincode::deserialize(bytes) {
                Ok(s) => states.push(s),
                Err(e) => {
                    if let Some(registry) = self.registry.upgrade() {
                        registry.borrow_mut().errors.push(RestoreError { operator: self.name.clone(), reason: e.to_string() });
                    }
                }
            }
        }
        states
    }

    /// Whether checkpoints are taken.
    pub fn is_on(&self) -> bool {
        self.every > 0
    }

    /// The checkpoint interval, ms (0: off).
    pub fn interval(&self) -> Time {
        self.every
    }

    /// Whether this worker owns a key of routing hash `route` (as timely's exchange routes it).
    pub fn owns(&self, route: u64) -> bool {
        (route % self.owner.1 as u64) as usize == self.owner.0
    }

    /// The operator's registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The boundary of the latest checkpoint this worker knows to be complete (0: none): an
    /// increment saved now must hold everything that entered since.
    pub fn known_complete(&self) -> Time {
        self.registry.upgrade().map_or(0, |r| r.borrow().known_complete)
    }

    /// The boundary the dataflow was restored as of, if any.
    pub fn restored_at(&self) -> Option<Time> {
        self.registry.upgrade().and_then(|r| r.borrow().restored.as_ref().map(|r| r.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_boundary_passed_is_saved_once_and_complete_when_every_operator_has_it() {
        let ck = Checkpoints::every(60_000, None, (0, 1));
        let mut a = ck.operator("a");
        let mut b = ck.operator("a");
        assert_eq!(ck.operators(), ["a", "a#2"]);
        let calls = std::cell::Cell::new(0);
        a.passing(30_000, |_| 1u32);
        assert_eq!(ck.complete(), None, "no boundary passed yet (0 is not one)");
        a.passing(125_000, |_| {
            calls.set(calls.get() + 1);
            2u32
        });
        a.passing(170_000, |_| {
            calls.set(calls.get() + 1);
            3u32
        });
        assert_eq!(calls.get(), 1, "120 s saved once; 170 s passes no new boundary");
        assert_eq!(ck.complete(), None, "b has not saved 120 s");
        b.passing(60_000, |_| 7u32);
        b.passing(130_000, |b| b as u32 / 15_000);
        assert_eq!(ck.complete(), Some(120_000));
        let states = ck.states_at(120_000);
        assert_eq!(bincode::deserialize::<u32>(&states[0].1).unwrap(), 2);
        assert_eq!(bincode::deserialize::<u32>(&states[1].1).unwrap(), 8, "given the boundary");
        ck.release_through(120_000);
        assert!(ck.states_at(120_000).is_empty() && ck.states_at(60_000).is_empty());
    }

    #[test]
    fn a_restore_hands_every_part_back_and_saves_after_it() {
        let mut states = BTreeMap::new();
        states.insert("a".to_string(), vec![bincode::serialize(&vec![1u64, 2]).unwrap(), bincode::serialize(&vec![3u64]).unwrap()]);
        let ck = Checkpoints::every(60_000, Some(Restored { at: 120_000, states, ..Default::default() }), (1, 2));
        let mut a = ck.operator("a");
        assert_eq!(a.restored::<Vec<u64>>(), vec![vec![1, 2], vec![3]]);
        assert!(a.restored::<Vec<u64>>().is_empty(), "taken once");
        assert!(a.owns(3) && !a.owns(4), "worker 1 of 2 owns odd routes");
        a.passing(150_000, |_| 0u8);
        assert_eq!(ck.complete(), None, "the restored boundary is not saved again");
        a.passing(180_000, |_| 0u8);
        assert_eq!(ck.complete(), Some(180_000));
        let mut bad = BTreeMap::new();
        bad.insert("b".to_string(), vec![vec![1u8]]);
        let ck = Checkpoints::every(60_000, Some(Restored { at: 0, states: bad, ..Default::default() }), (0, 1));
        assert!(ck.operator("b").restored::<String>().is_empty());
        let errors = ck.restore_errors();
        assert!(errors.len() == 1 && errors[0].to_string().contains("operator b"), "{errors:?}");
    }

    #[test]
    fn beyond_the_budget_the_oldest_boundaries_are_dropped_by_every_operator_never_the_newest() {
        // Each state is 108 bytes (a vector of 100 bytes and its length); two operators.
        let ck = Checkpoints::every(60_000, None, (0, 1)).with_budget(500);
        let (mut a, mut b) = (ck.operator("a"), ck.operator("b"));
        for t in [60_000, 120_000] {
            a.passing(t, |_| vec![0u8; 100]);
            b.passing(t, |_| vec![0u8; 100]);
        }
        assert_eq!((ck.complete_all(), ck.dropped()), (vec![60_000, 120_000], 0), "432 bytes: within");
        a.passing(180_000, |_| vec![0u8; 100]);
        assert_eq!(ck.complete_all(), [120_000], "540 bytes: 60 s dropped by both; 180 s waits for b");
        b.passing(180_000, |_| vec![0u8; 100]);
        assert_eq!((ck.complete_all(), ck.dropped()), (vec![120_000, 180_000], 1));
        a.passing(240_000, |_| vec![0u8; 1000]);
        b.passing(240_000, |_| vec![0u8; 1000]);
        assert_eq!(ck.complete_all(), [240_000], "the newest is kept, whatever its size");
        assert_eq!(ck.dropped(), 3);
    }

    #[test]
    fn off_saves_nothing() {
        let ck = Checkpoints::off();
        let mut a = ck.operator("a");
        a.passing::<()>(600_000, |_| panic!("not called when off"));
        assert_eq!(ck.complete(), None);
    }
}
