//! Opening the table file the way a login path must: without following
//! symlinks, without blocking, refusing anything its trusted owner does not
//! alone control. Small tables are read with one `read`; large ones are
//! mapped read-only instead of copied.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};

use crate::error::{Error, ErrorKind, Result};
use crate::format::Table;
use crate::limits;

/// An open table file and the change file beside it (`PATH.delta`, see
/// [`Table`]), each mapped with its pages populated at once: a login is a
/// fresh process, where one `mmap(MAP_POPULATE)` of the page cache costs
/// less than faulting in a heap buffer and copying the file into it
/// (docs/design-decisions.md). [`TableFile::table`] validates and views
/// them.
///
/// Writers never change either file in place (they rename a new file over
/// it), so a mapping stays stable while it is open.
#[derive(Debug)]
pub struct TableFile {
    path: PathBuf,
    bytes: Bytes,
    delta: Option<Bytes>,
}

#[derive(Debug)]
enum Bytes {
    Mapped(Mmap),
    Empty,
}

impl Bytes {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Empty => &[],
        }
    }
}

/// How often [`TableFile::open`] opens both files again when it caught a
/// writer replacing the full table between the two opens. A writer does
/// that at most every few hundred changes, so a second try practically
/// always succeeds.
const OPEN_TRIES: usize = 3;

/// The change file of the table at `path`: the same name with `.delta`
/// appended.
pub fn delta_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".delta");
    PathBuf::from(name)
}

impl TableFile {
    /// Opens the table at `path` and its change file, if there is one.
    ///
    /// Both must be regular files owned by `owner` (uid 0 for every
    /// production caller) and not writable by group or others, in a
    /// directory with the same rules; symlinks are refused
    /// (`O_NOFOLLOW`), and opening never blocks (`O_NONBLOCK`, so a FIFO
    /// cannot hang a login).
    ///
    /// # Errors
    /// [`ErrorKind::Missing`] if there is no table, [`ErrorKind::Insecure`]
    /// if either file or the directory fails the ownership rules,
    /// [`ErrorKind::Corrupt`] if a file is larger than the format allows,
    /// [`ErrorKind::Io`] for other failures.
    pub fn open(path: &Path, owner: u32) -> Result<TableFile> {
        let delta_path = delta_path(path);
        let mut tries = 0;
        loop {
            tries += 1;
            let bytes = read_trusted(path, owner, "table")?;
            if tries == 1 {
                check_directory(path, owner)?;
            }
            let delta = match read_trusted(&delta_path, owner, "table's change file") {
                Ok(delta) => Some(delta),
                Err(e) if e.kind() == ErrorKind::Missing => None,
                Err(e) => return Err(e),
            };
            // A change file newer than the table: the table was replaced
            // after it was opened. Open both again.
            let newer = match (crate::format::peek(bytes.get()), &delta) {
                (Some(base), Some(delta)) => crate::format::peek(delta.get())
                    .is_some_and(|d| d.delta && d.base_generation > base.generation),
                _ => false,
            };
            if !newer || tries >= OPEN_TRIES {
                return Ok(TableFile {
                    path: path.to_path_buf(),
                    bytes,
                    delta,
                });
            }
        }
    }

    /// Opens the table at `path` by the same rules as [`TableFile::open`],
    /// without its change file: for a writer that wants the last full write.
    pub(crate) fn open_alone(path: &Path, owner: u32) -> Result<TableFile> {
        let bytes = read_trusted(path, owner, "table")?;
        check_directory(path, owner)?;
        Ok(TableFile {
            path: path.to_path_buf(),
            bytes,
            delta: None,
        })
    }

    /// The table file's raw bytes (not yet validated).
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get()
    }

    /// The change file's raw bytes, if there is one (not yet validated).
    pub fn delta_bytes(&self) -> Option<&[u8]> {
        self.delta.as_ref().map(Bytes::get)
    }

    /// Validates both files completely and returns the table as readers
    /// see it.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] describing the first problem, with the path.
    pub fn table(&self) -> Result<Table<'_>> {
        Table::with_delta(self.bytes(), self.delta_bytes()).map_err(|e| e.at(&self.path))
    }

    /// The path this table was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The directory rule of [`TableFile::open`].
fn check_directory(path: &Path, owner: u32) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let dir_meta = std::fs::metadata(dir)
        .map_err(|e| Error::io("cannot stat the table's directory", dir, e))?;
    check_trusted(&dir_meta, owner, "table's directory").map_err(|e| e.at(dir))
}

/// Opens one file by the rules of [`TableFile::open`] and reads or maps it.
fn read_trusted(path: &Path, owner: u32, what: &str) -> Result<Bytes> {
    let (file, meta) = open_trusted(path, owner, what)?;
    if meta.len() > limits::MAX_TABLE_BYTES {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "the {what} is {} bytes; at most {} are accepted",
                meta.len(),
                limits::MAX_TABLE_BYTES
            ),
        )
        .at(path));
    }
    if meta.len() == 0 {
        Ok(Bytes::Empty)
    } else {
        // SAFETY: the file is owned by the trusted owner and never
        // modified in place (writers rename a new file over it), so the
        // mapped bytes do not change under us; every access is bounds-
        // checked by the parser.
        let map = unsafe { MmapOptions::new().populate().map(&file) }
            .map_err(|e| Error::io(format!("cannot map the {what}"), path, e))?;
        Ok(Bytes::Mapped(map))
    }
}

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
