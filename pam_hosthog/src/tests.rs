//! Unit tests: the hooks' logic replayed against a scripted handle. The
//! same paths through real libpam are in tests/pamtester.rs.

use std::ffi::{CStr, CString};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use jiff::tz::TimeZone;
use libhosthog::{Mode, Notice, Reservation, ReservationId, State, encode};

use super::*;
use crate::handle::Script;

// 2027-01-15 08:00:00 UTC
const T0: i64 = 1_800_000_000;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(state: &State) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { dir };
        f.write(&encode(state).unwrap());
        f
    }

    fn table(&self) -> PathBuf {
        self.dir.path().join("table")
    }

    fn write(&self, bytes: &[u8]) {
        std::fs::write(self.table(), bytes).unwrap();
        std::fs::set_permissions(self.table(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    fn options(&self) -> Options<'_> {
        Options {
            // SAFETY: geteuid has no preconditions.
            table_owner: unsafe { libc::geteuid() },
            utmp: Path::new("/nonexistent/utmp"),
            ..Options::default()
        }
    }
}

fn state() -> State {
    State {
        reservations: vec![Reservation {
            id: ReservationId(0xa11ce000_00000001),
            owner: "alice".into(),
            with: vec!["carol".into()],
            start: T0,
            end: T0 + 3600,
            mode: Mode::Exclusive,
            comment: "paper benchmarks".into(),
            created: 0,
            updated: 0,
        }],
        exempt: vec!["monitor".into()],
        notices: vec![Notice {
            id: 1,
            author: "root".into(),
            text: "kernel update Tue 09:00".into(),
            start: 0,
            end: i64::MAX,
            created: 0,
        }],
        ..State::default()
    }
}

const BOB_REFUSED: &str = "hosthog: this host is reserved exclusively by alice until 09:00 UTC for \"paper benchmarks\".\n\
     bob is not on that reservation, so this login is refused.\n\
     To get in, ask alice to run: hosthog share a11ce000 bob\n\
     If it is urgent and alice cannot be reached, ask an admin of this host.";

fn account_as(user: &str, opts: &Options<'_>, flags: c_int) -> (PamResultCode, Script) {
    let mut h = Script::new(user, "sshd");
    h.items.rhost = Some("10.0.0.5".into());
    h.items.tty = Some("ssh".into());
    let code = account(&mut h, opts, flags, T0 + 60, || TimeZone::UTC);
    (code, h)
}

#[test]
fn parse_args_defaults_values_and_unknowns() {
    let raw: Vec<CString> = [
        "table=/srv/hosthog/table",
        "on_error=deny",
        "services=sshd,login",
        "exempt=backup,,nagios",
        "quiet",
        "debug",
        "bogus",
        "on_error=maybe",
        "table=relative",
    ]
    .iter()
    .map(|s| CString::new(*s).unwrap())
    .collect();
    let args: Vec<&CStr> = raw.iter().map(|s| s.as_c_str()).collect();
    let mut h = Script::new("bob", "sshd");
    let opts = parse_args(&args, &mut h);
    assert_eq!(opts.table, Path::new("/srv/hosthog/table"));
    assert_eq!(opts.on_error, OnError::Deny);
    assert_eq!(opts.services, Some(vec!["sshd", "login"]));
    assert_eq!(opts.exempt, ["backup", "nagios"]);
    assert!(opts.quiet && opts.debug);
    assert_eq!(
        h.log,
        [
            (Priority::Err, "unknown option: bogus; ignored".to_string()),
            (
                Priority::Err,
                "invalid option: on_error=maybe (table= takes an absolute path, on_error= allow or deny); ignored".to_string()
            ),
            (
                Priority::Err,
                "invalid option: table=relative (table= takes an absolute path, on_error= allow or deny); ignored".to_string()
            ),
        ]
    );

    let defaults = parse_args(&[], &mut h);
    assert_eq!(defaults.table, Path::new("/var/lib/hosthog/table"));
    assert_eq!(defaults.on_error, OnError::Allow);
    assert_eq!(defaults.services, None);
    assert!(defaults.exempt.is_empty() && !defaults.quiet && !defaults.debug);
}

#[test]
fn refusal_is_one_error_message_and_one_log_line() {
    let f = Fixture::new(&state());
    let opts = Options {
        table: &f.table(),
        ..f.options()
    };
    let (code, h) = account_as("bob", &opts, 0);
    assert_eq!(code, PamResultCode::PAM_PERM_DENIED);
    assert_eq!(h.messages, [("error", BOB_REFUSED.to_string())]);
    assert_eq!(
        h.log,
        [(
            Priority::Notice,
            "refused bob (service sshd, tty ssh, from 10.0.0.5): reserved exclusively by alice \
             until 2027-01-15T09:00:00Z (reservation a11ce00000000001)"
                .to_string()
        )]
    );

    // PAM_SILENT: still refused and logged, but nothing on the terminal.
    let (code, h) = account_as("bob", &opts, PAM_SILENT as c_int);
    assert_eq!(code, PamResultCode::PAM_PERM_DENIED);
    assert!(h.messages.is_empty());
    assert_eq!(h.log.len(), 1);
}

#[test]
fn allowed_users_get_pam_ignore_silently() {
    let f = Fixture::new(&state());
    let table = f.table();
    let opts = Options {
        table: &table,
        exempt: vec!["backup"],
        ..f.options()
    };
    for user in ["alice", "carol", "root", "monitor", "backup"] {
        let (code, h) = account_as(user, &opts, 0);
        assert_eq!(code, PamResultCode::PAM_IGNORE, "{user}");
        assert!(h.messages.is_empty() && h.log.is_empty(), "{user}: {h:?}");
    }
    // debug logs the reason.
    let opts = Options {
        debug: true,
        ..opts
    };
    let (_, h) = account_as("carol", &opts, 0);
    assert_eq!(
        h.log,
        [(
            Priority::Debug,
            "carol (service sshd, tty ssh, from 10.0.0.5): allowed: co-user of reservation a11ce00000000001"
                .to_string()
        )]
    );
}

#[test]
fn services_limits_where_the_module_acts() {
    let f = Fixture::new(&state());
    let table = f.table();
    let opts = Options {
        table: &table,
        services: Some(vec!["login"]),
        ..f.options()
    };
    let (code, h) = account_as("bob", &opts, 0);
    assert_eq!(code, PamResultCode::PAM_IGNORE);
    assert!(h.messages.is_empty() && h.log.is_empty());
}

#[test]
fn no_user_is_user_unknown() {
    let f = Fixture::new(&state());
    let table = f.table();
    let opts = Options {
        table: &table,
        ..f.options()
    };
    let mut h = Script::new("", "sshd");
    h.items.user = None;
    let code = account(&mut h, &opts, 0, T0, || TimeZone::UTC);
    assert_eq!(code, PamResultCode::PAM_USER_UNKNOWN);
    let mut h = Script::new("", "sshd");
    let code = account(&mut h, &opts, 0, T0, || TimeZone::UTC);
    assert_eq!(code, PamResultCode::PAM_USER_UNKNOWN);
}

#[test]
fn missing_table_is_nobody_reserved_but_missing_directory_is_an_error() {
    let f = Fixture::new(&state());
    std::fs::remove_file(f.table()).unwrap();
    let table = f.table();
    let opts = Options {
        table: &table,
        on_error: OnError::Deny,
        ..f.options()
    };
    let (code, h) = account_as("bob", &opts, 0);
    assert_eq!(code, PamResultCode::PAM_IGNORE);
    assert!(h.messages.is_empty() && h.log.is_empty());

    let nowhere = f.dir.path().join("nowhere/table");
    let opts = Options {
        table: &nowhere,
        ..opts
    };
    let (code, h) = account_as("bob", &opts, 0);
    assert_eq!(code, PamResultCode::PAM_PERM_DENIED);
    assert_eq!(h.log.len(), 1);
    assert!(
        h.log[0].1.starts_with(&format!(
            "{}: cannot open the table: No such file or directory",
            nowhere.display()
        )),
        "{:?}",
        h.log
    );
}

#[test]
fn corrupt_table_follows_on_error_but_root_and_exempt_get_in() {
    let f = Fixture::new(&state());
    let mut bytes = encode(&state()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    f.write(&bytes);
    let table = f.table();
    let opts = Options {
        table: &table,
        exempt: vec!["backup"],
        ..f.options()
    };
    let (code, h) = account_as("bob", &opts, 0);
    assert_eq!(code, PamResultCode::PAM_IGNORE);
    assert!(h.messages.is_empty());
    assert_eq!(
        h.log,
        [(
            Priority::Err,
            format!(
                "{}: checksum mismatch; allowing bob (service sshd, tty ssh, from 10.0.0.5) (on_error=allow)",
                table.display()
            )
        )]
    );

    let opts = Options {
        on_error: OnError::Deny,
        ..opts
    };
    let (code, h) = account_as("bob", &opts, 0);
    assert_eq!(code, PamResultCode::PAM_PERM_DENIED);
    assert_eq!(
        h.messages,
        [(
            "error",
            "hosthog: logins are refused because the reservation table cannot be read.\n\
             Ask an administrator (the reason is in the system log)."
                .to_string()
        )]
    );
    assert!(
        h.log[0]
            .1
            .ends_with("refusing bob (service sshd, tty ssh, from 10.0.0.5) (on_error=deny)")
    );
    for user in ["root", "backup"] {
        let (code, h) = account_as(user, &opts, 0);
        assert_eq!(code, PamResultCode::PAM_IGNORE, "{user}");
        assert!(h.messages.is_empty());
        assert!(h.log[0].1.contains("; allowing exempt"), "{:?}", h.log);
    }
}

#[test]
fn insecure_table_is_an_error() {
    let f = Fixture::new(&state());
    std::fs::set_permissions(f.table(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let table = f.table();
    let opts = Options {
        table: &table,
        on_error: OnError::Deny,
        ..f.options()
    };
    let (code, h) = account_as("alice", &opts, 0);
    assert_eq!(code, PamResultCode::PAM_PERM_DENIED);
    assert!(
        h.log[0]
            .1
            .contains("the table has mode 0666: writable by group or others; refusing it"),
        "{:?}",
        h.log
    );
}

fn session_as(user: &str, opts: &Options<'_>, flags: c_int) -> (PamResultCode, Script) {
    let mut h = Script::new(user, "sshd");
    let code = open_session(&mut h, opts, flags, T0 + 60, || TimeZone::UTC);
    (code, h)
}

#[test]
fn session_summary_names_holder_others_and_notices() {
    let f = Fixture::new(&state());
    let utmp = f.dir.path().join("utmp");
    let me = std::process::id() as i32;
    let mut records = Vec::new();
    records.extend(libhosthog::utmp_record(7, me, "pts/1", "alice", "10.0.0.1"));
    records.extend(libhosthog::utmp_record(7, me, "tty2", "carol", ""));
    // A stale record: its process is gone.
    records.extend(libhosthog::utmp_record(7, i32::MAX, "pts/7", "ghost", ""));
    std::fs::write(&utmp, records).unwrap();
    let table = f.table();
    let opts = Options {
        table: &table,
        utmp: &utmp,
        ..f.options()
    };
    let (code, h) = session_as("carol", &opts, 0);
    assert_eq!(code, PamResultCode::PAM_IGNORE);
    assert_eq!(
        h.messages,
        [(
            "info",
            "hosthog: now: reserved exclusively by alice with you until 09:00 UTC for \"paper benchmarks\"; you are on it.\n\
             hosthog: also logged in: alice (pts/1 from 10.0.0.1).\n\
             hosthog: notice from root: kernel update Tue 09:00"
                .to_string()
        )]
    );
    assert!(h.log.is_empty());

    for (opts, flags) in [
        (
            Options {
                quiet: true,
                ..opts.clone()
            },
            0,
        ),
        (opts.clone(), PAM_SILENT as c_int),
    ] {
        let (code, h) = session_as("carol", &opts, flags);
        assert_eq!(code, PamResultCode::PAM_IGNORE);
        assert!(h.messages.is_empty() && h.log.is_empty());
    }
}

#[test]
fn session_with_an_unreadable_table() {
    let f = Fixture::new(&state());
    f.write(b"garbage");
    let table = f.table();
    let opts = Options {
        table: &table,
        ..f.options()
    };
    let (code, h) = session_as("bob", &opts, 0);
    assert_eq!(code, PamResultCode::PAM_IGNORE);
    assert_eq!(h.log.len(), 1);
    assert_eq!(
        h.messages,
        [(
            "info",
            "hosthog: reservations cannot be shown: the table cannot be read (an administrator can find why in the system log).\n\
             hosthog: nobody else is logged in."
                .to_string()
        )]
    );
    let opts = Options {
        on_error: OnError::Deny,
        ..opts
    };
    let (code, _) = session_as("bob", &opts, 0);
    assert_eq!(code, PamResultCode::PAM_SESSION_ERR);
}
