//! Who is on the host, scanned: login sessions from utmp (kept only while
//! their process lives), tmux and screen servers, VS Code servers and X
//! servers from `/proc`, and GPU processes from `nvidia-smi` where it
//! exists. Uids become names through NSS here, so the snapshot's readers
//! (the PAM module) need none. The model and the file format are
//! libhosthog's [`Presence`].

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use libhosthog::presence::field;
use libhosthog::{Presence, Session, SessionKind, Utmp, classify_process, process_exists};

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
}

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
        out.push(Proc {
            pid,
            ppid,
            uid,
            comm,
            cmdline,
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
    for (pid, detail) in gpu_processes() {
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
