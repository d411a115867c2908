//! Everything hosthogd does, done under hosthogd.service's sandbox in a booted Debian 12
//! (tests/src/container.rs): clearing the host through logind and pausing systemd
//! timers, notices on a user's terminal and in their tmux, the presence scan seeing an
//! ssh login, and outgoing TCP to loopback (the fleet sync). `systemd-analyze security`
//! reports the unit's exposure.
//!
//! Needs the debug binaries (`cargo build -p hosthog-cli -p hosthogd`, which
//! `cargo test --workspace` does) and the cached root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read as _;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use hosthog_tests::container::{Container, free_port};
use hosthog_tests::process::{ProcessGuard, kill_with_parent, wait_until};
use hosthog_tests::table::now;

/// bob logged in over ssh with a terminal, running `command`; his terminal's output goes
/// to `log` (a host path). Held by pid; dropping it ends the ssh client.
fn bob_logs_in(c: &Container, port: u16, command: &str, log: &std::path::Path) -> ProcessGuard {
    // A terminal type tmux can draw on (the harness's own environment has TERM=dumb).
    let mut cmd = c.command(&format!(
        "TERM=xterm-256color {}",
        c.ssh_command(port, "bob", true, command)
    ));
    let file = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::piped())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    kill_with_parent(&mut cmd);
    let guard = ProcessGuard::new(cmd.spawn().unwrap(), "ssh bob");
    // logind has the session when PAM opens it, a moment before bob's own processes run.
    let session = wait_until(Duration::from_secs(30), || {
        c.sh("loginctl list-sessions --no-legend | grep -w bob && pgrep -u bob")
            .code
            == Some(0)
    });
    assert!(
        session,
        "bob has no logind session: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    guard
}

fn active_timers(c: &Container) -> Vec<String> {
    let mut timers: Vec<String> = c
        .sh_ok("systemctl list-units --type=timer --state=active --plain --no-legend")
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    timers.sort();
    timers
}

fn hosthogd_journal(c: &Container) -> String {
    c.sh("journalctl --no-pager -b -u hosthogd.service").stdout
}

#[test]
fn in_container_clear_host_ends_bobs_session_through_logind_and_pauses_timers() {
    let c = Container::boot();
    c.install_package();
    c.write(
        "/etc/hosthog/hosthog.toml",
        "clear_host = true\nclear_grace = \"3s\"\npause_timers = true\n",
    );
    c.sh_ok("systemctl restart hosthogd.socket; systemctl stop hosthogd.service");
    let port = free_port();
    c.start_sshd(port);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("bob.log");
    let mut bob = bob_logs_in(&c, port, "echo bob-is-in; sleep 600", &log);
    let timers = active_timers(&c);
    assert!(
        !timers.is_empty(),
        "the root has active timers (apt-daily…)"
    );

    // Starting a few seconds ahead: the slot's start is an event of its own (timers are
    // paused at the start; a reservation made already in force has only "created").
    let json = c.sh_ok(
        "runuser -u alice -- hosthog reserve --exclusive --start 6s --for 1h --json clear it",
    );
    let start: i64 = json
        .split("\"start\": ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let id = json
        .split("\"id\": \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    // Grace 3 s after the start, then logind's terminate-user, then SIGTERM and SIGKILL
    // after 5 s.
    let paused = wait_until(Duration::from_secs(20), || active_timers(&c).is_empty());
    let gone = wait_until(Duration::from_secs(25), || {
        c.sh("pgrep -u bob").code == Some(1)
    });
    let cleared_after = now() - start;
    let journal = hosthogd_journal(&c);
    assert!(
        gone,
        "bob's processes are still there {cleared_after} s after the start:\n{}\n{journal}",
        c.sh("ps -u bob -o pid,stat,cmd").stdout
    );
    eprintln!("bob's processes were gone {cleared_after} s after the slot's start (grace 3 s)");
    assert!(
        cleared_after <= 3 + 10,
        "cleared {cleared_after} s after the start"
    );
    assert!(
        journal.contains("event clear: alice's exclusive reservation"),
        "{journal}"
    );
    let no_session = wait_until(Duration::from_secs(10), || {
        c.sh("loginctl list-sessions --no-legend | grep -w bob")
            .code
            == Some(1)
    });
    assert!(
        no_session,
        "logind still has a session of bob:\n{}",
        c.sh("loginctl list-sessions").stdout
    );
    // The ssh client saw its session end, after the notice on bob's terminal.
    assert!(bob.wait_timeout(Duration::from_secs(10)).is_some());
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(seen.contains("bob-is-in"), "{seen}");
    assert!(
        seen.contains("hosthog") && seen.contains("alice"),
        "no notice on bob's terminal:\n{seen}"
    );
    // Timers are stopped for the slot, remembered, and started again after it.
    assert!(
        paused && active_timers(&c).is_empty(),
        "timers still active during the slot: {:?}\n{journal}",
        active_timers(&c)
    );
    c.sh_ok("test -s /run/hosthog/paused-timers.json");
    c.sh_ok(&format!("runuser -u alice -- hosthog release {}", &id[..8]));
    let resumed = wait_until(Duration::from_secs(20), || active_timers(&c) == timers);
    assert!(
        resumed,
        "timers after the slot: {:?}, before: {timers:?}\n{}",
        active_timers(&c),
        hosthogd_journal(&c)
    );
}

#[test]
fn in_container_notices_presence_and_tcp_work_under_the_sandbox() {
    let c = Container::boot();
    c.install_package();
    let port = free_port();
    c.start_sshd(port);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("bob.log");
    // bob's login runs an attached tmux client: his terminal and his tmux server.
    let _bob = bob_logs_in(
        &c,
        port,
        "tmux new-session -s work 'echo bob-in-tmux; sleep 600'",
        &log,
    );
    let tmux_up = wait_until(Duration::from_secs(20), || {
        c.sh("runuser -u bob -- tmux list-clients | grep -q work")
            .code
            == Some(0)
    });
    assert!(
        tmux_up,
        "bob's tmux client: {}",
        std::fs::read_to_string(&log).unwrap()
    );

    // Presence: the scan sees the ssh login (and the tmux server).
    let mut who = String::new();
    let seen = wait_until(Duration::from_secs(40), || {
        who = c.sh("runuser -u alice -- hosthog who").stdout;
        who.contains("bob")
    });
    assert!(
        seen,
        "hosthog who does not show bob:\n{who}\n{}",
        hosthogd_journal(&c)
    );
    eprintln!("hosthog who:\n{who}");

    // bob's login has a session bus (dbus-user-session); a monitor on it shows hosthogd's
    // notify-send (run as bob) calling the notification service. None runs in the
    // container, so notify-send stops after asking for the server's information.
    let monitor_log = tmp.path().join("dbus-monitor.log");
    let mut monitor = c.command(
        "exec runuser -u bob -- env DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/2002/bus \
         dbus-monitor --session \"interface='org.freedesktop.Notifications'\"",
    );
    let file = std::fs::File::create(&monitor_log).unwrap();
    monitor
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null());
    kill_with_parent(&mut monitor);
    let _monitor = ProcessGuard::new(monitor.spawn().unwrap(), "dbus-monitor");
    let monitoring = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&monitor_log)
            .is_ok_and(|s| s.contains("NameAcquired") || s.contains("NameLost"))
    });
    assert!(
        monitoring,
        "dbus-monitor on bob's session bus: {}",
        std::fs::read_to_string(&monitor_log).unwrap()
    );

    // A notice reaches bob's terminal, his tmux status line and his desktop.
    c.sh_ok("hosthog post kernel update at nine");
    let on_desktop = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&monitor_log).is_ok_and(|s| {
            s.contains("method call") && s.contains("destination=org.freedesktop.Notifications")
        })
    });
    assert!(
        on_desktop,
        "no notification call on bob's session bus:\n{}\n{}",
        std::fs::read_to_string(&monitor_log).unwrap(),
        hosthogd_journal(&c)
    );
    let on_tmux = wait_until(Duration::from_secs(20), || {
        c.sh("runuser -u bob -- tmux show-messages | grep -q 'kernel update at nine'")
            .code
            == Some(0)
    });
    assert!(
        on_tmux,
        "not in bob's tmux messages: {}\n{}",
        c.sh("runuser -u bob -- tmux show-messages").stdout,
        hosthogd_journal(&c)
    );
    let on_terminal = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("kernel update at nine"))
    });
    assert!(
        on_terminal,
        "not on bob's terminal: {}",
        std::fs::read_to_string(&log).unwrap()
    );

    // Outgoing TCP to loopback, as the fleet sync will do: a unit with hosthogd.service's
    // exact sandbox (its [Service] section, ExecStart replaced) connects to a listener
    // of this test (the container shares the host's network).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let tcp_port = listener.local_addr().unwrap().port();
    let unit = std::fs::read_to_string(c.path("/usr/lib/systemd/system/hosthogd.service"))
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                format!("ExecStart=/bin/bash -c 'echo sandboxed >/dev/tcp/127.0.0.1/{tcp_port}'")
            } else if l.starts_with("Restart=") {
                "Type=oneshot".to_owned()
            } else if l.starts_with("Type=") || l.starts_with("Also=") {
                String::new()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    c.write("/etc/systemd/system/hosthog-sandbox-probe.service", unit);
    let probe = c.sh("systemctl daemon-reload && systemctl start hosthog-sandbox-probe.service");
    let mut got = String::new();
    let connected = wait_until(Duration::from_secs(10), || match listener.accept() {
        Ok((mut stream, _)) => {
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream.read_to_string(&mut got).unwrap();
            true
        }
        Err(_) => false,
    });
    assert!(
        connected && got == "sandboxed\n",
        "no TCP connection from hosthogd's sandbox ({got:?}): {probe:?}\n{}",
        c.sh("journalctl --no-pager -b -u hosthog-sandbox-probe.service")
            .stdout
    );
}

#[test]
fn in_container_systemd_analyze_security_exposure() {
    let c = Container::boot();
    c.install_package();
    let score = c.exposure("hosthogd.service");
    // 6.6 MEDIUM before the sandbox was tightened, 3.1 OK after (systemd 252 in the
    // container; `--offline=true` on a unit file rates them 6.8 and 3.3). Anything that loosens
    // it has to say why here and in the unit.
    assert!(score <= 3.1, "exposure {score} is higher than 3.1");
}
