//! The fleet under faults (issue 14, "Reliability"): a real PostgreSQL, a
//! real hosthog-server and three hosthogd, each with its own state
//! directory (and, where a test cuts it, its own network namespace). In
//! every case:
//!
//! - logins on every host keep being decided from the last good table:
//!   pamtester through each host's own table (the real libpam and
//!   pam_hosthog) gives exactly what that table says;
//! - no acknowledged reservation is lost: every booking the server answered
//!   201 (and every `hosthog reserve` that succeeded) is in the database
//!   and on each of its hosts afterwards;
//! - all tables equal the server's windows within 5 s of recovery, checked
//!   by `table_matches` (the window's reservations encoded with the table
//!   format's own encoder, compared byte for byte with the table's).
//!
//! A host never takes a window for another host, nor one from a server
//! whose certificate does not chain to the lab CA.
//!
//! Run as root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hosthog_tests::fleet::{
    Auth, Client, FleetHost, FleetServer, HostOptions, now, table_matches, within,
};
use hosthog_tests::pamtester::Sandbox;
use serde_json::json;

const NAMES: [&str; 3] = ["gpu1", "gpu2", "gpu3"];

/// The bookings the server acknowledged: id and hosts.
type Acked = Arc<Mutex<Vec<(String, Vec<String>)>>>;

struct Fleet {
    server: FleetServer,
    hosts: Vec<FleetHost>,
    bundles: Vec<PathBuf>,
    alice: String,
    /// The load's own user: its bookings never count against alice's.
    loader: String,
    sandbox: Sandbox,
    /// Every booking the server acknowledged: its id and hosts.
    acked: Acked,
}

impl Fleet {
    /// gpu1..gpu3 started as `options` say (default for those not given),
    /// all synced; alice holds gpu1 exclusively for two hours from now.
    fn start(options: &[HostOptions]) -> Fleet {
        let mut server = FleetServer::start();
        let bundles: Vec<PathBuf> = NAMES.iter().map(|h| server.add_host(h)).collect();
        let alice = server.token("alice");
        let loader = server.token("loader");
        // The load books on without end: no limit on open reservations,
        // so what refuses it is only ever the fault under test.
        server.configure("[limits]\nmax_open_per_user = 0\n");
        server.serve();
        let hosts: Vec<FleetHost> = NAMES
            .iter()
            .zip(&bundles)
            .enumerate()
            .map(|(i, (name, bundle))| {
                let o = options.get(i).cloned().unwrap_or_default();
                FleetHost::start_with(&server, name, bundle, &o)
            })
            .collect();
        let fleet = Fleet {
            server,
            hosts,
            bundles,
            alice,
            loader,
            sandbox: Sandbox::new(),
            acked: Arc::default(),
        };
        for host in &fleet.hosts {
            host.wait_synced();
            fleet.sandbox.service(
                &format!("hosthog-{}", host.name),
                &format!(
                    "account requisite {0} table={1}\naccount required pam_permit.so\n\
                     session optional {0} table={1}\nsession required pam_permit.so\n",
                    fleet.sandbox.module().display(),
                    host.table_path().display()
                ),
            );
        }
        let t = now();
        fleet
            .book(&["gpu1"], "exclusive", t - 60, t + 7200)
            .expect("alice's booking of gpu1");
        fleet.converged("the start");
        fleet
    }

    fn host(&self, name: &str) -> &FleetHost {
        self.hosts.iter().find(|h| h.name == name).unwrap()
    }

    /// Books `hosts` for alice through the people's API; the id if the
    /// server acknowledged it (recorded), else what happened.
    fn book(&self, hosts: &[&str], mode: &str, start: i64, end: i64) -> Result<String, String> {
        book(
            &self.server.client(),
            &self.alice,
            &self.acked,
            hosts,
            mode,
            start,
            end,
        )
    }

    /// All tables equal the server's windows, within 5 s; how long it took.
    fn converged(&self, after: &str) -> Duration {
        let started = Instant::now();
        for (host, bundle) in self.hosts.iter().zip(&self.bundles) {
            loop {
                let window = self.server.window(bundle);
                match table_matches(host, &window, now()) {
                    Ok(()) => break,
                    Err(e) => assert!(
                        started.elapsed() < Duration::from_secs(5),
                        "not converged 5 s after {after}: {e}\n{}",
                        host.log()
                    ),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let took = started.elapsed();
        eprintln!("all tables equal the server's {took:?} after {after}");
        took
    }

    /// Logins on every host are decided from its own table: bob is refused
    /// exactly where the table holds someone else's exclusive reservation
    /// in force, alice is admitted everywhere.
    fn logins_follow_tables(&self) {
        for host in &self.hosts {
            let t = now();
            let held = host.state();
            let blocked = held.reservations.iter().any(|r| {
                r.mode == libhosthog::Mode::Exclusive
                    && r.start <= t
                    && t < r.end
                    && r.owner != "bob"
            });
            let service = format!("hosthog-{}", host.name);
            let bob = self.sandbox.pamtester(&[&service, "bob", "acct_mgmt"]);
            assert_eq!(
                bob.code,
                Some(if blocked { 1 } else { 0 }),
                "bob on {} (table: {:?}): {bob:#?}",
                host.name,
                held.reservations
            );
            if blocked {
                assert!(
                    bob.stderr
                        .starts_with("hosthog: this host is reserved exclusively by alice"),
                    "{bob:#?}"
                );
            }
            let alice = self.sandbox.pamtester(&[&service, "alice", "acct_mgmt"]);
            assert_eq!(alice.code, Some(0), "alice on {}: {alice:#?}", host.name);
        }
    }

    /// Every acknowledged booking is in the database, on all its hosts, and
    /// in each of those hosts' tables (once converged).
    fn nothing_acknowledged_lost(&self) {
        let acked = self.acked.lock().unwrap().clone();
        assert!(!acked.is_empty());
        let rows = self.server.pg.psql(
            "fleet",
            "SELECT lpad(to_hex(r.id), 16, '0') || ' ' || h.name FROM reservation r \
             JOIN claim c ON c.reservation = r.id JOIN host h ON h.id = c.host",
        );
        for (id, hosts) in &acked {
            for h in hosts {
                assert!(
                    rows.lines().any(|l| l == format!("{id} {h}")),
                    "acknowledged {id} on {h} is not in the database"
                );
                let held = self.host(h).state();
                assert!(
                    held.reservations.iter().any(|r| &r.id.to_string() == id),
                    "acknowledged {id} is not in {h}'s table"
                );
            }
        }
        eprintln!("{} acknowledged bookings, none lost", acked.len());
    }
}

fn book(
    server: &Client,
    token: &str,
    acked: &Acked,
    hosts: &[&str],
    mode: &str,
    start: i64,
    end: i64,
) -> Result<String, String> {
    let answer = server.try_request(
        "POST",
        "/api/v1/reservations",
        Auth::Token(token),
        Some(
            &json!({"hosts": hosts, "mode": mode, "start": start, "end": end,
                     "comment": "load"}),
        ),
    );
    match answer {
        Ok((201, body)) => {
            let id = body["id"].as_str().unwrap().to_string();
            acked
                .lock()
                .unwrap()
                .push((id.clone(), hosts.iter().map(|h| h.to_string()).collect()));
            Ok(id)
        }
        Ok((status, body)) => Err(format!("{status} {body}")),
        Err(e) => Err(e),
    }
}

/// Books from another thread, ten a second at most (slots that never
/// overlap, on one host or all three), until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, usize)>>,
}

impl Load {
    fn start(fleet: &Fleet) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, token, acked, stopping) = (
            fleet.server.client(),
            fleet.loader.clone(),
            Arc::clone(&fleet.acked),
            Arc::clone(&stop),
        );
        let thread = std::thread::spawn(move || {
            // From three hours on, ten minutes apart: never in the way of
            // each other, of alice's booking of gpu1, or of the tests' own
            // bookings (all within the first three hours).
            let base = now() + 3 * 3600;
            let (mut ok, mut failed) = (0, 0);
            let mut i: i64 = 0;
            while !stopping.load(Ordering::Relaxed) {
                let hosts: &[&str] = match i % 4 {
                    0 => &["gpu1"],
                    1 => &["gpu2"],
                    2 => &["gpu3"],
                    _ => &["gpu1", "gpu2", "gpu3"],
                };
                let start = base + i * 600;
                match book(&client, &token, &acked, hosts, "shared", start, start + 300) {
                    // Paced (ten a second at most), so the hosts' tables
                    // equal the server's windows between two bookings and
                    // convergence can be checked while the load runs.
                    Ok(_) => {
                        ok += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(_) => {
                        failed += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                i += 1;
            }
            (ok, failed)
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; how many bookings were acknowledged and how many failed.
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn server_killed_and_restarted_under_load() {
    let mut fleet = Fleet::start(&[]);
    let load = Load::start(&fleet);
    std::thread::sleep(Duration::from_secs(2));
    fleet.server.stop(); // SIGKILL
    let killed = Instant::now();
    // Down: every host keeps deciding from its table, and its writes fail
    // at once, naming the server and the age of the last sync.
    fleet.logins_follow_tables();
    let gpu2 = fleet.host("gpu2");
    let started = Instant::now();
    let (code, _, stderr) = gpu2.hosthog("bob", &["reserve", "--start", "in 1h", "--for", "1h"]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "hosthog: the fleet calendar at {} cannot be reached",
            fleet.server.address()
        )) && stderr.contains("this host last synced the calendar 0 min ago"),
        "{stderr}"
    );
    std::thread::sleep(Duration::from_secs(3).saturating_sub(killed.elapsed()));
    fleet.logins_follow_tables();
    fleet.server.serve();
    fleet.converged("the server's restart");
    std::thread::sleep(Duration::from_secs(2));
    let (ok, failed) = load.finish();
    eprintln!("load: {ok} acknowledged, {failed} failed while the server was down");
    assert!(ok > 0 && failed > 0, "{ok} {failed}");
    fleet.converged("the load's end");
    fleet.nothing_acknowledged_lost();
    fleet.logins_follow_tables();
}

#[test]
fn postgres_stopped_and_started() {
    let mut fleet = Fleet::start(&[]);
    let load = Load::start(&fleet);
    std::thread::sleep(Duration::from_secs(2));
    fleet.server.pg.stop();
    // The database is gone: the server says so (503), hosts keep enforcing.
    // The load books from three hours on; these bookings lie before it,
    // so only the database, never the load, can refuse them.
    let t = now();
    let err = fleet
        .book(&["gpu2"], "exclusive", t + 3600, t + 4800)
        .unwrap_err();
    assert!(err.starts_with("503 "), "{err}");
    fleet.logins_follow_tables();
    within(Duration::from_secs(10), "the stale notice on gpu3", || {
        !fleet.host("gpu3").notices().is_empty()
    });
    fleet.logins_follow_tables();
    fleet.server.pg.restart();
    // The server finds its database again by itself.
    let mut last = String::new();
    let found = hosthog_tests::process::wait_until(Duration::from_secs(10), || {
        match fleet.book(&["gpu2"], "exclusive", t + 6000, t + 7200) {
            Ok(_) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(
        found,
        "no booking within 10 s of the restart; the last answer: {last}"
    );
    fleet.converged("PostgreSQL's restart");
    let (ok, failed) = load.finish();
    eprintln!("load: {ok} acknowledged, {failed} failed while PostgreSQL was down");
    assert!(failed > 0);
    fleet.converged("the load's end");
    fleet.nothing_acknowledged_lost();
    within(
        Duration::from_secs(5),
        "the stale notice going away",
        || fleet.hosts.iter().all(|h| h.notices().is_empty()),
    );
    fleet.logins_follow_tables();
}

#[test]
fn a_hosts_network_cut_and_restored() {
    let net = HostOptions {
        netns: true,
        ..HostOptions::default()
    };
    let fleet = Fleet::start(&[HostOptions::default(), HostOptions::default(), net]);
    let gpu3 = fleet.host("gpu3");
    gpu3.set_link(false);
    // Cut off: a booking of gpu3 (in force now, bob's exclusive is not
    // possible: alice's) reaches the calendar but not the host.
    let t = now();
    fleet
        .book(&["gpu3"], "exclusive", t - 10, t + 3600)
        .expect("booked while gpu3 is cut off");
    let load = Load::start(&fleet);
    std::thread::sleep(Duration::from_secs(1));
    // gpu3 still admits bob: its last good table has no booking in force.
    assert!(gpu3.state().reservations.is_empty());
    fleet.logins_follow_tables();
    // Its writes fail at once, naming the server and the age of its copy.
    let started = Instant::now();
    let (code, _, stderr) = gpu3.hosthog("bob", &["reserve", "--start", "in 2h", "--for", "1h"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "hosthog: the fleet calendar at {} cannot be reached",
            fleet.server.address()
        )) && stderr.contains("; nothing was changed; this host last synced the calendar "),
        "{stderr}"
    );
    within(Duration::from_secs(10), "the stale notice on gpu3", || {
        !gpu3.notices().is_empty()
    });
    assert!(fleet.host("gpu1").notices().is_empty());
    // Every login's session summary says so.
    let session = fleet
        .sandbox
        .pamtester(&["hosthog-gpu3", "carol", "open_session"]);
    assert_eq!(session.code, Some(0), "{session:#?}");
    assert!(
        session.stdout.contains(&format!(
            "hosthog: notice from hosthog: calendar last synced 0 min ago: {} cannot be \
             reached; reservations made since then may be missing here\n",
            fleet.server.address()
        )),
        "{session:#?}"
    );
    fleet.logins_follow_tables();
    std::thread::sleep(Duration::from_secs(3));
    gpu3.set_link(true);
    fleet.converged("gpu3's link came back");
    // Now bob is refused on gpu3 too.
    fleet.logins_follow_tables();
    assert!(!gpu3.state().reservations.is_empty());
    let (ok, _) = load.finish();
    assert!(ok > 0);
    fleet.converged("the load's end");
    fleet.nothing_acknowledged_lost();
}

#[test]
fn hosts_whose_clocks_are_ten_minutes_off() {
    let ahead = HostOptions {
        clock: Some("+10m".into()),
        ..HostOptions::default()
    };
    let behind = HostOptions {
        clock: Some("-10m".into()),
        ..HostOptions::default()
    };
    let fleet = Fleet::start(&[HostOptions::default(), ahead, behind]);
    // Their own clocks are off (libfaketime took).
    let confirmed = |h: &str| -> i64 {
        let status: serde_json::Value = serde_json::from_slice(
            &std::fs::read(fleet.host(h).state_dir().join("fleet.json")).unwrap(),
        )
        .unwrap();
        status["confirmed_at"].as_i64().unwrap()
    };
    let t = now();
    assert!(
        (confirmed("gpu2") - t - 600).abs() < 30,
        "{}",
        confirmed("gpu2") - t
    );
    assert!(
        (confirmed("gpu3") - t + 600).abs() < 30,
        "{}",
        confirmed("gpu3") - t
    );
    let load = Load::start(&fleet);
    std::thread::sleep(Duration::from_secs(3));
    let (ok, _) = load.finish();
    assert!(ok > 0);
    fleet.converged("the load");
    fleet.nothing_acknowledged_lost();
    // A fresh host is not stale just because its clock runs ahead or
    // behind the server's.
    assert!(fleet.hosts.iter().all(|h| h.notices().is_empty()));
    // A booking through the host ahead, answered by the calendar.
    let (code, out, err) = fleet
        .host("gpu2")
        .hosthog("bob", &["reserve", "--start", "in 1h", "--for", "1h"]);
    assert_eq!(code, Some(0), "{out}{err}");
    fleet.converged("a booking through the host whose clock is ahead");
    fleet.logins_follow_tables();
}

#[test]
fn a_host_certificate_revoked_mid_run() {
    let mut fleet = Fleet::start(&[]);
    let load = Load::start(&fleet);
    std::thread::sleep(Duration::from_secs(1));
    let revoked = fleet.server.run(&["host", "revoke", "gpu2"]);
    assert_eq!(
        revoked,
        "gpu2 is revoked: its certificate no longer works\n"
    );
    // gpu2 keeps what it last held and says how old it is; its users'
    // writes are refused, saying why.
    let before = fleet.host("gpu2").state().reservations;
    within(Duration::from_secs(10), "the stale notice on gpu2", || {
        !fleet.host("gpu2").notices().is_empty()
    });
    assert!(
        fleet.host("gpu2").log().contains("401"),
        "{}",
        fleet.host("gpu2").log()
    );
    let (code, _, stderr) = fleet
        .host("gpu2")
        .hosthog("bob", &["reserve", "--start", "in 1h", "--for", "1h"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("does not accept this host's certificate (revoked or replaced)"),
        "{stderr}"
    );
    let (ok, _) = load.finish();
    assert!(ok > 0);
    // The calendar changed for gpu2 meanwhile; its table did not.
    let held: Vec<_> = fleet
        .host("gpu2")
        .state()
        .reservations
        .iter()
        .map(|r| r.id)
        .collect();
    assert!(before.iter().all(|r| held.contains(&r.id)));
    fleet.logins_follow_tables();
    // The other hosts are unaffected: they follow the load's last
    // bookings too.
    for (host, bundle) in fleet.hosts.iter().zip(&fleet.bundles) {
        if host.name != "gpu2" {
            within(
                Duration::from_secs(5),
                &format!("{} following", host.name),
                || table_matches(host, &fleet.server.window(bundle), now()).is_ok(),
            );
        }
    }
    // A new bundle (hosthog-server host add again), and gpu2 follows again.
    let readded = now();
    let fresh = fleet.server.add_host("gpu2");
    std::fs::copy(&fresh, &fleet.bundles[1]).unwrap();
    fleet.hosts[1].restart();
    fleet.converged("gpu2's new certificate");
    // The calendar records its sync again (written within 5 s).
    within(
        Duration::from_secs(10),
        "gpu2's sync recorded again",
        || {
            let (status, body) =
                fleet
                    .server
                    .request("GET", "/api/v1/hosts", Auth::Token(&fleet.alice), None);
            status == 200
                && body.as_array().is_some_and(|hosts| {
                    hosts.iter().any(|h| {
                        h["name"] == "gpu2" && h["synced"].as_i64().is_some_and(|s| s >= readded)
                    })
                })
        },
    );
    fleet.nothing_acknowledged_lost();
}

#[test]
fn a_host_takes_no_window_of_another_host_nor_from_a_server_outside_the_lab_ca() {
    let fleet = Fleet::start(&[]);
    // gpu1's hosthog.toml names it gpu1 but holds gpu2's bundle: the server
    // answers with gpu2's window, which gpu1 must not take.
    let wrong = FleetHost::start_with(
        &fleet.server,
        "gpu1",
        &fleet.bundles[1],
        &HostOptions::default(),
    );
    // A window for gpu2 exists (the load books it).
    let t = now();
    fleet
        .book(&["gpu2"], "exclusive", t + 3600, t + 7200)
        .unwrap();
    within(Duration::from_secs(10), "the refusal in the log", || {
        wrong
            .log()
            .contains("knows this host's certificate as gpu2, but hosthog.toml says host = gpu1")
    });
    assert!(wrong.state().reservations.is_empty());
    assert!(!wrong.state_dir().join("fleet.json").exists());
    // A server of another CA (its own database, CA and a host gpu1 with a
    // booking): the host refuses its certificate and takes nothing.
    let mut server = FleetServer::start();
    server.add_host("gpu1");
    let mallory = server.token("mallory");
    server.serve();
    let (status, body) = server.request(
        "POST",
        "/api/v1/reservations",
        Auth::Token(&mallory),
        Some(&json!({"hosts": ["gpu1"], "mode": "exclusive", "start": t - 60, "end": t + 3600})),
    );
    assert_eq!(status, 201, "{body}");
    let fooled = FleetHost::start_with(
        &fleet.server,
        "gpu1",
        &fleet.bundles[0],
        &HostOptions {
            server: Some(server.address()),
            ..HostOptions::default()
        },
    );
    let started = Instant::now();
    // Both CAs are named "hosthog lab CA": the signature is what fails.
    while !fooled
        .log()
        .contains("invalid peer certificate: BadSignature")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            fooled.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(fooled.state().reservations.is_empty());
    assert!(!fooled.state_dir().join("fleet.json").exists());
    // The real gpu1 is untouched by all this.
    fleet.converged("the impostors");
}
