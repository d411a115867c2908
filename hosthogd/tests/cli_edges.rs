//! The command's rough edges against a real daemon (issue 12): what a
//! user is told when a user does not exist, a slot is booked twice, an
//! admin forces, a future reservation is released, an id prefix is
//! ambiguous, and errors under --json. Needs root (see the harness).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::daemon as common;
use hosthog_tests::daemon::now;
use jiff::tz::TimeZone;
use libhosthog::format_instant;

use common::{DEFAULT_CONFIG, Daemon};

fn reservation(d: &Daemon, user: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "reserve"];
    all.extend_from_slice(args);
    let run = d.run_as(user, &all);
    run.ok();
    run.json()
}

fn short(r: &serde_json::Value) -> String {
    r["id"].as_str().unwrap()[..8].to_string()
}

/// `14:00 UTC` as every message writes it (the tests run hosthog with TZ=UTC).
fn at(r: &serde_json::Value, field: &str, now: i64) -> String {
    format_instant(r[field].as_i64().unwrap(), now, &TimeZone::UTC)
}

#[test]
fn check_of_a_user_who_does_not_exist_says_so() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let run = d.run_as("alice", &["check", "nosuchuser"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "hosthog: there is no user nosuchuser on this host\n"
    );
    // An existing user is still answered.
    d.run_as("alice", &["check", "bob"]).ok();
}

#[test]
fn the_same_owner_cannot_book_an_exclusive_slot_twice() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let first = reservation(&d, "alice", &["--start", "1h", "--for", "2h", "paper"]);
    let now = now();
    let run = d.run_as("alice", &["reserve", "--start", "2h", "--for", "2h"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "hosthog: this exclusive reservation conflicts with your exclusive reservation {} ({} to {}, \"paper\")\n",
            short(&first),
            at(&first, "start", now),
            at(&first, "end", now)
        )
    );
    assert_eq!(d.state().reservations.len(), 1);
}

#[test]
fn force_says_what_it_overrode() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let alice = reservation(&d, "alice", &["--start", "1h", "--for", "2h", "paper"]);
    let now = now();
    let run = d.run_as(
        "dave",
        &[
            "reserve", "--force", "--start", "2h", "--for", "3d", "urgent",
        ],
    );
    run.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run:?}");
    assert!(lines[0].starts_with("Reserved "), "{run:?}");
    assert_eq!(
        lines[1],
        format!(
            "Overrode (--force, recorded in the audit log): it overlaps alice's exclusive reservation {} ({} to {}, \"paper\")",
            short(&alice),
            at(&alice, "start", now),
            at(&alice, "end", now)
        )
    );
    assert_eq!(
        lines[2],
        "Overrode (--force, recorded in the audit log): the reservation is 3d; the longest allowed is 2d"
    );
    let audit = d.audit_lines();
    let last = audit.last().unwrap();
    assert_eq!(last["overridden"][0], alice["id"]);
    assert_eq!(
        last["limits_overridden"][0],
        "the reservation is 3d; the longest allowed is 2d"
    );
    // --json: the reservation with what was overridden.
    let forced = reservation(
        &d,
        "dave",
        &[
            "--force", "--owner", "carol", "--start", "90m", "--for", "1h",
        ],
    );
    assert_eq!(forced["owner"], "carol");
    assert_eq!(forced["overridden"][0]["id"], alice["id"]);
    assert_eq!(forced["limits_overridden"], serde_json::json!([]));
}

#[test]
fn releasing_a_future_reservation_says_it_was_removed() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let r = reservation(&d, "alice", &["--start", "2h", "--for", "1h", "later"]);
    let now = now();
    let run = d.run_as("alice", &["release", &short(&r)]);
    run.ok();
    assert_eq!(
        run.stdout,
        format!(
            "Removed {} exclusive reservation of alice, {} to {}, \"later\" (it had not started; the time is free again)\n",
            short(&r),
            at(&r, "start", now),
            at(&r, "end", now)
        )
    );
    assert!(d.state().reservations.is_empty());
}

#[test]
fn an_ambiguous_prefix_lists_the_candidates() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    // 17 reservations: two of them share a first hex digit.
    let mut all = Vec::new();
    for i in 0..17 {
        let start = format!("{}h", i + 1);
        all.push(reservation(
            &d,
            if i % 2 == 0 { "alice" } else { "bob" },
            &["--shared", "--start", &start, "--for", "30m"],
        ));
    }
    let now = now();
    let digit = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| {
            all.iter()
                .filter(|r| r["id"].as_str().unwrap().starts_with(d.as_str()))
                .count()
                > 1
        })
        .unwrap();
    let mut named: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| r["id"].as_str().unwrap().starts_with(&digit))
        .collect();
    named.sort_by_key(|r| r["start"].as_i64().unwrap());
    let list: Vec<String> = named
        .iter()
        .map(|r| {
            format!(
                "{} ({}, {} to {})",
                r["id"].as_str().unwrap(),
                r["owner"].as_str().unwrap(),
                at(r, "start", now),
                at(r, "end", now)
            )
        })
        .collect();
    let run = d.run_as("alice", &["show", &digit]);
    assert_eq!(
        run.stderr,
        format!(
            "hosthog: {digit} names {} reservations: {}; give more digits\n",
            named.len(),
            list.join(", ")
        )
    );
    assert_eq!(run.code, Some(2));
}

#[test]
fn errors_under_json_are_one_json_object_on_stderr() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let run = d.run_as("alice", &["--json", "check", "nosuchuser"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "{\"error\":{\"kind\":\"not_found\",\"message\":\"there is no user nosuchuser on this host\"}}\n"
    );
    let alice = reservation(&d, "alice", &["--for", "1h"]);
    let run = d.run_as("bob", &["--json", "reserve", "--for", "1h"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    let error: serde_json::Value = serde_json::from_str(&run.stderr).unwrap();
    assert_eq!(error["error"]["kind"], "conflict");
    assert_eq!(error["error"]["reservations"][0]["id"], alice["id"]);
    let run = d.run_as("bob", &["--json", "release"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(
        run.stderr,
        "{\"error\":{\"kind\":\"usage\",\"message\":\"release needs a reservation id (see hosthog list); usage: hosthog release <ID>\"}}\n"
    );
}

#[test]
fn exempt_list_labels_each_line_and_says_none() {
    let d = Daemon::start("admin_group = \"hhadmin\"\n", 0);
    // Always allowed besides root: the admins (dave) and the system
    // accounts (nobody), as clearing never touches them (issue 11).
    let run = d.run_as("alice", &["exempt", "list"]);
    run.ok();
    assert_eq!(
        run.stdout,
        "users (hosthog exempt add):          none\n\
         groups (hosthog exempt add --group): none\n\
         users (configuration):               none\n\
         groups (configuration):              none\n\
         always allowed to log in:            root, dave, nobody\n"
    );
    d.run_as("dave", &["exempt", "add", "bob", "--group", "ops"])
        .ok();
    let run = d.run_as("alice", &["exempt", "list"]);
    assert_eq!(
        run.stdout,
        "users (hosthog exempt add):          bob\n\
         groups (hosthog exempt add --group): ops\n\
         users (configuration):               none\n\
         groups (configuration):              none\n\
         always allowed to log in:            root, bob, dave, erin, nobody\n"
    );
}

#[test]
fn motd_json_has_its_parts_and_a_notice_is_shown_once_at_login() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let r = reservation(&d, "alice", &["--for", "1h", "paper"]);
    let now = now();
    d.run_as("dave", &["notice", "add", "kernel update Tue 09:00"])
        .ok();
    let text = format!(
        "hosthog: reservations of this host (hosthog list shows more):\n  {}  now, until {}  exclusive  alice  \"paper\"\n",
        short(&r),
        at(&r, "end", now)
    );
    // The fragment (and `hosthog motd`) leave the notice to the session
    // summary, so a login shows it once.
    let run = d.run_as("bob", &["motd"]);
    run.ok();
    assert_eq!(run.stdout, text);
    let motd = d.run_as("bob", &["--json", "motd"]);
    motd.ok();
    let motd = motd.json();
    assert_eq!(motd["text"], text);
    assert_eq!(motd["reservations"][0]["id"], r["id"]);
    assert_eq!(motd["notices"][0]["text"], "kernel update Tue 09:00");
    assert_eq!(motd["notices"][0]["author"], "dave");
}

/// Every time in one command's output is in one zone: the user's TZ if
/// set, hosthogd's messages included.
#[test]
fn the_daemon_writes_times_in_the_users_zone() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let zone = "Asia/Kolkata";
    let tz = TimeZone::get(zone).unwrap();
    let run = d.run_in_zone(
        "alice",
        zone,
        &["--json", "reserve", "--for", "2h", "paper"],
    );
    run.ok();
    let r = run.json();
    let now = now();
    let end = format_instant(r["end"].as_i64().unwrap(), now, &tz);
    let start = format_instant(r["start"].as_i64().unwrap(), now, &tz);
    assert!(end.ends_with(" IST"), "{end}");
    // A conflict, from the daemon.
    let run = d.run_in_zone("bob", zone, &["reserve", "--for", "1h"]);
    assert_eq!(
        run.stderr,
        format!(
            "hosthog: this exclusive reservation conflicts with alice's exclusive reservation {} ({start} to {end}, \"paper\")\n",
            short(&r)
        )
    );
    // check's explanation, from the daemon.
    let run = d.run_in_zone("bob", zone, &["check", "bob"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "reserved exclusively by alice until {end} for \"paper\""
        )),
        "{run:?}"
    );
    // The command's own output, in the same zone.
    let run = d.run_in_zone("bob", zone, &["show", &short(&r)]);
    assert!(
        run.stdout.contains(&format!("end:      {end}\n")),
        "{run:?}"
    );
    // A zone nobody knows is refused, not silently replaced by UTC.
    let run = d.run_in_zone("bob", "Mars/Olympus_Mons", &["list"]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        "hosthog: TZ=\"Mars/Olympus_Mons\" is not a time zone hosthog knows; use an IANA name such as Europe/Berlin, or unset TZ for the host's zone\n"
    );
}

#[test]
fn list_ends_with_the_free_times() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let a = reservation(&d, "alice", &["--start", "1h", "--for", "2h", "paper"]);
    let b = reservation(&d, "bob", &["--shared", "--start", "4h", "--for", "1h"]);
    let now = now();
    let run = d.run_as("carol", &["list"]);
    run.ok();
    assert_eq!(
        run.stdout.lines().last().unwrap(),
        format!(
            "Free: now to {}, {} to {}, from {} on.",
            at(&a, "start", now),
            at(&a, "end", now),
            at(&b, "start", now),
            at(&b, "end", now)
        )
    );
    // In force from now: free only after it.
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let c = reservation(&d, "carol", &["--for", "1h"]);
    let run = d.run_as("carol", &["list"]);
    assert_eq!(
        run.stdout.lines().last().unwrap(),
        format!("Free: from {} on.", at(&c, "end", now))
    );
}

#[test]
fn bash_completion_offers_reservation_ids_and_users() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let a = reservation(
        &d,
        "alice",
        &["--start", "1h", "--for", "1h", "--with", "carol"],
    );
    let b = reservation(&d, "bob", &["--shared", "--start", "3h", "--for", "1h"]);
    let mut ids = [short(&a), short(&b)];
    ids.sort();
    let run = d.run_as("erin", &["__complete", "ids"]);
    run.ok();
    assert_eq!(run.stdout, format!("{}\n{}\n", ids[0], ids[1]));
    let run = d.run_as("erin", &["__complete", "users"]);
    assert_eq!(run.stdout, "alice\nbob\ncarol\n");
    // The bash script asks for them where a command takes an id or a user.
    let bin = common::hosthog_bin();
    let complete = |words: &str| -> String {
        let script = format!(
            "source <(hosthog completions bash); COMP_WORDS=({words}); \
             COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _hosthog_dynamic; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let out = std::process::Command::new(common::SETPRIV)
            .args([
                "--reuid=2005",
                "--regid=2005",
                "--clear-groups",
                "--",
                "/bin/bash",
                "-c",
            ])
            .arg(script)
            .env("HOSTHOG_SOCKET", &d.socket)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", bin.parent().unwrap().display()),
            )
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        complete("hosthog release ''"),
        format!("{}\n{}\n", ids[0], ids[1])
    );
    assert_eq!(
        complete(&format!("hosthog --json share {} c", short(&a))),
        "carol\n"
    );
}

/// Fleet commands on a host that follows no fleet calendar: one line
/// saying so, and nothing booked.
#[test]
fn fleet_commands_on_a_host_of_its_own_say_it_has_no_fleet() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    for args in [
        &["hosts"][..],
        &["reserve", "--hosts", "gpu1,gpu2", "--for", "1h", "sweep"][..],
        &["web"][..],
        &["feed"][..],
        &["token", "create"][..],
        &["token", "list"][..],
        &["token", "revoke", "abcd"][..],
    ] {
        d.run_as("alice", args).refused(
            "hosthog: this host is not part of a fleet ([fleet] in /etc/hosthog/hosthog.toml, \
             see docs/config.md); it has only its own calendar",
        );
    }
    assert!(d.state().reservations.is_empty());
}
