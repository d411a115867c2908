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
//! `join.json` is written before the first request, before each booking is
//! sent (naming it `in_flight`) and after every answer, so a restart
//! carries on where it stopped; while the server cannot be reached the table
//! stays as it is and the upload is tried again. A booking whose answer was
//! lost (the connection broke, or hosthogd died after the server committed)
//! is looked up among its owner's reservations on the calendar before it is
//! sent again, so it is never booked twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use hosthog_booking::protocol::{Failure, FailureKind, FleetReservation, ReserveArgs};
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
    /// The local id of the booking sent and not yet answered, if any.
    #[serde(default)]
    pub in_flight: Option<ReservationId>,
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
/// `now`; `None` when this host has followed a fleet calendar before
/// (`already_synced`: its table holds that calendar's window).
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
                in_flight: None,
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

/// The calendar's reservation that an earlier, unanswered upload of `r`
/// made on `host`, if `listed` (its owner's reservations) holds one: only
/// `host`, the same end, mode, co-users and comment, a start no earlier
/// than `r`'s (a begun reservation is booked from the moment it was sent),
/// not cancelled, and not already taken for another upload.
#[must_use]
pub fn already_booked(
    r: &Reservation,
    host: &str,
    listed: &[FleetReservation],
    uploaded: &[Uploaded],
) -> Option<ReservationId> {
    listed
        .iter()
        .find(|f| {
            let b = &f.reservation;
            f.hosts.len() == 1
                && f.hosts[0] == host
                && f.cancelled_at.is_none()
                && b.owner == r.owner
                && b.end == r.end
                && b.start >= r.start
                && b.mode == r.mode
                && b.with == r.with
                && b.comment == r.comment
                && !uploaded.iter().any(|u| u.fleet == b.id)
        })
        .map(|f| f.reservation.id)
}

/// Uploads what `join` still holds through `reserve` (one booking per
/// call: owner, what to book). A booking sent before without an answer is
/// first looked up through `list` (an owner's reservations on the
/// calendar). Returns `Ok` once nothing is pending; `Err` (with the reason)
/// when the server could not answer, to be tried again. Progress is
/// written before each booking is sent and after every answer.
///
/// # Errors
/// The server could not answer, or the progress could not be written.
pub fn upload(
    state_dir: &Path,
    join: &mut Join,
    now: i64,
    mut reserve: impl FnMut(&str, &ReserveArgs) -> Result<ReservationId, Failure>,
    mut list: impl FnMut(&str) -> Result<Vec<FleetReservation>, Failure>,
) -> Result<(), String> {
    let save = |join: &Join| {
        write_json(state_dir, JOIN_NAME, join).map_err(|e| format!("cannot write {JOIN_NAME}: {e}"))
    };
    save(join)?;
    while let Some(r) = join.pending.first().cloned() {
        if r.end <= now {
            join.pending.remove(0);
            continue;
        }
        let earlier = if join.in_flight == Some(r.id) {
            let listed = list(&r.owner).map_err(|f| f.message)?;
            already_booked(&r, &join.host, &listed, &join.uploaded)
        } else {
            None
        };
        let answer = match earlier {
            Some(id) => Ok(id),
            None => {
                join.in_flight = Some(r.id);
                save(join)?;
                reserve(&r.owner, &booking(&r, now))
            }
        };
        match outcome(&r, answer) {
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
        join.in_flight = None;
        save(join)?;
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

    fn listed(r: &Reservation, id: u64, host: &str) -> FleetReservation {
        FleetReservation {
            reservation: Reservation {
                id: ReservationId(id),
                ..r.clone()
            },
            hosts: vec![host.to_string()],
            sequence: 1,
            cancelled_at: None,
        }
    }

    #[test]
    fn a_booking_whose_answer_was_lost_is_found_not_booked_again() {
        let dir = tempfile::tempdir().unwrap();
        let r = res(7, "alice", 500, 900);
        let mut join = start(None, false, "https://cal", "gpu1", vec![r.clone()], 100).unwrap();
        // The calendar commits the booking, and the answer is lost.
        let mut calendar: Vec<FleetReservation> = Vec::new();
        let mut sent = 0;
        let err = upload(
            dir.path(),
            &mut join,
            100,
            |_, args| {
                sent += 1;
                let mut booked = listed(&r, 40, "gpu1");
                booked.reservation.start = args.start;
                calendar.push(booked);
                Err(Failure::new(FailureKind::Internal, "connection reset"))
            },
            |_| Ok(Vec::new()),
        )
        .unwrap_err();
        assert_eq!((err.as_str(), sent), ("connection reset", 1));
        // What a restart reads: the booking is marked as sent.
        let recorded = read_join(dir.path()).unwrap();
        assert_eq!(recorded.in_flight, Some(r.id));
        let mut join = start(Some(recorded), true, "https://cal", "gpu1", vec![], 120).unwrap();
        upload(
            dir.path(),
            &mut join,
            120,
            |_, _| panic!("booked twice"),
            |owner| {
                assert_eq!(owner, "alice");
                Ok(calendar.clone())
            },
        )
        .unwrap();
        assert_eq!(
            join.uploaded,
            [Uploaded {
                local: r.id,
                fleet: ReservationId(40),
                owner: "alice".into()
            }]
        );
        assert_eq!((join.pending.len(), join.in_flight), (0, None));
        assert_eq!(read_join(dir.path()).unwrap(), join);
    }

    #[test]
    fn only_the_same_booking_on_this_host_counts_as_already_booked() {
        let r = res(7, "alice", 500, 900);
        let same = listed(&r, 40, "gpu1");
        assert_eq!(
            already_booked(&r, "gpu1", std::slice::from_ref(&same), &[]),
            Some(ReservationId(40))
        );
        // Booked from the moment it was sent (it had begun): still it.
        let mut later = same.clone();
        later.reservation.start = 600;
        assert_eq!(
            already_booked(&r, "gpu1", &[later], &[]),
            Some(ReservationId(40))
        );
        let mut other_host = same.clone();
        other_host.hosts = vec!["gpu2".into()];
        let mut cancelled = same.clone();
        cancelled.cancelled_at = Some(1);
        let mut longer = same.clone();
        longer.reservation.end = 901;
        let mut shared = same.clone();
        shared.reservation.mode = Mode::Shared;
        let mut commented = same.clone();
        commented.reservation.comment = "other".into();
        for f in [other_host, cancelled, longer, shared, commented] {
            assert_eq!(
                already_booked(&r, "gpu1", std::slice::from_ref(&f), &[]),
                None,
                "{f:?}"
            );
        }
        // Taken for another upload already.
        let taken = Uploaded {
            local: ReservationId(6),
            fleet: ReservationId(40),
            owner: "alice".into(),
        };
        assert_eq!(already_booked(&r, "gpu1", &[same], &[taken]), None);
    }
}
