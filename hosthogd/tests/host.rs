//! hosthogd on the host: its timers (start, end, pruning and the MOTD
//! fragment within a second of their instants), notifications to the
//! people concerned (terminals, tmux), `hosthog who`, and clearing the
//! host. Real processes under real test uids, in a mount namespace of their
//! own (see common/host.rs). Needs root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::daemon as common;
use hosthog_tests::daemon::{clock, now, stamp};

use std::time::Duration;

use common::host::{HostBox, NAMES, alive};

/// Sleeps until the wall clock reaches `at` (UTC seconds, fractional).
fn sleep_until(at: f64) {
    let left = at - clock();
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// The reservation ids (8 digits) the MOTD lists, whether each is marked
/// `now`, and the count of those left out.
/// The lines of `hosthog who` about one person: theirs, and the indented
/// ones under it.
fn person(who: &str, user: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in who.lines() {
        if !line.starts_with(' ') {
            inside = line.starts_with(&format!("{user} (uid "));
        }
        if inside {
            out += line;
            out.push('\n');
        }
    }
    out
}

fn motd_ids(text: &str) -> (Vec<(String, bool)>, usize) {
    let mut ids = Vec::new();
    let mut more = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("  ... and ") {
            more = rest.trim_end_matches(" more").parse().unwrap();
        } else if let Some(rest) = line.strip_prefix("  ") {
            let mut words = rest.split_whitespace();
            let id = words.next().unwrap().to_string();
            ids.push((id, words.next() == Some("now,")));
        }
    }
    (ids, more)
}

/// Checks the MOTD fragment against `hosthog list` (same reservations in
/// the same order, the ones in force marked), retrying when a second
/// boundary passed between the two reads.
fn assert_motd_matches_list(h: &HostBox) {
    let mut last = String::new();
    for _ in 0..5 {
        let before = std::fs::read_to_string(&h.motd).unwrap_or_default();
        let list = h.hosthog("root", &["--json", "list"]);
        list.ok();
        let at = now();
        let after = std::fs::read_to_string(&h.motd).unwrap_or_default();
        if before != after {
            continue;
        }
        let listed: Vec<(String, bool)> = list
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let start = r["start"].as_i64().unwrap();
                let end = r["end"].as_i64().unwrap();
                (
                    r["id"].as_str().unwrap()[..8].to_string(),
                    start <= at && at < end,
                )
            })
            .collect();
        let (shown, more) = motd_ids(&after);
        let max = hosthogd::motd::MAX_MOTD_RESERVATIONS;
        let expected: Vec<(String, bool)> = listed.iter().take(max).cloned().collect();
        if listed.is_empty() && after.contains("this host is not reserved") && shown.is_empty() {
            return;
        }
        if shown == expected && more == listed.len().saturating_sub(max) {
            return;
        }
        last = format!("MOTD:\n{after}\nlist: {listed:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the MOTD fragment does not match hosthog list: {last}");
}

#[test]
fn start_and_end_fire_within_a_second_and_the_motd_follows_list() {
    let h = HostBox::start("notify_lead = []\n", &[]);
    // 20 reservations starting a second apart, each two seconds long: at
    // every second from t0 one starts and (from t0 + 2) one ends.
    let t0 = now() + 12;
    let mut ids = Vec::new();
    for i in 0..20i64 {
        let owner = NAMES[i as usize % NAMES.len()];
        let run = h.hosthog(
            "root",
            &[
                "--json",
                "reserve",
                "--shared",
                "--owner",
                owner,
                "--start",
                &stamp(t0 + i),
                "--for",
                "2s",
                &format!("run {i}"),
            ],
        );
        run.ok();
        ids.push(run.json()["id"].as_str().unwrap().to_string());
    }
    assert!(
        clock() < t0 as f64 - 0.5,
        "making 20 reservations took too long on this machine"
    );
    assert_motd_matches_list(&h);
    let mut latencies: Vec<(String, f64)> = Vec::new();
    for instant in t0..=t0 + 21 {
        let expected: Vec<(&str, &String)> = ids
            .iter()
            .enumerate()
            .flat_map(|(i, id)| {
                let start = t0 + i as i64;
                [("start", start), ("end", start + 2)]
                    .into_iter()
                    .filter(move |(_, at)| *at == instant)
                    .map(move |(kind, _)| (kind, id))
            })
            .collect();
        let seen = |events: &[serde_json::Value], kind: &str, id: &str| {
            events
                .iter()
                .filter(|e| e["event"] == kind && e["id"] == id)
                .cloned()
                .collect::<Vec<_>>()
        };
        h.wait_for(
            &format!("the events of instant {instant}"),
            Duration::from_secs_f64((instant as f64 + 3.0 - clock()).max(0.1)),
            || {
                let events = h.events();
                expected
                    .iter()
                    .all(|(kind, id)| !seen(&events, kind, id).is_empty())
            },
        );
        let events = h.events();
        for (kind, id) in &expected {
            let found = seen(&events, kind, id);
            assert_eq!(
                found.len(),
                1,
                "{kind} of {id} logged {} times",
                found.len()
            );
            let e = &found[0];
            assert_eq!(e["instant"].as_i64().unwrap(), instant);
            let late = e["fired"].as_f64().unwrap() - instant as f64;
            assert!(
                (0.0..1.0).contains(&late),
                "{kind} of {id} at {instant} was handled {late:.3} s after its instant"
            );
            latencies.push((kind.to_string(), late));
        }
        assert_motd_matches_list(&h);
    }
    assert_eq!(latencies.len(), 40);
    // Everything ended: pruned from the table, and the MOTD says so.
    let all = h.hosthog("root", &["--json", "list", "--all"]);
    assert_eq!(all.json(), serde_json::json!([]), "not pruned: {all:?}");
    let motd = std::fs::read_to_string(&h.motd).unwrap();
    assert_eq!(
        motd,
        "hosthog: this host is not reserved (hosthog reserve books it).\n"
    );
    assert_eq!(h.hosthog("alice", &["motd"]).stdout, motd);
    let stats = |kind: &str| {
        let v: Vec<f64> = latencies
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, l)| *l)
            .collect();
        let max = v.iter().cloned().fold(0.0, f64::max);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (v.len(), mean, max)
    };
    for kind in ["start", "end"] {
        let (n, mean, max) = stats(kind);
        eprintln!(
            "event latency: {n} {kind} events, mean {:.1} ms, max {:.1} ms",
            mean * 1000.0,
            max * 1000.0
        );
    }
}

#[test]
fn the_people_concerned_are_told_once_on_their_terminals_and_in_tmux() {
    let mut h = HostBox::start("notify_lead = [\"3s\"]\n", &[]);
    let bob = h.login("bob", true, "10.0.0.7");
    h.tmux("bob", true);
    let alice = h.login("alice", true, "");
    // Exempt (group ops): not concerned.
    let erin = h.login("erin", true, "");
    // Locked out, but refuses messages (mesg n).
    let carol = h.login("carol", false, "");

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
            "3s",
            "benchmarks",
        ],
    );
    reserved.ok();
    let id = reserved.json()["id"].as_str().unwrap()[..8].to_string();

    // A holder may post to everyone (not to terminals under mesg n); an
    // admin's post reaches those too; others may not post.
    let posted = h.hosthog("alice", &["--json", "post", "please", "save your work"]);
    posted.ok();
    let report = posted.json();
    let mut users: Vec<&str> = report["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    users.sort();
    assert_eq!(users, ["bob", "erin"], "{report}");
    assert_eq!(report["refused"], 1, "{report}");
    h.hosthog("dave", &["post", "admin", "notice"]).ok();
    h.hosthog("frank", &["post", "hello"])
        .refused("only holders of a current or coming reservation and admins may");
    h.hosthog("alice", &["post", "again"]).refused("wait 10 s");

    // Lead (start - 3 s), start, end (start + 3 s).
    h.wait_for("bob to be told of the end", Duration::from_secs(20), || {
        bob.output().contains("has ended")
    });
    // Let anything sent late arrive before counting.
    sleep_until(clock() + 1.0);

    let out = bob.output();
    eprintln!("bob's terminal showed:\n{out}");
    for phrase in [
        &format!("alice's exclusive reservation {id}"),
        "was made and you are not on it: new logins by you will be refused from",
        "starts in 3 s and you are not on it",
        "has started and you are not on it",
        "has ended; you may log in again.",
    ] {
        assert_eq!(
            count(&out, phrase),
            if phrase.starts_with("alice") { 4 } else { 1 },
            "{phrase:?} in bob's terminal:\n{out}"
        );
    }
    assert_eq!(count(&out, "message from alice (reservation "), 1, "{out}");
    assert!(out.contains(": \"please save your work\""), "{out}");
    assert_eq!(
        count(&out, "message from dave (admin): \"admin notice\""),
        1,
        "{out}"
    );

    let pane = h.tmux_pane("bob");
    eprintln!("bob's tmux pane shows:\n{pane}");
    for phrase in ["was made", "starts in 3 s", "has started", "has ended"] {
        assert_eq!(
            count(&pane, phrase),
            1,
            "{phrase:?} in bob's tmux pane:\n{pane}"
        );
    }

    // The holder: not told of her own reservation, told of the rest.
    let out = alice.output();
    assert_eq!(count(&out, "was made"), 0, "{out}");
    assert_eq!(
        count(&out, &format!("your exclusive reservation {id}")),
        3,
        "{out}"
    );
    assert_eq!(count(&out, "has started; it ends at"), 1, "{out}");

    // Exempt erin hears nothing about the reservation; only the posts.
    let out = erin.output();
    for phrase in ["was made", "starts at", "has started", "has ended"] {
        assert!(
            !out.contains(phrase),
            "{phrase:?} in erin's terminal:\n{out}"
        );
    }
    assert!(out.contains("message from alice"), "{out}");

    // carol (mesg n) got only the admin's post.
    let out = carol.output();
    assert!(!out.contains("reservation"), "{out}");
    assert_eq!(count(&out, "hosthog: "), 1, "{out}");
    assert!(out.contains("message from dave (admin)"), "{out}");

    let events: Vec<String> = h
        .events()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["created", "lead", "start", "end"]);
}

#[test]
fn who_lists_tmux_servers_pty_sessions_and_vscode_servers() {
    let mut h = HostBox::start("", &["--tick", "1"]);
    h.tmux("bob", false);
    let carol = h.login("carol", true, "10.1.2.3");
    let vscode = h.fake_vscode("dave");
    let bob_uid = h.user("bob").uid;
    let carol_uid = h.user("carol").uid;
    let dave_uid = h.user("dave").uid;

    let check = |sessions: &[serde_json::Value]| -> Result<(), String> {
        let find = |user: &str, kind: &str| {
            sessions
                .iter()
                .find(|s| s["user"] == user && s["kind"] == kind)
                .cloned()
                .ok_or_else(|| format!("no {kind} session of {user} in {sessions:?}"))
        };
        let tmux = find("bob", "tmux")?;
        assert_eq!(tmux["uid"], bob_uid);
        assert_eq!(
            tmux["detail"].as_str().unwrap(),
            format!("/tmp/tmux-{bob_uid}/default")
        );
        let login = find("carol", "login")?;
        assert_eq!(login["uid"], carol_uid);
        assert_eq!(login["tty"].as_str().unwrap(), carol.line);
        assert_eq!(login["from"], "10.1.2.3");
        assert_eq!(login["pid"], carol.pid());
        let vs = find("dave", "vscode")?;
        assert_eq!(vs["uid"], dave_uid);
        assert_eq!(vs["pid"], vscode);
        assert!(
            vs["detail"]
                .as_str()
                .unwrap()
                .ends_with("/.vscode-server/bin/0123abcd/node"),
            "{vs}"
        );
        Ok(())
    };

    let who = h.hosthog("erin", &["--json", "who"]);
    who.ok();
    let json = who.json();
    check(json["sessions"].as_array().unwrap()).unwrap();
    let text = h.hosthog("erin", &["who"]);
    text.ok();
    let carol_says = person(&text.stdout, "carol");
    assert!(
        carol_says.lines().any(|l| l.starts_with("  login")
            && l.contains(&carol.pid().to_string())
            && l.contains(&format!("{} from 10.1.2.3", carol.line))),
        "{text:?}"
    );
    assert!(
        carol_says.contains("; clearing the host would end all of them"),
        "{text:?}"
    );
    assert!(
        person(&text.stdout, "dave")
            .lines()
            .any(|l| l.starts_with("  VS Code") && l.contains(&vscode.to_string())),
        "{text:?}"
    );

    // The snapshot hosthogd keeps for the PAM module: the same, readable
    // without NSS.
    let mut last = String::new();
    h.wait_for(
        "the presence snapshot",
        Duration::from_secs(10),
        || match libhosthog::Presence::read(&h.presence, 0) {
            Ok(p) => {
                let value = serde_json::to_value(&p.sessions).unwrap();
                match check(value.as_array().unwrap()) {
                    Ok(()) => true,
                    Err(e) => {
                        last = e;
                        false
                    }
                }
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        },
    );
    let snapshot = libhosthog::Presence::read(&h.presence, 0).unwrap();
    let users: Vec<String> = snapshot.users().iter().map(|u| u.describe()).collect();
    assert!(
        users.contains(&format!("carol ({} from 10.1.2.3)", carol.line)),
        "{users:?} {last}"
    );
}

/// Processes of every kind of user, for the clearing tests: pids by name.
struct Crowd {
    keep: Vec<(String, i32)>,
    clear: Vec<(String, i32)>,
    bob: common::host::Pty,
    _alice: common::host::Pty,
}

fn crowd(h: &mut HostBox) -> Crowd {
    let alice = h.login("alice", true, "");
    let bob = h.login("bob", true, "10.0.0.9");
    let mut keep = vec![
        ("alice's session".to_string(), alice.pid()),
        ("alice".into(), h.spawn("alice", "/bin/sleep", &["600"])),
        (
            "carol (co-user)".into(),
            h.spawn("carol", "/bin/sleep", &["600"]),
        ),
        (
            "erin (exempt)".into(),
            h.spawn("erin", "/bin/sleep", &["600"]),
        ),
        ("root".into(), h.spawn("root", "/bin/sleep", &["600"])),
    ];
    let clear = vec![
        ("bob's session".to_string(), bob.pid()),
        ("bob".into(), h.spawn("bob", "/bin/sleep", &["600"])),
        (
            "bob's TERM-proof loop".into(),
            h.spawn(
                "bob",
                "/bin/sh",
                &["-c", "trap '' TERM; while :; do sleep 1; done"],
            ),
        ),
        (
            "frank (no session)".into(),
            h.spawn("frank", "/bin/sleep", &["600"]),
        ),
    ];
    keep.sort();
    Crowd {
        keep,
        clear,
        bob,
        _alice: alice,
    }
}

#[test]
fn clearing_ends_the_sessions_of_people_not_allowed_only() {
    let mut h = HostBox::start(
        "notify_lead = []\nclear_host = true\nclear_grace = \"2s\"\n",
        &[],
    );
    let crowd = crowd(&mut h);
    let start = now() + 3;
    h.hosthog(
        "alice",
        &[
            "reserve",
            "--with",
            "carol",
            "--start",
            &stamp(start),
            "--for",
            "1m",
            "quiet please",
        ],
    )
    .ok();
    // In the grace period nobody is touched yet.
    sleep_until(start as f64 + 1.0);
    for (who, pid) in crowd.keep.iter().chain(&crowd.clear) {
        assert!(alive(*pid), "{who} ({pid}) gone during the grace period");
    }
    // After it (and the SIGTERM-to-SIGKILL wait) bob's and frank's are gone.
    h.wait_for(
        "bob's and frank's processes to end",
        Duration::from_secs(15),
        || {
            crowd.clear.iter().all(|(_, pid)| !alive(*pid))
                && h.daemon_output().contains("ended the sessions of frank")
        },
    );
    for (who, pid) in &crowd.keep {
        assert!(alive(*pid), "{who} ({pid}) was touched");
    }
    let out = crowd.bob.output();
    assert!(out.contains("has started and you are not on it"), "{out}");
    assert!(
        out.contains("Your sessions and processes on this host will be ended at"),
        "{out}"
    );
    assert!(
        out.contains("your sessions and processes on this host are being ended now"),
        "{out}"
    );
    let log = h.daemon_output();
    assert!(log.contains("ended the sessions of bob"), "{log}");
    assert!(log.contains("ended the sessions of frank"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("ended the sessions of bob") && !l.contains(" 0 needed SIGKILL")),
        "the TERM-proof loop needed SIGKILL: {log}"
    );
}

#[test]
fn without_clearing_nobody_is_touched() {
    let mut h = HostBox::start("notify_lead = []\nclear_grace = \"1s\"\n", &[]);
    let crowd = crowd(&mut h);
    let start = now() + 2;
    h.hosthog(
        "alice",
        &[
            "reserve",
            "--with",
            "carol",
            "--start",
            &stamp(start),
            "--for",
            "1m",
            "quiet please",
        ],
    )
    .ok();
    h.wait_for("the start", Duration::from_secs(10), || {
        h.events().iter().any(|e| e["event"] == "start")
    });
    sleep_until(start as f64 + 3.5);
    for (who, pid) in crowd.keep.iter().chain(&crowd.clear) {
        assert!(alive(*pid), "{who} ({pid}) was touched with clearing off");
    }
    assert!(!h.events().iter().any(|e| e["event"] == "clear"));
    let out = crowd.bob.output();
    assert!(out.contains("has started and you are not on it"), "{out}");
    assert!(!out.contains("will be ended"), "{out}");
}

#[test]
fn a_tmux_client_is_reached_through_tmux_even_when_its_pane_refuses_writes() {
    let mut h = HostBox::start("", &[]);
    // bob is on the host only through tmux, his pane under mesg n (0600).
    h.tmux_mesg("bob", true, false);
    h.hosthog("alice", &["reserve", "--shared", "--for", "1h"])
        .ok();
    let posted = h.hosthog("alice", &["post", "benchmarks", "at", "14:00"]);
    posted.ok();
    // Told in his tmux client's status line; the pane is not a refusal.
    assert_eq!(
        posted.stdout,
        "Sent to bob (1 terminal or client).\n",
        "{}",
        h.daemon_output()
    );
}

/// The pids of every process whose real uid is `uid`, but for hosthogd's
/// own killer (a child of its clearing thread, "hosthogd-clear", that takes
/// the uid to kill everything of it and then exits): it is the cure, not
/// something bob left behind.
fn pids_of_uid(uid: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
                    == Some(uid)
            })
        })
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map_or(true, |comm| comm.trim() != "hosthogd-clear")
        })
        .collect()
}

/// What bob plants to dodge or delay clearing, undone on drop: processes
/// that hop pids cannot be stopped by pid, so they are stopped by uid (the
/// box's uids are this test's own, checked unused).
struct Planted {
    uid: u32,
    tmux_dir: std::path::PathBuf,
    _listeners: Vec<std::os::unix::net::UnixListener>,
}

impl Planted {
    /// `/tmp/tmux-UID` (0700, bob's) with `n` sockets that listen and never
    /// accept, as a hung tmux server would.
    fn fake_tmux_sockets(uid: u32, n: usize) -> Planted {
        use std::os::unix::fs::PermissionsExt;
        let tmux_dir = std::path::PathBuf::from(format!("/tmp/tmux-{uid}"));
        let _ = std::fs::remove_dir_all(&tmux_dir);
        std::fs::create_dir(&tmux_dir).unwrap();
        std::fs::set_permissions(&tmux_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&tmux_dir, Some(uid), Some(uid)).unwrap();
        let listeners = (0..n)
            .map(|i| {
                let path = tmux_dir.join(format!("hung{i}"));
                let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
                std::os::unix::fs::lchown(&path, Some(uid), Some(uid)).unwrap();
                l
            })
            .collect();
        Planted {
            uid,
            tmux_dir,
            _listeners: listeners,
        }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::process::Command::new(common::SETPRIV)
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.uid))
            .args(["--clear-groups", "--", "/bin/kill", "-KILL", "-1"])
            .status();
        let _ = std::fs::remove_dir_all(&self.tmux_dir);
    }
}

#[test]
fn clearing_cannot_be_dodged_or_delayed_and_posts_stay_fast() {
    let grace = 2.0;
    let mut h = HostBox::start(
        "notify_lead = []\nclear_host = true\nclear_grace = \"2s\"\n",
        &[],
    );
    let bob_uid = h.user("bob").uid;
    // Bob is logged in, with 20 tmux sockets that never answer, a session
    // leader that ignores SIGTERM, and three chains of processes that
    // ignore SIGTERM and hop to a new pid in a new session every 50 ms.
    let planted = Planted::fake_tmux_sockets(bob_uid, 20);
    let _bob = h.login("bob", true, "10.0.0.9");
    let hop = h.home("bob").join("hop.sh");
    std::fs::write(
        &hop,
        "trap '' TERM\nsleep 0.05\nexec /usr/bin/setsid -f /bin/sh \"$0\"\n",
    )
    .unwrap();
    for _ in 0..3 {
        h.spawn("bob", "/bin/sh", &[hop.to_str().unwrap()]);
    }
    h.spawn(
        "bob",
        "/usr/bin/setsid",
        &["-f", "/bin/sh", "-c", "trap '' TERM; exec sleep 600"],
    );
    let _alice = h.login("alice", true, "");
    // The hoppers are between a fork and an exit now and then: wait for
    // them all to be running rather than look once.
    h.wait_for("bob's processes to start", Duration::from_secs(10), || {
        pids_of_uid(bob_uid).len() >= 5
    });

    let start = now() + 3;
    h.hosthog(
        "alice",
        &[
            "reserve",
            "--start",
            &stamp(start),
            "--for",
            "1m",
            "quiet please",
        ],
    )
    .ok();
    // The holder posts while the host is being cleared: answered within a
    // second, whatever bob's tmux sockets do.
    sleep_until(start as f64 + grace + 0.2);
    let posted = std::time::Instant::now();
    h.hosthog("alice", &["post", "clearing now"]).ok();
    let post_took = posted.elapsed();

    // Within grace + 2 s of the start nothing of bob's is left.
    let deadline = start as f64 + grace + 2.0;
    let mut gone_at = None;
    while clock() < deadline {
        if pids_of_uid(bob_uid).is_empty() {
            gone_at = Some(clock() - start as f64);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<String> = pids_of_uid(bob_uid)
        .iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            format!(
                "{pid}: {}",
                stat.split(' ').take(8).collect::<Vec<_>>().join(" ")
            )
        })
        .collect();
    if !left.is_empty() {
        std::thread::sleep(Duration::from_secs(5));
    }
    let log = h.daemon_output();
    eprintln!(
        "post took {post_took:?}; bob's processes gone {gone_at:?} s after the start \
         (grace {grace} s); left at grace + 2 s: {left:?}"
    );
    assert!(
        left.is_empty(),
        "bob's processes {left:?} outlived grace + 2 s; hosthogd said:\n{log}"
    );
    // The log line follows once kill_uid has seen only zombies left.
    h.wait_for("the log of the clearing", Duration::from_secs(5), || {
        h.daemon_output().contains("ended the sessions of bob")
    });
    assert!(
        post_took < Duration::from_secs(1),
        "alice's post took {post_took:?}"
    );
    drop(planted);
}

#[test]
fn who_answers_everyone_whatever_one_user_runs() {
    // frank runs 250 processes that look like tmux servers with long
    // socket paths: before, the `who` answer outgrew a frame and failed for
    // everyone, and enough of them pushed everyone else out of presence.
    let mut h = HostBox::start("notify_lead = []\n", &[]);
    let _alice = h.login("alice", true, "10.0.0.5");
    let fake = h.home("frank").join("tmux: server");
    std::fs::copy("/bin/sh", &fake).unwrap();
    let long = format!("/tmp/{}", "s".repeat(240));
    for _ in 0..250 {
        h.spawn(
            "frank",
            fake.to_str().unwrap(),
            &["-c", "sleep 600; :", "x", "-S", &long],
        );
    }
    let frank_uid = h.user("frank").uid;
    h.wait_for("frank's fake servers", Duration::from_secs(30), || {
        pids_of_uid(frank_uid).len() >= 500
    });
    for user in ["carol", "frank"] {
        let run = h.hosthog(user, &["--json", "who"]);
        run.ok();
        let who = run.json();
        let sessions = who["sessions"].as_array().unwrap();
        let of = |name: &str| sessions.iter().filter(|s| s["user"] == name).count();
        assert_eq!(of("alice"), 1, "{user}: alice pushed out");
        assert_eq!(of("frank"), libhosthog::MAX_SESSIONS_PER_USER, "{user}");
        assert!(
            who["omitted"].as_u64().unwrap() >= 250 - 32,
            "{user}: {}",
            who["omitted"]
        );
        assert!(run.stdout.len() < 64 * 1024);
    }
}

#[test]
fn ssh_multiplexing_shows_in_who_and_clearing_ends_it() {
    // An OpenSSH connection carrying several sessions (a ControlMaster
    // opened before the reservation) titles its user process
    // "sshd: USER@pts/3,pts/5"; a copy of sleep named sshd stands in for it.
    let mut h = HostBox::start(
        "notify_lead = []\nclear_host = true\nclear_grace = \"1s\"\n",
        &[],
    );
    let sshd = h.home("bob").join("sshd");
    std::fs::copy("/bin/sleep", &sshd).unwrap();
    let mux = h.spawn(
        "bob",
        "/bin/bash",
        &[
            "-c",
            &format!("exec -a 'sshd: bob@pts/3,pts/5' {} 600", sshd.display()),
        ],
    );
    h.wait_for("the fake sshd", Duration::from_secs(10), || {
        std::fs::read(format!("/proc/{mux}/cmdline")).is_ok_and(|c| c.starts_with(b"sshd: bob@"))
    });
    let who = h.hosthog("alice", &["--json", "who"]);
    who.ok();
    let who = who.json();
    let ssh: Vec<_> = who["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["user"] == "bob" && s["kind"] == "ssh")
        .collect();
    assert_eq!(ssh.len(), 1, "{who}");
    assert_eq!(ssh[0]["detail"], "pts/3,pts/5");
    let text = h.hosthog("alice", &["who"]);
    assert!(text.stdout.contains("ssh multiplexing"), "{}", text.stdout);

    // Clearing ends it with everything else of bob's.
    let asked = now() + 2;
    let reserved = h.hosthog(
        "alice",
        &[
            "--json",
            "reserve",
            "--start",
            &stamp(asked),
            "--for",
            "1m",
            "quiet",
        ],
    );
    reserved.ok();
    // The start as the daemon recorded it (its own now, if the request
    // arrived after the time asked for).
    let start = reserved.json()["start"].as_i64().unwrap();
    h.wait_for(
        "bob's multiplexing sshd to end",
        Duration::from_secs(10),
        || !alive(mux),
    );
    assert!(clock() < start as f64 + 1.0 + 2.0, "ended late");
}
