//! Hosts follow the fleet calendar: a real PostgreSQL and hosthog-server,
//! two hosthogd agents with state directories of their own. A booking
//! reaches both local tables within a second; with the server gone they
//! keep what they hold and keep running; when it is back they converge by
//! themselves. Run as root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use hosthog_tests::fleet::{Auth, FleetHost, FleetServer, binary, now, within};
use serde_json::json;

#[test]
fn hosts_follow_the_calendar_and_keep_enforcing_without_it() {
    let mut server = FleetServer::start();
    let gpu1_bundle = server.add_host("gpu1");
    let gpu2_bundle = server.add_host("gpu2");
    let alice = server.token("alice");
    server.serve();
    let gpu1 = FleetHost::start(&server, "gpu1", &gpu1_bundle);
    let gpu2 = FleetHost::start(&server, "gpu2", &gpu2_bundle);
    // Both agents connect and hold the (empty) calendar.
    for host in [&gpu1, &gpu2] {
        host.wait_synced();
    }
    // Both report who is on them; people see it (who is where).
    within(
        Duration::from_secs(30),
        "presence reports from both hosts",
        || {
            let (status, body) =
                server.request("GET", "/api/v1/presence", Auth::Token(&alice), None);
            status == 200 && body.as_array().is_some_and(|hosts| hosts.len() == 2)
        },
    );
    let (_, body) = server.request("GET", "/api/v1/presence", Auth::Token(&alice), None);
    assert_eq!(
        (&body[0]["host"], &body[1]["host"]),
        (&json!("gpu1"), &json!("gpu2"))
    );
    assert!(body[0]["snapshot"]["sessions"].is_array(), "{body}");
    let t = now();
    let (status, body) = server.request(
        "POST",
        "/api/v1/reservations",
        Auth::Token(&alice),
        Some(&json!({"hosts": ["gpu1", "gpu2"], "mode": "exclusive",
                     "start": t - 60, "end": t + 7200, "comment": "paper"})),
    );
    assert_eq!(status, 201, "{body}");
    let booked = Instant::now();
    for host in [&gpu1, &gpu2] {
        let took = within(
            Duration::from_secs(5),
            "the booking reaching the host",
            || host.owners() == ["alice"],
        );
        eprintln!("reached {} after {took:?}", host.state_dir().display());
    }
    let both = booked.elapsed();
    eprintln!("the booking reached both hosts within {both:?} of its answer");
    assert!(both < Duration::from_secs(1), "{both:?}");
    // The sync is recorded right after the table is written.
    let recorded = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(gpu1.state_dir().join("fleet.json")).unwrap())
            .unwrap()
    };
    within(Duration::from_secs(2), "fleet.json at version 1", || {
        recorded()["version"] == 1
    });
    let status = recorded();
    assert_eq!(status["host"], "gpu1");
    assert!(
        (status["confirmed_at"].as_i64().unwrap() - now()).abs() <= 2,
        "{status}"
    );

    // On a host, its users book through hosthogd, which forwards to the
    // calendar (as the user it identified) and follows it at once.
    let hosthog = |host: &FleetHost, args: &[&str]| {
        let out = std::process::Command::new(binary("hosthog"))
            .arg("--socket")
            .arg(host.dir.path().join("hosthogd.sock"))
            .args(args)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = hosthog(
        &gpu1,
        &[
            "reserve",
            "--exclusive",
            "--start",
            "in 3h",
            "--for",
            "1h",
            "rendering",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(gpu1.owners(), ["alice", "root"], "read-after-write");
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT r.owner, h.name FROM reservation r JOIN claim c ON c.reservation = r.id \
             JOIN host h ON h.id = c.host WHERE r.owner = 'root'"
        ),
        "root|gpu1\n"
    );
    let id = server.pg.psql(
        "fleet",
        "SELECT lpad(to_hex(id), 16, '0') FROM reservation WHERE owner = 'root'",
    );
    // A conflict on the calendar is the user's answer on the host.
    let (code, _, stderr) = hosthog(&gpu2, &["reserve", "--exclusive", "--for", "1h", "mine"]);
    assert_eq!(code, Some(2));
    // The same sentence a single host gives.
    assert!(
        stderr.starts_with(
            "hosthog: this exclusive reservation conflicts with alice's exclusive reservation "
        ) && stderr.contains("\"paper\")"),
        "{stderr}"
    );
    // Released from the host: gone from the calendar and from both tables.
    let (code, stdout, stderr) = hosthog(&gpu1, &["release", &id.trim()[..8]]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(gpu1.owners(), ["alice"]);
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT count(*) FROM reservation WHERE owner = 'root' AND cancelled_at IS NULL"
        ),
        "0\n"
    );
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT count(*) FROM claim c JOIN reservation r ON r.id = c.reservation \
             WHERE r.owner = 'root'"
        ),
        "0\n",
        "released before its start: kept for calendars, blocking nothing"
    );

    // Extend, edit, share and end through a host: decided by the server
    // with the single-host rules, the local table following at once.
    let (code, stdout, stderr) = hosthog(
        &gpu2,
        &[
            "reserve", "--shared", "--start", "in 8h", "--for", "1h", "tuning",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let tuning = server
        .pg
        .psql(
            "fleet",
            "SELECT lpad(to_hex(id), 16, '0') FROM reservation WHERE comment = 'tuning'",
        )
        .trim()
        .to_string();
    let short = &tuning[..8];
    let fleet_row = || {
        server.pg.psql(
            "fleet",
            &format!(
                "SELECT extract(epoch FROM end_at - start_at)::bigint, comment, co_users, sequence \
                 FROM reservation WHERE lpad(to_hex(id), 16, '0') = '{tuning}'"
            ),
        )
    };
    let (code, stdout, stderr) = hosthog(&gpu2, &["extend", short, "--for", "30m"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, stdout, stderr) = hosthog(&gpu2, &["edit", short, "--comment", "tuning, longer"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, stdout, stderr) = hosthog(&gpu2, &["share", short, "bob"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(fleet_row(), "5400|tuning, longer|{bob}|3\n");
    // The local table holds the change before the command returns.
    let table = libhosthog::TableFile::open(&gpu2.state_dir().join("table"), 0).unwrap();
    let local: Vec<(String, i64)> = table
        .table()
        .unwrap()
        .reservations()
        .filter(|r| r.comment() == "tuning, longer")
        .map(|r| (r.with().collect::<Vec<_>>().join(","), r.end() - r.start()))
        .collect();
    assert_eq!(local, [("bob".to_string(), 5400)]);
    // Admins only: root of a host is not the fleet's admin.
    let (code, _, stderr) = hosthog(&gpu2, &["cancel", short]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        format!(
            "hosthog: only admins may cancel reservations; you (root) are not an admin of the \
             fleet calendar (hosthog-server admin add) (to end your own reservation use \
             hosthog release {short})\n"
        )
    );
    let (code, stdout, stderr) = hosthog(&gpu1, &["release", short]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        server.pg.psql(
            "fleet",
            &format!(
                "SELECT cancelled_at IS NOT NULL FROM reservation \
                 WHERE lpad(to_hex(id), 16, '0') = '{tuning}'"
            )
        ),
        "t\n"
    );

    // Several hosts at once, from either host; then every host, seen from
    // any of them.
    let (code, stdout, stderr) = hosthog(
        &gpu1,
        &[
            "reserve",
            "--hosts",
            "gpu1,gpu2",
            "--shared",
            "--start",
            "in 5h",
            "--for",
            "1h",
            "sweep",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(gpu1.owners(), ["alice", "root"]);
    within(
        Duration::from_secs(2),
        "the multi-host booking on gpu2",
        || gpu2.owners() == ["alice", "root"],
    );
    let (code, stdout, stderr) = hosthog(&gpu2, &["hosts", "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let hosts: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (
            &hosts[0]["name"],
            &hosts[0]["holders"][0]["owner"],
            &hosts[0]["holders"][0]["mode"]
        ),
        (&json!("gpu1"), &json!("alice"), &json!("exclusive")),
        "{hosts}"
    );
    assert_eq!(hosts.as_array().unwrap().len(), 2);
    // Both hosts follow the calendar: the server records when it last
    // answered each one's window (written every 5 s). gpu2 was answered
    // the booking just now.
    let mut hosts = hosts;
    within(
        Duration::from_secs(10),
        "both hosts' syncs recorded",
        || {
            let (_, stdout, _) = hosthog(&gpu2, &["hosts", "--json"]);
            hosts = serde_json::from_str(&stdout).unwrap();
            hosts
                .as_array()
                .unwrap()
                .iter()
                .all(|h| h["synced"].is_i64())
        },
    );
    let t = now();
    for host in hosts.as_array().unwrap() {
        let synced = host["synced"].as_i64().unwrap();
        assert!((t - 60..=t).contains(&synced), "{t} {hosts}");
    }
    let (_, stdout, _) = hosthog(&gpu2, &["hosts"]);
    let lines: Vec<&str> = stdout.lines().collect();
    // Then when each host last synced, and last reported who is on it.
    assert_eq!(
        lines[0],
        format!(
            "HOST  {:40}  {:24}  {:12}  REPORTED",
            "NOW", "ON IT", "SYNCED"
        ),
        "{stdout}"
    );
    // The SYNCED column (padded to 12) of both hosts.
    for line in &lines[1..3] {
        assert!(line.contains("  0m ago        "), "{stdout}");
    }
    assert!(
        lines[1].starts_with("gpu1  alice (exclusive) until "),
        "{stdout}"
    );
    let sweep = server.pg.psql(
        "fleet",
        "SELECT lpad(to_hex(id), 16, '0') FROM reservation WHERE comment = 'sweep'",
    );
    let (code, _, stderr) = hosthog(&gpu2, &["release", &sweep.trim()[..8]]);
    assert_eq!(code, Some(0), "{stderr}");
    within(Duration::from_secs(2), "the release reaching gpu1", || {
        gpu1.owners() == ["alice"]
    });

    // The server goes away: the hosts keep their tables and keep running.
    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    let (mut gpu1, mut gpu2) = (gpu1, gpu2);
    assert!(gpu1.alive() && gpu2.alive());
    assert_eq!(gpu1.owners(), ["alice"]);
    assert_eq!(gpu2.owners(), ["alice"]);
    // Writes fail at once, saying why; nothing changes.
    let (code, _, stderr) = hosthog(&gpu1, &["reserve", "--start", "in 5h", "--for", "1h"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with(&format!(
            "hosthog: the fleet calendar at {} cannot be reached",
            server.address()
        )),
        "{stderr}"
    );
    assert!(
        stderr
            .trim_end()
            .ends_with("; nothing was changed; this host last synced the calendar 0 min ago"),
        "{stderr}"
    );
    assert_eq!(gpu1.owners(), ["alice"]);
    // Once the copy is older than stale_after (3 s here, 5 min by
    // default), every login's summary, the MOTD and `hosthog check` say
    // how old it is.
    within(Duration::from_secs(10), "the stale-calendar notice", || {
        !gpu1.notices().is_empty()
    });
    let stale = format!(
        "calendar last synced 0 min ago: {} cannot be reached; \
         reservations made since then may be missing here",
        server.address()
    );
    assert_eq!(gpu1.notices(), std::slice::from_ref(&stale));
    within(Duration::from_secs(5), "the notice in the MOTD", || {
        std::fs::read_to_string(gpu1.motd())
            .is_ok_and(|m| m.ends_with(&format!("hosthog: {stale}\n")))
    });
    let (code, stdout, _) = hosthog(&gpu1, &["check", "bob"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.ends_with(&format!("\nhosthog: {stale}\n")),
        "{stdout}"
    );

    // Meanwhile the calendar changes (straight in the database, as another
    // server of the fleet would); when the server is back, both converge.
    server.pg.psql(
        "fleet",
        "UPDATE host SET version = version + 1; DELETE FROM reservation",
    );
    server.serve();
    let back = Instant::now();
    for host in [&gpu1, &gpu2] {
        within(
            Duration::from_secs(40),
            "convergence after the outage",
            || host.owners().is_empty(),
        );
    }
    eprintln!("converged {:?} after the server came back", back.elapsed());
    within(Duration::from_secs(5), "the notice going away", || {
        gpu1.notices().is_empty()
    });
    assert!(
        gpu1.log().contains("hosthogd: fleet: cannot reach"),
        "{}",
        gpu1.log()
    );
}
