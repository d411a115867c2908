//! The login rule is written once (libhosthog's `decide`), and every part
//! that needs it asks it: the PAM module over the table file, hosthogd's
//! events (whom a reservation locks out) and clearing (whose sessions to
//! end) over the owned model. This table-driven test holds all of them to
//! the same expected answers, so a caller that drifts from the rule fails.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthogd::clear::disallowed;
use hosthogd::events::{Concern, concern};
use libhosthog::{Mode, Reservation, ReservationId, State, Table, Who, decide, encode};

const T0: i64 = 1_800_000_000;

fn reservation(id: u64, owner: &str, with: &[&str], span: (i64, i64), mode: Mode) -> Reservation {
    Reservation {
        id: ReservationId(id),
        owner: owner.into(),
        with: with.iter().map(|u| u.to_string()).collect(),
        start: span.0,
        end: span.1,
        mode,
        comment: String::new(),
        created: T0 - 1000,
        updated: T0 - 1000,
    }
}

fn state() -> State {
    State {
        reservations: vec![
            reservation(1, "alice", &["carol"], (T0, T0 + 3600), Mode::Exclusive),
            reservation(2, "bob", &[], (T0 + 3600, T0 + 7200), Mode::Shared),
            reservation(3, "dave", &[], (T0 + 7200, T0 + 9000), Mode::Exclusive),
            reservation(4, "erin", &[], (T0 + 7200, T0 + 9000), Mode::Shared),
        ],
        exempt: vec!["monitor".into()],
        ..State::default()
    }
}

/// Whether the user is refused at the instant, as each caller sees it.
#[derive(Debug, PartialEq)]
struct Answers {
    pam_table: bool,
    owned_model: bool,
    events: bool,
    clearing: bool,
}

fn answers(state: &State, table: &Table<'_>, user: &str, uid: u32, now: i64) -> Answers {
    let who = Who {
        user,
        service: "sshd",
        ..Who::default()
    };
    Answers {
        pam_table: decide(table, &who, now).is_deny(),
        owned_model: decide(state, &who, now).is_deny(),
        // Events: locked out by some reservation in force at `now`.
        events: state
            .reservations
            .iter()
            .filter(|r| r.is_active(now))
            .any(|r| concern(r, user, &state.exempt) == Some(Concern::LockedOut)),
        clearing: !disallowed(state, &[(user.to_string(), uid)], now).is_empty(),
    }
}

#[test]
fn pam_events_and_clearing_agree_with_the_rule() {
    let state = state();
    let bytes = encode(&state).unwrap();
    let table = Table::parse(&bytes).unwrap();
    #[rustfmt::skip]
    let cases: &[(&str, i64, bool)] = &[
        // (user, instant, refused)
        ("bob", T0 - 1, false),
        ("bob", T0, true),
        ("bob", T0 + 3599, true),
        ("bob", T0 + 3600, false),
        ("alice", T0, false),
        ("carol", T0 + 10, false),
        ("monitor", T0 + 10, false),
        ("root", T0 + 10, false),
        ("mallory", T0 + 10, true),
        ("alic", T0 + 10, true),
        ("alice", T0 + 3600, false),
        ("dave", T0 + 7200, false),
        ("erin", T0 + 7200, true),
        ("bob", T0 + 8999, true),
        ("bob", T0 + 9000, false),
        ("root", T0 + 8000, false),
    ];
    for (i, (user, now, refused)) in cases.iter().enumerate() {
        // root keeps uid 0 (clearing never touches it); everyone else gets
        // an ordinary uid.
        let uid = if *user == "root" { 0 } else { 2000 + i as u32 };
        let got = answers(&state, &table, user, uid, *now);
        let expected = Answers {
            pam_table: *refused,
            owned_model: *refused,
            events: *refused,
            clearing: *refused,
        };
        assert_eq!(got, expected, "{user} at T0{:+}", now - T0);
    }
}
