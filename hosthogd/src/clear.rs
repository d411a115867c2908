//! Clearing the host for an exclusive slot, where the admin turned it on
//! (`clear_host = true`): when the grace period after the start is over,
//! the sessions of the people [`decide`] says may not be on the host now
//! are ended: through logind where it runs, then SIGTERM to their
//! processes and, for whatever is left after [`TERM_WAIT`], SIGKILL by uid
//! ([`kill_uid`]: a child that becomes the user and calls `kill(-1,
//! SIGKILL)` until nothing of theirs is left, which no fork loop, new
//! session or ignored signal escapes). Telling them first and every helper
//! run share one short deadline ([`NOTIFY_DEADLINE`], [`HELPER_TIMEOUT`]):
//! nothing a user plants can put off the end of their sessions.
//!
//! Who is looked at: every account with a session on the host (the
//! presence scan) or a process running, whose uid is an ordinary one
//! ([`ordinary`]: `UID_MIN`..=`UID_MAX` of /etc/login.defs) and has a
//! name. Never touched: root, system accounts and `nobody`, exempt users,
//! the holder and co-users (decide allows them all). Signals go through
//! pidfds, checked to still belong to the user, so a recycled pid is never
//! hit.
//!
//! With `pause_timers = true` and systemd running, the active systemd
//! timers are stopped for the slot and started again after it (what the
//! original hosthog `hog` did), remembered in a file so a restarted daemon
//! still resumes them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::events::{Concern, Event, EventKind, message};
use jiff::tz::TimeZone;
use libhosthog::{Calendar, ReservationId, State, Who, decide};
use serde::{Deserialize, Serialize};

use crate::nss;
use crate::{notify, presence, subprocess};

/// How long processes get between SIGTERM and SIGKILL.
pub const TERM_WAIT: Duration = Duration::from_secs(1);
/// How long `loginctl terminate-user` (all users at once) and `systemctl`
/// may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long telling everyone whose sessions end may take, all at once.
pub const NOTIFY_DEADLINE: Duration = Duration::from_millis(300);
/// How long, at least, the last notice gets to travel before the processes
/// that carry it are signalled (they get until [`NOTIFY_DEADLINE`] in any
/// case): text written to an ssh user's pty reaches them only once their
/// `sshd: USER@pts/N` process (theirs, so signalled with the rest) has
/// read it from the pty master and sent it; SIGTERM at once can end that
/// process first, and the notice is lost (seen with OpenSSH 9.2). Fixed
/// and short: nothing a user does lengthens it.
const RELAY_PAUSE: Duration = Duration::from_millis(50);
/// How long [`kill_uid`] keeps at it (zombies of the user's processes
/// that their root-owned parents have not reaped yet still count).
const KILL_DEADLINE: Duration = Duration::from_secs(2);

/// Work for the clearing thread.
#[derive(Debug)]
pub enum Job {
    /// The grace period of `event.reservation` is over: end the sessions
    /// of everyone not allowed now.
    Clear {
        state: Arc<State>,
        event: Box<Event>,
        now: i64,
    },
    /// An exclusive slot started: stop the systemd timers.
    PauseTimers { id: ReservationId },
    /// It ended: start them again.
    ResumeTimers { id: ReservationId },
    /// At startup: resume timers paused for a slot no longer in force.
    ResumeStale { state: Arc<State>, now: i64 },
}

/// The clearing thread's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub utmp: PathBuf,
    pub tz: TimeZone,
    pub clear_grace: i64,
    /// Where paused timers are remembered.
    pub paused: PathBuf,
}

/// Starts the clearing thread; send it [`Job`]s.
///
/// # Errors
/// The thread could not be started.
pub fn spawn(settings: Settings) -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("hosthogd-clear".into())
        .spawn(move || {
            for job in rx {
                match job {
                    Job::Clear { state, event, now } => clear(&settings, &state, &event, now),
                    Job::PauseTimers { id } => pause_timers(&settings.paused, id),
                    Job::ResumeTimers { id } => resume_timers(&settings.paused, Some(id)),
                    Job::ResumeStale { state, now } => {
                        if let Some(paused) = read_paused(&settings.paused)
                            && !state
                                .reservations
                                .iter()
                                .any(|r| r.id == paused.id && r.is_active(now))
                        {
                            resume_timers(&settings.paused, None);
                        }
                    }
                }
            }
        })?;
    Ok(tx)
}

/// True for the uids clearing may touch at all: those in `UID_MIN..=UID_MAX`
/// of /etc/login.defs (1000..=60000 by default). System accounts and uid 0
/// never are; hosthogd exempts the same accounts from login refusals
/// ([`crate::accounts`]), so login and clearing agree.
pub fn ordinary(uid: u32) -> bool {
    let (min, max) = crate::accounts::uid_range();
    uid != 0 && (min..=max).contains(&uid)
}

/// Of `candidates` (name, uid), those that may be touched at all and that
/// [`decide`] refuses at `now`.
pub fn disallowed(
    calendar: &impl Calendar,
    candidates: &[(String, u32)],
    now: i64,
) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for (user, uid) in candidates {
        if !ordinary(*uid) || user == "root" || out.iter().any(|(_, u)| u == uid) {
            continue;
        }
        let who = Who {
            user,
            service: "hosthogd",
            ..Who::default()
        };
        if decide(calendar, &who, now).is_deny() {
            out.push((user.clone(), *uid));
        }
    }
    out
}

/// Everyone clearing looks at: people with a session, and the owners of
/// running processes with an ordinary uid and a name.
fn candidates(utmp: &Path, now: i64) -> Vec<(String, u32)> {
    let procs = presence::processes();
    let mut names = presence::Names::default();
    let present = presence::scan_with(utmp, &procs, now, &mut names);
    let mut out: Vec<(String, u32)> = present
        .users()
        .iter()
        .map(|u| (u.user.to_string(), u.uid))
        .collect();
    for p in &procs {
        if ordinary(p.uid)
            && !out.iter().any(|(_, u)| *u == p.uid)
            && let Some(account) = names.by_uid(p.uid)
        {
            out.push((account.name, p.uid));
        }
    }
    out
}

fn clear(settings: &Settings, state: &State, event: &Event, now: i64) {
    let r = &event.reservation;
    if !state
        .reservations
        .iter()
        .any(|c| c.id == r.id && c.is_active(now) && c.mode == libhosthog::Mode::Exclusive)
    {
        return;
    }
    let candidates = candidates(&settings.utmp, now);
    let mut people = Vec::new();
    for (user, uid) in disallowed(state, &candidates, now) {
        // The name must still be the uid decide was asked about.
        let Some(account) = nss::user_by_name(&user).filter(|a| a.uid == uid) else {
            continue;
        };
        let text = message(
            event,
            &user,
            Concern::LockedOut,
            None,
            now,
            &settings.tz,
            Some(settings.clear_grace),
        );
        people.push((account, text, true));
    }
    let deadline = Instant::now() + NOTIFY_DEADLINE;
    let told = notify::tell_all(&people, &settings.utmp, deadline);
    if told.iter().any(|t| t.deliveries > 0) {
        let relayed = deadline.max(Instant::now() + RELAY_PAUSE);
        std::thread::sleep(relayed.saturating_duration_since(Instant::now()));
    }
    let ids: Vec<u32> = people.iter().map(|(a, _, _)| a.uid).collect();
    for ((account, _, _), (termed, killed)) in people.iter().zip(end_sessions(&ids)) {
        eprintln!(
            "hosthogd: ended the sessions of {} for {}'s exclusive reservation {}: \
             {termed} processes got SIGTERM, {killed} needed SIGKILL",
            account.name,
            libhosthog::sanitize(&r.owner),
            r.id.short()
        );
    }
}

/// True where systemd is the init system (`sd_booted`).
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Ends every session and process of each of `uids`: logind first where
/// it runs (all users at once, by one deadline), then SIGTERM to all of
/// them at once, and for what is left after [`TERM_WAIT`] SIGKILL by uid
/// ([`kill_uid`]). Returns, per uid, how many processes got SIGTERM and
/// how many were still there for SIGKILL.
pub fn end_sessions(uids: &[u32]) -> Vec<(usize, usize)> {
    let uids: Vec<u32> = uids
        .iter()
        .map(|u| if ordinary(*u) { *u } else { u32::MAX })
        .collect();
    let live = |uid: u32| uid != u32::MAX;
    let loginctl = subprocess::find("loginctl")
        .filter(|_| systemd_running() && Path::new("/run/systemd/users").is_dir());
    if let Some(loginctl) = &loginctl {
        let deadline = Instant::now() + HELPER_TIMEOUT;
        std::thread::scope(|scope| {
            for uid in uids.iter().filter(|u| live(**u)) {
                scope.spawn(move || {
                    let mut cmd = std::process::Command::new(loginctl);
                    cmd.env_clear()
                        .env("PATH", subprocess::PATH)
                        .args(["terminate-user", &uid.to_string()]);
                    let _ = subprocess::run_until(cmd, deadline, 4096);
                });
            }
        });
    }
    let termed: Vec<usize> = uids
        .iter()
        .map(|u| {
            if live(*u) {
                signal_all(*u, libc::SIGTERM)
            } else {
                0
            }
        })
        .collect();
    let deadline = Instant::now() + TERM_WAIT;
    while uids.iter().any(|u| live(*u) && !pids_of(*u).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<usize> = uids
        .iter()
        .map(|u| if live(*u) { pids_of(*u).len() } else { 0 })
        .collect();
    std::thread::scope(|scope| {
        for uid in uids.iter().zip(&left).filter(|(_, n)| **n > 0) {
            scope.spawn(move || kill_uid(*uid.0));
        }
    });
    termed.into_iter().zip(left).collect()
}

/// SIGKILLs every process whose real or saved uid is `uid`, whatever it
/// does meanwhile: a child of ours drops to `uid` and calls `kill(-1,
/// SIGKILL)`, which the kernel delivers to every process that uid may
/// signal (all of its own but the caller) in one pass that a concurrent
/// fork cannot slip past (a child forked meanwhile is born with the kill
/// pending). It repeats until `kill` finds nothing (`ESRCH`) or only
/// zombies are left, for at most [`KILL_DEADLINE`]. Never for root or system accounts. Returns whether
/// nothing of `uid` was left.
pub fn kill_uid(uid: u32) -> bool {
    if !ordinary(uid) {
        return false;
    }
    let deadline = Instant::now() + KILL_DEADLINE;
    // A child the user kills back (they may signal it: it is theirs now)
    // is started again.
    while Instant::now() < deadline {
        // SAFETY: between fork and _exit the child calls only
        // async-signal-safe system calls (setgroups, setresgid, setresuid,
        // kill, nanosleep, _exit) and touches no memory another thread may
        // hold (no allocation, no locks).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return false;
        }
        if pid == 0 {
            // SAFETY: see above; the child only makes system calls and exits.
            unsafe {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(65534, 65534, 65534) != 0
                    || libc::setresuid(uid, uid, uid) != 0
                {
                    libc::_exit(2);
                }
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 5_000_000,
                };
                for _ in 0..3 {
                    if libc::kill(-1, libc::SIGKILL) != 0 {
                        // ESRCH: nothing of the user's is left.
                        libc::_exit(0);
                    }
                    libc::nanosleep(&pause, std::ptr::null_mut());
                }
                libc::_exit(1);
            }
        }
        let mut status = 0;
        // SAFETY: waits for our own child; status is a valid out pointer.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
            && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {}
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            return true;
        }
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 2 {
            return false;
        }
        // kill(-1) also "succeeds" on zombies that a parent of another
        // user (sshd, a test harness) has not reaped yet: done when only
        // those are left.
        if pids_of(uid).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    pids_of(uid).is_empty()
}

/// The processes whose real uid is `uid` (zombies included: they are
/// signalled harmlessly and go when reaped).
fn pids_of(uid: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me && presence::status(*pid).is_some_and(|(u, _)| u == uid))
        .filter(|pid| !is_zombie(*pid))
        .collect()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Sends `signal` to every process of `uid` through a pidfd, after
/// checking (with the pidfd held) that the pid still belongs to `uid`.
fn signal_all(uid: u32, signal: libc::c_int) -> usize {
    let mut sent = 0;
    for pid in pids_of(uid) {
        // SAFETY: pidfd_open takes a pid and flags; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
        if fd < 0 {
            continue;
        }
        // With the pidfd open, the pid cannot name another process until
        // the one it names is gone (and then the signal fails).
        if presence::status(pid).is_some_and(|(u, _)| u == uid) {
            // SAFETY: fd is our pidfd; a null siginfo is allowed.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd,
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if rc == 0 {
                sent += 1;
            }
        }
        // SAFETY: fd is ours and closed once.
        unsafe { libc::close(fd) };
    }
    sent
}

#[derive(Debug, Serialize, Deserialize)]
struct Paused {
    id: ReservationId,
    timers: Vec<String>,
}

fn read_paused(path: &Path) -> Option<Paused> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn systemctl(args: &[&str]) -> Option<subprocess::Finished> {
    let systemctl = subprocess::find("systemctl")?;
    let mut cmd = std::process::Command::new(systemctl);
    cmd.env_clear()
        .env("PATH", subprocess::PATH)
        .args(["--no-pager", "--no-ask-password"])
        .args(args);
    subprocess::run_bounded(cmd, HELPER_TIMEOUT, 256 * 1024)
}

fn pause_timers(path: &Path, id: ReservationId) {
    if !systemd_running() || read_paused(path).is_some() {
        return;
    }
    let Some(listed) = systemctl(&[
        "list-units",
        "--type=timer",
        "--state=active",
        "--plain",
        "--no-legend",
    ]) else {
        return;
    };
    let timers: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| u.ends_with(".timer") && !u.starts_with('-'))
        .map(str::to_string)
        .collect();
    if timers.is_empty() {
        return;
    }
    let record = Paused {
        id,
        timers: timers.clone(),
    };
    let Ok(bytes) = serde_json::to_vec(&record) else {
        return;
    };
    if let Err(e) = crate::runfile::replace(path, &bytes) {
        eprintln!(
            "hosthogd: cannot record paused timers in {}: {e}",
            path.display()
        );
        return;
    }
    let mut args = vec!["stop", "--"];
    args.extend(timers.iter().map(String::as_str));
    systemctl(&args);
    eprintln!(
        "hosthogd: paused {} systemd timers for reservation {}",
        timers.len(),
        id.short()
    );
}

fn resume_timers(path: &Path, id: Option<ReservationId>) {
    let Some(paused) = read_paused(path) else {
        return;
    };
    if id.is_some_and(|id| id != paused.id) {
        return;
    }
    let mut args = vec!["start", "--"];
    args.extend(paused.timers.iter().map(String::as_str));
    if systemd_running() {
        systemctl(&args);
    }
    let _ = std::fs::remove_file(path);
    eprintln!(
        "hosthogd: resumed {} systemd timers after reservation {}",
        paused.timers.len(),
        paused.id.short()
    );
}

/// True for the events after which timers paused for a slot resume.
pub fn ends_slot(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::End | EventKind::EndedEarly | EventKind::Cancelled
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use libhosthog::{Mode, Reservation};

    #[test]
    fn only_disallowed_ordinary_users() {
        let state = State {
            reservations: vec![Reservation {
                id: ReservationId(1),
                owner: "alice".into(),
                with: vec!["carol".into()],
                start: 100,
                end: 200,
                mode: Mode::Exclusive,
                comment: String::new(),
                created: 0,
                updated: 0,
            }],
            exempt: vec!["erin".into()],
            ..State::default()
        };
        let candidates: Vec<(String, u32)> = [
            ("alice", 2001),
            ("bob", 2002),
            ("bob", 2002),
            ("carol", 2003),
            ("erin", 2005),
            ("root", 0),
            ("daemon", 1),
            ("nobody", 65534),
            ("frank", 2006),
        ]
        .iter()
        .map(|(n, u)| (n.to_string(), *u))
        .collect();
        assert_eq!(
            disallowed(&state, &candidates, 150),
            [("bob".to_string(), 2002), ("frank".to_string(), 2006)]
        );
        assert!(disallowed(&state, &candidates, 200).is_empty());
        assert_eq!(end_sessions(&[0, 999, 65534]), [(0, 0), (0, 0), (0, 0)]);
    }
}
