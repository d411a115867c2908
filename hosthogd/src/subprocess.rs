//! Running helper programs (tmux, notify-send, nvidia-smi, loginctl,
//! systemctl) from the daemon: found in fixed system directories, run as
//! the user they act for where that matters, with no stdin, a bounded
//! output and a deadline after which they are killed. The daemon's timers
//! must never wait on a hung helper.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// util-linux `setpriv`, used to run a helper as a user.
pub const SETPRIV: &str = "/usr/bin/setpriv";

/// Where helpers are looked for (not `$PATH`: the daemon runs as root).
const DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The PATH helpers get.
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The path of `program` in the system directories, if it is installed.
pub fn find(program: &str) -> Option<PathBuf> {
    DIRS.iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// A command running `program` as `uid`/`gid` (no supplementary groups)
/// through setpriv, with an empty environment but for PATH. When the daemon
/// is not root (tests of the pure parts), the program runs as is.
pub fn as_user(program: &Path, uid: u32, gid: u32) -> Command {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root && uid != 0 {
        let mut c = Command::new(SETPRIV);
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.env_clear().env("PATH", PATH).current_dir("/");
    cmd
}

/// What a helper printed and how it ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
}

/// Runs `cmd` with stdin and stderr closed, keeps at most `max_output`
/// bytes of its stdout, and kills it if it has not finished within
/// `timeout`. `None` if it could not be started or was killed.
pub fn run_bounded(mut cmd: Command, timeout: Duration, max_output: usize) -> Option<Finished> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let fd = stdout.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut open = true;
    loop {
        if open {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, 50) as libc::c_int;
            // SAFETY: one valid pollfd, count 1.
            unsafe { libc::poll(&mut pfd, 1, ms) };
            open = drain(&mut stdout, &mut out, max_output);
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Only this thread waits for the child, so its pid cannot be
        // reused before the kill below.
        match child.try_wait() {
            Ok(Some(status)) => {
                // Exited: take what is left in the pipe, without waiting
                // for a grandchild that may still hold it open.
                if open {
                    drain(&mut stdout, &mut out, max_output);
                }
                return Some(Finished {
                    status,
                    stdout: out,
                });
            }
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
    }
}

/// [`run_bounded`] with a deadline instead of a timeout: helpers that share
/// one deadline can never take longer together than it allows. Nothing is
/// started once the deadline has passed.
pub fn run_until(cmd: Command, deadline: Instant, max_output: usize) -> Option<Finished> {
    let left = deadline.checked_duration_since(Instant::now())?;
    if left.is_zero() {
        return None;
    }
    run_bounded(cmd, left, max_output)
}

/// Reads what the non-blocking pipe holds into `out` (keeping at most
/// `max` bytes). False at end of file.
fn drain(pipe: &mut impl Read, out: &mut Vec<u8>, max: usize) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                let room = max.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_output_and_deadline() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo hello; echo world"]);
        let done = run_bounded(cmd, Duration::from_secs(5), 8).unwrap();
        assert!(done.status.success());
        assert_eq!(done.stdout, b"hello\nwo");

        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "exec sleep 10"]);
        let started = Instant::now();
        assert!(run_bounded(cmd, Duration::from_millis(200), 10).is_none());
        assert!(started.elapsed() < Duration::from_secs(5));

        // A child that exits but leaves a grandchild holding the pipe.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo x; sleep 3 & exit 0"]);
        let started = Instant::now();
        let done = run_bounded(cmd, Duration::from_secs(5), 10).unwrap();
        assert_eq!(done.stdout, b"x\n");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(find("sh").is_some());
        assert!(find("no-such-program-here").is_none());
    }
}
