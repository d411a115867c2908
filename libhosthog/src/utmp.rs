//! Who is logged in: the utmp file, read directly.
//!
//! glibc's `getutxent` takes `fcntl` locks on the file (and may wait on
//! them), which a login path must never do. The records are plain
//! fixed-size structs written in place, so this module reads a bounded
//! prefix of the file in one `read` and parses the records itself. A record
//! being rewritten at that instant may come out garbled; the worst that can
//! happen is a wrong or missing name in an informational summary, and every
//! field is sanitized before display.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read};
use std::mem::{offset_of, size_of};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Where glibc keeps the utmp file (`_PATH_UTMP`).
pub const UTMP_PATH: &str = "/var/run/utmp";

/// The size of one record on this platform (384 bytes on x86_64).
pub const RECORD_LEN: usize = size_of::<libc::utmpx>();

/// Most records read. A host with more concurrent logins than this shows
/// the first ones only.
pub const MAX_RECORDS: usize = 4096;

const USER: (usize, usize) = (offset_of!(libc::utmpx, ut_user), libc::__UT_NAMESIZE);
const LINE: (usize, usize) = (offset_of!(libc::utmpx, ut_line), libc::__UT_LINESIZE);
const HOST: (usize, usize) = (offset_of!(libc::utmpx, ut_host), libc::__UT_HOSTSIZE);
const TYPE: usize = offset_of!(libc::utmpx, ut_type);
const PID: usize = offset_of!(libc::utmpx, ut_pid);

/// One login session from utmp (a `USER_PROCESS` record). Fields borrow
/// from the bytes read; invalid UTF-8 is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login<'a> {
    /// The user name.
    pub user: Cow<'a, str>,
    /// The terminal, without `/dev/` (`pts/3`, `tty1`, `:0`).
    pub line: Cow<'a, str>,
    /// The remote host, empty for local logins.
    pub host: Cow<'a, str>,
    /// The session's process id.
    pub pid: i32,
}

/// The utmp file's bytes, read once.
#[derive(Debug, Default, Clone)]
pub struct Utmp {
    bytes: Vec<u8>,
}

impl Utmp {
    /// Reads at most [`MAX_RECORDS`] records from `path`, without locking,
    /// without following a symlink at the last component and without
    /// blocking on a FIFO. A missing file reads as no logins.
    ///
    /// # Errors
    /// An I/O error if the file exists but cannot be opened or read, or is
    /// not a regular file.
    pub fn read(path: &Path) -> io::Result<Utmp> {
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Utmp::default()),
            Err(e) => return Err(e),
        };
        if !file.metadata()?.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "utmp is not a regular file",
            ));
        }
        let mut bytes = Vec::new();
        read_bounded(&file, &mut bytes, (RECORD_LEN * MAX_RECORDS) as u64)?;
        Ok(Utmp { bytes })
    }

    /// Wraps bytes already read (for tests and fuzzing).
    pub fn from_bytes(bytes: Vec<u8>) -> Utmp {
        Utmp { bytes }
    }

    /// The login sessions: `USER_PROCESS` records with a user name, in file
    /// order. A trailing partial record is ignored.
    ///
    /// # Example
    /// ```
    /// let utmp = libhosthog::Utmp::from_bytes(libhosthog::utmp_record(7, 42, "pts/1", "bob", "10.0.0.5"));
    /// let logins: Vec<_> = utmp.logins().collect();
    /// assert_eq!(logins[0].user, "bob");
    /// assert_eq!(logins[0].host, "10.0.0.5");
    /// ```
    pub fn logins(&self) -> impl Iterator<Item = Login<'_>> + '_ {
        self.bytes.chunks_exact(RECORD_LEN).filter_map(parse_record)
    }
}

fn read_bounded(file: &File, into: &mut Vec<u8>, limit: u64) -> io::Result<()> {
    file.take(limit).read_to_end(into).map(|_| ())
}

fn parse_record(record: &[u8]) -> Option<Login<'_>> {
    let kind = i16::from_ne_bytes(record.get(TYPE..TYPE + 2)?.try_into().ok()?);
    if kind != libc::USER_PROCESS {
        return None;
    }
    let pid = i32::from_ne_bytes(record.get(PID..PID + 4)?.try_into().ok()?);
    let user = field(record, USER)?;
    if user.is_empty() {
        return None;
    }
    Some(Login {
        user,
        line: field(record, LINE)?,
        host: field(record, HOST)?,
        pid,
    })
}

/// A fixed-size, NUL-padded (not necessarily NUL-terminated) text field.
fn field(record: &[u8], (offset, len): (usize, usize)) -> Option<Cow<'_, str>> {
    let raw = record.get(offset..offset + len)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(raw.get(..end)?))
}

/// True if a process with this id exists (the session is not a stale
/// record left by a crash). Asks the kernel with signal 0, which checks
/// without sending anything.
pub fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that `pid`
    // exists and may be signalled. It has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Builds one utmp record, as glibc would write it: for tests, fuzzing and
/// test fixtures. Fields longer than their slot are cut.
pub fn utmp_record(kind: i16, pid: i32, line: &str, user: &str, host: &str) -> Vec<u8> {
    let mut record = vec![0u8; RECORD_LEN];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(slot) = record.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    };
    put(TYPE, &kind.to_ne_bytes());
    put(PID, &pid.to_ne_bytes());
    for (text, (offset, len)) in [(line, LINE), (user, USER), (host, HOST)] {
        let bytes = text.as_bytes();
        put(offset, bytes.get(..len.min(bytes.len())).unwrap_or(&[]));
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_glibc() {
        // The offsets come from the libc crate's struct; these pin the
        // x86_64 layout that /var/run/utmp has on the hosts we test on.
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(RECORD_LEN, 384);
            assert_eq!((TYPE, PID, LINE.0, USER.0, HOST.0), (0, 4, 8, 44, 76));
        }
        assert_eq!(USER.1, 32);
        assert_eq!(HOST.1, 256);
    }

    #[test]
    fn parses_user_processes_only() {
        let mut bytes = Vec::new();
        bytes.extend(utmp_record(libc::BOOT_TIME, 0, "~", "reboot", "6.1.0"));
        bytes.extend(utmp_record(
            libc::USER_PROCESS,
            100,
            "pts/0",
            "alice",
            "10.0.0.1",
        ));
        bytes.extend(utmp_record(libc::DEAD_PROCESS, 101, "pts/1", "", ""));
        bytes.extend(utmp_record(libc::USER_PROCESS, 102, "tty1", "bob", ""));
        bytes.extend(utmp_record(libc::USER_PROCESS, 103, "pts/2", "", "x"));
        // A torn trailing record is ignored.
        bytes.extend(&utmp_record(libc::USER_PROCESS, 104, "pts/3", "carol", "")[..100]);
        let utmp = Utmp::from_bytes(bytes);
        let got: Vec<(String, String, String, i32)> = utmp
            .logins()
            .map(|l| (l.user.into(), l.line.into(), l.host.into(), l.pid))
            .collect();
        assert_eq!(
            got,
            [
                ("alice".into(), "pts/0".into(), "10.0.0.1".into(), 100),
                ("bob".into(), "tty1".into(), String::new(), 102),
            ]
        );
    }

    #[test]
    fn full_width_fields_and_bad_utf8() {
        let long = "u".repeat(40);
        let mut record = utmp_record(libc::USER_PROCESS, 5, "pts/9", &long, "");
        record[HOST.0..HOST.0 + 3].copy_from_slice(b"a\xffb");
        let utmp = Utmp::from_bytes(record);
        let login = utmp.logins().next().unwrap();
        assert_eq!(login.user, "u".repeat(32));
        assert_eq!(login.host, "a\u{fffd}b");
    }

    #[test]
    fn missing_file_reads_as_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let utmp = Utmp::read(&dir.path().join("utmp")).unwrap();
        assert_eq!(utmp.logins().count(), 0);
        assert!(Utmp::read(dir.path()).is_err());
    }

    #[test]
    fn own_process_exists() {
        assert!(process_exists(std::process::id() as i32));
        assert!(!process_exists(0));
        assert!(!process_exists(-1));
    }
}
