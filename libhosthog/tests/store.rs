//! The Store under concurrency and crashes, with real processes.
//!
//! Writers are child processes: this test binary re-executes itself with
//! `HOSTHOG_STORE_CHILD` naming a role and the test's own name as filter,
//! and the test function hands over to the role at its first line. Children
//! talk to the parent through stdout lines that start with [`SAY`].

// Test code, helpers included: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use libhosthog::{
    Mode, Reservation, ReservationId, State, Store, TABLE_NAME, TableFile, encode_at,
};

/// Names the role a re-executed child plays.
const ROLE: &str = "HOSTHOG_STORE_CHILD";
const DIR: &str = "HOSTHOG_STORE_DIR";
const WRITER: &str = "HOSTHOG_STORE_WRITER";
/// Prefix of every line a child writes for the parent.
const SAY: &str = "store-child: ";

const T0: i64 = 1_800_000_000;
const WRITERS: u64 = 8;
const EDITS_PER_WRITER: u64 = 200;
const KILLS: usize = 200;
/// How many reservations the crash test's edits keep in the table.
const WINDOW: u64 = 10;

fn reservation(id: u64, owner: String, start: i64) -> Reservation {
    Reservation {
        id: ReservationId(id),
        owner,
        with: vec!["bob".into()],
        start,
        end: start + 3600,
        mode: if id.is_multiple_of(2) {
            Mode::Exclusive
        } else {
            Mode::Shared
        },
        comment: format!("edit {id:#x}"),
        created: T0,
        updated: T0,
    }
}

fn say(line: &str) {
    println!("{SAY}{line}");
}

/// If this process is a re-executed child, plays its role and exits.
fn play_child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(DIR).unwrap());
    let store = Store::new(&dir);
    let code = match role.as_str() {
        "writer" => writer(&store),
        "crasher" => crasher(&store),
        "holder" => holder(&store),
        other => {
            eprintln!("unknown child role {other}");
            2
        }
    };
    std::process::exit(code);
}

/// Adds `EDITS_PER_WRITER` reservations of its own, one edit each.
fn writer(store: &Store) -> i32 {
    let k: u64 = std::env::var(WRITER).unwrap().parse().unwrap();
    for i in 0..EDITS_PER_WRITER {
        let id = ((k + 1) << 32) | i;
        let added = store.edit(
            T0,
            |_| {},
            |state| {
                let start = T0 + (k * EDITS_PER_WRITER + i) as i64 * 60;
                state
                    .reservations
                    .push(reservation(id, format!("writer{k}"), start));
                Ok(())
            },
        );
        if let Err(e) = added {
            eprintln!("writer {k}, edit {i}: {e}");
            return 1;
        }
    }
    0
}

const PRELOAD: &str = "HOSTHOG_STORE_PRELOAD";

/// Reservations put in the table before the crash test with change files
/// starts, so that its table is large enough to be written as change files.
fn preloaded(count: u64) -> Vec<Reservation> {
    (0..count)
        .map(|i| {
            reservation(
                1_000_000 + i,
                format!("pre{}", i % 5),
                T0 + 1_000_000 + i as i64 * 60,
            )
        })
        .collect()
}

/// Reservations the crasher adds per generation (and removes, `WINDOW`
/// generations later): one over a small table; over a preloaded one, 100,
/// so that the second write after each full one would hold 400 changes
/// (more than `COMPACT_AFTER`) and rewrites the full table with a change
/// file beside it. Writes then alternate: change file, full table.
fn batch(preload: u64) -> u64 {
    if preload > 0 { 100 } else { 1 }
}

/// The id of the crasher's `j`th reservation of generation `g`; preloaded
/// ids (1,000,000 and up, below 2^20) never collide with them.
fn crash_id(g: u64, j: u64, preload: u64) -> u64 {
    if batch(preload) == 1 {
        g
    } else {
        (g << 20) | j
    }
}

/// The generation that added crasher reservation `id`, `None` for a
/// preloaded one.
fn generation_of(id: u64, preload: u64) -> Option<u64> {
    match batch(preload) {
        1 if id < 1_000_000 => Some(id),
        1 => None,
        _ if id >= 1 << 20 => Some(id >> 20),
        _ => None,
    }
}

fn crash_reservations(g: u64, preload: u64) -> impl Iterator<Item = Reservation> {
    (0..batch(preload)).map(move |j| {
        reservation(
            crash_id(g, j, preload),
            format!("user{}", g % 7),
            T0 + g as i64 * 60 + j as i64,
        )
    })
}

/// The state the crash test's edits leave at generation `g`: the last
/// `WINDOW` generations' reservations the crasher added, plus the `preload`
/// ones (which were written as generation 1, so the crasher starts at 2).
fn crash_state(g: u64, preload: u64) -> State {
    let first = if preload > 0 { 2 } else { 1 };
    let mut reservations: Vec<Reservation> = (g.saturating_sub(WINDOW - 1).max(first)..=g)
        .flat_map(|id| crash_reservations(id, preload))
        .collect();
    reservations.extend(preloaded(preload));
    reservations.sort_by_key(|r| (r.start, r.id.0));
    State {
        generation: g,
        reservations,
        ..State::default()
    }
}

/// How many reservations differ between the crash states of generations
/// `a` and `b` (each is fully determined by its id).
fn changes_between(a: u64, b: u64, preload: u64) -> usize {
    let ids = |g| -> BTreeSet<u64> {
        crash_state(g, preload)
            .reservations
            .iter()
            .map(|r| r.id.0)
            .collect()
    };
    ids(a).symmetric_difference(&ids(b)).count()
}

/// Edits the table forever, saying before each write which generation it
/// is about to write and after it that it did. It is killed at a random
/// moment.
fn crasher(store: &Store) -> i32 {
    let preload: u64 = std::env::var(PRELOAD)
        .expect("the crash test sets HOSTHOG_STORE_PRELOAD")
        .parse()
        .unwrap();
    loop {
        let mut about_to_write = 0;
        let done = store.edit(
            T0,
            |_| {},
            |state| {
                let g = state.generation + 1;
                state.reservations.retain(|r| {
                    generation_of(r.id.0, preload).is_none_or(|added| added + WINDOW != g)
                });
                state.reservations.extend(crash_reservations(g, preload));
                about_to_write = g;
                say(&format!("about to write generation {g}"));
                Ok(())
            },
        );
        if let Err(e) = done {
            eprintln!("crasher: {e}");
            return 1;
        }
        say(&format!("wrote generation {about_to_write}"));
    }
}

/// Takes the lock, says so, and holds it until its stdin closes.
fn holder(store: &Store) -> i32 {
    let Ok(lock) = store.lock(|_| {}) else {
        return 1;
    };
    say("locked");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(lock);
    0
}

/// Held for reading while a test forks a child, for writing by a test
/// that needs no fork to happen. A `flock` lock belongs to the open file
/// description, and a child forked by another test thread shares every
/// open descriptor of this process until it execs: a lock this process
/// dropped can stay held for that moment, and the next `lock` then waits
/// (and calls its callback) although no other process ever asked for it.
static FORK_GATE: RwLock<()> = RwLock::new(());

/// Starts this test binary as a child playing `role` in `dir`.
fn spawn_child(test: &str, role: &str, dir: &Path, extra: &[(&str, String)]) -> Child {
    let _forking = FORK_GATE.read().unwrap_or_else(PoisonError::into_inner);
    spawn_child_ungated(test, role, dir, extra)
}

/// [`spawn_child`] for the test that holds the gate itself. `spawn`
/// returns only once the child has exec'd (or failed to), so the child no
/// longer shares our descriptors when it returns.
fn spawn_child_ungated(test: &str, role: &str, dir: &Path, extra: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DIR, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    for (key, value) in extra {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// What a child said on one line of its stdout. libtest may print
/// "test NAME ... " on the same line before the first thing a test prints.
fn parse_said(line: &str) -> Option<&str> {
    line.split_once(SAY).map(|(_, said)| said.trim_end())
}

/// The lines a child said, in order.
fn said(stdout: impl Read) -> Vec<String> {
    BufReader::new(stdout)
        .lines()
        .map(Result::unwrap)
        .filter_map(|line| parse_said(&line).map(str::to_owned))
        .collect()
}

/// Reads lines from a child until it says `expected`.
fn wait_for_line(stdout: &mut BufReader<ChildStdout>, expected: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = stdout.read_line(&mut line).unwrap();
        assert_ne!(n, 0, "the child exited before saying {expected:?}");
        if parse_said(&line) == Some(expected) {
            return;
        }
    }
}

/// A private state directory, owned by whoever runs the tests.
fn state_dir() -> (tempfile::TempDir, Store, u32) {
    let dir = tempfile::tempdir().unwrap();
    let owner = std::fs::metadata(dir.path()).unwrap().uid();
    let store = Store::new(dir.path());
    (dir, store, owner)
}

/// Temporary tables left in `dir`.
fn leftovers(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".table.new."))
        .collect()
}

/// A random seed without a clock: std's per-process random hash keys.
/// `HOSTHOG_TEST_SEED` replays a run.
fn seed() -> u64 {
    let seed = std::env::var("HOSTHOG_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| RandomState::new().build_hasher().finish());
    eprintln!("HOSTHOG_TEST_SEED={seed}");
    seed
}

/// xorshift64*: enough randomness for kill delays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[test]
fn no_lost_update_with_concurrent_readers() {
    play_child_role();
    let (dir, store, owner) = state_dir();
    // Generation 1: an empty table, so readers always find one.
    store.edit(T0, |_| {}, |_| Ok(())).unwrap();
    let path = dir.path().join(TABLE_NAME);

    let started = Instant::now();
    let mut children: Vec<Child> = (0..WRITERS)
        .map(|k| {
            spawn_child(
                "no_lost_update_with_concurrent_readers",
                "writer",
                dir.path(),
                &[(WRITER, k.to_string())],
            )
        })
        .collect();

    // Every open, at any moment, finds a complete table in which each of
    // the generation - 1 edits so far has left its reservation.
    let mut opens = 0u64;
    let mut last_generation = 0;
    let mut running = children.len();
    while running > 0 {
        let file =
            TableFile::open(&path, owner).unwrap_or_else(|e| panic!("open #{opens} failed: {e}"));
        let table = file
            .table()
            .unwrap_or_else(|e| panic!("open #{opens}: the table does not validate: {e}"));
        let generation = table.generation();
        assert!(
            generation >= last_generation,
            "generation went back from {last_generation} to {generation}"
        );
        assert_eq!(
            table.reservations().count() as u64,
            generation - 1,
            "open #{opens}: generation {generation} lost an update"
        );
        last_generation = generation;
        opens += 1;
        running = children
            .iter_mut()
            .map(|c| c.try_wait().unwrap())
            .filter(Option::is_none)
            .count();
    }
    let elapsed = started.elapsed();
    for (k, mut child) in children.into_iter().enumerate() {
        let status = child.wait().unwrap();
        assert!(status.success(), "writer {k} failed: {status}");
    }

    let file = TableFile::open(&path, owner).unwrap();
    let table = file.table().unwrap();
    let total = WRITERS * EDITS_PER_WRITER;
    assert_eq!(table.generation(), total + 1);
    let ids: HashSet<u64> = table.reservations().map(|r| r.id().0).collect();
    let expected: HashSet<u64> = (0..WRITERS)
        .flat_map(|k| (0..EDITS_PER_WRITER).map(move |i| ((k + 1) << 32) | i))
        .collect();
    assert_eq!(ids.len(), 1600);
    assert_eq!(ids, expected);
    for r in table.reservations() {
        let k = (r.id().0 >> 32) - 1;
        assert_eq!(r.owner(), format!("writer{k}"));
    }
    assert!(leftovers(dir.path()).is_empty());
    assert!(opens >= 100, "the reader only looked {opens} times");
    eprintln!(
        "{total} edits by {WRITERS} processes in {elapsed:.2?}; \
         the reader validated the table {opens} times"
    );
}

/// How a kill landed, judged from what the child said before it.
#[derive(Debug, Default)]
struct Outcomes {
    before_any_edit: usize,
    between_edits: usize,
    mid_edit_old_state: usize,
    mid_edit_new_state: usize,
    leftovers_seen: usize,
    /// Killed while writing a full table (more than `COMPACT_AFTER`
    /// changes) with a change file beside it; the old pair survived.
    mid_full_rewrite_beside_a_change_file: usize,
}

#[test]
fn crash_safety_under_random_sigkill() {
    play_child_role();
    crash_safety("crash_safety_under_random_sigkill", 0);
}

/// The same with a table of more than `FULL_WRITE_UP_TO` reservations, so
/// that writes replace the change file and, every so often, the full table.
#[test]
fn crash_safety_of_change_files_under_random_sigkill() {
    play_child_role();
    crash_safety(
        "crash_safety_of_change_files_under_random_sigkill",
        libhosthog::FULL_WRITE_UP_TO as u64 + 50,
    );
}

fn crash_safety(test: &str, preload: u64) {
    let (dir, store, owner) = state_dir();
    let path = dir.path().join(TABLE_NAME);
    if preload > 0 {
        let lock = store.lock(|_| {}).unwrap();
        let mut state = State {
            reservations: preloaded(preload),
            ..State::default()
        };
        lock.write(&mut state, T0).unwrap();
        assert_eq!(state, crash_state(1, preload));
    }
    let mut rng = Rng(seed() | 1);
    // Kill delays are drawn from [0, window): from before the child has
    // started up to well inside its stream of edits (an edit with its two
    // fsyncs takes a few ms here). On a slow or loaded machine start-up
    // alone can take longer than 40 ms, so the window grows while kills
    // land before any edit and shrinks back while they do not.
    let mut window_us: u64 = 40_000;
    let mut outcomes = Outcomes::default();
    let mut generation = u64::from(preload > 0);
    let mut pending_leftovers = BTreeSet::new();
    let mut change_files = 0;
    let started = Instant::now();
    // KILLS kills, and more (up to five times as many) until kills have
    // landed everywhere the assertions below ask for: on a fast file system
    // (an overlay in a container) a temporary file lives briefly enough to
    // be missed 200 times.
    let covered = |o: &Outcomes| {
        o.before_any_edit > 0
            && o.between_edits + o.mid_edit_new_state > 0
            && o.mid_edit_old_state > 0
            && o.leftovers_seen > 0
            && (preload == 0 || o.mid_full_rewrite_beside_a_change_file > 0)
    };
    let mut kill = 0;
    while kill < KILLS || (!covered(&outcomes) && kill < 5 * KILLS) {
        kill += 1;
        let mut child = spawn_child(
            test,
            "crasher",
            dir.path(),
            &[(PRELOAD, preload.to_string())],
        );
        // Every 20th kill lands at once, so kills before any edit happen
        // however loaded the machine is (a loaded machine once gave none).
        let delay = if kill % 20 == 0 {
            0
        } else {
            rng.below(window_us)
        };
        std::thread::sleep(Duration::from_micros(delay));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let lines = said(child.stdout.take().unwrap());
        let what = format!("kill #{kill} ({status}) after {lines:?}");

        // What the table may hold: the last generation the child said it
        // wrote, or, if it was killed inside an edit, that one or the one
        // before it.
        let last_about = lines
            .iter()
            .filter_map(|l| l.strip_prefix("about to write generation "))
            .map(|g| g.parse::<u64>().unwrap())
            .next_back();
        let last_wrote = lines
            .iter()
            .filter_map(|l| l.strip_prefix("wrote generation "))
            .map(|g| g.parse::<u64>().unwrap())
            .next_back();
        let file = TableFile::open(&path, owner);
        let on_disk = match &file {
            Ok(file) => {
                let table = file
                    .table()
                    .unwrap_or_else(|e| panic!("{what}: the table does not validate: {e}"));
                table.generation()
            }
            Err(e) if e.kind() == libhosthog::ErrorKind::Missing && generation == 0 => 0,
            Err(e) => panic!("{what}: {e}"),
        };
        match (last_about, last_wrote) {
            (None, _) => {
                assert_eq!(on_disk, generation, "{what}");
                outcomes.before_any_edit += 1;
                window_us = (window_us * 5 / 4).min(1_000_000);
            }
            (Some(about), Some(wrote)) if about == wrote => {
                assert_eq!(on_disk, wrote, "{what}");
                outcomes.between_edits += 1;
            }
            (Some(about), _) => {
                if on_disk == about {
                    outcomes.mid_edit_new_state += 1;
                } else {
                    assert_eq!(on_disk, about - 1, "{what}");
                    outcomes.mid_edit_old_state += 1;
                    if let Ok(file) = &file {
                        let table = file.table().unwrap();
                        if table.changes_pending() > 0
                            && changes_between(about, table.base_generation(), preload)
                                > libhosthog::COMPACT_AFTER
                        {
                            outcomes.mid_full_rewrite_beside_a_change_file += 1;
                        }
                    }
                }
            }
        }
        // Not only the generation: the whole file is exactly what a clean
        // write of that state gives.
        if let Ok(file) = &file {
            let table = file.table().unwrap();
            if table.changes_pending() == 0 && preload == 0 {
                assert_eq!(
                    file.bytes(),
                    encode_at(&crash_state(on_disk, preload), T0).unwrap(),
                    "{what}: generation {on_disk} holds the wrong state"
                );
            }
            if table.changes_pending() > 0 {
                change_files += 1;
            }
            assert_eq!(
                table.to_state(),
                crash_state(on_disk, preload),
                "{what}: generation {on_disk} holds the wrong state"
            );
        }
        // A writer that took the lock removed what earlier kills left.
        let now_left = leftovers(dir.path());
        if last_about.is_some() {
            assert!(
                pending_leftovers.is_disjoint(&now_left),
                "{what}: the writer did not remove {pending_leftovers:?}"
            );
        }
        if !now_left.is_empty() {
            outcomes.leftovers_seen += 1;
        }
        pending_leftovers = now_left;
        generation = on_disk;
        if last_about.is_some() {
            window_us = (window_us * 31 / 32).max(40_000);
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{kill} kills in {elapsed:.2?}, reaching generation {generation} \
         (delay window at the end: {window_us} µs): {outcomes:?}"
    );

    // The next writer cleans up and continues from the surviving state.
    store
        .edit(
            T0,
            |_| {},
            |state| {
                assert_eq!(*state, crash_state(generation, preload));
                Ok(())
            },
        )
        .unwrap();
    assert!(leftovers(dir.path()).is_empty());
    assert_eq!(store.read().unwrap().generation, generation + 1);

    // The kills must have landed everywhere, or the test proved little.
    assert!(outcomes.before_any_edit > 0, "{outcomes:?}");
    assert!(
        outcomes.between_edits + outcomes.mid_edit_new_state > 0,
        "{outcomes:?}"
    );
    assert!(outcomes.mid_edit_old_state > 0, "{outcomes:?}");
    assert!(outcomes.leftovers_seen > 0, "{outcomes:?}");
    assert_eq!(
        outcomes.mid_full_rewrite_beside_a_change_file > 0,
        preload > 0,
        "{outcomes:?}"
    );
    // With the preload, the kills also landed while change files were the
    // newest part of the table.
    eprintln!("{change_files} of {kill} kills left a change file in use");
    assert_eq!(change_files > 0, preload > 0, "{change_files}");
}

#[test]
fn lock_wait_callback_only_when_another_process_holds_the_lock() {
    play_child_role();
    // No other test of this process may fork while this one checks when
    // the callback runs (see FORK_GATE).
    let _no_forks = FORK_GATE.write().unwrap_or_else(PoisonError::into_inner);
    let (dir, store, _) = state_dir();
    let lock_path = dir.path().join("table.lock");

    // Uncontended: no callback, for lock and for edit.
    let mut called = Vec::new();
    drop(store.lock(|p| called.push(p.to_path_buf())).unwrap());
    store
        .edit(T0, |p| called.push(p.to_path_buf()), |_| Ok(()))
        .unwrap();
    assert_eq!(called, Vec::<PathBuf>::new());

    // Another process holds the lock. The callback must run before the
    // edit blocks: it is what lets the holder go (by closing its stdin), so
    // without it the edit would wait forever (the watchdog then fails the
    // test).
    let mut holder = spawn_child_ungated(
        "lock_wait_callback_only_when_another_process_holds_the_lock",
        "holder",
        dir.path(),
        &[],
    );
    let holder_pid = holder.id();
    let (edited, edit_done) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if edit_done.recv_timeout(Duration::from_secs(20)).is_ok() {
            return false;
        }
        // The holder is not reaped before this thread is joined, so its
        // pid cannot have been reused.
        // SAFETY: kill(2) has no memory preconditions.
        unsafe { libc::kill(holder_pid as libc::pid_t, libc::SIGKILL) };
        true
    });
    let mut holder_out = BufReader::new(holder.stdout.take().unwrap());
    wait_for_line(&mut holder_out, "locked");
    let mut holder_stdin = holder.stdin.take();
    let mut messages = Vec::new();
    store
        .edit(
            T0,
            |p| {
                messages.push(format!("waiting for lock on {}", p.display()));
                drop(holder_stdin.take());
            },
            |state| {
                state
                    .reservations
                    .push(reservation(1, "alice".into(), T0 + 60));
                Ok(())
            },
        )
        .unwrap();
    // If the edit went ahead without waiting, the holder is still holding
    // on: let it go before judging, so a broken lock fails, not hangs.
    drop(holder_stdin);
    let _ = edited.send(());
    assert!(
        !watchdog.join().unwrap(),
        "the watchdog had to free the lock"
    );
    assert!(holder.wait().unwrap().success());
    assert_eq!(
        messages,
        [format!("waiting for lock on {}", lock_path.display())]
    );
    assert_eq!(store.read().unwrap().reservations.len(), 1);

    // The holder has exited: no waiting again.
    store
        .edit(T0, |p| called.push(p.to_path_buf()), |_| Ok(()))
        .unwrap();
    assert_eq!(called, Vec::<PathBuf>::new());
}
