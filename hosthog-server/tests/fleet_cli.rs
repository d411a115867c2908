//! The fleet's own commands on a host: `hosthog reserve --next-free` and
//! `hosthog list --fleet`, through the host's hosthogd to a real
//! hosthog-server on a real PostgreSQL. Run as root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use hosthog_tests::fleet::{Auth, FleetHost, FleetServer, HostOptions, now};
use serde_json::json;

#[test]
fn next_free_books_the_earliest_slot_and_list_fleet_shows_hosts() {
    let mut server = FleetServer::start();
    let names = ["gpu1", "gpu2", "cpu1"];
    let bundles: Vec<_> = names.iter().map(|h| server.add_host(h)).collect();
    let alice = server.token("alice");
    server.serve();
    let hosts: Vec<FleetHost> = names
        .iter()
        .zip(&bundles)
        .map(|(n, b)| FleetHost::start(&server, n, b))
        .collect();
    for host in &hosts {
        host.wait_synced();
    }
    let (gpu1, gpu2, cpu1) = (&hosts[0], &hosts[1], &hosts[2]);
    let t = now();
    let (status, body) = server.request(
        "POST",
        "/api/v1/reservations",
        Auth::Token(&alice),
        Some(&json!({"hosts": ["gpu1"], "mode": "exclusive",
                     "start": t - 60, "end": t + 4 * 3600, "comment": "paper"})),
    );
    assert_eq!(status, 201, "{body}");

    // From cpu1, bob asks for 4 h on any gpu: gpu2 is free now.
    let (code, stdout, stderr) = cpu1.hosthog(
        "bob",
        &[
            "reserve",
            "--next-free",
            "--for",
            "4h",
            "--hosts",
            "gpu*",
            "sweep",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{}", cpu1.log());
    assert!(
        stdout.starts_with("Reserved gpu2: ") && stdout.contains(" exclusive reservation of bob, "),
        "{stdout}"
    );
    assert!(stdout.ends_with(", \"sweep\"\n"), "{stdout}");
    let started = Instant::now();
    while gpu2.owners() != ["bob"] {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "gpu2: {:?}",
            gpu2.owners()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // carol, from gpu2 itself, an hour on gpu1 or gpu2: both are taken for
    // four hours; gpu1 comes free first (or at the same second: by name).
    let (code, stdout, stderr) = gpu2.hosthog(
        "carol",
        &[
            "--json",
            "reserve",
            "--next-free",
            "--shared",
            "--for",
            "1h",
            "--hosts",
            "gpu1,gpu2",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let booked: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(booked["hosts"], json!(["gpu1"]), "{booked}");
    assert_eq!(booked["owner"], "carol");
    assert_eq!(booked["mode"], "shared");
    assert_eq!(booked["start"], json!(t + 4 * 3600));
    assert_eq!(booked["end"], json!(t + 5 * 3600));
    // Its sequence is the calendar's (a new reservation's: 0), as a list of
    // the calendar gives it.
    let (status, shown) = server.request(
        "GET",
        &format!("/api/v1/reservations/{}", booked["id"].as_str().unwrap()),
        Auth::Token(&alice),
        None,
    );
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        (&booked["sequence"], &booked["cancelled_at"]),
        (&json!(0), &serde_json::Value::Null)
    );
    assert_eq!(shown["sequence"], booked["sequence"]);

    // bob's reservations, from any host, with their hosts.
    let (code, stdout, stderr) = gpu1.hosthog("bob", &["list", "--fleet"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("ID        HOSTS  MODE        OWNER  START"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("  gpu2   exclusive*  bob    "),
        "{stdout}"
    );
    assert!(lines[1].ends_with("  -     sweep"), "{stdout}");
    assert_eq!(lines[2], "(* in force now)");
    let (code, stdout, _) = cpu1.hosthog("bob", &["--json", "list", "--fleet"]);
    assert_eq!(code, Some(0));
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        (
            &listed[0]["hosts"],
            &listed[0]["owner"],
            &listed[0]["comment"]
        ),
        (&json!(["gpu2"]), &json!("bob"), &json!("sweep"))
    );
    let (_, stdout, _) = cpu1.hosthog("dave", &["list", "--fleet"]);
    assert_eq!(stdout, "No reservations on the fleet calendar.\n");

    // No host matches: the server's refusal, nothing booked.
    let (code, stdout, stderr) = cpu1.hosthog(
        "bob",
        &["reserve", "--next-free", "--for", "1h", "--hosts", "tpu*"],
    );
    assert_eq!((code, stdout.as_str()), (Some(2), ""), "{stderr}");
    assert!(
        stderr.starts_with("hosthog: ") && stderr.contains("tpu*"),
        "{stderr}"
    );
    assert_eq!(
        server.pg.psql("fleet", "SELECT count(*) FROM reservation"),
        "3\n"
    );
    // --next-free needs --hosts and --for.
    let (code, _, stderr) = cpu1.hosthog("bob", &["reserve", "--next-free", "--for", "1h"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--hosts"), "{stderr}");

    // A plain host has no fleet to list.
    let plain = FleetHost::start_with(
        &server,
        "solo",
        &bundles[0],
        &HostOptions {
            plain: true,
            ..HostOptions::default()
        },
    );
    let (code, _, stderr) = plain.hosthog("bob", &["list", "--fleet"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("hosthog: this host is not part of a fleet"),
        "{stderr}"
    );
}
