//! What one worker writes for a checkpoint: its operators' states as of the boundary and where
//! each of its source partitions must be read again from.

use fleetflow_dataflows::Time;
use serde::{Deserialize, Serialize};

pub use crate::sources::SavedPosition;

/// One worker's part of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Part {
    /// The boundary: the state is what the readings before it made.
    pub at: Time,
    /// Outputs before this were delivered (the boundary, or the frontier of an exact stop).
    pub durable: Time,
    /// The worker that wrote it, of how many.
    pub worker: usize,
    /// Workers of the job that wrote it.
    pub peers: usize,
    /// What the job computes (windows, analyses): a restore into another refuses.
    pub shape: String,
    /// Each stateful operator's state.
    pub states: Vec<(String, Vec<u8>)>,
    /// This worker's partitions.
    pub positions: Vec<SavedPosition>,
    /// The reference tables this worker read (the first worker), as of the durable frontier:
    /// each table's rows, each row encoded (see `job::reference_versions`).
    pub references: Vec<(String, Vec<Vec<u8>>)>,
}

/// The first bytes of a part in this format. Parts of the two earlier formats are read still (a
/// job upgraded mid-run restores them): the second had no reference tables, the first (no magic)
/// no source state in its positions either.
const MAGIC: &[u8; 8] = b"FFPART03";
const SECOND: &[u8; 8] = b"FFPART02";

impl Part {
    /// The part as stored: the format's magic, then the part.
    pub fn encode(&self) -> Result<Vec<u8>, bincode::Error> {
        let mut bytes = MAGIC.to_vec();
        bincode::serialize_into(&mut bytes, self)?;
        Ok(bytes)
    }

    /// A stored part, of this format or an earlier one.
    pub fn decode(bytes: &[u8]) -> Result<Part, bincode::Error> {
        if let Some(rest) = bytes.strip_prefix(MAGIC) {
            return bincode::deserialize(rest);
        }
        match bytes.strip_prefix(SECOND) {
            Some(rest) => bincode::deserialize::<second::Part<SavedPosition>>(rest).map(Part::from),
            None => bincode::deserialize::<first::Part>(bytes).map(Part::from),
        }
    }
}

/// The second format of a part: this one without reference tables (and, with the first format's
/// positions, the first format).
mod second {
    use fleetflow_dataflows::Time;
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Part<P> {
        pub at: Time,
        pub durable: Time,
        pub worker: usize,
        pub peers: usize,
        pub shape: String,
        pub states: Vec<(String, Vec<u8>)>,
        pub positions: Vec<P>,
    }
}

impl<P: Into<SavedPosition>> From<second::Part<P>> for Part {
    fn from(p: second::Part<P>) -> Self {
        let second::Part { at, durable, worker, peers, shape, states, positions } = p;
        let positions = positions.into_iter().map(Into::into).collect();
        Part { at, durable, worker, peers, shape, states, positions, references: Vec::new() }
    }
}

/// The first format of a part: positions without a source state.
mod first {
    use fleetflow_dataflows::Time;
    use serde::Deserialize;

    pub type Part = super::second::Part<Position>;

    #[derive(Deserialize)]
    pub struct Position {
        pub partition: String,
        pub offset: i64,
        pub max_ts: Option<Time>,
        pub read_to: Option<u64>,
        pub delivered: Vec<(u64, u64)>,
    }
}

impl From<first::Position> for SavedPosition {
    fn from(q: first::Position) -> Self {
        let first::Position { partition, offset, max_ts, read_to, delivered } = q;
        SavedPosition { partition, offset, max_ts, read_to, delivered, source_state: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_this_format_and_of_the_earlier_ones_read_back() {
        let position = SavedPosition {
            partition: "t/0".into(),
            offset: 7,
            max_ts: Some(5),
            read_to: Some(9),
            delivered: vec![(11, 12)],
            source_state: vec![1, 2, 3],
        };
        let part = Part {
            at: 60_000,
            durable: 60_000,
            worker: 1,
            peers: 2,
            shape: "s".into(),
            states: vec![("a".into(), vec![4])],
            positions: vec![position],
            references: vec![("vin_sensors".into(), vec![vec![5, 6]])],
        };
        let back = Part::decode(&part.encode().unwrap()).unwrap();
        assert_eq!((back.at, back.positions.clone(), back.states.clone()), (part.at, part.positions.clone(), part.states.clone()));
        assert_eq!(back.references, part.references);
        // A part of the second format: this one without the reference tables.
        let mut second = SECOND.to_vec();
        let fields = (part.at, part.durable, part.worker, part.peers, &part.shape, &part.states, &part.positions);
        bincode::serialize_into(&mut second, &fields).unwrap();
        let back = Part::decode(&second).unwrap();
        assert_eq!((back.positions, back.references.len()), (part.positions.clone(), 0));
        // A part of the first format: the same fields, positions without a source state.
        #[derive(Serialize)]
        struct FirstPosition<'a>(&'a str, i64, Option<Time>, Option<u64>, Vec<(u64, u64)>);
        #[derive(Serialize)]
        struct FirstPart<'a>(Time, Time, usize, usize, &'a str, Vec<(String, Vec<u8>)>, Vec<FirstPosition<'a>>);
        let old = bincode::serialize(&FirstPart(
            60_000,
            60_000,
            1,
            2,
            "s",
            vec![("a".into(), vec![4])],
            vec![FirstPosition("t/0", 7, Some(5), Some(9), vec![(11, 12)])],
        ))
        .unwrap();
        let back = Part::decode(&old).unwrap();
        let mut expected = part.positions[0].clone();
        expected.source_state.clear();
        assert_eq!((back.shape.as_str(), back.positions), ("s", vec![expected]));
    }
}
