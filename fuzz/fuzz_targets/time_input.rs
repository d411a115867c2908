//! Feeds arbitrary strings, instants and time zones to the time-input
//! parsers (`parse_duration`, `parse_instant`). Neither may panic or
//! overflow; a duration is always positive; a duration-shaped input read as
//! an instant is always `now + duration` (a duration is never read as a
//! clock time); every error is `Invalid` and one line.

#![no_main]

use hosthog_booking::{parse_duration, parse_instant};
use libhosthog::ErrorKind;
use jiff::tz::{Offset, TimeZone};
use libfuzzer_sys::fuzz_target;

/// Zones with daylight-saving gaps and folds, fixed offsets at the edges,
/// and UTC.
fn zone(selector: u8) -> TimeZone {
    let posix = [
        "CET-1CEST,M3.5.0,M10.5.0/3",
        "EST5EDT,M3.2.0,M11.1.0",
        "AEST-10AEDT,M10.1.0,M4.1.0/3",
        "NZST-12NZDT,M9.5.0,M4.1.0/3",
    ];
    match selector % 8 {
        0 => TimeZone::UTC,
        1 => TimeZone::fixed(Offset::constant(-25)),
        2 => TimeZone::fixed(Offset::constant(25)),
        3 => TimeZone::fixed(Offset::constant(5)),
        n => TimeZone::posix(posix[usize::from(n - 4)]).expect("valid POSIX zone"),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&data[..8]);
    // Mostly plausible instants (so relative forms get exercised), and
    // sometimes any i64 at all.
    let bits = i64::from_le_bytes(raw);
    let now = if data[8] & 0x80 != 0 {
        bits
    } else {
        1_767_261_600 + bits.rem_euclid(400 * 365 * 86_400) - 200 * 365 * 86_400
    };
    let tz = zone(data[8]);
    let Ok(text) = std::str::from_utf8(&data[9..]) else {
        return;
    };

    let duration = parse_duration(text);
    match &duration {
        Ok(secs) => assert!(*secs > 0, "{text:?} -> {secs}"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
    match parse_instant(text, now, &tz) {
        Ok(at) => {
            if let Ok(secs) = duration {
                assert_eq!(
                    Some(at),
                    now.checked_add(secs),
                    "{text:?} read as a clock time"
                );
            }
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
});
