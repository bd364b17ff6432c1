//! `FLEETFLOW_OPERATOR_PROFILE=FILE`: where each worker's dataflow spends its time, from timely's
//! own log of operator schedules: per operator, the time in it and how often it ran, and the
//! slowest single runs with when they happened (a window boundary's burst shows as a few long
//! runs). Written to `FILE.w<worker>` when the worker finishes. A tool for finding a stall (see
//! docs/performance.md), off unless the variable is set.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};

/// The slowest runs kept.
const SLOWEST: usize = 40;

#[derive(Default)]
struct Profile {
    names: HashMap<usize, String>,
    started: HashMap<usize, Duration>,
    /// Per operator: time in it, and runs.
    total: HashMap<usize, (Duration, u64)>,
    /// The slowest runs: length, when it started (since the worker started), operator.
    slowest: Vec<(Duration, Duration, usize)>,
}

impl Profile {
    fn note(&mut self, at: Duration, event: &TimelyEvent) {
        match event {
            TimelyEvent::Operates(o) => {
                self.names.insert(o.id, format!("{} {:?}", o.name, o.addr));
            }
            TimelyEvent::Schedule(s) if s.start_stop == StartStop::Start => {
                self.started.insert(s.id, at);
            }
            TimelyEvent::Schedule(s) => {
                let Some(began) = self.started.remove(&s.id) else { return };
                let took = at.saturating_sub(began);
                let total = self.total.entry(s.id).or_default();
                total.0 += took;
                total.1 += 1;
                if self.slowest.len() < SLOWEST || self.slowest.last().is_some_and(|l| l.0 < took) {
                    self.slowest.push((took, began, s.id));
                    self.slowest.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
                    self.slowest.truncate(SLOWEST);
                }
            }
            _ => {}
        }
    }

    fn report(&self, worker: usize) -> String {
        let name = |id: &usize| self.names.get(id).cloned().unwrap_or_else(|| format!("operator {id}"));
        let mut out = format!("worker {worker}: time per operator (ms, runs)\n");
        let mut totals: Vec<_> = self.total.iter().collect();
        totals.sort_unstable_by_key(|(_, (time, _))| std::cmp::Reverse(*time));
        for (id, (time, runs)) in totals {
            let _ = writeln!(out, "{:>10.1} {:>9}  {}", time.as_secs_f64() * 1e3, runs, name(id));
        }
        let _ = writeln!(out, "\nworker {worker}: slowest runs (ms, at s since start)");
        for (took, at, id) in &self.slowest {
            let _ = writeln!(out, "{:>10.1} {:>9.3}  {}", took.as_secs_f64() * 1e3, at.as_secs_f64(), name(id));
        }
        out
    }
}

/// One worker's profile, kept while its dataflow runs.
pub struct OperatorProfile {
    profile: Rc<RefCell<Profile>>,
    path: String,
    worker: usize,
}

impl OperatorProfile {
    /// Starts profiling `worker`'s operators if `FLEETFLOW_OPERATOR_PROFILE` names a file (call
    /// before building the dataflow, so that the operators' names are logged).
    pub fn install(worker: &mut timely::worker::Worker) -> Option<OperatorProfile> {
        let path = std::env::var("FLEETFLOW_OPERATOR_PROFILE").ok().filter(|p| !p.is_empty())?;
        let profile = Rc::new(RefCell::new(Profile::default()));
        let p = profile.clone();
        worker.log_register()?.insert::<TimelyEventBuilder, _>("timely", move |_, data| {
            if let Some(events) = data {
                let mut p = p.borrow_mut();
                for (at, event) in events.iter() {
                    p.note(*at, event);
                }
            }
        });
        Some(OperatorProfile { profile, path, worker: worker.index() })
    }

    /// Writes the profile to `FILE.w<worker>` (best effort: a profile that cannot be written is
    /// logged, the job goes on).
    pub fn write(&self) {
        let path = format!("{}.w{}", self.path, self.worker);
        if let Err(e) = std::fs::write(&path, self.profile.borrow().report(self.worker)) {
            tracing::warn!("operator profile {path}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::logging::{OperatesEvent, ScheduleEvent};

    #[test]
    fn time_per_operator_and_the_slowest_runs_are_reported() {
        let mut p = Profile::default();
        let ms = Duration::from_millis;
        p.note(ms(0), &TimelyEvent::Operates(OperatesEvent { id: 3, addr: vec![0, 3], name: "Sliding".into() }));
        p.note(ms(0), &TimelyEvent::Operates(OperatesEvent { id: 4, addr: vec![0, 4], name: "Tumbling".into() }));
        for (id, start, stop) in [(3, 10, 1_510), (4, 1_510, 1_520), (4, 2_000, 2_002), (3, 3_000, 3_100)] {
            p.note(ms(start), &TimelyEvent::Schedule(ScheduleEvent { id, start_stop: StartStop::Start }));
            p.note(ms(stop), &TimelyEvent::Schedule(ScheduleEvent { id, start_stop: StartStop::Stop }));
        }
        let report = p.report(1);
        let lines: Vec<&str> = report.lines().collect();
        assert!(lines[1].contains("1600.0") && lines[1].contains("2  Sliding [0, 3]"), "{report}");
        assert!(lines[2].contains("12.0") && lines[2].contains("Tumbling"), "{report}");
        let slowest = report.split("slowest").nth(1).unwrap();
        assert!(slowest.lines().nth(1).unwrap().contains("1500.0     0.010  Sliding"), "{report}");
    }
}
