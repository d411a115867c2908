//! Who is on the host, scanned: login sessions from utmp (kept only while
//! their process lives); from `/proc`, whatever utmp says: `su`/`sudo`
//! sessions (a user's process under someone else's `su`, or whose login
//! uid is someone else's), ssh sessions by their `sshd` process, tmux and
//! screen servers, VS Code servers, X servers, GPU processes (an open
//! `/dev/nvidia*`, and `nvidia-smi` where it exists), and every process of
//! a uid in the user range (`UID_MIN`..`UID_MAX`), counted per user with
//! its terminals. Uids become names through NSS here, so the snapshot's
//! readers (the PAM module) need none. The model and the file format are
//! libhosthog's [`Presence`].

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use libhosthog::presence::field;
use libhosthog::{
    MAX_COMMANDS, Presence, Processes, Session, SessionKind, Utmp, classify_process, process_exists,
};

use crate::nss::{self, Account};
use crate::{runfile, subprocess};

/// Longest command line read from `/proc/PID/cmdline`.
const MAX_CMDLINE: u64 = 4096;
/// How long nvidia-smi may take.
const GPU_TIMEOUT: Duration = Duration::from_secs(5);

/// One process, as `/proc` shows it.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    /// The real uid: whose session it belongs to.
    pub uid: u32,
    pub comm: String,
    pub cmdline: Vec<u8>,
    /// The login uid (`/proc/PID/loginuid`), if set.
    pub loginuid: Option<u32>,
    /// Its controlling terminal without `/dev/` (`pts/3`), if any.
    pub tty: Option<String>,
    /// It has a `/dev/nvidia*` device open (which one).
    pub gpu: Option<String>,
}

/// Programs that start a session of another user: the user's process
/// under one of these is a `su` session.
const SU_PROGRAMS: [&str; 4] = ["su", "sudo", "runuser", "doas"];

/// The terminal named by a `tty_nr` of `/proc/PID/stat` (a device number),
/// for the kinds hosthog writes to: `pts/N` (majors 136–143) and `ttyN`
/// (major 4, minors 1–63).
///
/// # Example
/// ```
/// use hosthogd::presence::tty_name;
/// assert_eq!(tty_name(136 << 8 | 3).as_deref(), Some("pts/3"));
/// assert_eq!(tty_name((136 << 8) | (2 << 20)).as_deref(), Some("pts/512"));
/// assert_eq!(tty_name(4 << 8 | 2).as_deref(), Some("tty2"));
/// assert_eq!(tty_name(0), None);
/// ```
pub fn tty_name(tty_nr: u64) -> Option<String> {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xf_ff00);
    match major {
        136..=143 => Some(format!("pts/{}", (major - 136) * 256 + minor)),
        4 if (1..64).contains(&minor) => Some(format!("tty{minor}")),
        _ => None,
    }
}

/// The controlling terminal named in `/proc/PID/stat` text (`pts/3`).
pub fn stat_tty(stat: &str) -> Option<String> {
    stat_tty_nr(stat).and_then(tty_name)
}

/// The controlling terminal's device number from `/proc/PID/stat` text.
fn stat_tty_nr(stat: &str) -> Option<u64> {
    // pid (comm) state ppid pgrp session tty_nr ...; comm may hold spaces
    // and parentheses, so split after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace()
        .nth(4)?
        .parse::<i64>()
        .ok()
        .map(|n| n as u64)
}

/// Which `/dev/nvidia*` device process `pid` has open, if any (at most
/// [`MAX_FDS`] descriptors are looked at).
fn gpu_device(pid: i32) -> Option<String> {
    let dir = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for entry in dir.flatten().take(MAX_FDS) {
        if let Ok(target) = fs::read_link(entry.path())
            && let Some(name) = target.to_str()
            && name.starts_with("/dev/nvidia")
            && name[11..].bytes().all(|b| b.is_ascii_digit())
            && name.len() > 11
        {
            return Some(name.to_string());
        }
    }
    None
}

/// Most file descriptors of one process looked at for a GPU device.
const MAX_FDS: usize = 4096;

fn read_bounded(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    fs::File::open(path)
        .ok()?
        .take(limit)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// The real uid and parent of a process, from `/proc/PID/status`.
pub fn status(pid: i32) -> Option<(u32, i32)> {
    let text = read_bounded(Path::new(&format!("/proc/{pid}/status")), 8192)?;
    let text = String::from_utf8_lossy(&text);
    let mut uid = None;
    let mut ppid = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            uid = rest.split_whitespace().next().and_then(|u| u.parse().ok());
        } else if let Some(rest) = line.strip_prefix("PPid:") {
            ppid = rest.trim().parse().ok();
        }
    }
    Some((uid?, ppid?))
}

/// Every user process (kernel threads, which have no command line, are
/// left out). Processes that exit during the scan are skipped.
pub fn processes() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    // Open GPU devices are looked for only where there are any.
    let gpus = ["/dev/nvidiactl", "/dev/nvidia0"]
        .iter()
        .any(|d| Path::new(d).exists());
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Some((uid, ppid)) = status(pid) else {
            continue;
        };
        let base = entry.path();
        let Some(cmdline) = read_bounded(&base.join("cmdline"), MAX_CMDLINE) else {
            continue;
        };
        if cmdline.is_empty() {
            continue;
        }
        let comm = read_bounded(&base.join("comm"), 64)
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .trim_end_matches('\n')
                    .to_string()
            })
            .unwrap_or_default();
        let loginuid = read_bounded(&base.join("loginuid"), 16)
            .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<u32>().ok())
            .filter(|u| *u != u32::MAX);
        let tty = read_bounded(&base.join("stat"), 4096)
            .and_then(|b| stat_tty_nr(&String::from_utf8_lossy(&b)))
            .and_then(tty_name);
        let gpu = if uid == 0 || !gpus {
            None
        } else {
            gpu_device(pid)
        };
        out.push(Proc {
            pid,
            ppid,
            uid,
            comm,
            cmdline,
            loginuid,
            tty,
            gpu,
        });
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// uid ↔ account lookups through NSS, each asked once per scan.
#[derive(Debug, Default)]
pub struct Names {
    by_uid: HashMap<u32, Option<Account>>,
    by_name: HashMap<String, Option<Account>>,
}

impl Names {
    pub fn by_uid(&mut self, uid: u32) -> Option<Account> {
        self.by_uid
            .entry(uid)
            .or_insert_with(|| nss::user_by_uid(uid))
            .clone()
    }

    pub fn by_name(&mut self, name: &str) -> Option<Account> {
        if let Some(found) = self.by_name.get(name) {
            return found.clone();
        }
        let found = nss::user_by_name(name);
        self.by_name.insert(name.to_string(), found.clone());
        found
    }
}

/// Scans the host now: utmp at `utmp`, `/proc`, nvidia-smi.
pub fn scan(utmp: &Path, now: i64) -> Presence {
    let procs = processes();
    scan_with(utmp, &procs, now, &mut Names::default())
}

/// [`scan`] over processes already read.
pub fn scan_with(utmp: &Path, procs: &[Proc], now: i64, names: &mut Names) -> Presence {
    let mut presence = Presence::new(now);
    let sessions = &mut presence.sessions;
    if let Ok(utmp) = Utmp::read(utmp) {
        for login in utmp.logins() {
            if !process_exists(login.pid) {
                continue;
            }
            let Some(account) = names.by_name(&login.user) else {
                continue;
            };
            sessions.push(Session {
                user: account.name,
                uid: account.uid,
                kind: SessionKind::Login,
                pid: login.pid,
                tty: field(&login.line),
                from: field(&login.host),
                detail: String::new(),
            });
        }
    }
    let by_pid: HashMap<i32, &Proc> = procs.iter().map(|p| (p.pid, p)).collect();
    let kind_of = |p: &Proc| classify_process(&p.comm, &p.cmdline);
    for p in procs {
        let Some((kind, mut detail)) = kind_of(p) else {
            continue;
        };
        // A VS Code server is a tree of processes: list its top only.
        if kind == SessionKind::Vscode
            && by_pid.get(&p.ppid).is_some_and(|parent| {
                parent.uid == p.uid && kind_of(parent).is_some_and(|(k, _)| k == kind)
            })
        {
            continue;
        }
        if kind == SessionKind::Tmux && detail == "default" {
            detail = format!("/tmp/tmux-{}/default", p.uid);
        }
        let Some(account) = names.by_uid(p.uid) else {
            continue;
        };
        sessions.push(Session {
            user: account.name,
            uid: p.uid,
            kind,
            pid: p.pid,
            tty: String::new(),
            from: String::new(),
            detail,
        });
    }
    for p in procs {
        let Some((detail, tty)) = session_top(p, &by_pid, names) else {
            continue;
        };
        if sessions.iter().any(|s| {
            s.uid == p.uid && s.kind == SessionKind::Login && s.tty == tty && !tty.is_empty()
        }) {
            continue;
        }
        let Some(account) = names.by_uid(p.uid) else {
            continue;
        };
        sessions.push(Session {
            user: account.name,
            uid: p.uid,
            kind: SessionKind::Login,
            pid: p.pid,
            tty,
            from: String::new(),
            detail,
        });
    }
    let mut gpu: Vec<(i32, String)> = procs
        .iter()
        .filter_map(|p| Some((p.pid, p.gpu.clone()?)))
        .collect();
    for (pid, detail) in gpu_processes() {
        match gpu.iter_mut().find(|(p, _)| *p == pid) {
            Some(known) => known.1 = detail,
            None => gpu.push((pid, detail)),
        }
    }
    for (pid, detail) in gpu {
        let Some(p) = by_pid.get(&pid) else {
            continue;
        };
        let Some(account) = names.by_uid(p.uid) else {
            continue;
        };
        sessions.push(Session {
            user: account.name,
            uid: p.uid,
            kind: SessionKind::Gpu,
            pid,
            tty: String::new(),
            from: String::new(),
            detail,
        });
    }
    presence.processes = summaries(procs, names);
    let sessions = &mut presence.sessions;
    sessions.retain(|s| libhosthog::validate_user_name(&s.user).is_ok());
    sessions.sort_by(|a, b| (&a.user, a.kind, a.pid).cmp(&(&b.user, b.kind, b.pid)));
    // At most MAX_SESSIONS_PER_USER each (logins sort first), so one user
    // cannot push others out of the snapshot, and a snapshot readers accept.
    presence.bound(
        libhosthog::MAX_SESSIONS_PER_USER,
        libhosthog::MAX_PRESENCE_BYTES as usize / 2,
    );
    presence.sessions.truncate(libhosthog::MAX_SESSIONS);
    presence
}

/// If `p` is the first process of a session of its user that utmp may not
/// show, how it was seen (a [`Session::detail`]) and its terminal:
/// - under `su`, `sudo`, `runuser` or `doas` run by someone else:
///   `su from NAME` (NAME: the login uid's owner, else the program's), with
///   ` in OWNER's tmux` when a tmux server of another user is an ancestor;
/// - an ssh session's own `sshd: USER@pts/N` process: `sshd`;
/// - a process whose login uid is someone else's and whose parent is not
///   its user's: `login uid NAME`.
fn session_top(
    p: &Proc,
    by_pid: &HashMap<i32, &Proc>,
    names: &mut Names,
) -> Option<(String, String)> {
    let tty = p.tty.clone().unwrap_or_default();
    if matches!(p.comm.as_str(), "sshd" | "sshd-session") && p.uid != 0 {
        let argv0 = p.cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0);
        let title = argv0
            .strip_prefix("sshd: ")
            .or_else(|| argv0.strip_prefix("sshd-session: "))?;
        let (_, ttys) = title.split_once('@')?;
        let line = ttys.trim();
        if line.starts_with("pts/") && !line.contains(',') {
            return Some(("sshd".into(), field(line)));
        }
        return None;
    }
    let parent = by_pid.get(&p.ppid)?;
    if parent.uid == p.uid {
        return None;
    }
    let name = |uid: u32, names: &mut Names| {
        names
            .by_uid(uid)
            .map_or_else(|| format!("uid {uid}"), |a| a.name)
    };
    if SU_PROGRAMS.contains(&parent.comm.as_str()) {
        let from = p.loginuid.filter(|u| *u != p.uid).unwrap_or(parent.uid);
        let mut detail = format!("su from {}", name(from, names));
        // The tmux server it runs in, if someone else's.
        let mut at = parent.ppid;
        for _ in 0..64 {
            let Some(q) = by_pid.get(&at) else { break };
            if q.comm == "tmux: server" {
                if q.uid != p.uid {
                    detail += &format!(" in {}'s tmux", name(q.uid, names));
                }
                break;
            }
            at = q.ppid;
        }
        return Some((field(&detail), tty));
    }
    match p.loginuid {
        Some(login) if login != p.uid && p.uid != 0 => {
            Some((field(&format!("login uid {}", name(login, names))), tty))
        }
        _ => None,
    }
}

/// Every user in the user uid range with processes: how many, which
/// commands, which terminals.
fn summaries(procs: &[Proc], names: &mut Names) -> Vec<Processes> {
    let mut by_uid: Vec<(u32, Vec<&Proc>)> = Vec::new();
    for p in procs.iter().filter(|p| crate::clear::ordinary(p.uid)) {
        match by_uid.iter_mut().find(|(u, _)| *u == p.uid) {
            Some((_, list)) => list.push(p),
            None => by_uid.push((p.uid, vec![p])),
        }
    }
    let mut out = Vec::new();
    for (uid, list) in by_uid {
        let Some(account) = names.by_uid(uid) else {
            continue;
        };
        if libhosthog::validate_user_name(&account.name).is_err() {
            continue;
        }
        let mut counts: Vec<(String, usize)> = Vec::new();
        let mut ttys: Vec<String> = Vec::new();
        let mut detached = 0;
        for p in &list {
            let comm = field(&p.comm);
            match counts.iter_mut().find(|(c, _)| *c == comm) {
                Some((_, n)) => *n += 1,
                None => counts.push((comm, 1)),
            }
            match &p.tty {
                Some(t) if !ttys.contains(t) => ttys.push(t.clone()),
                Some(_) => {}
                None => detached += 1,
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ttys.sort();
        ttys.truncate(MAX_COMMANDS);
        out.push(Processes {
            user: account.name,
            uid,
            count: list.len(),
            commands: counts
                .into_iter()
                .take(MAX_COMMANDS)
                .map(|(c, _)| c)
                .collect(),
            ttys,
            detached,
        });
    }
    out.sort_by(|a, b| a.user.cmp(&b.user));
    out
}

/// Processes using a GPU and what they use, from nvidia-smi (none where it
/// is not installed or does not answer in time).
fn gpu_processes() -> Vec<(i32, String)> {
    let Some(smi) = subprocess::find("nvidia-smi") else {
        return Vec::new();
    };
    let mut cmd = std::process::Command::new(smi);
    cmd.args([
        "--query-compute-apps=pid,used_memory,process_name",
        "--format=csv,noheader,nounits",
    ])
    .env_clear()
    .env("PATH", subprocess::PATH);
    let Some(done) = subprocess::run_bounded(cmd, GPU_TIMEOUT, 256 * 1024) else {
        return Vec::new();
    };
    if !done.status.success() {
        return Vec::new();
    }
    parse_gpu(&String::from_utf8_lossy(&done.stdout))
}

/// Parses `pid, used_memory, process_name` lines.
fn parse_gpu(text: &str) -> Vec<(i32, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ',').map(str::trim);
            let pid = parts.next()?.parse().ok()?;
            let memory = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or("");
            Some((pid, field(&format!("{memory} MiB, {name}"))))
        })
        .collect()
}

/// Writes `presence` to `path` atomically (see [`runfile::replace`]).
///
/// # Errors
/// The I/O error, or invalid data if the snapshot does not validate.
pub fn write_snapshot(path: &Path, presence: &Presence) -> io::Result<()> {
    let bytes = presence
        .encode()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    runfile::replace(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_lines() {
        assert_eq!(
            parse_gpu("1234, 5120, python\n99, 10, /usr/bin/x, y\nbad\n"),
            [
                (1234, "5120 MiB, python".to_string()),
                (99, "10 MiB, /usr/bin/x, y".to_string())
            ]
        );
    }

    #[test]
    fn own_process_is_listed() {
        let me = std::process::id() as i32;
        let procs = processes();
        let p = procs.iter().find(|p| p.pid == me).unwrap();
        // SAFETY: getuid has no preconditions.
        assert_eq!(p.uid, unsafe { libc::getuid() });
        assert!(!p.cmdline.is_empty());
    }

    #[test]
    fn snapshot_written_atomically_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/presence.json");
        let mut presence = Presence::new(42);
        presence.sessions.push(Session {
            user: "alice".into(),
            uid: 2001,
            kind: SessionKind::Tmux,
            pid: 7,
            tty: String::new(),
            from: String::new(),
            detail: "/tmp/tmux-2001/default".into(),
        });
        write_snapshot(&path, &presence).unwrap();
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(Presence::read(&path, me).unwrap(), presence);
    }
}
