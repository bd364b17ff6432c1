//! The parser under generated input (proptest; thousands of cases a run, shrunk on failure):
//! it never panics, a reading written out parses back to itself in both formats, and a damaged
//! record is an error whose reason names what is wrong, never a different reading.

use fleetflow::encode::reading_line;
use fleetflow::parse::{parse_line, Parsed, MAX_RECORD_BYTES};
use fleetflow_dataflows::{Reading, Vin};
use proptest::prelude::*;

const VIN_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";

fn vin() -> impl Strategy<Value = Vin> {
    proptest::collection::vec(proptest::sample::select(VIN_ALPHABET), 17).prop_map(|b| Vin::parse(&b).expect("VIN alphabet"))
}

fn reading() -> impl Strategy<Value = Reading> {
    (any::<u64>(), any::<u64>(), vin(), -180.0f64..=180.0, -90.0f64..=90.0, 0.0f64..=300.0)
        .prop_map(|(record_id, timestamp, vin, lon, lat, speed)| Reading { record_id, timestamp, vin, lon, lat, speed })
}

fn json(r: &Reading) -> String {
    format!(
        r#"{{"record_id":{},"timestamp":{},"vin":"{}","lon":{:?},"lat":{:?},"speed":{:?}}}"#,
        r.record_id, r.timestamp, r.vin, r.lon, r.lat, r.speed
    )
}

fn same(a: &Reading, b: &Reading) -> bool {
    (a.record_id, a.timestamp, a.vin) == (b.record_id, b.timestamp, b.vin)
        && a.lon.to_bits() == b.lon.to_bits()
        && a.lat.to_bits() == b.lat.to_bits()
        && a.speed.to_bits() == b.speed.to_bits()
}

/// Something odd put into a field: what fuzzers find.
fn damage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\0".to_vec()),
        Just(vec![0xff, 0xfe]),
        Just(b"1e999".to_vec()),
        Just(b"-1e999".to_vec()),
        Just(b"NaN".to_vec()),
        Just(b"-inf".to_vec()),
        Just(b"99999999999999999999999".to_vec()),
        Just(b"0x1F".to_vec()),
        Just(b"1_000".to_vec()),
        Just("٣".as_bytes().to_vec()),
        Just(b"\"".to_vec()),
        proptest::collection::vec(any::<u8>().prop_filter("not a separator", |b| !b" \t\r\n".contains(b)), 1..12),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_have_reasons(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        match parse_line(&bytes) {
            Parsed::Malformed(reason) => prop_assert!(!reason.is_empty()),
            Parsed::Blank => prop_assert!(bytes.iter().all(|b| b" \t\r".contains(b))),
            Parsed::Reading(r) => prop_assert!(r.speed.is_finite() && (0.0..=300.0).contains(&r.speed)),
        }
    }

    #[test]
    fn json_shaped_noise_never_panics(fields in proptest::collection::vec(("[a-z_]{1,10}", damage()), 0..8)) {
        let mut line = b"{".to_vec();
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 { line.push(b','); }
            line.extend_from_slice(format!("\"{name}\":").as_bytes());
            line.extend_from_slice(value);
        }
        line.push(b'}');
        let _ = parse_line(&line);
    }

    #[test]
    fn a_reading_round_trips_as_text_and_as_json(r in reading()) {
        for line in [reading_line(&r), json(&r)] {
            match parse_line(line.as_bytes()) {
                Parsed::Reading(back) => prop_assert!(same(&r, &back), "{line} gave {back:?}"),
                other => prop_assert!(false, "{line} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_damaged_field_is_an_error_naming_it(r in reading(), field in 0usize..6, bad in damage()) {
        let line = reading_line(&r);
        let mut parts: Vec<Vec<u8>> = line.split(' ').map(|p| p.as_bytes().to_vec()).collect();
        parts[field] = bad.clone();
        let damaged = parts.join(&b' ');
        match parse_line(&damaged) {
            Parsed::Malformed(reason) => {
                let names = ["record_id", "timestamp", "vin", "lon", "lat", "speed"];
                // A line that now starts with `{` is read as JSON, and says so.
                let json = damaged.first() == Some(&b'{') && reason.starts_with("invalid JSON reading");
                let named = reason.starts_with(names[field]) || reason.starts_with("expected 6 fields") || json;
                prop_assert!(named, "{:?}: {reason}", String::from_utf8_lossy(&damaged));
            }
            // Some damage leaves a valid value (random digits for an id, "NaN"-free numbers in range).
            Parsed::Reading(back) => {
                let s = String::from_utf8_lossy(&bad).to_string();
                let valid = match field {
                    0 => s.parse::<u64>().ok() == Some(back.record_id),
                    1 => s.parse::<u64>().ok() == Some(back.timestamp),
                    3 => s.parse::<f64>().ok() == Some(back.lon),
                    4 => s.parse::<f64>().ok() == Some(back.lat),
                    5 => s.parse::<f64>().ok() == Some(back.speed),
                    _ => false,
                };
                prop_assert!(valid, "{:?} was accepted as {back:?}", String::from_utf8_lossy(&damaged));
            }
            Parsed::Blank => prop_assert!(false, "a damaged reading is not blank"),
        }
    }
}

#[test]
fn a_record_above_the_limit_is_an_error_saying_so() {
    let mut line = b"1 2 1HGCM82633A004352 1 1 ".to_vec();
    line.resize(MAX_RECORD_BYTES + 1, b'5');
    match parse_line(&line) {
        Parsed::Malformed(reason) => assert!(reason.contains("1024001 bytes") && reason.contains("limit"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
