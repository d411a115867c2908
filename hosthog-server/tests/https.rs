//! hosthog-server end to end: a real PostgreSQL, the real binary's
//! subcommands (migrate, ca init, host add/revoke, admin add, token add),
//! `serve` on 127.0.0.1, and curl as the client, as in docs/fleet-api.md
//! (tests/src/fleet.rs). Run as root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use hosthog_tests::fleet::{Auth, FleetServer, now};
use serde_json::{Value, json};

#[test]
fn book_over_https_and_hosts_follow_by_certificate() {
    let mut server = FleetServer::start();
    assert_eq!(server.run(&["migrate"]), "the schema is up to date\n");
    let gpu1 = server.add_host("gpu1");
    let gpu2 = server.add_host("gpu2");
    assert_eq!(
        server.run(&["host", "list"]),
        "gpu1\tversion 0\ngpu2\tversion 0\n"
    );
    let alice = server.token("alice");
    let bob = server.token("bob");
    let carol = server.token("carol");
    assert_eq!(
        server.run(&["admin", "add", "carol"]),
        "carol is now an admin\n"
    );
    assert_eq!(
        server.run(&["admin", "add", "carol"]),
        "carol was already an admin\n"
    );
    assert!(alice.starts_with("hh_") && alice.len() == 67, "{alice}");
    server.serve();
    let client = &server;
    let t = now();

    // alice books both hosts for two hours.
    let (status, body) = client.request(
        "POST",
        "/api/v1/reservations",
        Auth::Token(&alice),
        Some(&json!({"hosts": ["gpu2", "gpu1"], "mode": "exclusive",
                     "start": t + 60, "end": t + 7200, "comment": "paper benchmarks"})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["owner"], "alice");
    assert_eq!(
        body["hosts"],
        json!([{"name": "gpu1", "version": 1}, {"name": "gpu2", "version": 1}])
    );
    let alice_id = body["id"].as_str().unwrap().to_string();

    // bob's overlapping booking of gpu2 is refused with alice's in the way.
    let (status, body) = client.request(
        "POST",
        "/api/v1/reservations",
        Auth::Token(&bob),
        Some(&json!({"hosts": ["gpu2"], "mode": "shared", "start": t + 3600, "end": t + 9000})),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "conflict");
    assert_eq!(
        body["in_the_way"],
        json!([{"host": "gpu2", "id": alice_id, "owner": "alice", "mode": "exclusive",
                "start": t + 60, "end": t + 7200}])
    );
    assert_eq!(body["conflicts"][0]["id"], json!(alice_id));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("this shared reservation conflicts with alice's exclusive reservation"),
        "{body}"
    );
    // No token, a wrong token, an unknown host, a bad span.
    let reserve = json!({"hosts": ["gpu1"], "mode": "shared", "start": t + 9000, "end": t + 9600});
    let (status, body) = client.request("POST", "/api/v1/reservations", Auth::None, Some(&reserve));
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, _) = client.request(
        "POST",
        "/api/v1/reservations",
        Auth::Token("hh_00"),
        Some(&reserve),
    );
    assert_eq!(status, 401);
    let (status, body) = client.request(
        "POST",
        "/api/v1/reservations",
        Auth::Token(&bob),
        Some(&json!({"hosts": ["gpu9"], "mode": "shared", "start": t, "end": t + 60})),
    );
    assert_eq!(
        (status, &body["unknown_hosts"]),
        (404, &json!(["gpu9"])),
        "{body}"
    );
    let (status, body) = client.request(
        "POST",
        "/api/v1/reservations",
        Auth::Token(&bob),
        Some(&json!({"hosts": ["gpu1"], "mode": "shared", "start": t + 60, "end": t})),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid")),
        "{body}"
    );

    // gpu1's agent, by its certificate: its window.
    let (status, body) = client.request("GET", "/agent/v1/window", Auth::Host(&gpu1), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["host"].as_str(), body["version"].as_i64()),
        (Some("gpu1"), Some(1))
    );
    assert_eq!(body["reservations"][0]["owner"], "alice");
    assert_eq!(body["reservations"][0]["comment"], "paper benchmarks");
    // The agent API wants a host certificate, not a token.
    let (status, _) = client.request("GET", "/agent/v1/window", Auth::Token(&alice), None);
    assert_eq!(status, 401);

    // A long-poll at the current version returns as soon as it changes.
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let started = Instant::now();
            let answer = client.request(
                "GET",
                "/agent/v1/window?since=1&wait=20",
                Auth::Host(&gpu1),
                None,
            );
            (answer, started.elapsed(), Instant::now())
        });
        std::thread::sleep(Duration::from_millis(700));
        let booked_at = Instant::now();
        let (status, _) = client.request(
            "POST",
            "/api/v1/reservations",
            Auth::Token(&bob),
            Some(&json!({"hosts": ["gpu1"], "mode": "shared", "start": t + 7200, "end": t + 9000})),
        );
        assert_eq!(status, 201);
        let booked_in = booked_at.elapsed();
        let ((status, body), took, answered_at) = waiting.join().unwrap();
        // Woken by the database's notification, not by the 1 s backstop: the
        // answer follows the booking's own round trip closely.
        let after_booking = answered_at.saturating_duration_since(booked_at);
        eprintln!(
            "long-poll answered {after_booking:?} after the booking began (its round trip: {booked_in:?})"
        );
        assert!(
            after_booking < booked_in + Duration::from_millis(200),
            "the long-poll answered {after_booking:?} after the booking began"
        );
        assert_eq!((status, body["version"].as_i64()), (200, Some(2)), "{body}");
        assert_eq!(body["reservations"].as_array().unwrap().len(), 2);
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(5),
            "the long-poll answered after {took:?}"
        );
    });

    // Ending reservations: bob may not end alice's; an admin may; bob
    // removes his own future one.
    let path = format!("/api/v1/reservations/{alice_id}");
    let (status, body) = client.request("DELETE", &path, Auth::Token(&bob), None);
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("denied")),
        "{body}"
    );
    let (status, body) = client.request("DELETE", &path, Auth::Token(&carol), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["hosts"],
        json!([{"name": "gpu1", "version": 3}, {"name": "gpu2", "version": 2}])
    );
    let (status, body) = client.request("DELETE", &path, Auth::Token(&carol), None);
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = client.request("GET", "/agent/v1/window", Auth::Host(&gpu1), None);
    assert_eq!(status, 200);
    let left: Vec<&str> = body["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["owner"].as_str().unwrap())
        .collect();
    assert_eq!((body["version"].as_i64(), left), (Some(3), vec!["bob"]));
    let bobs = body["reservations"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = client.request(
        "DELETE",
        &format!("/api/v1/reservations/{bobs}"),
        Auth::Token(&bob),
        None,
    );
    assert_eq!(status, 200);
    let (_, body) = client.request("GET", "/agent/v1/window", Auth::Host(&gpu1), None);
    assert_eq!(
        (body["version"].as_i64(), &body["reservations"]),
        (Some(4), &json!([]))
    );
    assert_eq!(
        server
            .pg
            .psql("fleet", "SELECT actor, action FROM audit ORDER BY id"),
        "alice|reserve\nbob|reserve\ncarol|release\nbob|release\n"
    );

    // Revoked, or given a new bundle: the old certificate stops working.
    server.run(&["host", "revoke", "gpu2"]);
    let (status, body) = client.request("GET", "/agent/v1/window", Auth::Host(&gpu2), None);
    assert_eq!(status, 401, "{body}");
    let renewed = server.add_host("gpu1");
    let (status, _) = client.request("GET", "/agent/v1/window", Auth::Host(&gpu1), None);
    assert_eq!(status, 401);
    let (status, body) = client.request("GET", "/agent/v1/window", Auth::Host(&renewed), None);
    assert_eq!((status, body["version"].as_i64()), (200, Some(4)));

    // A user's request made on gpu1, forwarded by its hosthogd: the host
    // vouches for the user; without hosts, the booking is of that host.
    let (status, body) = client.request(
        "POST",
        "/agent/v1/request",
        Auth::Host(&renewed),
        Some(&json!({"user": "dave", "op": {"reserve":
            {"mode": "shared", "start": t + 600, "end": t + 1200}}})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["reply"]["reservation"]["owner"],
            &body["hosts"],
            &body["sequence"]
        ),
        (&json!("dave"), &json!(["gpu1"]), &json!(0))
    );
    let daves = body["reply"]["reservation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let release = |user: &str| json!({"user": user, "op": {"release": {"id": &daves[..8]}}, "tz": "Europe/Berlin"});
    let (status, body) = client.request(
        "POST",
        "/agent/v1/request",
        Auth::Host(&renewed),
        Some(&release("erin")),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("denied")),
        "{body}"
    );
    assert_eq!(
        body["message"],
        format!(
            "you (erin) may not release dave's reservation {}: only its owner, its co-users and admins may",
            &daves[..8]
        )
    );
    let (status, body) = client.request(
        "POST",
        "/agent/v1/request",
        Auth::Host(&renewed),
        Some(&release("dave")),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["reply"]["removed"]["id"], &body["sequence"]),
        (&json!(daves), &json!(1))
    );
    // Forwarding needs the host's certificate, not a person's token.
    let (status, _) = client.request(
        "POST",
        "/agent/v1/request",
        Auth::Token(&alice),
        Some(&json!({"user": "alice", "op": {"reserve":
            {"mode": "shared", "start": t, "end": t + 60}}})),
    );
    assert_eq!(status, 401);

    // Who is where: gpu1 reports its presence snapshot; people read it.
    let mut snapshot = libhosthog::Presence::new(t);
    snapshot.sessions.push(libhosthog::Session {
        user: "dave".into(),
        uid: 2004,
        kind: libhosthog::SessionKind::Login,
        pid: 4242,
        tty: "pts/3".into(),
        from: "10.0.0.9".into(),
        detail: String::new(),
    });
    let report: Value = serde_json::from_slice(&snapshot.encode().unwrap()).unwrap();
    let (status, body) = client.request(
        "PUT",
        "/agent/v1/presence",
        Auth::Host(&renewed),
        Some(&report),
    );
    assert_eq!(status, 204, "{body}");
    let mut hostile = report.clone();
    hostile["sessions"][0]["detail"] = json!("\u{1b}]0;pwned\u{7}");
    let (status, body) = client.request(
        "PUT",
        "/agent/v1/presence",
        Auth::Host(&renewed),
        Some(&hostile),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid")),
        "{body}"
    );
    let (status, body) = client.request("GET", "/api/v1/presence", Auth::Token(&bob), None);
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body[0]["host"], "gpu1");
    assert_eq!(body[0]["snapshot"]["sessions"][0]["user"], "dave");
    assert_eq!(body[0]["snapshot"]["sessions"][0]["tty"], "pts/3");
}

/// The people's API beyond booking: change, share, list, show, the next
/// free slot, limits, and ending; each answered with the booking rules'
/// own sentences.
#[test]
fn people_change_share_list_and_find_free_slots() {
    let mut server = FleetServer::start();
    server.add_host("gpu1");
    server.add_host("gpu2");
    server.add_host("cpu1");
    let alice = server.token("alice");
    let bob = server.token("bob");
    server.serve();
    let t = now();
    let api = |method: &str, path: &str, token: &str, body: Option<Value>| {
        server.request(method, path, Auth::Token(token), body.as_ref())
    };

    let (status, body) = api(
        "POST",
        "/api/v1/reservations",
        &alice,
        Some(json!({"hosts": ["gpu1", "gpu2"], "mode": "exclusive",
                    "start": t + 3600, "end": t + 7200, "comment": "sweep"})),
    );
    assert_eq!((status, &body["sequence"]), (201, &json!(0)), "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/reservations/{id}");

    // Extended by its owner: one record, both claims, sequence bumped (the
    // answer says so, as a list and the feeds do).
    let (status, body) = api("PATCH", &path, &alice, Some(json!({"extend_by": 3600})));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["reservation"]["end"], &body["sequence"]),
        (&json!(t + 10_800), &json!(1))
    );
    let (status, body) = api(
        "GET",
        &format!("/api/v1/reservations/{}", &id[..8]),
        &bob,
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["hosts"], &body["sequence"], &body["end"]),
        (&json!(["gpu1", "gpu2"]), &json!(1), &json!(t + 10_800))
    );
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT h.name, extract(epoch FROM c.end_at)::bigint - extract(epoch FROM c.start_at)::bigint \
             FROM claim c JOIN host h ON h.id = c.host ORDER BY h.name"
        ),
        "gpu1|7200\ngpu2|7200\n"
    );

    // bob's shared slot right after it, on gpu2 only: back to back is fine.
    let (status, body) = api(
        "POST",
        "/api/v1/reservations",
        &bob,
        Some(json!({"hosts": ["gpu2"], "mode": "shared", "start": t + 10_800, "end": t + 14_400})),
    );
    assert_eq!(status, 201, "{body}");
    let bobs = body["id"].as_str().unwrap().to_string();

    // Extending further now collides on gpu2 alone: the refusal says where.
    let (status, body) = api("PATCH", &path, &alice, Some(json!({"extend_by": 600})));
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().starts_with(
            "on gpu2: this exclusive reservation conflicts with bob's shared reservation"
        ),
        "{body}"
    );
    assert_eq!(body["in_the_way"][0]["host"], "gpu2");
    assert_eq!(body["in_the_way"][0]["id"], json!(bobs));
    assert_eq!(body["in_the_way"].as_array().unwrap().len(), 1);

    // bob may not touch alice's until she shares it with him.
    let (status, body) = api("PATCH", &path, &bob, Some(json!({"comment": "mine now"})));
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("denied")),
        "{body}"
    );
    let (status, body) = api(
        "POST",
        &format!("{path}/share"),
        &alice,
        Some(json!({"users": ["bob"]})),
    );
    assert_eq!(
        (status, &body["reservation"]["with"]),
        (200, &json!(["bob"])),
        "{body}"
    );
    let (status, body) = api(
        "PATCH",
        &path,
        &bob,
        Some(json!({"comment": "sweep, with bob"})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["comment"], "sweep, with bob");
    // Unsharing takes bob off again: he is denied as before, and sharing
    // him back restores what the lists below expect.
    let (status, body) = api(
        "POST",
        &format!("{path}/unshare"),
        &alice,
        Some(json!({"users": ["bob"]})),
    );
    assert_eq!(
        (status, &body["reservation"]["with"], &body["sequence"]),
        (200, &json!([]), &json!(4)),
        "{body}"
    );
    let (status, body) = api("PATCH", &path, &bob, Some(json!({"comment": "mine now"})));
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("denied")),
        "{body}"
    );
    let (status, body) = api(
        "POST",
        &format!("{path}/share"),
        &alice,
        Some(json!({"users": ["bob"]})),
    );
    assert_eq!(
        (status, &body["reservation"]["with"]),
        (200, &json!(["bob"])),
        "{body}"
    );

    // Lists: by user (owned or shared with), by host.
    let ids = |body: &Value| -> Vec<String> {
        body["reservations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, body) = api("GET", "/api/v1/reservations?user=bob", &bob, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), [id.clone(), bobs.clone()]);
    let (_, body) = api("GET", "/api/v1/reservations?host=gpu1", &bob, None);
    assert_eq!(ids(&body), vec![id.clone()]);
    let (_, body) = api("GET", "/api/v1/reservations?host=cpu1", &bob, None);
    assert_eq!(ids(&body), Vec::<String>::new());

    // The limits of a single host apply on the fleet (defaults: 7 days).
    let (status, body) = api(
        "POST",
        "/api/v1/reservations",
        &bob,
        Some(
            json!({"hosts": ["cpu1"], "mode": "shared", "start": t + 60, "end": t + 60 + 8 * 86_400}),
        ),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("limit")),
        "{body}"
    );
    assert_eq!(
        body["message"],
        "the reservation is 8d; the longest allowed is 7d"
    );

    // Per-person limits count the person's other reservations on the
    // host, also those far from the one asked for: 4 days exclusive in ten
    // days and 4 more tomorrow are 8 days of the 7 allowed (max_exclusive).
    let day = 86_400;
    let (status, body) = api(
        "POST",
        "/api/v1/reservations",
        &bob,
        Some(
            json!({"hosts": ["cpu1"], "mode": "exclusive", "start": t + 10 * day, "end": t + 14 * day}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = api(
        "POST",
        "/api/v1/reservations",
        &bob,
        Some(json!({"hosts": ["cpu1"], "mode": "exclusive", "start": t + day, "end": t + 5 * day})),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("limit")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("bob would hold the host exclusively for 8d from now on (4d already reserved, 4d more asked)"),
        "{body}"
    );

    // The next free hour on any gpu from t+3600: gpu1 when alice's ends
    // (gpu2 is bob's until later).
    let (status, body) = api(
        "POST",
        "/api/v1/reservations/next-free",
        &bob,
        Some(
            json!({"hosts": ["gpu*"], "duration": 3600, "mode": "exclusive",
                    "not_before": t + 3600, "comment": "next"}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["reservation"]["start"], &body["hosts"][0]["name"]),
        (&json!(t + 10_800), &json!("gpu1"))
    );
    let next = body["id"].as_str().unwrap().to_string();
    let (_, shown) = api("GET", &format!("/api/v1/reservations/{next}"), &bob, None);
    assert_eq!(
        (&body["sequence"], &shown["sequence"]),
        (&json!(0), &json!(0)),
        "{body} {shown}"
    );
    let (status, body) = api(
        "POST",
        "/api/v1/reservations/next-free",
        &bob,
        Some(json!({"hosts": ["tpu*"], "duration": 3600, "mode": "shared"})),
    );
    assert_eq!(
        (status, &body["unknown_hosts"]),
        (404, &json!(["tpu*"])),
        "{body}"
    );
    let (status, body) = api(
        "POST",
        "/api/v1/reservations/next-free",
        &bob,
        Some(json!({"hosts": ["gpu*"], "duration": 3600, "mode": "shared", "surprise": 1})),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("invalid")),
        "{body}"
    );

    // Bad ids are refused before anything is read.
    let (status, body) = api("GET", "/api/v1/reservations/zz';--", &bob, None);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid")),
        "{body}"
    );

    // Released before its start: gone from lists and windows, kept as
    // cancelled for calendars.
    let (status, body) = api("DELETE", &path, &alice, None);
    assert_eq!((status, &body["removed"]), (200, &json!(true)), "{body}");
    let (_, body) = api("GET", "/api/v1/reservations?host=gpu2", &bob, None);
    assert_eq!(ids(&body), vec![bobs.clone()]);
    let (_, body) = api("GET", "/api/v1/reservations?host=gpu2&all=true", &bob, None);
    assert_eq!(ids(&body), [id.clone(), bobs]);
    let (status, body) = api("GET", &path, &bob, None);
    assert_eq!(status, 200);
    // Changed six times: extended, shared, re-commented by bob, unshared,
    // shared again, released.
    assert_eq!(body["sequence"], json!(6));
    assert!(body["cancelled_at"].as_i64().unwrap() >= t, "{body}");
    let (status, body) = api("PATCH", &path, &alice, Some(json!({"extend_by": 60})));
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    assert_eq!(
        server
            .pg
            .psql("fleet", "SELECT actor, action FROM audit ORDER BY id"),
        "alice|reserve\nalice|change\nbob|reserve\nalice|share\nbob|change\nalice|unshare\nalice|share\nbob|reserve\nbob|reserve\nalice|release\n"
    );
}

#[test]
fn serve_refuses_a_database_that_lacks_its_migrations() {
    let server = FleetServer::start();
    // As after an upgrade of the binary without `migrate`: the last
    // migration is missing.
    let last = hosthog_server::migrate::MIGRATIONS.last().unwrap().0;
    server.pg.psql(
        "fleet",
        &format!("DROP TABLE host_sync; DELETE FROM schema_migrations WHERE version = {last}"),
    );
    let (code, stdout, stderr) = server.output(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (
            Some(2),
            "",
            format!(
                "hosthog-server: the database fleet on {} lacks migrations {last} of this \
                 hosthog-server: run `hosthog-server migrate` first (scripts/install --server does)\n",
                server.pg.socket_dir().display()
            )
            .as_str()
        )
    );
    assert_eq!(
        server.run(&["migrate"]),
        format!("applied migrations {last}\n")
    );
}
