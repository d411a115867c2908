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

use hosthog_tests::fleet::{FleetServer, now};
use hosthog_tests::https_client::{Connection, Response, Tls};
use serde_json::{Value, json};

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
    /// 422s for the per-person limit (server.toml's default
    /// max_open_per_user, 20): a client that books fast enough reaches it.
    limited: usize,
    /// Answers other than 201, 409 and the limit's 422: status and body.
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
                        422 if reply["error"] == "limit" => {
                            // Limits count per host (docs/fleet.md); a
                            // refusal of a multi-host booking names it.
                            let message = reply["message"].as_str().unwrap_or_default();
                            let rest = match message.strip_prefix("on node") {
                                Some(r) => r.split_once(": ").map_or("", |(_, m)| m),
                                None => message,
                            };
                            assert_eq!(
                                rest,
                                format!(
                                    "user{c:02} already has 20 open reservations; \
                                     at most 20 are allowed"
                                ),
                                "{reply}"
                            );
                            mine.limited += 1;
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
                all.limited += mine.limited;
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

/// People with more open reservations on one host than the default limit
/// (20; limits count per host). Must be none.
const OVER_LIMIT: &str = "SELECT count(*) FROM (SELECT r.owner, c.host
     FROM reservation r JOIN claim c ON c.reservation = r.id
     WHERE r.cancelled_at IS NULL AND r.end_at > now()
     GROUP BY r.owner, c.host HAVING count(*) > 20) o";

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
        "answers other than 201, 409 and the limit's 422 (the first ten): {:?}",
        &outcome.other[..outcome.other.len().min(10)]
    );
    assert_eq!(server.pg.psql("fleet", OVERLAPS).trim(), "0");
    // The limit held: one client per person, so no person's requests raced.
    assert_eq!(server.pg.psql("fleet", OVER_LIMIT).trim(), "0");
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
         {} at the per-person limit, {} without an answer, 0 others; \
         {stored} reservations in the database; \
         latency p50 {:.1?} p99 {:.1?} max {:.1?}",
        answered as f64 / took.as_secs_f64(),
        outcome.acked.len(),
        outcome.conflicts,
        outcome.limited,
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

/// A new connection with `tls` that sends `raw` and reads the answer.
fn raw_request(tls: &Tls, port: u16, raw: &[u8]) -> Response {
    let mut connection = tls.connect(port).expect("connect");
    // The server may answer (413) and close before all of a huge body is
    // sent: the write then fails, and the answer is read all the same.
    let _ = connection.send_raw(raw);
    connection.read_response().expect("an answer")
}

/// A request's bytes: `headers` as given, the body with its length.
fn http(method: &str, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Asserts the JSON error shape: `status`, `"error": kind`, a message.
fn assert_refused(what: &str, answer: &Response, status: u16, kind: &str) {
    let body = answer.json();
    assert_eq!(
        (answer.status, body["error"].as_str()),
        (status, Some(kind)),
        "{what}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty() && !message.chars().any(char::is_control),
        "{what}: the message says what went wrong, in plain text: {body}"
    );
    eprintln!("{what}: {status} {kind}: {message}");
}

/// Everything a request could change, for before-and-after comparison.
fn dump(server: &FleetServer) -> String {
    [
        "SELECT * FROM reservation ORDER BY id",
        "SELECT * FROM claim ORDER BY reservation, host",
        "SELECT * FROM host ORDER BY id",
        "SELECT * FROM api_token ORDER BY sha256",
        "SELECT * FROM admin ORDER BY user_name",
        "SELECT * FROM audit ORDER BY id",
        "SELECT * FROM presence ORDER BY host",
    ]
    .iter()
    .map(|sql| server.pg.psql("fleet", sql))
    .collect::<Vec<_>>()
    .join("--\n")
}

#[test]
fn postgres_stopped_answers_503_and_recovers_by_itself() {
    let mut server = FleetServer::start();
    let gpu1 = server.add_host("gpu1");
    let alice = server.token("alice");
    server.serve();
    let people = Tls::new(&server.ca_dir().join("ca.pem"), None);
    let host = Tls::new(&server.ca_dir().join("ca.pem"), Some(&gpu1));
    let t = now();
    let booking = |start: i64| {
        json!({"hosts": ["gpu1"], "mode": "exclusive", "start": start, "end": start + 600})
            .to_string()
    };
    let mut conn = people.connect(server.port).unwrap();
    let answer = conn
        .request(
            "POST",
            "/api/v1/reservations",
            Some(&alice),
            Some(booking(t + 600).as_bytes()),
        )
        .unwrap();
    assert_eq!(answer.status, 201);

    server.pg.stop();
    let down = Instant::now();
    for (what, answer) in [
        (
            "a booking",
            conn.request(
                "POST",
                "/api/v1/reservations",
                Some(&alice),
                Some(booking(t + 1800).as_bytes()),
            )
            .unwrap(),
        ),
        (
            "the hosts",
            conn.request("GET", "/api/v1/hosts", Some(&alice), None)
                .unwrap(),
        ),
        (
            "a host's window",
            host.connect(server.port)
                .unwrap()
                .request("GET", "/agent/v1/window", None, None)
                .unwrap(),
        ),
    ] {
        assert_refused(what, &answer, 503, "unavailable");
        let message = answer.json()["message"].as_str().unwrap().to_string();
        assert!(
            message.starts_with("the calendar's database (PostgreSQL) cannot be used now: ")
                && message.ends_with("; try again in a moment"),
            "{message}"
        );
    }
    // Each refusal came quickly: nothing waits for a database that is gone.
    assert!(
        down.elapsed() < Duration::from_secs(5),
        "{:?}",
        down.elapsed()
    );
    let answer = conn
        .request("GET", "/api/v1/hosts", Some(&alice), None)
        .unwrap();
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&format!(
            "cannot reach the database fleet on {}",
            server.pg.socket_dir().display()
        )),
        "the message names the database: {message}"
    );
    assert!(server.serving());

    server.pg.start_again();
    let back = Instant::now();
    let recovered = loop {
        let answer = conn
            .request("GET", "/api/v1/hosts", Some(&alice), None)
            .unwrap();
        if answer.status == 200 {
            break back.elapsed();
        }
        assert_refused("while PostgreSQL starts", &answer, 503, "unavailable");
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "not recovered 15 s after PostgreSQL came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("answering again {recovered:?} after PostgreSQL was back, without a restart");
    let answer = conn
        .request(
            "POST",
            "/api/v1/reservations",
            Some(&alice),
            Some(booking(t + 1800).as_bytes()),
        )
        .unwrap();
    assert_eq!(answer.status, 201, "{:?}", answer.json());
    let answer = host
        .connect(server.port)
        .unwrap()
        .request("GET", "/agent/v1/window", None, None)
        .unwrap();
    assert_eq!(
        (answer.status, answer.json()["version"].as_i64()),
        (200, Some(2))
    );
    assert!(server.serving());
    assert!(
        !server.serve_log().contains("panicked"),
        "{}",
        server.serve_log()
    );
}

#[test]
fn hostile_requests_get_a_clear_4xx_and_change_nothing() {
    let mut server = FleetServer::start();
    let gpu1_old = server.add_host("gpu1");
    let gpu1 = server.add_host("gpu1"); // a new bundle: the old one is void
    let gpu2 = server.add_host("gpu2");
    let gpu3 = server.add_host("gpu3");
    server.run(&["host", "revoke", "gpu3"]);
    let alice = server.token("alice");
    let bob = server.token("bob");
    let revoked = server.token("mallory");
    server.pg.psql(
        "fleet",
        "UPDATE api_token SET revoked_at = now() WHERE user_name = 'mallory'",
    );
    // A CA of another lab, with a certificate for a host named gpu1 (in a
    // database of its own: the calendar under test never hears of it).
    server.pg.create_database("other");
    let other_ca = server.dir.path().join("other-ca");
    let other_bundle = server.dir.path().join("other-gpu1.pem");
    let other = |args: &[&str]| {
        let out = std::process::Command::new(hosthog_tests::fleet::binary("hosthog-server"))
            .args([
                "--config",
                "/nonexistent",
                "--database",
                &server.pg.url("other"),
            ])
            .arg("--ca-dir")
            .arg(&other_ca)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    other(&["migrate"]);
    other(&["ca", "init", "--name", "localhost"]);
    other(&[
        "host",
        "add",
        "gpu1",
        "--bundle",
        other_bundle.to_str().unwrap(),
    ]);
    server.serve();

    let ca = server.ca_dir().join("ca.pem");
    let people = Tls::new(&ca, None);
    let as_gpu1 = Tls::new(&ca, Some(&gpu1));
    let port = server.port;
    let t = now();
    // alice's reservation of gpu1, the target of the attempts below.
    let answer = people
        .connect(port)
        .unwrap()
        .request(
            "POST",
            "/api/v1/reservations",
            Some(&alice),
            Some(
                json!({"hosts": ["gpu1"], "mode": "exclusive", "start": t + 3600,
                       "end": t + 7200, "comment": "alice's"})
                .to_string()
                .as_bytes(),
            ),
        )
        .unwrap();
    assert_eq!(answer.status, 201);
    let alices = answer.json()["id"].as_str().unwrap().to_string();
    let before = dump(&server);

    // Slow clients, at the same time as everything below: one trickles
    // its headers a byte a second, one sends half a body and stalls, and
    // fifty more hold connections with half a request line.
    let slow = std::thread::scope(|scope| {
        let trickle = scope.spawn(|| {
            let mut conn = people.connect(port).unwrap();
            let started = Instant::now();
            conn.send_raw(b"POST /api/v1/reservations HTTP/1.1\r\n")
                .unwrap();
            for byte in b"X-Slow: ".iter().cycle() {
                if conn.send_raw(&[*byte]).is_err() {
                    break;
                }
                conn.set_read_timeout(Duration::from_secs(1)).unwrap();
                match conn.closed_by_server() {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "a client trickling its headers was not cut off in 30 s"
                );
            }
            started.elapsed()
        });
        let stalled = scope.spawn(|| {
            let mut conn = people.connect(port).unwrap();
            let started = Instant::now();
            conn.send_raw(
                format!(
                    "POST /api/v1/reservations HTTP/1.1\r\nHost: localhost\r\n\
                     Authorization: Bearer {alice}\r\nContent-Type: application/json\r\n\
                     Content-Length: 200\r\n\r\n{{\"hosts\": [\"gpu1\"],"
                )
                .as_bytes(),
            )
            .unwrap();
            let answer = conn.read_response().unwrap();
            (answer, started.elapsed())
        });
        let idle: Vec<Connection> = (0..50)
            .map(|_| {
                let mut conn = people.connect(port).unwrap();
                conn.send_raw(b"GET /api/v1/ho").unwrap();
                conn
            })
            .collect();
        let cases = hostile_cases(
            &server, &people, &as_gpu1, &alice, &bob, &revoked, &alices, t,
        );
        let refused_others = [
            (gpu1_old.as_path(), "a replaced bundle"),
            (gpu3.as_path(), "a revoked host's certificate"),
        ];
        let mut count = cases;
        for (bundle, what) in refused_others {
            let answer = Tls::new(&ca, Some(bundle))
                .connect(port)
                .unwrap()
                .request("GET", "/agent/v1/window", None, None)
                .unwrap();
            assert_refused(what, &answer, 401, "unauthenticated");
            count += 1;
        }
        // gpu2's certificate may not end alice's reservation for bob.
        let answer = Tls::new(&ca, Some(&gpu2))
            .connect(port)
            .unwrap()
            .request(
                "POST",
                "/agent/v1/request",
                None,
                Some(
                    json!({"user": "bob", "op": {"release": {"id": alices}}})
                        .to_string()
                        .as_bytes(),
                ),
            )
            .unwrap();
        assert_refused("another host's user ending alice's", &answer, 403, "denied");
        count += 1;
        // Another lab's certificate, even for a host called gpu1, does not
        // get past the TLS handshake (the CA does not vouch for it).
        let foreign = Tls::new(&ca, Some(&other_bundle));
        let refused = foreign
            .connect(port)
            .and_then(|mut c| c.request("GET", "/agent/v1/window", None, None));
        let error = refused.expect_err("another CA's certificate must be refused");
        eprintln!("another lab's certificate: refused in the handshake: {error}");
        count += 1;
        drop(idle);
        (count, trickle.join().unwrap(), stalled.join().unwrap())
    });
    let (count, trickled, (stalled, stalled_for)) = slow;
    eprintln!("a client trickling its headers was cut off after {trickled:.1?}");
    assert!(
        trickled >= Duration::from_secs(9) && trickled < Duration::from_secs(14),
        "cut off after {trickled:?}"
    );
    assert_refused("a body that stalls", &stalled, 408, "timeout");
    assert!(
        stalled_for >= Duration::from_secs(9) && stalled_for < Duration::from_secs(14),
        "{stalled_for:?}"
    );
    eprintln!("{} hostile requests, 2 slow clients", count + 2);
    assert!(count + 2 >= 30);

    assert_eq!(
        dump(&server),
        before,
        "a hostile request changed the database"
    );
    assert!(server.serving(), "the server died");
    let log = server.serve_log();
    assert!(!log.contains("panicked"), "{log}");
    let answer = people
        .connect(port)
        .unwrap()
        .request("GET", "/api/v1/hosts", Some(&alice), None)
        .unwrap();
    assert_eq!(answer.status, 200, "still serving");

    // SQL metacharacters where they are allowed are data, kept verbatim.
    let comment = "'); DELETE FROM claim; -- \\\" $1 %s";
    let answer = people
        .connect(port)
        .unwrap()
        .request(
            "POST",
            "/api/v1/reservations",
            Some(&bob),
            Some(
                json!({"hosts": ["gpu2"], "mode": "shared", "start": t + 60, "end": t + 600,
                       "comment": comment})
                .to_string()
                .as_bytes(),
            ),
        )
        .unwrap();
    assert_eq!(answer.status, 201, "{:?}", answer.json());
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT comment FROM reservation WHERE owner = 'bob'"
        ),
        format!("{comment}\n")
    );
    assert_eq!(server.pg.psql("fleet", "SELECT count(*) FROM claim"), "2\n");
}

/// The hostile requests over HTTPS, each with the refusal it must get;
/// returns how many were made.
#[allow(clippy::too_many_arguments)]
fn hostile_cases(
    server: &FleetServer,
    people: &Tls,
    as_gpu1: &Tls,
    alice: &str,
    bob: &str,
    revoked: &str,
    alices: &str,
    t: i64,
) -> usize {
    let port = server.port;
    let json_type = "Content-Type: application/json";
    let bearer = |token: &str| format!("Authorization: Bearer {token}");
    let bob_h = bearer(bob);
    let valid = |extra: Value| {
        let mut body = json!({"hosts": ["gpu1"], "mode": "exclusive",
                              "start": t + 4000, "end": t + 5000});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string().into_bytes()
    };
    let sql = "x'; DROP TABLE claim; --";
    // Declared 1 MiB, sent headers only: refused on the length alone. (A
    // client that goes on sending after the refusal may lose the answer to
    // the server's reset, and its TLS layer keeps the unsent rest and
    // fails on the next read: that would be the test's race, not the
    // server's.)
    let mut big = http("POST", "/api/v1/reservations", &[json_type, &bob_h], b"x");
    let declared = String::from_utf8(big.clone())
        .unwrap()
        .replace("Content-Length: 1\r\n", "Content-Length: 1048576\r\n");
    big = declared.into_bytes();
    big.pop();
    let mut chunked = format!(
        "POST /api/v1/reservations HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         {json_type}\r\n{bob_h}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    // Just over the limit, so the server reads all that was sent before it
    // refuses.
    for _ in 0..4 {
        chunked.extend_from_slice(b"4000\r\n");
        chunked.extend_from_slice(&[b' '; 0x4000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"1\r\n \r\n");
    let near_limit = valid(json!({"comment": "c".repeat(60 * 1024)}));
    let reserve = "/api/v1/reservations";
    // (what, request bytes, through gpu1's certificate, status, kind)
    let cases: Vec<(&str, Vec<u8>, bool, u16, &str)> = vec![
        (
            "bad JSON",
            http("POST", reserve, &[json_type, &bob_h], b"{\"hosts\": ["),
            false,
            400,
            "invalid",
        ),
        (
            "not JSON at all",
            http("POST", reserve, &[json_type, &bob_h], b"hello"),
            false,
            400,
            "invalid",
        ),
        (
            "JSON without its content type",
            http("POST", reserve, &[&bob_h], &valid(json!({}))),
            false,
            415,
            "unsupported_media_type",
        ),
        ("a body declared as 1 MiB", big, false, 413, "too_large"),
        (
            "a chunked body over 64 KiB, without a length",
            chunked,
            false,
            413,
            "too_large",
        ),
        (
            "a 60 KiB comment (under the body limit, over the comment's)",
            http("POST", reserve, &[json_type, &bob_h], &near_limit),
            false,
            400,
            "invalid",
        ),
        (
            "hosts as a string",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                &valid(json!({"hosts": "gpu1"})),
            ),
            false,
            422,
            "invalid",
        ),
        (
            "start as words",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                &valid(json!({"start": "tomorrow"})),
            ),
            false,
            422,
            "invalid",
        ),
        (
            "a start beyond 64 bits",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                format!(
                    "{{\"hosts\":[\"gpu1\"],\"mode\":\"shared\",\"start\":1e30,\"end\":{}}}",
                    t + 60
                )
                .as_bytes(),
            ),
            false,
            422,
            "invalid",
        ),
        (
            "an unknown mode",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                &valid(json!({"mode": "party"})),
            ),
            false,
            422,
            "invalid",
        ),
        (
            "an owner field from a non-admin (booking as someone else)",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                &valid(json!({"owner": "alice"})),
            ),
            false,
            403,
            "denied",
        ),
        (
            "nested JSON 10,000 deep",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                &[b"[".repeat(10_000), b"]".repeat(10_000)].concat(),
            ),
            false,
            422,
            "invalid",
        ),
        (
            "an end before the start",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                &valid(json!({"start": t + 5000, "end": t + 4000})),
            ),
            false,
            400,
            "invalid",
        ),
        (
            "no hosts",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                &valid(json!({"hosts": []})),
            ),
            false,
            400,
            "invalid",
        ),
        (
            "SQL in a host name",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                &valid(json!({"hosts": [sql]})),
            ),
            false,
            404,
            "unknown_hosts",
        ),
        (
            "SQL in a co-user",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                &valid(json!({"with": [sql]})),
            ),
            false,
            400,
            "invalid",
        ),
        (
            "SQL in the comment of a booking in alice's way",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                &valid(json!({"comment": sql})),
            ),
            false,
            409,
            "conflict",
        ),
        (
            "SQL in the mode",
            http(
                "POST",
                reserve,
                &[json_type, &bob_h],
                &valid(json!({"mode": sql})),
            ),
            false,
            422,
            "invalid",
        ),
        (
            "SQL in a reservation id",
            http(
                "DELETE",
                "/api/v1/reservations/1'%3B%20DROP%20TABLE%20claim%3B--",
                &[&bob_h],
                b"",
            ),
            false,
            400,
            "invalid",
        ),
        (
            "SQL as the token",
            http(
                "GET",
                "/api/v1/hosts",
                &["Authorization: Bearer ' OR '1'='1"],
                b"",
            ),
            false,
            401,
            "unauthenticated",
        ),
        (
            "SQL in a query",
            http(
                "GET",
                "/agent/v1/window?since=1%3BDROP%20TABLE%20host",
                &[],
                b"",
            ),
            true,
            400,
            "invalid",
        ),
        (
            "SQL as a forwarded user",
            http(
                "POST",
                "/agent/v1/request",
                &[json_type],
                json!({"user": sql, "op": {"reserve":
                    {"mode": "shared", "start": t + 60, "end": t + 120}}})
                .to_string()
                .as_bytes(),
            ),
            true,
            400,
            "invalid",
        ),
        (
            "SQL as the user ending a reservation",
            http(
                "POST",
                "/agent/v1/request",
                &[json_type],
                json!({"user": "x' OR 1=1--", "op": {"release": {"id": alices}}})
                    .to_string()
                    .as_bytes(),
            ),
            true,
            400,
            "invalid",
        ),
        (
            "an unknown query field",
            http("GET", "/agent/v1/window?since=1&evil=1", &[], b""),
            true,
            400,
            "invalid",
        ),
        (
            "a negative wait",
            http("GET", "/agent/v1/window?wait=-1", &[], b""),
            true,
            400,
            "invalid",
        ),
        (
            "bob ending alice's reservation",
            http(
                "DELETE",
                &format!("/api/v1/reservations/{alices}"),
                &[&bob_h],
                b"",
            ),
            false,
            403,
            "denied",
        ),
        (
            "a reservation that does not exist",
            http(
                "DELETE",
                "/api/v1/reservations/00000000deadbeef",
                &[&bob_h],
                b"",
            ),
            false,
            404,
            "not_found",
        ),
        (
            "no token",
            http("POST", reserve, &[json_type], &valid(json!({}))),
            false,
            401,
            "unauthenticated",
        ),
        (
            "a forged token",
            http(
                "POST",
                reserve,
                &[json_type, &bearer(&format!("hh_{}", "ab".repeat(32)))],
                &valid(json!({})),
            ),
            false,
            401,
            "unauthenticated",
        ),
        (
            "a revoked token",
            http(
                "POST",
                reserve,
                &[json_type, &bearer(revoked)],
                &valid(json!({})),
            ),
            false,
            401,
            "unauthenticated",
        ),
        (
            "a token of the wrong scheme",
            http(
                "GET",
                "/api/v1/hosts",
                &[&format!("Authorization: Basic {alice}")],
                b"",
            ),
            false,
            401,
            "unauthenticated",
        ),
        (
            "a token that is not text",
            http(
                "GET",
                "/api/v1/hosts",
                &["Authorization: Bearer \u{00ff}\u{00fe}"],
                b"",
            ),
            false,
            401,
            "unauthenticated",
        ),
        (
            "a token on the agent API",
            http("GET", "/agent/v1/window", &[&bearer(alice)], b""),
            false,
            401,
            "unauthenticated",
        ),
        (
            "a host certificate on the people's API",
            http("GET", "/api/v1/hosts", &[], b""),
            true,
            401,
            "unauthenticated",
        ),
        (
            "a presence report that is not one",
            http(
                "PUT",
                "/agent/v1/presence",
                &[json_type],
                b"{\"sessions\": 5}",
            ),
            true,
            400,
            "invalid",
        ),
        (
            "an unknown path",
            http("GET", "/api/v1/../../etc/passwd", &[&bob_h], b""),
            false,
            404,
            "not_found",
        ),
        (
            "a method the path does not take",
            http("PUT", reserve, &[json_type, &bob_h], &valid(json!({}))),
            false,
            405,
            "method_not_allowed",
        ),
    ];
    let n = cases.len();
    for (what, raw, host, status, kind) in cases {
        let tls = if host { as_gpu1 } else { people };
        let answer = raw_request(tls, port, &raw);
        assert_refused(what, &answer, status, kind);
    }
    n
}
