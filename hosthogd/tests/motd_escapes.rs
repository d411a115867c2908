//! Escape sequences in a state (as a hand-crafted table could carry them:
//! the writer refuses them, the parser does not) never reach the MOTD
//! fragment every login prints. Backs a claim in docs/security.md.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthogd::motd::render_motd;
use jiff::tz::TimeZone;
use libhosthog::{Mode, Notice, Reservation, ReservationId, State, is_unsafe};

const NOW: i64 = 1_800_000_000;
const EVIL: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\r\u{202e}\u{0}";

#[test]
fn escape_sequences_never_reach_the_motd() {
    let reservation = |id: u64, start: i64, mode: Mode| Reservation {
        id: ReservationId(id),
        owner: format!("al{EVIL}ice"),
        with: vec![format!("b{EVIL}ob"), format!("ca{EVIL}rol")],
        start,
        end: start + 3600,
        mode,
        comment: format!("bench{EVIL}marks\nsecond line"),
        created: NOW - 86_400,
        updated: NOW - 86_400,
    };
    let state = State {
        reservations: vec![
            reservation(1, NOW - 600, Mode::Exclusive),
            reservation(2, NOW + 7200, Mode::Shared),
        ],
        notices: vec![Notice {
            id: 1,
            author: format!("ro{EVIL}ot"),
            text: format!("kernel{EVIL} update\nTue 09:00"),
            start: NOW - 3600,
            end: i64::MAX,
            created: NOW - 3600,
        }],
        ..State::default()
    };
    for tz in [
        TimeZone::UTC,
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap(),
    ] {
        let motd = render_motd(&state, NOW, &tz);
        assert!(motd.contains("bench"), "{motd}");
        // Notices are shown by the session summary, not here.
        assert!(!motd.contains("kernel"), "{motd}");
        for line in motd.lines() {
            assert!(!line.chars().any(is_unsafe), "{line:?}");
        }
        assert!(!motd.contains('\r'), "{motd:?}");
    }
}
