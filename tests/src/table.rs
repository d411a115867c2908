//! hosthog reservation tables for the end-to-end tests, and the texts pam_hosthog shows
//! for them.
//!
//! Tables are written the way hosthogd writes them, through libhosthog's [`Store`], into
//! the test directory: [`TestHost::table_path`] is `<test dir>/table`, and the test
//! directory is owned by root and not group or world writable, as the module requires of
//! the table's directory.
//!
//! What the module shows depends on when it reads the clock: an end time on the same
//! local day reads `18:00 UTC`, another day `Tue 24 Nov 18:00 UTC`. Tests bracket each
//! login with [`bracket`] and accept the text for either end of the bracket
//! ([`Bracket::texts`]); the two differ only when a login straddles local midnight.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use libhosthog::{
    Decision, Mode, Reservation, ReservationId, State, Store, TableFile, Utmp, Who, decide,
    process_exists,
};

use crate::host::TestHost;
use crate::process::wait_until;

/// The current time in UTC seconds, as the module reads it.
#[allow(clippy::disallowed_methods)] // a test is an entry point: it reads the clock itself
pub fn now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds fit in i64")
}

/// The instants just before and just after something ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bracket {
    /// Read before.
    pub before: i64,
    /// Read after.
    pub after: i64,
}

/// Runs `f` between two clock reads.
pub fn bracket<T>(f: impl FnOnce() -> T) -> (T, Bracket) {
    let before = now();
    let out = f();
    let after = now();
    (out, Bracket { before, after })
}

impl Bracket {
    /// `text(t)` for both ends of the bracket, without duplicates: every text a module
    /// that read the clock in between can have produced (texts change at most once within
    /// a few seconds, at local midnight).
    pub fn texts(&self, text: impl Fn(i64) -> String) -> Vec<String> {
        let mut texts = vec![text(self.before)];
        let later = text(self.after);
        if !texts.contains(&later) {
            texts.push(later);
        }
        texts
    }
}

/// Fails unless `actual` is one of `expected` (with a diff-friendly message when there is
/// only one).
pub fn assert_one_of(actual: &str, expected: &[String], what: &str) {
    match expected {
        [one] => assert_eq!(actual, one, "{what}"),
        _ => assert!(
            expected.iter().any(|e| e == actual),
            "{what}: {actual:?} is none of {expected:#?}"
        ),
    }
}

/// The time zone the module formats times in. sshd and login run with an empty
/// environment, so jiff's `TimeZone::system()` inside the module finds no `TZ` and reads
/// `/etc/localtime`; this does the same, whatever `TZ` the test runner has.
pub fn module_time_zone() -> TimeZone {
    if std::env::var_os("TZ").is_none() {
        return TimeZone::system();
    }
    match std::fs::read("/etc/localtime") {
        Ok(data) => TimeZone::tzif("localtime", &data).expect("parse /etc/localtime"),
        Err(_) => TimeZone::UTC,
    }
}

/// A reservation of the test host.
pub fn reservation(
    id: u64,
    owner: &str,
    with: &[&str],
    mode: Mode,
    (start, end): (i64, i64),
    comment: &str,
) -> Reservation {
    Reservation {
        id: ReservationId(id),
        owner: owner.to_owned(),
        with: with.iter().map(|u| (*u).to_owned()).collect(),
        start,
        end,
        mode,
        comment: comment.to_owned(),
        created: start,
        updated: start,
    }
}

impl TestHost {
    /// The hosthog state directory of this host: the test directory, holding `table` at
    /// [`TestHost::table_path`] and the writers' `table.lock`.
    pub fn store(&self) -> Store {
        let store = Store::new(self.dir());
        assert_eq!(store.table_path(), self.table_path());
        store
    }

    /// Replaces the table with one holding `reservations`, through the [`Store`] (lock,
    /// temporary file, rename), as hosthogd does. Ended reservations are pruned as of
    /// `now`.
    pub fn write_table(&self, reservations: &[Reservation], now: i64) {
        let store = self.store();
        let lock = store.lock(|_| {}).expect("lock the test table");
        let mut state = State {
            reservations: reservations.to_vec(),
            ..State::default()
        };
        lock.write(&mut state, now).expect("write the test table");
    }

    /// Removes the table: the state of a host nobody has reserved yet.
    pub fn remove_table(&self) {
        match std::fs::remove_file(self.table_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", self.table_path().display()),
        }
    }

    /// What pam_hosthog shows `user` (logging in through PAM service `service`) when it
    /// refuses the login at `now` because of this host's table: libhosthog's
    /// `Denial::message` in the module's time zone. Fails the test if the table does not
    /// refuse `user` then.
    pub fn refusal_message(&self, user: &str, service: &str, now: i64) -> String {
        let file = TableFile::open(&self.table_path(), 0).expect("open the test table");
        let table = file.table().expect("parse the test table");
        let who = Who {
            user,
            service,
            ..Who::default()
        };
        match decide(&table, &who, now) {
            Decision::Deny(denial) => denial.message(&module_time_zone(), now),
            Decision::Allow(why) => panic!("the test table allows {user} at {now}: {why:?}"),
        }
    }

    /// Waits until this host's utmp (the empty file bound over `/run/utmp` in the
    /// namespace, when the machine has one) lists no live login, so the next session
    /// summary says "nobody else is logged in". sshd marks a session ended in utmp only
    /// after the client has gone.
    pub fn wait_until_nobody_logged_in(&self) {
        let utmp = self.dir().join("logs/utmp");
        let live = || {
            let records = Utmp::read(&utmp).expect("read the test utmp");
            records
                .logins()
                .filter(|l| process_exists(l.pid))
                .map(|l| format!("{} on {} (pid {})", l.user, l.line, l.pid))
                .collect::<Vec<_>>()
        };
        assert!(
            wait_until(Duration::from_secs(10), || live().is_empty()),
            "logins still in the test utmp: {:?}",
            live()
        );
    }
}
