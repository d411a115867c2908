//! The audit log: one JSON line per change, appended to `audit.log` in the
//! state directory (mode 0640, opened `O_APPEND | O_NOFOLLOW`).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hosthog_booking::policy::Change;
use serde::Serialize;

/// File name of the audit log inside the state directory.
pub const AUDIT_NAME: &str = "audit.log";

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

/// The audit log file.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn new(dir: &Path) -> AuditLog {
        AuditLog {
            path: dir.join(AUDIT_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry as one line (see [`AuditFile::append`]).
    ///
    /// # Errors
    /// Opening or writing the log failed (a symlink at its path, a full disk).
    pub fn append(&self, entry: &Entry<'_>) -> io::Result<()> {
        self.open()?.append(entry)
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
        Ok(AuditFile { file })
    }
}

/// The audit log, open for appending.
#[derive(Debug)]
pub struct AuditFile {
    file: std::fs::File,
}

impl AuditFile {
    /// Appends one entry as one line, in a single `write`, so concurrent
    /// appends never interleave.
    ///
    /// # Errors
    /// Writing failed (a full disk).
    pub fn append(&mut self, entry: &Entry<'_>) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }
}
