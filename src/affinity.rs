//! Pinning worker threads to CPUs, so that the workers of a process run side by side.
//!
//! Timely workers wake each other constantly (progress and data exchanges), and Linux tends to
//! move a woken thread next to its waker: left alone, two workers of a 2-core machine were seen
//! sharing one core while the other idled, and a window boundary's work then waited on the run
//! queue for milliseconds (`fleetflow bench`, docs/performance.md). A pinned worker stays on its own CPU.

/// Pins the calling thread to the `index`-th CPU (modulo their number) of those it may run on,
/// and returns that CPU's number. Linux only; elsewhere it does nothing and returns `None`.
#[cfg(target_os = "linux")]
pub fn pin_current_thread(index: usize) -> std::io::Result<Option<usize>> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it for this thread (0).
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &allowed) }).collect();
    let Some(&cpu) = cpus.get(index % cpus.len().max(1)) else { return Ok(None) };
    // SAFETY: as above; the set holds the one CPU chosen.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut one) };
    if unsafe { libc::sched_setaffinity(0, size, &one) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Some(cpu))
}

/// Elsewhere than Linux: does nothing.
#[cfg(not(target_os = "linux"))]
pub fn pin_current_thread(_index: usize) -> std::io::Result<Option<usize>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn pins_a_thread_to_one_of_its_allowed_cpus() {
        let allowed = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let (first, wrapped) = std::thread::spawn(move || {
            let first = pin_current_thread(1).unwrap().unwrap();
            // Once pinned, the thread may run on that CPU alone: any index maps to it.
            let wrapped = pin_current_thread(allowed + 5).unwrap().unwrap();
            (first, wrapped)
        })
        .join()
        .unwrap();
        assert_eq!(first, wrapped);
        let here = std::thread::spawn(|| pin_current_thread(0).unwrap().unwrap()).join().unwrap();
        if allowed > 1 {
            assert_ne!(first, here, "index 1 and index 0 are different CPUs");
        }
    }
}
