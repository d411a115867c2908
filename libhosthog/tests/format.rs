//! The table file format from the outside: a representative table survives
//! encode + parse unchanged, and every damaged variant of it is refused with
//! the error the format promises (docs/table-format.md), never a panic.

// Test code, helpers included: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use libhosthog::format::{CHECKSUM_OFFSET, FLAG_DELTA, MAGIC, VERSION, checksum};
use libhosthog::{
    ErrorKind, Mode, Notice, Reservation, ReservationId, State, Table, encode, encode_at,
};

const T0: i64 = 1_800_000_000;
const HOUR: i64 = 3600;

// Sizes and header offsets from docs/table-format.md.
const HEADER: usize = 72;
const RESERVATION: usize = 72;
const STR_REF: usize = 8;
const NOTICE: usize = 48;
const VERSION_AT: usize = 8;
const HEADER_LEN_AT: usize = 10;
const FILE_LEN_AT: usize = 16;
const GENERATION_AT: usize = 24;
const COUNTS_AT: usize = 40;
const POOL_LEN_AT: usize = 56;
const FLAGS_AT: usize = 60;
const BASE_GENERATION_AT: usize = 64;
// Offsets inside a reservation record.
const R_START: usize = 8;
const R_END: usize = 16;
const R_OWNER: usize = 40;
const R_COMMENT: usize = 48;
const R_WITH_FIRST: usize = 56;
const R_WITH_COUNT: usize = 60;
const R_MODE: usize = 64;
const R_RESERVED: usize = 65;
// Offsets inside a notice record.
const N_END: usize = 16;
const N_TEXT: usize = 40;

#[allow(clippy::too_many_arguments)]
fn reservation(
    id: u64,
    owner: &str,
    with: &[&str],
    start: i64,
    end: i64,
    mode: Mode,
    comment: &str,
) -> Reservation {
    Reservation {
        id: ReservationId(id),
        owner: owner.into(),
        with: with.iter().map(|u| u.to_string()).collect(),
        start,
        end,
        mode,
        comment: comment.into(),
        created: T0 - 86_400,
        updated: T0 - 600,
    }
}

/// Several reservations of both modes, given out of order (two share a
/// start, so the id breaks the tie), with co-users, an exemption list,
/// notices and non-ASCII text.
fn representative() -> State {
    State {
        generation: 42,
        reservations: vec![
            reservation(
                0xfeed_0000_0000_0004,
                "ann@lab",
                &["svc-backup", "host$"],
                T0 + 48 * HOUR,
                T0 + 50 * HOUR,
                Mode::Exclusive,
                "kernel bisect",
            ),
            reservation(
                0x9f3c_41d2_0000_0001,
                "alice",
                &["bob", "carol"],
                T0,
                T0 + 4 * HOUR,
                Mode::Exclusive,
                "paper benchmarks — Grüße, 研究 🚀",
            ),
            reservation(
                0x0000_0000_0000_0003,
                "erin",
                &["frank"],
                T0 + 6 * HOUR,
                T0 + 8 * HOUR,
                Mode::Shared,
                "",
            ),
            reservation(
                0x0000_0000_0000_0002,
                "dave",
                &[],
                T0 + 6 * HOUR,
                T0 + 7 * HOUR,
                Mode::Shared,
                "training run, GPU 0 only",
            ),
            reservation(
                u64::MAX,
                "zoe",
                &[],
                -HOUR,
                T0 - HOUR,
                Mode::Shared,
                "since before the epoch",
            ),
        ],
        exempt: vec!["monitor".into(), "admin.ops".into()],
        notices: vec![
            Notice {
                id: 7,
                author: "root".into(),
                text: "Kernel-Update Di 09:00 — bitte speichern".into(),
                start: T0 - HOUR,
                end: i64::MAX,
                created: T0 - 2 * HOUR,
            },
            Notice {
                id: 8,
                author: "admin.ops".into(),
                text: "GPU 3 is flaky".into(),
                start: T0,
                end: T0 + HOUR,
                created: T0,
            },
        ],
    }
}

fn representative_bytes() -> Vec<u8> {
    encode_at(&representative(), T0 - 5).unwrap()
}

/// The error message `Table::parse` gives for `bytes`, insisting it is a
/// `Corrupt` error and not a panic.
fn rejection(bytes: &[u8], what: &str) -> String {
    match catch_unwind(AssertUnwindSafe(|| {
        Table::parse(bytes).map(|t| t.to_state())
    })) {
        Err(_) => panic!("{what}: Table::parse panicked"),
        Ok(Ok(state)) => panic!("{what}: accepted as {state:?}"),
        Ok(Err(e)) => {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}: {e}");
            assert!(e.path().is_none(), "{what}: {e}");
            e.to_string()
        }
    }
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_i64(bytes: &mut [u8], at: usize, value: i64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Recomputes the checksum, so only the structural checks can object.
fn reseal(bytes: &mut [u8]) {
    let sum = checksum(bytes);
    put_u32(bytes, CHECKSUM_OFFSET, sum);
}

/// Where the sections of an encoded table start.
struct Layout {
    reservations: usize,
    co_users: usize,
    exempt: usize,
    notices: usize,
    pool: usize,
}

impl Layout {
    fn of(bytes: &[u8]) -> Layout {
        let count = |i: usize| get_u32(bytes, COUNTS_AT + 4 * i) as usize;
        let reservations = HEADER;
        let co_users = reservations + RESERVATION * count(0);
        let exempt = co_users + STR_REF * count(1);
        let notices = exempt + STR_REF * count(2);
        let pool = notices + NOTICE * count(3);
        Layout {
            reservations,
            co_users,
            exempt,
            notices,
            pool,
        }
    }

    fn reservation(&self, i: usize) -> usize {
        self.reservations + RESERVATION * i
    }

    fn notice(&self, i: usize) -> usize {
        self.notices + NOTICE * i
    }
}

#[test]
fn round_trip_preserves_everything() {
    let state = representative();
    let bytes = representative_bytes();
    let table = Table::parse(&bytes).unwrap();

    let mut expected = state.clone();
    expected.reservations.sort_by_key(|r| (r.start, r.id.0));
    assert_eq!(table.to_state(), expected);
    assert_eq!(table.generation(), 42);
    assert_eq!(table.written_at(), T0 - 5);

    // The layout the spec promises: header, 5 records, 5 co-users,
    // 2 exemptions, 2 notices, then the pool.
    let layout = Layout::of(&bytes);
    assert_eq!(&bytes[..8], &MAGIC);
    assert_eq!(
        layout.pool,
        HEADER + 5 * RESERVATION + 7 * STR_REF + 2 * NOTICE
    );
    assert_eq!(
        u64::from_le_bytes(bytes[FILE_LEN_AT..FILE_LEN_AT + 8].try_into().unwrap()),
        bytes.len() as u64
    );
    assert_eq!(
        layout.pool + get_u32(&bytes, POOL_LEN_AT) as usize,
        bytes.len()
    );
    assert_eq!(get_u32(&bytes, CHECKSUM_OFFSET), checksum(&bytes));

    // Views answer without copying what to_state copies.
    let views: Vec<_> = table.reservations().collect();
    assert_eq!(
        views.iter().map(|r| r.owner()).collect::<Vec<_>>(),
        ["zoe", "alice", "dave", "erin", "ann@lab"]
    );
    assert_eq!(views[1].comment(), "paper benchmarks — Grüße, 研究 🚀");
    assert_eq!(views[1].with().collect::<Vec<_>>(), ["bob", "carol"]);
    assert!(views[1].is_member("carol") && !views[1].is_member("car"));
    assert_eq!(views[4].mode(), Mode::Exclusive);
    assert_eq!(views[2].mode(), Mode::Shared);
    assert_eq!(
        table
            .active_at(T0 + 6 * HOUR)
            .map(|r| r.owner())
            .collect::<Vec<_>>(),
        ["dave", "erin"]
    );
    assert_eq!(table.started_by(T0).count(), 2);
    assert!(table.is_exempt("admin.ops") && !table.is_exempt("admin"));
    assert_eq!(
        table
            .notices()
            .map(|n| n.is_current(T0 + HOUR))
            .collect::<Vec<_>>(),
        [true, false]
    );

    // Encoding is canonical: input order does not matter.
    assert_eq!(encode_at(&expected, T0 - 5).unwrap(), bytes);
}

#[test]
fn empty_table_round_trips() {
    let bytes = encode(&State::default()).unwrap();
    assert_eq!(bytes.len(), HEADER);
    assert_eq!(Table::parse(&bytes).unwrap().to_state(), State::default());
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = representative_bytes();
    for len in 0..bytes.len() {
        let message = rejection(&bytes[..len], &format!("truncated to {len} bytes"));
        let expected = if len < HEADER {
            format!("the table is {len} bytes, shorter than its header")
        } else {
            format!(
                "the table is {len} bytes but its header says {} (truncated or extended)",
                bytes.len()
            )
        };
        assert_eq!(message, expected, "truncated to {len} bytes");
    }
}

/// What a single flipped bit at `at` must be reported as: the header
/// checks that run before the checksum name their field; every other flip
/// is caught by the checksum.
fn flip_message(flipped: &[u8], at: usize, len: usize) -> String {
    match at {
        0..8 => "this is not a hosthog table (wrong magic number)".into(),
        8..10 => format!(
            "the table has format version {}; this build reads version {VERSION}",
            u16::from_le_bytes([flipped[VERSION_AT], flipped[VERSION_AT + 1]])
        ),
        10..12 => "the header length field is wrong".into(),
        16..24 => format!(
            "the table is {len} bytes but its header says {} (truncated or extended)",
            u64::from_le_bytes(flipped[FILE_LEN_AT..FILE_LEN_AT + 8].try_into().unwrap())
        ),
        40..60 => "the section lengths do not add up to the file length".into(),
        // The change-file flag alone is a known flag: the checksum catches it.
        60..64 if get_u32(flipped, FLAGS_AT) == FLAG_DELTA => "checksum mismatch".into(),
        60..64 => "the header has unknown flags set".into(),
        _ => "checksum mismatch".into(),
    }
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let bytes = representative_bytes();
    let mut flipped = bytes.clone();
    let mut checked = 0;
    for at in 0..bytes.len() {
        for bit in 0..8 {
            flipped[at] ^= 1 << bit;
            let what = format!("bit {bit} of byte {at} flipped");
            let message = rejection(&flipped, &what);
            assert_eq!(message, flip_message(&flipped, at, bytes.len()), "{what}");
            flipped[at] ^= 1 << bit;
            checked += 1;
        }
    }
    assert_eq!(flipped, bytes);
    assert_eq!(checked, 8 * bytes.len());
}

/// Applies `damage` to a fresh copy of the representative table, reseals
/// the checksum when asked, and returns the rejection message.
fn damaged(resealed: bool, damage: impl FnOnce(&mut Vec<u8>, &Layout)) -> String {
    let mut bytes = representative_bytes();
    let layout = Layout::of(&bytes);
    damage(&mut bytes, &layout);
    if resealed {
        reseal(&mut bytes);
    }
    rejection(&bytes, "damaged table")
}

#[test]
fn structural_damage_behind_a_valid_checksum_is_rejected() {
    // Sorted by (start, id), the records are: 0 zoe, 1 alice, 2 dave,
    // 3 erin, 4 ann@lab; only alice (2), erin (1) and ann@lab (2) have
    // co-users.
    type Damage = fn(&mut Vec<u8>, &Layout);
    let cases: &[(&str, Damage, &str)] = &[
        (
            "owner offset one past the pool",
            |b, l| {
                let pool_len = get_u32(b, POOL_LEN_AT);
                put_u32(b, l.reservation(1) + R_OWNER, pool_len);
            },
            "reservation #1: string outside the pool",
        ),
        (
            "comment reaching one byte past the pool",
            |b, l| {
                let pool_len = get_u32(b, POOL_LEN_AT);
                put_u32(b, l.reservation(1) + R_COMMENT, pool_len - 3);
                put_u32(b, l.reservation(1) + R_COMMENT + 4, 4);
            },
            "reservation #1: string outside the pool",
        ),
        (
            "a string offset near u32::MAX",
            |b, l| {
                put_u32(b, l.reservation(0) + R_COMMENT, u32::MAX);
                put_u32(b, l.reservation(0) + R_COMMENT + 4, 2);
            },
            "reservation #0: string outside the pool",
        ),
        (
            "invalid UTF-8 in a comment",
            |b, l| {
                let offset = get_u32(b, l.reservation(1) + R_COMMENT) as usize;
                b[l.pool + offset] = 0xff;
            },
            "reservation #1: string is not UTF-8",
        ),
        (
            "a comment cut inside a multi-byte character",
            |b, l| {
                // "paper benchmarks — ...": the dash is 3 bytes at 17..20.
                put_u32(b, l.reservation(1) + R_COMMENT + 4, 18);
            },
            "reservation #1: string is not UTF-8",
        ),
        (
            "comment longer than its limit",
            |b, l| put_u32(b, l.reservation(1) + R_COMMENT + 4, 501),
            "reservation #1: string longer than its limit",
        ),
        (
            "empty owner",
            |b, l| put_u32(b, l.reservation(2) + R_OWNER + 4, 0),
            "reservation #2: empty owner",
        ),
        (
            "start equal to end",
            |b, l| put_i64(b, l.reservation(1) + R_END, T0),
            "reservation #1: start is not before end",
        ),
        (
            "start after end",
            |b, l| put_i64(b, l.reservation(0) + R_START, T0),
            "reservation #0: start is not before end",
        ),
        (
            "mode 0",
            |b, l| b[l.reservation(3) + R_MODE] = 0,
            "reservation #3: unknown mode",
        ),
        (
            "mode 3",
            |b, l| b[l.reservation(3) + R_MODE] = 3,
            "reservation #3: unknown mode",
        ),
        (
            "a nonzero reserved byte",
            |b, l| b[l.reservation(4) + R_RESERVED + 6] = 1,
            "reservation #4: reserved bytes are not zero",
        ),
        (
            "records swapped",
            |b, l| {
                // zoe (#0) and dave (#2) have no co-users; swap them and
                // put their (empty) co-user ranges back where they were.
                let (zoe, dave) = (l.reservation(0), l.reservation(2));
                let zoe_record = b[zoe..zoe + RESERVATION].to_vec();
                b.copy_within(dave..dave + RESERVATION, zoe);
                b[dave..dave + RESERVATION].copy_from_slice(&zoe_record);
                put_u32(b, zoe + R_WITH_FIRST, 0);
                put_u32(b, dave + R_WITH_FIRST, 2);
            },
            "reservation #1: reservations are not sorted by (start, id)",
        ),
        (
            "two records with the same (start, id)",
            |b, l| {
                // erin (#3) takes dave's (#2) id; both start at T0 + 6h.
                let dave_id = l.reservation(2);
                b.copy_within(dave_id..dave_id + 8, l.reservation(3));
            },
            "reservation #3: reservations are not sorted by (start, id)",
        ),
        (
            "a co-user range out of place",
            |b, l| put_u32(b, l.reservation(3) + R_WITH_FIRST, 0),
            "reservation #3: co-user range out of place",
        ),
        (
            "more co-users than allowed",
            |b, l| put_u32(b, l.reservation(1) + R_WITH_COUNT, 65),
            "reservation #1: too many co-users",
        ),
        (
            "a co-user range past its section",
            |b, l| put_u32(b, l.reservation(4) + R_WITH_COUNT, 3),
            "reservation #4: co-user range runs past its section",
        ),
        (
            "co-user entries nobody uses",
            |b, l| put_u32(b, l.reservation(4) + R_WITH_COUNT, 1),
            "the co-user section has entries no reservation uses",
        ),
        (
            "an empty exempt user",
            |b, l| put_u32(b, l.exempt + STR_REF + 4, 0),
            // co-users and exemptions are numbered together: 5 + 1.
            "user name #6: empty",
        ),
        (
            "a co-user name outside the pool",
            |b, l| put_u32(b, l.co_users, u32::MAX),
            "user name #0: string outside the pool",
        ),
        (
            "a notice text outside the pool",
            |b, l| put_u32(b, l.notice(1) + N_TEXT + 4, 1_000),
            "notice #1: string outside the pool",
        ),
        (
            "a notice that ends before it starts",
            |b, l| put_i64(b, l.notice(0) + N_END, T0 - 2 * HOUR),
            "notice #0: start is not before end",
        ),
        (
            "wrong version",
            |b, _| b[VERSION_AT] = 3,
            "the table has format version 3; this build reads version 2",
        ),
        (
            "version 0",
            |b, _| b[VERSION_AT] = 0,
            "the table has format version 0; this build reads version 2",
        ),
        (
            "wrong header length",
            |b, _| b[HEADER_LEN_AT] = 64,
            "the header length field is wrong",
        ),
        (
            "unknown flag",
            |b, _| b[FLAGS_AT + 3] = 0x80,
            "the header has unknown flags set",
        ),
        (
            "a full table marked as a change file",
            |b, _| b[FLAGS_AT] = 1,
            "a change file's base generation is not before its generation",
        ),
        (
            "a full table marked as a change file for an older table",
            |b, _| {
                b[FLAGS_AT] = 1;
                b[BASE_GENERATION_AT] = 1;
            },
            "this is a change file, not a full table",
        ),
        (
            "a removed-reservation record in a full table",
            |b, l| b[l.reservation(0) + R_MODE] = 3,
            "reservation #0: unknown mode",
        ),
        (
            "wrong magic",
            |b, _| b[7] = b'!',
            "this is not a hosthog table (wrong magic number)",
        ),
        (
            "reservation count over the limit",
            |b, _| {
                // Counts and length kept consistent: 200,001 empty records.
                let extra = 200_001 - 5;
                let pool_len = get_u32(b, POOL_LEN_AT);
                put_u32(b, COUNTS_AT, 200_001);
                put_u32(b, POOL_LEN_AT, pool_len);
                b.resize(b.len() + extra * RESERVATION, 0);
                let len = b.len() as u64;
                b[FILE_LEN_AT..FILE_LEN_AT + 8].copy_from_slice(&len.to_le_bytes());
            },
            "a section holds more entries than the format allows",
        ),
        (
            "an extra trailing byte, header updated",
            |b, _| {
                b.push(0);
                let len = b.len() as u64;
                b[FILE_LEN_AT..FILE_LEN_AT + 8].copy_from_slice(&len.to_le_bytes());
            },
            "the section lengths do not add up to the file length",
        ),
    ];
    for (what, damage, expected) in cases {
        assert_eq!(&damaged(true, damage), expected, "{what}");
    }
}

#[test]
fn an_extra_trailing_byte_is_rejected() {
    let bytes = representative_bytes();
    let len = bytes.len();
    assert_eq!(
        damaged(false, |b, _| b.push(0)),
        format!(
            "the table is {} bytes but its header says {len} (truncated or extended)",
            len + 1
        )
    );
    // Even with the checksum recomputed over the longer file.
    assert_eq!(
        damaged(true, |b, _| b.push(0)),
        format!(
            "the table is {} bytes but its header says {len} (truncated or extended)",
            len + 1
        )
    );
}

#[test]
fn a_damaged_generation_is_caught_by_the_checksum_alone() {
    assert_eq!(
        damaged(false, |b, _| b[GENERATION_AT] ^= 1),
        "checksum mismatch"
    );
    // With the checksum recomputed, a full table whose two generations
    // disagree is refused; with both changed alike it is a valid table.
    assert_eq!(
        damaged(true, |b, _| b[GENERATION_AT] ^= 1),
        "a full table's base generation differs from its generation"
    );
    let mut bytes = representative_bytes();
    bytes[GENERATION_AT] ^= 1;
    bytes[BASE_GENERATION_AT] ^= 1;
    reseal(&mut bytes);
    assert_eq!(Table::parse(&bytes).unwrap().generation(), 43);
}

/// Tables for the fuzzer's seed corpus. Set HOSTHOG_FUZZ_SEEDS to a
/// directory to have them written there (see fuzz/README.md).
#[test]
fn seed_tables_round_trip() {
    let many = State {
        reservations: (0..50)
            .map(|i| {
                reservation(
                    i * 7919,
                    &format!("user{}", i % 9),
                    if i % 3 == 0 { &["bob"] } else { &[] },
                    T0 + i as i64 * HOUR,
                    T0 + (i as i64 + 2) * HOUR,
                    if i % 2 == 0 {
                        Mode::Exclusive
                    } else {
                        Mode::Shared
                    },
                    "batch",
                )
            })
            .collect(),
        ..State::default()
    };
    let notices_only = State {
        notices: representative().notices,
        exempt: vec!["monitor".into()],
        ..State::default()
    };
    let seeds = [
        ("empty", State::default()),
        ("representative", representative()),
        ("many", many),
        ("notices-only", notices_only),
    ];
    let dir = std::env::var_os("HOSTHOG_FUZZ_SEEDS");
    for (name, state) in seeds {
        let bytes = encode_at(&state, T0).unwrap();
        let mut expected = state.clone();
        expected.reservations.sort_by_key(|r| (r.start, r.id.0));
        assert_eq!(Table::parse(&bytes).unwrap().to_state(), expected, "{name}");
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(std::path::Path::new(dir).join(name), &bytes).unwrap();
        }
    }
}
