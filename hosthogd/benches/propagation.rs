//! Propagation through a fleet: how long after the server answers a
//! booking the last affected host has its table replaced, for 1,000 hosts
//! on one server on this machine.
//!
//!     cargo build --release -p hosthog-server
//!     cargo bench -p hosthogd --bench propagation
//!
//! Needs root (the fleet harness runs PostgreSQL as the postgres user).
//! A real PostgreSQL (initdb in a temporary directory) and a real
//! hosthog-server (`target/release/hosthog-server serve`) on 127.0.0.1;
//! the hosts are in this process: each is hosthogd's own `Service` on a
//! state directory of its own on tmpfs (/dev/shm) with hosthogd's own fleet
//! agent (`hosthogd::fleet::spawn`: the long-poll, the Store write, the
//! stale watcher), speaking mutual TLS with its own host bundle. A table
//! write is seen through the Service's change observer, which hosthogd
//! calls right after the Store replaced the table.
//!
//! Two ways to follow the calendar, side by side, each alone in its phase:
//!
//! - **polling only**, what a cron push or a periodic pull gives: every
//!   host fetches its window every `POLL_INTERVAL` seconds (each host at a
//!   phase of its own) through the same `Agent::window` and
//!   `Service::follow` the agent uses. The backstop interval is 60 s; the
//!   run scales it down (default 6 s) so it ends, and the figures scale
//!   with it (latency is a fraction of the interval);
//! - **long-poll**, hosthogd's agent as it runs.
//!
//! For each: bookings (shared, in the future, so nothing is refused and no
//! login changes) of 64 random hosts and of 1 random host, one at a time;
//! each is timed from the server's answer (201) to the moment the last of
//! its hosts wrote its table, then every one of its hosts' tables is read
//! back and must hold the booking. Environment: HOSTS (1000), BOOKINGS
//! (500 of each size, long-poll), POLL_BOOKINGS (50 of each size, polling),
//! POLL_INTERVAL (6 s).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hosthog_tests::fleet::FleetServer;
use hosthogd::config::FleetConfig;
use hosthogd::fleet::Agent;
use hosthogd::service::ChangeObserver;
use hosthogd::{Config, Service};

/// Records when its host's table was written.
#[derive(Debug, Default)]
struct Writes(Mutex<Vec<Instant>>);

impl ChangeObserver for Writes {
    fn changing(&self, _: &hosthog_booking::policy::Caller, _: &hosthog_booking::policy::Change) {}
    fn written(&self) {
        self.0.lock().unwrap().push(Instant::now());
    }
}

impl Writes {
    /// The first write at or after `since`.
    fn first_since(&self, since: Instant) -> Option<Instant> {
        self.0.lock().unwrap().iter().copied().find(|t| *t >= since)
    }
}

struct Host {
    name: String,
    bundle: PathBuf,
    state: PathBuf,
    writes: Arc<Writes>,
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A tiny deterministic generator: the same hosts every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % below as u64) as usize
    }

    fn pick(&mut self, n: usize, of: usize) -> Vec<usize> {
        let mut picked = Vec::with_capacity(n);
        while picked.len() < n {
            let i = self.next(of);
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        picked
    }
}

/// The people's client: books with a bearer token, trusting the lab CA.
struct Booker {
    http: ureq::Agent,
    url: String,
    tokens: Vec<String>,
}

impl Booker {
    fn new(server: &FleetServer, tokens: Vec<String>) -> Booker {
        use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
        let pem = std::fs::read(server.ca_dir().join("ca.pem")).unwrap();
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i.unwrap() {
                PemItem::Certificate(c) => Some(c),
                _ => None,
            })
            .collect();
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&certs))
            .build();
        Booker {
            http: ureq::Agent::config_builder()
                .tls_config(tls)
                .http_status_as_error(false)
                .build()
                .new_agent(),
            url: format!("{}/api/v1/reservations", server.address()),
            tokens,
        }
    }

    /// Books `hosts` (shared) from `start` for 30 min as the `n`th user;
    /// the id, the instant the request was sent and the instant the answer
    /// came.
    fn book(&self, n: usize, hosts: &[&str], start: i64) -> (String, Instant, Instant) {
        let sent = Instant::now();
        let mut response = self
            .http
            .post(&self.url)
            .header(
                "Authorization",
                &format!("Bearer {}", self.tokens[n % self.tokens.len()]),
            )
            .send_json(serde_json::json!({"hosts": hosts, "mode": "shared",
                "start": start, "end": start + 1800, "comment": "bench"}))
            .unwrap();
        let answered = Instant::now();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.body_mut().read_json().unwrap();
        assert_eq!(status, 201, "{body}");
        (body["id"].as_str().unwrap().to_string(), sent, answered)
    }
}

/// The table of `host` holds reservation `id`.
fn holds(host: &Host, id: &str) -> bool {
    let Ok(file) = libhosthog::TableFile::open(&host.state.join("table"), 0) else {
        return false;
    };
    file.table()
        .unwrap()
        .reservations()
        .any(|r| r.id().to_string() == id)
}

/// Books `count` times `size` random hosts; per booking, the time from the
/// answer to the last affected host's table write (and the booking's own
/// round trip).
fn measure(
    booker: &Booker,
    hosts: &[Host],
    rng: &mut Lcg,
    size: usize,
    count: usize,
    slot: &mut i64,
    limit: Duration,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut latencies = Vec::with_capacity(count);
    let mut round_trips = Vec::with_capacity(count);
    for n in 0..count {
        let picked = rng.pick(size, hosts.len());
        let names: Vec<&str> = picked.iter().map(|&i| hosts[i].name.as_str()).collect();
        *slot += 1;
        let start = now() + 86_400 + *slot * 3600;
        let (id, sent, answered) = booker.book(n, &names, start);
        let deadline = Instant::now() + limit;
        let mut last = answered;
        for &i in &picked {
            let host = &hosts[i];
            let written = loop {
                if let Some(t) = host.writes.first_since(sent)
                    && holds(host, &id)
                {
                    break t;
                }
                assert!(
                    Instant::now() < deadline,
                    "booking {id} did not reach {} within {limit:?}",
                    host.name
                );
                std::thread::sleep(Duration::from_millis(1));
            };
            last = last.max(written);
        }
        latencies.push(last - answered);
        round_trips.push(answered - sent);
    }
    (latencies, round_trips)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(what: &str, mut d: Vec<Duration>) -> String {
    d.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    format!(
        "| {what} | {} | {} | {} | {} | {} |",
        d.len(),
        ms(percentile(&d, 0.5)),
        ms(percentile(&d, 0.99)),
        ms(*d.last().unwrap()),
        ms(d.iter().sum::<Duration>() / d.len() as u32),
    )
}

fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

fn services(hosts: &[Host], server: &FleetServer) -> Vec<(Arc<Service>, Agent)> {
    hosts
        .iter()
        .map(|h| {
            let service = Service::new(&h.state, Config::default())
                .unwrap()
                .with_observer(Arc::clone(&h.writes) as Arc<dyn ChangeObserver>);
            let agent = Agent::new(&FleetConfig {
                server: server.address(),
                host: h.name.clone(),
                bundle: h.bundle.clone(),
                stale_after: 300,
            })
            .unwrap();
            (Arc::new(service), agent)
        })
        .collect()
}

fn hosts_in(dir: &Path, names: &[String], bundles: &[PathBuf], tag: &str) -> Vec<Host> {
    names
        .iter()
        .zip(bundles)
        .map(|(name, bundle)| {
            let state = dir.join(format!("{tag}-{name}"));
            std::fs::create_dir(&state).unwrap();
            Host {
                name: name.clone(),
                bundle: bundle.clone(),
                state,
                writes: Arc::default(),
            }
        })
        .collect()
}

fn main() {
    raise_file_limit();
    let n_hosts = env("HOSTS", 1000);
    let bookings = env("BOOKINGS", 500);
    let poll_bookings = env("POLL_BOOKINGS", 50);
    let interval = Duration::from_secs(env("POLL_INTERVAL", 6) as u64);
    let big = 64.min(n_hosts);
    let setup = Instant::now();
    let mut server = FleetServer::start();
    let names: Vec<String> = (0..n_hosts).map(|i| format!("node{i:04}")).collect();
    let bundles: Vec<PathBuf> = names.iter().map(|n| server.add_host(n)).collect();
    // Many owners, so the per-user limit of open reservations never bites.
    let tokens: Vec<String> = (0..40)
        .map(|i| server.token(&format!("user{i:02}")))
        .collect();
    server.serve();
    let booker = Booker::new(&server, tokens);
    let dir = tempfile::Builder::new()
        .prefix("hosthog-propagation.")
        .tempdir_in("/dev/shm")
        .expect("a directory on tmpfs (/dev/shm)");
    eprintln!(
        "{n_hosts} hosts, bundles and tokens made in {:?}",
        setup.elapsed()
    );
    let mut rng = Lcg(0x5eed);
    let mut slot = 0;
    let mut rows = Vec::new();

    // Polling only: every host fetches its window every `interval`.
    let polled = hosts_in(dir.path(), &names, &bundles, "poll");
    let stop = Arc::new(AtomicBool::new(false));
    let mut pollers = Vec::new();
    for (i, (service, agent)) in services(&polled, &server).into_iter().enumerate() {
        let stop = Arc::clone(&stop);
        // Each host at a phase of its own within the interval.
        let phase = interval.mul_f64(i as f64 / n_hosts as f64);
        pollers.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    std::thread::sleep(phase);
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        match agent.window(None, 0) {
                            Ok(w) => {
                                service.follow(w.reservations, now()).unwrap();
                            }
                            Err(e) => eprintln!("poll: {e}"),
                        }
                        next += interval;
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                })
                .unwrap(),
        );
    }
    std::thread::sleep(interval + Duration::from_secs(1));
    let limit = interval * 3;
    let (poll_big, _) = measure(
        &booker,
        &polled,
        &mut rng,
        big,
        poll_bookings,
        &mut slot,
        limit,
    );
    let (poll_one, _) = measure(
        &booker,
        &polled,
        &mut rng,
        1,
        poll_bookings,
        &mut slot,
        limit,
    );
    stop.store(true, Ordering::Relaxed);
    for p in pollers {
        p.join().unwrap();
    }
    rows.push(report(
        &format!("polling every {interval:?}, booking of {big} hosts"),
        poll_big,
    ));
    rows.push(report(
        &format!("polling every {interval:?}, booking of 1 host"),
        poll_one,
    ));
    eprintln!("{}\n{}", rows[0], rows[1]);

    // Long-poll: hosthogd's agent.
    let followers = hosts_in(dir.path(), &names, &bundles, "follow");
    let started = Instant::now();
    for ((service, agent), host) in services(&followers, &server).into_iter().zip(&followers) {
        hosthogd::fleet::spawn(service, agent, host.state.clone()).unwrap();
    }
    for host in &followers {
        while !host.state.join("fleet.json").exists() {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{} never synced",
                host.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    eprintln!(
        "{n_hosts} agents connected and synced in {:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    let limit = Duration::from_secs(30);
    let (lp_big, rt_big) = measure(
        &booker, &followers, &mut rng, big, bookings, &mut slot, limit,
    );
    let (lp_one, rt_one) = measure(&booker, &followers, &mut rng, 1, bookings, &mut slot, limit);
    rows.push(report(
        &format!("long-poll, booking of {big} hosts"),
        lp_big,
    ));
    rows.push(report("long-poll, booking of 1 host", lp_one));
    rows.push(report(
        &format!("(the booking's own round trip, {big} hosts)"),
        rt_big,
    ));
    rows.push(report("(the booking's own round trip, 1 host)", rt_one));

    println!(
        "| from the server's answer to the last affected host's table replaced | bookings | p50 | p99 | max | mean |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    // The agents run until the process ends: end it before they notice
    // the server and their directories going.
    drop(server);
    let _ = std::fs::remove_dir_all(dir.path());
    std::process::exit(0);
}
