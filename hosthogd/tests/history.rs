//! `hosthog history`: hosthogd reads the audit log (root's) for users and
//! admins; ended, released and cancelled reservations and the hours per
//! owner. Needs root (see the harness).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use hosthog_tests::daemon as common;
use hosthog_tests::daemon::now;
use jiff::tz::TimeZone;
use libhosthog::format_instant;

use common::{DEFAULT_CONFIG, Daemon};

fn record(
    id: &str,
    owner: &str,
    with: &[&str],
    span: (i64, i64),
    mode: &str,
    comment: &str,
) -> serde_json::Value {
    serde_json::json!({
        "id": id, "owner": owner, "with": with, "start": span.0, "end": span.1,
        "mode": mode, "comment": comment, "created": span.0 - 3600, "updated": span.0 - 3600,
    })
}

fn line(
    time: i64,
    user: &str,
    action: &str,
    before: Option<&serde_json::Value>,
    after: Option<&serde_json::Value>,
) -> String {
    serde_json::json!({
        "time": time, "time_utc": "", "uid": 0, "user": user, "generation": 1,
        "action": action, "before": before, "after": after,
    })
    .to_string()
        + "\n"
}

/// Rows as the command lays them out: each column as wide as its widest
/// cell, two spaces apart.
fn columns(rows: &[[String; 7]]) -> String {
    let mut widths = [0; 7];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            line += &format!("{cell:w$}  ");
        }
        out += line.trim_end();
        out += "\n";
    }
    out
}

#[test]
fn history_from_the_audit_log_with_hours_per_owner() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    // Whole minutes, so that the times read the same to the test and to
    // the command.
    let now = now() / 60 * 60;
    let h = 3600;
    let r1 = record(
        "a100000000000001",
        "alice",
        &[],
        (now - 10 * h, now - 8 * h),
        "exclusive",
        "paper",
    );
    let r2 = record(
        "b200000000000002",
        "bob",
        &["alice"],
        (now - 6 * h, now - 2 * h),
        "shared",
        "training",
    );
    let r3 = record(
        "c300000000000003",
        "carol",
        &[],
        (now - 40 * 86_400, now - 39 * 86_400),
        "exclusive",
        "old",
    );
    let r4 = record(
        "d400000000000004",
        "alice",
        &[],
        (now + h, now + 2 * h),
        "exclusive",
        "never",
    );
    let mut log = String::new();
    log += &line(now - 41 * 86_400, "carol", "reserve", None, Some(&r3));
    log += &line(now - 11 * h, "alice", "reserve", None, Some(&r1));
    log += &line(now - 7 * h, "bob", "reserve", None, Some(&r2));
    log += &line(now - 5 * h, "bob", "release", Some(&r2), None);
    log += &line(now - 3 * h, "alice", "reserve", None, Some(&r4));
    log += &line(now - h, "dave", "cancel", Some(&r4), None);
    std::fs::create_dir_all(&d.state).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(d.state.join("audit.log"))
        .unwrap()
        .write_all(log.as_bytes())
        .unwrap();
    let utc = |t: i64| format_instant(t, now, &TimeZone::UTC);
    let since = now - 30 * 86_400;
    let stamp = jiff::Timestamp::from_second(since).unwrap().to_string();

    // alice: her own and the one she was on; her hours.
    let run = d.run_as("alice", &["history", "--since", &stamp]);
    run.ok();
    let table = columns(&[
        ["ID", "MODE", "OWNER", "START", "END", "HOW", "COMMENT"].map(String::from),
        [
            "b2000000".into(),
            "shared".into(),
            "bob".into(),
            utc(now - 6 * h),
            utc(now - 5 * h),
            "released by bob".into(),
            "training".into(),
        ],
        [
            "a1000000".into(),
            "exclusive".into(),
            "alice".into(),
            utc(now - 10 * h),
            utc(now - 8 * h),
            "ended".into(),
            "paper".into(),
        ],
    ]);
    assert_eq!(
        run.stdout,
        format!(
            "Reservations of alice since {}:\n{table}\
             Hours reserved:\n\
             alice: 2.0 h in 1 reservation (2.0 h exclusive)\n",
            utc(since),
        )
    );
    // Everyone's is for admins.
    d.run_as("alice", &["history", "--all"]).refused(
        "only admins may see everyone's history (--all); you (alice) are not root or in the admin group",
    );
    // dave (admin), 45 days: carol's old one too; cancelled before its
    // start, r4 never held the host and is not history.
    let run = d.run_as("dave", &["--json", "history", "--all", "--since", "45d"]);
    run.ok();
    let history = run.json();
    let ids: Vec<&str> = history["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["reservation"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["b200000000000002", "a100000000000001", "c300000000000003"]
    );
    assert_eq!(history["reservations"][0]["ending"], "released");
    assert_eq!(history["reservations"][0]["ended_by"], "bob");
    assert_eq!(
        history["totals"],
        serde_json::json!([
            {"user": "alice", "reservations": 1, "seconds": 2 * h, "exclusive_seconds": 2 * h},
            {"user": "bob", "reservations": 1, "seconds": h, "exclusive_seconds": 0},
            {"user": "carol", "reservations": 1, "seconds": 86_400, "exclusive_seconds": 86_400},
        ])
    );
    assert_eq!(history["user"], serde_json::Value::Null);
    // Users cannot read the log itself.
    let run = d.run_as("alice", &["history"]);
    run.ok();
    assert!(run.stdout.contains("alice: 2.0 h"), "{run:?}");
}
