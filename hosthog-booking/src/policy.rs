//! Who may change what, and what a valid change is: the rules hosthogd and
//! `hosthog --state-dir` apply to every request, as pure functions.
//!
//! [`apply`] takes the current [`State`], the caller (as the kernel
//! identified them), the operation and a [`Context`] (the time, the limits,
//! a fresh id, a user lookup) and either changes the state and says what
//! changed, or refuses with a [`Failure`] and leaves the state untouched.
//! [`check`] explains what the PAM module would decide.

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::protocol::{
    ChangeArgs, CheckArgs, CheckReason, CheckReport, Failure, FailureKind, Forced, IdArgs,
    ListArgs, NoticeArgs, NoticeIdArgs, Op, Reply, ReserveArgs, ShareArgs,
};
use crate::rules::conflicts;
use libhosthog::format_instant;
use libhosthog::sanitize;
use libhosthog::{Allowed, Booking, Calendar, Decision, Who, decide, describe};
use libhosthog::{Notice, Reservation, ReservationId, State, validate_user_name};

/// How far in the past a requested start may lie and still mean "now": the
/// client read its clock a moment before the daemon did.
pub const START_SLACK: i64 = 300;

/// Limits from the configuration. `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Longest reservation, in seconds.
    pub max_duration: Option<i64>,
    /// Latest start, in seconds from now.
    pub max_ahead: Option<i64>,
    /// Most reservations one user may own that have not ended.
    pub max_open_per_user: Option<usize>,
    /// Most exclusive time one user may hold from now on, in seconds: the
    /// sum over their exclusive reservations that have not ended of what
    /// is left of each (so back-to-back slots cannot add up to the whole
    /// booking window).
    pub max_exclusive: Option<i64>,
}

/// How much exclusive time `owner` holds from `now` on, leaving out the
/// reservation `except` (the one being changed).
pub fn exclusive_held(state: &State, owner: &str, except: ReservationId, now: i64) -> i64 {
    state
        .reservations
        .iter()
        .filter(|r| r.owner == owner && r.mode == libhosthog::Mode::Exclusive && r.id != except)
        .map(|r| r.end.saturating_sub(r.start.max(now)).max(0))
        .fold(0i64, i64::saturating_add)
}

/// The caller, as the kernel identified them (never as they claimed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub name: String,
    /// root or a member of the configured admin group.
    pub admin: bool,
}

/// Everything [`apply`] needs besides the state and the request.
pub struct Context<'a> {
    /// The time of the request (UTC seconds), read once by the entry point.
    pub now: i64,
    /// The host's time zone, for messages.
    pub tz: &'a TimeZone,
    pub limits: &'a Limits,
    /// A fresh random id for a new reservation.
    pub new_id: u64,
    /// Whether a user name exists on this host (NSS, in the daemon).
    pub user_exists: &'a dyn Fn(&str) -> bool,
    /// Who the admins are, for refusals: [`HOST_ADMINS`] on one host,
    /// [`crate::fleet::FLEET_ADMINS`] on the fleet calendar.
    pub admins: &'a str,
}

/// Who may do what only admins may, on a single host.
pub const HOST_ADMINS: &str = "root or in the admin group";

/// One change, for the audit log: what it was and the record before and
/// after (absent for creation and removal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub action: String,
    pub before: Option<Record>,
    pub after: Option<Record>,
    /// Conflicting reservations an admin overrode with `force`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<ReservationId>,
    /// Limits an admin overrode with `force`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits_overridden: Vec<String>,
}

/// A changed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Record {
    Reservation(Reservation),
    Notice(Notice),
    Exempt {
        users: Vec<String>,
        groups: Vec<String>,
    },
}

fn fail(kind: FailureKind, message: impl Into<String>) -> Failure {
    Failure::new(kind, message)
}

/// Finds the reservation whose id starts with `prefix` (hex digits, any
/// case; the 8 digits `hosthog list` shows are enough on one host).
///
/// # Errors
/// [`FailureKind::Invalid`] for something that is not hex,
/// [`FailureKind::NotFound`] when nothing matches and
/// [`FailureKind::Ambiguous`] when more than one does (naming each, with
/// its owner and times, and carrying them in [`Failure::conflicts`]).
pub fn find(state: &State, prefix: &str, ctx: &Context<'_>) -> Result<usize, Failure> {
    let p = prefix.to_ascii_lowercase();
    if p.is_empty() || p.len() > 16 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(fail(
            FailureKind::Invalid,
            format!(
                "{} is not a reservation id (hex digits, as shown by hosthog list)",
                quote(prefix)
            ),
        ));
    }
    let found: Vec<usize> = state
        .reservations
        .iter()
        .enumerate()
        .filter(|(_, r)| r.id.to_string().starts_with(&p))
        .map(|(i, _)| i)
        .collect();
    match found[..] {
        [i] => Ok(i),
        [] => Err(fail(
            FailureKind::NotFound,
            format!("there is no reservation {p} (see hosthog list)"),
        )),
        _ => {
            let mut candidates: Vec<&Reservation> =
                found.iter().map(|&i| &state.reservations[i]).collect();
            candidates.sort_by_key(|r| (r.start, r.id));
            let named: Vec<String> = candidates
                .iter()
                .map(|r| {
                    format!(
                        "{} ({}, {} to {})",
                        r.id,
                        sanitize(&r.owner),
                        format_instant(r.start, ctx.now, ctx.tz),
                        format_instant(r.end, ctx.now, ctx.tz)
                    )
                })
                .collect();
            let mut failure = fail(
                FailureKind::Ambiguous,
                format!(
                    "{p} names {} reservations: {}; give more digits",
                    candidates.len(),
                    named.join(", ")
                ),
            );
            failure.conflicts = candidates.into_iter().cloned().collect();
            Err(failure)
        }
    }
}

/// Quotes user input for a message: escaped and cut short.
fn quote(s: &str) -> String {
    let escaped: String = s.escape_debug().take(60).collect();
    if s.chars().count() > 60 {
        format!("\"{escaped}…\"")
    } else {
        format!("\"{escaped}\"")
    }
}

fn check_user(name: &str, ctx: &Context<'_>) -> Result<(), Failure> {
    validate_user_name(name).map_err(Failure::from)?;
    if (ctx.user_exists)(name) {
        Ok(())
    } else {
        Err(fail(
            FailureKind::Invalid,
            format!("there is no user {name} on this host"),
        ))
    }
}

fn may_change(r: &Reservation, caller: &Caller, what: &str) -> Result<(), Failure> {
    if caller.admin || r.is_member(&caller.name) {
        Ok(())
    } else {
        Err(fail(
            FailureKind::Denied,
            format!(
                "you ({}) may not {what} {}'s reservation {}: only its owner, its co-users and admins may",
                caller.name,
                sanitize(&r.owner),
                r.id.short()
            ),
        ))
    }
}

/// Checks a new or changed reservation against the limits and the booking
/// rule. Admins may pass `force` to override both; what they overrode is
/// returned for the audit log.
fn admit(
    state: &State,
    candidate: &Reservation,
    caller: &Caller,
    force: bool,
    ctx: &Context<'_>,
    is_new: bool,
) -> Result<(Vec<Reservation>, Vec<String>), Failure> {
    if force && !caller.admin {
        return Err(fail(
            FailureKind::Denied,
            "only admins may use --force to override conflicts and limits",
        ));
    }
    candidate.validate().map_err(Failure::from)?;
    let mut broken = Vec::new();
    if let Some(max) = ctx.limits.max_duration {
        let len = candidate.end - candidate.start;
        if len > max {
            broken.push(format!(
                "the reservation is {}; the longest allowed is {}",
                span(len),
                span(max)
            ));
        }
    }
    if let Some(max) = ctx.limits.max_ahead
        && candidate.start - ctx.now > max
    {
        broken.push(format!(
            "the reservation starts more than {} ahead; the latest start allowed is {}",
            span(max),
            format_instant(ctx.now.saturating_add(max), ctx.now, ctx.tz)
        ));
    }
    if let Some(max) = ctx.limits.max_open_per_user
        && is_new
    {
        let open = state
            .reservations
            .iter()
            .filter(|r| r.owner == candidate.owner && r.end > ctx.now)
            .count();
        if open >= max {
            broken.push(format!(
                "{} already has {open} open reservations; at most {max} are allowed",
                candidate.owner
            ));
        }
    }
    if let Some(max) = ctx.limits.max_exclusive
        && candidate.mode == libhosthog::Mode::Exclusive
    {
        let held = exclusive_held(state, &candidate.owner, candidate.id, ctx.now);
        let asked = candidate
            .end
            .saturating_sub(candidate.start.max(ctx.now))
            .max(0);
        if held.saturating_add(asked) > max {
            broken.push(format!(
                "{} would hold the host exclusively for {} from now on ({} already reserved, \
                 {} more asked); at most {} of exclusive time per user is allowed (max_exclusive)",
                candidate.owner,
                span(held.saturating_add(asked)),
                span(held),
                span(asked),
                span(max)
            ));
        }
    }
    if let Some(first) = broken.first()
        && !force
    {
        return Err(fail(FailureKind::Limit, first.clone()));
    }
    let found = conflicts(&state.reservations, candidate);
    if !found.is_empty() && !force {
        let list: Vec<String> = found
            .iter()
            .map(|r| describe::reservation(r, Some(&caller.name), ctx.now, ctx.tz))
            .collect();
        let mut failure = fail(
            FailureKind::Conflict,
            format!(
                "this {} reservation conflicts with {}",
                candidate.mode,
                list.join("; ")
            ),
        );
        failure.conflicts = found.into_iter().cloned().collect();
        return Err(failure);
    }
    Ok((found.into_iter().cloned().collect(), broken))
}

/// The reply to a reservation made or changed: with what `force` overrode,
/// if it overrode anything.
fn admitted(r: &Reservation, overridden: &[Reservation], limits: &[String]) -> Reply {
    if overridden.is_empty() && limits.is_empty() {
        Reply::Reservation(r.clone())
    } else {
        Reply::Forced(Forced {
            reservation: r.clone(),
            overridden: overridden.to_vec(),
            limits_overridden: limits.to_vec(),
        })
    }
}

/// A duration for messages: `3h`, `1d 2h`, `45m`.
pub fn span(seconds: i64) -> String {
    let d = seconds / 86_400;
    let h = seconds % 86_400 / 3600;
    let m = seconds % 3600 / 60;
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 || parts.is_empty() {
        parts.push(format!("{m}m"));
    }
    parts.join(" ")
}

/// Applies one operation to `state` for `caller`.
///
/// Reads (`list`, `show`) return a reply and no change; writes return the
/// reply and the [`Change`] to audit. `check`, `whoami` and the exemption
/// operations are not table edits and are refused here (see [`check`]).
///
/// # Errors
/// A [`Failure`] saying why; `state` is then unchanged.
pub fn apply(
    state: &mut State,
    caller: &Caller,
    op: &Op,
    ctx: &Context<'_>,
) -> Result<(Reply, Option<Change>), Failure> {
    match op {
        Op::Reserve(args) => reserve(state, caller, args, ctx),
        Op::Change(args) => change(state, caller, args, ctx),
        Op::Share(args) => share(state, caller, args, ctx, true),
        Op::Unshare(args) => share(state, caller, args, ctx, false),
        Op::Release(args) => release(state, caller, args, ctx),
        Op::Cancel(args) => cancel(state, caller, args, ctx),
        Op::List(args) => Ok((Reply::Reservations(list(state, args, ctx.now)), None)),
        Op::Show(IdArgs { id }) => {
            let i = find(state, id, ctx)?;
            Ok((Reply::Reservation(state.reservations[i].clone()), None))
        }
        Op::NoticeAdd(args) => notice_add(state, caller, args, ctx),
        Op::NoticeList => {
            let mut notices = state.notices.clone();
            notices.sort_by_key(|n| (n.start, n.id));
            Ok((Reply::Notices(notices), None))
        }
        Op::NoticeRemove(NoticeIdArgs { id }) => {
            require_admin_of(caller, "remove notices", ctx.admins)?;
            let i = state
                .notices
                .iter()
                .position(|n| n.id == *id)
                .ok_or_else(|| fail(FailureKind::NotFound, format!("there is no notice {id}")))?;
            let removed = state.notices.remove(i);
            Ok((
                Reply::Notice(removed.clone()),
                Some(Change {
                    action: "notice_remove".into(),
                    before: Some(Record::Notice(removed)),
                    after: None,
                    overridden: vec![],
                    limits_overridden: vec![],
                }),
            ))
        }
        Op::Whoami
        | Op::Check(_)
        | Op::ExemptAdd(_)
        | Op::ExemptList
        | Op::ExemptRemove(_)
        | Op::Who
        | Op::Motd
        | Op::Post(_)
        | Op::History(_)
        | Op::Hosts
        | Op::FleetList(_)
        | Op::NextFree(_) => Err(fail(
            FailureKind::Internal,
            format!("{} is not a table operation", op.name()),
        )),
    }
}

/// Refuses non-admins.
///
/// # Errors
/// [`FailureKind::Denied`] naming what only admins may do.
pub fn require_admin(caller: &Caller, what: &str) -> Result<(), Failure> {
    require_admin_of(caller, what, HOST_ADMINS)
}

/// Refuses non-admins, saying who the admins are (`admins`: "root or in
/// the admin group").
///
/// # Errors
/// [`FailureKind::Denied`] naming what only admins may do.
pub fn require_admin_of(caller: &Caller, what: &str, admins: &str) -> Result<(), Failure> {
    if caller.admin {
        Ok(())
    } else {
        Err(fail(
            FailureKind::Denied,
            format!(
                "only admins may {what}; you ({}) are not {admins}",
                caller.name
            ),
        ))
    }
}

fn list(state: &State, args: &ListArgs, now: i64) -> Vec<Reservation> {
    let mut out: Vec<Reservation> = state
        .reservations
        .iter()
        .filter(|r| args.all || r.end > now)
        .cloned()
        .collect();
    out.sort_by_key(|r| (r.start, r.id));
    out
}

fn reserve(
    state: &mut State,
    caller: &Caller,
    args: &ReserveArgs,
    ctx: &Context<'_>,
) -> Result<(Reply, Option<Change>), Failure> {
    let owner = match &args.owner {
        Some(owner) if owner != &caller.name => {
            require_admin_of(caller, "reserve for another user (--owner)", ctx.admins)?;
            check_user(owner, ctx)?;
            owner.clone()
        }
        _ => caller.name.clone(),
    };
    for user in &args.with {
        check_user(user, ctx)?;
    }
    let start = checked_start(args.start, ctx)?;
    if args.end <= start {
        return Err(fail(
            FailureKind::Invalid,
            format!(
                "the reservation must end after it starts ({} is not after {})",
                format_instant(args.end, ctx.now, ctx.tz),
                format_instant(start, ctx.now, ctx.tz)
            ),
        ));
    }
    let mut id = ctx.new_id;
    while id == 0 || state.reservation(ReservationId(id)).is_some() {
        id = id.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    }
    let candidate = Reservation {
        id: ReservationId(id),
        owner,
        with: args.with.clone(),
        start,
        end: args.end,
        mode: args.mode,
        comment: args.comment.clone(),
        created: ctx.now,
        updated: ctx.now,
    };
    let (overridden, limits_overridden) = admit(state, &candidate, caller, args.force, ctx, true)?;
    state.reservations.push(candidate.clone());
    Ok((
        admitted(&candidate, &overridden, &limits_overridden),
        Some(Change {
            action: "reserve".into(),
            before: None,
            after: Some(Record::Reservation(candidate)),
            overridden: overridden.iter().map(|r| r.id).collect(),
            limits_overridden,
        }),
    ))
}

/// A start slightly in the past (clock skew between reading the time in
/// the client and in the daemon) means now; further back is refused.
fn checked_start(start: i64, ctx: &Context<'_>) -> Result<i64, Failure> {
    if start >= ctx.now {
        Ok(start)
    } else if start >= ctx.now - START_SLACK {
        Ok(ctx.now)
    } else {
        Err(fail(
            FailureKind::Invalid,
            format!(
                "the start, {}, is in the past",
                format_instant(start, ctx.now, ctx.tz)
            ),
        ))
    }
}

fn change(
    state: &mut State,
    caller: &Caller,
    args: &ChangeArgs,
    ctx: &Context<'_>,
) -> Result<(Reply, Option<Change>), Failure> {
    let i = find(state, &args.id, ctx)?;
    let before = state.reservations[i].clone();
    may_change(&before, caller, "change")?;
    let mut after = before.clone();
    if let Some(start) = args.start
        && start != before.start
    {
        if before.start <= ctx.now {
            return Err(fail(
                FailureKind::Invalid,
                "the reservation has already started; its start cannot move (change its end instead)",
            ));
        }
        after.start = checked_start(start, ctx)?;
    }
    if let Some(end) = args.end {
        after.end = end;
    }
    if let Some(by) = args.extend_by {
        after.end = after
            .end
            .checked_add(by)
            .ok_or_else(|| fail(FailureKind::Invalid, "the new end is out of range"))?;
    }
    if let Some(mode) = args.mode {
        after.mode = mode;
    }
    if let Some(comment) = &args.comment {
        after.comment = comment.clone();
    }
    if after.end <= after.start {
        return Err(fail(
            FailureKind::Invalid,
            format!(
                "the reservation must end after it starts ({} is not after {})",
                format_instant(after.end, ctx.now, ctx.tz),
                format_instant(after.start, ctx.now, ctx.tz)
            ),
        ));
    }
    if after.end <= ctx.now {
        return Err(fail(
            FailureKind::Invalid,
            format!(
                "the new end, {}, is not in the future; to end the reservation now use hosthog release {}",
                format_instant(after.end, ctx.now, ctx.tz),
                after.id.short()
            ),
        ));
    }
    if after == before {
        return Err(fail(FailureKind::Invalid, "nothing to change"));
    }
    after.updated = ctx.now;
    let (overridden, limits_overridden) = admit(state, &after, caller, args.force, ctx, false)?;
    state.reservations[i] = after.clone();
    Ok((
        admitted(&after, &overridden, &limits_overridden),
        Some(Change {
            action: "change".into(),
            before: Some(Record::Reservation(before)),
            after: Some(Record::Reservation(after)),
            overridden: overridden.iter().map(|r| r.id).collect(),
            limits_overridden,
        }),
    ))
}

fn share(
    state: &mut State,
    caller: &Caller,
    args: &ShareArgs,
    ctx: &Context<'_>,
    add: bool,
) -> Result<(Reply, Option<Change>), Failure> {
    let i = find(state, &args.id, ctx)?;
    let before = state.reservations[i].clone();
    may_change(&before, caller, if add { "share" } else { "unshare" })?;
    if args.users.is_empty() {
        return Err(fail(FailureKind::Invalid, "name at least one user"));
    }
    let mut after = before.clone();
    for user in &args.users {
        validate_user_name(user).map_err(Failure::from)?;
        if add {
            check_user(user, ctx)?;
            if after.is_member(user) {
                return Err(fail(
                    FailureKind::Invalid,
                    format!("{user} is already on reservation {}", before.id.short()),
                ));
            }
            after.with.push(user.clone());
        } else {
            let Some(at) = after.with.iter().position(|u| u == user) else {
                return Err(fail(
                    FailureKind::Invalid,
                    format!(
                        "{user} is not a co-user of reservation {}",
                        before.id.short()
                    ),
                ));
            };
            after.with.remove(at);
        }
    }
    after.updated = ctx.now;
    after.validate().map_err(Failure::from)?;
    state.reservations[i] = after.clone();
    Ok((
        Reply::Reservation(after.clone()),
        Some(Change {
            action: if add { "share" } else { "unshare" }.into(),
            before: Some(Record::Reservation(before)),
            after: Some(Record::Reservation(after)),
            overridden: vec![],
            limits_overridden: vec![],
        }),
    ))
}

fn release(
    state: &mut State,
    caller: &Caller,
    args: &IdArgs,
    ctx: &Context<'_>,
) -> Result<(Reply, Option<Change>), Failure> {
    let i = find(state, &args.id, ctx)?;
    let before = state.reservations[i].clone();
    may_change(&before, caller, "release")?;
    // Ended now: the writer prunes it from the table; the audit log keeps
    // the history.
    // One that has not started is removed as it was (the reply says so);
    // one in force ends now.
    let removed = state.reservations.remove(i);
    let mut after = removed.clone();
    if after.start < ctx.now {
        after.end = ctx.now;
        after.updated = ctx.now;
    }
    Ok((
        Reply::Removed(after),
        Some(Change {
            action: "release".into(),
            before: Some(Record::Reservation(before)),
            after: None,
            overridden: vec![],
            limits_overridden: vec![],
        }),
    ))
}

fn cancel(
    state: &mut State,
    caller: &Caller,
    args: &IdArgs,
    ctx: &Context<'_>,
) -> Result<(Reply, Option<Change>), Failure> {
    let i = find(state, &args.id, ctx)?;
    if !caller.admin {
        let r = &state.reservations[i];
        let hint = if r.is_member(&caller.name) {
            format!(
                " (to end your own reservation use hosthog release {})",
                r.id.short()
            )
        } else {
            String::new()
        };
        return Err(fail(
            FailureKind::Denied,
            format!(
                "only admins may cancel reservations; you ({}) are not {}{hint}",
                caller.name, ctx.admins
            ),
        ));
    }
    let removed = state.reservations.remove(i);
    Ok((
        Reply::Removed(removed.clone()),
        Some(Change {
            action: "cancel".into(),
            before: Some(Record::Reservation(removed)),
            after: None,
            overridden: vec![],
            limits_overridden: vec![],
        }),
    ))
}

fn notice_add(
    state: &mut State,
    caller: &Caller,
    args: &NoticeArgs,
    ctx: &Context<'_>,
) -> Result<(Reply, Option<Change>), Failure> {
    require_admin_of(caller, "post notices", ctx.admins)?;
    let start = args.start.unwrap_or(ctx.now);
    let notice = Notice {
        id: state.notices.iter().map(|n| n.id).max().unwrap_or(0) + 1,
        author: caller.name.clone(),
        text: args.text.clone(),
        start,
        end: args.end.unwrap_or(i64::MAX),
        created: ctx.now,
    };
    notice.validate().map_err(Failure::from)?;
    if notice.end <= ctx.now {
        return Err(fail(
            FailureKind::Invalid,
            "the notice would end in the past",
        ));
    }
    if state.notices.len() >= libhosthog::limits::MAX_NOTICES {
        return Err(fail(
            FailureKind::Limit,
            format!(
                "at most {} notices may be posted at once",
                libhosthog::limits::MAX_NOTICES
            ),
        ));
    }
    state.notices.push(notice.clone());
    Ok((
        Reply::Notice(notice.clone()),
        Some(Change {
            action: "notice_add".into(),
            before: None,
            after: Some(Record::Notice(notice)),
            overridden: vec![],
            limits_overridden: vec![],
        }),
    ))
}

/// Explains what the PAM module would decide for `args.user` at `args.at`
/// (or `now`) on `calendar` (the table file, or the owned model), in `tz`.
///
/// # Errors
/// [`FailureKind::Invalid`] for a malformed user name.
pub fn check(
    calendar: &impl Calendar,
    args: &CheckArgs,
    now: i64,
    tz: &TimeZone,
) -> Result<CheckReport, Failure> {
    validate_user_name(&args.user).map_err(Failure::from)?;
    let at = args.at.unwrap_or(now);
    let who = Who {
        user: &args.user,
        service: &args.service,
        ..Who::default()
    };
    let decision = decide(calendar, &who, at);
    let user = sanitize(&args.user);
    let when = if at == now {
        "now".to_string()
    } else {
        format!("at {}", format_instant(at, now, tz))
    };
    let may = format!("{user} may log in {when}");
    let (reason, reservation) = match &decision {
        Decision::Allow(Allowed::Root) => (CheckReason::Root, None),
        Decision::Allow(Allowed::Exempt) => (CheckReason::Exempt, None),
        Decision::Allow(Allowed::NoReservation) => (CheckReason::NoReservation, None),
        Decision::Allow(Allowed::Holder(r)) => (CheckReason::Holder, Some(r.to_reservation())),
        Decision::Allow(Allowed::CoUser(r)) => (CheckReason::CoUser, Some(r.to_reservation())),
        Decision::Allow(Allowed::Shared(r)) => (CheckReason::Shared, Some(r.to_reservation())),
        Decision::Deny(d) => (CheckReason::Denied, Some(d.reservation.to_reservation())),
    };
    let described = || {
        reservation
            .as_ref()
            .map(|r| describe::reservation(r, None, now, tz))
            .unwrap_or_default()
    };
    let explanation = match (&decision, reason) {
        (Decision::Deny(denial), _) => format!(
            "{user} would be refused {when}:\n{}",
            denial.message(tz, now)
        ),
        (_, CheckReason::Root) => format!("{may}: root is never locked out."),
        (_, CheckReason::Exempt) => format!("{may}: {user} is on the exemption list."),
        (_, CheckReason::Holder) => format!("{may}: {user} holds {}.", described()),
        (_, CheckReason::CoUser) => format!("{may}: {user} is a co-user of {}.", described()),
        (_, CheckReason::Shared) => format!(
            "{may}: only shared reservations apply, such as {}.",
            described()
        ),
        (_, CheckReason::NoReservation | CheckReason::Denied) => {
            format!("{may}: no exclusive reservation applies.")
        }
    };
    let allowed = !decision.is_deny();
    Ok(CheckReport {
        user: args.user.clone(),
        service: args.service.clone(),
        at,
        allowed,
        reason,
        reservation,
        explanation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use libhosthog::Mode;

    const NOW: i64 = 1_800_000_000;

    fn caller(name: &str, admin: bool) -> Caller {
        Caller {
            uid: 1000,
            name: name.into(),
            admin,
        }
    }

    fn exists(name: &str) -> bool {
        ["alice", "bob", "carol", "root"].contains(&name)
    }

    static UTC: TimeZone = TimeZone::UTC;

    fn ctx<'a>(limits: &'a Limits, id: u64) -> Context<'a> {
        Context {
            now: NOW,
            tz: &UTC,
            limits,
            new_id: id,
            user_exists: &exists,
            admins: HOST_ADMINS,
        }
    }

    fn reserve_op(start: i64, end: i64, mode: Mode) -> Op {
        Op::Reserve(ReserveArgs {
            mode,
            start,
            end,
            with: vec![],
            comment: "work".into(),
            owner: None,
            force: false,
            hosts: vec![],
        })
    }

    #[test]
    fn owners_co_users_and_admins() {
        let limits = Limits::default();
        let mut state = State::default();
        let alice = caller("alice", false);
        let bob = caller("bob", false);
        let admin = caller("root", true);
        let op = reserve_op(NOW, NOW + 3600, Mode::Exclusive);
        let (reply, change) = apply(
            &mut state,
            &alice,
            &op,
            &ctx(&limits, 0xaa00_0000_0000_0001),
        )
        .unwrap();
        assert!(matches!(reply, Reply::Reservation(_)));
        assert!(change.is_some());
        let id = "aa000000".to_string();

        let before = state.clone();
        for op in [
            Op::Release(IdArgs { id: id.clone() }),
            Op::Cancel(IdArgs { id: id.clone() }),
            Op::Change(ChangeArgs {
                id: id.clone(),
                end: Some(NOW + 7200),
                ..ChangeArgs::default()
            }),
            Op::Share(ShareArgs {
                id: id.clone(),
                users: vec!["bob".into()],
            }),
        ] {
            let err = apply(&mut state, &bob, &op, &ctx(&limits, 2)).unwrap_err();
            assert_eq!(err.kind, FailureKind::Denied, "{op:?}");
            assert_eq!(state, before);
        }
        // bob's overlapping exclusive names alice's reservation.
        let err = apply(
            &mut state,
            &bob,
            &reserve_op(NOW + 1800, NOW + 5400, Mode::Exclusive),
            &ctx(&limits, 3),
        )
        .unwrap_err();
        assert_eq!(err.kind, FailureKind::Conflict);
        assert!(
            err.message
                .contains("alice's exclusive reservation aa000000"),
            "{}",
            err.message
        );
        // bob may not force.
        let mut forced = reserve_op(NOW + 1800, NOW + 5400, Mode::Exclusive);
        if let Op::Reserve(a) = &mut forced {
            a.force = true;
        }
        assert_eq!(
            apply(&mut state, &bob, &forced, &ctx(&limits, 3))
                .unwrap_err()
                .kind,
            FailureKind::Denied
        );
        // An admin may, and the override is recorded.
        let (_, change) = apply(&mut state, &admin, &forced, &ctx(&limits, 4)).unwrap();
        assert_eq!(
            change.unwrap().overridden,
            vec![ReservationId(0xaa00_0000_0000_0001)]
        );
        // An admin may change and cancel alice's.
        apply(
            &mut state,
            &admin,
            &Op::Cancel(IdArgs { id: id.clone() }),
            &ctx(&limits, 5),
        )
        .unwrap();
        assert!(find(&state, &id, &ctx(&limits, 6)).is_err());
    }

    #[test]
    fn limits_and_bad_times() {
        let limits = Limits {
            max_duration: Some(86_400),
            max_ahead: Some(7 * 86_400),
            max_open_per_user: Some(1),
            max_exclusive: None,
        };
        let mut state = State::default();
        let alice = caller("alice", false);
        let cases = [
            (reserve_op(NOW, NOW - 1, Mode::Shared), FailureKind::Invalid),
            (reserve_op(NOW, NOW, Mode::Shared), FailureKind::Invalid),
            (
                reserve_op(NOW - 3600, NOW + 10, Mode::Shared),
                FailureKind::Invalid,
            ),
            (
                reserve_op(NOW, NOW + 2 * 86_400, Mode::Shared),
                FailureKind::Limit,
            ),
            (
                reserve_op(NOW + 8 * 86_400, NOW + 8 * 86_400 + 60, Mode::Shared),
                FailureKind::Limit,
            ),
        ];
        for (op, kind) in cases {
            assert_eq!(
                apply(&mut state, &alice, &op, &ctx(&limits, 9))
                    .unwrap_err()
                    .kind,
                kind,
                "{op:?}"
            );
        }
        apply(
            &mut state,
            &alice,
            &reserve_op(NOW, NOW + 60, Mode::Shared),
            &ctx(&limits, 9),
        )
        .unwrap();
        let err = apply(
            &mut state,
            &alice,
            &reserve_op(NOW + 60, NOW + 120, Mode::Shared),
            &ctx(&limits, 10),
        )
        .unwrap_err();
        assert_eq!(err.kind, FailureKind::Limit);
        assert_eq!(
            err.message,
            "alice already has 1 open reservations; at most 1 are allowed"
        );
    }

    #[test]
    fn exclusive_time_per_user_is_bounded_and_admins_may_force() {
        const DAY: i64 = 86_400;
        let limits = Limits {
            max_duration: Some(7 * DAY),
            max_ahead: Some(100 * DAY),
            max_open_per_user: None,
            max_exclusive: Some(7 * DAY),
        };
        let mut state = State::default();
        let alice = caller("alice", false);
        // One 7-day slot is the whole allowance: the next back-to-back one
        // is refused, naming the limit and what alice holds.
        apply(
            &mut state,
            &alice,
            &reserve_op(NOW, NOW + 7 * DAY, Mode::Exclusive),
            &ctx(&limits, 1),
        )
        .unwrap();
        let err = apply(
            &mut state,
            &alice,
            &reserve_op(NOW + 7 * DAY, NOW + 14 * DAY, Mode::Exclusive),
            &ctx(&limits, 2),
        )
        .unwrap_err();
        assert_eq!(err.kind, FailureKind::Limit);
        assert_eq!(
            err.message,
            "alice would hold the host exclusively for 14d from now on (7d already reserved, \
             7d more asked); at most 7d of exclusive time per user is allowed (max_exclusive)"
        );
        // Shared time does not count; another user has their own allowance.
        apply(
            &mut state,
            &alice,
            &reserve_op(NOW + 7 * DAY, NOW + 14 * DAY, Mode::Shared),
            &ctx(&limits, 3),
        )
        .unwrap();
        apply(
            &mut state,
            &caller("bob", false),
            &reserve_op(NOW + 14 * DAY, NOW + 21 * DAY, Mode::Exclusive),
            &ctx(&limits, 4),
        )
        .unwrap();
        // An admin may force it, and the audit line says so.
        let mut forced = reserve_op(NOW + 21 * DAY, NOW + 28 * DAY, Mode::Exclusive);
        if let Op::Reserve(args) = &mut forced {
            args.owner = Some("alice".into());
            args.force = true;
        }
        let (_, change) =
            apply(&mut state, &caller("root", true), &forced, &ctx(&limits, 5)).unwrap();
        let change = change.unwrap();
        assert_eq!(change.limits_overridden.len(), 1);
        assert!(change.limits_overridden[0].contains("max_exclusive"));
        // Time already past does not count: a week later alice's first slot
        // is used up and the forced one is what she holds.
        assert_eq!(
            exclusive_held(&state, "alice", ReservationId(0), NOW + 7 * DAY),
            7 * DAY
        );
    }

    #[test]
    fn prefixes() {
        let mut state = State::default();
        for (id, owner, hour) in [
            (0x1235_0000_0000_0000u64, "bob", 2),
            (0x1234_0000_0000_0000, "alice", 1),
        ] {
            state.reservations.push(Reservation {
                created: 0,
                updated: 0,
                ..Reservation::new(
                    ReservationId(id),
                    owner,
                    NOW + hour * 3600,
                    NOW + hour * 3600 + 1800,
                    Mode::Shared,
                )
            });
        }
        let limits = Limits::default();
        let ctx = ctx(&limits, 1);
        assert_eq!(find(&state, "1234", &ctx).unwrap(), 1);
        assert_eq!(find(&state, "1235", &ctx).unwrap(), 0);
        let ambiguous = find(&state, "123", &ctx).unwrap_err();
        assert_eq!(ambiguous.kind, FailureKind::Ambiguous);
        assert_eq!(
            ambiguous.message,
            "123 names 2 reservations: 1234000000000000 (alice, 09:00 UTC to 09:30 UTC), \
             1235000000000000 (bob, 10:00 UTC to 10:30 UTC); give more digits"
        );
        assert_eq!(ambiguous.conflicts.len(), 2);
        assert_eq!(
            find(&state, "9", &ctx).unwrap_err().kind,
            FailureKind::NotFound
        );
        assert_eq!(
            find(&state, "xyz", &ctx).unwrap_err().kind,
            FailureKind::Invalid
        );
        assert_eq!(
            find(&state, "", &ctx).unwrap_err().kind,
            FailureKind::Invalid
        );
    }
}
