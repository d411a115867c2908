//! Issue 12, acceptance 1 and 2: everyone on the host is seen and told in
//! time, however they are on it. In a host box (tests/src/daemon/host.rs:
//! a mount namespace with test users, real processes under their uids):
//! - bob is in a real `su - bob` inside root's real tmux server (his
//!   terminal is root's pane; utmp knows nothing of him);
//! - carol runs only a background loop, in a session of its own, with no
//!   terminal;
//! - frank (the issue's dave: the box's dave is an admin, whom nothing
//!   locks out) is logged in by ssh: a real sshd on 127.0.0.1 in the box
//!   (PAM with pam_hosthog; see tests/src/daemon/host.rs), a password typed
//!   by sshpass, `ssh -tt` so his command runs on a pty sshd allocated. sshd
//!   writes his utmp record itself; on a host without /run/utmp it writes
//!   none, and he is seen by his session's `sshd: frank@pts/N` process.
//!
//! alice books the host exclusively. Each of them gets the creation, lead,
//! start and end messages in their place (bob in his pane, frank on his ssh
//! terminal — what his ssh client prints —, carol in her inbox), `hosthog
//! who` lists all three with their kind, and with clear_host on each is
//! warned before their processes end. Needs root, su, tmux, script
//! (bsdutils), sshd (openssh-server), ssh (openssh-client) and sshpass.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::daemon as common;
use hosthog_tests::daemon::{now, stamp};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::host::{HostBox, Pty, SshLogin, TMUX, alive};
use hosthog_tests::Sshd;

const SU: &str = "/usr/bin/su";
const SETSID: &str = "/usr/bin/setsid";
const FRANK_PASSWORD: &str = "frank-pw";

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// root's tmux server on a socket of the test, killed by pid on drop.
struct RootTmux {
    socket: PathBuf,
    pid: i32,
}

impl Drop for RootTmux {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

impl RootTmux {
    fn cmd(&self, h: &HostBox, args: &[&str]) -> String {
        let out = h
            .in_namespace()
            .arg(TMUX)
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What root's pane shows, history included, wrapped lines joined.
    fn pane(&self, h: &HostBox) -> String {
        self.cmd(h, &["capture-pane", "-p", "-J", "-S", "-500", "-t", "r"])
    }
}

/// Everyone of the scenario.
struct People {
    root_tmux: RootTmux,
    bob_shell: i32,
    carol_loop: i32,
    alice: Pty,
}

/// frank, logged in through the box's sshd (dropped first: the client,
/// then sshd, then the box).
struct Frank<'h> {
    login: SshLogin,
    _sshd: Sshd<'h>,
}

/// frank logs in by ssh and runs a long command on his terminal.
fn ssh_in(h: &HostBox, utmp: bool) -> Frank<'_> {
    let sshd = h.start_sshd();
    let login = h.ssh_login(&sshd, "frank", FRANK_PASSWORD, "exec sleep 600");
    // sshd wrote (or, without a utmp file, did not write) his record.
    assert_eq!(h.utmp.exists(), utmp, "sshd and {}", h.utmp.display());
    Frank { login, _sshd: sshd }
}

/// pids of processes of `uid` whose parent is a `su`.
fn su_children(uid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<i64>().ok())
        };
        if field("Uid:") == Some(uid as i64)
            && let Some(ppid) = field("PPid:")
            && std::fs::read_to_string(format!("/proc/{ppid}/comm")).is_ok_and(|c| c.trim() == "su")
        {
            out.push(pid);
        }
    }
    out
}

fn gather(h: &mut HostBox, utmp: bool) -> People {
    assert!(
        Path::new(SU).exists(),
        "this test needs {SU} (Debian package util-linux)"
    );
    assert!(
        Path::new(SETSID).exists(),
        "this test needs {SETSID} (Debian package util-linux)"
    );
    h.set_password("frank", FRANK_PASSWORD);
    if !utmp {
        std::fs::remove_file(&h.utmp).unwrap();
    }
    // bob: `su - bob` in root's tmux (root's pane is his terminal).
    let socket = h.dir.path().join("root-tmux.sock");
    let out = h
        .in_namespace()
        .arg(TMUX)
        .arg("-S")
        .arg(&socket)
        .args([
            "new-session",
            "-d",
            "-s",
            "r",
            "-x",
            "250",
            "-y",
            "50",
            &format!("{SU} - bob"),
            ";",
            "set-option",
            "-t",
            "r",
            "remain-on-exit",
            "on",
        ])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "root's tmux: {out:?}");
    let mut root_tmux = RootTmux { socket, pid: 0 };
    root_tmux.pid = root_tmux
        .cmd(h, &["display-message", "-p", "#{pid}"])
        .trim()
        .parse()
        .unwrap();
    let bob_uid = h.user("bob").uid;
    h.wait_for("bob's su shell", Duration::from_secs(10), || {
        !su_children(bob_uid).is_empty()
    });
    let bob_shell = su_children(bob_uid)[0];

    // carol: a loop in a session of its own, no terminal.
    let carol_loop = h.spawn(
        "carol",
        SETSID,
        &["/bin/sh", "-c", "while :; do sleep 1; done"],
    );
    // The holder, on a terminal of hers (for the end warning).
    let alice = h.pty("alice", true, "exec sleep 600");
    People {
        root_tmux,
        bob_shell,
        carol_loop,
        alice,
    }
}

/// `hosthog who` lists bob (su), carol (processes only) and frank (an ssh
/// login: by his utmp record, from 127.0.0.1; without utmp, by his
/// session's sshd process), in JSON and in text.
fn who_sees_everyone(h: &HostBox, p: &People, frank: &SshLogin, utmp: bool) {
    let who = h.hosthog("alice", &["--json", "who"]);
    who.ok();
    let json = who.json();
    let sessions = json["sessions"].as_array().unwrap();
    let find = |user: &str| -> Vec<&serde_json::Value> {
        sessions.iter().filter(|s| s["user"] == user).collect()
    };
    let bob = find("bob");
    assert!(
        bob.iter().any(|s| s["kind"] == "login"
            && s["pid"] == p.bob_shell
            && s["detail"] == "su from root in root's tmux"
            && s["tty"].as_str().unwrap().starts_with("pts/")),
        "bob's su session in {json}"
    );
    let frank_uid = h.user("frank").uid;
    // sshd records its monitor (`sshd: frank [priv]`, root's) in utmp;
    // without utmp the session is his side of the connection.
    let (pid, from, detail) = if utmp {
        (frank.monitor, "127.0.0.1", "")
    } else {
        (frank.sshd, "", "sshd")
    };
    assert_eq!(
        find("frank"),
        [&serde_json::json!({
            "user": "frank", "uid": frank_uid, "kind": "login", "pid": pid,
            "tty": frank.line, "from": from, "detail": detail,
        })],
        "frank's ssh login, once, in {json}"
    );
    assert!(find("carol").is_empty(), "carol has no session: {json}");
    let carol = json["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["user"] == "carol")
        .unwrap_or_else(|| panic!("carol's processes in {json}"));
    assert!(carol["count"].as_u64().unwrap() >= 2, "{carol}");
    assert_eq!(carol["detached"], carol["count"], "{carol}");
    assert_eq!(carol["ttys"], serde_json::json!([]), "{carol}");

    let text = h.hosthog("alice", &["who"]);
    text.ok();
    let out = &text.stdout;
    eprintln!("hosthog who:\n{out}");
    let block = |user: &str| -> String {
        let mut inside = false;
        let mut b = String::new();
        for line in out.lines() {
            if !line.starts_with(' ') {
                inside = line.starts_with(&format!("{user} (uid "));
            }
            if inside {
                b += line;
                b.push('\n');
            }
        }
        b
    };
    let bob = block("bob");
    assert!(
        bob.contains("  login") && bob.contains("su from root in root's tmux"),
        "{out}"
    );
    let carol = block("carol");
    assert!(
        carol.contains(" without a terminal; clearing the host would end all of them"),
        "{out}"
    );
    assert!(!carol.contains("  login"), "{out}");
    let frank_block = block("frank");
    let rows: Vec<Vec<&str>> = frank_block
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let pid = pid.to_string();
    let mut session = vec!["login", pid.as_str(), frank.line.as_str()];
    session.extend(if utmp {
        ["from", "127.0.0.1"]
    } else {
        ["sshd", ""]
    });
    session.retain(|w| !w.is_empty());
    assert_eq!(rows[1], ["HOW", "PID", "WHERE", "DETAIL"], "{out}");
    assert_eq!(rows[2], session, "{out}");
    assert_eq!(
        frank_block.lines().nth(3),
        Some(
            format!(
                "  2 processes (sleep, sshd), on {}; 1 without a terminal; \
                 clearing the host would end all of them",
                frank.line
            )
            .as_str()
        ),
        "{out}"
    );
    assert_eq!(frank_block.lines().count(), 4, "{out}");
}

fn scenario(utmp: bool) {
    let mut h = HostBox::start(
        "notify_lead = [\"4s\"]\nnotify_end_lead = [\"3s\"]\n",
        &["--tick", "1"],
    );
    let p = gather(&mut h, utmp);
    let frank = ssh_in(&h, utmp);
    who_sees_everyone(&h, &p, &frank.login, utmp);

    let start = now() + 8;
    let reserved = h.hosthog(
        "alice",
        &[
            "--json",
            "reserve",
            "--exclusive",
            "--start",
            &stamp(start),
            "--for",
            "6s",
            "paper",
        ],
    );
    reserved.ok();
    let id = reserved.json()["id"].as_str().unwrap()[..8].to_string();
    let inbox = h.run.join("hosthog/inbox/carol");
    h.wait_for("the end to reach everyone", Duration::from_secs(30), || {
        p.root_tmux.pane(&h).contains("has ended")
            && frank.login.output().contains("has ended")
            && std::fs::read_to_string(&inbox).is_ok_and(|t| t.contains("has ended"))
    });
    std::thread::sleep(Duration::from_secs(1));

    let places = [
        ("bob's pane", p.root_tmux.pane(&h)),
        ("frank's ssh terminal", frank.login.output()),
        (
            "carol's inbox",
            std::fs::read_to_string(&inbox).unwrap_or_default(),
        ),
    ];
    for (place, text) in &places {
        eprintln!("{place}:\n{text}");
        for phrase in [
            "was made and you are not on it: new logins by you will be refused from",
            "starts in 4 s and you are not on it",
            "has started and you are not on it",
            "has ended; you may log in again.",
        ] {
            assert_eq!(count(text, phrase), 1, "{phrase:?} in {place}:\n{text}");
        }
        assert_eq!(
            count(text, &format!("alice's exclusive reservation {id}")),
            4,
            "{place}:\n{text}"
        );
    }
    // carol's inbox is hers to read, nobody else's.
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&inbox).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (0, h.user("carol").uid, 0o640)
        );
    }
    // The holder was warned before the end, with the extend command.
    let alice = p.alice.output();
    assert_eq!(
        count(
            &alice,
            &format!("(in 3 s); to keep it longer: hosthog extend {id} --for 1h.")
        ),
        1,
        "{alice}"
    );
    let events: Vec<String> = h
        .events()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["created", "lead", "start", "end_lead", "end"]);
    assert!(alive(p.carol_loop) && alive(p.bob_shell));
    assert!(alive(frank.login.shell) && alive(frank.login.sshd));
}

fn clearing(utmp: bool) {
    let mut h = HostBox::start(
        "notify_lead = [\"4s\"]\nclear_host = true\nclear_grace = \"2s\"\n",
        &["--tick", "1"],
    );
    let p = gather(&mut h, utmp);
    let mut frank = ssh_in(&h, utmp);
    let start = now() + 7;
    h.hosthog(
        "alice",
        &[
            "reserve",
            "--exclusive",
            "--start",
            &stamp(start),
            "--for",
            "1m",
        ],
    )
    .ok();
    h.wait_for(
        "everyone's processes to end",
        Duration::from_secs(30),
        || {
            let log = h.daemon_output();
            !alive(p.bob_shell)
                && !alive(p.carol_loop)
                && !alive(frank.login.shell)
                && !alive(frank.login.sshd)
                && ["bob", "carol", "frank"]
                    .iter()
                    .all(|u| log.contains(&format!("hosthogd: ended the sessions of {u} ")))
        },
    );
    let log = h.daemon_output();
    for user in ["bob", "carol", "frank"] {
        let warned = log
            .find(&format!("hosthogd: told {user} about the lead"))
            .unwrap_or_else(|| panic!("{user} was not warned:\n{log}"));
        let ended = log
            .find(&format!("hosthogd: ended the sessions of {user} "))
            .unwrap_or_else(|| panic!("{user}'s sessions were not ended:\n{log}"));
        assert!(warned < ended, "{user} warned after the end:\n{log}");
    }
    let pane = p.root_tmux.pane(&h);
    assert!(
        pane.contains("Your sessions and processes on this host will be ended at"),
        "{pane}"
    );
    // frank's ssh terminal showed every warning, in order, before sshd
    // closed his connection (his side of it ended).
    let status = frank.login.client.wait_timeout(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(255),
        "frank's ssh client"
    );
    assert_eq!(
        std::fs::read_to_string(&frank.login.stderr).unwrap(),
        "Connection to 127.0.0.1 closed by remote host.\r\nConnection to 127.0.0.1 closed.\r\n"
    );
    let text = frank.login.output();
    let mut at = 0;
    for phrase in [
        "was made and you are not on it: new logins by you will be refused from",
        "starts in 4 s and you are not on it",
        "has started and you are not on it",
        "is in force and you are not on it: your sessions and processes on this host \
         are being ended now.",
    ] {
        assert_eq!(
            count(&text, phrase),
            1,
            "{phrase:?} on frank's terminal:\n{text}"
        );
        let found = text.find(phrase).unwrap();
        assert!(
            found > at,
            "{phrase:?} out of order on frank's terminal:\n{text}"
        );
        at = found;
    }
    assert_eq!(
        count(
            &text,
            "Your sessions and processes on this host will be ended at"
        ),
        3,
        "{text}"
    );
    let inbox = std::fs::read_to_string(h.run.join("hosthog/inbox/carol")).unwrap();
    assert!(
        inbox.contains("Your sessions and processes on this host will be ended at"),
        "{inbox}"
    );
}

#[test]
fn su_tmux_background_and_login_users_are_seen_and_told_everything() {
    scenario(true);
}

#[test]
fn without_utmp_everyone_is_still_seen_and_told() {
    scenario(false);
}

#[test]
fn with_clearing_everyone_is_warned_before_their_processes_end() {
    clearing(true);
}

#[test]
fn with_clearing_and_no_utmp_everyone_is_warned_first() {
    clearing(false);
}
