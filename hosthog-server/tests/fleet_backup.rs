//! docs/fleet.md's backup and restore, done: pg_dump -Fc of a serving
//! calendar, the database dropped, pg_restore, migrate, every host's
//! version moved on, serve again: the hosts (with their bundles, the CA
//! being the same) converge to the restored calendar by themselves; what
//! was booked after the dump is gone from it and from their tables. Real
//! PostgreSQL, hosthog-server and hosthogd. Run as root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use hosthog_tests::fleet::{Auth, FleetHost, FleetServer, now, table_matches};
use serde_json::json;

#[test]
fn a_dump_restored_is_the_calendar_the_hosts_follow() {
    let mut server = FleetServer::start();
    let bundles = [server.add_host("gpu1"), server.add_host("gpu2")];
    let alice = server.token("alice");
    server.serve();
    let hosts = [
        FleetHost::start(&server, "gpu1", &bundles[0]),
        FleetHost::start(&server, "gpu2", &bundles[1]),
    ];
    let client = server.client();
    let book = |hosts: &[&str], comment: &str, from: i64| {
        let (status, body) = client
            .try_request(
                "POST",
                "/api/v1/reservations",
                Auth::Token(&alice),
                Some(&json!({"hosts": hosts, "mode": "exclusive", "start": from,
                         "end": from + 3600, "comment": comment})),
            )
            .expect("an answer");
        assert_eq!(status, 201, "{body}");
    };
    let t = now();
    book(&["gpu1", "gpu2"], "before the dump", t + 3600);
    let converged = |server: &FleetServer, what: &str| {
        let started = Instant::now();
        for (host, bundle) in hosts.iter().zip(&bundles) {
            while let Err(e) = table_matches(host, &server.window(bundle), now()) {
                assert!(started.elapsed() < Duration::from_secs(5), "{what}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    converged(&server, "before the dump");

    let dump = server.dir.path().join("hosthog.dump");
    let out = server
        .pg
        .client("pg_dump")
        .args(["-Fc", "-f"])
        .arg(&dump)
        .arg("fleet")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After the dump: lost by the restore.
    book(&["gpu2"], "after the dump", t + 3 * 3600);
    converged(&server, "after the dump");
    assert_eq!(hosts[1].owners().len(), 2);

    server.stop();
    for (program, args) in [
        ("dropdb", vec!["--if-exists", "fleet"]),
        ("createdb", vec!["fleet"]),
    ] {
        let out = server.pg.client(program).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = server
        .pg
        .client("pg_restore")
        .args(["--no-owner", "-d", "fleet"])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.run(&["migrate"]);
    server
        .pg
        .psql("fleet", "UPDATE host SET version = version + 1000000");
    server.serve();
    converged(&server, "the restore");
    for host in &hosts {
        let held = host.state().reservations;
        assert_eq!(held.len(), 1, "{}: {held:?}", host.name);
        assert_eq!(held[0].comment, "before the dump");
    }
    // The calendar takes bookings again, and the hosts follow.
    book(&["gpu2"], "after the restore", t + 5 * 3600);
    converged(&server, "a booking after the restore");
    assert_eq!(hosts[1].owners().len(), 2);
}
