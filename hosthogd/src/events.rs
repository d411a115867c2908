//! Who should be told what, and when: the pure half of hosthogd's timers.
//!
//! hosthogd's scheduler wakes at the instants [`next_instant`] names, reads
//! the table, and asks [`plan`] what happened since its last wake: changes
//! it had not seen (a reservation made, changed, cancelled or released) and
//! instants that passed (a lead time before an exclusive slot, a start, the
//! end of the clearing grace period, an end). [`recipients`] says which of
//! the people on the host each event concerns and [`message`] what to tell
//! them. Nothing here reads the clock, the table file or the user database:
//! `now` and everything else come in as arguments.
//!
//! Each time-driven event is delivered at most once: [`Sent`] remembers the
//! events already handled by (reservation, kind, instant), so a window that
//! is looked at twice (the clock was set back) sends nothing twice.

use std::collections::HashSet;

use jiff::tz::TimeZone;
use serde::Serialize;

use libhosthog::{
    Bookings, Mode, Reservation, ReservationId, Who, decide, describe, format_instant, sanitize,
};

/// What happened to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A reservation appeared in the table.
    Created,
    /// Its span, mode, co-users or comment changed.
    Changed,
    /// It disappeared before it started.
    Cancelled,
    /// An exclusive slot starts in one of the configured lead times (or
    /// sooner than the first of them: told at once when it is made or
    /// moved).
    Lead,
    Start,
    /// A reservation ends in one of the configured end lead times: its
    /// owner and co-users are told how to extend it.
    EndLead,
    /// The clearing grace period of an exclusive slot is over.
    Clear,
    End,
    /// It disappeared while in force (released).
    EndedEarly,
}

impl EventKind {
    /// The name used in logs: `created`, `lead`, `start`, ...
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Changed => "changed",
            EventKind::Cancelled => "cancelled",
            EventKind::Lead => "lead",
            EventKind::Start => "start",
            EventKind::EndLead => "end_lead",
            EventKind::Clear => "clear",
            EventKind::End => "end",
            EventKind::EndedEarly => "ended_early",
        }
    }

    /// True for events driven by an instant (lead, start, clear, end lead,
    /// end), as opposed to changes seen in the table.
    pub fn is_timed(self) -> bool {
        matches!(
            self,
            EventKind::Lead
                | EventKind::Start
                | EventKind::Clear
                | EventKind::EndLead
                | EventKind::End
        )
    }
}

/// One event: what happened, at which instant, to which reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The instant (UTC seconds): the lead instant, the start, the end; for
    /// changes, when the scheduler saw them.
    pub at: i64,
    /// The reservation as it is now (as it last was, if it is gone).
    pub reservation: Reservation,
    /// For [`EventKind::Changed`]: the reservation before the change.
    pub before: Option<Reservation>,
}

impl Event {
    /// What identifies a time-driven event across wakes: (reservation,
    /// kind, instant). Changes are seen once by construction and have none.
    pub fn key(&self) -> Option<(ReservationId, EventKind, i64)> {
        self.kind
            .is_timed()
            .then_some((self.reservation.id, self.kind, self.at))
    }
}

/// The configured instants around a reservation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timing {
    /// Seconds before an exclusive slot starts at which people are told
    /// (default 15 and 1 minutes).
    pub leads: Vec<i64>,
    /// With clearing on, seconds after the start of an exclusive slot at
    /// which the sessions of people not allowed are ended.
    pub clear_grace: Option<i64>,
    /// Seconds before a reservation ends at which its owner and co-users
    /// are told (default 15 minutes); only instants after its start count.
    pub end_leads: Vec<i64>,
}

impl Timing {
    /// Every instant of `r` this timing cares about.
    fn instants(&self, r: &Reservation) -> Vec<(EventKind, i64)> {
        let mut out = Vec::with_capacity(self.leads.len() + 3);
        if r.mode == Mode::Exclusive {
            for lead in self.leads.iter().filter(|l| **l > 0) {
                out.push((EventKind::Lead, r.start.saturating_sub(*lead)));
            }
            if let Some(grace) = self.clear_grace {
                out.push((EventKind::Clear, clear_at(r, grace)));
            }
        }
        out.push((EventKind::Start, r.start));
        for lead in self.end_leads.iter().filter(|l| **l > 0) {
            let at = r.end.saturating_sub(*lead);
            if at > r.start {
                out.push((EventKind::EndLead, at));
            }
        }
        out.push((EventKind::End, r.end));
        out
    }

    /// The longest lead time before an exclusive start (0 without any).
    fn first_lead(&self) -> i64 {
        self.leads.iter().copied().max().unwrap_or(0).max(0)
    }
}

/// When the sessions of people not allowed during exclusive reservation
/// `r` are ended: `grace` after it starts, or after it last changed if that
/// was later (a slot made or turned exclusive while in force still gives
/// people the full grace period).
pub fn clear_at(r: &Reservation, grace: i64) -> i64 {
    r.start.max(r.updated).saturating_add(grace.max(0))
}

fn differs(a: &Reservation, b: &Reservation) -> bool {
    a.start != b.start
        || a.end != b.end
        || a.mode != b.mode
        || a.with != b.with
        || a.comment != b.comment
        || a.owner != b.owner
}

/// What happened between the scheduler's last look at the table (`prev`,
/// at `since`) and now (`cur`, at `now`), in order of their instants.
///
/// - With `prev` `None` (the daemon just started) nothing counts as a
///   change; instants in `(since, now]` still fire.
/// - A reservation new since `prev` gives one [`EventKind::Created`] and,
///   if it is already in force, its [`EventKind::Start`] (so what a start
///   does, such as pausing timers, is done; the notifier does not repeat
///   the creation message).
/// - An exclusive reservation made, or moved, to start sooner than the
///   first lead time gets an immediate [`EventKind::Lead`] at `now`: a
///   lead warning is never skipped.
/// - A reservation gone since `prev` gives [`EventKind::End`] if it had
///   ended, [`EventKind::EndedEarly`] if it was in force, and
///   [`EventKind::Cancelled`] if it had not started.
/// - Of several lead (or end lead) instants in one window (after a
///   suspend) only the last counts; a start that is no longer in force,
///   and leads and clearing after the start or end, are dropped.
///
/// # Example
/// ```
/// use libhosthog::*;
/// use hosthogd::events::{plan, EventKind, Timing};
/// let r = Reservation { id: ReservationId(1), owner: "alice".into(), with: vec![],
///     start: 100, end: 200, mode: Mode::Exclusive, comment: String::new(),
///     created: 0, updated: 0 };
/// let timing = Timing { leads: vec![60], clear_grace: None, end_leads: vec![] };
/// let kinds = |since, now| plan(Some(&[r.clone()]), &[r.clone()], since, now, &timing)
///     .iter().map(|e| e.kind).collect::<Vec<_>>();
/// assert_eq!(kinds(30, 39), []);
/// assert_eq!(kinds(39, 40), [EventKind::Lead]);
/// assert_eq!(kinds(99, 100), [EventKind::Start]);
/// assert_eq!(kinds(199, 200), [EventKind::End]);
/// ```
pub fn plan(
    prev: Option<&[Reservation]>,
    cur: &[Reservation],
    since: i64,
    now: i64,
    timing: &Timing,
) -> Vec<Event> {
    let mut events = Vec::new();
    let event = |kind, at, r: &Reservation, before: Option<&Reservation>| Event {
        kind,
        at,
        reservation: r.clone(),
        before: before.cloned(),
    };
    if let Some(prev) = prev {
        for r in cur {
            match prev.iter().find(|p| p.id == r.id) {
                None => events.push(event(EventKind::Created, now, r, None)),
                Some(p) if differs(p, r) => {
                    events.push(event(EventKind::Changed, now, r, Some(p)));
                }
                Some(_) => {}
            }
        }
        for p in prev.iter().filter(|p| cur.iter().all(|r| r.id != p.id)) {
            if p.end <= now {
                events.push(event(EventKind::End, p.end, p, None));
            } else if p.start <= now {
                events.push(event(EventKind::EndedEarly, now, p, None));
            } else {
                events.push(event(EventKind::Cancelled, now, p, None));
            }
        }
    }
    for r in cur {
        let before = prev.map(|prev| prev.iter().find(|p| p.id == r.id));
        let is_new = matches!(before, Some(None));
        // Made, or moved, to start sooner than the first lead time: told
        // now rather than never.
        let moved = match before {
            Some(Some(p)) => p.start != r.start || p.mode != r.mode,
            Some(None) => true,
            None => false,
        };
        let soon =
            r.mode == Mode::Exclusive && now < r.start && r.start - now <= timing.first_lead();
        if moved && soon {
            events.push(event(EventKind::Lead, now, r, None));
        }
        if is_new {
            if r.start <= now && now < r.end {
                events.push(event(EventKind::Start, r.start, r, None));
            }
            continue;
        }
        let mut lead: Option<i64> = None;
        let mut end_lead: Option<i64> = None;
        for (kind, at) in timing.instants(r) {
            if at <= since || at > now {
                continue;
            }
            match kind {
                EventKind::Lead if now < r.start && !(moved && soon) => {
                    lead = Some(lead.map_or(at, |l| l.max(at)));
                }
                EventKind::EndLead if now < r.end => {
                    end_lead = Some(end_lead.map_or(at, |l| l.max(at)));
                }
                EventKind::Start | EventKind::Clear if now < r.end => {
                    events.push(event(kind, at, r, None));
                }
                EventKind::End => events.push(event(kind, at, r, None)),
                _ => {}
            }
        }
        if let Some(at) = lead {
            events.push(event(EventKind::Lead, at, r, None));
        }
        if let Some(at) = end_lead {
            events.push(event(EventKind::EndLead, at, r, None));
        }
    }
    events.sort_by_key(|e| (e.at, e.kind, e.reservation.id));
    events
}

/// The first instant after `now` at which something is due for `cur`
/// (a lead time, a start, the end of a grace period, an end), if any.
///
/// # Example
/// ```
/// use libhosthog::*;
/// use hosthogd::events::{next_instant, Timing};
/// let r = Reservation { id: ReservationId(1), owner: "alice".into(), with: vec![],
///     start: 1000, end: 2000, mode: Mode::Exclusive, comment: String::new(),
///     created: 0, updated: 0 };
/// let timing = Timing { leads: vec![900, 60], clear_grace: Some(300), end_leads: vec![] };
/// assert_eq!(next_instant(&[r.clone()], 0, &timing), Some(100));
/// assert_eq!(next_instant(&[r.clone()], 1000, &timing), Some(1300));
/// assert_eq!(next_instant(&[r], 2000, &timing), None);
/// ```
pub fn next_instant(cur: &[Reservation], now: i64, timing: &Timing) -> Option<i64> {
    cur.iter()
        .flat_map(|r| timing.instants(r))
        .map(|(_, at)| at)
        .filter(|at| *at > now)
        .min()
}

/// How an event concerns a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Concern {
    /// The owner or a co-user.
    Member,
    /// Not allowed on the host while the exclusive reservation is in force.
    LockedOut,
}

/// How reservation `r` concerns `user`: its owner and co-users are
/// members; anyone else is locked out if [`decide`] would refuse them
/// while `r` alone is in force (so root and exempt users never are, and
/// nobody is by a shared reservation).
pub fn concern(r: &Reservation, user: &str, exempt: &[String]) -> Option<Concern> {
    if r.is_member(user) {
        return Some(Concern::Member);
    }
    let alone = Bookings {
        reservations: std::slice::from_ref(r),
        exempt,
    };
    let who = Who {
        user,
        ..Who::default()
    };
    decide(&alone, &who, r.start)
        .is_deny()
        .then_some(Concern::LockedOut)
}

/// Which of the people `present` on the host `event` concerns, and how.
/// `exempt` is the table's exemption list; `actor` made the change (they
/// are not told about their own change).
pub fn recipients(
    event: &Event,
    present: &[String],
    exempt: &[String],
    actor: Option<&str>,
) -> Vec<(String, Concern)> {
    let mut out = Vec::new();
    for user in present {
        if out.iter().any(|(u, _)| u == user) {
            continue;
        }
        let changes = matches!(
            event.kind,
            EventKind::Created | EventKind::Changed | EventKind::Cancelled | EventKind::EndedEarly
        );
        if changes && actor == Some(user.as_str()) {
            continue;
        }
        let now = concern(&event.reservation, user, exempt);
        let concern = match event.kind {
            EventKind::Changed => now.or_else(|| concern(event.before.as_ref()?, user, exempt)),
            EventKind::Clear => now.filter(|c| *c == Concern::LockedOut),
            EventKind::EndLead => now.filter(|c| *c == Concern::Member),
            _ => now,
        };
        if let Some(c) = concern {
            out.push((user.clone(), c));
        }
    }
    out
}

fn until(at: i64, now: i64) -> String {
    let secs = (at - now).max(0);
    match secs {
        0..60 => format!("in {secs} s"),
        60..3600 if secs % 60 != 0 => format!("in {} min {} s", secs / 60, secs % 60),
        60..3600 => format!("in {} min", secs / 60),
        _ => format!("in {} h {} min", secs / 3600, (secs % 3600 + 59) / 60),
    }
}

/// An instant for a message: as [`format_instant`], to the second where it
/// matters — within the hour ahead, or not on a whole minute.
///
/// # Example
/// ```
/// use hosthogd::events::instant;
/// let utc = jiff::tz::TimeZone::UTC;
/// assert_eq!(instant(3600, 3000, &utc), "01:00:00 UTC");
/// assert_eq!(instant(3605, 0, &utc), "01:00:05 UTC");
/// assert_eq!(instant(7200, 0, &utc), "02:00 UTC");
/// ```
pub fn instant(at: i64, now: i64, tz: &TimeZone) -> String {
    let precise = at % 60 != 0 || (0..3600).contains(&(at - now));
    let text = format_instant(at, now, tz);
    if !precise {
        return text;
    }
    let Ok(zoned) = jiff::Timestamp::from_second(at).map(|t| t.to_zoned(tz.clone())) else {
        return text;
    };
    // format_instant's minute is followed by " ZONE": add the seconds there.
    let minute = zoned.strftime("%H:%M").to_string();
    match text.rfind(&minute) {
        Some(i) => format!(
            "{}{}:{:02}{}",
            &text[..i],
            minute,
            zoned.second(),
            &text[i + minute.len()..]
        ),
        None => text,
    }
}

/// What to tell `user`, whom `event` concerns as `concern`: one line,
/// starting `hosthog: `, every piece of user text sanitized. `clear_grace`
/// is set when clearing the host is on (the message then says when the
/// sessions of people locked out will be ended).
///
/// # Example
/// ```
/// use libhosthog::*;
/// use hosthogd::events::{message, Concern, Event, EventKind};
/// let r = Reservation { id: ReservationId(0x1234abcd_00000000), owner: "alice".into(),
///     with: vec![], start: 3600, end: 7200, mode: Mode::Exclusive,
///     comment: "paper".into(), created: 0, updated: 0 };
/// let e = Event { kind: EventKind::Start, at: 3600, reservation: r, before: None };
/// let text = message(&e, "bob", Concern::LockedOut, None, 3600, &jiff::tz::TimeZone::UTC, None);
/// assert_eq!(text, "hosthog: alice's exclusive reservation 1234abcd (01:00 UTC to 02:00 UTC, \
///     \"paper\") has started and you are not on it: new logins by you are refused until 02:00 UTC.");
/// ```
pub fn message(
    event: &Event,
    user: &str,
    concern: Concern,
    actor: Option<&str>,
    now: i64,
    tz: &TimeZone,
    clear_grace: Option<i64>,
) -> String {
    let r = &event.reservation;
    let what = describe::reservation(r, Some(user), now, tz);
    let at = |t: i64| instant(t, now, tz);
    let by = match actor {
        Some(a) if a != r.owner => format!(" by {}", sanitize(a)),
        _ => String::new(),
    };
    let locked = concern == Concern::LockedOut;
    let clearing = match clear_grace {
        Some(grace) if locked && r.mode == Mode::Exclusive => format!(
            " Your sessions and processes on this host will be ended at {} ({}): save your work and log out before then.",
            at(clear_at(r, grace)),
            until(clear_at(r, grace), now)
        ),
        _ => String::new(),
    };
    let extend = format!(
        "to keep it longer: hosthog extend {} --for 1h",
        r.id.short()
    );
    let text = match event.kind {
        EventKind::Created if locked && r.start <= now => format!(
            "{what} was made{by} and you are not on it: new logins by you are refused until {}.{clearing}",
            at(r.end)
        ),
        EventKind::Created if locked => format!(
            "{what} was made{by} and you are not on it: new logins by you will be refused from {} ({}) until {}.{clearing}",
            at(r.start),
            until(r.start, now),
            at(r.end)
        ),
        EventKind::Created if r.start <= now => format!(
            "{what} was made{by}; you are on it. It is in force now and ends at {}.",
            at(r.end)
        ),
        EventKind::Created => format!(
            "{what} was made{by}; you are on it. It starts at {} ({}) and ends at {}.",
            at(r.start),
            until(r.start, now),
            at(r.end)
        ),
        EventKind::Changed => {
            let mut text = format!("{what} was changed{by}");
            if let Some(before) = &event.before {
                if (before.start, before.end) != (r.start, r.end) {
                    text += &format!(" (it was {} to {})", at(before.start), at(before.end));
                }
                if before.mode != r.mode {
                    text += &format!(" (it was {})", before.mode);
                }
                let was = concern_of(before, user);
                let is = concern_of(r, user);
                text += match (was, is) {
                    (Some(Concern::Member), Some(Concern::LockedOut)) => {
                        "; you are no longer on it: new logins by you will be refused while it is in force."
                    }
                    (Some(Concern::Member), None) => "; you are no longer on it.",
                    (_, Some(Concern::Member)) if was != Some(Concern::Member) => {
                        "; you are now on it."
                    }
                    (Some(Concern::LockedOut), None) => "; you may log in while it is in force.",
                    (_, Some(Concern::LockedOut)) => {
                        "; you are not on it: new logins by you will be refused while it is in force."
                    }
                    _ => ".",
                };
                if is == Some(Concern::LockedOut) {
                    text += &clearing;
                }
            } else {
                text.push('.');
            }
            text
        }
        EventKind::Cancelled => format!("{what} was cancelled{by}."),
        EventKind::Lead if locked => format!(
            "{what} starts {} and you are not on it: from then on new logins by you are refused; save your work.{clearing}",
            until(r.start, now),
        ),
        EventKind::Lead => format!("{what} starts {}.", until(r.start, now)),
        EventKind::Start if locked => format!(
            "{what} has started and you are not on it: new logins by you are refused until {}.{clearing}",
            at(r.end)
        ),
        EventKind::Start => format!("{what} has started; it ends at {}.", at(r.end)),
        EventKind::Clear => format!(
            "{what} is in force and you are not on it: your sessions and processes on this host are being ended now."
        ),
        EventKind::EndLead => format!(
            "{what} ends at {} ({}); {extend}.",
            at(r.end),
            until(r.end, now)
        ),
        EventKind::End if locked => format!("{what} has ended; you may log in again."),
        EventKind::End => format!("{what} has ended."),
        EventKind::EndedEarly if locked => {
            format!("{what} was ended early{by}; you may log in again.")
        }
        EventKind::EndedEarly => format!("{what} was ended early{by}."),
    };
    format!("hosthog: {text}")
}

/// Membership alone (exemptions do not change what a change means).
fn concern_of(r: &Reservation, user: &str) -> Option<Concern> {
    concern(r, user, &[])
}

/// The time-driven events already handled, so each is handled at most once.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    keys: HashSet<(ReservationId, EventKind, i64)>,
}

impl Sent {
    /// True the first time `event` is seen (and remembers it); false after.
    /// Changes (which have no key) are always new.
    pub fn first_time(&mut self, event: &Event) -> bool {
        match event.key() {
            Some(key) => self.keys.insert(key),
            None => true,
        }
    }

    /// Forgets events whose instant is before `horizon`, to bound memory.
    pub fn forget_before(&mut self, horizon: i64) {
        self.keys.retain(|(_, _, at)| *at >= horizon);
    }

    /// How many events are remembered.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(id: u64, owner: &str, start: i64, end: i64, mode: Mode) -> Reservation {
        Reservation {
            created: 0,
            updated: 0,
            ..Reservation::new(ReservationId(id), owner, start, end, mode)
        }
    }

    fn kinds(events: &[Event]) -> Vec<(EventKind, i64)> {
        events.iter().map(|e| (e.kind, e.at)).collect()
    }

    #[test]
    fn windows_fire_each_instant_once() {
        let r = res(1, "alice", 1000, 2000, Mode::Exclusive);
        let timing = Timing {
            leads: vec![900, 60],
            clear_grace: Some(30),
            end_leads: vec![600],
        };
        let cur = [r.clone()];
        let mut fired = Vec::new();
        let mut since = 0;
        // Wake at every instant next_instant names.
        while let Some(next) = next_instant(&cur, since, &timing) {
            fired.extend(kinds(&plan(Some(&cur), &cur, since, next, &timing)));
            since = next;
        }
        assert_eq!(
            fired,
            [
                (EventKind::Lead, 100),
                (EventKind::Lead, 940),
                (EventKind::Start, 1000),
                (EventKind::Clear, 1030),
                (EventKind::EndLead, 1400),
                (EventKind::End, 2000)
            ]
        );
    }

    #[test]
    fn a_long_sleep_sends_only_what_still_matters() {
        let r = res(1, "alice", 1000, 2000, Mode::Exclusive);
        let timing = Timing {
            leads: vec![900, 60],
            clear_grace: None,
            end_leads: vec![],
        };
        let one = std::slice::from_ref(&r);
        // Asleep from before both leads to after them: only the last lead.
        assert_eq!(
            kinds(&plan(Some(one), one, 0, 990, &timing)),
            [(EventKind::Lead, 940)]
        );
        // Asleep across the start: the start, late, no lead.
        assert_eq!(
            kinds(&plan(Some(one), one, 0, 1500, &timing)),
            [(EventKind::Start, 1000)]
        );
        // Asleep across the whole slot: only the end.
        assert_eq!(
            kinds(&plan(Some(one), one, 0, 2500, &timing)),
            [(EventKind::End, 2000)]
        );
        // The clock set back: an empty window.
        assert!(plan(Some(one), one, 1500, 1200, &timing).is_empty());
    }

    #[test]
    fn changes_seen_in_the_table() {
        let timing = Timing {
            leads: vec![60],
            clear_grace: None,
            end_leads: vec![],
        };
        let a = res(1, "alice", 1000, 2000, Mode::Exclusive);
        let b = res(2, "bob", 3000, 4000, Mode::Shared);
        let c = res(3, "carol", 100, 1500, Mode::Shared);
        let d = res(4, "dave", 100, 500, Mode::Shared);
        let prev = vec![a.clone(), b.clone(), c.clone(), d.clone()];
        let mut a2 = a.clone();
        a2.end = 2500;
        let e = res(5, "erin", 900, 950, Mode::Exclusive);
        // b cancelled, c released while in force, d pruned after its end,
        // a changed, e new (its lead at 840 is inside the window but the
        // creation message covers it).
        let cur = vec![a2, e];
        let events = plan(Some(&prev), &cur, 799, 900, &timing);
        let got: Vec<(EventKind, u64)> = events
            .iter()
            .map(|e| (e.kind, e.reservation.id.0))
            .collect();
        assert_eq!(
            got,
            [
                (EventKind::End, 4),
                (EventKind::Created, 5),
                (EventKind::Changed, 1),
                (EventKind::Cancelled, 2),
                (EventKind::Start, 5),
                (EventKind::EndedEarly, 3),
            ]
        );
        assert_eq!(events[2].before.as_ref().unwrap().end, 2000);
        // The first look after a start counts nothing as a change.
        assert!(plan(None, &prev, 800, 800, &timing).is_empty());
        assert_eq!(
            kinds(&plan(None, &prev, 930, 940, &timing)),
            [(EventKind::Lead, 940)]
        );
    }

    #[test]
    fn a_reservation_made_in_force_starts_and_one_made_soon_gets_its_lead_now() {
        let timing = Timing {
            leads: vec![900, 60],
            clear_grace: Some(120),
            end_leads: vec![900],
        };
        let kinds_ids = |events: Vec<Event>| -> Vec<(EventKind, i64, u64)> {
            events
                .iter()
                .map(|e| (e.kind, e.at, e.reservation.id.0))
                .collect()
        };
        // Made while already in force: created and started (pause_timers
        // and the start's other work hang on the start event).
        let now_in_force = res(1, "alice", 990, 5000, Mode::Exclusive);
        // Starting in 30 s, sooner than both leads: one lead now, no other.
        let in_30s = res(2, "bob", 1030, 5000, Mode::Exclusive);
        // Starting in 5 min: one lead now, the 1-minute lead later.
        let in_5min = res(3, "carol", 1300, 5000, Mode::Exclusive);
        // Far ahead, or shared: nothing but the creation now.
        let later = res(4, "dave", 9000, 9999, Mode::Exclusive);
        let shared = res(5, "erin", 1030, 5000, Mode::Shared);
        let cur = vec![
            now_in_force.clone(),
            in_30s.clone(),
            in_5min.clone(),
            later.clone(),
            shared.clone(),
        ];
        assert_eq!(
            kinds_ids(plan(Some(&[]), &cur, 999, 1000, &timing)),
            [
                (EventKind::Start, 990, 1),
                (EventKind::Created, 1000, 1),
                (EventKind::Created, 1000, 2),
                (EventKind::Created, 1000, 3),
                (EventKind::Created, 1000, 4),
                (EventKind::Created, 1000, 5),
                (EventKind::Lead, 1000, 2),
                (EventKind::Lead, 1000, 3),
            ]
        );
        // Afterwards, the wakes next_instant names, until the last end.
        let mut fired = Vec::new();
        let mut since = 1000;
        while let Some(next) = next_instant(&cur, since, &timing) {
            fired.extend(kinds_ids(plan(Some(&cur), &cur, since, next, &timing)));
            since = next;
        }
        let of = |id: u64| -> Vec<(EventKind, i64)> {
            fired
                .iter()
                .filter(|(_, _, i)| *i == id)
                .map(|(k, at, _)| (*k, *at))
                .collect()
        };
        assert_eq!(
            of(1),
            [
                (EventKind::Clear, 1110),
                (EventKind::EndLead, 4100),
                (EventKind::End, 5000)
            ]
        );
        assert_eq!(
            of(2),
            [
                (EventKind::Start, 1030),
                (EventKind::Clear, 1150),
                (EventKind::EndLead, 4100),
                (EventKind::End, 5000)
            ]
        );
        assert_eq!(of(3)[0], (EventKind::Lead, 1240));
        assert_eq!(of(4)[0], (EventKind::Lead, 8100));
        assert_eq!(of(4)[1], (EventKind::Lead, 8940));
        assert_eq!(of(5)[0], (EventKind::Start, 1030));
        // Moved to start sooner than the first lead: a lead now.
        let mut moved = later.clone();
        moved.start = 1200;
        assert_eq!(
            kinds_ids(plan(
                Some(std::slice::from_ref(&later)),
                &[moved.clone()],
                1000,
                1001,
                &timing
            )),
            [(EventKind::Changed, 1001, 4), (EventKind::Lead, 1001, 4)]
        );
        // Only its comment changed: no new lead.
        let mut commented = moved.clone();
        commented.comment = "x".into();
        assert_eq!(
            kinds_ids(plan(Some(&[moved]), &[commented], 1001, 1002, &timing)),
            [(EventKind::Changed, 1002, 4)]
        );
    }

    #[test]
    fn the_holder_and_co_users_are_told_how_to_extend() {
        let mut r = res(0x1234_abcd_0000_0000, "alice", 0, 4500, Mode::Shared);
        r.with = vec!["bob".into()];
        let e = Event {
            kind: EventKind::EndLead,
            at: 3600,
            reservation: r,
            before: None,
        };
        let present: Vec<String> = ["alice", "bob", "carol"].map(String::from).to_vec();
        assert_eq!(
            recipients(&e, &present, &[], None),
            [
                ("alice".to_string(), Concern::Member),
                ("bob".to_string(), Concern::Member)
            ]
        );
        let tz = TimeZone::UTC;
        assert_eq!(
            message(&e, "alice", Concern::Member, None, 3600, &tz, Some(60)),
            "hosthog: your shared reservation 1234abcd (00:00 UTC to 01:15 UTC) ends at 01:15:00 UTC \
             (in 15 min); to keep it longer: hosthog extend 1234abcd --for 1h."
        );
        assert_eq!(
            message(&e, "bob", Concern::Member, None, 3601, &tz, None),
            "hosthog: alice's shared reservation 1234abcd (00:00 UTC to 01:15 UTC) ends at 01:15:00 UTC \
             (in 14 min 59 s); to keep it longer: hosthog extend 1234abcd --for 1h."
        );
    }

    #[test]
    fn creation_says_what_happens_when_to_the_second() {
        let r = res(0x1234_abcd_0000_0000, "alice", 1030, 4600, Mode::Exclusive);
        let e = Event {
            kind: EventKind::Created,
            at: 1000,
            reservation: r,
            before: None,
        };
        let tz = TimeZone::UTC;
        assert_eq!(
            message(
                &e,
                "bob",
                Concern::LockedOut,
                Some("alice"),
                1000,
                &tz,
                Some(120)
            ),
            "hosthog: alice's exclusive reservation 1234abcd (00:17 UTC to 01:16 UTC) was made and you are \
             not on it: new logins by you will be refused from 00:17:10 UTC (in 30 s) until 01:16:40 UTC. \
             Your sessions and processes on this host will be ended at 00:19:10 UTC (in 2 min 30 s): save \
             your work and log out before then."
        );
        assert_eq!(
            message(
                &e,
                "carol",
                Concern::Member,
                Some("alice"),
                1000,
                &tz,
                Some(120)
            ),
            "hosthog: alice's exclusive reservation 1234abcd (00:17 UTC to 01:16 UTC) was made; you are on \
             it. It starts at 00:17:10 UTC (in 30 s) and ends at 01:16:40 UTC."
        );
    }

    #[test]
    fn sent_remembers_time_events_only() {
        let r = res(1, "alice", 1000, 2000, Mode::Exclusive);
        let start = Event {
            kind: EventKind::Start,
            at: 1000,
            reservation: r.clone(),
            before: None,
        };
        let changed = Event {
            kind: EventKind::Changed,
            ..start.clone()
        };
        let mut sent = Sent::default();
        assert!(sent.first_time(&start));
        assert!(!sent.first_time(&start));
        assert!(sent.first_time(&changed));
        assert!(sent.first_time(&changed));
        assert_eq!(sent.len(), 1);
        sent.forget_before(1001);
        assert!(sent.is_empty());
    }

    #[test]
    fn who_is_concerned() {
        let mut r = res(1, "alice", 1000, 2000, Mode::Exclusive);
        r.with = vec!["bob".into()];
        let present: Vec<String> = ["alice", "bob", "carol", "erin", "root", "carol"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let exempt = vec!["erin".to_string()];
        let event = |kind, r: &Reservation| Event {
            kind,
            at: 1000,
            reservation: r.clone(),
            before: None,
        };
        assert_eq!(
            recipients(&event(EventKind::Start, &r), &present, &exempt, None),
            [
                ("alice".to_string(), Concern::Member),
                ("bob".to_string(), Concern::Member),
                ("carol".to_string(), Concern::LockedOut)
            ]
        );
        // The actor of a change is not told about it.
        assert_eq!(
            recipients(
                &event(EventKind::Created, &r),
                &present,
                &exempt,
                Some("alice")
            )
            .len(),
            2
        );
        // Clearing concerns only those locked out.
        assert_eq!(
            recipients(&event(EventKind::Clear, &r), &present, &exempt, None),
            [("carol".to_string(), Concern::LockedOut)]
        );
        // A shared reservation concerns its members only.
        r.mode = Mode::Shared;
        assert_eq!(
            recipients(&event(EventKind::Start, &r), &present, &exempt, None).len(),
            2
        );
        // Turning shared into exclusive concerns carol.
        let mut after = r.clone();
        after.mode = Mode::Exclusive;
        let change = Event {
            kind: EventKind::Changed,
            at: 500,
            reservation: after,
            before: Some(r.clone()),
        };
        let got = recipients(&change, &present, &exempt, Some("alice"));
        assert_eq!(
            got,
            [
                ("bob".to_string(), Concern::Member),
                ("carol".to_string(), Concern::LockedOut)
            ]
        );
        let text = message(
            &change,
            "carol",
            Concern::LockedOut,
            Some("alice"),
            500,
            &TimeZone::UTC,
            None,
        );
        assert!(text.contains("(it was shared)"), "{text}");
        assert!(text.contains("you are not on it"), "{text}");
    }

    #[test]
    fn messages_are_one_sanitized_line() {
        let mut r = res(0xabcd_0000_0000_0000, "alice", 3600, 7200, Mode::Exclusive);
        r.comment = "evil\u{1b}[2J\nline".into();
        let tz = TimeZone::UTC;
        for kind in [
            EventKind::Created,
            EventKind::Changed,
            EventKind::Cancelled,
            EventKind::Lead,
            EventKind::Start,
            EventKind::Clear,
            EventKind::End,
            EventKind::EndedEarly,
        ] {
            for concern in [Concern::Member, Concern::LockedOut] {
                let e = Event {
                    kind,
                    at: 3000,
                    reservation: r.clone(),
                    before: Some(res(r.id.0, "alice", 3000, 7200, Mode::Shared)),
                };
                let text = message(&e, "bob", concern, Some("ev\u{7}il"), 3000, &tz, Some(300));
                assert!(text.starts_with("hosthog: "), "{text}");
                assert!(!text.chars().any(libhosthog::is_unsafe), "{text:?}");
                assert!(text.contains("abcd0000"), "{text}");
            }
        }
        let lead = Event {
            kind: EventKind::Lead,
            at: 2700,
            reservation: r.clone(),
            before: None,
        };
        let text = message(&lead, "bob", Concern::LockedOut, None, 2700, &tz, Some(300));
        assert_eq!(
            text,
            "hosthog: alice's exclusive reservation abcd0000 (01:00 UTC to 02:00 UTC, \"evil?[2J?line\") \
             starts in 15 min and you are not on it: from then on new logins by you are refused; \
             save your work. Your sessions and processes on this host will be ended at 01:05:00 UTC \
             (in 20 min): save your work and log out before then."
        );
        let text = message(&lead, "alice", Concern::Member, None, 3590, &tz, Some(300));
        assert!(
            text.starts_with("hosthog: your exclusive reservation abcd0000"),
            "{text}"
        );
        assert!(text.ends_with(") starts in 10 s."), "{text}");
    }
}
