//! `hosthog list`, `show`, `check` and `notice list` over a hand-crafted
//! table whose comments, names and notices carry terminal escape sequences:
//! none reaches the terminal. Backs a claim in docs/security.md. Needs root
//! (`--state-dir` is for root).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use libhosthog::format::{CHECKSUM_OFFSET, checksum};
use libhosthog::{Mode, Notice, Reservation, ReservationId, State, encode};

#[allow(clippy::disallowed_methods)] // tests: the clock of the test itself
fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Placeholders and the escape sequences swapped in for them in the raw
/// bytes (padded to the same length): the writer would refuse these.
const SWAPS: [(&str, &str); 4] = [
    (
        "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
        "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31mX\r\u{202e}zz",
    ),
    ("NNNNNNNNNNNNNNNNNNNN", "\u{1b}[31mred\u{7}\u{1b}[0m"),
    ("evilaaaaa", "e\u{1b}[2Jvil\u{7}"),
    ("withbbbbb", "w\u{1b}[5mith\u{7}"),
];

const FORBIDDEN: [char; 6] = ['\u{1b}', '\u{7}', '\r', '\u{9b}', '\u{202e}', '\u{fffd}'];

fn hostile_table(now: i64) -> Vec<u8> {
    let reservation = |id: u64, span: (i64, i64), mode: Mode| Reservation {
        id: ReservationId(id),
        owner: "evilaaaaa".into(),
        with: vec!["withbbbbb".into()],
        start: span.0,
        end: span.1,
        mode,
        comment: SWAPS[0].0.into(),
        created: span.0 - 1000,
        updated: span.0 - 1000,
    };
    let state = State {
        reservations: vec![
            reservation(
                0xe5c0_0000_0000_0001,
                (now - 600, now + 3600),
                Mode::Exclusive,
            ),
            reservation(
                0xe5c0_0000_0000_0002,
                (now + 4000, now + 5000),
                Mode::Shared,
            ),
        ],
        notices: vec![Notice {
            id: 1,
            author: "root".into(),
            text: SWAPS[1].0.into(),
            start: now - 3600,
            end: i64::MAX,
            created: now - 3600,
        }],
        ..State::default()
    };
    let mut bytes = encode(&state).unwrap();
    for (from, to) in SWAPS {
        let to = format!("{to}{}", "x".repeat(from.len() - to.len()));
        let mut at = 0;
        while let Some(i) = bytes[at..]
            .windows(from.len())
            .position(|w| w == from.as_bytes())
        {
            let i = at + i;
            bytes[i..i + from.len()].copy_from_slice(to.as_bytes());
            at = i + from.len();
        }
        assert!(at > 0, "{from} not in the encoded table");
    }
    let sum = checksum(&bytes).to_le_bytes();
    bytes[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&sum);
    bytes
}

#[test]
fn escape_sequences_in_a_raw_table_never_reach_the_terminal() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (hosthog --state-dir is for root)"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let table = dir.path().join("table");
    std::fs::write(&table, hostile_table(now())).unwrap();
    std::fs::set_permissions(&table, std::fs::Permissions::from_mode(0o644)).unwrap();
    let state_dir = dir.path().to_str().unwrap();
    for args in [
        &["list"][..],
        &["list", "--all"],
        &["show", "e5c0000000000001"],
        &["show", "e5c0000000000002"],
        &["check", "nobody"],
        &["check", "root"],
        &["notice", "list"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hosthog"))
            .args(["--state-dir", state_dir])
            .args(args)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stdout.is_empty() || !stderr.is_empty(), "{args:?}");
        for c in FORBIDDEN {
            assert!(
                !stdout.contains(c) && !stderr.contains(c),
                "{args:?}: {c:?} reached the terminal: {stdout:?} {stderr:?}"
            );
        }
        // What each command must show (sanitized), so that a command that
        // printed nothing of the hostile text could not pass.
        let shown = format!("{stdout}{stderr}");
        match args {
            ["check", "nobody"] => {
                assert!(shown.contains("e?[2Jvil?"), "{args:?}: {shown}");
                assert!(
                    shown.contains("?[2J?]0;pwned??31mX??zz"),
                    "{args:?}: {shown}"
                );
            }
            ["check", "root"] => assert!(shown.contains("root"), "{args:?}: {shown}"),
            ["notice", "list"] => {
                assert!(out.status.success(), "{args:?}: {stderr}");
                assert!(shown.contains("?[31mred??[0m"), "{args:?}: {shown}");
            }
            _ => {}
        }
        if args[0] == "list" || args[0] == "show" {
            assert!(out.status.success(), "{args:?}: {stderr}");
            assert!(
                stdout.contains("?[2J?]0;pwned??31mX??zz"),
                "{args:?}: {stdout}"
            );
            assert!(stdout.contains("e?[2Jvil?"), "{args:?}: {stdout}");
        }
    }
}
