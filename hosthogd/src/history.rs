//! `hosthog history`: past reservations and the hours each owner reserved,
//! read from the audit log. The log is root's (mode 0640); users see their
//! part of it only through this request, which hosthogd answers for them.
//!
//! The log has one line per change; a reservation's last record is its
//! final shape, and a `release` or `cancel` line says when and by whom it
//! was removed. Reservations that simply ran out have no line of their
//! own: their last record's end is when they ended.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::path::Path;

use hosthog_booking::policy::{Caller, require_admin};
use hosthog_booking::protocol::{
    Failure, FailureKind, History, HistoryArgs, MAX_FRAME, MAX_HISTORY, PastReservation, UsageTotal,
};
use libhosthog::{Mode, Reservation, ReservationId};
use serde::Deserialize;

/// The period `history` covers unless told: the last 30 days.
pub const DEFAULT_PERIOD: i64 = 30 * 86_400;

/// The most the listed reservations may take in a reply, so that the reply
/// stays within one frame whatever their comments.
const MAX_LISTED_BYTES: usize = MAX_FRAME / 2;

/// The fields of an audit line this needs.
#[derive(Deserialize)]
struct Line {
    time: i64,
    user: String,
    action: String,
    #[serde(default)]
    before: Option<serde_json::Value>,
    #[serde(default)]
    after: Option<serde_json::Value>,
}

/// One reservation as the log tells it.
struct Told {
    last: Reservation,
    /// `released` or `cancelled`, when, by whom.
    removed: Option<(&'static str, i64, String)>,
}

fn reservation(value: Option<serde_json::Value>) -> Option<Reservation> {
    serde_json::from_value(value?).ok()
}

/// Reads the log at `audit` into each reservation's story, in order of
/// first appearance. Lines it cannot read are skipped.
fn read_log(audit: &Path) -> Result<Vec<Told>, Failure> {
    let file = match File::open(audit) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Failure::new(
                FailureKind::Internal,
                format!("cannot read {}: {e}", audit.display()),
            ));
        }
    };
    let mut told: Vec<Told> = Vec::new();
    let mut index: HashMap<ReservationId, usize> = HashMap::new();
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        let Ok(line) = serde_json::from_str::<Line>(&line) else {
            continue;
        };
        let (record, removed) = match line.action.as_str() {
            "reserve" | "change" | "share" | "unshare" => (reservation(line.after), None),
            "release" => (
                reservation(line.before),
                Some(("released", line.time, line.user)),
            ),
            "cancel" => (
                reservation(line.before),
                Some(("cancelled", line.time, line.user)),
            ),
            _ => continue,
        };
        let Some(record) = record else { continue };
        match index.get(&record.id) {
            Some(&i) => {
                told[i].last = record;
                told[i].removed = removed;
            }
            None => {
                index.insert(record.id, told.len());
                told.push(Told {
                    last: record,
                    removed,
                });
            }
        }
    }
    Ok(told)
}

/// The history `caller` asked for at `now`: the reservations in force at
/// some time from `since` to now that they owned or were on (everyone's
/// with `all`, admins only), and the hours reserved per owner.
///
/// # Errors
/// [`FailureKind::Denied`] for `all` from a non-admin,
/// [`FailureKind::Invalid`] for a `since` after now, and
/// [`FailureKind::Internal`] if the log cannot be read.
pub fn history(
    audit: &Path,
    caller: &Caller,
    args: &HistoryArgs,
    now: i64,
) -> Result<History, Failure> {
    if args.all {
        require_admin(caller, "see everyone's history (--all)")?;
    }
    let since = args.since.unwrap_or(now.saturating_sub(DEFAULT_PERIOD));
    if since > now {
        return Err(Failure::new(
            FailureKind::Invalid,
            "--since is in the future; history covers a period up to now",
        ));
    }
    let mut past: Vec<PastReservation> = Vec::new();
    let mut totals: Vec<UsageTotal> = Vec::new();
    for told in read_log(audit)? {
        let r = told.last;
        if !args.all && !r.is_member(&caller.name) {
            continue;
        }
        let (ending, ended_at, ended_by) = match told.removed {
            // Removed before it started: it never held the host.
            Some((_, at, _)) if at <= r.start => continue,
            Some((how, at, by)) => (how, at.min(r.end), Some(by)),
            None if r.end <= now => ("ended", r.end, None),
            None => ("in_force", r.end, None),
        };
        let used = ended_at.min(now) - r.start.max(since);
        if used <= 0 {
            continue;
        }
        if args.all || r.owner == caller.name {
            let total = match totals.iter().position(|t| t.user == r.owner) {
                Some(i) => &mut totals[i],
                None => {
                    totals.push(UsageTotal {
                        user: r.owner.clone(),
                        reservations: 0,
                        seconds: 0,
                        exclusive_seconds: 0,
                    });
                    let last = totals.len() - 1;
                    &mut totals[last]
                }
            };
            total.reservations += 1;
            total.seconds += used;
            if r.mode == Mode::Exclusive {
                total.exclusive_seconds += used;
            }
        }
        past.push(PastReservation {
            reservation: r,
            ending: ending.to_string(),
            ended_at,
            ended_by,
        });
    }
    past.sort_by_key(|p| std::cmp::Reverse((p.reservation.start, p.reservation.id)));
    let mut bytes = 0;
    let mut listed = 0;
    for p in past.iter().take(MAX_HISTORY) {
        bytes += serde_json::to_vec(p).map_or(MAX_LISTED_BYTES, |v| v.len());
        if bytes > MAX_LISTED_BYTES {
            break;
        }
        listed += 1;
    }
    let more = past.len() - listed;
    past.truncate(listed);
    totals.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(History {
        since,
        until: now,
        user: (!args.all).then(|| caller.name.clone()),
        reservations: past,
        more,
        totals,
    })
}
