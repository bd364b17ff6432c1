//! A vehicle reading and its vehicle identification number (VIN), the records every analysis consumes.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::time::Time;

/// A vehicle identification number: 17 characters of the VIN alphabet (digits and `A`-`Z` without
/// `I`, `O`, `Q`), stored upper-cased inline so readings are `Copy` and hash cheaply.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vin([u8; 17]);

/// Byte-wise order, as `[u8; 17]` orders, compared as one 128-bit number and a byte rather than
/// by `memcmp`: windows closing together (thousands) are sorted by VIN.
impl Ord for Vin {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let split = |v: &Vin| {
            let mut head = [0u8; 16];
            head.copy_from_slice(&v.0[..16]);
            (u128::from_be_bytes(head), v.0[16])
        };
        split(self).cmp(&split(other))
    }
}

impl PartialOrd for Vin {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Hashes as its [`Vin::route`] value: one pass over the bytes, and a well-spread `u64` for the
/// hash maps of the window operators. Fleets number their VINs in sequence, and the derived
/// byte-wise hash spread them so poorly through FxHash that map probes compared keys again and
/// again (window updates took twice as long).
impl std::hash::Hash for Vin {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.worker_hash());
    }
}

/// Why a string is not a VIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VinError {
    /// The VIN does not have exactly 17 characters.
    Length(usize),
    /// A character outside the VIN alphabet, at the given 0-based position.
    Character {
        /// Position of the offending character.
        position: usize,
        /// The offending byte.
        byte: u8,
    },
}

impl fmt::Display for VinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VinError::Length(n) => write!(f, "vin must have 17 characters, found {n}"),
            VinError::Character { position, byte } => {
                if byte.is_ascii_graphic() {
                    write!(
                        f,
                        "vin character {:?} at position {} is not in the VIN alphabet (0-9, A-Z except I, O, Q)",
                        *byte as char,
                        position + 1
                    )
                } else {
                    write!(f, "vin byte 0x{byte:02x} at position {} is not in the VIN alphabet (0-9, A-Z except I, O, Q)", position + 1)
                }
            }
        }
    }
}

impl std::error::Error for VinError {}

impl Vin {
    /// Parses a VIN, accepting lowercase letters (they are upper-cased).
    ///
    /// ```
    /// use fleetflow_dataflows::Vin;
    /// let vin = Vin::parse(b"1hgcm82633a004352").unwrap();
    /// assert_eq!(vin.as_str(), "1HGCM82633A004352");
    /// assert!(Vin::parse(b"1HGCM82633A00435O").is_err()); // 'O' is not a VIN character
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Vin, VinError> {
        if bytes.len() != 17 {
            return Err(VinError::Length(bytes.len()));
        }
        let mut out = [0u8; 17];
        for (position, (&b, o)) in bytes.iter().zip(out.iter_mut()).enumerate() {
            let up = b.to_ascii_uppercase();
            let ok = up.is_ascii_digit() || (up.is_ascii_uppercase() && !matches!(up, b'I' | b'O' | b'Q'));
            if !ok {
                return Err(VinError::Character { position, byte: b });
            }
            *o = up;
        }
        Ok(Vin(out))
    }

    /// The VIN as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and letters are ever stored, checked in `parse`.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// A stable 64-bit hash (FNV-1a), the same in every process, used to route a VIN to a worker.
    #[inline]
    pub fn worker_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in &self.0 {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

impl fmt::Display for Vin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Vin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vin({})", self.as_str())
    }
}

/// One sensor reading: `record_id timestamp vin lon lat speed`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The producer's record identifier.
    pub record_id: u64,
    /// Event time, epoch milliseconds.
    pub timestamp: Time,
    /// The vehicle.
    pub vin: Vin,
    /// Longitude in degrees, in [-180, 180].
    pub lon: f64,
    /// Latitude in degrees, in [-90, 90].
    pub lat: f64,
    /// Speed in mph, finite, in [0, 300].
    pub speed: f64,
}

/// Speeds are summed as integer micro-mph so that averages do not depend on the order in which
/// readings arrive (floating-point addition is not associative), and so on the worker count.
pub const MICRO: f64 = 1_000_000.0;

impl Reading {
    /// The speed in integer micro-mph (rounded), the unit sums and averages are computed in.
    #[inline]
    pub fn speed_micro(&self) -> u64 {
        (self.speed * MICRO).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vins_order_as_their_bytes() {
        let vins: Vec<Vin> = [
            "1HGCM82633A000001",
            "1HGCM82633A000002",
            "1HGCM82633A00000Z",
            "ZZZZZZZZZZZZZZZZ0",
            "0000000000000000Z",
            "1HGCM82633B000001",
            "2HGCM82633A000000",
        ]
        .iter()
        .map(|v| Vin::parse(v.as_bytes()).unwrap())
        .collect();
        for a in &vins {
            for b in &vins {
                assert_eq!(a.cmp(b), a.0.cmp(&b.0), "{a} vs {b}");
                assert_eq!(a.partial_cmp(b), Some(a.0.cmp(&b.0)));
            }
        }
    }
}
