//! One user changing their own reservation as fast as 16 connections allow,
//! for 60 s: the per-user write rate holds, the audit log stays under its
//! cap with exactly one whole line per acknowledged change, and other users
//! are answered quickly meanwhile (docs/security.md). Needs root (see
//! tests/src/daemon/mod.rs).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::daemon as common;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEFAULT_CONFIG, Daemon, SETPRIV};

const SOCKET_ENV: &str = "HOSTHOG_TEST_AUDIT_FLOOD_SOCKET";
const ROLE_ENV: &str = "HOSTHOG_TEST_AUDIT_FLOOD_ROLE";
const ID_ENV: &str = "HOSTHOG_TEST_AUDIT_FLOOD_ID";
const SECS_ENV: &str = "HOSTHOG_TEST_AUDIT_FLOOD_SECS";
/// How long the flood lasts (the figure).
const FLOOD_SECS: u64 = 60;
/// Connections the flooding user changes their reservation on.
const FLOOD_CONNECTIONS: usize = 16;
/// The audit log's cap in this test, and rotated files kept: small enough
/// that the flood rotates it, enough files that no acknowledged line is
/// rotated away (at 30 changes a minute plus a burst of 20).
const AUDIT_CAP: u64 = 16 << 10;
const AUDIT_KEEP: u32 = 16;

/// One request and its answer on an open connection.
fn round_trip(stream: &mut BufReader<UnixStream>, frame: &str) -> serde_json::Value {
    stream.get_mut().write_all(frame.as_bytes()).unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

fn connect(socket: &str) -> BufReader<UnixStream> {
    let s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    BufReader::new(s)
}

/// Not a test of its own: the clients `Client::start` re-executes under
/// setpriv. Role "flood": FLOOD_CONNECTIONS threads each change the comment
/// of reservation ID in a loop, reconnecting when closed, and print every
/// acknowledged comment. Role "probe": one request at a time (whoami, list,
/// and a change of its own reservation every 5 s), printing each round
/// trip's duration in microseconds.
#[test]
#[ignore = "a helper the test above re-executes (with --ignored); it fails when run by hand without its environment"]
fn audit_flood_client() {
    let (Ok(socket), Ok(role), Ok(id), Ok(secs)) = (
        std::env::var(SOCKET_ENV),
        std::env::var(ROLE_ENV),
        std::env::var(ID_ENV),
        std::env::var(SECS_ENV),
    ) else {
        panic!(
            "audit_flood_client is run by Client::start, which sets {SOCKET_ENV}, {ROLE_ENV}, \
             {ID_ENV} and {SECS_ENV}"
        );
    };
    let until = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    println!("READY");
    std::io::stdout().flush().unwrap();
    if role == "flood" {
        let threads: Vec<_> = (0..FLOOD_CONNECTIONS)
            .map(|t| {
                let socket = socket.clone();
                let id = id.clone();
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    let mut refused = 0usize;
                    let mut stream = connect(&socket);
                    let mut n = 0usize;
                    while Instant::now() < until {
                        n += 1;
                        let comment = format!("flood-{t}-{n}");
                        let frame = format!(
                            "{{\"version\":1,\"op\":{{\"change\":{{\"id\":\"{id}\",\"comment\":\"{comment}\"}}}}}}\n"
                        );
                        let reply = round_trip(&mut stream, &frame);
                        if reply.get("ok").is_some() {
                            acked.push(comment);
                        } else {
                            assert_eq!(reply["error"]["kind"], "limit", "{reply}");
                            refused += 1;
                        }
                    }
                    (acked, refused)
                })
            })
            .collect();
        let mut refused = 0;
        for t in threads {
            let (acked, r) = t.join().unwrap();
            refused += r;
            for comment in acked {
                println!("ACK {comment}");
            }
        }
        println!("DONE refused={refused}");
    } else {
        let mut n = 0usize;
        let mut last_change = Instant::now();
        while Instant::now() < until {
            n += 1;
            let frame = if last_change.elapsed() > Duration::from_secs(5) {
                last_change = Instant::now();
                format!(
                    "{{\"version\":1,\"op\":{{\"change\":{{\"id\":\"{id}\",\"comment\":\"probe-{n}\"}}}}}}\n"
                )
            } else if n.is_multiple_of(2) {
                "{\"version\":1,\"op\":\"whoami\"}\n".to_string()
            } else {
                "{\"version\":1,\"op\":{\"list\":{\"all\":false}}}\n".to_string()
            };
            let started = Instant::now();
            let mut stream = connect(&socket);
            let reply = round_trip(&mut stream, &frame);
            let took = started.elapsed();
            assert!(reply.get("ok").is_some(), "{reply}");
            println!("RTT {}", took.as_micros());
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("DONE");
    }
}

/// A client process (this binary under setpriv) and its output lines.
struct Client {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Client {
    fn start(d: &Daemon, user: &str, role: &str, id: &str) -> Client {
        let u = d.user(user);
        let mut child = Command::new(SETPRIV)
            .arg(format!("--reuid={}", u.uid))
            .arg(format!("--regid={}", u.uid))
            .arg("--clear-groups")
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "--ignored",
                "audit_flood_client",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SOCKET_ENV, &d.socket)
            .env(ROLE_ENV, role)
            .env(ID_ENV, id)
            .env(SECS_ENV, FLOOD_SECS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("READY") {
            line.clear();
            assert_ne!(
                stdout.read_line(&mut line).unwrap(),
                0,
                "client ended early"
            );
        }
        Client { child, stdout }
    }

    /// Every line up to the client's DONE line.
    fn finish(mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert_ne!(
                self.stdout.read_line(&mut line).unwrap(),
                0,
                "client ended without DONE: {lines:?}"
            );
            let done = line.starts_with("DONE");
            lines.push(line.trim().to_string());
            if done {
                return lines;
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reserve(d: &Daemon, user: &str) -> String {
    let run = d.run_as(
        user,
        &[
            "--json", "reserve", "--shared", "--start", "in 2d", "--for", "1h", "start",
        ],
    );
    run.ok();
    run.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn a_change_flood_is_rate_limited_and_every_acknowledged_change_has_one_audit_line() {
    let config = format!(
        "{DEFAULT_CONFIG}[audit]\nmax_size = \"{}K\"\nkeep = {AUDIT_KEEP}\n",
        AUDIT_CAP >> 10
    );
    let d = Daemon::start(&config, 0);
    let bob_id = reserve(&d, "bob");
    let alice_id = reserve(&d, "alice");

    let flood = Client::start(&d, "bob", "flood", &bob_id);
    let probe = Client::start(&d, "alice", "probe", &alice_id);
    let flood_lines = flood.finish();
    let probe_lines = probe.finish();

    // Other users' round trips while bob floods.
    let mut rtts: Vec<u64> = probe_lines
        .iter()
        .filter_map(|l| l.strip_prefix("RTT ")?.parse().ok())
        .collect();
    rtts.sort_unstable();
    assert!(rtts.len() > 100, "alice got only {} answers", rtts.len());
    let p99 = rtts[rtts.len() * 99 / 100];
    let max = rtts[rtts.len() - 1];

    // The audit log: under its cap, whole lines only, and exactly one line
    // for each change bob was told was made, none for the ones refused.
    let audit = d.state.join("audit.log");
    let size = fs::metadata(&audit).unwrap().len();
    let mut files: Vec<PathBuf> = (1..=AUDIT_KEEP)
        .map(|n| d.state.join(format!("audit.log.{n}")))
        .filter(|p| p.exists())
        .collect();
    files.push(audit.clone());
    let mut total = 0u64;
    let mut comments: HashMap<String, usize> = HashMap::new();
    let mut bob_lines = 0usize;
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        total += text.len() as u64;
        assert!(
            text.len() as u64 <= AUDIT_CAP,
            "{} is {} bytes",
            file.display(),
            text.len()
        );
        assert!(text.is_empty() || text.ends_with('\n'), "torn last line");
        for line in text.lines() {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            if entry["user"] == "bob" && entry["action"] == "change" {
                bob_lines += 1;
                let comment = entry["after"]["comment"].as_str().unwrap().to_string();
                *comments.entry(comment).or_default() += 1;
            }
        }
    }
    let acked: Vec<&str> = flood_lines
        .iter()
        .filter_map(|l| l.strip_prefix("ACK "))
        .collect();
    let summary = flood_lines.last().unwrap();
    for comment in &acked {
        assert_eq!(
            comments.get(*comment),
            Some(&1),
            "acknowledged change {comment} has not exactly one audit line"
        );
    }
    assert_eq!(
        bob_lines,
        acked.len(),
        "audit lines for unacknowledged changes"
    );
    // 30 a minute after a burst of 20: at most 20 + 30 + slack in 60 s.
    assert!(
        (40..=60).contains(&acked.len()),
        "{} changes acknowledged in {FLOOD_SECS} s ({summary})",
        acked.len()
    );
    assert!(files.len() > 1, "the log was never rotated: {files:?}");
    assert!(size <= AUDIT_CAP, "audit.log is {size} bytes");
    // The last acknowledged change is what the table holds.
    let state = d.state();
    let bob = state
        .reservations
        .iter()
        .find(|r| r.owner == "bob")
        .unwrap();
    assert!(acked.contains(&bob.comment.as_str()), "{}", bob.comment);
    eprintln!(
        "flood {FLOOD_SECS} s on {FLOOD_CONNECTIONS} connections: {} changes acknowledged, {summary}; \
         audit.log {size} bytes (cap {AUDIT_CAP}), {} files, {total} bytes in all; \
         alice: {} round trips, p99 {p99} µs, max {max} µs",
        acked.len(),
        files.len(),
        rtts.len()
    );
    assert!(
        p99 < 100_000,
        "alice's p99 round trip was {p99} µs while bob flooded"
    );
}
