//! Issue 12, acceptance 4: the latency from a scheduled instant (a start or
//! an end) to each delivery, per channel, in a host box (see
//! tests/src/daemon/host.rs): bob's terminal (a pty write), carol's tmux
//! client (a popup) and frank's desktop (a notification accepted by dunst
//! on his own session bus, Xvfb as the display: tests/src/desktop.rs). Run
//! by `bench/delivery-latency.sh` (ignored in the ordinary test run: it
//! takes about a minute). Each sample asserts that its message arrived
//! (the desktop's with its exact text) within 3 s; p50 and p99 are printed
//! per channel, and p99 must be under 1 s.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::daemon as common;
use hosthog_tests::daemon::{clock, stamp};

use std::time::Duration;

use common::host::{HostBox, SCRIPT, TMUX};
use hosthog_tests::desktop::Desktop;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The first time (after `from`) `text` holds `needle` past byte `offset`.
fn arrival(read: &dyn Fn() -> Vec<u8>, offset: usize, needle: &str, limit: f64) -> Option<f64> {
    let needle = needle.as_bytes();
    while clock() < limit {
        let bytes = read();
        if bytes.len() > offset && bytes[offset..].windows(needle.len()).any(|w| w == needle) {
            return Some(clock());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

#[test]
#[ignore = "a benchmark: run by bench/delivery-latency.sh"]
fn delivery_latency_per_channel() {
    let samples: usize = std::env::var("SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut h = HostBox::start("notify_lead = []\nnotify_end_lead = []\n", &["--tick", "1"]);
    let bob = h.login("bob", true, "");
    h.tmux("carol", false);
    let client_log = h.home("carol").join("client.log");
    h.spawn(
        "carol",
        SCRIPT,
        &[
            "-q",
            "-f",
            "-c",
            "tmux attach -t hh",
            client_log.to_str().unwrap(),
        ],
    );
    h.wait_for("carol's tmux client", Duration::from_secs(10), || {
        !h.tmux_cmd("carol", &["list-clients"]).trim().is_empty()
    });
    let frank = Desktop::start(&h, "frank");
    let close_popups = |h: &HostBox| {
        let client = h.tmux_cmd("carol", &["list-clients", "-F", "#{client_tty}"]);
        let _ = h
            .as_user("carol", TMUX)
            .args(["display-popup", "-C", "-c", client.trim()])
            .output();
    };
    // Reservations of 1 s every 3 s: a start and an end per sample.
    let t0 = clock().ceil() as i64 + 8;
    let mut ids = Vec::new();
    for k in 0..samples as i64 {
        let start = t0 + 3 * k;
        let out = h.hosthog(
            "alice",
            &[
                "--json",
                "reserve",
                "--exclusive",
                "--start",
                &stamp(start),
                "--for",
                "1s",
            ],
        );
        out.ok();
        ids.push((out.json()["id"].as_str().unwrap()[..8].to_string(), start));
    }
    let pty = || std::fs::read(&bob.log).unwrap_or_default();
    let popup = || std::fs::read(&client_log).unwrap_or_default();
    let mut pts_lat = Vec::new();
    let mut popup_lat = Vec::new();
    let mut desktop_lat = Vec::new();
    let utc = jiff::tz::TimeZone::UTC;
    for (id, start) in &ids {
        for (instant, what) in [(*start, "has started"), (*start + 1, "has ended")] {
            // Before the instant: popups closed, logs marked.
            while clock() < instant as f64 - 0.4 {
                std::thread::sleep(Duration::from_millis(20));
            }
            close_popups(&h);
            let (pty_at, popup_at) = (pty().len(), popup().len());
            let desktop_at = frank.notifications().len();
            while clock() < instant as f64 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let limit = instant as f64 + 3.0;
            let needle = format!("{id} (");
            let t = arrival(&pty, pty_at, &needle, limit)
                .unwrap_or_else(|| panic!("the {what} of {id} never reached bob's terminal"));
            pts_lat.push(t - instant as f64);
            let t = arrival(&popup, popup_at, id, limit)
                .unwrap_or_else(|| panic!("the {what} of {id} never reached carol's tmux"));
            popup_lat.push(t - instant as f64);
            // frank's desktop: the exact message, accepted by dunst.
            let what_frank = format!(
                "hosthog: alice's exclusive reservation {id} ({} to {}) {}",
                libhosthog::format_instant(*start, instant, &utc),
                libhosthog::format_instant(*start + 1, instant, &utc),
                if instant == *start {
                    format!(
                        "has started and you are not on it: new logins by you are refused until {}.",
                        hosthogd::events::instant(*start + 1, instant, &utc)
                    )
                } else {
                    "has ended; you may log in again.".to_string()
                }
            );
            let mut shown = None;
            while shown.is_none() && clock() < limit {
                shown = frank
                    .notifications()
                    .into_iter()
                    .skip(desktop_at)
                    .find(|n| {
                        n.body.contains(&needle) && n.body.contains(what) && n.accepted.is_some()
                    });
                std::thread::sleep(Duration::from_millis(5));
            }
            let shown = shown.unwrap_or_else(|| {
                panic!(
                    "the {what} of {id} never reached frank's desktop: {:#?}",
                    frank.notifications()
                )
            });
            assert_eq!(
                (shown.summary.as_str(), shown.body.as_str()),
                ("hosthog", what_frank.as_str())
            );
            let accepted = shown.accepted.unwrap();
            assert!(
                accepted < limit,
                "the {what} of {id} reached frank's desktop {:.1} s late",
                accepted - instant as f64
            );
            desktop_lat.push(accepted - instant as f64);
            let out = bob.output();
            assert!(
                out.contains(&format!("{id} (")) && out.contains(what),
                "{what} of {id} in bob's terminal:\n{out}"
            );
        }
    }
    // Every tmux delivery was a popup (not the status-line fallback).
    let shown = String::from_utf8_lossy(&popup())
        .matches("[Enter closes this]")
        .count();
    assert!(
        shown >= 2 * samples,
        "{shown} popups for {} instants",
        2 * samples
    );
    for (name, lat) in [
        ("pts write", &mut pts_lat),
        ("tmux popup", &mut popup_lat),
        ("desktop notification", &mut desktop_lat),
    ] {
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{name}: {} deliveries, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lat.len(),
            percentile(lat, 0.5) * 1000.0,
            percentile(lat, 0.99) * 1000.0,
            lat.last().unwrap() * 1000.0
        );
        assert!(percentile(lat, 0.99) < 1.0, "{name}: p99 over 1 s: {lat:?}");
    }
}
