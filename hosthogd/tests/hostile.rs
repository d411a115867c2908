//! Hostile local users against hosthogd: flooding the socket, planting
//! symlinks and hard links in the state directory and at the socket path,
//! wrong owners and modes, a full disk, per-user limits. Each test backs a
//! claim in docs/security.md. Needs root (see common/mod.rs).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::daemon as common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEFAULT_CONFIG, Daemon, SETPRIV, UNSHARE};

/// Not a test of its own: the raw socket client `raw_as` re-executes.
#[test]
#[ignore = "a helper the test above re-executes (with --ignored); it fails when run by hand without its environment"]
fn raw_client() {
    common::raw_client_helper();
}

const FLOOD_SOCKET_ENV: &str = "HOSTHOG_TEST_FLOOD_SOCKET";
const FLOOD_SECS_ENV: &str = "HOSTHOG_TEST_FLOOD_SECS";
/// Connections the flooding user keeps open (fewer than the daemon's cap
/// plus the listen backlog, so every connect returns at once).
const FLOOD_CONNECTIONS: usize = 100;
/// Oversized frames the flooding user sends, 1 MiB each.
const HUGE_FRAMES: usize = 40;

/// Not a test of its own: the flooding client `flood_as` re-executes under
/// setpriv. Keeps FLOOD_CONNECTIONS connections open, trickling one byte
/// of a never-ending request into each every 200 ms (slowloris), reopens
/// any the daemon closes, and sends HUGE_FRAMES 1 MiB frames.
#[test]
#[ignore = "a helper the test above re-executes (with --ignored); it fails when run by hand without its environment"]
fn flood_client() {
    let (Ok(socket), Ok(secs)) = (
        std::env::var(FLOOD_SOCKET_ENV),
        std::env::var(FLOOD_SECS_ENV),
    ) else {
        panic!(
            "flood_client is run by Flood::start, which sets {FLOOD_SOCKET_ENV} and {FLOOD_SECS_ENV}"
        );
    };
    let socket = PathBuf::from(socket);
    let until = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    let open = |socket: &Path| -> Option<UnixStream> {
        let s = UnixStream::connect(socket).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let mut conns: Vec<Option<UnixStream>> =
        (0..FLOOD_CONNECTIONS).map(|_| open(&socket)).collect();
    let huge_socket = socket.clone();
    let huge = std::thread::spawn(move || {
        let frame = vec![b'x'; 1 << 20];
        for _ in 0..HUGE_FRAMES {
            if let Ok(mut s) = UnixStream::connect(&huge_socket) {
                s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ = s.write_all(&frame);
            }
        }
    });
    println!("READY");
    std::io::stdout().flush().unwrap();
    let mut refused = 0usize;
    let mut cut = 0usize;
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        for conn in &mut conns {
            let mut dead = false;
            if let Some(s) = conn {
                if s.write_all(b" ").is_err() {
                    dead = true;
                }
                match s.read(&mut buf) {
                    Ok(0) => dead = true,
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]);
                        if text.contains("too many connections") {
                            refused += 1;
                        } else if text.contains("no complete request") {
                            cut += 1;
                        }
                        dead = true;
                    }
                    Err(_) => {}
                }
            } else {
                dead = true;
            }
            if dead {
                *conn = open(&socket);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    huge.join().unwrap();
    println!("DONE refused={refused} cut={cut}");
}

/// The flooding client running as `user`, its stdout piped.
struct Flood {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Flood {
    fn start(d: &Daemon, user: &str, secs: u64) -> Flood {
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
                "flood_client",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(FLOOD_SOCKET_ENV, &d.socket)
            .env(FLOOD_SECS_ENV, secs.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert_ne!(
                stdout.read_line(&mut line).unwrap(),
                0,
                "flood client ended early: {seen}"
            );
            if line.contains("READY") {
                break;
            }
            seen += &line;
        }
        Flood { child, stdout }
    }

    /// Waits for the client's summary line.
    fn finish(mut self) -> String {
        let mut line = String::new();
        while self.stdout.read_line(&mut line).unwrap() > 0 {
            if line.contains("DONE") {
                return line.trim().to_string();
            }
            line.clear();
        }
        panic!("flood client ended without a summary");
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of /proc/PID/status (the number before any unit).
fn proc_status(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn daemon_pid(d: &Daemon) -> u32 {
    let pid = d.pid().unwrap();
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(
        comm.trim(),
        "hosthogd",
        "the harness execs hosthogd in place"
    );
    pid
}

#[test]
fn a_flooding_user_cannot_starve_others_or_grow_the_daemon() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let pid = daemon_pid(&d);
    d.run_as("alice", &["whoami"]).ok();
    let rss_before = proc_status(pid, "VmRSS");
    let threads_before = proc_status(pid, "Threads");

    let flood = Flood::start(&d, "bob", 9);
    std::thread::sleep(Duration::from_secs(1));
    let mut rss_peak = rss_before;
    let mut threads_peak = threads_before;
    let mut sample = || {
        rss_peak = rss_peak.max(proc_status(pid, "VmRSS"));
        threads_peak = threads_peak.max(proc_status(pid, "Threads"));
    };
    // While bob floods, alice and carol are served well within the 5 s
    // request deadline: bob's connections never hold all the slots.
    for (user, args) in [
        (
            "alice",
            vec!["reserve", "--shared", "--for", "1h", "during the flood"],
        ),
        ("carol", vec!["list"]),
        ("alice", vec!["list"]),
        ("carol", vec!["whoami"]),
    ] {
        sample();
        let started = Instant::now();
        d.run_as(user, &args).ok();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(4),
            "{user} {args:?} took {took:?} while bob flooded"
        );
        sample();
        std::thread::sleep(Duration::from_millis(500));
    }
    let summary = flood.finish();
    sample();
    // bob holds at most a quarter of the 64 slots: one thread each (the
    // slack is for alice's and carol's connections and the daemon's own
    // short-lived threads; without the cap bob held all 64).
    let limit = hosthogd::server::per_uid_limit(64) as u64;
    assert!(
        threads_peak <= threads_before + limit + 6,
        "bob's connections: {threads_peak} threads at the peak, {threads_before} before"
    );
    assert!(summary.contains("refused="), "{summary}");
    let refused: usize = summary
        .split("refused=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(
        refused > 0,
        "bob's excess connections are refused: {summary}"
    );

    // Bob's slowloris connections are cut at the deadline, and then the
    // daemon is back to its idle size: memory does not follow the 40 MiB
    // bob sent.
    let cut: usize = summary
        .split("cut=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(
        cut > 0,
        "none of bob's trickling connections was cut at the 5 s deadline: {summary}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc_status(pid, "Threads") > threads_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let threads_after = proc_status(pid, "Threads");
    assert!(
        threads_after <= threads_before,
        "10 s after the flood hosthogd still has {threads_after} threads ({threads_before} before)"
    );
    let rss_after = proc_status(pid, "VmRSS");
    eprintln!(
        "hosthogd VmRSS: {rss_before} kB before, {rss_peak} kB peak, {rss_after} kB after; \
         threads {threads_before} before, {threads_peak} peak; flood: {summary}"
    );
    assert!(
        rss_peak < rss_before + 32 * 1024,
        "RSS grew from {rss_before} kB to {rss_peak} kB"
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS stayed at {rss_after} kB (from {rss_before} kB)"
    );
    d.run_as("bob", &["whoami"]).ok();
}

#[test]
fn a_request_trickled_byte_by_byte_is_cut_at_the_deadline() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let mut stream = UnixStream::connect(&d.socket).unwrap();
    stream.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(15) {
        let _ = stream.write_all(b" ");
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.contains("no complete request within 5 seconds"),
        "{answer}"
    );
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(9),
        "cut after {took:?}"
    );
}

fn max_open_config(n: usize) -> String {
    DEFAULT_CONFIG.replace("max_open_per_user = 0", &format!("max_open_per_user = {n}"))
}

#[test]
fn the_per_user_limit_of_open_reservations_holds() {
    let d = Daemon::start(&max_open_config(2), 0);
    d.run_as("alice", &["reserve", "--shared", "--for", "1h", "one"])
        .ok();
    d.run_as(
        "alice",
        &[
            "reserve", "--shared", "--start", "in 2h", "--for", "1h", "two",
        ],
    )
    .ok();
    let before = d.table_bytes();
    d.run_as(
        "alice",
        &[
            "reserve", "--shared", "--start", "in 4h", "--for", "1h", "three",
        ],
    )
    .refused("alice already has 2 open reservations; at most 2 are allowed");
    assert_eq!(d.table_bytes(), before);
    // Raw frames cannot get around it either.
    let start = wall_now() + 6 * 3600;
    let frame = format!(
        r#"{{"version":1,"op":{{"reserve":{{"mode":"shared","start":{start},"end":{},"with":[],"comment":"raw"}}}}}}"#,
        start + 3600
    );
    let answer = common::raw_as(&d, "alice", &frame);
    assert!(answer.contains("at most 2 are allowed"), "{answer}");
    assert_eq!(d.table_bytes(), before);
    // The limit is per user: bob still may.
    d.run_as("bob", &["reserve", "--shared", "--for", "1h", "bob's"])
        .ok();
    assert_eq!(d.state().reservations.len(), 3);
}

#[allow(clippy::disallowed_methods)] // tests: the clock of the test itself
fn wall_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A root-owned file outside the state directory that an attacker would
/// like the daemon to write through.
fn victim(dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
    let path = dir.join(name);
    let bytes = format!("precious {name}\n").into_bytes();
    fs::write(&path, &bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    (path, bytes)
}

fn assert_untouched(path: &Path, bytes: &[u8]) {
    assert_eq!(fs::read(path).unwrap(), bytes, "{} changed", path.display());
    let mode = fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "{} mode changed", path.display());
}

#[test]
fn symlinks_and_hard_links_in_the_state_directory_are_not_followed() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    d.run_as("alice", &["reserve", "--exclusive", "--for", "1h", "first"])
        .ok();
    let outside = d.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let table = d.table_path();
    let lock = d.state.join("table.lock");
    let audit = d.state.join("audit.log");
    let saved = d.dir.path().join("saved-table");
    fs::copy(&table, &saved).unwrap();

    // The table is a symlink: refused, nothing written through it.
    let (target, bytes) = victim(&outside, "table-target");
    fs::remove_file(&table).unwrap();
    symlink(&target, &table).unwrap();
    d.run_as(
        "bob",
        &[
            "reserve", "--shared", "--start", "in 3h", "--for", "1h", "x",
        ],
    )
    .refused("the table is a symbolic link; refusing it");
    d.run_as("bob", &["list"])
        .refused("the table is a symbolic link; refusing it");
    assert_untouched(&target, &bytes);
    assert!(
        fs::symlink_metadata(&table)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    fs::remove_file(&table).unwrap();
    fs::copy(&saved, &table).unwrap();

    // The lock file is a symlink: refused (O_NOFOLLOW), nothing created or
    // written through it.
    let (target, bytes) = victim(&outside, "lock-target");
    fs::remove_file(&lock).unwrap();
    symlink(&target, &lock).unwrap();
    let dangling = outside.join("lock-created");
    d.run_as(
        "bob",
        &[
            "reserve", "--shared", "--start", "in 3h", "--for", "1h", "x",
        ],
    )
    .refused("cannot open the lock file");
    assert_untouched(&target, &bytes);
    fs::remove_file(&lock).unwrap();
    symlink(&dangling, &lock).unwrap();
    d.run_as(
        "bob",
        &[
            "reserve", "--shared", "--start", "in 3h", "--for", "1h", "x",
        ],
    )
    .refused("cannot open the lock file");
    assert!(!dangling.exists(), "the lock was created through a symlink");
    fs::remove_file(&lock).unwrap();

    // The audit log is a symlink or a hard link: nothing is appended
    // through it, the caller is told in one line, and since the log is
    // opened before the table is written, the table is not changed either.
    for how in ["symlink", "hard link"] {
        let (target, bytes) = victim(&outside, &format!("audit-target-{}", how.len()));
        let _ = fs::remove_file(&audit);
        if how == "symlink" {
            symlink(&target, &audit).unwrap();
        } else {
            fs::hard_link(&target, &audit).unwrap();
        }
        let before = d.table_bytes();
        let run = d.run_as(
            "bob",
            &[
                "reserve", "--shared", "--start", "in 5h", "--for", "1h", how,
            ],
        );
        run.refused("nothing was changed: the audit log");
        assert_untouched(&target, &bytes);
        assert_eq!(
            d.table_bytes(),
            before,
            "the table changed without an audit line"
        );
        assert!(d.state().reservations.iter().all(|r| r.comment != how));
        fs::remove_file(&audit).unwrap();
    }

    // Leftover temp names planted as a symlink and a hard link: the writer
    // never opens them (its own temp name is new, O_EXCL) and clears the
    // names, not what they point to.
    let (target, bytes) = victim(&outside, "temp-target");
    let (linked, linked_bytes) = victim(&outside, "temp-linked");
    symlink(&target, d.state.join(".table.new.AAAAAA")).unwrap();
    fs::hard_link(&linked, d.state.join(".table.new.BBBBBB")).unwrap();
    d.run_as(
        "bob",
        &[
            "reserve", "--shared", "--start", "in 7h", "--for", "1h", "tmp",
        ],
    )
    .ok();
    assert_untouched(&target, &bytes);
    assert_untouched(&linked, &linked_bytes);
    assert!(!d.state.join(".table.new.AAAAAA").exists());
    assert!(!d.state.join(".table.new.BBBBBB").exists());

    // The table hard-linked to another root-owned file: the writer replaces
    // the name (rename), the other file keeps its bytes.
    let other = outside.join("table-hardlink");
    fs::hard_link(&table, &other).unwrap();
    let other_bytes = fs::read(&other).unwrap();
    d.run_as(
        "carol",
        &[
            "reserve", "--shared", "--start", "in 9h", "--for", "1h", "hl",
        ],
    )
    .ok();
    assert_eq!(fs::read(&other).unwrap(), other_bytes);
    assert_ne!(fs::read(&table).unwrap(), other_bytes);
    d.state();
}

#[test]
fn a_table_or_state_directory_with_wrong_owner_or_mode_is_refused() {
    let mut d = Daemon::start(DEFAULT_CONFIG, 0);
    d.run_as("alice", &["reserve", "--exclusive", "--for", "1h", "first"])
        .ok();
    let table = d.table_path();
    let reserve = [
        "reserve", "--shared", "--start", "in 3h", "--for", "1h", "x",
    ];

    // (A restart empties the daemon's cache of the state it last wrote;
    // with it, a write replaces a foreign table wholesale with a root-owned
    // one built from that state, never from the foreign file.)
    std::os::unix::fs::chown(&table, Some(2002), Some(2002)).unwrap();
    let before = d.table_bytes();
    d.restart();
    d.run_as("bob", &["list"])
        .refused("the table is owned by uid 2002, not uid 0; refusing it");
    d.run_as("bob", &reserve)
        .refused("the table is owned by uid 2002, not uid 0; refusing it");
    assert_eq!(d.table_bytes(), before);
    std::os::unix::fs::chown(&table, Some(0), Some(0)).unwrap();

    fs::set_permissions(&table, fs::Permissions::from_mode(0o666)).unwrap();
    d.restart();
    d.run_as("bob", &["list"])
        .refused("writable by group or others; refusing it");
    d.run_as("bob", &reserve)
        .refused("writable by group or others; refusing it");
    assert_eq!(d.table_bytes(), before);
    fs::set_permissions(&table, fs::Permissions::from_mode(0o644)).unwrap();

    fs::set_permissions(&d.state, fs::Permissions::from_mode(0o777)).unwrap();
    d.run_as("bob", &reserve)
        .refused("the state directory has mode 0777: writable by group or others");
    d.run_as("bob", &["list"]).refused("table's directory");
    assert_eq!(d.table_bytes(), before);
    fs::set_permissions(&d.state, fs::Permissions::from_mode(0o755)).unwrap();

    std::os::unix::fs::chown(&d.state, Some(2002), None).unwrap();
    d.run_as("bob", &reserve)
        .refused("the state directory is owned by uid 2002, not uid 0");
    assert_eq!(d.table_bytes(), before);
    std::os::unix::fs::chown(&d.state, Some(0), None).unwrap();

    d.run_as("bob", &reserve).ok();
}

/// A hosthogd run by this test directly: inside its own mount namespace
/// (a private /run, plus whatever `setup` mounts), killed by pid on drop.
struct Custom {
    child: Option<Child>,
}

impl Custom {
    /// Runs `setup` (sh, with the arguments after it as $1..), then
    /// hosthogd with `args`, in a new mount namespace.
    fn spawn(setup: &str, setup_args: &[&Path], args: &[&std::ffi::OsStr]) -> Custom {
        let script = format!(
            "set -e; mount -t tmpfs -o mode=0755 hosthog-test-run /run; {setup}; \
             shift {}; exec \"$@\"",
            setup_args.len()
        );
        let child = Command::new(UNSHARE)
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(script)
            .arg("sh")
            .args(setup_args)
            .arg(common::hosthogd_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Custom { child: Some(child) }
    }

    /// Waits (at most 10 s) for hosthogd to exit; its status and stderr.
    fn exit(mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status.code(), err);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("hosthogd did not exit (it should have refused to start)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn wait_listening(&mut self, socket: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(socket).is_err() {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                panic!("hosthogd exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "hosthogd did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Custom {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_socket_path_planted_by_a_user_is_refused() {
    common::require_root();
    let dir = tempfile::Builder::new()
        .prefix("hosthogd-sock.")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    let (target, bytes) = victim(dir.path(), "victim");
    let start = |socket: &Path| {
        let args = [
            "--socket".as_ref(),
            socket.as_os_str(),
            "--state-dir".as_ref(),
            state.as_os_str(),
            "--config".as_ref(),
            "/dev/null".as_ref(),
        ];
        Custom::spawn("true", &[], &args).exit()
    };
    let bob = |path: &Path| std::os::unix::fs::lchown(path, Some(2002), Some(2002)).unwrap();

    // A world-writable sticky directory, like /tmp: bob cannot remove
    // root's entries, but may have planted his own first.
    let sticky = dir.path().join("sticky");
    fs::create_dir(&sticky).unwrap();
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = sticky.join("hosthogd.sock");

    symlink(&target, &socket).unwrap();
    bob(&socket);
    let (code, err) = start(&socket);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("exists and is not a socket; refusing to replace it"),
        "{err}"
    );
    assert_untouched(&target, &bytes);
    fs::remove_file(&socket).unwrap();

    fs::write(&socket, b"bob's file").unwrap();
    bob(&socket);
    let (code, err) = start(&socket);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(fs::read(&socket).unwrap(), b"bob's file");
    fs::remove_file(&socket).unwrap();

    // bob's own listening socket: the daemon will not take over a name
    // someone else answers on (clients could not tell them apart).
    let squatter = UnixListener::bind(&socket).unwrap();
    bob(&socket);
    let (code, err) = start(&socket);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("another hosthogd is already listening"),
        "{err}"
    );
    drop(squatter);
    fs::remove_file(&socket).unwrap();

    // A directory others can write without the sticky bit, or one bob
    // owns: they could swap the name after the checks; refused.
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let (code, err) = start(&open.join("hosthogd.sock"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("has mode 0777: others could replace the socket"),
        "{err}"
    );
    let owned = dir.path().join("bobs");
    fs::create_dir(&owned).unwrap();
    bob(&owned);
    let (code, err) = start(&owned.join("hosthogd.sock"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is owned by uid 2002"), "{err}");
    assert!(fs::read_dir(&owned).unwrap().next().is_none());

    // In the sticky directory, a fresh socket gets mode 0666 (from the
    // umask at bind, never a chmod that could follow a swapped name).
    let mut daemon = Custom::spawn(
        "true",
        &[],
        &[
            "--socket".as_ref(),
            socket.as_os_str(),
            "--state-dir".as_ref(),
            state.as_os_str(),
            "--config".as_ref(),
            "/dev/null".as_ref(),
        ],
    );
    daemon.wait_listening(&socket);
    let mode = fs::symlink_metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    drop(daemon);
    assert_untouched(&target, &bytes);
}

#[test]
fn a_full_disk_leaves_the_old_table_and_a_clear_error() {
    // The files of a normal test daemon; then the daemon is restarted on a
    // 512 KiB tmpfs mounted over its state directory.
    let mut d = Daemon::start(DEFAULT_CONFIG, 0);
    d.kill();
    let mut daemon = Custom::spawn(
        "mount -t tmpfs -o size=512k,mode=0755 hosthog-full \"$1\"; \
         mount --bind \"$2\" /etc/passwd; mount --bind \"$3\" /etc/group",
        &[
            &d.state,
            &d.dir.path().join("passwd"),
            &d.dir.path().join("group"),
        ],
        &[
            "--socket".as_ref(),
            d.socket.as_os_str(),
            "--state-dir".as_ref(),
            d.state.as_os_str(),
            "--config".as_ref(),
            d.config.as_os_str(),
        ],
    );
    daemon.wait_listening(&d.socket);
    // The namespace's view of the state directory.
    let state = PathBuf::from(format!("/proc/{}/root", daemon.pid()))
        .join(d.state.strip_prefix("/").unwrap());
    d.run_as(
        "alice",
        &[
            "reserve",
            "--exclusive",
            "--for",
            "1h",
            "before the disk filled",
        ],
    )
    .ok();
    let table = state.join("table");
    let before = fs::read(&table).unwrap();
    let audit_before = fs::read(state.join("audit.log")).unwrap();

    // Fill the file system.
    let filler_path = state.join("filler");
    let mut filler = fs::File::create(&filler_path).unwrap();
    let chunk = vec![0u8; 4096];
    let err = loop {
        if let Err(e) = filler.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(filler);

    let run = d.run_as(
        "bob",
        &[
            "reserve",
            "--shared",
            "--start",
            "in 2h",
            "--for",
            "1h",
            "x".repeat(400).as_str(),
        ],
    );
    run.refused("No space left on device");
    assert!(
        run.stderr.contains("cannot write the new table")
            || run.stderr.contains("cannot create a temporary table"),
        "{run:?}"
    );
    assert_eq!(fs::read(&table).unwrap(), before, "the old table changed");
    libhosthog::Table::parse(&before)
        .unwrap()
        .to_state()
        .validate()
        .unwrap();
    assert_eq!(fs::read(state.join("audit.log")).unwrap(), audit_before);
    let leftovers: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".table.new."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Reads keep working on a full disk.
    d.run_as("bob", &["list"]).ok();

    // Space again: writes work again, without a restart.
    fs::remove_file(&filler_path).unwrap();
    d.run_as(
        "bob",
        &[
            "reserve", "--shared", "--start", "in 2h", "--for", "1h", "after",
        ],
    )
    .ok();
    assert_eq!(
        libhosthog::Table::parse(&fs::read(&table).unwrap())
            .unwrap()
            .to_state()
            .reservations
            .len(),
        2
    );
    drop(daemon);
}

#[test]
fn a_full_audit_log_file_system_refuses_the_change_and_tears_no_line() {
    // The state directory on a roomy tmpfs, but audit.log bind-mounted from
    // a 64 KiB one: the audit log fills while the table still has room,
    // which is the order in which a flood fills a disk.
    let mut d = Daemon::start(DEFAULT_CONFIG, 0);
    d.kill();
    let audit_fs = d.dir.path().join("auditfs");
    fs::create_dir(&audit_fs).unwrap();
    let mut daemon = Custom::spawn(
        "mount -t tmpfs -o size=4m,mode=0755 hosthog-state \"$1\"; \
         mount -t tmpfs -o size=64k,mode=0755 hosthog-audit \"$4\"; \
         : > \"$4/audit.log\"; chmod 0640 \"$4/audit.log\"; : > \"$1/audit.log\"; \
         mount --bind \"$4/audit.log\" \"$1/audit.log\"; \
         mount --bind \"$2\" /etc/passwd; mount --bind \"$3\" /etc/group",
        &[
            &d.state,
            &d.dir.path().join("passwd"),
            &d.dir.path().join("group"),
            &audit_fs,
        ],
        &[
            "--socket".as_ref(),
            d.socket.as_os_str(),
            "--state-dir".as_ref(),
            d.state.as_os_str(),
            "--config".as_ref(),
            d.config.as_os_str(),
        ],
    );
    daemon.wait_listening(&d.socket);
    let state = PathBuf::from(format!("/proc/{}/root", daemon.pid()))
        .join(d.state.strip_prefix("/").unwrap());
    let reserved = d.run_as(
        "root",
        &[
            "--json", "reserve", "--shared", "--start", "in 2h", "--for", "1h", "first",
        ],
    );
    reserved.ok();
    let id = reserved.json()["id"].as_str().unwrap().to_string();

    // root (no write rate limit) changes the comment until the audit
    // log's file system is full, and a few times more.
    let mut acked = vec!["first".to_string()];
    let mut refusals = Vec::new();
    for n in 0..400 {
        let comment = format!("{n:04} {}", "x".repeat(450));
        let run = d.run_as("root", &["edit", &id, "--comment", &comment]);
        if run.code == Some(0) {
            acked.push(comment);
        } else {
            refusals.push(run);
            if refusals.len() == 5 {
                break;
            }
        }
    }
    assert_eq!(
        refusals.len(),
        5,
        "the audit log's file system never filled"
    );
    assert!(
        acked.len() > 20,
        "only {} changes fitted: {refusals:?}",
        acked.len()
    );
    for run in &refusals {
        run.refused("nothing was changed: the audit log");
        assert!(run.stderr.contains("No space left on device"), "{run:?}");
    }

    // Whole lines only, one for each acknowledged change and none for a
    // refused one; the table holds the last acknowledged change.
    let audit = fs::read_to_string(state.join("audit.log")).unwrap();
    assert!(audit.ends_with('\n'), "the audit log ends in a torn line");
    let comments: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|e| e["after"]["comment"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        comments, acked,
        "audit lines and acknowledged changes differ"
    );
    let file = libhosthog::TableFile::open(&state.join("table"), 0).unwrap();
    let now = file.table().unwrap().to_state();
    assert_eq!(
        &now.reservations[0].comment,
        acked.last().unwrap(),
        "the table holds a change that was refused"
    );
    drop(daemon);
}

#[test]
fn one_user_cannot_hold_the_host_exclusively_for_months() {
    // The default max_exclusive (7 days) with 2-day slots: three
    // back-to-back slots (6 days) are fine, the fourth is refused, naming
    // the limit and what alice holds; an admin may force it.
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let base = wall_now() + 3600;
    let slot = |n: i64| {
        (
            jiff::Timestamp::from_second(base + n * 2 * 86_400)
                .unwrap()
                .to_string(),
            jiff::Timestamp::from_second(base + (n + 1) * 2 * 86_400)
                .unwrap()
                .to_string(),
        )
    };
    for n in 0..3 {
        let (start, until) = slot(n);
        d.run_as(
            "alice",
            &["reserve", "--start", &start, "--until", &until, "slot"],
        )
        .ok();
    }
    let (start, until) = slot(3);
    let before = d.table_bytes();
    d.run_as(
        "alice",
        &["reserve", "--start", &start, "--until", &until, "slot"],
    )
    .refused(
        "alice would hold the host exclusively for 8d from now on (6d already reserved, \
         2d more asked); at most 7d of exclusive time per user is allowed (max_exclusive)",
    );
    assert_eq!(
        d.table_bytes(),
        before,
        "a refused reservation changed the table"
    );
    // Shared time is not limited by it.
    d.run_as(
        "alice",
        &[
            "reserve", "--shared", "--start", &start, "--until", &until, "slot",
        ],
    )
    .ok();
    // dave (admin) may force it for her; the audit line says what was
    // overridden.
    let (start, until) = slot(4);
    d.run_as(
        "dave",
        &[
            "reserve", "--owner", "alice", "--force", "--start", &start, "--until", &until,
            "forced",
        ],
    )
    .ok();
    let last = d.audit_lines().pop().unwrap();
    assert!(
        last["limits_overridden"][0]
            .as_str()
            .unwrap()
            .contains("max_exclusive"),
        "{last}"
    );
}

#[test]
fn a_list_longer_than_a_frame_is_paged_and_works_for_everyone() {
    // 130 reservations with 500-byte comments are about 90 KB of JSON,
    // more than a 64 KiB frame: before, `list` failed for everyone.
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let comment = format!("\"quoted\" {}", "c".repeat(480));
    for i in 0..130 {
        d.run_as(
            "root",
            &[
                "reserve",
                "--shared",
                "--start",
                &format!("in {}h", i + 1),
                "--for",
                "30m",
                &comment,
            ],
        )
        .ok();
    }
    // One raw request: one page, within a frame, with where to go on.
    let answer = common::raw_as(&d, "bob", r#"{"version":1,"op":{"list":{"all":false}}}"#);
    assert!(answer.len() <= 64 * 1024, "{} bytes", answer.len());
    let first: serde_json::Value = serde_json::from_str(answer.trim()).unwrap();
    let page = first["ok"]["reservations"].as_array().unwrap().len();
    assert!((1..130).contains(&page), "first page: {page}");
    assert!(first["next"].is_string(), "{first}");
    // The command fetches every page: all 130, in order, once each.
    for user in ["alice", "bob"] {
        let run = d.run_as(user, &["--json", "list"]);
        run.ok();
        let list = run.json();
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 130, "{user}");
        let starts: Vec<i64> = list.iter().map(|r| r["start"].as_i64().unwrap()).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
        let text = d.run_as(user, &["list"]);
        text.ok();
        assert!(text.stdout.lines().count() >= 130, "{}", text.stdout);
    }
}

const CLIENT_ROLE_ENV: &str = "HOSTHOG_TEST_CLIENT_ROLE";

/// Not a test of its own: the client `Hostile::start` re-executes under
/// setpriv. Role "idle": keeps 16 connections open without sending a
/// byte, reopening any the daemon closes within 20 ms. Role "who": asks
/// `who` in a loop on 16 connections. Prints READY, then DONE.
#[test]
#[ignore = "a helper the test above re-executes (with --ignored); it fails when run by hand without its environment"]
fn hostile_client() {
    let (Ok(socket), Ok(secs), Ok(role)) = (
        std::env::var(FLOOD_SOCKET_ENV),
        std::env::var(FLOOD_SECS_ENV),
        std::env::var(CLIENT_ROLE_ENV),
    ) else {
        panic!(
            "hostile_client is run by Hostile::start, which sets {FLOOD_SOCKET_ENV}, \
             {FLOOD_SECS_ENV} and {CLIENT_ROLE_ENV}"
        );
    };
    let until = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let socket = PathBuf::from(&socket);
            let role = role.clone();
            std::thread::spawn(move || {
                let mut answers = 0usize;
                while Instant::now() < until {
                    let Ok(mut s) = UnixStream::connect(&socket) else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                    let mut reader = BufReader::new(s.try_clone().unwrap());
                    loop {
                        if Instant::now() >= until {
                            break;
                        }
                        if role == "who" {
                            if s.write_all(b"{\"version\":1,\"op\":\"who\"}\n").is_err() {
                                break;
                            }
                            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                            let mut line = String::new();
                            match reader.read_line(&mut line) {
                                Ok(n) if n > 0 => answers += 1,
                                _ => break,
                            }
                        } else {
                            // Idle: only notice being closed.
                            let mut buf = [0u8; 256];
                            match reader.read(&mut buf) {
                                Ok(_) => break,
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                    }
                }
                answers
            })
        })
        .collect();
    println!("READY");
    std::io::stdout().flush().unwrap();
    let answers: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    println!("DONE answers={answers}");
}

/// A `hostile_client` running as `user`.
struct Hostile(Flood);

impl Hostile {
    fn start(d: &Daemon, user: &str, role: &str, secs: u64) -> Hostile {
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
                "hostile_client",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(FLOOD_SOCKET_ENV, &d.socket)
            .env(FLOOD_SECS_ENV, secs.to_string())
            .env(CLIENT_ROLE_ENV, role)
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
        Hostile(Flood { child, stdout })
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[test]
fn a_who_flood_costs_the_daemon_one_scan_a_second() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let pid = daemon_pid(&d);
    let secs = 6;
    let before = cpu_seconds(pid);
    let started = Instant::now();
    let flood = Hostile::start(&d, "bob", "who", secs);
    // Others are answered meanwhile.
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(secs - 1) {
        let t = Instant::now();
        d.run_as("alice", &["who"]).ok();
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    let summary = flood.0.finish();
    let cpu = cpu_seconds(pid) - before;
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "who flood on 16 connections: {summary}; hosthogd used {cpu:.2} s of CPU in {wall:.1} s \
         ({:.0}% of one CPU); alice's slowest who {slowest:?}",
        100.0 * cpu / wall
    );
    assert!(
        cpu / wall < 0.25,
        "hosthogd used {:.0}% of a CPU while bob flooded who",
        100.0 * cpu / wall
    );
    assert!(
        slowest < Duration::from_secs(1),
        "alice's who took {slowest:?}"
    );
}

#[test]
fn colluding_users_holding_idle_connections_cannot_lock_others_out() {
    // u01..u04 hold 16 idle connections each, all 64 slots, and reopen any
    // that is closed at once.
    let d = Daemon::start(DEFAULT_CONFIG, 4);
    let secs = 8;
    let holders: Vec<Hostile> = ["u01", "u02", "u03", "u04"]
        .iter()
        .map(|u| Hostile::start(&d, u, "idle", secs))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        for user in ["alice", "bob"] {
            let t = Instant::now();
            d.run_as(user, &["whoami"]).ok();
            slowest = slowest.max(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("with 64 idle connections held by 4 users: slowest whoami {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "a whoami took {slowest:?} while idle connections held every slot"
    );
    drop(holders);
}
