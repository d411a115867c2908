//! A host joins a fleet without losing what it held alone: its local
//! reservations that have not ended are booked on the calendar by their
//! owners before the first window replaces the table; one the calendar
//! refuses is kept in unsynced.json and shown by `hosthog check`. Real
//! PostgreSQL, hosthog-server and hosthogd. Run as root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use hosthog_tests::fleet::{Auth, FleetHost, FleetServer, HostOptions, now, table_matches, within};
use serde_json::json;

/// gpu1 on its own, with its certificate bundle at hand but no `[fleet]`
/// in its hosthog.toml yet (as before `scripts/install --join`).
fn alone(server: &FleetServer, bundle: &Path) -> FleetHost {
    FleetHost::start_with(
        server,
        "gpu1",
        bundle,
        &HostOptions {
            plain: true,
            ..HostOptions::default()
        },
    )
}

/// The host's join.json.
fn join_file(host: &FleetHost) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(host.state_dir().join("join.json")).unwrap()).unwrap()
}

#[test]
fn local_reservations_are_uploaded_on_joining_and_a_refused_one_is_kept() {
    let mut server = FleetServer::start();
    let bundle = server.add_host("gpu1");
    let dave = server.token("dave");
    server.serve();
    let mut host = alone(&server, &bundle);
    // Alone, the host takes three reservations.
    for (user, args) in [
        (
            "alice",
            vec![
                "reserve",
                "--exclusive",
                "--start",
                "in 1h",
                "--for",
                "1h",
                "local a",
            ],
        ),
        (
            "carol",
            vec!["reserve", "--shared", "--for", "30m", "local c"],
        ),
        (
            "bob",
            vec![
                "reserve",
                "--exclusive",
                "--start",
                "in 3h",
                "--for",
                "1h",
                "local b",
            ],
        ),
    ] {
        let (code, out, err) = host.hosthog(user, &args);
        assert_eq!(code, Some(0), "{user}: {out}{err}");
    }
    let local = host.state().reservations;
    assert_eq!(local.len(), 3);
    let bobs = local.iter().find(|r| r.owner == "bob").unwrap().clone();
    // Meanwhile dave booked the fleet's gpu1 across bob's time.
    let (status, body) = server.request(
        "POST",
        "/api/v1/reservations",
        Auth::Token(&dave),
        Some(&json!({"hosts": ["gpu1"], "mode": "exclusive",
                     "start": bobs.start - 600, "end": bobs.end + 600, "comment": "fleet d"})),
    );
    assert_eq!(status, 201, "{body}");

    host.join(&server, &bundle);
    host.wait_synced();
    // On the calendar: alice's and carol's, by their owners, and dave's.
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT r.owner || ' ' || r.comment FROM reservation r ORDER BY r.owner"
        ),
        "alice local a\ncarol local c\ndave fleet d\n"
    );
    // The table is the calendar's window, nothing else.
    let window = server.window(&bundle);
    table_matches(&host, &window, now()).unwrap();
    let mut owners = host.owners();
    owners.sort();
    assert_eq!(owners, ["alice", "carol", "dave"]);
    // bob's is kept, with the calendar's reason, and said by check.
    let unsynced: serde_json::Value =
        serde_json::from_slice(&std::fs::read(host.state_dir().join("unsynced.json")).unwrap())
            .unwrap();
    assert_eq!(unsynced.as_array().unwrap().len(), 1, "{unsynced}");
    assert_eq!(unsynced[0]["reservation"]["owner"], "bob");
    assert_eq!(unsynced[0]["reservation"]["comment"], "local b");
    assert_eq!(unsynced[0]["error"], "conflict");
    assert!(
        unsynced[0]["message"].as_str().unwrap().contains("dave"),
        "{unsynced}"
    );
    let mode = std::os::unix::fs::MetadataExt::mode(
        &std::fs::metadata(host.state_dir().join("unsynced.json")).unwrap(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let (code, stdout, stderr) = host.hosthog("bob", &["check", "bob"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "\nhosthog: 1 reservation made on this host before it joined the fleet could not \
             be booked on the calendar; kept in {}:\n  {} of bob (exclusive, ",
            host.state_dir().join("unsynced.json").display(),
            bobs.id.short()
        )),
        "{stdout}"
    );
    // The ids: the calendar's own, the local ones recorded beside them.
    let join = join_file(&host);
    assert_eq!(join["pending"], json!([]));
    assert_eq!(join["uploaded"].as_array().unwrap().len(), 2, "{join}");
    // Restarted, the host does not upload again.
    host.restart();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        server.pg.psql("fleet", "SELECT count(*) FROM reservation"),
        "3\n"
    );
    assert!(
        host.log()
            .contains("hosthogd: fleet: the calendar refused bob's reservation")
    );
}

/// The booking of a local reservation committed on the calendar, and its
/// answer lost (hosthogd killed before reading it): joining again finds it
/// on the calendar instead of booking it a second time. The server is held
/// at gpu1's row lock (the lock any booking of gpu1 takes) so the upload is
/// sent and waiting; hosthogd is stopped (SIGSTOP), the lock let go, the
/// booking commits and its answer waits in the stopped process's socket,
/// and then hosthogd is killed and started again.
#[test]
fn an_upload_whose_answer_was_lost_is_not_booked_twice() {
    let mut server = FleetServer::start();
    let bundle = server.add_host("gpu1");
    server.serve();
    let mut host = alone(&server, &bundle);
    // Shared: booked twice, it would be two reservations, not a conflict.
    let (code, out, err) = host.hosthog(
        "carol",
        &[
            "reserve", "--shared", "--start", "in 1h", "--for", "1h", "local c",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let local = host.state().reservations[0].clone();
    let count = |server: &FleetServer| {
        server.pg.psql(
            "fleet",
            "SELECT count(*) FROM reservation WHERE comment = 'local c'",
        )
    };

    let mut locker = server.pg.session("fleet");
    locker.send("BEGIN; SELECT id FROM host WHERE name = 'gpu1' FOR NO KEY UPDATE;");
    within(Duration::from_secs(10), "gpu1's row lock taken", || {
        server.pg.psql(
            "fleet",
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'",
        ) == "1\n"
    });
    host.join(&server, &bundle);
    let waiting = hosthog_tests::process::wait_until(Duration::from_secs(10), || {
        server.pg.psql(
            "fleet",
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        ) == "1\n"
    });
    assert!(
        waiting,
        "the upload is not waiting at the server: {}\n{}",
        server.pg.psql(
            "fleet",
            "SELECT state, wait_event_type, wait_event, left(query, 80) FROM pg_stat_activity"
        ),
        host.log()
    );
    let join = join_file(&host);
    assert_eq!(join["in_flight"], json!(local.id), "{join}");
    host.pause();
    locker.send("COMMIT;");
    within(Duration::from_secs(10), "the booking committed", || {
        count(&server) == "1\n"
    });
    // The answer is in the stopped hosthogd's socket: killed, it is lost.
    host.restart();
    host.wait_synced();
    within(Duration::from_secs(10), "the join finished", || {
        std::fs::read(host.state_dir().join("join.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|j| j["pending"] == json!([]) && j["in_flight"].is_null())
    });
    // Booked once; recorded as that booking; nothing kept aside.
    assert_eq!(count(&server), "1\n");
    let fleet_id = server.pg.psql(
        "fleet",
        "SELECT lpad(to_hex(id), 16, '0') FROM reservation WHERE comment = 'local c'",
    );
    let join = join_file(&host);
    assert_eq!(
        join["uploaded"],
        json!([{"local": local.id, "fleet": fleet_id.trim(), "owner": "carol"}]),
        "{join}"
    );
    assert!(!host.state_dir().join("unsynced.json").exists());
    within(
        Duration::from_secs(5),
        "the table holding the calendar's one",
        || host.owners() == ["carol"],
    );
    table_matches(&host, &server.window(&bundle), now()).unwrap();
}
