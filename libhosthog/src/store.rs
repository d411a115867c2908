//! The Store: the only way anything writes the table.
//!
//! A write takes an exclusive lock on a separate lock file, writes a new
//! file to a temporary file in the same directory, `fsync`s it, renames it
//! over the old one and `fsync`s the directory. Readers never lock: they
//! open whichever complete file the name points to, old or new, never a
//! torn one.
//!
//! Which file: a small table (up to [`FULL_WRITE_UP_TO`] reservations) is
//! always written whole. For a larger one the store writes the change file
//! (`table.delta`: what differs from the full table on disk) and rewrites
//! the full table only once the change file would hold more than
//! [`COMPACT_AFTER`] changes. Either way one file is replaced per write;
//! the full table is read into memory once and kept, keyed by its
//! generation, so a write costs the change, not the table.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result};
use crate::format::{Changes, Peeked, encode_delta_unchecked, encode_unchecked, peek};
use crate::model::{Reservation, ReservationId, State};
use crate::table_file::{TableFile, delta_path};

/// Tables with at most this many reservations are always written whole:
/// they are a few kilobytes, as small as a change file.
pub const FULL_WRITE_UP_TO: usize = 256;
/// The full table is rewritten when the change file would hold more than
/// this many added, changed or removed reservations.
pub const COMPACT_AFTER: usize = 256;

/// File name of the table inside the state directory.
pub const TABLE_NAME: &str = "table";
/// File name of the lock file inside the state directory.
pub const LOCK_NAME: &str = "table.lock";
const TEMP_PREFIX: &str = ".table.new.";

/// A state directory holding `table`, `table.delta` and `table.lock`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    owner: u32,
    /// The full table last read or written, for computing change files.
    base: Arc<Mutex<Option<Arc<Base>>>>,
}

/// A full table's reservations, sorted by `(start, id)` as in the file.
#[derive(Debug)]
struct Base {
    generation: u64,
    reservations: Vec<Reservation>,
}

fn key(r: &Reservation) -> (i64, u64) {
    (r.start, r.id.0)
}

impl Base {
    /// `state`'s reservations must be sorted by [`key`].
    fn of(state: &State) -> Base {
        Base {
            generation: state.generation,
            reservations: state.reservations.clone(),
        }
    }

    /// The reservations of `state` this table lacks or holds differently,
    /// and this table's reservations `state` no longer has; `None` once
    /// there are more than `limit`. Both lists are sorted by [`key`], so
    /// one merging pass over them compares everything, in memory order.
    fn diff<'a>(
        &'a self,
        state: &'a State,
        limit: usize,
    ) -> Option<(Vec<&'a Reservation>, Vec<&'a Reservation>)> {
        let mut changed = Vec::new();
        let mut gone = Vec::new();
        let (mut old, mut new) = (
            self.reservations.iter().peekable(),
            state.reservations.iter().peekable(),
        );
        loop {
            match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(o), Some(n)) if key(o) == key(n) => {
                    if o != n {
                        changed.push(*n);
                    }
                    old.next();
                    new.next();
                }
                (Some(o), Some(n)) if key(o) < key(n) => {
                    gone.push(*o);
                    old.next();
                }
                (Some(o), None) => {
                    gone.push(*o);
                    old.next();
                }
                (_, Some(n)) => {
                    changed.push(*n);
                    new.next();
                }
            }
            if changed.len() + gone.len() > limit {
                return None;
            }
        }
        // A reservation whose start moved is in both lists: it is changed,
        // not removed.
        let moved: HashSet<ReservationId> = changed.iter().map(|r| r.id).collect();
        gone.retain(|r| !moved.contains(&r.id));
        Some((changed, gone))
    }
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
            base: Arc::default(),
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

    /// Path of the change file.
    pub fn delta_path(&self) -> PathBuf {
        delta_path(&self.table_path())
    }

    /// The generation of the table on disk, from the headers of the table
    /// and its change file only (no validation): for a writer holding the
    /// lock that wants to know whether anyone else wrote since it did.
    pub fn peek_generation(&self) -> Option<u64> {
        let base = peek_file(&self.table_path())?;
        match peek_file(&self.delta_path()) {
            Some(d) if d.delta && d.base_generation == base.generation => Some(d.generation),
            _ => Some(base.generation),
        }
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

    /// The generation [`Locked::write`] will give `state` (for records
    /// written before the table, such as the audit log).
    pub fn next_generation(&self, state: &State) -> u64 {
        let table = peek_file(&self.store.table_path());
        let delta = peek_file(&self.store.delta_path());
        // Above every generation on disk, even a stale change file's, so a
        // change file never claims a newer full table than the one written.
        let on_disk = table.iter().chain(&delta).map(|p| p.generation).max();
        state.generation.max(on_disk.unwrap_or(0)).wrapping_add(1)
    }

    /// Prunes reservations ended by `now`, sets the generation above every
    /// one on disk, and replaces the change file or the full table (see the
    /// module documentation) atomically and durably. On return the new
    /// state is on disk; on error the old one is untouched.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] if the state breaks a rule (nothing written);
    /// [`ErrorKind::Io`] if writing fails (the old table stays).
    pub fn write(&self, state: &mut State, now: i64) -> Result<()> {
        state.prune(now);
        let table = peek_file(&self.store.table_path());
        state.generation = self.next_generation(state);
        state.validate()?;
        // The order of the file, so the change file's diff is one pass.
        state.reservations.sort_by_key(key);
        if state.reservations.len() > FULL_WRITE_UP_TO
            && let Some(table) = table
            && let Some(base) = self.base(table)?
            && let Some((changed, removed)) = base.diff(state, COMPACT_AFTER)
        {
            let changes = Changes {
                base_generation: base.generation,
                changed: &changed,
                removed: &removed,
            };
            let bytes = encode_delta_unchecked(state, &changes, now)?;
            return self.replace(&self.store.delta_path(), &bytes, "change file");
        }
        let bytes = encode_unchecked(state, now)?;
        // Forget the old full table first: if the write fails half way, the
        // next write reads whatever is on disk.
        *self.store.cached_base() = None;
        self.replace(&self.store.table_path(), &bytes, "table")?;
        if state.reservations.len() > FULL_WRITE_UP_TO {
            *self.store.cached_base() = Some(Arc::new(Base::of(state)));
        }
        Ok(())
    }

    /// The full table on disk, whose header says `on_disk`: from memory if
    /// it is the one last seen; `None` if there is none.
    fn base(&self, on_disk: Peeked) -> Result<Option<Arc<Base>>> {
        if let Some(base) = self.store.cached_base().as_ref()
            && base.generation == on_disk.generation
        {
            return Ok(Some(Arc::clone(base)));
        }
        let path = self.store.table_path();
        let file = match TableFile::open_alone(&path, self.store.owner) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::Missing => return Ok(None),
            Err(e) => return Err(e),
        };
        let base = Arc::new(Base::of(&file.table()?.to_state()));
        *self.store.cached_base() = Some(Arc::clone(&base));
        Ok(Some(base))
    }

    /// Replaces the file at `target` with `bytes`, atomically and durably.
    fn replace(&self, target: &Path, bytes: &[u8], what: &str) -> Result<()> {
        let dir = &self.store.dir;
        // The lock keeps other writers out; the pid and a counter keep this
        // name apart from a killed writer's leftover, which O_EXCL refuses.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let temp_path = dir.join(format!(
            "{TEMP_PREFIX}{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut temp = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp_path)
            .map_err(|e| Error::io(format!("cannot create a temporary {what}"), dir, e))?;
        // An umask may have narrowed the mode: readers need 0644 exactly.
        let written = temp
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .and_then(|()| temp.write_all(bytes))
            .and_then(|()| temp.sync_all())
            .map_err(|e| Error::io(format!("cannot write the new {what}"), &temp_path, e))
            .and_then(|()| {
                std::fs::rename(&temp_path, target)
                    .map_err(|e| Error::io(format!("cannot replace the {what}"), target, e))
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp_path);
            return Err(e);
        }
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

impl Store {
    fn cached_base(&self) -> std::sync::MutexGuard<'_, Option<Arc<Base>>> {
        self.base.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The header of the file at `path`, if it is a readable hosthog file.
fn peek_file(path: &Path) -> Option<Peeked> {
    let mut header = [0u8; 72];
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .ok()?;
    peek(&header)
}
