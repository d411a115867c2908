//! Opening the table file the way a login path must: without following
//! symlinks, without blocking, refusing anything its trusted owner does not
//! alone control. Small tables are read with one `read`; large ones are
//! mapped read-only instead of copied.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, ErrorKind, Result};
use crate::format::Table;
use crate::limits;

/// Tables up to this size are read into memory rather than mapped. Every
/// byte is read anyway (the checksum covers the whole file), and for a
/// table of a few thousand reservations one `read` costs less than
/// `mmap`, the page faults and `munmap` (measured in docs/benchmarks.md).
const READ_LIMIT: u64 = 1 << 20;

/// An open table file, read or mapped. [`TableFile::table`] validates and
/// views it.
///
/// Writers never change a table file in place (they rename a new file over
/// it), so a mapping stays stable while it is open.
#[derive(Debug)]
pub struct TableFile {
    path: PathBuf,
    bytes: Bytes,
}

#[derive(Debug)]
enum Bytes {
    Mapped(Mmap),
    Read(Vec<u8>),
    Empty,
}

impl TableFile {
    /// Opens the table at `path`, trusting only files owned by `owner`
    /// (0 in production).
    ///
    /// The rule, like sshd's StrictModes: the file must be a regular file,
    /// not a symlink, owned by `owner`, writable by nobody but its owner
    /// (no group or other write bit), at most
    /// [`MAX_TABLE_BYTES`](crate::limits::MAX_TABLE_BYTES) long; its
    /// directory must be owned by `owner` and not group or other writable
    /// (otherwise someone could swap the file).
    ///
    /// # Errors
    /// [`ErrorKind::Missing`] if there is no file; [`ErrorKind::Insecure`]
    /// when a rule above is broken; [`ErrorKind::Corrupt`] for a bad size;
    /// [`ErrorKind::Io`] otherwise.
    pub fn open(path: &Path, owner: u32) -> Result<TableFile> {
        let (file, meta) = open_trusted(path, owner, "table")?;
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let dir_meta = std::fs::metadata(dir)
                .map_err(|e| Error::io("cannot stat the table's directory", dir, e))?;
            check_trusted(&dir_meta, owner, "table's directory").map_err(|e| e.at(dir))?;
        }
        if meta.len() > limits::MAX_TABLE_BYTES {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "the table is {} bytes; at most {} are accepted",
                    meta.len(),
                    limits::MAX_TABLE_BYTES
                ),
            )
            .at(path));
        }
        let bytes = if meta.len() == 0 {
            Bytes::Empty
        } else if meta.len() <= READ_LIMIT {
            // One byte more than the size: a file that grew since fstat is
            // read long and then refused by the length check in parsing.
            let mut buf = Vec::with_capacity(meta.len() as usize + 1);
            (&file)
                .take(meta.len() + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("cannot read the table", path, e))?;
            Bytes::Read(buf)
        } else {
            // SAFETY: the mapping is read-only and private to this process.
            // The file is owned by the trusted owner and nobody else can
            // write it (checked above); hosthog's writers never modify a
            // table in place but rename a new file over it, so the mapped
            // bytes do not change underneath the borrow.
            let map = unsafe { Mmap::map(&file) }
                .map_err(|e| Error::io("cannot map the table", path, e))?;
            Bytes::Mapped(map)
        };
        Ok(TableFile {
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// The raw bytes of the file.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(map) => map,
            Bytes::Read(buf) => buf,
            Bytes::Empty => &[],
        }
    }

    /// Validates the file and returns a view of it.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] (with the path) if the bytes are not a valid
    /// table.
    pub fn table(&self) -> Result<Table<'_>> {
        Table::parse(self.bytes()).map_err(|e| e.at(&self.path))
    }

    /// Where the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens a root-written file the way a login path must: without following a
/// symlink (`O_NOFOLLOW`), without blocking on a FIFO planted at the path
/// (`O_NONBLOCK`), and only if it is a regular file owned by `owner` that
/// nobody else may write. `what` names the file in errors ("table").
pub(crate) fn open_trusted(
    path: &Path,
    owner: u32,
    what: &str,
) -> Result<(std::fs::File, std::fs::Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::new(
                    ErrorKind::Insecure,
                    format!("the {what} is a symbolic link; refusing it"),
                )
                .at(path)
            } else {
                Error::io(format!("cannot open the {what}"), path, e)
            }
        })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat the {what}"), path, e))?;
    check_trusted(&meta, owner, what).map_err(|e| e.at(path))?;
    if !meta.file_type().is_file() {
        return Err(Error::new(
            ErrorKind::Insecure,
            format!("the {what} is not a regular file"),
        )
        .at(path));
    }
    Ok((file, meta))
}

pub(crate) fn check_trusted(meta: &std::fs::Metadata, owner: u32, what: &str) -> Result<()> {
    if meta.uid() != owner {
        return Err(Error::new(
            ErrorKind::Insecure,
            format!(
                "the {what} is owned by uid {}, not uid {owner}; refusing it",
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::new(
            ErrorKind::Insecure,
            format!(
                "the {what} has mode {:04o}: writable by group or others; refusing it",
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}
