//! The desktop channel (hosthogd/src/notify.rs, `desktop()`): bob has a
//! desktop session in a host box — a real session bus at
//! /run/user/UID/bus, Xvfb and the dunst notification server
//! (tests/src/desktop.rs). A reservation's start reaches dunst with the
//! exact text: summary "hosthog", the message as the body with `&`, `<`
//! and `>` escaped (the body is markup to dunst). frank is on the host in
//! an X session of his own but has no session bus: he is not counted as
//! reached (hosthogd logs 0 deliveries and keeps the message in his
//! inbox), and a post reports bob alone. Needs root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::daemon as common;
use hosthog_tests::daemon::{clock, stamp};

use std::time::Duration;

use common::host::HostBox;
use hosthog_tests::desktop::{Desktop, Notification, XServer};
use jiff::tz::TimeZone;

/// The first notification on `desktop` whose body holds `needle`, waiting
/// up to `limit` for the server's answer to it.
fn notification(h: &HostBox, desktop: &Desktop, needle: &str, limit: Duration) -> Notification {
    let mut found = None;
    h.wait_for(
        &format!("a notification holding {needle:?} accepted by bob's dunst"),
        limit,
        || {
            found = desktop
                .notifications()
                .into_iter()
                .find(|n| n.body.contains(needle) && n.accepted.is_some());
            found.is_some()
        },
    );
    found.unwrap()
}

#[test]
fn a_start_reaches_the_desktop_exactly_and_no_bus_is_no_delivery() {
    let h = HostBox::start("notify_lead = []\nnotify_end_lead = []\n", &["--tick", "1"]);
    let bob = Desktop::start(&h, "bob");
    let _frank = XServer::start(&h, "frank");

    let start = clock().ceil() as i64 + 4;
    let end = start + 60;
    let made = h.hosthog(
        "alice",
        &[
            "--json",
            "reserve",
            "--exclusive",
            "--start",
            &stamp(start),
            "--for",
            "1m",
            "<b>GPU</b> & co's \"runs\"",
        ],
    );
    made.ok();
    let id = made.json()["id"].as_str().unwrap()[..8].to_string();

    let utc = TimeZone::UTC;
    let text = |comment: &str| {
        format!(
            "hosthog: alice's exclusive reservation {id} ({} to {}, \"{comment}\") has started \
             and you are not on it: new logins by you are refused until {}.",
            libhosthog::format_instant(start, start, &utc),
            libhosthog::format_instant(end, start, &utc),
            hosthogd::events::instant(end, start, &utc),
        )
    };
    let body = text("&lt;b&gt;GPU&lt;/b&gt; &amp; co's \"runs\"");
    let plain = text("<b>GPU</b> & co's \"runs\"");

    let started = notification(&h, &bob, "has started", Duration::from_secs(10));
    assert_eq!(
        (
            started.app_name.as_str(),
            started.summary.as_str(),
            started.body.as_str()
        ),
        ("hosthog", "hosthog", body.as_str())
    );
    let accepted = started.accepted.unwrap();
    assert!(
        (start as f64..start as f64 + 3.0).contains(&accepted),
        "accepted at {accepted}, the reservation started at {start}"
    );
    // Told once, and about the reservation being made before that.
    let all = bob.notifications();
    assert_eq!(
        all.iter()
            .filter(|n| n.body.contains("has started"))
            .count(),
        1,
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|n| n.body.contains(&format!("{id} (")) && n.body.contains("was made")),
        "{all:#?}"
    );
    // dunst's own record has it, as it was sent.
    let history = bob.history(&h);
    assert!(
        history.contains(&("hosthog".into(), "hosthog".into(), body.clone())),
        "{history:#?}"
    );

    // What hosthogd counted: bob reached once (his desktop), frank not at
    // all — his message waits in his inbox.
    let told_bob = format!(
        "hosthogd: told bob about the start of reservation {id} (1 deliveries, 0 refused by mesg)\n"
    );
    let told_frank = format!(
        "hosthogd: told frank about the start of reservation {id} (0 deliveries, 0 refused by mesg; kept in their inbox)\n"
    );
    h.wait_for(
        "hosthogd's account of the start",
        Duration::from_secs(5),
        || {
            let log = h.daemon_output();
            log.contains(&told_bob) && log.contains(&told_frank)
        },
    );
    let inbox = h.run.join("hosthog/inbox");
    let frank_inbox = std::fs::read_to_string(inbox.join("frank")).unwrap();
    assert!(
        frank_inbox.lines().any(|l| l == plain),
        "{plain}\nnot in frank's inbox:\n{frank_inbox}"
    );
    assert!(
        !inbox.join("bob").exists(),
        "bob was reached: nothing should wait in his inbox"
    );

    // A post: frank (on the host, in an X session) is not among those
    // reached, and bob's desktop shows it, escaped.
    let posted = h.hosthog("alice", &["post", "tea & <cake>"]);
    posted.ok();
    assert_eq!(
        posted.stdout,
        "Sent to bob (1 terminal or client).\n",
        "{}",
        h.daemon_output()
    );
    let post = notification(&h, &bob, "message from alice", Duration::from_secs(5));
    assert_eq!(
        post.body,
        format!("hosthog: message from alice (reservation {id}): \"tea &amp; &lt;cake&gt;\"")
    );
}
