//! The change file: what readers see of a full table with its change file,
//! which change files they ignore or refuse, and what the Store writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use libhosthog::format::{Changes, encode_delta, peek};
use libhosthog::{
    COMPACT_AFTER, ErrorKind, FULL_WRITE_UP_TO, Mode, Notice, Reservation, ReservationId, State,
    Store, Table, TableFile, delta_path, encode_at,
};

const T0: i64 = 1_800_000_000;
const HOUR: i64 = 3600;

fn reservation(id: u64, owner: &str, start: i64, mode: Mode) -> Reservation {
    Reservation {
        id: ReservationId(id),
        owner: owner.into(),
        with: vec![],
        start,
        end: start + 2 * HOUR,
        mode,
        comment: format!("r{id}"),
        created: T0,
        updated: T0,
    }
}

/// A full table of generation 5 with three reservations.
fn base() -> State {
    State {
        generation: 5,
        reservations: vec![
            reservation(1, "alice", T0, Mode::Exclusive),
            reservation(2, "bob", T0 + 10 * HOUR, Mode::Shared),
            reservation(3, "carol", T0 + 20 * HOUR, Mode::Shared),
        ],
        exempt: vec!["ops".into()],
        notices: vec![],
    }
}

/// Generation 6: bob's reservation moved before alice's, carol's removed,
/// dave's added; the exemption list and notices replaced.
fn changed() -> State {
    let mut moved = reservation(2, "bob", T0 - 5 * HOUR, Mode::Exclusive);
    moved.comment = "moved".into();
    State {
        generation: 6,
        reservations: vec![
            moved,
            reservation(1, "alice", T0, Mode::Exclusive),
            reservation(4, "dave", T0 + 30 * HOUR, Mode::Shared),
        ],
        exempt: vec!["backup".into()],
        notices: vec![Notice {
            id: 9,
            author: "root".into(),
            text: "maintenance".into(),
            start: T0,
            end: i64::MAX,
            created: T0,
        }],
    }
}

fn delta_bytes() -> Vec<u8> {
    let new = changed();
    let old = base();
    let changes = Changes {
        base_generation: 5,
        changed: &[&new.reservations[0], &new.reservations[2]],
        removed: &[&old.reservations[2]],
    };
    encode_delta(&new, &changes, T0 + 1).unwrap()
}

#[test]
fn a_change_file_applies_to_its_full_table() {
    let base_bytes = encode_at(&base(), T0).unwrap();
    let delta = delta_bytes();
    let table = Table::with_delta(&base_bytes, Some(&delta)).unwrap();
    assert_eq!(table.to_state(), changed());
    // A seed for the table_pair fuzz target (see fuzz/README.md): two
    // bytes that say where the full table ends, then both files.
    if let Some(dir) = std::env::var_os("HOSTHOG_FUZZ_SEEDS") {
        let mut seed = (base_bytes.len() as u16).to_le_bytes().to_vec();
        seed.extend_from_slice(&base_bytes);
        seed.extend_from_slice(&delta);
        std::fs::write(std::path::Path::new(&dir).join("pair-merged"), seed).unwrap();
    }
    assert_eq!(table.generation(), 6);
    assert_eq!(table.base_generation(), 5);
    assert_eq!(table.written_at(), T0 + 1);
    assert_eq!(table.changes_pending(), 3);
    // In (start, id) order, the moved one first, the removed one gone.
    let ids: Vec<u64> = table.reservations().map(|r| r.id().0).collect();
    assert_eq!(ids, [2, 1, 4]);
    assert_eq!(table.reservations().next().unwrap().comment(), "moved");
    let active: Vec<&str> = table.active_at(T0 - 4 * HOUR).map(|r| r.owner()).collect();
    assert_eq!(active, ["bob"]);
    assert_eq!(table.started_by(T0 + 25 * HOUR).count(), 2);
    assert!(table.is_exempt("backup") && !table.is_exempt("ops"));
    assert_eq!(table.notices().count(), 1);
}

#[test]
fn a_change_file_for_an_older_full_table_is_ignored() {
    // The full table was rewritten (generation 7) after the change file.
    let mut newer = changed();
    newer.generation = 7;
    let base_bytes = encode_at(&newer, T0).unwrap();
    let delta = delta_bytes();
    let table = Table::with_delta(&base_bytes, Some(&delta)).unwrap();
    assert_eq!(table.generation(), 7);
    assert_eq!(table.changes_pending(), 0);
    assert_eq!(table.to_state(), newer);
}

#[test]
fn a_change_file_for_a_newer_full_table_is_refused() {
    let mut older = base();
    older.generation = 4;
    let base_bytes = encode_at(&older, T0).unwrap();
    let e = Table::with_delta(&base_bytes, Some(&delta_bytes())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert_eq!(
        e.to_string(),
        "the change file belongs to table generation 5, newer than the table's 4"
    );
}

#[test]
fn files_swapped_or_mislabelled_are_refused() {
    let base_bytes = encode_at(&base(), T0).unwrap();
    let delta = delta_bytes();
    let e = Table::with_delta(&delta, None).unwrap_err();
    assert_eq!(e.to_string(), "this is a change file, not a full table");
    let e = Table::with_delta(&base_bytes, Some(&base_bytes)).unwrap_err();
    assert_eq!(e.to_string(), "the change file is a full table");
}

#[test]
fn every_truncation_and_bit_flip_of_a_change_file_is_refused() {
    let base_bytes = encode_at(&base(), T0).unwrap();
    let delta = delta_bytes();
    let refused = |bytes: &[u8], what: &str| {
        match catch_unwind(AssertUnwindSafe(|| {
            Table::with_delta(&base_bytes, Some(bytes)).map(|t| t.to_state())
        })) {
            Err(_) => panic!("{what}: panicked"),
            Ok(Ok(state)) => {
                // A flip that only makes the change file look older than
                // the full table gets it ignored, which is safe: then the
                // table reads as the full table alone.
                assert_eq!(state, base(), "{what}: accepted as something else")
            }
            Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}"),
        }
    };
    for len in 0..delta.len() {
        refused(&delta[..len], &format!("truncated to {len}"));
    }
    let mut flipped = delta.clone();
    for at in 0..delta.len() {
        for bit in 0..8 {
            flipped[at] ^= 1 << bit;
            refused(&flipped, &format!("bit {bit} of byte {at}"));
            flipped[at] ^= 1 << bit;
        }
    }
}

fn big_state(n: u64) -> State {
    State {
        reservations: (0..n)
            .map(|i| reservation(100 + i, "user", T0 + i as i64 * HOUR, Mode::Shared))
            .collect(),
        ..State::default()
    }
}

/// Reads the store as the PAM module would, and the raw headers.
fn on_disk(store: &Store) -> (State, u64, Option<u64>) {
    let file = TableFile::open(&store.table_path(), store_owner(store)).unwrap();
    let state = file.table().unwrap().to_state();
    let base = peek(&std::fs::read(store.table_path()).unwrap()).unwrap();
    let delta = std::fs::read(delta_path(&store.table_path()))
        .ok()
        .and_then(|b| peek(&b))
        .map(|p| p.base_generation);
    (state, base.generation, delta)
}

fn store_owner(store: &Store) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(store.dir()).unwrap().uid()
}

#[test]
fn the_store_writes_change_files_for_large_tables_and_compacts_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let n = FULL_WRITE_UP_TO as u64 + 1;
    store
        .edit(
            T0,
            |_| {},
            |s| {
                *s = big_state(n);
                Ok(())
            },
        )
        .unwrap();
    let full = std::fs::read(store.table_path()).unwrap();
    let (state, base_generation, delta) = on_disk(&store);
    assert_eq!((state.generation, base_generation, delta), (1, 1, None));

    // Each edit now replaces only the change file; the full table stays
    // byte for byte what it was.
    let mut expected = state;
    for i in 0..COMPACT_AFTER as u64 {
        let added = reservation(10_000 + i, "eve", T0 + 1000 * HOUR + i as i64, Mode::Shared);
        store
            .edit(
                T0,
                |_| {},
                |s| {
                    s.reservations.push(added.clone());
                    Ok(())
                },
            )
            .unwrap();
        expected.reservations.push(added);
        expected.generation += 1;
        let (state, base_generation, delta) = on_disk(&store);
        assert_eq!(base_generation, 1);
        assert_eq!(delta, Some(1));
        assert_eq!(state, expected);
    }
    assert_eq!(std::fs::read(store.table_path()).unwrap(), full);

    // One change more than a change file may hold: the full table is
    // rewritten, and the old change file is left behind but ignored.
    store
        .edit(
            T0,
            |_| {},
            |s| {
                s.reservations.retain(|r| r.id.0 != 100);
                Ok(())
            },
        )
        .unwrap();
    expected.reservations.retain(|r| r.id.0 != 100);
    expected.generation += 1;
    let (state, base_generation, delta) = on_disk(&store);
    assert_eq!(state, expected);
    assert_eq!(base_generation, expected.generation);
    assert_eq!(delta, Some(1));

    // A removal is written as a removal record in the next change file.
    store
        .edit(
            T0,
            |_| {},
            |s| {
                s.reservations.retain(|r| r.id.0 != 101);
                Ok(())
            },
        )
        .unwrap();
    expected.reservations.retain(|r| r.id.0 != 101);
    expected.generation += 1;
    let (state, base_generation, delta) = on_disk(&store);
    assert_eq!(state, expected);
    assert_eq!(delta, Some(base_generation));
    let bytes = std::fs::read(delta_path(&store.table_path())).unwrap();
    assert_eq!(peek(&bytes).unwrap().generation, expected.generation);
    assert_eq!(
        Table::with_delta(&std::fs::read(store.table_path()).unwrap(), Some(&bytes))
            .unwrap()
            .changes_pending(),
        1
    );
}

#[test]
fn a_second_store_sees_and_continues_the_change_file() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::new(dir.path());
    let n = FULL_WRITE_UP_TO as u64 + 10;
    first
        .edit(
            T0,
            |_| {},
            |s| {
                *s = big_state(n);
                Ok(())
            },
        )
        .unwrap();
    first
        .edit(
            T0,
            |_| {},
            |s| {
                s.reservations[0].comment = "first".into();
                Ok(())
            },
        )
        .unwrap();
    // Another process (say `hosthog --state-dir`) with nothing cached.
    let second = Store::new(dir.path());
    second
        .edit(
            T0,
            |_| {},
            |s| {
                assert_eq!(s.reservations[0].comment, "first");
                s.reservations[1].comment = "second".into();
                Ok(())
            },
        )
        .unwrap();
    let state = first.read().unwrap();
    assert_eq!(state.generation, 3);
    assert_eq!(
        (
            state.reservations[0].comment.as_str(),
            state.reservations[1].comment.as_str()
        ),
        ("first", "second")
    );
    let (_, base_generation, delta) = on_disk(&first);
    assert_eq!((base_generation, delta), (1, Some(1)));
}
