//! The fleet server at scale: 1,000 hosts and 400,000 claims in a real
//! PostgreSQL, hosthog-server (release build) serving HTTPS on 127.0.0.1.
//!
//! 1. Bookings, each measured side by side in the same loop with the
//!    database's floor (the same claims inserted by plain SQL in one
//!    transaction, from this process, no HTTP, no checks):
//!    a 64-host booking accepted, a 64-host booking refused (409 with all 64
//!    in the way; the floor is the insert PostgreSQL refuses with 23P01),
//!    a single-host booking accepted.
//! 2. 1,000 agents, one per host with its own certificate, each holding a
//!    long-poll (`/agent/v1/window?since=V&wait=50`): the server's RSS and
//!    the number of database connections while they wait; a booking of 10
//!    hosts wakes those 10 at once; the rest answer when `wait` runs out.
//!
//! Every answer timed is checked (status, and what it says).
//!
//!     cargo bench -p hosthog-server --bench fleet
//!
//! Run as root (PostgreSQL runs as the postgres user). `FLEET_BENCH_SAMPLES`
//! sets the samples per measurement (default 500); `FLEET_BENCH_HOSTS` the
//! number of hosts (default 1000, claims 400 per host).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use hosthog_server::Database;
use hosthog_tests::fleet::FleetServer;
use hosthog_tests::https_client::{Connection, Tls};
use serde_json::json;

#[allow(clippy::disallowed_methods)] // the benchmark's own clock
fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

const HOUR: i64 = 3600;
const CLAIMS_PER_HOST: i64 = 400;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn host_name(i: usize) -> String {
    format!("n{i:04}")
}

/// xorshift64*: which hosts each booking takes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }

    /// `k` distinct hosts of `n`, sorted.
    fn hosts(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut set = std::collections::BTreeSet::new();
        while set.len() < k {
            set.insert(self.below(n));
        }
        set.into_iter().collect()
    }
}

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.0.push(started.elapsed());
        out
    }

    fn at(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let samples = env("FLEET_BENCH_SAMPLES", 500);
    let hosts = env("FLEET_BENCH_HOSTS", 1000);
    let mut server = FleetServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    // Hosts through `host add` (each gets its own certificate bundle),
    // then the claims in bulk by SQL: 400 per host, an hour each with an
    // hour free between, from tomorrow on.
    let started = Instant::now();
    let bundles: Vec<std::path::PathBuf> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let server = &server;
                scope.spawn(move || {
                    (w..hosts)
                        .step_by(4)
                        .map(|i| (i, server.add_host(&host_name(i))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<_> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        all.sort();
        all.into_iter().map(|(_, b)| b).collect()
    });
    let hosts_took = started.elapsed();
    let base = (now() / HOUR + 24) * HOUR;
    let started = Instant::now();
    let total = hosts as i64 * CLAIMS_PER_HOST;
    server.pg.psql(
        "fleet",
        &format!(
            "INSERT INTO reservation (id, owner, exclusive, comment, start_at, end_at,
                                      created_at, updated_at)
             SELECT g, 'user' || (g % 97), true, 'bulk',
                    to_timestamp({base} + ((g - 1) / {hosts}) * 7200),
                    to_timestamp({base} + ((g - 1) / {hosts}) * 7200 + 3600), now(), now()
             FROM generate_series(1, {total}) g;
             INSERT INTO claim (reservation, host, start_at, end_at, exclusive)
             SELECT r.id, h.id, r.start_at, r.end_at, true
             FROM reservation r JOIN host h ON h.name = 'n' || lpad(((r.id - 1) % {hosts})::text, 4, '0');
             UPDATE host SET version = {CLAIMS_PER_HOST};
             ANALYZE;"
        ),
    );
    let load_took = started.elapsed();
    let claims: i64 = server
        .pg
        .psql("fleet", "SELECT count(*) FROM claim")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(claims, total);
    eprintln!(
        "{hosts} hosts added with `host add` in {hosts_took:.1?}; {claims} claims loaded by SQL in {load_took:.1?}"
    );

    // Bookings spread over 64 people, so none of them runs into a
    // per-person limit of the booking rules.
    let tokens: Vec<String> = (0..64)
        .map(|i| server.token(&format!("bench{i:02}")))
        .collect();
    server.serve();
    let pid = server.serve_pid().unwrap();
    let ca = server.ca_dir().join("ca.pem");
    let people = Tls::new(&ca, None);
    let mut api = people.connect(server.port).unwrap();
    // The floor's own connection, told apart from the server's in
    // pg_stat_activity by its name.
    let db = Database::new(&format!("{} application_name=floor", server.url)).unwrap();
    let sql = runtime.block_on(db.connection()).unwrap();

    // The free hour after claim slot s starts at base + s*7200 + 3600; it
    // has 60 free minutes, and each booking below takes one of them.
    let free_minute = |k: usize| -> i64 {
        let slot = (k / 60) as i64;
        base + slot * 7200 + 3600 + (k % 60) as i64 * 60
    };
    let book = |api: &mut Connection, token: &str, hosts: &[usize], start: i64, end: i64| {
        let names: Vec<String> = hosts.iter().map(|&i| host_name(i)).collect();
        let body = json!({"hosts": names, "mode": "exclusive", "start": start, "end": end,
                          "comment": "bench"})
        .to_string();
        api.request(
            "POST",
            "/api/v1/reservations",
            Some(token),
            Some(body.as_bytes()),
        )
        .unwrap()
    };
    let mut next_id: i64 = total + 1;
    let mut insert = |hosts: &[usize], start: i64, end: i64| {
        let id = next_id;
        next_id += 1;
        let names: Vec<String> = hosts.iter().map(|&i| host_name(i)).collect();
        runtime.block_on(async {
            sql.batch_execute("BEGIN").await.unwrap();
            sql.execute(
                "INSERT INTO reservation (id, owner, exclusive, comment, start_at, end_at,
                                          created_at, updated_at)
                 VALUES ($1, 'floor', true, 'bench', to_timestamp($2::bigint),
                         to_timestamp($3::bigint), now(), now())",
                &[&id, &start, &end],
            )
            .await
            .unwrap();
            let result = sql
                .execute(
                    "INSERT INTO claim (reservation, host, start_at, end_at, exclusive)
                     SELECT $1, id, to_timestamp($2::bigint), to_timestamp($3::bigint), true
                     FROM host WHERE name = ANY($4)",
                    &[&id, &start, &end, &names],
                )
                .await;
            match result {
                Ok(n) => {
                    assert_eq!(n as usize, hosts.len());
                    sql.batch_execute("COMMIT").await.unwrap();
                    true
                }
                Err(e) => {
                    assert_eq!(
                        e.code(),
                        Some(&tokio_postgres::error::SqlState::EXCLUSION_VIOLATION)
                    );
                    sql.batch_execute("ROLLBACK").await.unwrap();
                    false
                }
            }
        })
    };

    let mut rng = Rng(0x1234_5678_9abc_def1);
    let (mut api64, mut sql64, mut api64_refused, mut sql64_refused, mut api1, mut sql1) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    // Minutes: API bookings take even ones, the floor's inserts odd ones,
    // so neither is refused by the other.
    let run_started = Instant::now();
    for k in 0..samples {
        let token = &tokens[k % tokens.len()];
        let set = rng.hosts(hosts, 64);
        let start = free_minute(4 * k);
        let answer = api64.time(|| book(&mut api, token, &set, start, start + 60));
        assert_eq!(answer.status, 201, "{:?}", answer.json());
        assert_eq!(answer.json()["hosts"].as_array().unwrap().len(), 64);
        let start = free_minute(4 * k + 1);
        assert!(sql64.time(|| insert(&set, start, start + 60)));

        // Refused: the booking overlaps a bulk claim on every host.
        let set = rng.hosts(hosts, 64);
        let slot = rng.below(CLAIMS_PER_HOST as usize) as i64;
        let start = base + slot * 7200 + 600;
        let answer = api64_refused.time(|| book(&mut api, token, &set, start, start + 60));
        assert_eq!(answer.status, 409, "{:?}", answer.json());
        assert_eq!(
            answer.json()["in_the_way"].as_array().unwrap().len(),
            64,
            "{:?}",
            answer.json()
        );
        assert!(!sql64_refused.time(|| insert(&set, start, start + 60)));

        let one = [rng.below(hosts)];
        let start = free_minute(4 * k + 2);
        let answer = api1.time(|| book(&mut api, token, &one, start, start + 60));
        assert_eq!(answer.status, 201, "{:?}", answer.json());
        let start = free_minute(4 * k + 3);
        assert!(sql1.time(|| insert(&one, start, start + 60)));
    }
    let run_took = run_started.elapsed();
    println!(
        "\n{samples} samples each, interleaved, in {run_took:.1?}; {hosts} hosts, {claims} claims at the start\n"
    );
    println!("| measurement | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (what, s) in [
        ("64-host booking accepted, HTTPS API (201)", &api64),
        (
            "  floor: the same 64 claims by SQL, one transaction",
            &sql64,
        ),
        (
            "64-host booking refused, HTTPS API (409, 64 in the way)",
            &api64_refused,
        ),
        (
            "  floor: the same insert refused by PostgreSQL (23P01)",
            &sql64_refused,
        ),
        ("single-host booking, HTTPS API (201)", &api1),
        ("  floor: the same claim by SQL, one transaction", &sql1),
    ] {
        println!(
            "| {what} | {} | {} | {} |",
            ms(s.at(0.5)),
            ms(s.at(0.99)),
            ms(s.at(1.0))
        );
    }
    drop(api);

    // 1,000 agents, each with its own host's certificate, as hosthogd
    // does: fetch the window, then at once hold a long-poll at its version.
    let started = Instant::now();
    let started_at = now();
    let (rss_before, _) = rss_kib(pid);
    // Four agents connect at a time, so all of them are waiting well
    // within the 50 s.
    let connect = |bundle: &std::path::PathBuf| -> (Connection, i64) {
        let mut conn = Tls::new(&ca, Some(bundle)).connect(server.port).unwrap();
        let answer = conn.request("GET", "/agent/v1/window", None, None).unwrap();
        assert_eq!(answer.status, 200);
        // The bulk claims, and the bookings above that took this host.
        assert!(
            answer.json()["reservations"].as_array().unwrap().len() >= CLAIMS_PER_HOST as usize
        );
        let version = answer.json()["version"].as_i64().unwrap();
        conn.send_raw(
            format!(
                "GET /agent/v1/window?since={version}&wait=50 HTTP/1.1\r\nHost: localhost\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        (conn, version)
    };
    let mut held: Vec<(usize, (Connection, i64))> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let connect = &connect;
                let bundles = &bundles;
                scope.spawn(move || {
                    (w..bundles.len())
                        .step_by(4)
                        .map(|i| (i, connect(&bundles[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    held.sort_by_key(|(i, _)| *i);
    let mut held: Vec<(Connection, i64)> = held.into_iter().map(|(_, c)| c).collect();
    let first_windows = started.elapsed();
    assert!(
        first_windows < Duration::from_secs(40),
        "connecting took {first_windows:?}: the first long-polls would run out before the last began"
    );
    let polls_sent = started;
    std::thread::sleep(Duration::from_secs(5));
    let (rss_waiting, _) = rss_kib(pid);
    let connections = |server: &FleetServer| -> (String, String) {
        (
            server
                .pg
                .psql(
                    "fleet",
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = 'fleet' AND application_name <> 'floor' \
                       AND pid <> pg_backend_pid()",
                )
                .trim()
                .to_string(),
            server
                .pg
                .psql(
                    "fleet",
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                )
                .trim()
                .to_string(),
        )
    };
    let (db_waiting, all_waiting) = connections(&server);
    // A booking of 10 hosts wakes their long-polls.
    let mut api = people.connect(server.port).unwrap();
    let woken_hosts: Vec<usize> = (hosts - 10..hosts).collect();
    let start = free_minute(4 * samples);
    let booked_at = Instant::now();
    let answer = book(&mut api, &tokens[0], &woken_hosts, start, start + 60);
    assert_eq!(answer.status, 201);
    let mut woken = Samples::default();
    for (conn, version) in held.iter_mut().skip(hosts - 10) {
        let answer = conn.read_response().unwrap();
        woken.0.push(booked_at.elapsed());
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["version"].as_i64(), Some(*version + 1));
    }
    let (db_woken, _) = connections(&server);
    let (rss_woken, _) = rss_kib(pid);
    let mut expired = 0;
    for (conn, version) in held.iter_mut().take(hosts - 10) {
        let answer = conn.read_response().unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["version"].as_i64(), Some(*version));
        expired += 1;
    }
    let all_answered = polls_sent.elapsed();
    let (rss_after, hwm) = rss_kib(pid);
    let (db_after, _) = connections(&server);
    // Every answer noted its host's sync; the server writes what it noted
    // every 5 s, in one statement. The 990 long-polls that ran out were
    // answered at least 50 s after the first window was asked for (every
    // first window came before that): their syncs must be in host_sync.
    let recorded = Instant::now();
    let synced_now = |server: &FleetServer| -> usize {
        server
            .pg
            .psql(
                "fleet",
                &format!(
                    "SELECT count(*) FROM host_sync WHERE synced_at >= to_timestamp({})",
                    started_at + 49
                ),
            )
            .trim()
            .parse()
            .unwrap()
    };
    while synced_now(&server) < expired {
        assert!(
            recorded.elapsed() < Duration::from_secs(15),
            "only {} of {expired} hosts' syncs recorded 15 s after their answers",
            synced_now(&server)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let recorded = recorded.elapsed();
    println!(
        "\n{} agents: first windows (400 reservations each) fetched in {first_windows:.1?}; \
         long-polls held with the server's RSS {} MiB (before {} MiB; {} MiB after the wake, \
         {} MiB after all answered; peak {} MiB); the server's database connections {} \
         while held ({} client backends in all, with the floor's and psql's own), {} after the wake, {} after",
        held.len(),
        rss_waiting / 1024,
        rss_before / 1024,
        rss_woken / 1024,
        rss_after / 1024,
        hwm / 1024,
        db_waiting,
        all_waiting,
        db_woken,
        db_after,
    );
    println!(
        "10 woken by a booking of their hosts: all 10 answered 200 with version+1, p50 {} max {} after the booking was sent; \
         {expired} answered 200 with their version when wait ran out, the last {all_answered:.1?} after the first was sent; \
         their {expired} syncs in host_sync {recorded:.1?} after the last answer",
        ms(woken.at(0.5)),
        ms(woken.at(1.0)),
    );
    assert!(db_waiting.parse::<u32>().unwrap() <= 20);
    assert!(db_woken.parse::<u32>().unwrap() <= 20);
}
