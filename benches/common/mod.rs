//! What the benchmarks share: sizes from the environment, the children's memory, and the job's
//! dataflow built in process.

use fleetflow_dataflows::analysis::{build, Analysis, Core, Settings};
use fleetflow_dataflows::reference::{SensorId, SensorRow};
use fleetflow_dataflows::Time;
use timely::dataflow::operators::Probe;

#[allow(dead_code)] // not every benchmark takes sizes from the environment
/// The number in environment variable `name`, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[allow(dead_code)] // not every benchmark runs several worker counts
/// Worker counts to run, from `FLEETFLOW_BENCH_WORKERS` (e.g. `1,2`, the default).
pub fn worker_counts() -> Vec<usize> {
    std::env::var("FLEETFLOW_BENCH_WORKERS").unwrap_or_else(|_| "1,2".into()).split(',').filter_map(|w| w.trim().parse().ok()).collect()
}

#[allow(dead_code)] // not every benchmark measures memory
/// The largest resident memory of any child process waited for so far, KiB.
pub fn peak_rss_children_kib() -> i64 {
    // SAFETY: getrusage writes into the zeroed struct we pass; no other invariants.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    }
}

/// The job dataflow's inputs: readings, the vin-to-sensor rows, the buggy sensors.
#[allow(dead_code)] // only the benchmarks that build the job's dataflow in process
pub type JobInputs<'s> = (
    timely::dataflow::StreamVec<'s, Time, fleetflow_dataflows::Reading>,
    differential_dataflow::VecCollection<'s, Time, (fleetflow_dataflows::Vin, SensorRow)>,
    differential_dataflow::VecCollection<'s, Time, SensorId>,
);

#[allow(dead_code)] // only the benchmarks that build the job's dataflow in process
/// Builds what `fleetflow run` builds over the given inputs: the core (with the reference join
/// only if `reference`) and `analyses`, every output probed by `probe`; reading offsets are kept
/// when an analysis reads them, as the job decides.
pub fn job_dataflow<'s>(
    (readings, rows, buggy): JobInputs<'s>,
    analyses: &[(&'static dyn Analysis, Settings)],
    reference: bool,
    probe: &timely::dataflow::ProbeHandle<Time>,
) {
    let offsets = analyses.iter().any(|(a, _)| a.uses_offsets(reference));
    let params = fleetflow_dataflows::Params::default();
    let core = Core::new(readings, rows, buggy, &params, offsets, std::rc::Rc::new(|| 0));
    let mut core = if reference { core } else { core.without_reference() };
    build(&mut core, analyses, &mut |_, out| {
        out.probe_with(probe);
    })
    .expect("the analyses build");
}
