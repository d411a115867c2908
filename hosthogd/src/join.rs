//! Joining a fleet without losing what the host already held.
//!
//! A host that gets `[fleet]` may hold reservations of its own, made while
//! it stood alone. The first window from the server would replace them, so
//! before it is written hosthogd uploads each one that has not ended as a
//! booking of this host by its owner (the host vouches for its users, as
//! for any request made through it). The server gives each its own id; the
//! old and new ids are kept in `join.json`. One the calendar refuses (in
//! the way of someone else's, or against its rules) is kept in
//! `unsynced.json` with the server's reason, shown by `hosthog check` and
//! logged, never dropped. The upload runs in hosthogd, not in the
//! installer, because only hosthogd knows the moment before the first
//! window replaces the table, and a host joined by editing hosthog.toml by
//! hand must not lose its reservations either.
//!
//! `join.json` is written before the first request and after every answer,
//! so a restart carries on where it stopped; while the server cannot be
//! reached the table stays as it is and the upload is tried again.

use std::io::Write;
use std::path::{Path, PathBuf};

use hosthog_booking::protocol::{Failure, FailureKind, ReserveArgs};
use libhosthog::{Reservation, ReservationId};
use serde::{Deserialize, Serialize};

/// The upload's progress, in the state directory.
pub const JOIN_NAME: &str = "join.json";
/// The reservations the calendar refused, in the state directory.
pub const UNSYNCED_NAME: &str = "unsynced.json";

/// `join.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// The server and host name joined (a new `[fleet]` is a new join).
    pub server: String,
    pub host: String,
    /// Still to upload, by start.
    pub pending: Vec<Reservation>,
    /// Uploaded: the local id and the calendar's.
    pub uploaded: Vec<Uploaded>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    pub local: ReservationId,
    pub fleet: ReservationId,
    pub owner: String,
}

/// One entry of `unsynced.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsynced {
    pub reservation: Reservation,
    /// The calendar's reason, as it said it.
    pub error: FailureKind,
    pub message: String,
}

/// What to do with the calendar's answer to one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Booked on the calendar under this id.
    Accepted(ReservationId),
    /// Refused for good: kept in `unsynced.json`.
    Refused(Unsynced),
    /// The server could not answer: try again later, table untouched.
    Later(String),
}

/// Sorts the calendar's answer to uploading `reservation`.
pub fn outcome(reservation: &Reservation, answer: Result<ReservationId, Failure>) -> Outcome {
    match answer {
        Ok(id) => Outcome::Accepted(id),
        Err(f) if f.kind == FailureKind::Internal || f.kind == FailureKind::Protocol => {
            Outcome::Later(f.message)
        }
        Err(f) => Outcome::Refused(Unsynced {
            reservation: reservation.clone(),
            error: f.kind,
            message: f.message,
        }),
    }
}

/// What is uploaded for `r` at `now`: a booking of this host by its
/// owner, from now if it has begun (the calendar takes no past start; who
/// may log in from now on is the same).
pub fn booking(r: &Reservation, now: i64) -> ReserveArgs {
    ReserveArgs {
        mode: r.mode,
        start: r.start.max(now),
        end: r.end,
        with: r.with.clone(),
        comment: r.comment.clone(),
        owner: None,
        force: false,
        hosts: Vec::new(),
    }
}

/// The upload to carry on with for `server`/`host`: the one recorded, or
/// a new one of `local` (the table's reservations) that have not ended by
/// `now`; `None` when this host has already synced with this server.
pub fn start(
    recorded: Option<Join>,
    already_synced: bool,
    server: &str,
    host: &str,
    local: Vec<Reservation>,
    now: i64,
) -> Option<Join> {
    match recorded {
        Some(join) if join.server == server && join.host == host => {
            (!join.pending.is_empty()).then_some(join)
        }
        _ if already_synced => None,
        _ => {
            let mut pending: Vec<Reservation> = local.into_iter().filter(|r| r.end > now).collect();
            pending.sort_by_key(|r| (r.start, r.id));
            Some(Join {
                server: server.to_string(),
                host: host.to_string(),
                pending,
                uploaded: Vec::new(),
            })
        }
    }
}

pub fn read_join(state_dir: &Path) -> Option<Join> {
    serde_json::from_slice(&std::fs::read(state_dir.join(JOIN_NAME)).ok()?).ok()
}

/// The reservations the calendar refused (empty if none).
pub fn read_unsynced(state_dir: &Path) -> Vec<Unsynced> {
    std::fs::read(state_dir.join(UNSYNCED_NAME))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes `value` as `name` in `state_dir`, atomically, readable by root
/// only (it names people and their plans).
pub fn write_json(state_dir: &Path, name: &str, value: &impl Serialize) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join(name);
    let temp: PathBuf = state_dir.join(format!(".{name}.new"));
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, &path)
}

/// One line per refused reservation, for `hosthog check` and the log.
pub fn describe(unsynced: &[Unsynced], path: &Path) -> String {
    let mut out = format!(
        "{} reservation{} made on this host before it joined the fleet could not be \
         booked on the calendar; kept in {}:",
        unsynced.len(),
        if unsynced.len() == 1 { "" } else { "s" },
        path.display()
    );
    for u in unsynced {
        let r = &u.reservation;
        out.push_str(&format!(
            "\n  {} of {} ({}, {} to {}): {}",
            r.id.short(),
            libhosthog::sanitize(&r.owner),
            r.mode,
            jiff::Timestamp::from_second(r.start).map_or(r.start.to_string(), |t| t.to_string()),
            jiff::Timestamp::from_second(r.end).map_or(r.end.to_string(), |t| t.to_string()),
            libhosthog::sanitize(&u.message)
        ));
    }
    out
}

/// Uploads what `join` still holds through `reserve` (one booking per
/// call: owner, what to book). Returns `Ok` once nothing is pending; `Err`
/// (with the reason) when the server could not answer, to be tried again.
/// Progress is written after every answer.
///
/// # Errors
/// The server could not answer, or the progress could not be written.
pub fn upload(
    state_dir: &Path,
    join: &mut Join,
    now: i64,
    mut reserve: impl FnMut(&str, &ReserveArgs) -> Result<ReservationId, Failure>,
) -> Result<(), String> {
    write_json(state_dir, JOIN_NAME, join).map_err(|e| format!("cannot write {JOIN_NAME}: {e}"))?;
    while let Some(r) = join.pending.first().cloned() {
        if r.end <= now {
            join.pending.remove(0);
            continue;
        }
        match outcome(&r, reserve(&r.owner, &booking(&r, now))) {
            Outcome::Later(why) => return Err(why),
            Outcome::Accepted(fleet) => {
                eprintln!(
                    "hosthogd: fleet: uploaded {}'s reservation {} made before joining; \
                     on the calendar it is {}",
                    libhosthog::sanitize(&r.owner),
                    r.id.short(),
                    fleet.short()
                );
                join.uploaded.push(Uploaded {
                    local: r.id,
                    fleet,
                    owner: r.owner.clone(),
                });
            }
            Outcome::Refused(unsynced) => {
                eprintln!(
                    "hosthogd: fleet: the calendar refused {}'s reservation {} made before \
                     joining ({}); kept in {UNSYNCED_NAME}",
                    libhosthog::sanitize(&r.owner),
                    r.id.short(),
                    libhosthog::sanitize(&unsynced.message)
                );
                let mut all = read_unsynced(state_dir);
                all.retain(|u| u.reservation.id != r.id);
                all.push(unsynced);
                write_json(state_dir, UNSYNCED_NAME, &all)
                    .map_err(|e| format!("cannot write {UNSYNCED_NAME}: {e}"))?;
            }
        }
        join.pending.remove(0);
        write_json(state_dir, JOIN_NAME, join)
            .map_err(|e| format!("cannot write {JOIN_NAME}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use libhosthog::Mode;

    fn res(id: u64, owner: &str, start: i64, end: i64) -> Reservation {
        Reservation::new(ReservationId(id), owner, start, end, Mode::Exclusive)
    }

    #[test]
    fn a_new_join_takes_what_has_not_ended_by_start() {
        let join = start(
            None,
            false,
            "https://cal",
            "gpu1",
            vec![
                res(3, "bob", 500, 900),
                res(1, "alice", 10, 99),
                res(2, "carol", 200, 300),
            ],
            100,
        )
        .unwrap();
        let owners: Vec<_> = join.pending.iter().map(|r| r.owner.as_str()).collect();
        assert_eq!(owners, ["carol", "bob"]);
        // Already synced with this server: nothing to upload.
        assert_eq!(
            start(
                None,
                true,
                "https://cal",
                "gpu1",
                vec![res(1, "a", 0, 999)],
                1
            ),
            None
        );
        // A recorded upload carries on; a finished one is done.
        let carried = start(Some(join.clone()), true, "https://cal", "gpu1", vec![], 100);
        assert_eq!(carried, Some(join.clone()));
        let done = Join {
            pending: vec![],
            ..join.clone()
        };
        assert_eq!(
            start(Some(done), false, "https://cal", "gpu1", vec![], 100),
            None
        );
        // Another server: a new join.
        let other = start(Some(join), false, "https://other", "gpu1", vec![], 100).unwrap();
        assert!(other.pending.is_empty() && other.server == "https://other");
    }

    #[test]
    fn answers_sort_into_accepted_refused_and_later() {
        let r = res(7, "alice", 0, 100);
        assert_eq!(
            outcome(&r, Ok(ReservationId(9))),
            Outcome::Accepted(ReservationId(9))
        );
        assert_eq!(
            outcome(&r, Err(Failure::new(FailureKind::Internal, "cannot reach"))),
            Outcome::Later("cannot reach".into())
        );
        let Outcome::Refused(u) = outcome(
            &r,
            Err(Failure::new(FailureKind::Conflict, "in the way: bob")),
        ) else {
            panic!("a conflict is kept");
        };
        assert_eq!(
            (u.error, u.message.as_str(), u.reservation.id),
            (FailureKind::Conflict, "in the way: bob", r.id)
        );
    }

    #[test]
    fn a_begun_reservation_is_booked_from_now() {
        let r = res(7, "alice", 0, 100);
        assert_eq!((booking(&r, 40).start, booking(&r, 40).end), (40, 100));
        let later = res(8, "alice", 60, 100);
        assert_eq!(booking(&later, 40).start, 60);
    }
}
