//! Event time: the timestamp type of every stream, and window alignment arithmetic.

/// Event time in milliseconds since the Unix epoch (UTC). The timely timestamp of every stream.
pub type Time = u64;

/// One UTC day in milliseconds.
pub const DAY_MS: Time = 86_400_000;

/// The start of the window of length `size` (aligned to the epoch) that contains `ts`.
///
/// ```
/// assert_eq!(fleetflow_dataflows::time::align(125_000, 60_000), 120_000);
/// ```
#[inline]
pub fn align(ts: Time, size: Time) -> Time {
    ts - ts % size
}

/// Greatest common divisor, used to find the pane size shared by window sizes and slides.
pub fn gcd(a: Time, b: Time) -> Time {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Work held until the frontier passes a time: per time, the capability to emit at it and the state.
pub type Pending<V> = std::collections::BTreeMap<Time, (timely::dataflow::operators::Capability<Time>, V)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_is_half_open() {
        assert_eq!(align(59_999, 60_000), 0);
        assert_eq!(align(60_000, 60_000), 60_000);
        assert_eq!(align(0, 60_000), 0);
    }

    #[test]
    fn gcd_of_windows() {
        assert_eq!(gcd(300_000, 60_000), 60_000);
        assert_eq!(gcd(60_000, 45_000), 15_000);
    }
}
