//! What one worker writes for a checkpoint's increments operators (see
//! `fleetflow_dataflows::checkpoint`): the records that entered them since the latest complete
//! checkpoint. Kept apart from the worker's part, so that pruning can drop an old checkpoint's
//! parts (whole state) and keep its increments while they are within the correction horizon.

use fleetflow_dataflows::Time;
use serde::{Deserialize, Serialize};

/// One worker's increments for a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Increments {
    /// The checkpoint's boundary.
    pub at: Time,
    /// What the job computes (a restore into another refuses, as for parts).
    pub shape: String,
    /// Each increments operator's increment.
    pub increments: Vec<(String, Vec<u8>)>,
}

/// The first bytes of an increments file.
const MAGIC: &[u8; 8] = b"FFINCR01";

impl Increments {
    /// The increments as stored: the format's magic, then the increments.
    pub fn encode(&self) -> Result<Vec<u8>, bincode::Error> {
        let mut bytes = MAGIC.to_vec();
        bincode::serialize_into(&mut bytes, self)?;
        Ok(bytes)
    }

    /// Stored increments.
    pub fn decode(bytes: &[u8]) -> Result<Increments, bincode::Error> {
        match bytes.strip_prefix(MAGIC) {
            Some(rest) => bincode::deserialize(rest),
            None => Err(Box::new(bincode::ErrorKind::Custom("not an increments file of this version".into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_read_back_and_other_bytes_are_refused() {
        let i = Increments { at: 60_000, shape: "s".into(), increments: vec![("buggy_devices.held".into(), vec![1, 2])] };
        assert_eq!(Increments::decode(&i.encode().unwrap()).unwrap(), i);
        assert!(Increments::decode(b"FFPART03").is_err());
    }
}
