//! pam_hosthog against hostile tables and a hostile state directory, through
//! the real libpam (pamtester in bubblewrap). Each test backs a claim in
//! docs/security.md. Needs root; see harness/mod.rs.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::pamtester as harness;

use std::os::unix::fs::{PermissionsExt, symlink};

use harness::{Run, Sandbox, now};
use libhosthog::format::{CHECKSUM_OFFSET, Changes, checksum, encode_delta};
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

    // What the remote side controls (PAM_RHOST, PAM_TTY) goes into the
    // refusal's syslog line: sanitized too. (PAM_RUSER is never logged.)
    let run = sandbox.pamtester(&[
        "-I",
        "rhost=h\u{1b}[2Jost\u{7}",
        "-I",
        "tty=pts/\u{1b}]0;x\u{7}",
        SERVICE,
        "bob",
        "acct_mgmt",
    ]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.log
            .iter()
            .any(|l| l.contains("tty pts/?]0;x?, from h?[2Jost?)")),
        "{run:#?}"
    );
    assert_run_clean(&run, "remote items in the log");

    // The session summary, for a user who gets in and for root.
    for user in ["root", "carol"] {
        let run = sandbox.pamtester(&[SERVICE, user, "open_session"]);
        assert_eq!(run.code, Some(0), "{run:#?}");
        assert!(run.stdout.contains("hosthog: now:"), "{run:#?}");
        assert!(run.stdout.contains("?[31mred??[0m"), "{run:#?}");
        // The hostile utmp user and line fields are shown, sanitized.
        assert!(run.stdout.contains("d?]0;x (pts/?9)"), "{run:#?}");
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
    // Every spoiled table below holds an exclusive reservation of bob's own,
    // so a module that read a spoiled table instead of refusing it would let
    // bob in: bob's refusal then shows the error path, not a reservation.
    let bobs = State {
        reservations: vec![reservation(
            0xb0b0_0000_0000_0001,
            "bob",
            (now - 600, now + 3600),
            Mode::Exclusive,
            "bob's own",
        )],
        ..State::default()
    };
    sandbox.write_table(&bobs);
    sandbox.hosthog_service(SERVICE, "on_error=deny");
    let run = sandbox.pamtester(&[SERVICE, "bob", "acct_mgmt"]);
    assert_eq!(run.code, Some(0), "bob, his own table, unspoiled: {run:#?}");
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
        let spoiled = what != "someone else's exclusive reservation";
        sandbox.write_table(if spoiled { &bobs } else { &exclusive });
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
        if spoiled {
            // Refused by the error path (on_error=deny), not by a reservation.
            assert!(
                run.log
                    .iter()
                    .any(|l| l.contains("refusing") && l.contains("(on_error=deny)")),
                "bob, {what}: no on_error=deny refusal in the log: {run:#?}"
            );
        }
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

/// A full table (generation 5: alice holds the host exclusively) and a change
/// file for it (generation 6: alice's reservation removed, bob's exclusive
/// one added). `base_generation` is the full table the change file says it
/// belongs to.
fn table_and_change_file(now: i64, base_generation: u64) -> (Vec<u8>, Vec<u8>) {
    let alice = reservation(
        0xa11c_e000_0000_0005,
        "alice",
        (now - 600, now + 3600),
        Mode::Exclusive,
        "alice's",
    );
    let bob = reservation(
        0xb0b0_0000_0000_0006,
        "bob",
        (now - 600, now + 3600),
        Mode::Exclusive,
        "bob's, from the change file",
    );
    let base = State {
        generation: 5,
        reservations: vec![alice.clone()],
        ..State::default()
    };
    let new = State {
        generation: base_generation + 1,
        reservations: vec![bob.clone()],
        ..State::default()
    };
    let changes = Changes {
        base_generation,
        changed: &[&bob],
        removed: &[&alice],
    };
    (
        libhosthog::encode_at(&base, now - 60).unwrap(),
        encode_delta(&new, &changes, now - 30).unwrap(),
    )
}

/// A change file `table.delta` beside the table, through the real libpam: a
/// valid one is read (its reservation, not the full table's, decides), and one
/// that is a symlink, owned by a user, group- or other-writable, a FIFO, or for
/// a newer full table than the one beside it is an error (`on_error=deny`:
/// bob refused by the error path although the change file would let him in;
/// root still gets in), and no login hangs (the harness gives each pamtester
/// run a deadline).
#[test]
fn a_change_file_is_read_and_held_to_the_tables_rules() {
    let sandbox = Sandbox::new();
    let now = now();
    let table = sandbox.table();
    let delta = libhosthog::delta_path(&table);
    sandbox.hosthog_service(SERVICE, "on_error=deny");
    let (base, change) = table_and_change_file(now, 5);

    // Without the change file alice's reservation refuses bob; with it, bob's
    // lets him in and refuses alice, naming bob.
    sandbox.write_table_bytes(&base);
    let run = sandbox.pamtester(&[SERVICE, "bob", "acct_mgmt"]);
    assert_eq!(run.code, Some(1), "bob, full table alone: {run:#?}");
    let write_delta = |bytes: &[u8]| {
        let _ = std::fs::remove_file(&delta);
        std::fs::write(&delta, bytes).unwrap();
        std::fs::set_permissions(&delta, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    write_delta(&change);
    let run = sandbox.pamtester(&[SERVICE, "bob", "acct_mgmt"]);
    assert_eq!(run.code, Some(0), "bob, with the change file: {run:#?}");
    let run = sandbox.pamtester(&[SERVICE, "alice", "acct_mgmt"]);
    assert_eq!(run.code, Some(1), "alice, with the change file: {run:#?}");
    assert!(
        run.log
            .iter()
            .any(|l| l.contains("refused alice") && l.contains("reserved exclusively by bob")),
        "alice's refusal does not name bob's reservation from the change file: {run:#?}"
    );

    type Spoil<'a> = Box<dyn Fn() + 'a>;
    let (_, for_newer) = table_and_change_file(now, 9);
    let cases: Vec<(&str, &str, Spoil<'_>)> = vec![
        (
            "a symlinked change file",
            "symbolic link",
            Box::new(|| {
                let real = sandbox.path().join("state/real-delta");
                std::fs::write(&real, &change).unwrap();
                let _ = std::fs::remove_file(&delta);
                symlink(&real, &delta).unwrap();
            }),
        ),
        (
            "a change file owned by a user",
            "owned by uid 1000",
            Box::new(|| {
                write_delta(&change);
                std::os::unix::fs::chown(&delta, Some(1000), None).unwrap();
            }),
        ),
        (
            "a group-writable change file",
            "writable by group or others",
            Box::new(|| {
                write_delta(&change);
                std::fs::set_permissions(&delta, std::fs::Permissions::from_mode(0o664)).unwrap();
            }),
        ),
        (
            "an other-writable change file",
            "writable by group or others",
            Box::new(|| {
                write_delta(&change);
                std::fs::set_permissions(&delta, std::fs::Permissions::from_mode(0o646)).unwrap();
            }),
        ),
        (
            "a FIFO at the change file's path",
            "not a regular file",
            Box::new(|| {
                let _ = std::fs::remove_file(&delta);
                let path = std::ffi::CString::new(delta.to_str().unwrap()).unwrap();
                // SAFETY: path is a valid NUL-terminated string.
                assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
            }),
        ),
        (
            "a change file for a newer full table",
            "newer than the table's 5",
            Box::new(|| write_delta(&for_newer)),
        ),
    ];
    for (what, reason, spoil) in cases {
        sandbox.write_table_bytes(&base);
        spoil();
        let run = sandbox.pamtester(&[SERVICE, "bob", "acct_mgmt"]);
        assert_eq!(run.code, Some(1), "bob, {what}: {run:#?}");
        assert!(
            run.log.iter().any(|l| l.contains(reason)
                && l.contains("refusing bob")
                && l.contains("(on_error=deny)")),
            "bob, {what}: no on_error=deny refusal saying {reason:?} in the log: {run:#?}"
        );
        let run = sandbox.pamtester(&[SERVICE, "root", "acct_mgmt", "open_session"]);
        assert_eq!(run.code, Some(0), "root, {what}: {run:#?}");
    }
}
