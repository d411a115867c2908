//! `TableFile::open` on the files a login path may meet: it must refuse
//! anything its trusted owner does not alone control, must not follow
//! symlinks, and must not hang on a FIFO.
//!
//! These tests create root-owned files and chown files to other users, so
//! they need root. Run as anyone else they fail, on purpose: a skipped
//! security test reads like a passed one.

// Test code, helpers included: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use libhosthog::{ErrorKind, Mode, Reservation, ReservationId, State, TableFile, encode, limits};
use tempfile::TempDir;

const ROOT: u32 = 0;
const OTHER_UID: u32 = 1000;

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the table_file tests need root (they chown files and rely on root-owned \
         directories); run them as root, e.g. `sudo -E cargo test -p libhosthog --test table_file`"
    );
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn valid_table() -> Vec<u8> {
    encode(&State {
        generation: 3,
        reservations: vec![Reservation {
            id: ReservationId(1),
            owner: "alice".into(),
            with: vec![],
            start: 100,
            end: 200,
            mode: Mode::Exclusive,
            comment: "benchmarks".into(),
            created: 0,
            updated: 0,
        }],
        ..State::default()
    })
    .unwrap()
}

/// A root-owned 0700 directory holding a valid root-owned 0644 table.
fn state_dir() -> (TempDir, PathBuf) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o700);
    let table = dir.path().join("table");
    fs::write(&table, valid_table()).unwrap();
    chmod(&table, 0o644);
    (dir, table)
}

/// Opens `path` and returns the error, insisting on its kind and its text.
fn refused(path: &Path, kind: ErrorKind, message: &str) {
    match TableFile::open(path, ROOT) {
        Ok(file) => panic!(
            "{} was accepted ({} bytes)",
            path.display(),
            file.bytes().len()
        ),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.to_string(), message);
        }
    }
}

#[test]
fn a_root_owned_table_opens_and_validates() {
    let (_dir, path) = state_dir();
    let file = TableFile::open(&path, ROOT).unwrap();
    assert_eq!(file.path(), path);
    assert_eq!(file.bytes(), valid_table());
    let table = file.table().unwrap();
    assert_eq!(table.generation(), 3);
    assert_eq!(table.reservations().next().unwrap().owner(), "alice");
    // 0600 and 0400 are fine too: only write bits for others matter.
    for mode in [0o600, 0o400, 0o640, 0o604] {
        chmod(&path, mode);
        TableFile::open(&path, ROOT).unwrap();
    }
}

#[test]
fn a_table_owned_by_another_user_is_refused() {
    let (_dir, path) = state_dir();
    chown(&path, OTHER_UID, 0);
    refused(
        &path,
        ErrorKind::Insecure,
        &format!(
            "{}: the table is owned by uid 1000, not uid 0; refusing it",
            path.display()
        ),
    );
    // Trusting uid 1000 instead does not help while the directory is
    // root's: whoever controls the directory can swap the file.
    let e = TableFile::open(&path, OTHER_UID).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Insecure);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: the table's directory is owned by uid 0, not uid 1000; refusing it",
            path.parent().unwrap().display()
        )
    );
}

#[test]
fn group_or_world_writable_tables_are_refused() {
    let (_dir, path) = state_dir();
    for (mode, shown) in [
        (0o666, "0666"),
        (0o620, "0620"),
        (0o602, "0602"),
        (0o664, "0664"),
        (0o4622, "4622"),
    ] {
        chmod(&path, mode);
        refused(
            &path,
            ErrorKind::Insecure,
            &format!(
                "{}: the table has mode {shown}: writable by group or others; refusing it",
                path.display()
            ),
        );
    }
}

#[test]
fn a_symlink_to_a_valid_table_is_refused() {
    let (dir, path) = state_dir();
    let real = dir.path().join("real-table");
    fs::rename(&path, &real).unwrap();
    symlink(&real, &path).unwrap();
    chown(&path, ROOT, 0);
    refused(
        &path,
        ErrorKind::Insecure,
        &format!(
            "{}: the table is a symbolic link; refusing it",
            path.display()
        ),
    );
    // The target itself is fine: it is the link that is refused.
    TableFile::open(&real, ROOT).unwrap();
    // A dangling symlink is refused the same way, not reported missing.
    fs::remove_file(&real).unwrap();
    refused(
        &path,
        ErrorKind::Insecure,
        &format!(
            "{}: the table is a symbolic link; refusing it",
            path.display()
        ),
    );
}

/// Runs `TableFile::open` on another thread and fails if it blocks.
fn open_within(path: &Path, limit: Duration) -> libhosthog::Result<TableFile> {
    let (send, receive) = mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = send.send(TableFile::open(&owned, ROOT));
    });
    receive
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("TableFile::open blocked on {}", path.display()))
}

#[test]
fn a_fifo_is_refused_without_hanging() {
    let (_dir, path) = state_dir();
    fs::remove_file(&path).unwrap();
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c_path is a valid NUL-terminated string for the call.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
    chmod(&path, 0o644);
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
    let e = open_within(&path, Duration::from_secs(5)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Insecure);
    assert_eq!(
        e.to_string(),
        format!("{}: the table is not a regular file", path.display())
    );
}

#[test]
fn a_directory_is_refused() {
    let (_dir, path) = state_dir();
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    chmod(&path, 0o755);
    refused(
        &path,
        ErrorKind::Insecure,
        &format!("{}: the table is not a regular file", path.display()),
    );
}

#[test]
fn an_unsafe_directory_is_refused() {
    let (dir, path) = state_dir();
    let dir = dir.path();
    for (mode, shown) in [
        (0o770, "0770"),
        (0o707, "0707"),
        (0o777, "0777"),
        (0o1777, "1777"),
        (0o730, "0730"),
    ] {
        chmod(dir, mode);
        refused(
            &path,
            ErrorKind::Insecure,
            &format!(
                "{}: the table's directory has mode {shown}: writable by group or others; \
                 refusing it",
                dir.display()
            ),
        );
    }
    chmod(dir, 0o755);
    TableFile::open(&path, ROOT).unwrap();
    chown(dir, OTHER_UID, 0);
    refused(
        &path,
        ErrorKind::Insecure,
        &format!(
            "{}: the table's directory is owned by uid 1000, not uid 0; refusing it",
            dir.display()
        ),
    );
    chown(dir, ROOT, 0);
}

#[test]
fn a_missing_table_is_reported_missing() {
    let (_dir, path) = state_dir();
    fs::remove_file(&path).unwrap();
    refused(
        &path,
        ErrorKind::Missing,
        &format!(
            "{}: cannot open the table: No such file or directory (os error 2)",
            path.display()
        ),
    );
}

#[test]
fn size_limits() {
    let (_dir, path) = state_dir();
    // One byte over the limit: refused before it is mapped.
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(limits::MAX_TABLE_BYTES + 1).unwrap();
    refused(
        &path,
        ErrorKind::Corrupt,
        &format!(
            "{}: the table is 67108865 bytes; at most 67108864 are accepted",
            path.display()
        ),
    );
    // Exactly at the limit it is opened, and then found to be a table
    // padded with zeros.
    file.set_len(limits::MAX_TABLE_BYTES).unwrap();
    let opened = TableFile::open(&path, ROOT).unwrap();
    assert_eq!(opened.bytes().len() as u64, limits::MAX_TABLE_BYTES);
    let e = opened.table().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: the table is 67108864 bytes but its header says {} (truncated or extended)",
            path.display(),
            valid_table().len()
        )
    );
    // An empty file opens (nothing to map) and is not a table either.
    file.set_len(0).unwrap();
    let opened = TableFile::open(&path, ROOT).unwrap();
    assert_eq!(opened.bytes(), b"");
    assert_eq!(
        opened.table().unwrap_err().to_string(),
        format!(
            "{}: the table is 0 bytes, shorter than its header",
            path.display()
        )
    );
}

/// A change file for `table` (generation 3, see [`valid_table`]):
/// generation `base + 1`, alice's reservation moved, for full table `base`.
fn change_file_for(base: u64) -> Vec<u8> {
    use libhosthog::format::{Changes, encode_delta};
    let mut moved = libhosthog::Table::parse(&valid_table()).unwrap().to_state();
    moved.generation = base + 1;
    moved.reservations[0].comment = "moved".into();
    let changes = Changes {
        base_generation: base,
        changed: &[&moved.reservations[0]],
        removed: &[],
    };
    encode_delta(&moved, &changes, 50).unwrap()
}

/// `table.delta` planted beside a valid table: read when it is a root-owned
/// regular file that only root can write; refused, with the reason, when it
/// is a symlink (even to a valid change file), owned by a user, writable by
/// group or others, or a FIFO (without blocking). A change file for a newer
/// full table than the one opened makes the reader open both again, a
/// bounded number of times, then refuse: `open_within` fails the test if
/// that loop never ends.
#[test]
fn a_change_file_is_opened_by_the_tables_rules() {
    let (dir, path) = state_dir();
    let delta = libhosthog::delta_path(&path);
    let plant = |bytes: &[u8], mode: u32| {
        let _ = fs::remove_file(&delta);
        fs::write(&delta, bytes).unwrap();
        chmod(&delta, mode);
    };
    plant(&change_file_for(3), 0o644);
    let file = open_within(&path, Duration::from_secs(5)).unwrap();
    let table = file.table().unwrap();
    assert_eq!(table.generation(), 4);
    assert_eq!(table.reservations().next().unwrap().comment(), "moved");
    let shown = delta.display();

    let real = dir.path().join("real-delta");
    fs::write(&real, change_file_for(3)).unwrap();
    chmod(&real, 0o644);
    fs::remove_file(&delta).unwrap();
    symlink(&real, &delta).unwrap();
    refused(
        &path,
        ErrorKind::Insecure,
        &format!("{shown}: the table's change file is a symbolic link; refusing it"),
    );

    plant(&change_file_for(3), 0o644);
    chown(&delta, OTHER_UID, OTHER_UID);
    refused(
        &path,
        ErrorKind::Insecure,
        &format!(
            "{shown}: the table's change file is owned by uid {OTHER_UID}, not uid 0; refusing it"
        ),
    );
    for mode in [0o664, 0o646, 0o666] {
        plant(&change_file_for(3), mode);
        refused(
            &path,
            ErrorKind::Insecure,
            &format!(
                "{shown}: the table's change file has mode {mode:04o}: writable by group or others; refusing it"
            ),
        );
    }

    fs::remove_file(&delta).unwrap();
    let c_path = std::ffi::CString::new(delta.as_os_str().as_bytes()).unwrap();
    // SAFETY: c_path is a valid NUL-terminated string for the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    chmod(&delta, 0o644);
    let e = open_within(&path, Duration::from_secs(5)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Insecure);
    assert_eq!(
        e.to_string(),
        format!("{shown}: the table's change file is not a regular file")
    );

    plant(&change_file_for(7), 0o644);
    let file = open_within(&path, Duration::from_secs(5)).unwrap();
    let e = file.table().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: the change file belongs to table generation 7, newer than the table's 3",
            path.display()
        )
    );
}
