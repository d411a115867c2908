//! Telling people on the host: every terminal of a user (as `wall` does),
//! the clients of their tmux servers, and their desktop where a session bus
//! exists. Delivery never blocks: terminals are opened and written without
//! blocking, helpers run with a deadline.
//!
//! The notifier thread takes the events the scheduler found, scans who is
//! on the host, and tells the people each event concerns
//! ([`crate::events::recipients`]) what [`crate::events::message`]
//! says. It also keeps the presence snapshot current.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::events::{Event, EventKind, message, recipients};
use jiff::tz::TimeZone;
use libhosthog::{ReservationId, Utmp, process_exists, sanitize};

use crate::nss::{self, Account};
use crate::{presence, subprocess};

/// Most bytes written to one terminal per message.
const MAX_WRITE: usize = 2048;
/// How long telling one batch of people may take in all, every helper
/// (tmux, notify-send) of every one of them included: helpers run
/// concurrently and are killed at this deadline, so a user who plants
/// sockets that never answer delays nothing but their own messages.
pub const TELL_DEADLINE: Duration = Duration::from_millis(700);
/// Most tmux servers of one user that are asked for their clients.
const MAX_TMUX_SOCKETS: usize = 16;
/// How long tmux shows the message in the status line, in milliseconds.
const TMUX_DISPLAY_MS: &str = "15000";

/// What telling one user achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Told {
    /// Terminals, tmux clients and desktops written to.
    pub deliveries: usize,
    /// Terminals skipped because of `mesg n`.
    pub refused: usize,
}

impl std::ops::AddAssign for Told {
    fn add_assign(&mut self, other: Told) {
        self.deliveries += other.deliveries;
        self.refused += other.refused;
    }
}

/// `/dev/LINE` for a utmp line or a tmux tty that names a terminal
/// (`pts/N`, `ttyX`), nothing for anything else (`:0`, paths with `..`).
pub fn tty_path(line: &str) -> Option<PathBuf> {
    let line = line.strip_prefix("/dev/").unwrap_or(line);
    let ok = match line.strip_prefix("pts/") {
        Some(n) => !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        None => line
            .strip_prefix("tty")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric())),
    };
    ok.then(|| PathBuf::from(format!("/dev/{line}")))
}

/// Why a terminal was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Its user ran `mesg n` (the terminal is not group-writable).
    Mesg,
    /// Not a terminal of that user, gone, or not writable now.
    Unusable,
}

/// Writes `text` to the terminal at `path` if it is a character device
/// owned by `uid` and, unless `force`, its user accepts messages (`mesg
/// y`: group-writable). Opens without following symlinks, without becoming
/// its controlling terminal and without blocking; writes at most
/// [`MAX_WRITE`] bytes once and drops what does not fit.
///
/// # Errors
/// [`Skipped`] says why nothing was written.
pub fn write_terminal(path: &Path, uid: u32, text: &str, force: bool) -> Result<(), Skipped> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Skipped::Unusable)?;
    // SAFETY: c_path is a valid NUL-terminated string; open has no other
    // memory preconditions.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_WRONLY | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Skipped::Unusable);
    }
    // SAFETY: fd is a descriptor we just opened and own.
    let file = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let meta = file.metadata().map_err(|_| Skipped::Unusable)?;
    if !meta.file_type().is_char_device() || meta.uid() != uid {
        return Err(Skipped::Unusable);
    }
    if !force && meta.mode() & 0o020 == 0 {
        return Err(Skipped::Mesg);
    }
    let mut bytes = Vec::with_capacity(text.len() + 4);
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    bytes.truncate(MAX_WRITE);
    // SAFETY: bytes is valid for reads of its length; fd is open.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n <= 0 {
        return Err(Skipped::Unusable);
    }
    Ok(())
}

/// The tmux server sockets of `uid` in its default directory
/// `/tmp/tmux-UID`, trusted only if the directory and the sockets are that
/// user's and the directory is private, as tmux makes it.
pub fn tmux_sockets(uid: u32) -> Vec<PathBuf> {
    let dir = PathBuf::from(format!("/tmp/tmux-{uid}"));
    let Ok(meta) = fs::symlink_metadata(&dir) else {
        return Vec::new();
    };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            fs::symlink_metadata(e.path())
                .is_ok_and(|m| m.file_type().is_socket() && m.uid() == uid)
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Text as a tmux `display-message` argument: `#` starts a format, and an
/// argument ending in `;` would be split as a command separator.
fn tmux_text(text: &str) -> String {
    let mut out = text.replace('#', "##");
    if out.ends_with(';') {
        out.pop();
        out.push_str("\\;");
    }
    out
}

/// (client tty, its active pane's tty) of every client of one tmux server.
fn tmux_clients(
    tmux: &Path,
    socket: &Path,
    account: &Account,
    deadline: Instant,
) -> Vec<(String, String)> {
    let mut cmd = subprocess::as_user(tmux, account.uid, account.gid);
    cmd.arg("-S")
        .arg(socket)
        .args(["list-clients", "-F", "#{client_tty} #{pane_tty}"]);
    let Some(done) = subprocess::run_until(cmd, deadline, 64 * 1024) else {
        return Vec::new();
    };
    if !done.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&done.stdout)
        .lines()
        .filter_map(|l| {
            let (client, pane) = l.split_once(' ')?;
            Some((client.to_string(), pane.to_string()))
        })
        .collect()
}

/// Shows `text` in the status line of these clients of one tmux server.
fn tmux_display(
    tmux: &Path,
    socket: &Path,
    account: &Account,
    clients: &[&str],
    text: &str,
    deadline: Instant,
) {
    let mut cmd = subprocess::as_user(tmux, account.uid, account.gid);
    cmd.arg("-S").arg(socket);
    let text = tmux_text(text);
    for (i, client) in clients.iter().enumerate() {
        if i > 0 {
            cmd.arg(";");
        }
        cmd.args(["display-message", "-c", client, "-d", TMUX_DISPLAY_MS, "--"])
            .arg(&text);
    }
    let _ = subprocess::run_until(cmd, deadline, 4096);
}

/// A desktop notification through the user's session bus, if they have
/// one and notify-send is installed. Best effort.
fn desktop(account: &Account, text: &str, deadline: Instant) -> bool {
    let bus = PathBuf::from(format!("/run/user/{}/bus", account.uid));
    let Ok(meta) = fs::symlink_metadata(&bus) else {
        return false;
    };
    if !meta.file_type().is_socket() || meta.uid() != account.uid {
        return false;
    }
    let Some(notify_send) = subprocess::find("notify-send") else {
        return false;
    };
    // The body is markup to some notification servers.
    let body = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let mut cmd = subprocess::as_user(&notify_send, account.uid, account.gid);
    cmd.env(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", bus.display()),
    )
    .env("XDG_RUNTIME_DIR", format!("/run/user/{}", account.uid))
    .args(["--app-name=hosthog", "--", "hosthog", &body]);
    subprocess::run_until(cmd, deadline, 4096).is_some_and(|d| d.status.success())
}

/// Tells `account` `text` on every terminal they are logged in on (from
/// utmp at `utmp`, sessions whose process lives), in every tmux client of
/// theirs (status line and active pane), and on their desktop. A terminal
/// a tmux client draws on is left to tmux. `force` (admin notices) writes
/// even where the user ran `mesg n`. Helpers run concurrently (one per
/// tmux server, at most [`MAX_TMUX_SOCKETS`]) and are killed at
/// `deadline`; whatever has not answered by then is not waited for.
pub fn tell(account: &Account, text: &str, utmp: &Path, force: bool, deadline: Instant) -> Told {
    let text = sanitize(text);
    let mut told = Told::default();
    let mut terminals: Vec<PathBuf> = Vec::new();
    if let Ok(utmp) = Utmp::read(utmp) {
        for login in utmp.logins() {
            if login.user == account.name.as_str()
                && process_exists(login.pid)
                && let Some(path) = tty_path(&login.line)
                && !terminals.contains(&path)
            {
                terminals.push(path);
            }
        }
    }
    // Panes of tmux clients already told in the status line: writing into
    // them is a courtesy, so one that refuses (mesg n, or tmux's 0600
    // default) does not count as a refusal.
    let mut panes: Vec<PathBuf> = Vec::new();
    let mut sockets = tmux_sockets(account.uid);
    sockets.truncate(MAX_TMUX_SOCKETS);
    let tmux = subprocess::find("tmux").filter(|_| !sockets.is_empty());
    let desktop_told = std::thread::scope(|scope| {
        let desktop = scope.spawn(|| desktop(account, &text, deadline));
        if let Some(tmux) = &tmux {
            let servers: Vec<_> = sockets
                .iter()
                .map(|socket| {
                    let text = &text;
                    scope.spawn(move || {
                        let clients = tmux_clients(tmux, socket, account, deadline);
                        if !clients.is_empty() {
                            let names: Vec<&str> =
                                clients.iter().map(|(c, _)| c.as_str()).collect();
                            tmux_display(tmux, socket, account, &names, text, deadline);
                        }
                        clients
                    })
                })
                .collect();
            for server in servers {
                let clients = server.join().unwrap_or_default();
                told.deliveries += clients.len();
                for (client, pane) in &clients {
                    if let Some(client) = tty_path(client) {
                        terminals.retain(|t| *t != client);
                    }
                    if let Some(pane) = tty_path(pane)
                        && !terminals.contains(&pane)
                    {
                        panes.push(pane.clone());
                        terminals.push(pane);
                    }
                }
            }
        }
        desktop.join().unwrap_or(false)
    });
    for path in &terminals {
        match write_terminal(path, account.uid, &text, force) {
            Ok(()) => told.deliveries += 1,
            Err(Skipped::Mesg) if panes.contains(path) => {}
            Err(Skipped::Mesg) => told.refused += 1,
            Err(Skipped::Unusable) => {}
        }
    }
    if desktop_told {
        told.deliveries += 1;
    }
    told
}

/// Tells each (account, text, force) at once, every one on its own thread,
/// all by `deadline` (see [`tell`]); what each achieved, in order.
pub fn tell_all(people: &[(Account, String, bool)], utmp: &Path, deadline: Instant) -> Vec<Told> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = people
            .iter()
            .map(|(account, text, force)| {
                scope.spawn(move || tell(account, text, utmp, *force, deadline))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_default())
            .collect()
    })
}

/// Work for the notifier thread.
#[derive(Debug)]
pub enum Job {
    /// Tell the people concerned about these events.
    Events {
        events: Vec<Event>,
        /// The table's exemption list when they were found.
        exempt: Vec<String>,
        /// Who made the changes among them (not told about their own).
        actors: HashMap<ReservationId, String>,
        now: i64,
    },
    /// Rescan who is on the host and rewrite the presence snapshot.
    Refresh { now: i64 },
}

/// The notifier's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub utmp: PathBuf,
    /// Where to keep the presence snapshot (none: do not write one).
    pub presence: Option<PathBuf>,
    /// With clearing on, its grace period (messages say when sessions end).
    pub clear_grace: Option<i64>,
    pub tz: TimeZone,
}

/// Starts the notifier thread; send it [`Job`]s.
///
/// # Errors
/// The thread could not be started.
pub fn spawn(settings: Settings) -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("hosthogd-notify".into())
        .spawn(move || run(&settings, &rx))?;
    Ok(tx)
}

fn run(settings: &Settings, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let now = jobs
            .iter()
            .map(|j| match j {
                Job::Events { now, .. } | Job::Refresh { now } => *now,
            })
            .max()
            .unwrap_or_default();
        let presence = presence::scan(&settings.utmp, now);
        if let Some(path) = &settings.presence
            && let Err(e) = presence::write_snapshot(path, &presence)
        {
            eprintln!(
                "hosthogd: cannot write the presence snapshot {}: {e}",
                path.display()
            );
        }
        let present: Vec<String> = presence
            .users()
            .iter()
            .map(|u| u.user.to_string())
            .collect();
        for job in jobs {
            let Job::Events {
                events,
                exempt,
                actors,
                now,
            } = job
            else {
                continue;
            };
            for event in &events {
                // The clearing thread tells people as it acts.
                if event.kind == EventKind::Clear {
                    continue;
                }
                let actor = actors.get(&event.reservation.id).map(String::as_str);
                deliver_event(settings, event, &present, &exempt, actor, now);
            }
        }
    }
}

fn deliver_event(
    settings: &Settings,
    event: &Event,
    present: &[String],
    exempt: &[String],
    actor: Option<&str>,
    now: i64,
) {
    let mut people = Vec::new();
    for (user, concern) in recipients(event, present, exempt, actor) {
        let Some(account) = nss::user_by_name(&user) else {
            continue;
        };
        let text = message(
            event,
            &user,
            concern,
            actor,
            now,
            &settings.tz,
            settings.clear_grace,
        );
        // Announcing that sessions will be ended is the administrator's
        // notice: it reaches terminals even under `mesg n`.
        let force = settings.clear_grace.is_some()
            && concern == crate::events::Concern::LockedOut
            && event.reservation.mode == libhosthog::Mode::Exclusive
            && matches!(
                event.kind,
                EventKind::Created | EventKind::Changed | EventKind::Lead | EventKind::Start
            );
        people.push((account, text, force));
    }
    let told = tell_all(&people, &settings.utmp, Instant::now() + TELL_DEADLINE);
    for ((account, _, _), told) in people.iter().zip(told) {
        eprintln!(
            "hosthogd: told {} about the {} of reservation {} ({} deliveries, {} refused by mesg)",
            account.name,
            event.kind.name(),
            event.reservation.id.short(),
            told.deliveries,
            told.refused
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_terminal_names_become_paths() {
        assert_eq!(tty_path("pts/3"), Some(PathBuf::from("/dev/pts/3")));
        assert_eq!(tty_path("/dev/pts/12"), Some(PathBuf::from("/dev/pts/12")));
        assert_eq!(tty_path("tty1"), Some(PathBuf::from("/dev/tty1")));
        assert_eq!(tty_path("ttyS0"), Some(PathBuf::from("/dev/ttyS0")));
        for bad in [
            ":0",
            "pts/",
            "pts/../sda",
            "pts/1/x",
            "tty",
            "../etc",
            "tty1/..",
            "sda",
            "",
        ] {
            assert_eq!(tty_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn tmux_text_is_escaped() {
        assert_eq!(tmux_text("a #{pane} b"), "a ##{pane} b");
        assert_eq!(tmux_text("end;"), "end\\;");
        assert_eq!(tmux_text("plain."), "plain.");
    }

    #[test]
    fn refuses_what_is_not_a_terminal_of_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "").unwrap();
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(write_terminal(&file, me, "x", true), Err(Skipped::Unusable));
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        assert_eq!(write_terminal(&link, 0, "x", true), Err(Skipped::Unusable));
        assert_eq!(
            write_terminal(Path::new("/dev/null"), me.wrapping_add(1), "x", true),
            Err(Skipped::Unusable)
        );
        assert_eq!(
            write_terminal(&dir.path().join("none"), me, "x", true),
            Err(Skipped::Unusable)
        );
    }
}
