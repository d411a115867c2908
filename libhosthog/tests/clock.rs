//! A wrong clock. `decide` reads no clock: the caller passes `now` (the PAM
//! module reads the wall clock once per login), so the rule is exactly
//! "a reservation is enforced for wall-clock instants in [start, end)".
//! These tests pin that rule at the edges, for clock jumps in both
//! directions, and show what a clock running ahead does to the table when
//! the daemon writes (docs/security.md, "A wrong clock").

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use libhosthog::{
    Decision, Mode, Reservation, ReservationId, State, Store, Table, Who, decide, encode,
};

const START: i64 = 1_800_000_000;
const END: i64 = START + 3600;

fn state() -> State {
    State {
        reservations: vec![Reservation {
            id: ReservationId(7),
            owner: "alice".into(),
            with: vec![],
            start: START,
            end: END,
            mode: Mode::Exclusive,
            comment: "benchmarks".into(),
            created: START - 86_400,
            updated: START - 86_400,
        }],
        ..State::default()
    }
}

fn denied(table: &Table<'_>, user: &str, now: i64) -> bool {
    let who = Who {
        user,
        service: "sshd",
        tty: None,
        rhost: None,
        also_exempt: &[],
    };
    matches!(decide(table, &who, now), Decision::Deny(_))
}

#[test]
fn enforced_exactly_for_wall_clock_instants_in_start_to_end() {
    let bytes = encode(&state()).unwrap();
    let table = Table::parse(&bytes).unwrap();
    for now in [i64::MIN, 0, START - 86_400, START - 2, START - 1] {
        assert!(
            !denied(&table, "bob", now),
            "bob refused at {now}, before the start"
        );
    }
    for now in [START, START + 1, START + 1800, END - 2, END - 1] {
        assert!(
            denied(&table, "bob", now),
            "bob let in at {now}, inside the slot"
        );
        assert!(!denied(&table, "alice", now), "the holder refused at {now}");
        assert!(!denied(&table, "root", now), "root refused at {now}");
    }
    for now in [END, END + 1, END + 86_400, i64::MAX] {
        assert!(
            !denied(&table, "bob", now),
            "bob refused at {now}, after the end"
        );
    }
}

#[test]
fn a_clock_jump_changes_the_answer_only_by_the_jump() {
    // Each login reads the clock afresh: a clock that jumps back by J
    // inside the slot refuses until the wall clock reads END again (J
    // longer in real time); a jump forward by J lets people in J early.
    // Nothing is remembered between logins, so the answer after the clock
    // is corrected is the right one again at once.
    let bytes = encode(&state()).unwrap();
    let table = Table::parse(&bytes).unwrap();
    let real = START + 600;
    for jump in [-7200, -3600, -601, -600, -1, 0, 1, 2999, 3000, 3600, 86_400] {
        let seen = real + jump;
        assert_eq!(
            denied(&table, "bob", seen),
            (START..END).contains(&seen),
            "jump {jump}"
        );
        assert!(
            denied(&table, "bob", real),
            "after correcting a jump of {jump}"
        );
    }
}

#[test]
fn a_clock_ahead_of_time_prunes_at_the_next_write() {
    // The one lasting effect of a wrong clock: writers prune reservations
    // that have ended as of their `now`. A daemon whose clock runs past END
    // drops the reservation at its next write, and setting the clock back
    // does not bring it back (the audit log has it).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    store
        .edit(
            START - 100,
            |_| {},
            |s| {
                *s = state();
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(store.read().unwrap().reservations.len(), 1);
    // A write with the clock 1 s before the end keeps it...
    store.edit(END - 1, |_| {}, |_| Ok(())).unwrap();
    assert_eq!(store.read().unwrap().reservations.len(), 1);
    // ...a write with the clock at or past the end drops it.
    store.edit(END, |_| {}, |_| Ok(())).unwrap();
    assert!(store.read().unwrap().reservations.is_empty());
    // A clock behind never drops anything early.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    store
        .edit(
            START - 86_400 * 365,
            |_| {},
            |s| {
                *s = state();
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(store.read().unwrap().reservations.len(), 1);
}
