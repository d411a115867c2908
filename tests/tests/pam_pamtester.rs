//! pam_hosthog through the real libpam: pamtester, a private /etc/pam.d
//! (bubblewrap), exact exit statuses, terminal text and syslog lines.
//! Needs root; see harness/mod.rs.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::pamtester as harness;

use std::os::unix::fs::{PermissionsExt, symlink};

use harness::{Run, Sandbox, now};
use jiff::tz::TimeZone;
use libhosthog::{Mode, Notice, Reservation, ReservationId, State, format_instant, utmp_record};

const SERVICE: &str = "hosthog-test";
const DONE: &str = "pamtester: account management done.\n";
const DENIED: &str = "pamtester: Permission denied\n";

fn reservation(id: u64, owner: &str, with: &[&str], span: (i64, i64), mode: Mode) -> Reservation {
    Reservation {
        id: ReservationId(id),
        owner: owner.into(),
        with: with.iter().map(|u| u.to_string()).collect(),
        start: span.0,
        end: span.1,
        mode,
        comment: "paper benchmarks".into(),
        created: span.0 - 1000,
        updated: span.0 - 1000,
    }
}

/// alice holds the host exclusively, with carol, for the next hour;
/// monitor is on the table's exemption list.
fn exclusive(now: i64) -> State {
    State {
        reservations: vec![reservation(
            0xa11ce000_00000001,
            "alice",
            &["carol"],
            (now - 600, now + 3600),
            Mode::Exclusive,
        )],
        exempt: vec!["monitor".into()],
        notices: vec![Notice {
            id: 1,
            author: "root".into(),
            text: "kernel update Tue 09:00".into(),
            start: now - 3600,
            end: i64::MAX,
            created: now - 3600,
        }],
        ..State::default()
    }
}

fn refusal_text(user: &str, now: i64) -> String {
    format!(
        "hosthog: this host is reserved exclusively by alice until {} for \"paper benchmarks\".\n\
         {user} is not on that reservation, so this login is refused.\n\
         To get in, ask alice to run: hosthog share a11ce000 {user}\n\
         If it is urgent and alice cannot be reached, ask an admin of this host.\n",
        format_instant(now + 3600, now, &TimeZone::UTC)
    )
}

fn refusal_log(user: &str, now: i64, from: &str) -> String {
    let end = jiff::Timestamp::from_second(now + 3600).unwrap();
    format!(
        "<85> pamtester: pam_hosthog({SERVICE}:account): refused {user} (service {SERVICE}{from}): \
         reserved exclusively by alice until {end} (reservation a11ce00000000001)"
    )
}

fn account(sandbox: &Sandbox, user: &str) -> Run {
    sandbox.pamtester(&[SERVICE, user, "acct_mgmt"])
}

#[track_caller]
fn assert_allowed_silently(run: &Run, what: &str) {
    assert_eq!(run.code, Some(0), "{what}: {run:#?}");
    assert_eq!(run.stdout, DONE, "{what}");
    assert_eq!(run.stderr, "", "{what}");
    assert!(run.log.is_empty(), "{what}: {:#?}", run.log);
}

#[test]
fn someone_elses_exclusive_reservation_refuses_with_one_message() {
    let sandbox = Sandbox::new();
    let now = now();
    sandbox.write_table(&exclusive(now));
    sandbox.hosthog_service(SERVICE, "");

    let run = sandbox.pamtester(&[
        "-I",
        "rhost=192.0.2.7",
        "-I",
        "tty=ssh",
        SERVICE,
        "bob",
        "acct_mgmt",
    ]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, format!("{}{DENIED}", refusal_text("bob", now)));
    assert_eq!(
        run.log,
        [refusal_log("bob", now, ", tty ssh, from 192.0.2.7")]
    );

    // PAM_SILENT: refused and logged, but no text.
    let run = sandbox.pamtester(&[SERVICE, "bob", "acct_mgmt(PAM_SILENT)"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stderr, DENIED);
    assert_eq!(run.log, [refusal_log("bob", now, "")]);
}

#[test]
fn holder_co_user_exempt_and_root_get_in() {
    let sandbox = Sandbox::new();
    let now = now();
    sandbox.write_table(&exclusive(now));
    sandbox.hosthog_service(SERVICE, "exempt=backup,nagios");
    for user in ["alice", "carol", "monitor", "backup", "nagios", "root"] {
        assert_allowed_silently(&account(&sandbox, user), user);
    }
    // Names that merely resemble a member are not members.
    for user in ["alic", "alicea", "Alice"] {
        let run = account(&sandbox, user);
        assert_eq!(run.code, Some(1), "{user}: {run:#?}");
        assert_eq!(run.stderr, format!("{}{DENIED}", refusal_text(user, now)));
    }
}

#[test]
fn shared_future_and_no_reservations_let_everyone_in() {
    let sandbox = Sandbox::new();
    let now = now();
    sandbox.hosthog_service(SERVICE, "on_error=deny");
    let cases = [
        (
            "shared now",
            vec![reservation(
                1,
                "erin",
                &[],
                (now - 60, now + 3600),
                Mode::Shared,
            )],
        ),
        (
            "exclusive later",
            vec![reservation(
                2,
                "alice",
                &[],
                (now + 3600, now + 7200),
                Mode::Exclusive,
            )],
        ),
        (
            "exclusive ended",
            vec![reservation(
                3,
                "alice",
                &[],
                (now - 7200, now - 1),
                Mode::Exclusive,
            )],
        ),
        ("empty table", vec![]),
    ];
    for (what, reservations) in cases {
        sandbox.write_table(&State {
            reservations,
            ..State::default()
        });
        assert_allowed_silently(&account(&sandbox, "bob"), what);
    }
    // No table at all in the state directory: nobody has reserved yet.
    std::fs::remove_file(sandbox.table()).unwrap();
    assert_allowed_silently(&account(&sandbox, "bob"), "no table");
}

#[test]
fn services_limits_the_module_to_the_named_services() {
    let sandbox = Sandbox::new();
    let now = now();
    sandbox.write_table(&exclusive(now));
    sandbox.hosthog_service(SERVICE, "services=sshd,login");
    assert_allowed_silently(&account(&sandbox, "bob"), "services=sshd,login");
    sandbox.hosthog_service(SERVICE, &format!("services=sshd,{SERVICE}"));
    assert_eq!(account(&sandbox, "bob").code, Some(1));
}

#[test]
fn unknown_options_are_logged_and_ignored() {
    let sandbox = Sandbox::new();
    let now = now();
    sandbox.write_table(&exclusive(now));
    sandbox.hosthog_service(SERVICE, "bogus on_error=sometimes");
    let run = account(&sandbox, "alice");
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.log,
        [
            format!(
                "<83> pamtester: pam_hosthog({SERVICE}:account): unknown option: bogus; ignored"
            ),
            format!(
                "<83> pamtester: pam_hosthog({SERVICE}:account): invalid option: on_error=sometimes \
                 (table= takes an absolute path, on_error= allow or deny); ignored"
            ),
        ]
    );
}

#[test]
fn a_corrupt_table_follows_on_error() {
    let sandbox = Sandbox::new();
    let now = now();
    let mut bytes = libhosthog::encode(&exclusive(now)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    sandbox.write_table_bytes(&bytes);
    let table = sandbox.table();
    let table = table.display();

    sandbox.hosthog_service(SERVICE, "on_error=allow");
    let run = account(&sandbox, "bob");
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), (DONE, ""));
    assert_eq!(
        run.log,
        [format!(
            "<83> pamtester: pam_hosthog({SERVICE}:account): {table}: checksum mismatch; \
             allowing bob (service {SERVICE}) (on_error=allow)"
        )]
    );

    sandbox.hosthog_service(SERVICE, "on_error=deny exempt=backup");
    let run = account(&sandbox, "bob");
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(
        run.stderr,
        format!(
            "hosthog: logins are refused because the reservation table cannot be read.\n\
             Ask an administrator (the reason is in the system log).\n{DENIED}"
        )
    );
    assert_eq!(
        run.log,
        [format!(
            "<83> pamtester: pam_hosthog({SERVICE}:account): {table}: checksum mismatch; \
             refusing bob (service {SERVICE}) (on_error=deny)"
        )]
    );
    // root and exempt= users do not depend on the table: an admin can
    // always get in to repair it.
    for user in ["root", "backup"] {
        let run = account(&sandbox, user);
        assert_eq!(run.code, Some(0), "{user}: {run:#?}");
        assert_eq!(run.stderr, "");
        assert_eq!(run.log.len(), 1);
        assert!(run.log[0].contains("; allowing exempt"), "{:?}", run.log);
    }
}

#[test]
fn an_insecure_table_is_an_error() {
    let sandbox = Sandbox::new();
    let now = now();
    let table = sandbox.table();
    let shown = table.display().to_string();
    type Spoil<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Spoil<'_>, String)> = vec![
        (
            "owned by uid 1000",
            Box::new(|| std::os::unix::fs::chown(sandbox.table(), Some(1000), Some(1000)).unwrap()),
            format!("{shown}: the table is owned by uid 1000, not uid 0; refusing it"),
        ),
        (
            "mode 0666",
            Box::new(|| {
                std::fs::set_permissions(sandbox.table(), std::fs::Permissions::from_mode(0o666))
                    .unwrap()
            }),
            format!("{shown}: the table has mode 0666: writable by group or others; refusing it"),
        ),
        (
            "a symlink",
            Box::new(|| {
                let real = sandbox.path().join("state/real-table");
                std::fs::rename(sandbox.table(), &real).unwrap();
                symlink(&real, sandbox.table()).unwrap();
            }),
            format!("{shown}: the table is a symbolic link; refusing it"),
        ),
    ];
    for (what, spoil, error) in cases {
        for (on_error, code, verdict) in [("allow", 0, "allowing"), ("deny", 1, "refusing")] {
            sandbox.write_table(&exclusive(now));
            spoil();
            sandbox.hosthog_service(SERVICE, &format!("on_error={on_error}"));
            // alice holds the reservation: only the error can refuse her.
            let run = account(&sandbox, "alice");
            assert_eq!(
                run.code,
                Some(code),
                "{what}, on_error={on_error}: {run:#?}"
            );
            assert_eq!(
                run.log,
                [format!(
                    "<83> pamtester: pam_hosthog({SERVICE}:account): {error}; \
                     {verdict} alice (service {SERVICE}) (on_error={on_error})"
                )],
                "{what}"
            );
        }
    }
}

#[test]
fn a_missing_state_directory_is_an_error() {
    let sandbox = Sandbox::new();
    let module = sandbox.module().display().to_string();
    let table = sandbox.path().join("nowhere/table");
    sandbox.service(
        SERVICE,
        &format!(
            "account requisite {module} table={} on_error=deny\naccount required pam_permit.so\n",
            table.display()
        ),
    );
    let run = account(&sandbox, "bob");
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(
        run.log,
        [format!(
            "<83> pamtester: pam_hosthog({SERVICE}:account): {}: cannot open the table: \
             No such file or directory (os error 2); refusing bob (service {SERVICE}) (on_error=deny)",
            table.display()
        )]
    );
}

#[test]
fn session_summary_text() {
    let sandbox = Sandbox::new();
    let now = now();
    sandbox.write_table(&exclusive(now));
    sandbox.hosthog_service(SERVICE, "");
    let me = std::process::id() as i32;
    sandbox.write_utmp(
        &[
            utmp_record(libc::USER_PROCESS, me, "pts/1", "alice", "10.0.0.1"),
            utmp_record(libc::USER_PROCESS, me, "tty2", "carol", ""),
            utmp_record(libc::USER_PROCESS, me, "pts/4", "dave", ""),
            utmp_record(libc::USER_PROCESS, me, "pts/5", "dave", "10.0.0.4"),
            // A record whose session process is gone is not shown.
            utmp_record(libc::USER_PROCESS, i32::MAX, "pts/7", "ghost", ""),
            utmp_record(libc::DEAD_PROCESS, me, "pts/8", "", ""),
        ]
        .concat(),
    );
    let until = format_instant(now + 3600, now, &TimeZone::UTC);
    let run = sandbox.pamtester(&[SERVICE, "carol", "open_session"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        run.stdout,
        format!(
            "hosthog: now: reserved exclusively by alice with you until {until} for \"paper benchmarks\"; you are on it.\n\
             hosthog: also logged in: alice (pts/1 from 10.0.0.1), dave (2 sessions).\n\
             hosthog: notice from root: kernel update Tue 09:00\n\
             pamtester: successfully opened a session\n"
        )
    );
    assert_eq!(run.stderr, "");
    assert!(run.log.is_empty(), "{:#?}", run.log);

    // root logged in during the reservation, told it is exempt.
    let run = sandbox.pamtester(&[SERVICE, "root", "open_session"]);
    assert!(
        run.stdout.starts_with(&format!(
            "hosthog: now: reserved exclusively by alice with carol until {until} for \"paper benchmarks\"; you are exempt from it.\n"
        )),
        "{run:#?}"
    );

    // Silent under PAM_SILENT and with quiet; close_session says nothing.
    let run = sandbox.pamtester(&[
        SERVICE,
        "carol",
        "open_session(PAM_SILENT)",
        "close_session",
    ]);
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.stdout,
        "pamtester: successfully opened a session\npamtester: session has successfully been closed.\n"
    );
    sandbox.hosthog_service(SERVICE, "quiet");
    let run = sandbox.pamtester(&[SERVICE, "carol", "open_session"]);
    assert_eq!(run.stdout, "pamtester: successfully opened a session\n");
    assert!(run.log.is_empty());
}

#[test]
fn session_with_no_table_and_with_a_corrupt_one() {
    let sandbox = Sandbox::new();
    sandbox.hosthog_service(SERVICE, "");
    let run = sandbox.pamtester(&[SERVICE, "bob", "open_session"]);
    assert_eq!(
        run.stdout,
        "hosthog: no reservation now.\nhosthog: nobody else is logged in.\n\
         pamtester: successfully opened a session\n"
    );
    sandbox.write_table_bytes(b"not a table");
    let run = sandbox.pamtester(&[SERVICE, "bob", "open_session"]);
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.stdout,
        "hosthog: reservations cannot be shown: the table cannot be read \
         (an administrator can find why in the system log).\n\
         hosthog: nobody else is logged in.\n\
         pamtester: successfully opened a session\n"
    );
    assert_eq!(run.log.len(), 1);
    assert!(run.log[0].starts_with(&format!("<83> pamtester: pam_hosthog({SERVICE}:session): ")));
}

#[test]
fn session_summary_uses_a_fresh_presence_snapshot() {
    use libhosthog::{Presence, Session, SessionKind};
    let sandbox = Sandbox::new();
    sandbox.hosthog_service(SERVICE, "");
    let me = std::process::id() as i32;
    sandbox.write_utmp(&utmp_record(
        libc::USER_PROCESS,
        me,
        "pts/1",
        "alice",
        "10.0.0.1",
    ));
    let session = |user: &str, uid, kind, tty: &str| Session {
        user: user.into(),
        uid,
        kind,
        pid: me,
        tty: tty.into(),
        from: String::new(),
        detail: String::new(),
    };
    let write_presence = |taken: i64, mode: u32| {
        let mut presence = Presence::new(taken);
        presence.sessions = vec![
            session("alice", 2001, SessionKind::Login, "pts/1"),
            session("alice", 2001, SessionKind::Gpu, ""),
            session("dave", 2004, SessionKind::Tmux, ""),
        ];
        let dir = sandbox.path().join("run/hosthog");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("presence.json");
        std::fs::write(&path, presence.encode().unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };

    // A fresh snapshot: tmux servers and GPU users show up too.
    write_presence(now(), 0o644);
    let run = sandbox.pamtester(&[SERVICE, "bob", "open_session"]);
    assert_eq!(
        run.stdout,
        "hosthog: no reservation now.\n\
         hosthog: also on this host: alice (pts/1, GPU), dave (tmux).\n\
         pamtester: successfully opened a session\n",
        "{run:#?}"
    );
    assert!(run.log.is_empty(), "{:#?}", run.log);

    // A stale one (hosthogd stopped long ago) is ignored: utmp alone.
    write_presence(now() - 3600, 0o644);
    let run = sandbox.pamtester(&[SERVICE, "bob", "open_session"]);
    assert_eq!(
        run.stdout,
        "hosthog: no reservation now.\n\
         hosthog: also logged in: alice (pts/1 from 10.0.0.1).\n\
         pamtester: successfully opened a session\n"
    );

    // One others could have written is not trusted, and that is logged.
    write_presence(now(), 0o666);
    let run = sandbox.pamtester(&[SERVICE, "bob", "open_session"]);
    assert!(
        run.stdout
            .contains("hosthog: also logged in: alice (pts/1 from 10.0.0.1).\n"),
        "{run:#?}"
    );
    assert_eq!(run.log.len(), 1, "{:#?}", run.log);
    assert!(run.log[0].contains("presence"), "{:#?}", run.log);
}
