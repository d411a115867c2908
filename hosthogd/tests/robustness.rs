//! Malformed input, concurrency and crashes. Needs root (see common/mod.rs).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::daemon as common;
use hosthog_tests::daemon::now;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{DEFAULT_CONFIG, Daemon, raw_exchange};

/// Not a test of its own: the raw socket client `raw_as` re-executes.
#[test]
#[ignore = "a helper the test above re-executes (with --ignored); it fails when run by hand without its environment"]
fn raw_client() {
    common::raw_client_helper();
}

fn rfc3339(t: i64) -> String {
    jiff::Timestamp::from_second(t).unwrap().to_string()
}

#[test]
fn malformed_inputs_are_refused_in_one_line_and_change_nothing() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let alice = d.run_as("alice", &["--json", "reserve", "--for", "2h", "benchmarks"]);
    alice.ok();
    let id = alice.json()["id"].as_str().unwrap()[..8].to_string();
    // `extend --until now` below must meet a reservation that started in
    // an earlier second ("not in the future"), not in this one ("must end
    // after it starts").
    std::thread::sleep(Duration::from_millis(1100));
    let before = d.table_bytes();
    let audit_before = d.audit_lines().len();

    let long_comment = "x".repeat(100 * 1024);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["reserve", "--for", "18"], "is not a duration"),
        (vec!["reserve", "--for", "18:00"], "is not a duration"),
        (vec!["reserve", "--for", "0m"], "zero duration"),
        (vec!["reserve", "--for=-2h"], "is not a duration"),
        (
            vec!["reserve", "--for", "1h", "--until", "18:00"],
            "cannot be used with",
        ),
        (
            vec!["reserve"],
            "reserve needs --for DURATION or --until WHEN",
        ),
        (vec!["reserve", "--until", "yesterday"], "cannot read"),
        (vec!["reserve", "--until", "25:00"], "cannot read"),
        (
            vec!["reserve", "--until", "2026-13-01 10:00"],
            "cannot read",
        ),
        (
            vec!["reserve", "--start", "next blursday", "--for", "1h"],
            "cannot read",
        ),
        (
            vec!["reserve", "--start", "2020-01-01 10:00", "--for", "1h"],
            "is in the past",
        ),
        (
            vec!["reserve", "--start", "5h", "--until", "4h"],
            "must end after it starts",
        ),
        (
            vec!["reserve", "--start", "5h", "--until", "5h"],
            "must end after it starts",
        ),
        (
            vec!["reserve", "--start", "3h", "--for", "3d"],
            "the longest allowed is 2d",
        ),
        (
            vec!["reserve", "--start", "40d", "--for", "1h"],
            "starts more than 30d ahead",
        ),
        (
            vec!["reserve", "--start", "3h", "--for", "99999999999999d"],
            "not a duration",
        ),
        (
            vec!["reserve", "--start", "3h", "--for", "1h", &long_comment],
            "at most 500 are allowed",
        ),
        (
            vec!["reserve", "--start", "3h", "--for", "1h", "\u{1b}[31mred"],
            "control character",
        ),
        (
            vec!["reserve", "--start", "3h", "--for", "1h", "two\nlines"],
            "control character",
        ),
        (
            vec!["reserve", "--start", "3h", "--for", "1h", "bell\u{7}"],
            "control character",
        ),
        (
            vec!["reserve", "--start", "3h", "--for", "1h", "\u{202e}gnp.exe"],
            "control character",
        ),
        (
            vec![
                "reserve",
                "--start",
                "3h",
                "--for",
                "1h",
                "--with",
                "nosuchuser",
            ],
            "there is no user nosuchuser",
        ),
        (
            vec![
                "reserve", "--start", "3h", "--for", "1h", "--with", "bad name",
            ],
            "not a valid user name",
        ),
        (
            vec![
                "reserve",
                "--start",
                "3h",
                "--for",
                "1h",
                "--with",
                "bob\nroot",
            ],
            "not a valid user name",
        ),
        (
            vec!["reserve", "--start", "3h", "--for", "1h", "--owner", "bob"],
            "only admins may reserve for another user",
        ),
        (vec!["check", "bad user"], "not a valid user name"),
        (vec!["check", "bob\nalice"], "not a valid user name"),
        (vec!["check", "bob", "--at", "half past"], "cannot read"),
        (vec!["show", "zzzz"], "is not a reservation id"),
        (vec!["show", ""], "is not a reservation id"),
        (vec!["show", "ffffffffffffffff0"], "is not a reservation id"),
        (vec!["show", "dead0000beef"], "there is no reservation"),
        (vec!["extend", &id, "--for", "soon"], "is not a duration"),
        (vec!["extend", &id, "--until", "now"], "not in the future"),
        (
            vec!["extend", &id, "--for", "3d"],
            "the longest allowed is 2d",
        ),
        (vec!["edit", &id], "nothing to change"),
        (vec!["edit", &id, "--start", "1h"], "already started"),
        (
            vec!["edit", &id, "--comment", "a\u{1b}]0;pwned\u{7}"],
            "control character",
        ),
        (
            vec!["share", &id, "nosuchuser"],
            "there is no user nosuchuser",
        ),
        (vec!["share", &id, "alice"], "already on reservation"),
        (vec!["unshare", &id, "carol"], "not a co-user"),
        (vec!["cancel", &id], "only admins may cancel"),
        (
            vec!["notice", "add", "I am root"],
            "only admins may post notices",
        ),
        (vec!["exempt", "add", "alice"], "only admins"),
        (vec!["nonsense"], "unrecognized subcommand"),
    ];
    assert!(cases.len() >= 30);
    for (args, needle) in &cases {
        d.run_as("alice", args).refused(needle);
        assert_eq!(d.table_bytes(), before, "{args:?} changed the table");
    }

    // Raw frames straight to the socket: each gets an error response and
    // the connection is closed; the daemon keeps serving.
    let too_long = vec![b'x'; 70 * 1024];
    let nested = format!("{}\n", "[".repeat(10_000));
    let frames: Vec<(&[u8], &str)> = vec![
        (b"not json\n", "not valid JSON"),
        (b"\n", "not valid JSON"),
        (b"{}\n", "no numeric \\\"version\\\""),
        (b"{\"version\":1}\n", "not a valid hosthog request"),
        (b"{\"version\":2,\"op\":\"whoami\"}\n", "version 2 is not supported"),
        (b"{\"version\":\"1\",\"op\":\"whoami\"}\n", "no numeric"),
        (b"{\"version\":1,\"op\":\"explode\"}\n", "unknown variant"),
        (b"{\"version\":1,\"op\":{\"reserve\":{\"mode\":\"exclusive\"}}}\n", "missing field"),
        (b"{\"version\":1,\"op\":{\"reserve\":{\"mode\":\"weird\",\"start\":1,\"end\":2}}}\n", "unknown variant"),
        (b"{\"version\":1,\"op\":{\"reserve\":{\"mode\":\"shared\",\"start\":\"soon\",\"end\":2}}}\n", "invalid type"),
        (b"{\"version\":1,\"op\":{\"reserve\":{\"mode\":\"shared\",\"start\":1e400,\"end\":2}}}\n", "not valid JSON"),
        (b"\xff\xfe\x00\n", "not UTF-8"),
        (&too_long, "frame longer than 65536 bytes"),
        (b"{\"version\":1,\"op\":\"whoami\"", "in the middle of a frame"),
        (b"[1,2,3]\n", "no numeric"),
        (nested.as_bytes(), "not valid JSON"),
        (b"{\"version\":1,\"op\":\"whoami\"}{\"x\":1}\n", "not valid JSON"),
        (b"{\"version\":1,\"op\":{\"release\":{\"id\":\"\\u0000\"}}}\n", "not a reservation id"),
    ];
    for (bytes, needle) in &frames {
        let answer = raw_exchange(&d.socket, bytes);
        assert_eq!(answer.lines().count(), 1, "{answer}");
        assert!(answer.contains("\"error\""), "{answer}");
        assert!(answer.contains(needle), "expected {needle:?}: {answer}");
        assert_eq!(d.table_bytes(), before);
        d.run_as("bob", &["whoami"]).ok();
    }
    // The same hostile values in well-formed frames, sent straight to the
    // socket as alice (an attacker skips the CLI and its checks): the
    // daemon refuses each in one line and changes nothing.
    let (s3, e3) = (now() + 3 * 3600, now() + 4 * 3600);
    let reserve = |extra: &str| {
        format!(
            r#"{{"version":1,"op":{{"reserve":{{"mode":"shared","start":{s3},"end":{e3}{extra}}}}}}}"#
        )
    };
    let full_id = alice.json()["id"].as_str().unwrap().to_string();
    let big = "x".repeat(60 * 1024);
    let user_frames: Vec<(String, &str)> = vec![
        (
            reserve(&format!(r#","comment":"{}""#, "x".repeat(501))),
            "at most 500 are allowed",
        ),
        (
            reserve(&format!(r#","comment":"{big}""#)),
            "at most 500 are allowed",
        ),
        (
            reserve(r#","comment":"\u001b[31mred""#),
            "control character",
        ),
        (reserve(r#","comment":"two\nlines""#), "control character"),
        (reserve(r#","comment":"bell\u0007""#), "control character"),
        (
            reserve(r#","comment":"\u202egnp.exe""#),
            "control character",
        ),
        (reserve(r#","with":["bad name"]"#), "not a valid user name"),
        (reserve(r#","with":["bob\nroot"]"#), "not a valid user name"),
        (
            reserve(r#","with":["nosuchuser"]"#),
            "there is no user nosuchuser",
        ),
        (
            reserve(r#","owner":"bob""#),
            "only admins may reserve for another user",
        ),
        (
            format!(
                r#"{{"version":1,"op":{{"change":{{"id":"{full_id}","comment":"a\u001b]0;pwned\u0007"}}}}}}"#
            ),
            "control character",
        ),
        (
            format!(
                r#"{{"version":1,"op":{{"share":{{"id":"{full_id}","users":["bad name"]}}}}}}"#
            ),
            "not a valid user name",
        ),
        (
            r#"{"version":1,"op":{"check":{"user":"bob\nalice"}}}"#.to_string(),
            "not a valid user name",
        ),
    ];
    for (frame, needle) in &user_frames {
        let answer = common::raw_as(&d, "alice", frame);
        let shown: String = frame.chars().take(120).collect();
        assert_eq!(answer.lines().count(), 1, "{shown}: {answer}");
        assert!(answer.contains("\"error\""), "{shown}: {answer}");
        assert!(
            answer.contains(needle),
            "{shown}: expected {needle:?}: {answer}"
        );
        assert_eq!(d.table_bytes(), before, "{shown} changed the table");
    }

    // After a malformed frame the connection is closed: a valid request
    // behind it is not served.
    let answer = raw_exchange(&d.socket, b"garbage\n{\"version\":1,\"op\":\"whoami\"}\n");
    assert_eq!(answer.lines().count(), 1, "{answer}");
    // A client that sends nothing is cut off after the read timeout.
    let started = std::time::Instant::now();
    let stream = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut &stream, &mut answer).unwrap();
    assert!(
        answer.contains("no complete request within 5 seconds"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    assert_eq!(d.table_bytes(), before);
    assert_eq!(d.audit_lines().len(), audit_before);
    d.run_as("alice", &["list"]).ok();
}

#[test]
fn fifty_concurrent_clients_twenty_reservations_each() {
    const CLIENTS: usize = 50;
    const EACH: usize = 20;
    let d = Arc::new(Daemon::start(DEFAULT_CONFIG, CLIENTS));
    let base = now() + 3600;
    let mut threads = Vec::new();
    for c in 1..=CLIENTS {
        let d = Arc::clone(&d);
        threads.push(std::thread::spawn(move || {
            let user = format!("u{c:02}");
            let mut acked = Vec::new();
            let mut refused = 0;
            for j in 0..EACH {
                // Deterministic spread over 300 ten-minute slots: many
                // overlaps, a third of them exclusive.
                let slot = ((c * 7919 + j * 104_729) % 300) as i64;
                let start = base + slot * 600;
                let end = start + 600 + ((c + j) % 3) as i64 * 300;
                let mode = if (c + j) % 3 == 0 {
                    "--exclusive"
                } else {
                    "--shared"
                };
                let (s, e) = (rfc3339(start), rfc3339(end));
                let run = d.run_as(
                    &user,
                    &[
                        "--json", "reserve", mode, "--start", &s, "--until", &e, "load",
                    ],
                );
                match run.code {
                    Some(0) => acked.push(run.json()["id"].as_str().unwrap().to_string()),
                    Some(2) if run.stderr.contains("conflicts with") => refused += 1,
                    _ => panic!("unexpected result: {run:?}"),
                }
            }
            (acked, refused)
        }));
    }
    let mut acked = Vec::new();
    let mut refused = 0;
    for t in threads {
        let (a, r) = t.join().unwrap();
        acked.extend(a);
        refused += r;
    }
    assert_eq!(acked.len() + refused, CLIENTS * EACH);
    assert!(refused > 0, "the load should include conflicts");
    let state = d.state();
    for id in &acked {
        assert!(
            state.reservations.iter().any(|r| &r.id.to_string() == id),
            "acknowledged {id} missing"
        );
    }
    assert_eq!(state.reservations.len(), acked.len());
    for r in &state.reservations {
        let clash = hosthog_booking::conflicts(&state.reservations, r);
        assert!(clash.is_empty(), "{r:?} conflicts with {clash:?}");
    }
    let audit = d.audit_lines();
    assert_eq!(audit.len(), acked.len(), "one audit line per change");
    // Group commit: one table write (generation) may carry several changes,
    // and the audit log lists them in the order they were written.
    let mut generations: Vec<u64> = audit
        .iter()
        .map(|l| l["generation"].as_u64().unwrap())
        .collect();
    assert!(
        generations.windows(2).all(|w| w[0] <= w[1]),
        "audit lines out of write order: {generations:?}"
    );
    generations.dedup();
    // With 50 clients writing at once, some table write must have carried
    // more than one change: fails if every change got a write of its own.
    assert!(
        generations.len() < audit.len(),
        "no group commit: {} changes in {} table writes",
        audit.len(),
        generations.len()
    );
    eprintln!(
        "{} changes in {} table writes",
        audit.len(),
        generations.len()
    );
    eprintln!(
        "{} acknowledged, {refused} refused as conflicts",
        acked.len()
    );
}

#[test]
fn sigkill_during_a_burst_leaves_a_valid_table() {
    let mut d = Daemon::start(DEFAULT_CONFIG, 16);
    let d_ref = &d;
    let stop = AtomicBool::new(false);
    let acknowledged = std::sync::atomic::AtomicUsize::new(0);
    let base = now() + 3600;
    let acked: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=16)
            .map(|c| {
                let (stop, acknowledged) = (&stop, &acknowledged);
                scope.spawn(move || {
                    let user = format!("u{c:02}");
                    let mut acked = Vec::new();
                    let mut j = 0i64;
                    while !stop.load(Ordering::Relaxed) {
                        let start = rfc3339(base + j * 60);
                        let run = d_ref.run_as(
                            &user,
                            &[
                                "--json", "reserve", "--shared", "--start", &start, "--for", "1m",
                            ],
                        );
                        if run.code == Some(0) {
                            acked.push(run.json()["id"].as_str().unwrap().to_string());
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        j += 1;
                    }
                    acked
                })
            })
            .collect();
        // Killed mid-burst: once a few changes were acknowledged (on any
        // machine, however slow), with more in flight.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while acknowledged.load(Ordering::Relaxed) < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: kill(2) on the daemon's pid, which we own and have not reaped.
        let rc = unsafe { libc::kill(d_ref.pid().unwrap() as i32, libc::SIGKILL) };
        assert_eq!(rc, 0);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    d.kill(); // reap
    assert!(!acked.is_empty(), "the burst should have written something");
    // The table is whole and every acknowledged reservation is in it.
    let state = d.state();
    for id in &acked {
        assert!(
            state.reservations.iter().any(|r| &r.id.to_string() == id),
            "{id} lost"
        );
    }
    // With the daemon gone, the CLI says so in one line and names how to start it.
    d.run_as("alice", &["list"])
        .refused("hosthogd is not running")
        .refused("systemctl start hosthogd.socket");
    // A restart on the same socket works.
    d.restart();
    d.run_as("alice", &["list"]).ok();
    eprintln!(
        "{} acknowledged before SIGKILL, table generation {}",
        acked.len(),
        state.generation
    );
}
