//! Reserve round trip through hosthogd with 10,000 reservations in the
//! table, and throughput with 16 concurrent clients.
//!
//!     cargo bench -p hosthogd --bench roundtrip
//!
//! The daemon's server runs in this process on a socket in a temporary
//! directory (the same `serve` loop and `Service` as hosthogd); clients are
//! threads speaking the protocol, so the figures are the daemon's: frame,
//! parse, lock, check, encode the change file (or now and then the whole
//! table), fsync, rename, fsync the directory, audit append, answer.
//! Results go to stdout in the form docs/benchmarks.md uses.
//!
//! Each round trip is followed by its two peers, durable atomic replaces
//! (write, fsync, rename, fsync the directory; no hosthog code) of a file
//! the size of the whole table and of one the size of the change file at
//! that moment: what a whole-table rewrite costs, and the I/O floor of the
//! change-file write.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hosthog_booking::policy::Limits;
use hosthog_booking::protocol::{Op, Request, ReserveArgs, read_frame, write_frame};
use hosthogd::{Config, Service, server};
use libhosthog::{Mode, Reservation, ReservationId, State, Store};

const PRELOAD: usize = 10_000;
const SAMPLES: usize = 2_000;
const CLIENTS: usize = 16;
const PER_CLIENT: usize = 200;

fn reserve(socket: &Path, start: i64) -> Duration {
    let request = Request::new(Op::Reserve(ReserveArgs {
        mode: Mode::Shared,
        start,
        end: start + 60,
        with: vec![],
        comment: "bench".into(),
        owner: None,
        force: false,
        hosts: vec![],
    }));
    let t = Instant::now();
    let stream = UnixStream::connect(socket).unwrap();
    let mut writer = stream.try_clone().unwrap();
    write_frame(&mut writer, &request).unwrap();
    let frame = read_frame(&mut BufReader::new(stream)).unwrap().unwrap();
    let elapsed = t.elapsed();
    assert!(
        frame.starts_with(b"{\"version\":1,\"ok\""),
        "{}",
        String::from_utf8_lossy(&frame)
    );
    elapsed
}

/// Writes `bytes` durably and atomically at `path`, as the Store does.
fn durable_replace(path: &Path, bytes: &[u8]) -> Duration {
    use std::io::Write;
    let temp = path.with_extension("new");
    let t = Instant::now();
    let mut file = std::fs::File::create(&temp).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
    std::fs::rename(&temp, path).unwrap();
    std::fs::File::open(path.parent().unwrap())
        .unwrap()
        .sync_all()
        .unwrap();
    t.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let now = server::now();
    // Preload: 10,000 shared reservations of 100 users over the next weeks.
    let reservations = (0..PRELOAD)
        .map(|i| Reservation {
            id: ReservationId(0x1000_0000_0000_0000 + i as u64),
            owner: format!("user{:03}", i % 100),
            with: vec![],
            start: now + 3600 + i as i64 * 120,
            end: now + 3600 + i as i64 * 120 + 3600,
            mode: Mode::Shared,
            comment: format!("preloaded reservation {i}"),
            created: now,
            updated: now,
        })
        .collect();
    let store = Store::new(&state_dir);
    let lock = store.lock(|_| {}).unwrap();
    lock.write(
        &mut State {
            reservations,
            ..State::default()
        },
        now,
    )
    .unwrap();
    drop(lock);
    let table_bytes = std::fs::metadata(store.table_path()).unwrap().len();

    let config = Config {
        limits: Limits::default(),
        ..Config::default()
    };
    let service = Arc::new(Service::new(&state_dir, config).unwrap());
    let socket = dir.path().join("hosthogd.sock");
    let listener = server::bind(&socket).unwrap();
    std::thread::spawn(move || server::serve(&listener, service, 64));

    // Sequential round trips, each followed by the I/O floor for the same
    // table: write its bytes to a new file in the same directory, fsync,
    // rename, fsync the directory (what any durable atomic replace costs,
    // with no hosthog code in it). Interleaved, so load on this shared
    // machine hits both alike.
    let mut samples = Vec::with_capacity(SAMPLES);
    let mut whole = Vec::with_capacity(SAMPLES);
    let mut floor = Vec::with_capacity(SAMPLES);
    let mut full_writes = 0;
    let mut delta_sizes = Vec::with_capacity(SAMPLES);
    let base_generation =
        |path: &Path| libhosthog::format::peek(&std::fs::read(path).unwrap()).unwrap();
    for i in 0..SAMPLES {
        let before = base_generation(&store.table_path()).generation;
        samples.push(reserve(&socket, now + 86_400 * 60 + i as i64 * 60));
        if base_generation(&store.table_path()).generation != before {
            full_writes += 1;
        }
        let bytes = std::fs::read(store.table_path()).unwrap();
        whole.push(durable_replace(&dir.path().join("whole"), &bytes));
        let delta = std::fs::read(store.delta_path()).unwrap_or_default();
        delta_sizes.push(delta.len());
        floor.push(durable_replace(&dir.path().join("floor"), &delta));
    }
    for v in [&mut samples, &mut whole, &mut floor] {
        v.sort();
    }
    delta_sizes.sort();

    // Throughput with 16 concurrent clients.
    let t = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                for i in 0..PER_CLIENT {
                    reserve(
                        &socket,
                        now + 86_400 * 70 + ((c * PER_CLIENT + i) as i64) * 60,
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = t.elapsed();
    let total = CLIENTS * PER_CLIENT;

    println!(
        "table: {PRELOAD} reservations preloaded ({table_bytes} bytes), growing to {}",
        PRELOAD + SAMPLES + total
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let line = |what: &str, v: &[Duration]| {
        println!(
            "{what}: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            ms(percentile(v, 0.50)),
            ms(percentile(v, 0.99)),
            ms(percentile(v, 0.999)),
            ms(v[v.len() - 1])
        );
    };
    line(
        &format!("reserve round trip, sequential, {SAMPLES} samples"),
        &samples,
    );
    line("peer: durable replace of a table-sized file", &whole);
    line("peer: durable replace of a change-file-sized file", &floor);
    for (what, p) in [("p50", 0.50), ("p99", 0.99)] {
        println!(
            "{what} ratios: round trip / whole-table replace {:.2}x, round trip / change-file replace {:.2}x",
            ms(percentile(&samples, p)) / ms(percentile(&whole, p)),
            ms(percentile(&samples, p)) / ms(percentile(&floor, p)),
        );
    }
    println!(
        "change file: median {} bytes, largest {} bytes; {full_writes} of {SAMPLES} round trips rewrote the whole table",
        delta_sizes[delta_sizes.len() / 2],
        delta_sizes[delta_sizes.len() - 1]
    );
    println!(
        "throughput, {CLIENTS} concurrent clients x {PER_CLIENT} reserves: {total} in {:.2} s = {:.0} reservations/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
}
