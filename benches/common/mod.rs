//! What the whole-process benchmarks share: sizes from the environment and the children's memory.

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
