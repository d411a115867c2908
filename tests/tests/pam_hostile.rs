//! pam_hosthog against hostile tables and a hostile state directory, through
//! the real libpam (pamtester in bubblewrap). Each test backs a claim in
//! docs/security.md. Needs root; see harness/mod.rs.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::pamtester as harness;

use std::os::unix::fs::{PermissionsExt, symlink};

use harness::{Run, Sandbox, now};
use libhosthog::format::{CHECKSUM_OFFSET, checksum};
use libhosthog::{Mode, Notice, Reservation, ReservationId, State, encode, utmp_record};

const SERVICE: &str = "hosthog-test";

fn reservation(id: u64, owner: &str, span: (i64, i64), mode: Mode, comment: &str) -> Reservation {
    Reservation {
        id: ReservationId(id),
        owner: owner.into(),
        with: vec!["withbbbbb".into()],
        start: span.0,
        end: span.1,
        mode,
        comment: comment.into(),
        created: span.0 - 1000,
        updated: span.0 - 1000,
    }
}

/// Placeholders in the encoded table and what an attacker with raw write
/// access would put there instead (padded to the same byte length): CSI and OSC
/// sequences, BEL, a UTF-8 C1 CSI, carriage return, a bidi override.
const SWAPS: [(&str, &str); 4] = [
    (
        "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
        "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31mX\r\u{202e}zz",
    ),
    ("NNNNNNNNNNNNNNNNNNNN", "\u{1b}[31mred\u{7}\u{1b}[0mxxxxx"),
    ("evilaaaaa", "e\u{1b}[2Jvil\u{7}"),
    ("withbbbbb", "w\u{1b}[5mith\u{7}"),
];

/// The bytes every output is checked for: ESC, BEL, CR, C1 CSI, a bidi
/// override, and U+FFFD (a raw byte that was not UTF-8).
const FORBIDDEN: [char; 6] = ['\u{1b}', '\u{7}', '\r', '\u{9b}', '\u{202e}', '\u{fffd}'];

/// A table only a hand (or a bug) could write: the writer refuses control
/// characters, so the state is encoded with placeholders that are then
/// swapped for escape sequences in the raw bytes, and the checksum is
/// recomputed.
pub fn hostile_table(now: i64) -> Vec<u8> {
    let state = State {
        reservations: vec![
            reservation(
                0xe5c0_0000_0000_0001,
                "evilaaaaa",
                (now - 600, now + 3600),
                Mode::Exclusive,
                SWAPS[0].0,
            ),
            reservation(
                0xe5c0_0000_0000_0002,
                "evilaaaaa",
                (now + 4000, now + 5000),
                Mode::Shared,
                SWAPS[0].0,
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
        assert!(to.len() <= from.len(), "{to:?}");
        let to = format!("{to}{}", "x".repeat(from.len() - to.len()));
        let mut at = 0;
        let mut found = false;
        while let Some(i) = find(&bytes[at..], from.as_bytes()) {
            let i = at + i;
            bytes[i..i + from.len()].copy_from_slice(to.as_bytes());
            at = i + from.len();
            found = true;
        }
        assert!(found, "{from} not in the encoded table");
    }
    let sum = checksum(&bytes).to_le_bytes();
    bytes[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&sum);
    bytes
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[track_caller]
fn assert_clean(text: &str, what: &str) {
    for c in FORBIDDEN {
        assert!(
            !text.contains(c),
            "{what}: {:?} reached the terminal in {text:?}",
            c
        );
    }
}

#[track_caller]
fn assert_run_clean(run: &Run, what: &str) {
    assert_clean(&run.stdout, what);
    assert_clean(&run.stderr, what);
    for line in &run.log {
        assert_clean(line, what);
    }
}

#[test]
fn escape_sequences_in_a_raw_table_never_reach_a_terminal() {
    let sandbox = Sandbox::new();
    let now = now();
    let bytes = hostile_table(now);
    // The table is valid as far as the parser is concerned: the escapes get
    // through parsing and must be stopped at display.
    let table = libhosthog::Table::parse(&bytes).expect("the hostile table parses");
    assert!(table.reservations().any(|r| r.comment().contains('\u{1b}')));
    sandbox.write_table_bytes(&bytes);
    sandbox.hosthog_service(SERVICE, "");
    // Session summary: utmp may carry a hostile host name too (a reverse
    // DNS name, a forwarded X display).
    let me = std::process::id() as i32;
    sandbox.write_utmp(
        &[
            utmp_record(
                libc::USER_PROCESS,
                me,
                "pts/1",
                "carol",
                "h\u{1b}[2Jost\u{7}",
            ),
            utmp_record(libc::USER_PROCESS, me, "pts/\u{1b}9", "d\u{1b}]0;x", ""),
        ]
        .concat(),
    );

    // The denial message (account) for someone not on the reservation.
    let run = sandbox.pamtester(&[SERVICE, "bob", "acct_mgmt"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("reserved exclusively by"), "{run:#?}");
    assert!(run.stderr.contains("?[2J?]0;pwned??31mX??zz"), "{run:#?}");
    assert_run_clean(&run, "denial");

    // What the remote side controls (PAM_RHOST, PAM_TTY, PAM_RUSER) goes
    // into the refusal's syslog line: sanitized too.
    let run = sandbox.pamtester(&[
        "-I",
        "rhost=h\u{1b}[2Jost\u{7}",
        "-I",
        "tty=pts/\u{1b}]0;x\u{7}",
        "-I",
        "ruser=r\u{9b}1m",
        SERVICE,
        "bob",
        "acct_mgmt",
    ]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.log.iter().any(|l| l.contains("from h?[2Jost?")),
        "{run:#?}"
    );
    assert_run_clean(&run, "remote items in the log");

    // The session summary, for a user who gets in and for root.
    for user in ["root", "carol"] {
        let run = sandbox.pamtester(&[SERVICE, user, "open_session"]);
        assert_eq!(run.code, Some(0), "{run:#?}");
        assert!(run.stdout.contains("hosthog: now:"), "{run:#?}");
        assert!(run.stdout.contains("?[31mred??[0m"), "{run:#?}");
        assert_run_clean(&run, "session summary");
    }
}

#[test]
fn root_always_gets_in() {
    let sandbox = Sandbox::new();
    let now = now();
    let table = sandbox.table();
    let exclusive = State {
        reservations: vec![reservation(
            0xa11c_e000_0000_0001,
            "alice",
            (now - 600, now + 3600),
            Mode::Exclusive,
            "mine",
        )],
        ..State::default()
    };
    type Spoil<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Spoil<'_>)> = vec![
        ("someone else's exclusive reservation", Box::new(|| {})),
        (
            "a corrupt table",
            Box::new(|| {
                let mut bytes = std::fs::read(sandbox.table()).unwrap();
                let last = bytes.len() - 1;
                bytes[last] ^= 0xff;
                sandbox.write_table_bytes(&bytes);
            }),
        ),
        (
            "a table owned by a user",
            Box::new(|| std::os::unix::fs::chown(sandbox.table(), Some(1000), None).unwrap()),
        ),
        (
            "a table of mode 0666",
            Box::new(|| {
                std::fs::set_permissions(sandbox.table(), std::fs::Permissions::from_mode(0o666))
                    .unwrap()
            }),
        ),
        (
            "a symlinked table",
            Box::new(|| {
                let real = sandbox.path().join("real-table");
                std::fs::rename(sandbox.table(), &real).unwrap();
                symlink(&real, sandbox.table()).unwrap();
            }),
        ),
        (
            "a FIFO at the table's path",
            Box::new(|| {
                std::fs::remove_file(sandbox.table()).unwrap();
                let path = std::ffi::CString::new(sandbox.table().to_str().unwrap()).unwrap();
                // SAFETY: path is a valid NUL-terminated string.
                assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
            }),
        ),
        (
            "a table larger than the 64 MiB limit",
            Box::new(|| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(sandbox.table())
                    .unwrap();
                f.set_len(libhosthog::limits::MAX_TABLE_BYTES + 1).unwrap();
            }),
        ),
        (
            "a group-writable state directory",
            Box::new(|| {
                std::fs::set_permissions(
                    table.parent().unwrap(),
                    std::fs::Permissions::from_mode(0o775),
                )
                .unwrap()
            }),
        ),
        (
            "a missing state directory",
            Box::new(|| {
                std::fs::rename(table.parent().unwrap(), sandbox.path().join("gone")).unwrap()
            }),
        ),
    ];
    for (what, spoil) in cases {
        let state_dir = table.parent().unwrap();
        if !state_dir.exists() {
            std::fs::rename(sandbox.path().join("gone"), state_dir).unwrap();
        }
        std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _ = std::fs::remove_file(&table);
        sandbox.write_table(&exclusive);
        spoil();
        sandbox.hosthog_service(SERVICE, "on_error=deny");
        let started = std::time::Instant::now();
        let run = sandbox.pamtester(&[SERVICE, "root", "acct_mgmt", "open_session"]);
        assert_eq!(run.code, Some(0), "root, {what}: {run:#?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{what}: the login hung"
        );
        // bob does not get in: either alice's reservation or the error
        // (on_error=deny) refuses him.
        let run = sandbox.pamtester(&[SERVICE, "bob", "acct_mgmt"]);
        assert_eq!(run.code, Some(1), "bob, {what}: {run:#?}");
    }
}

#[test]
fn a_table_hard_linked_to_a_file_a_user_owns_is_refused() {
    // With fs.protected_hardlinks off, a user can hard-link a root-owned
    // file; what matters is the file's owner, which the module checks.
    let sandbox = Sandbox::new();
    let now = now();
    let user_file = sandbox.path().join("state/users-file");
    let state = State {
        reservations: vec![reservation(
            1,
            "bob",
            (now - 600, now + 3600),
            Mode::Exclusive,
            "bob's own table",
        )],
        ..State::default()
    };
    std::fs::write(&user_file, encode(&state).unwrap()).unwrap();
    std::os::unix::fs::chown(&user_file, Some(1000), Some(1000)).unwrap();
    std::fs::hard_link(&user_file, sandbox.table()).unwrap();
    sandbox.hosthog_service(SERVICE, "on_error=allow");
    // alice would be locked out by the forged table; it is not used.
    let run = sandbox.pamtester(&[SERVICE, "alice", "acct_mgmt"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(
        run.log
            .iter()
            .any(|l| l.contains("the table is owned by uid 1000, not uid 0; refusing it")),
        "{run:#?}"
    );
}
