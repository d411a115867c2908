//! Pseudo-terminals: a master the test reads and types into, a slave that becomes the
//! controlling terminal of the program under test (shadow's `login`).

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

/// A pseudo-terminal pair, 80x24.
#[derive(Debug)]
pub struct Pty {
    /// The test's side.
    pub master: File,
    /// The program's side (`/dev/pts/N`).
    pub slave: File,
    /// Path of the slave device.
    pub slave_path: PathBuf,
}

impl Pty {
    /// Allocates a new pseudo-terminal.
    pub fn open() -> io::Result<Self> {
        // SAFETY: posix_openpt has no memory-safety preconditions; the returned fd is
        // owned by `master` from here on.
        let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let master = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: `fd` is an open pty master; `name` is writable for its whole length.
        unsafe {
            if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
                return Err(io::Error::last_os_error());
            }
            let rc = libc::ptsname_r(fd, name.as_mut_ptr(), name.len());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
        }
        // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
        let slave_path = PathBuf::from(
            unsafe { CStr::from_ptr(name.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        );
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&slave_path)?;
        let size = libc::winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a `winsize` from the valid pointer given.
        if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            master,
            slave,
            slave_path,
        })
    }

    /// Makes the slave the command's stdin, stdout, stderr and controlling terminal (the
    /// child starts a new session first).
    pub fn attach(&self, cmd: &mut Command) -> io::Result<()> {
        cmd.stdin(self.slave.try_clone()?)
            .stdout(self.slave.try_clone()?)
            .stderr(self.slave.try_clone()?);
        // SAFETY: only setsid(2) and ioctl(2), both async-signal-safe, run between fork
        // and exec; fd 0 is the slave by then.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }
}
