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

/// A small deterministic generator (xorshift64*), so a failure names an
/// instant that reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The instants checked: both ends of `i64`, every second within two
/// minutes of the start and of the end, and 200,000 pseudo-random ones: a
/// quarter spread over all of `i64`, a quarter within a day of the slot,
/// half within an hour of it.
fn instants() -> Vec<i64> {
    let mut all = vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    all.extend((START - 120..=START + 120).chain(END - 120..=END + 120));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for k in 0..200_000 {
        let r = rng.next();
        all.push(match k % 4 {
            0 => r as i64,
            1 => START - 86_400 + (r % (2 * 86_400 + 3600)) as i64,
            _ => START - 3600 + (r % (3 * 3600)) as i64,
        });
    }
    all
}

#[test]
fn enforced_exactly_for_wall_clock_instants_in_start_to_end() {
    let bytes = encode(&state()).unwrap();
    let table = Table::parse(&bytes).unwrap();
    let instants = instants();
    let mut inside = 0;
    for &now in &instants {
        let in_slot = (START..END).contains(&now);
        inside += usize::from(in_slot);
        assert_eq!(
            denied(&table, "bob", now),
            in_slot,
            "bob at {now}: refused must be exactly now in [{START}, {END})"
        );
        assert!(!denied(&table, "alice", now), "the holder refused at {now}");
        assert!(!denied(&table, "root", now), "root refused at {now}");
    }
    // The sample must straddle both edges, or it proves little.
    assert!(
        inside > 10_000 && instants.len() - inside > 10_000,
        "{inside}"
    );
}

#[test]
fn a_clock_jump_changes_the_answer_only_by_the_jump() {
    // `decide` takes the instant as an argument and keeps nothing between
    // calls (it borrows the table immutably), so a clock that jumps by J
    // answers as the rule says at the instant it reads: a jump back inside
    // the slot refuses until the wall clock reads END again (J longer in
    // real time); a jump forward lets people in J early.
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
    }
}

#[test]
fn a_clock_ahead_of_time_prunes_at_the_next_write() {
    // The one lasting effect of a wrong clock: writers prune reservations
    // that have ended as of their `now`. A daemon whose clock runs past END
    // drops the reservation at its next write, and setting the clock back
    // does not bring it back (hosthogd's audit log keeps the line of the
    // change that pruned it; that is not tested here).
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
    // Setting the clock back (into the slot) and writing again does not
    // bring it back: bob, refused at that instant before, now gets in.
    store.edit(START + 60, |_| {}, |_| Ok(())).unwrap();
    let back = store.read().unwrap();
    assert!(back.reservations.is_empty(), "{back:?}");
    let bytes = encode(&back).unwrap();
    assert!(!denied(&Table::parse(&bytes).unwrap(), "bob", START + 60));
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
