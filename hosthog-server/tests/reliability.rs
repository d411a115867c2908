//! hosthog-server under load and under attack, against a real PostgreSQL
//! (tests/src/postgres.rs) and the real binary over HTTPS
//! (tests/src/https_client.rs):
//!
//! - 16 clients book overlapping slots on overlapping host sets for 30 s:
//!   afterwards SQL finds no overlap, every acknowledged booking is in the
//!   database as acknowledged, and no client saw a 5xx;
//! - the same while the server is killed with SIGKILL and started again;
//! - PostgreSQL stopped: 503 with `"error": "unavailable"` and a message
//!   naming the database; the server recovers by itself when it is back;
//! - hostile requests: each a clear 4xx in the JSON error shape, nothing
//!   changed in the database, no panic, the server still serving.
//!
//! Run as root (PostgreSQL runs as the postgres user through setpriv).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hosthog_tests::fleet::FleetServer;
use hosthog_tests::https_client::{Connection, Response, Tls};
use serde_json::{Value, json};

#[allow(clippy::disallowed_methods)] // the test's own clock
fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// xorshift64*: the clients' choices, reproducible per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const HOSTS: usize = 12;
const CLIENTS: usize = 16;
/// Slots of 10 minutes: few enough that bookings collide often.
const SLOT: i64 = 600;
const SLOTS: u64 = 120;

fn host_name(i: usize) -> String {
    format!("node{i:02}")
}

/// A booking the server acknowledged (201).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Acked {
    id: String,
    hosts: Vec<String>,
    start: i64,
    end: i64,
    exclusive: bool,
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Outcome {
    acked: Vec<Acked>,
    conflicts: usize,
    /// Answers other than 201 and 409: status and body.
    other: Vec<(u16, String)>,
    /// Requests that got no answer (connection refused or cut).
    no_answer: usize,
    latencies: Vec<Duration>,
}

/// A server with HOSTS hosts and a token per client, serving.
fn fleet() -> (FleetServer, Vec<String>) {
    let mut server = FleetServer::start();
    for i in 0..HOSTS {
        server.add_host(&host_name(i));
    }
    let tokens = (0..CLIENTS)
        .map(|i| server.token(&format!("user{i:02}")))
        .collect();
    server.serve();
    (server, tokens)
}

/// CLIENTS clients booking until `stop` is set: each picks 1 to 4 of the
/// hosts (overlapping sets), 1 to 4 slots among SLOTS, mostly exclusive.
/// Only the port and the CA are needed: the server behind the port may be
/// killed and started again meanwhile.
fn load(port: u16, ca_dir: &Path, tokens: &[String], base: i64, stop: &AtomicBool) -> Outcome {
    let tls = Tls::new(&ca_dir.join("ca.pem"), None);
    let outcome = Mutex::new(Outcome::default());
    std::thread::scope(|scope| {
        for (c, token) in tokens.iter().enumerate() {
            let tls = tls.clone();
            let outcome = &outcome;
            scope.spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1));
                let mut mine = Outcome::default();
                let mut connection: Option<Connection> = None;
                while !stop.load(Ordering::Relaxed) {
                    let n = 1 + rng.below(4) as usize;
                    let mut hosts: Vec<String> = (0..n)
                        .map(|_| host_name(rng.below(HOSTS as u64) as usize))
                        .collect();
                    hosts.sort();
                    hosts.dedup();
                    let start = base + SLOT * rng.below(SLOTS) as i64;
                    let end = start + SLOT * (1 + rng.below(4) as i64);
                    let exclusive = rng.below(10) < 7;
                    let body = json!({
                        "hosts": hosts, "start": start, "end": end,
                        "mode": if exclusive { "exclusive" } else { "shared" },
                        "comment": format!("load from client {c}"),
                    })
                    .to_string();
                    let sent = Instant::now();
                    let answer = match connection.as_mut() {
                        Some(conn) => conn.request(
                            "POST",
                            "/api/v1/reservations",
                            Some(token),
                            Some(body.as_bytes()),
                        ),
                        None => match tls.connect(port) {
                            Ok(conn) => connection.insert(conn).request(
                                "POST",
                                "/api/v1/reservations",
                                Some(token),
                                Some(body.as_bytes()),
                            ),
                            Err(e) => Err(e),
                        },
                    };
                    let answer = match answer {
                        Ok(answer) => answer,
                        Err(_) => {
                            // Refused or cut (the server is down): no
                            // answer, so nothing acknowledged; try again.
                            mine.no_answer += 1;
                            connection = None;
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                    };
                    mine.latencies.push(sent.elapsed());
                    let reply = answer.json();
                    match answer.status {
                        201 => mine.acked.push(Acked {
                            id: reply["id"].as_str().expect("an id").to_string(),
                            hosts,
                            start,
                            end,
                            exclusive,
                        }),
                        409 => {
                            assert_eq!(reply["error"], "conflict", "{reply}");
                            assert!(
                                !reply["in_the_way"].as_array().unwrap().is_empty(),
                                "a conflict names what is in the way: {reply}"
                            );
                            mine.conflicts += 1;
                        }
                        status => mine
                            .other
                            .push((status, String::from_utf8_lossy(&answer.body).into())),
                    }
                    if answer.header("connection") == Some("close") {
                        connection = None;
                    }
                }
                let mut all = outcome.lock().unwrap();
                all.acked.extend(mine.acked);
                all.conflicts += mine.conflicts;
                all.other.extend(mine.other);
                all.no_answer += mine.no_answer;
                all.latencies.extend(mine.latencies);
            });
        }
    });
    outcome.into_inner().unwrap()
}

/// Claims on one host that overlap where one of them is exclusive: the
/// double bookings the schema forbids. Must be none.
const OVERLAPS: &str = "SELECT count(*) FROM claim a JOIN claim b
     ON a.host = b.host AND a.reservation < b.reservation
    AND tstzrange(a.start_at, a.end_at) && tstzrange(b.start_at, b.end_at)
    AND (a.exclusive OR b.exclusive)";

/// Every reservation with its hosts, span and mode, as the API names ids.
const BOOKINGS: &str = "SELECT lpad(to_hex(r.id), 16, '0'),
        string_agg(h.name, ',' ORDER BY h.name),
        extract(epoch FROM r.start_at)::bigint, extract(epoch FROM r.end_at)::bigint,
        r.exclusive
     FROM reservation r JOIN claim c ON c.reservation = r.id JOIN host h ON h.id = c.host
     GROUP BY r.id ORDER BY 1";

/// Checks the database against what the clients saw; returns how many
/// reservations it holds.
fn check(server: &FleetServer, outcome: &Outcome) -> usize {
    assert!(
        outcome.other.is_empty(),
        "answers other than 201 and 409 (the first ten): {:?}",
        &outcome.other[..outcome.other.len().min(10)]
    );
    assert_eq!(server.pg.psql("fleet", OVERLAPS).trim(), "0");
    let stored: BTreeMap<String, Acked> = server
        .pg
        .psql("fleet", BOOKINGS)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            let acked = Acked {
                id: f[0].to_string(),
                hosts: f[1].split(',').map(String::from).collect(),
                start: f[2].parse().unwrap(),
                end: f[3].parse().unwrap(),
                exclusive: f[4] == "t",
            };
            (acked.id.clone(), acked)
        })
        .collect();
    for acked in &outcome.acked {
        assert_eq!(
            stored.get(&acked.id),
            Some(acked),
            "an acknowledged booking is not in the database as acknowledged"
        );
    }
    // Every stored reservation was audited in its own transaction, and
    // bumped each of its hosts once: versions count the claims.
    assert_eq!(
        server
            .pg
            .psql(
                "fleet",
                "SELECT count(*) FROM audit WHERE action = 'reserve'"
            )
            .trim(),
        stored.len().to_string()
    );
    assert_eq!(
        server
            .pg
            .psql(
                "fleet",
                "SELECT count(*) FROM host h WHERE version <> \
                 (SELECT count(*) FROM claim c WHERE c.host = h.id)"
            )
            .trim(),
        "0",
        "a host's version is not the number of bookings that touched it"
    );
    stored.len()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(what: &str, outcome: &mut Outcome, took: Duration, stored: usize) {
    outcome.latencies.sort();
    let answered = outcome.latencies.len();
    eprintln!(
        "{what}: {answered} answers in {took:.1?} ({:.0}/s): {} acknowledged, {} conflicts, \
         {} without an answer, 0 others; {stored} reservations in the database; \
         latency p50 {:.1?} p99 {:.1?} max {:.1?}",
        answered as f64 / took.as_secs_f64(),
        outcome.acked.len(),
        outcome.conflicts,
        outcome.no_answer,
        percentile(&outcome.latencies, 0.5),
        percentile(&outcome.latencies, 0.99),
        outcome.latencies.last().unwrap(),
    );
}

#[test]
fn sixteen_clients_for_thirty_seconds_never_double_book() {
    let (server, tokens) = fleet();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut outcome = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(30));
            stop.store(true, Ordering::Relaxed);
        });
        load(server.port, &server.ca_dir(), &tokens, now() + 3600, &stop)
    });
    let took = started.elapsed();
    let stored = check(&server, &outcome);
    assert_eq!(outcome.no_answer, 0, "every request was answered");
    assert_eq!(stored, outcome.acked.len(), "nothing stored unacknowledged");
    assert!(
        outcome.acked.len() >= 100 && outcome.conflicts >= 100,
        "the load collided too little to prove anything: {} booked, {} refused",
        outcome.acked.len(),
        outcome.conflicts
    );
    report("30 s of load", &mut outcome, took, stored);
}

#[test]
fn kill_9_mid_load_loses_no_acknowledged_booking() {
    let (mut server, tokens) = fleet();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    // The load runs against the port; the server behind it is killed and
    // started again, twice.
    let (port, ca) = (server.port, server.ca_dir());
    let mut outcome = std::thread::scope(|scope| {
        let loader = scope.spawn(|| load(port, &ca, &tokens, now() + 3600, &stop));
        for _ in 0..2 {
            std::thread::sleep(Duration::from_secs(6));
            let pid = server.serve_pid().unwrap();
            server.stop(); // SIGKILL
            eprintln!("killed hosthog-server (pid {pid}) with SIGKILL");
            std::thread::sleep(Duration::from_millis(500));
            server.serve();
        }
        std::thread::sleep(Duration::from_secs(6));
        stop.store(true, Ordering::Relaxed);
        loader.join().unwrap()
    });
    let took = started.elapsed();
    let stored = check(&server, &outcome);
    assert!(
        outcome.no_answer > 0,
        "the kills should have cut some requests"
    );
    // A request cut by the kill may have committed unacknowledged.
    assert!(stored >= outcome.acked.len() && stored <= outcome.acked.len() + CLIENTS * 2);
    report("load with two kill -9", &mut outcome, took, stored);
}
