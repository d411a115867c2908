//! Child processes that are always stopped: short commands run with a deadline, long-lived
//! daemons held by a [`ProcessGuard`] that kills the whole process tree (found through the
//! `ppid` field of `/proc/*/stat`) when dropped, including while a test panics.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single helper command may run before the harness kills it and fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the harness polls while it waits for something.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Exit code; `None` if the process was ended by a signal.
    pub code: Option<i32>,
    /// Everything written to stdout, lossily decoded.
    pub stdout: String,
    /// Everything written to stderr, lossily decoded.
    pub stderr: String,
}

impl Captured {
    /// Fails the test unless the command exited with code 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "{what} failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` to completion with `stdin` as its input, capturing stdout and stderr.
///
/// If it has not finished after `timeout`, the command and every process it started are
/// killed by pid and the test fails with what was captured so far.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Captured {
    run_typing(cmd, stdin.map(|input| (&[][..], input)), timeout)
}

/// Like [`run`], but types `input` only once stdout has shown one of `ready` (a shell
/// prompt): on a pty, input typed ahead is echoed wherever it happens to land among the
/// output printed before the shell reads it, even in the middle of a line.
///
/// If none of `ready` ever shows, nothing is typed and the timeout ends the command.
pub fn run_when_ready(
    cmd: &mut Command,
    ready: &[&str],
    input: &str,
    timeout: Duration,
) -> Captured {
    run_typing(cmd, Some((ready, input.as_bytes())), timeout)
}

/// Output read so far and whether the pipe has ended, with a signal for each change.
type Transcript = Arc<(Mutex<(Vec<u8>, bool)>, Condvar)>;

/// [`run`] and [`run_when_ready`]: `input` is `(ready, bytes)`, the bytes typed once
/// stdout shows one of `ready` (at once if `ready` is empty).
fn run_typing(cmd: &mut Command, input: Option<(&[&str], &[u8])>, timeout: Duration) -> Captured {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    kill_with_parent(cmd);
    let described = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
    let seen: Transcript = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
    if let Some(mut pipe) = child.stdout.take() {
        let seen = Arc::clone(&seen);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                let n = pipe.read(&mut chunk).unwrap_or(0);
                let (lock, changed) = &*seen;
                let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
                if n == 0 {
                    state.1 = true;
                } else {
                    state.0.extend_from_slice(&chunk[..n]);
                }
                changed.notify_all();
                if n == 0 {
                    break;
                }
            }
        });
    }
    if let (Some((ready, input)), Some(mut pipe)) = (input, child.stdin.take()) {
        let seen = Arc::clone(&seen);
        let ready: Vec<Vec<u8>> = ready.iter().map(|r| r.as_bytes().to_vec()).collect();
        let input = input.to_vec();
        // A separate thread, so a child that does not read its input cannot block us.
        thread::spawn(move || {
            let (lock, changed) = &*seen;
            let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !ready.is_empty()
                && !state.1
                && !ready
                    .iter()
                    .any(|r| state.0.windows(r.len()).any(|w| w == r.as_slice()))
            {
                state = changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            let at_end = state.1 && !ready.is_empty();
            drop(state);
            if !at_end {
                let _ = pipe.write_all(&input);
            }
        });
    }
    let stderr = collect(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            Ok(None) => {
                kill_tree(child.id());
                let _ = child.wait();
                let out = String::from_utf8_lossy(&transcript(&seen)).into_owned();
                let err = finish(stderr);
                panic!(
                    "timed out after {timeout:?}: {described}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
                );
            }
            Err(e) => panic!("waiting for {described}: {e}"),
        }
    };
    Captured {
        code: status.code(),
        stdout: String::from_utf8_lossy(&transcript(&seen)).into_owned(),
        stderr: finish(stderr),
    }
}

/// stdout as read by the time its pipe ended (the reader sees EOF once every process
/// holding the pipe has exited), waiting at most 5 s for that.
fn transcript(seen: &Transcript) -> Vec<u8> {
    let (lock, changed) = &**seen;
    let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
    let until = Instant::now() + Duration::from_secs(5);
    while !state.1 && Instant::now() < until {
        state = changed
            .wait_timeout(state, Duration::from_millis(100))
            .map(|(s, _)| s)
            .unwrap_or_else(|p| p.into_inner().0);
    }
    state.0.clone()
}

/// Reads a pipe to its end on a separate thread.
fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

fn finish(rx: mpsc::Receiver<Vec<u8>>) -> String {
    rx.recv_timeout(Duration::from_secs(5))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Parent pid and state letter of every process, from `/proc/*/stat`.
fn process_table() -> BTreeMap<u32, (u32, char)> {
    let mut table = BTreeMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if let Some(ppid) = fields.next().and_then(|s| s.parse::<u32>().ok()) {
            table.insert(pid, (ppid, state));
        }
    }
    table
}

/// All live (non-zombie) descendants of `root`, parents before children.
pub fn descendants(root: u32) -> Vec<u32> {
    let table = process_table();
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (&pid, &(ppid, _)) in &table {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(parent) = queue.pop() {
        for &child in children.get(&parent).map(Vec::as_slice).unwrap_or(&[]) {
            if table.get(&child).is_some_and(|&(_, state)| state != 'Z') {
                out.push(child);
            }
            queue.push(child);
        }
    }
    out
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Kills every descendant of `root` (not `root` itself) by pid.
///
/// The tree is frozen first (SIGSTOP, repeated until no new process appears), so nothing
/// can fork away while it is being taken down; then every frozen process gets SIGKILL,
/// and this returns once they have all died (or after 5 s). Killed processes whose parent dies too are reaped by init, like every orphan sshd
/// leaves behind in normal operation (the harness does not become a subreaper: it could
/// not tell those orphans from children it holds as [`Child`]).
pub fn kill_descendants(root: u32) {
    let mut frozen = BTreeSet::new();
    for _ in 0..100 {
        let fresh: Vec<u32> = descendants(root)
            .into_iter()
            .filter(|p| !frozen.contains(p))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            signal(pid, libc::SIGSTOP);
            frozen.insert(pid);
        }
    }
    for &pid in &frozen {
        signal(pid, libc::SIGKILL);
    }
    // kill(2) returns before the target has died: wait until each is gone or a zombie.
    wait_until(Duration::from_secs(5), || {
        let table = process_table();
        frozen
            .iter()
            .all(|pid| table.get(pid).is_none_or(|&(_, state)| state == 'Z'))
    });
}

/// Kills `root` and every descendant by pid (the caller still has to reap `root`).
pub fn kill_tree(root: u32) {
    signal(root, libc::SIGSTOP);
    kill_descendants(root);
    signal(root, libc::SIGKILL);
}

/// A long-lived child process (sshd, login) that is stopped, together with everything it
/// started, when the guard is dropped.
#[derive(Debug)]
pub struct ProcessGuard {
    child: Child,
    name: String,
    status: Option<ExitStatus>,
}

impl ProcessGuard {
    /// Takes ownership of a spawned child; `name` appears in failure messages.
    pub fn new(child: Child, name: impl Into<String>) -> Self {
        Self {
            child,
            name: name.into(),
            status: None,
        }
    }

    /// The pid of the child process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has ended (it is reaped then).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Stops the process tree: the child is frozen, its descendants are killed, then the
    /// child gets SIGTERM and, if it has not exited after `grace`, SIGKILL. Returns the
    /// child's exit status (`None` only if it could not be reaped). Never panics, so it is
    /// safe in `Drop` while a test unwinds.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        // Once the child is reaped its pid may be reused: never signal it again.
        if let Some(status) = self.try_wait() {
            return Some(status);
        }
        let pid = self.pid();
        signal(pid, libc::SIGSTOP);
        kill_descendants(pid);
        signal(pid, libc::SIGTERM);
        signal(pid, libc::SIGCONT);
        if let Some(status) = self.wait_timeout(grace) {
            return Some(status);
        }
        kill_tree(pid);
        match self.child.wait() {
            Ok(status) => {
                self.status = Some(status);
                Some(status)
            }
            Err(e) => {
                eprintln!("cannot reap {} (pid {pid}): {e}", self.name);
                None
            }
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Makes the child get SIGKILL if the thread that spawned it dies first (a safety net for
/// a test binary that is killed outright; normally the [`ProcessGuard`] stops it first).
/// The signal survives `exec` of non-setuid programs, so it also covers what `unshare` and
/// `sh` exec into.
pub fn kill_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe, between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Waits (polling) until `condition` holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}
