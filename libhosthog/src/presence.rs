//! Presence: who is on the host and how, as hosthogd last saw it.
//!
//! hosthogd scans utmp (sessions whose process is alive), `/proc` (tmux and
//! screen servers, VS Code servers, X servers of xrdp sessions) and, where
//! it exists, `nvidia-smi` (GPU processes), resolves uids to names through
//! NSS, and writes the result as a [`Presence`] snapshot to
//! [`PRESENCE_PATH`]. Readers (the PAM session summary, `hosthog who`) get
//! user names without any NSS lookup of their own.
//!
//! # The snapshot file
//! One JSON object (docs/presence-format.md), written by root with mode
//! 0644 by renaming a complete file over the old one, so a reader sees the
//! old or the new snapshot, never a torn one:
//!
//! ```json
//! {"version":1,"taken":1767261600,"sessions":[
//!   {"user":"alice","uid":2001,"kind":"login","pid":4242,"tty":"pts/3","from":"10.0.0.5","detail":""},
//!   {"user":"bob","uid":2002,"kind":"tmux","pid":4300,"tty":"","from":"","detail":"/tmp/tmux-2002/default"}]}
//! ```
//!
//! [`Presence::read`] opens it the way a login path must (no symlinks, no
//! blocking, owner and mode checked, size bounded) and validates every
//! field; unknown fields are ignored so an older reader accepts a newer
//! writer's snapshot of the same `version`.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::model::validate_user_name;
use crate::terminal::{is_unsafe, sanitize};

/// Where hosthogd writes the snapshot unless told otherwise.
pub const PRESENCE_PATH: &str = "/run/hosthog/presence.json";
/// The snapshot format this build writes and reads.
pub const PRESENCE_VERSION: u32 = 1;
/// Largest snapshot a reader accepts, in bytes.
pub const MAX_PRESENCE_BYTES: u64 = 512 * 1024;
/// Most sessions in one snapshot; a writer keeps the first ones.
pub const MAX_SESSIONS: usize = 1024;
/// Longest `tty`, `from` or `detail` text, in bytes.
pub const MAX_FIELD: usize = 256;
/// Most sessions of one user in a snapshot: one user's thousand processes
/// named like tmux servers cannot push everyone else out of it.
pub const MAX_SESSIONS_PER_USER: usize = 32;

/// How someone is on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// A login session from utmp (ssh, console, su, xrdp).
    Login,
    /// A tmux server.
    Tmux,
    /// A GNU screen server.
    Screen,
    /// A VS Code (or compatible) remote server.
    Vscode,
    /// An xrdp session (its channel server).
    Xrdp,
    /// An X server run by a user (xorgxrdp, Xvnc, a desktop session).
    Xorg,
    /// A process using a GPU (from nvidia-smi).
    Gpu,
    /// An ssh connection that carries several sessions or one without a
    /// terminal: an OpenSSH ControlMaster (multiplexing) or forwarding
    /// connection, over which its user can open new shells and forwards
    /// without a new login — PAM is not asked again.
    Ssh,
}

impl SessionKind {
    /// A short word for people: `login`, `tmux`, `VS Code`, ...
    pub fn label(self) -> &'static str {
        match self {
            SessionKind::Login => "login",
            SessionKind::Tmux => "tmux",
            SessionKind::Screen => "screen",
            SessionKind::Vscode => "VS Code",
            SessionKind::Xrdp => "xrdp",
            SessionKind::Xorg => "X",
            SessionKind::Gpu => "GPU",
            SessionKind::Ssh => "ssh multiplexing",
        }
    }
}

/// One way one user is on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The user name (resolved by hosthogd).
    pub user: String,
    pub uid: u32,
    pub kind: SessionKind,
    /// The process: the session leader for a login, the server for tmux,
    /// screen and VS Code, the GPU process for `gpu`.
    pub pid: i32,
    /// The terminal without `/dev/` (`pts/3`), or an X display (`:10`).
    #[serde(default)]
    pub tty: String,
    /// The remote host of a login, if any.
    #[serde(default)]
    pub from: String,
    /// What else is known: a tmux socket, a VS Code server path, GPU memory;
    /// for a login not in utmp, how it was seen: `su from root` (a `su`,
    /// `sudo` or `runuser` session, with ` in root's tmux` if it runs in
    /// someone else's tmux), `login uid root` (a process whose login uid is
    /// someone else's), `sshd` (an ssh session seen by its process).
    #[serde(default)]
    pub detail: String,
}

/// The processes of one user in the user uid range (`UID_MIN`..`UID_MAX`
/// of /etc/login.defs), sessions or not: what clearing the host would end
/// if it ended this user's sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processes {
    pub user: String,
    pub uid: u32,
    /// How many processes the user has.
    pub count: usize,
    /// Their names (`comm`), each once, the most common first, at most
    /// [`MAX_COMMANDS`].
    #[serde(default)]
    pub commands: Vec<String>,
    /// The terminals they have as controlling terminal (`pts/3`), each once.
    #[serde(default)]
    pub ttys: Vec<String>,
    /// Of them, how many have no controlling terminal (background jobs,
    /// daemons, nohup'd work).
    #[serde(default)]
    pub detached: usize,
}

/// Most command names listed per user in [`Processes`].
pub const MAX_COMMANDS: usize = 8;

/// A snapshot of everyone on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub version: u32,
    /// When it was taken (UTC seconds).
    pub taken: i64,
    pub sessions: Vec<Session>,
    /// Sessions seen but left out by [`Presence::bound`] (per-user and
    /// size limits).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: usize,
    /// Every user in the user uid range with processes running, sessions
    /// or not (added in version 1: older readers ignore it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<Processes>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One user's sessions, for summaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPresence<'a> {
    pub user: &'a str,
    pub uid: u32,
    pub sessions: Vec<&'a Session>,
}

impl Presence {
    /// An empty snapshot taken at `taken`.
    pub fn new(taken: i64) -> Presence {
        Presence {
            version: PRESENCE_VERSION,
            taken,
            sessions: Vec::new(),
            omitted: 0,
            processes: Vec::new(),
        }
    }

    /// Checks every field: the version, the count, user names, text fields
    /// (length, no terminal controls).
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] naming the first problem.
    pub fn validate(&self) -> Result<()> {
        let corrupt = |m: String| Error::new(ErrorKind::Corrupt, m);
        if self.version != PRESENCE_VERSION {
            return Err(corrupt(format!(
                "presence snapshot version {} is not supported (this build reads {PRESENCE_VERSION})",
                self.version
            )));
        }
        if self.sessions.len() > MAX_SESSIONS {
            return Err(corrupt(format!(
                "the presence snapshot lists {} sessions; at most {MAX_SESSIONS} are accepted",
                self.sessions.len()
            )));
        }
        if self.processes.len() > MAX_SESSIONS {
            return Err(corrupt(format!(
                "the presence snapshot lists the processes of {} users; at most {MAX_SESSIONS} are accepted",
                self.processes.len()
            )));
        }
        for p in &self.processes {
            validate_user_name(&p.user).map_err(|e| corrupt(format!("presence snapshot: {e}")))?;
            if p.commands.len() > MAX_COMMANDS || p.ttys.len() > MAX_COMMANDS {
                return Err(corrupt(format!(
                    "presence snapshot: the processes of {} list more than {MAX_COMMANDS} commands or terminals",
                    p.user
                )));
            }
            for text in p.commands.iter().chain(&p.ttys) {
                if text.len() > MAX_FIELD || text.chars().any(is_unsafe) {
                    return Err(corrupt(format!(
                        "presence snapshot: a command or terminal of {} is too long or holds control characters",
                        p.user
                    )));
                }
            }
        }
        for s in &self.sessions {
            validate_user_name(&s.user).map_err(|e| corrupt(format!("presence snapshot: {e}")))?;
            for (name, text) in [("tty", &s.tty), ("from", &s.from), ("detail", &s.detail)] {
                if text.len() > MAX_FIELD || text.chars().any(is_unsafe) {
                    return Err(corrupt(format!(
                        "presence snapshot: the {name} of a session of {} is too long or holds control characters",
                        s.user
                    )));
                }
            }
        }
        Ok(())
    }

    /// The snapshot as file bytes (one JSON object and a newline).
    ///
    /// # Errors
    /// As [`Presence::validate`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut bytes =
            serde_json::to_vec(self).map_err(|e| Error::new(ErrorKind::Invalid, e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Parses and validates snapshot bytes.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] for oversized, malformed or invalid bytes.
    ///
    /// # Example
    /// ```
    /// let bytes = br#"{"version":1,"taken":5,"sessions":[{"user":"bob","uid":1001,"kind":"tmux","pid":7}]}"#;
    /// let presence = libhosthog::Presence::parse(bytes).unwrap();
    /// assert_eq!(presence.sessions[0].kind, libhosthog::SessionKind::Tmux);
    /// assert!(libhosthog::Presence::parse(b"{\"version\":2}").is_err());
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Presence> {
        if bytes.len() as u64 > MAX_PRESENCE_BYTES {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("the presence snapshot is larger than {MAX_PRESENCE_BYTES} bytes"),
            ));
        }
        let presence: Presence = serde_json::from_slice(bytes).map_err(|e| {
            Error::new(
                ErrorKind::Corrupt,
                format!("the presence snapshot is not valid: {e}"),
            )
        })?;
        presence.validate()?;
        Ok(presence)
    }

    /// Reads the snapshot at `path`, trusting only a regular file owned by
    /// `owner` (0 in production) that nobody else may write, without
    /// following a symlink and without blocking. Does no NSS lookups.
    ///
    /// # Errors
    /// [`ErrorKind::Missing`] if there is none (hosthogd is not running),
    /// [`ErrorKind::Insecure`], [`ErrorKind::Corrupt`] or [`ErrorKind::Io`].
    pub fn read(path: &Path, owner: u32) -> Result<Presence> {
        let (file, _) = crate::table_file::open_trusted(path, owner, "presence snapshot")?;
        let mut bytes = Vec::new();
        file.take(MAX_PRESENCE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("cannot read the presence snapshot", path, e))?;
        Presence::parse(&bytes).map_err(|e| e.at(path))
    }

    /// True if the snapshot was taken at most `max_age` seconds before
    /// `now` (and not in the future by more than that).
    pub fn is_fresh(&self, now: i64, max_age: i64) -> bool {
        (now - self.taken).abs() <= max_age
    }

    /// Keeps at most `per_user` sessions of each user (the first ones:
    /// sort logins first) and, of those, as many as fit in `max_bytes` of
    /// JSON, lowering the per-user share until they do so that every user
    /// keeps some, and counts what was left out in `omitted`.
    pub fn bound(&mut self, per_user: usize, max_bytes: usize) {
        // The process lists take at most a quarter.
        let mut process_bytes = 0;
        let mut keep = 0;
        for p in &self.processes {
            let n = serde_json::to_vec(p).map_or(usize::MAX, |v| v.len() + 1);
            if process_bytes + n > max_bytes / 4 {
                break;
            }
            process_bytes += n;
            keep += 1;
        }
        self.processes.truncate(keep);
        let max_bytes = max_bytes - process_bytes;
        let size = |s: &Session| serde_json::to_vec(s).map_or(usize::MAX, |v| v.len() + 1);
        let mut share = per_user.max(1);
        loop {
            let mut kept: Vec<Session> = Vec::with_capacity(self.sessions.len());
            let mut counts: std::collections::HashMap<&str, usize> =
                std::collections::HashMap::new();
            let mut bytes = 64;
            let mut fits = true;
            for s in &self.sessions {
                let n = counts.entry(s.user.as_str()).or_default();
                if *n >= share {
                    continue;
                }
                *n += 1;
                bytes += size(s);
                if bytes > max_bytes {
                    fits = false;
                    if share > 1 {
                        break;
                    }
                    continue;
                }
                kept.push(s.clone());
            }
            if fits || share == 1 {
                self.omitted += self.sessions.len() - kept.len();
                self.sessions = kept;
                return;
            }
            share /= 2;
        }
    }

    /// The sessions grouped by user, users in order of first appearance.
    pub fn users(&self) -> Vec<UserPresence<'_>> {
        let mut out: Vec<UserPresence<'_>> = Vec::new();
        for s in &self.sessions {
            match out.iter_mut().find(|u| u.user == s.user) {
                Some(u) => u.sessions.push(s),
                None => out.push(UserPresence {
                    user: &s.user,
                    uid: s.uid,
                    sessions: vec![s],
                }),
            }
        }
        out
    }

    /// True if `user` has any session.
    pub fn is_present(&self, user: &str) -> bool {
        self.sessions.iter().any(|s| s.user == user)
    }

    /// Everyone on the host, (name, uid): those with a session, then
    /// those with processes only, each once.
    pub fn people(&self) -> Vec<(&str, u32)> {
        let mut out: Vec<(&str, u32)> = Vec::new();
        let all = self
            .sessions
            .iter()
            .map(|s| (s.user.as_str(), s.uid))
            .chain(self.processes.iter().map(|p| (p.user.as_str(), p.uid)));
        for (user, uid) in all {
            if !out.iter().any(|(u, _)| *u == user) {
                out.push((user, uid));
            }
        }
        out
    }

    /// The processes of `user`, if they are in the user uid range and have
    /// any.
    pub fn processes_of(&self, user: &str) -> Option<&Processes> {
        self.processes.iter().find(|p| p.user == user)
    }
}

impl UserPresence<'_> {
    /// `alice (pts/3 from 10.0.0.5, tmux, VS Code)`, sanitized, each kind
    /// once.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for s in &self.sessions {
            let part = match s.kind {
                SessionKind::Login if !s.from.is_empty() => {
                    format!("{} from {}", sanitize(&s.tty), sanitize(&s.from))
                }
                SessionKind::Login if s.detail.starts_with("su ") => {
                    format!("{} via su", sanitize(&s.tty))
                }
                SessionKind::Login => sanitize(&s.tty).into_owned(),
                kind => kind.label().to_string(),
            };
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        let mut text = sanitize(self.user).into_owned();
        if !parts.is_empty() {
            let _ = write!(text, " ({})", parts.join(", "));
        }
        text
    }
}

/// Path fragments that mark a VS Code-style remote server.
const REMOTE_SERVERS: [&str; 4] = [
    ".vscode-server",
    ".vscode-server-insiders",
    ".cursor-server",
    ".windsurf-server",
];

/// What a process is, from its name (`/proc/PID/comm`) and its command line
/// (`/proc/PID/cmdline`, NUL-separated): a tmux or screen server, a VS Code
/// server process, an xrdp session or a user's X server. Returns the kind
/// and a detail (a socket, a path, a display), or `None` for anything else.
///
/// # Example
/// ```
/// use libhosthog::{SessionKind, classify_process};
/// let vscode = b"/home/a/.vscode-server/bin/abc/node\0server-main.js\0";
/// assert_eq!(classify_process("node", vscode).unwrap().0, SessionKind::Vscode);
/// assert_eq!(classify_process("tmux: server", b"tmux\0").unwrap().0, SessionKind::Tmux);
/// assert!(classify_process("bash", b"-bash\0").is_none());
/// // An ssh connection multiplexing two sessions (a ControlMaster).
/// assert_eq!(
///     classify_process("sshd", b"sshd: alice@pts/3,pts/5\0"),
///     Some((SessionKind::Ssh, "pts/3,pts/5".into()))
/// );
/// assert!(classify_process("sshd", b"sshd: alice@pts/3\0").is_none());
/// assert!(classify_process("sshd", b"sshd: alice [priv]\0").is_none());
/// ```
pub fn classify_process(comm: &str, cmdline: &[u8]) -> Option<(SessionKind, String)> {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let argv0 = args.first().map(String::as_str).unwrap_or("");
    let option = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if comm == "tmux: server" {
        let detail = option("-S")
            .or_else(|| option("-L").map(|name| format!("-L {name}")))
            .unwrap_or_else(|| "default".to_string());
        return Some((SessionKind::Tmux, field(&detail)));
    }
    // The screen server renames itself SCREEN; clients stay `screen`.
    if comm == "SCREEN" || argv0 == "SCREEN" || argv0.ends_with("/SCREEN") {
        let detail = option("-S").unwrap_or_default();
        return Some((SessionKind::Screen, field(&detail)));
    }
    if let Some(arg) = args
        .iter()
        .find(|a| REMOTE_SERVERS.iter().any(|m| a.contains(&format!("{m}/"))))
    {
        return Some((SessionKind::Vscode, field(arg)));
    }
    // OpenSSH titles the user's side of a connection "sshd: USER@TTYS"
    // ("sshd-session:" from 9.8), TTYS being every session's terminal,
    // comma-separated, or "notty". Several, or none (a ControlMaster or a
    // forward), mean more can be opened without a login.
    if matches!(comm, "sshd" | "sshd-session")
        && let Some(title) = argv0
            .strip_prefix("sshd: ")
            .or_else(|| argv0.strip_prefix("sshd-session: "))
        && let Some((_, ttys)) = title.split_once('@')
        && (ttys.contains(',') || ttys.trim() == "notty")
    {
        return Some((SessionKind::Ssh, field(ttys.trim())));
    }
    if comm == "xrdp-chansrv" {
        return Some((SessionKind::Xrdp, String::new()));
    }
    if matches!(comm, "Xorg" | "Xvnc" | "Xtigervnc" | "Xwayland" | "Xvfb") {
        let display = args
            .iter()
            .skip(1)
            .find(|a| {
                a.starts_with(':') && a.len() > 1 && a[1..].bytes().all(|b| b.is_ascii_digit())
            })
            .cloned()
            .unwrap_or_default();
        return Some((SessionKind::Xorg, field(&display)));
    }
    None
}

/// Text from a process, made safe and short for a snapshot field.
pub fn field(text: &str) -> String {
    let clean = sanitize(text);
    if clean.len() <= MAX_FIELD {
        return clean.into_owned();
    }
    let mut end = MAX_FIELD - 3;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &clean[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user: &str, kind: SessionKind) -> Session {
        Session {
            user: user.into(),
            uid: 1000,
            kind,
            pid: 10,
            tty: String::new(),
            from: String::new(),
            detail: String::new(),
        }
    }

    #[test]
    fn one_users_thousand_sessions_do_not_push_others_out() {
        let mut p = Presence::new(0);
        for pid in 0..1100 {
            let mut s = session("mallory", SessionKind::Tmux);
            s.pid = pid;
            s.detail = "x".repeat(MAX_FIELD);
            p.sessions.push(s);
        }
        p.sessions.push(session("zoe", SessionKind::Login));
        p.bound(MAX_SESSIONS_PER_USER, 64 * 1024);
        let users = p.users();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].sessions.len(), MAX_SESSIONS_PER_USER);
        assert_eq!(users[1].user, "zoe");
        assert_eq!(p.omitted, 1100 - MAX_SESSIONS_PER_USER);
        assert!(serde_json::to_vec(&p).unwrap().len() < 64 * 1024);
        p.validate().unwrap();

        // Too big even at 32 a user: the share shrinks, everyone keeps some.
        let mut p = Presence::new(0);
        for u in 0..100 {
            for pid in 0..40 {
                let mut s = session(&format!("u{u}"), SessionKind::Tmux);
                s.pid = pid;
                s.detail = "y".repeat(MAX_FIELD);
                p.sessions.push(s);
            }
        }
        p.bound(MAX_SESSIONS_PER_USER, 64 * 1024);
        assert!(serde_json::to_vec(&p).unwrap().len() < 64 * 1024);
        assert_eq!(p.sessions.len() + p.omitted, 4000);
        assert_eq!(p.users().len(), 100);
    }

    #[test]
    fn round_trip_and_validation() {
        let mut p = Presence::new(100);
        let mut login = session("alice", SessionKind::Login);
        login.tty = "pts/3".into();
        login.from = "10.0.0.5".into();
        p.sessions.push(login);
        p.sessions.push(session("alice", SessionKind::Tmux));
        p.sessions.push(session("bob", SessionKind::Vscode));
        let bytes = p.encode().unwrap();
        assert_eq!(Presence::parse(&bytes).unwrap(), p);

        let users = p.users();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].describe(), "alice (pts/3 from 10.0.0.5, tmux)");
        assert_eq!(users[1].describe(), "bob (VS Code)");

        // Unknown fields from a newer writer are ignored.
        let newer = br#"{"version":1,"taken":1,"sessions":[],"future":true}"#;
        assert!(Presence::parse(newer).is_ok());

        for bad in [
            r#"{"version":2,"taken":1,"sessions":[]}"#.to_string(),
            r#"{"version":1,"taken":1,"sessions":[{"user":"bad name","uid":1,"kind":"login","pid":1}]}"#.into(),
            r#"{"version":1,"taken":1,"sessions":[{"user":"a","uid":1,"kind":"fly","pid":1}]}"#.into(),
            r#"{"version":1,"taken":1,"sessions":[{"user":"a","uid":1,"kind":"login","pid":1,"tty":"\u001b[2J"}]}"#.into(),
            format!(r#"{{"version":1,"taken":1,"sessions":[{{"user":"a","uid":1,"kind":"login","pid":1,"detail":"{}"}}]}}"#, "x".repeat(300)),
            "not json".into(),
            String::new(),
        ] {
            let err = Presence::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{bad}");
        }
        let huge = vec![b' '; MAX_PRESENCE_BYTES as usize + 1];
        assert!(Presence::parse(&huge).is_err());
    }

    #[test]
    fn read_checks_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presence.json");
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(
            Presence::read(&path, me).unwrap_err().kind(),
            ErrorKind::Missing
        );
        std::fs::write(&path, Presence::new(5).encode().unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(Presence::read(&path, me).unwrap().taken, 5);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(
            Presence::read(&path, me).unwrap_err().kind(),
            ErrorKind::Insecure
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            Presence::read(&path, me.wrapping_add(1))
                .unwrap_err()
                .kind(),
            ErrorKind::Insecure
        );
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(
            Presence::read(&link, me).unwrap_err().kind(),
            ErrorKind::Insecure
        );
    }

    #[test]
    fn classifies_processes() {
        let c = |comm: &str, cmd: &str| classify_process(comm, cmd.replace(' ', "\0").as_bytes());
        assert_eq!(
            c("tmux: server", "tmux -S /tmp/x/sock new -d"),
            Some((SessionKind::Tmux, "/tmp/x/sock".into()))
        );
        assert_eq!(
            c("tmux: server", "tmux"),
            Some((SessionKind::Tmux, "default".into()))
        );
        assert_eq!(c("tmux: client", "tmux attach"), None);
        assert_eq!(
            c("screen", "SCREEN -S work"),
            Some((SessionKind::Screen, "work".into()))
        );
        assert_eq!(c("screen", "screen -r"), None);
        assert_eq!(
            c("sleep", "/home/d/.vscode-server/bin/1a2b/node 60"),
            Some((
                SessionKind::Vscode,
                "/home/d/.vscode-server/bin/1a2b/node".into()
            ))
        );
        assert_eq!(
            c("sh", "sh /home/d/.cursor-server/bin/x/bin/code-server"),
            Some((
                SessionKind::Vscode,
                "/home/d/.cursor-server/bin/x/bin/code-server".into()
            ))
        );
        assert_eq!(c("grep", "grep vscode-server"), None);
        assert_eq!(
            c("Xorg", "/usr/lib/xorg/Xorg :10 -auth .Xauthority"),
            Some((SessionKind::Xorg, ":10".into()))
        );
        assert_eq!(
            c("xrdp-chansrv", "/usr/sbin/xrdp-chansrv"),
            Some((SessionKind::Xrdp, String::new()))
        );
        assert_eq!(c("bash", "-bash"), None);
        assert!(field(&"é".repeat(200)).len() <= MAX_FIELD);
        assert_eq!(field("a\u{1b}b"), "a?b");
    }
}
