//! Telling people on the host: every terminal of a user, whatever utmp
//! says (their utmp logins, every `/dev/pts/N` they own, and the
//! controlling terminal of every process of theirs — a `su` shell in
//! someone else's tmux pane too), the clients of their tmux servers (a
//! popup where tmux has `display-popup`, 3.2 and later; the status line
//! and the pane otherwise), and their desktop where a session bus exists.
//! Delivery never blocks: terminals are opened and written without
//! blocking, helpers run with a deadline; only deliveries that worked are
//! counted.
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
/// How long a tmux popup stays open unless its user closes it (Enter).
const POPUP_SECONDS: &str = "60";
/// What the popup runs (in the user's tmux server, as them): the message
/// comes in the environment, never in the command.
const POPUP_COMMAND: &str = "printf '%s\\n\\n' \"$HOSTHOG_MESSAGE\" | fold -s -w 70; \
printf '%s' '[Enter closes this]'; timeout \"$HOSTHOG_POPUP_SECONDS\" head -n 1 >/dev/null";

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
/// owned by `uid` (`None`: whoever owns it — a terminal hosthogd saw as the
/// controlling terminal of the user's own process, such as a `su` shell's
/// pane) and, unless `force`, its owner accepts messages (`mesg y`:
/// group-writable). Opens without following symlinks, without becoming
/// its controlling terminal and without blocking; writes at most
/// [`MAX_WRITE`] bytes once and drops what does not fit.
///
/// # Errors
/// [`Skipped`] says why nothing was written.
pub fn write_terminal(
    path: &Path,
    uid: Option<u32>,
    text: &str,
    force: bool,
) -> Result<(), Skipped> {
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
    if !meta.file_type().is_char_device() || uid.is_some_and(|u| meta.uid() != u) {
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

/// True if this tmux has `display-popup` (3.2 and later), asked once.
fn tmux_has_popup(tmux: &Path) -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let mut cmd = std::process::Command::new(tmux);
        cmd.arg("-V").env_clear().env("PATH", subprocess::PATH);
        subprocess::run_bounded(cmd, Duration::from_secs(2), 256)
            .is_some_and(|d| popup_version(&String::from_utf8_lossy(&d.stdout)))
    })
}

/// True for a `tmux -V` answer of 3.2 or later (`tmux 3.3a`, `tmux
/// next-3.4`, `tmux master`).
fn popup_version(text: &str) -> bool {
    let version = text.trim().rsplit(' ').next().unwrap_or("");
    if version == "master" {
        return true;
    }
    let version = version.trim_start_matches("next-");
    let mut parts = version.split('.');
    let major: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    let minor: u32 = parts
        .next()
        .map(|m| m.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '-'))
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    (major, minor) >= (3, 2)
}

/// Shows `text` to one client of one tmux server: as a popup where tmux
/// has them (the whole message, wrapped, until Enter or
/// [`POPUP_SECONDS`]); in the status line where it does not, or where the
/// client has a popup open already. True if tmux said it did.
fn tmux_display(
    tmux: &Path,
    socket: &Path,
    account: &Account,
    client: &str,
    text: &str,
    deadline: Instant,
) -> bool {
    if tmux_has_popup(tmux) {
        let mut cmd = subprocess::as_user(tmux, account.uid, account.gid);
        cmd.arg("-S").arg(socket).args([
            "display-popup",
            "-E",
            "-c",
            client,
            "-w",
            "76",
            "-h",
            "12",
            "-T",
            " hosthog ",
            "-e",
        ]);
        cmd.arg(format!("HOSTHOG_MESSAGE={text}"))
            .args(["-e", &format!("HOSTHOG_POPUP_SECONDS={POPUP_SECONDS}")])
            .arg(POPUP_COMMAND);
        if popup(cmd, deadline) {
            return true;
        }
    }
    let mut cmd = subprocess::as_user(tmux, account.uid, account.gid);
    cmd.arg("-S").arg(socket);
    cmd.args(["display-message", "-c", client, "-d", TMUX_DISPLAY_MS, "--"])
        .arg(tmux_text(text));
    subprocess::run_until(cmd, deadline, 4096).is_some_and(|d| d.status.success())
}

/// Runs a `tmux display-popup` command. tmux's command client waits until
/// the popup closes, so it is not waited for: a popup still open after
/// [`POPUP_CHECK`] (or at `deadline`) was shown; one tmux refused (a popup
/// is already open there, the client is gone) ends at once with a failure.
/// The command is reaped by a thread of its own when the popup closes (by
/// Enter, or after [`POPUP_SECONDS`]).
fn popup(mut cmd: std::process::Command, deadline: Instant) -> bool {
    use std::process::Stdio;
    let Ok(mut child) = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let until = deadline.min(Instant::now() + POPUP_CHECK);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() >= until => break,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return false,
        }
    }
    let reaped = std::thread::Builder::new()
        .name("hosthogd-popup".into())
        .spawn(move || {
            let _ = child.wait();
        });
    reaped.is_ok()
}

/// How long a popup command that has not failed must stay open to count as
/// shown.
const POPUP_CHECK: Duration = Duration::from_millis(150);

/// The session bus of `account`: the `DBUS_SESSION_BUS_ADDRESS` of one of
/// their processes if it names a socket of theirs by path, else
/// `/run/user/UID/bus`; none if neither is a socket they own.
fn session_bus(account: &Account, pids: &[i32]) -> Option<PathBuf> {
    let owned = |path: &Path| {
        fs::symlink_metadata(path)
            .is_ok_and(|m| m.file_type().is_socket() && m.uid() == account.uid)
    };
    for pid in pids.iter().take(64) {
        let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        for var in environ.split(|b| *b == 0) {
            if let Some(address) = var.strip_prefix(b"DBUS_SESSION_BUS_ADDRESS=")
                && let Some(path) = address.strip_prefix(b"unix:path=")
            {
                let path = path.split(|b| *b == b',').next().unwrap_or_default();
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(path));
                if path.is_absolute() && owned(&path) {
                    return Some(path);
                }
            }
        }
    }
    let bus = PathBuf::from(format!("/run/user/{}/bus", account.uid));
    owned(&bus).then_some(bus)
}

/// A desktop notification through the user's session bus, if they have
/// one and notify-send is installed. Best effort.
fn desktop(account: &Account, bus: Option<&Path>, text: &str, deadline: Instant) -> bool {
    let Some(bus) = bus else {
        return false;
    };
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

/// Where people can be reached besides utmp: the terminals their processes
/// have as controlling terminal, the `/dev/pts` entries they own, and their
/// processes (for their session bus address).
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// (uid, terminal) of every process's controlling terminal.
    controlling: Vec<(u32, PathBuf)>,
    /// (uid, pid) of every process.
    pids: Vec<(u32, i32)>,
    /// (owner uid, path) of every `/dev/pts/N`.
    pts: Vec<(u32, PathBuf)>,
}

impl Reach {
    /// Looks at `/proc` and `/dev/pts` now: one `stat` of each process
    /// directory (its owner) and one read of its `stat` file (its
    /// controlling terminal), so the scan costs little of a deadline.
    pub fn scan() -> Reach {
        let mut reach = Reach::default();
        if let Ok(entries) = fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<i32>().ok())
                else {
                    continue;
                };
                let Ok(meta) = fs::metadata(entry.path()) else {
                    continue;
                };
                let uid = meta.uid();
                reach.pids.push((uid, pid));
                if let Ok(stat) = fs::read_to_string(entry.path().join("stat"))
                    && let Some(path) = presence::stat_tty(&stat).as_deref().and_then(tty_path)
                    && !reach.controlling.contains(&(uid, path.clone()))
                {
                    reach.controlling.push((uid, path));
                }
            }
        }
        if let Ok(entries) = fs::read_dir("/dev/pts") {
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(line) = name.to_str().map(|n| format!("pts/{n}")) else {
                    continue;
                };
                if let (Some(path), Ok(meta)) = (tty_path(&line), e.metadata())
                    && meta.file_type().is_char_device()
                {
                    reach.pts.push((meta.uid(), path));
                }
            }
        }
        reach.pts.sort();
        reach
    }

    /// The terminals of `uid`: (path, owned by them).
    fn terminals(&self, uid: u32) -> Vec<(PathBuf, bool)> {
        let mut out: Vec<(PathBuf, bool)> = self
            .pts
            .iter()
            .filter(|(u, _)| *u == uid)
            .map(|(_, p)| (p.clone(), true))
            .collect();
        for (_, path) in self.controlling.iter().filter(|(u, _)| *u == uid) {
            if !out.iter().any(|(p, _)| p == path) {
                let owned = fs::metadata(path).is_ok_and(|m| m.uid() == uid);
                out.push((path.clone(), owned));
            }
        }
        out
    }

    fn pids(&self, uid: u32) -> Vec<i32> {
        self.pids
            .iter()
            .filter(|(u, _)| *u == uid)
            .map(|(_, p)| *p)
            .collect()
    }
}

/// Tells `account` `text` on every terminal they are on (from utmp at
/// `utmp`, sessions whose process lives; the `/dev/pts` they own; the
/// controlling terminals of their processes, from `reach`), in every tmux
/// client of theirs (a popup, or the status line and the active pane), and
/// on their desktop. A terminal a tmux client draws on is left to tmux.
/// `force` (admin notices) writes even where the user ran `mesg n`.
/// Helpers run concurrently (one per tmux server, at most
/// [`MAX_TMUX_SOCKETS`]) and are killed at `deadline`; whatever has not
/// answered by then is not waited for, nor counted.
pub fn tell(
    account: &Account,
    text: &str,
    utmp: &Path,
    reach: &Reach,
    force: bool,
    deadline: Instant,
) -> Told {
    let text = sanitize(text);
    let mut told = Told::default();
    // (terminal, owned by the user: the owner check applies).
    let mut terminals: Vec<(PathBuf, bool)> = Vec::new();
    if let Ok(utmp) = Utmp::read(utmp) {
        for login in utmp.logins() {
            if login.user == account.name.as_str()
                && process_exists(login.pid)
                && let Some(path) = tty_path(&login.line)
                && !terminals.iter().any(|(t, _)| *t == path)
            {
                terminals.push((path, true));
            }
        }
    }
    // Panes of tmux clients already told: writing into them is a
    // courtesy, so one that refuses (mesg n, or tmux's 0600 default) does
    // not count as a refusal.
    let mut panes: Vec<PathBuf> = Vec::new();
    // Only login terminals (utmp) count as refusals under `mesg n`: a pts
    // found otherwise that is not group-writable is a tmux client's, an
    // editor's or a program's more often than a person's choice.
    let logins: Vec<PathBuf> = terminals.iter().map(|(t, _)| t.clone()).collect();
    for (path, owned) in reach.terminals(account.uid) {
        if !terminals.iter().any(|(t, _)| *t == path) {
            terminals.push((path, owned));
        }
    }
    let mut sockets = tmux_sockets(account.uid);
    sockets.truncate(MAX_TMUX_SOCKETS);
    let tmux = subprocess::find("tmux").filter(|_| !sockets.is_empty());
    let bus = session_bus(account, &reach.pids(account.uid));
    let desktop_told = std::thread::scope(|scope| {
        let desktop = scope.spawn(|| desktop(account, bus.as_deref(), &text, deadline));
        if let Some(tmux) = &tmux {
            let servers: Vec<_> = sockets
                .iter()
                .map(|socket| {
                    let text = &text;
                    scope.spawn(move || {
                        let clients = tmux_clients(tmux, socket, account, deadline);
                        let shown = clients
                            .iter()
                            .filter(|(client, _)| {
                                tmux_display(tmux, socket, account, client, text, deadline)
                            })
                            .count();
                        (clients, shown)
                    })
                })
                .collect();
            for server in servers {
                let (clients, shown) = server.join().unwrap_or_default();
                told.deliveries += shown;
                for (client, pane) in &clients {
                    if let Some(client) = tty_path(client) {
                        terminals.retain(|(t, _)| *t != client);
                    }
                    if let Some(pane) = tty_path(pane) {
                        panes.push(pane.clone());
                        if !terminals.iter().any(|(t, _)| *t == pane) {
                            terminals.push((pane, true));
                        }
                    }
                }
            }
        }
        desktop.join().unwrap_or(false)
    });
    for (path, owned) in &terminals {
        // A terminal the user has only as their processes' controlling
        // terminal (a `su` shell in root's tmux pane) is theirs to be told
        // on: its owner's `mesg` is about messages to the owner.
        let owner = owned.then_some(account.uid);
        match write_terminal(path, owner, &text, force || !owned) {
            Ok(()) => told.deliveries += 1,
            Err(Skipped::Mesg) if panes.contains(path) || !logins.contains(path) => {}
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
    let reach = Reach::scan();
    std::thread::scope(|scope| {
        let threads: Vec<_> = people
            .iter()
            .map(|(account, text, force)| {
                let reach = &reach;
                scope.spawn(move || tell(account, text, utmp, reach, *force, deadline))
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
        // Everyone: sessions, and people with processes only (a
        // background job is someone to warn before clearing ends it).
        let present: Vec<String> = presence
            .people()
            .iter()
            .map(|(user, _)| user.to_string())
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
            // A reservation made in this batch: its creation message
            // already says it has started or starts soon.
            let created: Vec<ReservationId> = events
                .iter()
                .filter(|e| e.kind == EventKind::Created)
                .map(|e| e.reservation.id)
                .collect();
            for event in &events {
                // The clearing thread tells people as it acts.
                if event.kind == EventKind::Clear {
                    continue;
                }
                if matches!(event.kind, EventKind::Start | EventKind::Lead)
                    && created.contains(&event.reservation.id)
                {
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
    for ((account, text, _), told) in people.iter().zip(told) {
        // Reached nowhere (a background job only, or every terminal
        // refused): the message waits in their inbox.
        let kept = match inbox_dir(settings) {
            Some(dir) if told.deliveries == 0 => match keep_in_inbox(&dir, account, text) {
                Ok(()) => "; kept in their inbox",
                Err(e) => {
                    eprintln!(
                        "hosthogd: cannot keep a message in {}: {e}",
                        dir.join(&account.name).display()
                    );
                    ""
                }
            },
            _ => "",
        };
        eprintln!(
            "hosthogd: told {} about the {} of reservation {} ({} deliveries, {} refused by mesg{kept})",
            account.name,
            event.kind.name(),
            event.reservation.id.short(),
            told.deliveries,
            told.refused
        );
    }
}

/// Largest inbox file; one that would grow past it starts again.
pub const MAX_INBOX: u64 = 64 * 1024;

/// The inbox directory: `inbox/` beside the presence snapshot
/// (`/run/hosthog/inbox`), none without a snapshot.
fn inbox_dir(settings: &Settings) -> Option<PathBuf> {
    Some(settings.presence.as_ref()?.parent()?.join("inbox"))
}

/// Appends `text` (sanitized, one line) to `DIR/USER`: root's file, mode
/// 0640, group the user's primary group, so they (and root) can read what
/// they were told while nothing of theirs could show it. Never follows a
/// symlink; a file that would grow past [`MAX_INBOX`] starts again.
///
/// # Errors
/// The I/O error.
pub fn keep_in_inbox(dir: &Path, account: &Account, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if fs::symlink_metadata(dir).is_err() {
        fs::DirBuilder::new()
            .mode(0o755)
            .recursive(true)
            .create(dir)?;
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(
            "the inbox directory is not a directory only its owner may write",
        ));
    }
    let path = dir.join(&account.name);
    let line = format!("{}\n", sanitize(text));
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::fchown(&file, Some(0), Some(account.gid))?;
    }
    if meta.len() + line.len() as u64 > MAX_INBOX {
        file.set_len(0)?;
    }
    (&file).write_all(line.as_bytes())
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
    fn popups_from_tmux_3_2() {
        for yes in [
            "tmux 3.2",
            "tmux 3.3a",
            "tmux 3.4\n",
            "tmux next-3.5",
            "tmux master",
            "tmux 4.0",
        ] {
            assert!(popup_version(yes), "{yes}");
        }
        for no in ["tmux 3.1c", "tmux 2.9a", "tmux 3.0", "", "tmux"] {
            assert!(!popup_version(no), "{no}");
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
        assert_eq!(
            write_terminal(&file, Some(me), "x", true),
            Err(Skipped::Unusable)
        );
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        assert_eq!(
            write_terminal(&link, Some(0), "x", true),
            Err(Skipped::Unusable)
        );
        assert_eq!(
            write_terminal(Path::new("/dev/null"), Some(me.wrapping_add(1)), "x", true),
            Err(Skipped::Unusable)
        );
        assert_eq!(
            write_terminal(&dir.path().join("none"), Some(me), "x", true),
            Err(Skipped::Unusable)
        );
    }
}
