//! The Store: the only way anything writes the table.
//!
//! A write takes an exclusive lock on a separate lock file, writes the new
//! table to a temporary file in the same directory, `fsync`s it, renames it
//! over the table and `fsync`s the directory. Readers never lock: they open
//! whichever complete file the name points to, old or new, never a torn one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::format::encode_at;
use crate::model::State;
use crate::table_file::TableFile;

/// File name of the table inside the state directory.
pub const TABLE_NAME: &str = "table";
/// File name of the lock file inside the state directory.
pub const LOCK_NAME: &str = "table.lock";
const TEMP_PREFIX: &str = ".table.new.";

/// A state directory holding `table` and `table.lock`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    owner: u32,
}

impl Store {
    /// A store in `dir`, trusting table files owned by the effective uid of
    /// this process (root for hosthogd).
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let owner = unsafe { libc::geteuid() };
        Store {
            dir: dir.into(),
            owner,
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the table file.
    pub fn table_path(&self) -> PathBuf {
        self.dir.join(TABLE_NAME)
    }

    /// Path of the lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_NAME)
    }

    /// Reads the current table without locking. A missing table reads as
    /// an empty state.
    ///
    /// # Errors
    /// As [`TableFile::open`] (other than missing) and [`TableFile::table`].
    pub fn read(&self) -> Result<State> {
        let path = self.table_path();
        match TableFile::open(&path, self.owner) {
            Ok(file) => Ok(file.table()?.to_state()),
            Err(e) if e.kind() == ErrorKind::Missing => Ok(State::default()),
            Err(e) => Err(e),
        }
    }

    /// Takes the write lock. If another writer holds it, calls `on_wait`
    /// with the lock file's path first (to print "waiting for lock on ..."),
    /// then blocks until it is free.
    ///
    /// # Errors
    /// [`ErrorKind::Insecure`] if the state directory is not owned by the
    /// trusted owner or is writable by group or others; [`ErrorKind::Io`]
    /// if the lock file cannot be opened or locked.
    pub fn lock(&self, on_wait: impl FnOnce(&Path)) -> Result<Locked<'_>> {
        // A directory someone else could change is refused before anything
        // is written into it: the module would refuse the table anyway, and
        // the lock and temp names would be theirs to swap.
        let dir_meta = std::fs::metadata(&self.dir)
            .map_err(|e| Error::io("cannot stat the state directory", &self.dir, e))?;
        crate::table_file::check_trusted(&dir_meta, self.owner, "state directory")
            .map_err(|e| e.at(&self.dir))?;
        let path = self.lock_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::io("cannot open the lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                on_wait(&path);
                file.lock()
                    .map_err(|e| Error::io("cannot lock", &path, e))?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("cannot lock", &path, e));
            }
        }
        let locked = Locked {
            store: self,
            _lock_file: file,
        };
        locked.remove_leftovers();
        Ok(locked)
    }

    /// Locks, reads, lets `edit` change the state, and writes it back with
    /// ended reservations pruned as of `now`. Nothing is written if `edit`
    /// fails.
    ///
    /// # Errors
    /// Whatever `edit` returns, or an error from locking, reading or
    /// writing.
    pub fn edit<T>(
        &self,
        now: i64,
        on_wait: impl FnOnce(&Path),
        edit: impl FnOnce(&mut State) -> Result<T>,
    ) -> Result<T> {
        let lock = self.lock(on_wait)?;
        let mut state = lock.read()?;
        let out = edit(&mut state)?;
        lock.write(&mut state, now)?;
        Ok(out)
    }
}

/// The held write lock. Reading and writing the table go through it, so
/// nothing writes without the lock. Dropping it releases the lock.
#[derive(Debug)]
pub struct Locked<'s> {
    store: &'s Store,
    /// Held only for its lock; closing it (on drop) releases the lock.
    _lock_file: File,
}

impl Locked<'_> {
    /// Reads the current table (missing reads as empty).
    ///
    /// # Errors
    /// As [`Store::read`].
    pub fn read(&self) -> Result<State> {
        self.store.read()
    }

    /// Prunes reservations ended by `now`, bumps the generation, and
    /// replaces the table atomically and durably. On return the new table is
    /// on disk; on error the old one is untouched.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] if the state breaks a rule (nothing written);
    /// [`ErrorKind::Io`] if writing fails (the old table stays).
    pub fn write(&self, state: &mut State, now: i64) -> Result<()> {
        state.prune(now);
        state.generation = state.generation.wrapping_add(1);
        let bytes = encode_at(state, now)?;
        let dir = &self.store.dir;
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(dir)
            .map_err(|e| Error::io("cannot create a temporary table", dir, e))?;
        let temp_path = temp.path().to_path_buf();
        temp.write_all(&bytes)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| Error::io("cannot write the new table", &temp_path, e))?;
        let table = self.store.table_path();
        temp.persist(&table)
            .map_err(|e| Error::io("cannot replace the table", &table, e.error))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("cannot sync the state directory", dir, e))?;
        Ok(())
    }

    /// Removes temporary tables left by a writer that was killed mid-write.
    /// Safe because we hold the lock: no other writer has one open.
    fn remove_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.store.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
