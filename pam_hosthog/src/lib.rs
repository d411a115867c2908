//! pam_hosthog: the PAM module that keeps people out of a host during
//! someone else's exclusive hosthog reservation, tells them why, and shows
//! everyone at the start of a session who is using the host.
//!
//! - account: read the table, [`decide`]; refuse with one PAM_ERROR_MSG
//!   and PAM_PERM_DENIED, or answer PAM_IGNORE (no opinion).
//! - session (open): one PAM_TEXT_INFO with the [`session_summary`].
//!
//! Only these hooks exist (see docs/pam_hosthog.8). Everything that can be
//! pure lives in libhosthog; this file reads the PAM items and arguments,
//! reads the clock once per call, and maps the decision to a return code.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use libc::{c_char, c_int};
use libhosthog::{
    Allowed, Decision, Error, ErrorKind, Login, Presence, ReservationView, TableFile, TableState,
    Utmp, Who, decide, process_exists, session_summary,
};
use pam::constants::{PAM_SILENT, PamResultCode};
use pam::module::PamHandle;

mod boundary;
mod handle;
mod options;
mod zone;

use handle::one_line;
pub use handle::{Handle, Items, Priority};
pub use options::{DEFAULT_TABLE, OnError, Options, parse_args};

/// The account hook: may this user log in now?
pub fn account(
    h: &mut impl Handle,
    opts: &Options<'_>,
    flags: c_int,
    now: i64,
    local_tz: impl FnOnce() -> TimeZone,
) -> PamResultCode {
    let items = h.items();
    if !opts.applies_to(&items.service) {
        return PamResultCode::PAM_IGNORE;
    }
    let Some(who) = who(&items, opts) else {
        h.log(Priority::Err, "no user name (PAM_USER is unset or empty)");
        return PamResultCode::PAM_USER_UNKNOWN;
    };
    injected_panic(who.user);
    let file = match open_table(opts) {
        Ok(Some(file)) => file,
        Ok(None) => {
            debug(
                h,
                opts,
                &who,
                "allowed: no table (nobody has reserved this host)",
            );
            return PamResultCode::PAM_IGNORE;
        }
        Err(e) => return table_error(h, opts, flags, &who, &e, PamResultCode::PAM_PERM_DENIED),
    };
    let table = match file.table() {
        Ok(table) => table,
        Err(e) => return table_error(h, opts, flags, &who, &e, PamResultCode::PAM_PERM_DENIED),
    };
    match decide(&table, &who, now) {
        Decision::Allow(why) => {
            debug(h, opts, &who, &format!("allowed: {}", reason(&why)));
            PamResultCode::PAM_IGNORE
        }
        Decision::Deny(denial) => {
            let r = &denial.reservation;
            h.log(
                Priority::Notice,
                &format!(
                    "refused {}: reserved exclusively by {} until {} (reservation {})",
                    describe(&who),
                    one_line(r.owner()),
                    utc(r.end()),
                    r.id(),
                ),
            );
            if flags & PAM_SILENT as c_int == 0 {
                h.error(&denial.message(&local_tz(), now));
            }
            PamResultCode::PAM_PERM_DENIED
        }
    }
}

/// The session hook: show who is using the host.
pub fn open_session(
    h: &mut impl Handle,
    opts: &Options<'_>,
    flags: c_int,
    now: i64,
    local_tz: impl FnOnce() -> TimeZone,
) -> PamResultCode {
    if opts.quiet || flags & PAM_SILENT as c_int != 0 {
        return PamResultCode::PAM_IGNORE;
    }
    let items = h.items();
    if !opts.applies_to(&items.service) {
        return PamResultCode::PAM_IGNORE;
    }
    let Some(who) = who(&items, opts) else {
        h.log(Priority::Err, "no user name (PAM_USER is unset or empty)");
        return PamResultCode::PAM_USER_UNKNOWN;
    };
    injected_panic(who.user);
    let file = match open_table(opts) {
        Ok(file) => file,
        Err(e) => {
            let code = table_error(h, opts, flags, &who, &e, PamResultCode::PAM_SESSION_ERR);
            if code != PamResultCode::PAM_IGNORE {
                return code;
            }
            None
        }
    };
    let table = file.as_ref().map(|f| f.table());
    let state = match &table {
        None => TableState::Missing,
        Some(Ok(table)) => TableState::Present(table),
        Some(Err(e)) => {
            let code = table_error(h, opts, flags, &who, e, PamResultCode::PAM_SESSION_ERR);
            if code != PamResultCode::PAM_IGNORE {
                return code;
            }
            TableState::Unreadable
        }
    };
    let utmp = Utmp::read(opts.utmp).unwrap_or_else(|e| {
        h.log(
            Priority::Warning,
            &format!("cannot read {}: {e}", opts.utmp.display()),
        );
        Utmp::default()
    });
    let logins: Vec<Login<'_>> = utmp.logins().filter(|l| process_exists(l.pid)).collect();
    let presence = presence(h, opts, now);
    h.info(&session_summary(
        state,
        &who,
        &logins,
        presence.as_ref(),
        now,
        &local_tz(),
    ));
    PamResultCode::PAM_IGNORE
}

fn who<'a>(items: &'a Items, opts: &'a Options<'_>) -> Option<Who<'a>> {
    let user = items.user.as_deref().filter(|u| !u.is_empty())?;
    Some(Who {
        user,
        service: &items.service,
        tty: items.tty.as_deref(),
        rhost: items.rhost.as_deref(),
        also_exempt: &opts.exempt,
    })
}

/// Opens the table. `Ok(None)`: there is no table file in an existing
/// state directory, the normal state of a host nobody has reserved yet.
/// A missing directory means a wrong `table=` or a removed hosthog: that is
/// an error, answered per `on_error=`.
fn open_table(opts: &Options<'_>) -> Result<Option<TableFile>, Error> {
    match TableFile::open(opts.table, opts.table_owner) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == ErrorKind::Missing && state_dir_exists(opts.table) => Ok(None),
        Err(e) => Err(e),
    }
}

/// hosthogd's presence snapshot, if it is there and fresh (it is rewritten
/// at least every tick); otherwise the summary uses utmp alone. No snapshot
/// is normal (hosthogd not running); one that cannot be trusted is logged.
fn presence(h: &mut impl Handle, opts: &Options<'_>, now: i64) -> Option<Presence> {
    match Presence::read(opts.presence, opts.table_owner) {
        Ok(p) if p.is_fresh(now, PRESENCE_MAX_AGE) => Some(p),
        Ok(_) => None,
        Err(e) if e.kind() == ErrorKind::Missing => None,
        Err(e) => {
            h.log(
                Priority::Warning,
                &format!("{}; using utmp", one_line(&e.to_string())),
            );
            None
        }
    }
}

/// How old a presence snapshot may be and still be shown, in seconds.
const PRESENCE_MAX_AGE: i64 = 120;

fn state_dir_exists(table: &Path) -> bool {
    table.parent().is_some_and(|dir| dir.is_dir())
}

/// The one log line and the answer for a table that cannot be used. root
/// and `exempt=` users do not depend on the table, so they get in even
/// under `on_error=deny` (an admin can always log in to repair it).
fn table_error(
    h: &mut impl Handle,
    opts: &Options<'_>,
    flags: c_int,
    who: &Who<'_>,
    error: &Error,
    deny: PamResultCode,
) -> PamResultCode {
    let exempt = who.user == "root" || opts.exempt.contains(&who.user);
    let (verdict, code) = match opts.on_error {
        OnError::Allow => ("allowing", PamResultCode::PAM_IGNORE),
        OnError::Deny if exempt => ("allowing exempt", PamResultCode::PAM_IGNORE),
        OnError::Deny => ("refusing", deny),
    };
    let policy = match opts.on_error {
        OnError::Allow => "on_error=allow",
        OnError::Deny => "on_error=deny",
    };
    h.log(
        Priority::Err,
        &format!(
            "{}; {verdict} {} ({policy})",
            one_line(&error.to_string()),
            describe(who)
        ),
    );
    if code != PamResultCode::PAM_IGNORE && flags & PAM_SILENT as c_int == 0 {
        h.error(
            "hosthog: logins are refused because the reservation table cannot be read.\n\
             Ask an administrator (the reason is in the system log).",
        );
    }
    code
}

fn debug(h: &mut impl Handle, opts: &Options<'_>, who: &Who<'_>, what: &str) {
    if opts.debug {
        h.log(Priority::Debug, &format!("{}: {what}", describe(who)));
    }
}

/// `bob (service sshd, tty ssh, from 10.0.0.5)`, for log lines.
fn describe(who: &Who<'_>) -> String {
    let mut text = format!("{} (service {}", one_line(who.user), one_line(who.service));
    if let Some(tty) = who.tty {
        text.push_str(&format!(", tty {}", one_line(tty)));
    }
    if let Some(rhost) = who.rhost {
        text.push_str(&format!(", from {}", one_line(rhost)));
    }
    text.push(')');
    text
}

fn reason(why: &Allowed<ReservationView<'_>>) -> String {
    match why {
        Allowed::Root => "root".to_string(),
        Allowed::Exempt => "exempt".to_string(),
        Allowed::NoReservation => "no reservation now".to_string(),
        Allowed::Holder(r) => format!("holds reservation {}", r.id()),
        Allowed::CoUser(r) => format!("co-user of reservation {}", r.id()),
        Allowed::Shared(r) => format!("shared reservation {}", r.id()),
    }
}

fn utc(at: i64) -> String {
    Timestamp::from_second(at).map_or_else(|_| format!("@{at}"), |t| t.to_string())
}

/// The user whose hooks panic, in the test module only (tests/pam-panic
/// sets it when that module is loaded); never set in the shipped module.
static PANIC_FOR: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// For the test module tests/pam-panic only: makes the hooks panic for
/// `user`, to prove the FFI boundary catches it. Nothing in the shipped
/// module calls it.
#[doc(hidden)]
pub fn inject_panic_for(user: &'static str) {
    let _ = PANIC_FOR.set(user);
}

fn injected_panic(user: &str) {
    #[allow(clippy::panic)] // the point of inject_panic_for
    if PANIC_FOR.get().is_some_and(|u| *u == user) {
        panic!("injected panic for user {user} (test module)");
    }
}

/// The one clock read of a hook call; everything below takes `now`.
#[allow(clippy::disallowed_methods)] // entry point: the clock is read here and passed down
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn on_error_code(opts: &Options<'_>, deny: PamResultCode) -> PamResultCode {
    match opts.on_error {
        OnError::Allow => PamResultCode::PAM_IGNORE,
        OnError::Deny => deny,
    }
}

/// What both hooks do first: read the clock (once), parse the arguments,
/// set the answer a panic gets from `on_error=`, then run `hook` inside the
/// FFI boundary.
///
/// # Safety
/// As [`boundary::run`]: the arguments are libpam's, forwarded unchanged.
unsafe fn entry(
    pamh: *mut PamHandle,
    argc: c_int,
    argv: *const *const c_char,
    on_error_deny: PamResultCode,
    hook: impl FnOnce(&mut handle::LibPam<'_>, &Options<'_>, i64) -> PamResultCode,
) -> c_int {
    let now = now();
    // SAFETY: forwarded from libpam, which guarantees `run`'s contract.
    unsafe {
        boundary::run(pamh, argc, argv, |h, args, fallback| {
            let opts = parse_args(args, h);
            fallback.set(on_error_code(&opts, on_error_deny));
            hook(h, &opts, now)
        })
    }
}

/// libpam's account entry point.
///
/// # Safety
/// Called by libpam: `pamh` is a live handle and `argv` holds `argc` C
/// strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_acct_mgmt(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's arguments, forwarded.
    unsafe {
        entry(
            pamh,
            argc,
            argv,
            PamResultCode::PAM_PERM_DENIED,
            |h, opts, now| account(h, opts, flags, now, zone::local),
        )
    }
}

/// libpam's session-open entry point.
///
/// # Safety
/// As [`pam_sm_acct_mgmt`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_open_session(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's arguments, forwarded.
    unsafe {
        entry(
            pamh,
            argc,
            argv,
            PamResultCode::PAM_SESSION_ERR,
            |h, opts, now| open_session(h, opts, flags, now, zone::local),
        )
    }
}

/// libpam's session-close entry point: nothing to do.
///
/// # Safety
/// None needed; the arguments are not touched.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_close_session(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PamResultCode::PAM_IGNORE as c_int
}

#[cfg(test)]
mod tests;
