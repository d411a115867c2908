//! The single-host rules, applied to a reservation of several hosts: the
//! fleet server's decision, as one pure function.
//!
//! A fleet reservation is one record with a claim on each of its hosts.
//! [`apply`] runs [`policy::apply`] on every host's state (the reservations
//! on that host that have not ended), so a multi-host booking meets each
//! host's limits and conflicts exactly as a booking made on that host
//! would, and answers with the same sentences. It is granted only if every
//! host grants it; otherwise every host's refusal is reported, each
//! reservation in the way named with its host.
//!
//! One rule is stricter than on a single host: an admin's `force` may
//! override limits but not conflicts, because the fleet's database refuses
//! any overlap with an exclusive claim (its exclusion constraints) even
//! for admins. To take a host from someone, cancel their reservation
//! first; the audit log then says who did.

use libhosthog::{Reservation, State};

use crate::policy::{self, Caller, Change, Context, Record};
use crate::protocol::{Failure, FailureKind, Op, Reply};

/// Who may do what only admins may, on the fleet calendar: the server's
/// list, not the hosts' root or admin groups.
pub const FLEET_ADMINS: &str = "an admin of the fleet calendar (hosthog-server admin add)";

/// A refusal, with each reservation in the way and the host it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub failure: Failure,
    pub in_the_way: Vec<(String, Reservation)>,
}

impl From<Failure> for Refused {
    fn from(failure: Failure) -> Refused {
        Refused {
            failure,
            in_the_way: Vec::new(),
        }
    }
}

/// A granted change: the reply for the caller, and the record as it is now
/// (`None`: it is gone, released before its start or cancelled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub reply: Reply,
    pub change: Change,
    pub after: Option<Reservation>,
}

/// Applies write `op` for `caller` to the states of the hosts it concerns
/// (`hosts`: name and state, in name order, at least one). For a
/// reservation's change, every state holds that reservation; for a new
/// one, `op`'s host list is ignored here (the caller resolved it into
/// `hosts`).
///
/// # Errors
/// [`Refused`] with the first host's refusal if every host refuses alike
/// (a bad time, a denied caller), or each host's refusal, prefixed with its
/// name, when they differ; conflicts name every reservation in the way on
/// every host. The states are then as they were.
pub fn apply(
    hosts: &mut [(String, State)],
    caller: &Caller,
    op: &Op,
    ctx: &Context<'_>,
) -> Result<Granted, Refused> {
    if hosts.is_empty() {
        return Err(Failure::new(
            FailureKind::Invalid,
            "a reservation needs at least one host",
        )
        .into());
    }
    let op = match op {
        Op::Reserve(args) => {
            let mut args = args.clone();
            args.hosts.clear();
            Op::Reserve(args)
        }
        Op::Change(_) | Op::Share(_) | Op::Unshare(_) | Op::Release(_) | Op::Cancel(_) => {
            op.clone()
        }
        other => {
            return Err(Failure::new(
                FailureKind::Invalid,
                format!("{} is not a change to the fleet calendar", other.name()),
            )
            .into());
        }
    };
    let several = hosts.len() > 1;
    let mut granted: Option<(Reply, Change)> = None;
    let mut refusals: Vec<(String, Failure)> = Vec::new();
    let originals: Vec<State> = hosts.iter().map(|(_, s)| s.clone()).collect();
    for (name, state) in hosts.iter_mut() {
        match policy::apply(state, caller, &op, ctx) {
            Ok((reply, Some(change))) => {
                if !change.overridden.is_empty() {
                    let mut failure = Failure::new(
                        FailureKind::Conflict,
                        "on the fleet calendar no reservation may overlap an exclusive one, \
                         not even an admin's with --force: cancel the reservations in the way \
                         first (hosthog cancel ID)",
                    );
                    failure.conflicts = overridden(&originals, &change);
                    refusals.push((name.clone(), failure));
                    continue;
                }
                match &granted {
                    None => granted = Some((reply, change)),
                    Some((_, first)) if first.after == change.after => {}
                    Some(_) => {
                        refusals.push((
                            name.clone(),
                            Failure::new(
                                FailureKind::Internal,
                                "the reservation differs between its hosts",
                            ),
                        ));
                    }
                }
            }
            Ok((_, None)) => {
                refusals.push((
                    name.clone(),
                    Failure::new(FailureKind::Internal, "the operation changed nothing"),
                ));
            }
            Err(failure) => refusals.push((name.clone(), failure)),
        }
    }
    if refusals.is_empty() {
        let (reply, change) = granted.ok_or_else(|| {
            Refused::from(Failure::new(FailureKind::Internal, "no host answered"))
        })?;
        let after = match &change.after {
            Some(Record::Reservation(r)) => Some(r.clone()),
            _ => match &reply {
                // A release of a reservation in force ends it now.
                Reply::Removed(r) if change.action == "release" && r.start < ctx.now => {
                    Some(r.clone())
                }
                _ => None,
            },
        };
        return Ok(Granted {
            reply,
            change,
            after,
        });
    }
    for ((_, state), original) in hosts.iter_mut().zip(originals) {
        *state = original;
    }
    let all = hosts.len();
    Err(combine(refusals, several, all))
}

/// The reservations a forced change overrode, as records.
fn overridden(originals: &[State], change: &Change) -> Vec<Reservation> {
    let mut out: Vec<Reservation> = Vec::new();
    for state in originals {
        for r in &state.reservations {
            if change.overridden.contains(&r.id) && !out.iter().any(|o| o.id == r.id) {
                out.push(r.clone());
            }
        }
    }
    out
}

/// One refusal out of each host's: the shared one when all hosts refuse
/// alike, else each prefixed with its host; every conflict with its host.
fn combine(refusals: Vec<(String, Failure)>, several: bool, all: usize) -> Refused {
    let mut in_the_way = Vec::new();
    for (host, failure) in &refusals {
        for r in &failure.conflicts {
            in_the_way.push((host.clone(), r.clone()));
        }
    }
    let alike = refusals.len() == all
        && refusals
            .windows(2)
            .all(|w| w[0].1.kind == w[1].1.kind && w[0].1.message == w[1].1.message);
    let kind = refusals
        .iter()
        .map(|(_, f)| f.kind)
        .find(|k| *k == FailureKind::Conflict)
        .unwrap_or(refusals[0].1.kind);
    let message = if alike || !several {
        refusals[0].1.message.clone()
    } else {
        refusals
            .iter()
            .map(|(host, f)| format!("on {host}: {}", f.message))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut failure = Failure::new(kind, message);
    for (_, r) in &in_the_way {
        if !failure.conflicts.iter().any(|c| c.id == r.id) {
            failure.conflicts.push(r.clone());
        }
    }
    Refused {
        failure,
        in_the_way,
    }
}

/// The earliest start at or after `from` of a span of `duration` seconds
/// that overlaps none of `busy` (half-open spans, sorted by start).
pub fn earliest_free(busy: &[(i64, i64)], from: i64, duration: i64) -> i64 {
    let mut t = from;
    for &(start, end) in busy {
        if start >= t.saturating_add(duration) {
            break;
        }
        t = t.max(end);
    }
    t
}

/// Whether host `name` matches `pattern`: `*` any run of characters, `?`
/// any one, everything else itself (`gpu*`, `node-?`, `cpu3`).
pub fn host_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    // Where the last `*` was, and how much of the name it has taken.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        match p.get(i) {
            Some(b'*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(&c) if c == b'?' || c == n[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Limits;
    use crate::protocol::{ChangeArgs, IdArgs, ReserveArgs};
    use jiff::tz::TimeZone;
    use libhosthog::{Mode, ReservationId};

    const NOW: i64 = 1_800_000_000;
    const H: i64 = 3600;

    fn r(id: u64, owner: &str, mode: Mode, start: i64, end: i64) -> Reservation {
        Reservation {
            id: ReservationId(id),
            owner: owner.into(),
            with: vec![],
            start,
            end,
            mode,
            comment: String::new(),
            created: NOW - H,
            updated: NOW - H,
        }
    }

    fn caller(name: &str, admin: bool) -> Caller {
        Caller {
            uid: 1000,
            name: name.into(),
            admin,
        }
    }

    fn hosts(list: &[(&str, Vec<Reservation>)]) -> Vec<(String, State)> {
        list.iter()
            .map(|(n, rs)| {
                (
                    n.to_string(),
                    State {
                        reservations: rs.clone(),
                        ..State::default()
                    },
                )
            })
            .collect()
    }

    fn reserve(mode: Mode, start: i64, end: i64) -> Op {
        Op::Reserve(ReserveArgs {
            mode,
            start,
            end,
            with: vec![],
            comment: "runs".into(),
            owner: None,
            force: false,
            hosts: vec!["ignored".into()],
        })
    }

    fn run(
        states: &mut [(String, State)],
        who: &Caller,
        op: &Op,
        limits: &Limits,
    ) -> Result<Granted, Refused> {
        let ctx = Context {
            now: NOW,
            tz: &TimeZone::UTC,
            limits,
            new_id: 0xabcd_0000_0000_0001,
            user_exists: &|_| true,
            admins: FLEET_ADMINS,
        };
        apply(states, who, op, &ctx)
    }

    #[test]
    fn a_booking_of_free_hosts_is_one_record_for_all() {
        let mut s = hosts(&[("a", vec![]), ("b", vec![])]);
        let g = run(
            &mut s,
            &caller("alice", false),
            &reserve(Mode::Exclusive, NOW, NOW + H),
            &Limits::default(),
        )
        .unwrap();
        let after = g.after.unwrap();
        assert_eq!(after.id, ReservationId(0xabcd_0000_0000_0001));
        assert_eq!(
            (after.owner.as_str(), after.start, after.end),
            ("alice", NOW, NOW + H)
        );
        assert_eq!(g.change.action, "reserve");
        assert_eq!(s[0].1.reservations, vec![after.clone()]);
        assert_eq!(s[1].1.reservations, vec![after]);
    }

    #[test]
    fn a_conflict_on_one_host_refuses_all_and_names_the_host() {
        let bob = r(7, "bob", Mode::Exclusive, NOW + H, NOW + 3 * H);
        let mut s = hosts(&[("a", vec![]), ("b", vec![bob.clone()])]);
        let before = s.clone();
        let e = run(
            &mut s,
            &caller("alice", false),
            &reserve(Mode::Shared, NOW, NOW + 2 * H),
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(e.failure.kind, FailureKind::Conflict);
        assert_eq!(e.in_the_way, vec![("b".to_string(), bob.clone())]);
        assert_eq!(e.failure.conflicts, vec![bob]);
        assert!(
            e.failure
                .message
                .starts_with("on b: this shared reservation conflicts with"),
            "{}",
            e.failure.message
        );
        assert_eq!(s, before, "states are left as they were");
    }

    #[test]
    fn limits_apply_per_host() {
        let limits = Limits {
            max_open_per_user: Some(1),
            ..Limits::default()
        };
        let mine = r(7, "alice", Mode::Shared, NOW + 5 * H, NOW + 6 * H);
        let mut s = hosts(&[("a", vec![]), ("b", vec![mine])]);
        let e = run(
            &mut s,
            &caller("alice", false),
            &reserve(Mode::Shared, NOW, NOW + H),
            &limits,
        )
        .unwrap_err();
        assert_eq!(e.failure.kind, FailureKind::Limit);
        assert_eq!(
            e.failure.message,
            "on b: alice already has 1 open reservations; at most 1 are allowed"
        );
    }

    #[test]
    fn force_overrides_limits_but_never_conflicts() {
        let bob = r(7, "bob", Mode::Exclusive, NOW, NOW + H);
        let mut s = hosts(&[("a", vec![bob.clone()])]);
        let mut op = reserve(Mode::Exclusive, NOW, NOW + H);
        if let Op::Reserve(a) = &mut op {
            a.force = true;
        }
        let e = run(&mut s, &caller("root", true), &op, &Limits::default()).unwrap_err();
        assert_eq!(e.failure.kind, FailureKind::Conflict);
        assert_eq!(e.in_the_way, vec![("a".to_string(), bob)]);
        assert!(
            e.failure
                .message
                .contains("not even an admin's with --force")
        );
    }

    #[test]
    fn changes_and_releases_are_decided_on_every_host() {
        let mine = r(7, "alice", Mode::Shared, NOW - H, NOW + H);
        let carol = r(8, "carol", Mode::Exclusive, NOW + 2 * H, NOW + 3 * H);
        let mut s = hosts(&[
            ("a", vec![mine.clone()]),
            ("b", vec![mine.clone(), carol.clone()]),
        ]);
        let extend = Op::Change(ChangeArgs {
            id: mine.id.to_string(),
            extend_by: Some(2 * H),
            ..ChangeArgs::default()
        });
        let e = run(&mut s, &caller("alice", false), &extend, &Limits::default()).unwrap_err();
        assert_eq!(e.in_the_way, vec![("b".to_string(), carol)]);
        let bob = run(
            &mut s,
            &caller("bob", false),
            &Op::Release(IdArgs {
                id: mine.id.to_string(),
            }),
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(bob.failure.kind, FailureKind::Denied);
        let g = run(
            &mut s,
            &caller("alice", false),
            &Op::Release(IdArgs {
                id: mine.id.to_string(),
            }),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            g.after.map(|r| (r.start, r.end)),
            Some((NOW - H, NOW)),
            "in force: ends now"
        );
        let later = r(9, "alice", Mode::Shared, NOW + H, NOW + 2 * H);
        let mut s = hosts(&[("a", vec![later.clone()])]);
        let g = run(
            &mut s,
            &caller("alice", false),
            &Op::Release(IdArgs {
                id: later.id.to_string(),
            }),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(g.after, None, "not started: gone");
    }

    #[test]
    fn earliest_free_skips_every_busy_span() {
        let busy = [(10, 20), (25, 40), (45, 50), (100, 110)];
        assert_eq!(earliest_free(&busy, 0, 10), 0);
        assert_eq!(earliest_free(&busy, 5, 10), 50);
        assert_eq!(earliest_free(&busy, 5, 5), 5);
        assert_eq!(earliest_free(&busy, 5, 6), 50);
        assert_eq!(earliest_free(&busy, 12, 5), 20);
        assert_eq!(earliest_free(&busy, 5, 60), 110);
        assert_eq!(earliest_free(&[], 5, 60), 5);
    }

    #[test]
    fn host_patterns() {
        assert!(host_matches("gpu*", "gpu1"));
        assert!(host_matches("gpu*", "gpu"));
        assert!(!host_matches("gpu*", "cpu1"));
        assert!(host_matches("*-a?", "node-a1"));
        assert!(!host_matches("*-a?", "node-a12"));
        assert!(host_matches("cpu3", "cpu3"));
        assert!(!host_matches("cpu3", "cpu33"));
        assert!(host_matches("*", "x"));
    }
}
