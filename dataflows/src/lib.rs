//! fleetflow's analyses as pure timely/differential dataflow code.
//!
//! Nothing in this crate performs I/O: every analysis is a function (or an extension trait) from
//! timely streams and differential collections to timely streams and differential collections, so
//! each is tested deterministically with hand-built inputs. The runtime (`src/` of the `fleetflow`
//! crate) feeds these with parsed readings and reference data and routes their outputs to sinks.
//!
//! Time: the timely timestamp of every stream here is event time in epoch milliseconds ([`Time`]).
//! Readings travel at a timestamp no later than their own event time (the runtime rounds down to the
//! window granularity), and the input frontier is the job's watermark, so an event-time window is
//! complete exactly when the frontier passes its end.
#![forbid(missing_docs)]

pub mod analyses;
pub mod analysis;
pub mod changelog;
pub mod checkpoint;
pub mod harness;
pub mod output;
pub mod params;
pub mod query;
pub mod reading;
pub mod reference;
pub mod schema;
pub mod stats;
pub mod time;
pub mod windows;

pub use params::Params;
pub use reading::{Reading, Vin, VinError};
pub use time::Time;
