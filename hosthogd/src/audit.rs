//! The audit log: one JSON line per change, appended to `audit.log` in the
//! state directory (mode 0640, opened `O_APPEND | O_NOFOLLOW`).
//!
//! Three rules make the log trustworthy under a flood or a full disk:
//!
//! - **Whole lines only.** A batch's lines go out in one `write(2)`; a
//!   short or failed write (`ENOSPC`) is cut back to the length before it
//!   (`ftruncate`), so the log never ends in half a line.
//! - **Before the change.** Writers append and `fdatasync` the lines before
//!   they write the table, and cut them back if the table write fails; a
//!   change is acknowledged only with its line on disk, and a line exists
//!   only for a change that is on disk.
//! - **Bounded.** When the next lines would take `audit.log` past its size
//!   cap, it is rotated: `audit.log.N-1` → `audit.log.N`, …, `audit.log` →
//!   `audit.log.1`, and a fresh `audit.log` is started. At most `keep`
//!   rotated files are kept, so the log takes at most `(keep + 1) × cap`.
//!
//! Every writer holds the table lock while it appends, so no two rotate or
//! cut back at once.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hosthog_booking::policy::Change;
use serde::Serialize;

/// File name of the audit log inside the state directory.
pub const AUDIT_NAME: &str = "audit.log";

/// Default size cap of `audit.log` (`[audit] max_size`).
pub const DEFAULT_MAX_SIZE: u64 = 16 << 20;
/// Default number of rotated files kept (`[audit] keep`).
pub const DEFAULT_KEEP: u32 = 4;

/// One line of the audit log.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// When (UTC seconds) and the same as RFC 3339, for people.
    pub time: i64,
    pub time_utc: String,
    /// Who, as the kernel identified them.
    pub uid: u32,
    pub user: &'a str,
    /// The table generation this change produced.
    pub generation: u64,
    #[serde(flatten)]
    pub change: &'a Change,
}

impl Entry<'_> {
    /// The entry as one line, newline included.
    ///
    /// # Errors
    /// Serialization failed (it does not for these types).
    pub fn line(&self) -> io::Result<Vec<u8>> {
        let mut line = serde_json::to_vec(self).map_err(io::Error::other)?;
        line.push(b'\n');
        Ok(line)
    }
}

/// The audit log file and its bounds.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    max_size: u64,
    keep: u32,
}

impl AuditLog {
    /// The log in `dir` with the default bounds.
    pub fn new(dir: &Path) -> AuditLog {
        AuditLog {
            path: dir.join(AUDIT_NAME),
            max_size: DEFAULT_MAX_SIZE,
            keep: DEFAULT_KEEP,
        }
    }

    /// Rotates before `audit.log` would pass `max_size` bytes, keeping
    /// `keep` rotated files (at least 1).
    pub fn with_bounds(mut self, max_size: u64, keep: u32) -> AuditLog {
        self.max_size = max_size.max(1);
        self.keep = keep.max(1);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name of the `n`th rotated file (`audit.log.n`).
    pub fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Opens the log for appending. Writers open it before they change the
    /// table, so a log that cannot be opened stops the change instead of
    /// leaving it unrecorded.
    ///
    /// # Errors
    /// A symlink, hard link, FIFO or device at its path, or an I/O error.
    pub fn open(&self) -> io::Result<AuditFile> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&self.path)?;
        // O_NOFOLLOW refuses a symlink; a hard link (or a FIFO, a device)
        // planted at the name would still be opened, so check what it is
        // before writing a byte through it.
        let meta = file.metadata()?;
        if !meta.file_type().is_file() || meta.nlink() != 1 {
            return Err(io::Error::other(format!(
                "{} is not a plain file with one link (it has {}); refusing to append to it",
                self.path.display(),
                meta.nlink()
            )));
        }
        Ok(AuditFile {
            file,
            log: self.clone(),
        })
    }

    /// Shifts the rotated files up by one, dropping the oldest, and moves
    /// `audit.log` to `audit.log.1`. `rename` replaces names and never
    /// follows a link planted at one.
    fn rotate(&self) -> io::Result<()> {
        for n in (1..self.keep).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.rotated(1))
    }
}

/// The audit log, open for appending.
#[derive(Debug)]
pub struct AuditFile {
    file: File,
    log: AuditLog,
}

/// Lines appended but not yet confirmed: [`Appended::undo`] cuts them off
/// again (the table write they announced failed).
#[derive(Debug)]
pub struct Appended {
    length_before: u64,
}

impl AuditFile {
    /// Appends `lines` (whole lines, each ending in a newline) in one
    /// `write(2)` and makes them durable, rotating first if they would take
    /// the log past its cap. On any error the log is left as it was (a
    /// short write is cut back), so it never ends in a torn line.
    ///
    /// # Errors
    /// Rotating, writing or syncing failed (a full disk); nothing of
    /// `lines` is in the log.
    pub fn append_lines(&mut self, lines: &[u8]) -> io::Result<Appended> {
        let mut length_before = self.file.metadata()?.len();
        if length_before > 0 && length_before + lines.len() as u64 > self.log.max_size {
            self.log.rotate()?;
            *self = self.log.open()?;
            length_before = self.file.metadata()?.len();
        }
        let cut_back = |file: &File, e: io::Error| {
            let _ = file.set_len(length_before);
            e
        };
        match self.file.write(lines) {
            Ok(n) if n == lines.len() => {}
            Ok(_) => {
                return Err(cut_back(
                    &self.file,
                    io::Error::from_raw_os_error(libc::ENOSPC),
                ));
            }
            Err(e) => return Err(cut_back(&self.file, e)),
        }
        self.file.sync_data().map_err(|e| cut_back(&self.file, e))?;
        Ok(Appended { length_before })
    }

    /// Appends one entry as one line (see [`AuditFile::append_lines`]).
    ///
    /// # Errors
    /// As [`AuditFile::append_lines`].
    pub fn append(&mut self, entry: &Entry<'_>) -> io::Result<()> {
        self.append_lines(&entry.line()?).map(|_| ())
    }

    /// Cuts the log back to before `appended`.
    ///
    /// # Errors
    /// The truncation failed.
    pub fn undo(&mut self, appended: Appended) -> io::Result<()> {
        self.file.set_len(appended.length_before)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_keeps_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path()).with_bounds(100, 2);
        let mut file = log.open().unwrap();
        let line = |c: u8| {
            let mut l = vec![c; 39];
            l.push(b'\n');
            l
        };
        for c in b"abcdefg" {
            file.append_lines(&line(*c)).unwrap();
        }
        // 40-byte lines, cap 100: two lines a file; g in audit.log, e f in
        // .1, c d in .2, a b dropped.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(log.path()), "g".repeat(39) + "\n");
        assert_eq!(
            read(&log.rotated(1)),
            "e".repeat(39) + "\n" + &"f".repeat(39) + "\n"
        );
        assert_eq!(
            read(&log.rotated(2)),
            "c".repeat(39) + "\n" + &"d".repeat(39) + "\n"
        );
        assert!(!log.rotated(3).exists());

        // Undo cuts the last lines off again.
        let appended = file.append_lines(&line(b'h')).unwrap();
        file.undo(appended).unwrap();
        assert_eq!(read(log.path()), "g".repeat(39) + "\n");
    }
}
