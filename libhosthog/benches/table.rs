//! What a login pays to consult the table, in process: open the file,
//! validate all of it, decide. Peers in the same run give the ratios: the
//! I/O floor of the same file as the module does it (open, map with
//! populated pages, unmap: `map_floor`) and parsing the same reservations
//! from JSON (the naive alternative to a binary format).
//!
//! Run as root (the table must be root-owned for `TableFile::open`):
//! `cargo bench -p libhosthog --bench table`. Results: docs/benchmarks.md.

// Setup that fails is a failed run: unwrap is fine here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use libhosthog::{
    Decision, Mode, Reservation, ReservationId, State, Table, TableFile, Who, decide, encode_at,
};

const T0: i64 = 1_800_000_000;
const SIZES: [usize; 3] = [10, 1_000, 100_000];

/// `n` back-to-back one-hour reservations from `T0`, as hosthogd keeps
/// them: ended ones pruned, so `now` falls in the first one.
fn state(n: usize) -> State {
    State {
        generation: 7,
        reservations: (0..n)
            .map(|i| Reservation {
                id: ReservationId(0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(i as u64 + 1)),
                owner: format!("user{}", i % 50),
                with: if i % 4 == 0 {
                    vec![format!("user{}", (i + 1) % 50), "carol".into()]
                } else {
                    vec![]
                },
                start: T0 + i as i64 * 3600,
                end: T0 + (i as i64 + 1) * 3600,
                mode: if i % 3 == 2 {
                    Mode::Shared
                } else {
                    Mode::Exclusive
                },
                comment: format!("benchmark run {i}, GPU {}", i % 8),
                created: T0 - 86_400,
                updated: T0 - 3600,
            })
            .collect(),
        exempt: vec!["monitor".into(), "backup".into()],
        notices: vec![],
    }
}

/// Files for one size, in a private root-owned 0700 directory.
/// A second directory with the same table plus a change file of
/// `COMPACT_AFTER` changed reservations (the largest a writer leaves),
/// every `n / COMPACT_AFTER`-th one, the first included, so the login path
/// merges on the reservation it decides on.
fn with_change_file(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut state = state(n);
    state.generation = 1;
    let table = dir.path().join("table");
    std::fs::write(&table, encode_at(&state, T0).unwrap()).unwrap();
    let step = (n / libhosthog::COMPACT_AFTER).max(1);
    let mut changed = state.clone();
    changed.generation = 2;
    for r in changed.reservations.iter_mut().step_by(step) {
        r.comment.push_str(" (edited)");
    }
    let refs: Vec<&libhosthog::Reservation> = changed.reservations.iter().step_by(step).collect();
    let changes = libhosthog::format::Changes {
        base_generation: 1,
        changed: &refs,
        removed: &[],
    };
    let delta = libhosthog::format::encode_delta(&changed, &changes, T0).unwrap();
    eprintln!(
        "table/{n}: change file {} bytes, {} changes",
        delta.len(),
        refs.len()
    );
    let path = libhosthog::delta_path(&table);
    std::fs::write(&path, delta).unwrap();
    for p in [&table, &path] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    (dir, table)
}

struct Fixture {
    _dir: tempfile::TempDir,
    table: PathBuf,
    json: PathBuf,
    owner: u32,
    bytes: Vec<u8>,
}

fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let owner = std::fs::metadata(dir.path()).unwrap().uid();
    let state = state(n);
    let bytes = encode_at(&state, T0).unwrap();
    let table = dir.path().join("table");
    std::fs::write(&table, &bytes).unwrap();
    std::fs::set_permissions(&table, std::fs::Permissions::from_mode(0o644)).unwrap();
    let json = dir.path().join("table.json");
    let json_bytes = serde_json::to_vec(&state).unwrap();
    std::fs::write(&json, &json_bytes).unwrap();
    eprintln!(
        "table/{n}: table file {} bytes, JSON {} bytes",
        bytes.len(),
        json_bytes.len()
    );
    Fixture {
        _dir: dir,
        table,
        json,
        owner,
        bytes,
    }
}

/// In the first reservation (user0's, exclusive): bob is refused, after a
/// look at the whole exemption list and the reservation's members.
const NOW: i64 = T0 + 1800;
const WHO: Who<'static> = Who {
    user: "bob",
    service: "sshd",
    tty: Some("ssh"),
    rhost: Some("192.0.2.7"),
    also_exempt: &[],
};

fn open_validate_decide(path: &Path, owner: u32) -> bool {
    let file = TableFile::open(path, owner).unwrap();
    let table = file.table().unwrap();
    matches!(decide(&table, &WHO, NOW), Decision::Deny(_))
}

/// The I/O floor of what `TableFile::open` does, with no hosthog code:
/// open (same flags), fstat, map with populated pages, touch one byte a
/// page, unmap. No copy: the table is mapped, not read.
fn map_floor(path: &Path) -> u64 {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    // SAFETY: a root-owned file nobody writes during the benchmark.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.unwrap();
    let touched: u64 = map.iter().step_by(4096).map(|&b| u64::from(b)).sum();
    len + touched
}

fn bench(c: &mut Criterion) {
    for n in SIZES {
        let f = fixture(n);
        assert!(
            open_validate_decide(&f.table, f.owner),
            "bob must be refused"
        );
        let mut group = c.benchmark_group(format!("table/{n}"));
        if n >= 100_000 {
            group.sample_size(20);
        }
        group.bench_function(BenchmarkId::from_parameter("open_validate_decide"), |b| {
            b.iter(|| open_validate_decide(black_box(&f.table), f.owner))
        });
        let (_keep, delta_table) = with_change_file(n);
        assert!(open_validate_decide(&delta_table, f.owner));
        group.bench_function(
            BenchmarkId::from_parameter("open_validate_decide_with_change_file"),
            |b| b.iter(|| open_validate_decide(black_box(&delta_table), f.owner)),
        );
        let table = Table::parse(&f.bytes).unwrap();
        group.bench_function(BenchmarkId::from_parameter("decide"), |b| {
            b.iter(|| matches!(decide(black_box(&table), &WHO, NOW), Decision::Deny(_)))
        });
        group.bench_function(BenchmarkId::from_parameter("validate"), |b| {
            b.iter(|| Table::parse(black_box(&f.bytes)).is_ok())
        });
        group.bench_function(BenchmarkId::from_parameter("map_floor"), |b| {
            b.iter(|| map_floor(black_box(&f.table)))
        });
        group.bench_function(BenchmarkId::from_parameter("json_read_parse"), |b| {
            b.iter(|| {
                let json = std::fs::read(black_box(&f.json)).unwrap();
                serde_json::from_slice::<State>(&json)
                    .unwrap()
                    .reservations
                    .len()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
