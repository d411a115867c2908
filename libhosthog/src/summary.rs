//! The session summary: what someone sees right after logging in.
//!
//! [`session_summary`] is pure: the table (if there is one), the login, the
//! other sessions and the time come in; a few short lines of text come out.
//! Every piece of text from the table or from utmp is sanitized.

use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::decide::{Allowed, Decision, Who, decide};
use crate::describe::{for_comment as comment, holders, mode_word};
use crate::format::{ReservationView, Table};
use crate::model::Mode;
use crate::presence::Presence;
use crate::terminal::sanitize;
use crate::utmp::Login;
use crate::when::format_instant;

/// How far ahead someone is warned that another person's exclusive
/// reservation will lock them out.
pub const WARN_AHEAD_SECONDS: i64 = 30 * 60;

/// Most other users named on the "also logged in" line.
pub const MAX_USERS_SHOWN: usize = 8;

/// Most admin notices shown.
pub const MAX_NOTICES_SHOWN: usize = 5;

/// Most reservations in force shown (exclusive ones first); the others are
/// counted in one line.
pub const MAX_NOW_SHOWN: usize = 3;

/// Most characters of a notice's text and of a utmp host name shown.
pub const MAX_NOTICE_SHOWN: usize = 160;
pub const MAX_HOST_SHOWN: usize = 64;

const PREFIX: &str = "hosthog: ";

/// What the caller could make of the table file.
#[derive(Debug, Clone, Copy)]
pub enum TableState<'a, 't> {
    /// There is no table: nobody has reserved the host.
    Missing,
    /// The table exists but cannot be used (corrupt, insecure); the caller
    /// has logged why.
    Unreadable,
    /// A validated table.
    Present(&'a Table<'t>),
}

/// Renders the session summary for `who` at `now`, times in `tz`:
///
/// 1. what is reserved now (or that nothing is), and how it concerns `who`;
/// 2. the next reservation later today, if any;
/// 3. a warning if another person's exclusive reservation that `who` is
///    not on starts within [`WARN_AHEAD_SECONDS`];
/// 4. who else is logged in (from `logins`, the caller's live sessions);
/// 5. the admin notices in force.
///
/// The lines are joined with `\n`, without a trailing newline.
///
/// # Example
/// ```
/// use libhosthog::*;
/// let state = State { reservations: vec![Reservation {
///     id: ReservationId(1), owner: "alice".into(), with: vec![],
///     start: 0, end: 7200, mode: Mode::Exclusive,
///     comment: "paper benchmarks".into(), created: 0, updated: 0 }], ..State::default() };
/// let bytes = encode(&state).unwrap();
/// let table = Table::parse(&bytes).unwrap();
/// let who = Who { user: "alice", service: "sshd", ..Who::default() };
/// let text = session_summary(TableState::Present(&table), &who, &[], None, 60, &jiff::tz::TimeZone::UTC);
/// assert_eq!(text, "hosthog: now: reserved exclusively by you until 02:00 UTC for \"paper benchmarks\".\n\
///                   hosthog: nobody else is logged in.");
/// ```
pub fn session_summary(
    table: TableState<'_, '_>,
    who: &Who<'_>,
    logins: &[Login<'_>],
    presence: Option<&Presence>,
    now: i64,
    tz: &TimeZone,
) -> String {
    let mut out = String::new();
    match table {
        TableState::Present(table) => {
            now_lines(&mut out, table, who, now, tz);
            next_today_line(&mut out, table, who, now, tz);
            warning_line(&mut out, table, who, now, tz);
        }
        TableState::Missing => line(&mut out, format_args!("no reservation now.")),
        TableState::Unreadable => line(
            &mut out,
            format_args!(
                "reservations cannot be shown: the table cannot be read (an administrator can find why in the system log)."
            ),
        ),
    }
    match presence {
        Some(presence) => presence_line(&mut out, who, presence),
        None => logins_line(&mut out, who, logins),
    }
    if let TableState::Present(table) = table {
        notice_lines(&mut out, table, now);
    }
    out
}

fn line(out: &mut String, text: std::fmt::Arguments<'_>) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(PREFIX);
    let _ = out.write_fmt(text);
}

fn now_lines(out: &mut String, table: &Table<'_>, who: &Who<'_>, now: i64, tz: &TimeZone) {
    let decision = decide(table, who, now);
    // Exclusive reservations first: they are what decides who gets in.
    let mut active: Vec<ReservationView<'_>> = table.active_at(now).collect();
    active.sort_by_key(|r| (r.mode() != Mode::Exclusive, r.start()));
    if active.is_empty() {
        line(out, format_args!("no reservation now."));
        return;
    }
    for r in active.iter().take(MAX_NOW_SHOWN) {
        let relation = match (r.mode(), &decision) {
            (Mode::Shared, _) => "",
            (Mode::Exclusive, _) if r.owner() == who.user => "",
            (Mode::Exclusive, _) if r.is_member(who.user) => "; you are on it",
            (Mode::Exclusive, Decision::Allow(Allowed::Root | Allowed::Exempt)) => {
                "; you are exempt from it"
            }
            (Mode::Exclusive, _) => "; you are not on it",
        };
        line(
            out,
            format_args!(
                "now: reserved {} by {} until {}{}{relation}.",
                mode_word(r.mode()),
                holders(r, who.user),
                format_instant(r.end(), now, tz),
                comment(r),
            ),
        );
    }
    let more = active.len().saturating_sub(MAX_NOW_SHOWN);
    if more > 0 {
        line(
            out,
            format_args!("now: and {more} more reservations (hosthog list shows them)."),
        );
    }
}

/// The first second of the local day after `now`'s.
fn end_of_local_day(now: i64, tz: &TimeZone) -> Option<i64> {
    let zoned = Timestamp::from_second(now).ok()?.to_zoned(tz.clone());
    let next = zoned.tomorrow().ok()?.start_of_day().ok()?;
    Some(next.timestamp().as_second())
}

/// The next reservation later today: the first exclusive one that would
/// refuse `who` (the one that matters to them), else the first of any kind.
fn next_today_line(out: &mut String, table: &Table<'_>, who: &Who<'_>, now: i64, tz: &TimeZone) {
    let Some(midnight) = end_of_local_day(now, tz) else {
        return;
    };
    let today = || {
        table
            .reservations()
            .filter(move |r| r.start() > now && r.start() < midnight)
    };
    let refusing = today().find(|r| {
        r.mode() == Mode::Exclusive
            && matches!(decide(table, who, r.start()), Decision::Deny(d) if d.reservation.id() == r.id())
    });
    let (next, relation) = match refusing {
        Some(r) => (Some(r), "; you are not on it"),
        None => (today().next(), ""),
    };
    if let Some(r) = next {
        line(
            out,
            format_args!(
                "next today: reserved {} by {} from {} until {}{}{relation}.",
                mode_word(r.mode()),
                holders(&r, who.user),
                format_instant(r.start(), now, tz),
                format_instant(r.end(), now, tz),
                comment(&r),
            ),
        );
    }
}

fn warning_line(out: &mut String, table: &Table<'_>, who: &Who<'_>, now: i64, tz: &TimeZone) {
    let soon = table.reservations().find(|r| {
        r.mode() == Mode::Exclusive
            && r.start() > now
            && r.start() - now <= WARN_AHEAD_SECONDS
            && matches!(decide(table, who, r.start()), Decision::Deny(_))
    });
    if let Some(r) = soon {
        let minutes = (r.start() - now + 59) / 60;
        line(
            out,
            format_args!(
                "warning: {}'s exclusive reservation starts at {} (in {minutes} min) \
                 and you are not on it: new logins will be refused then; save your work.",
                sanitize(r.owner()),
                format_instant(r.start(), now, tz),
            ),
        );
    }
}

fn logins_line(out: &mut String, who: &Who<'_>, logins: &[Login<'_>]) {
    // Other users in order of first appearance, with their sessions.
    let mut users: Vec<(&str, Vec<&Login<'_>>)> = Vec::new();
    for login in logins.iter().filter(|l| l.user != who.user) {
        match users.iter_mut().find(|(u, _)| *u == login.user) {
            Some((_, sessions)) => sessions.push(login),
            None => users.push((&login.user, vec![login])),
        }
    }
    if users.is_empty() {
        line(out, format_args!("nobody else is logged in."));
        return;
    }
    let shown =
        users
            .iter()
            .take(MAX_USERS_SHOWN)
            .map(|(user, sessions)| match sessions.as_slice() {
                [one] if one.host.is_empty() => {
                    format!("{} ({})", sanitize(user), sanitize(&one.line))
                }
                [one] => format!(
                    "{} ({} from {})",
                    sanitize(user),
                    sanitize(&one.line),
                    crate::user_text(&one.host, MAX_HOST_SHOWN)
                ),
                many => format!("{} ({} sessions)", sanitize(user), many.len()),
            });
    people_line(out, "also logged in", shown, users.len());
}

/// `LABEL: a, b, c, and N more.` for the first [`MAX_USERS_SHOWN`] of
/// `total` people.
fn people_line(out: &mut String, label: &str, shown: impl Iterator<Item = String>, total: usize) {
    let shown: Vec<String> = shown.collect();
    let more = total.saturating_sub(shown.len());
    let tail = if more > 0 {
        format!(", and {more} more")
    } else {
        String::new()
    };
    line(out, format_args!("{label}: {}{tail}.", shown.join(", ")));
}

/// The "also logged in" line from hosthogd's presence snapshot: besides
/// login sessions it knows tmux and screen servers, VS Code servers, X
/// sessions and GPU processes (docs/presence-format.md).
fn presence_line(out: &mut String, who: &Who<'_>, presence: &Presence) {
    let users: Vec<_> = presence
        .users()
        .into_iter()
        .filter(|u| u.user != who.user)
        .collect();
    if users.is_empty() {
        line(out, format_args!("nobody else is on this host."));
        return;
    }
    let shown = users.iter().take(MAX_USERS_SHOWN).map(|u| u.describe());
    people_line(out, "also on this host", shown, users.len());
}

fn notice_lines(out: &mut String, table: &Table<'_>, now: i64) {
    let current: Vec<_> = table.notices().filter(|n| n.is_current(now)).collect();
    for n in current.iter().take(MAX_NOTICES_SHOWN) {
        line(
            out,
            format_args!(
                "notice from {}: {}",
                sanitize(n.author()),
                crate::user_text(n.text(), MAX_NOTICE_SHOWN)
            ),
        );
    }
    let more = current.len().saturating_sub(MAX_NOTICES_SHOWN);
    if more > 0 {
        line(out, format_args!("({more} more notices not shown)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode;
    use crate::model::{Notice, Reservation, ReservationId, State};
    use std::borrow::Cow;

    // 2027-01-15 08:00:00 UTC
    const T0: i64 = 1_800_000_000;

    fn r(id: u64, owner: &str, with: &[&str], span: (i64, i64), mode: Mode) -> Reservation {
        Reservation {
            with: with.iter().map(|u| u.to_string()).collect(),
            comment: format!("work of {owner}"),
            created: 0,
            updated: 0,
            ..Reservation::new(ReservationId(id), owner, span.0, span.1, mode)
        }
    }

    fn login<'a>(user: &'a str, line: &'a str, host: &'a str) -> Login<'a> {
        Login {
            user: Cow::Borrowed(user),
            line: Cow::Borrowed(line),
            host: Cow::Borrowed(host),
            pid: 1,
        }
    }

    fn summary(state: &State, user: &str, logins: &[Login<'_>], now: i64) -> String {
        let bytes = encode(state).unwrap();
        let table = Table::parse(&bytes).unwrap();
        let who = Who {
            user,
            service: "sshd",
            also_exempt: &["backup"],
            ..Who::default()
        };
        session_summary(
            TableState::Present(&table),
            &who,
            logins,
            None,
            now,
            &TimeZone::UTC,
        )
    }

    fn state() -> State {
        State {
            reservations: vec![
                r(1, "alice", &["carol"], (T0, T0 + 3600), Mode::Exclusive),
                r(2, "bob", &[], (T0 + 3600, T0 + 7200), Mode::Shared),
                r(3, "dave", &[], (T0 + 7200, T0 + 9000), Mode::Exclusive),
                r(4, "erin", &[], (T0 + 86_400, T0 + 90_000), Mode::Exclusive),
            ],
            exempt: vec!["monitor".into()],
            notices: vec![
                Notice {
                    id: 1,
                    author: "root".into(),
                    text: "kernel update Tue 09:00".into(),
                    start: T0 - 100,
                    end: i64::MAX,
                    created: 0,
                },
                Notice {
                    id: 2,
                    author: "root".into(),
                    text: "expired".into(),
                    start: T0 - 100,
                    end: T0,
                    created: 0,
                },
            ],
            ..State::default()
        }
    }

    #[test]
    fn holder_sees_own_reservation_next_one_and_others() {
        let logins = [
            login("alice", "pts/0", "10.0.0.1"),
            login("bob", "pts/1", "10.0.0.2"),
            login("carol", "tty1", ""),
            login("carol", "pts/3", "10.0.0.3"),
        ];
        assert_eq!(
            summary(&state(), "alice", &logins, T0 + 60),
            "hosthog: now: reserved exclusively by you with carol until 09:00 UTC for \"work of alice\".\n\
             hosthog: next today: reserved exclusively by dave from 10:00 UTC until 10:30 UTC for \"work of dave\"; you are not on it.\n\
             hosthog: also logged in: bob (pts/1 from 10.0.0.2), carol (2 sessions).\n\
             hosthog: notice from root: kernel update Tue 09:00"
        );
    }

    #[test]
    fn next_today_names_the_exclusive_slot_that_would_refuse_the_reader() {
        // alice (above) is told of dave's exclusive 10:00 slot, not bob's
        // shared one at 09:00; dave, whom his own slot does not refuse, is
        // told of the next one, bob's.
        let text = summary(&state(), "dave", &[], T0 + 60);
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "hosthog: next today: reserved shared by bob from 09:00 UTC until 10:00 UTC for \"work of bob\"."
        );
    }

    #[test]
    fn relation_to_the_exclusive_reservation() {
        let cases = [
            ("carol", "; you are on it"),
            ("root", "; you are exempt from it"),
            ("monitor", "; you are exempt from it"),
            ("backup", "; you are exempt from it"),
            ("mallory", "; you are not on it"),
        ];
        for (user, relation) in cases {
            let text = summary(&state(), user, &[], T0 + 60);
            let first = text.lines().next().unwrap();
            let who = if user == "carol" { "you" } else { "carol" };
            assert_eq!(
                first,
                format!(
                    "hosthog: now: reserved exclusively by alice with {who} until 09:00 UTC for \"work of alice\"{relation}."
                ),
                "{user}"
            );
        }
    }

    #[test]
    fn warning_before_someone_elses_exclusive_slot() {
        // 20 minutes before dave's slot, during bob's shared one.
        let text = summary(&state(), "bob", &[], T0 + 7200 - 1200);
        assert_eq!(
            text,
            "hosthog: now: reserved shared by you until 10:00 UTC for \"work of bob\".\n\
             hosthog: next today: reserved exclusively by dave from 10:00 UTC until 10:30 UTC for \"work of dave\"; you are not on it.\n\
             hosthog: warning: dave's exclusive reservation starts at 10:00 UTC (in 20 min) and you are not on it: new logins will be refused then; save your work.\n\
             hosthog: nobody else is logged in.\n\
             hosthog: notice from root: kernel update Tue 09:00"
        );
        // dave himself, root and exempt users get no warning.
        for user in ["dave", "root", "monitor"] {
            let text = summary(&state(), user, &[], T0 + 7200 - 1200);
            assert!(!text.contains("warning"), "{user}: {text}");
        }
        // Nor does anyone 31 minutes ahead.
        let text = summary(&state(), "bob", &[], T0 + 7200 - 31 * 60);
        assert!(!text.contains("warning"), "{text}");
    }

    #[test]
    fn free_host_and_tomorrows_reservations() {
        // After dave's slot: erin's is tomorrow, so not "next today".
        let text = summary(&state(), "bob", &[], T0 + 9000);
        assert_eq!(
            text,
            "hosthog: no reservation now.\n\
             hosthog: nobody else is logged in.\n\
             hosthog: notice from root: kernel update Tue 09:00"
        );
    }

    #[test]
    fn no_table() {
        let who = Who {
            user: "bob",
            ..Who::default()
        };
        let logins = [login("bob", "pts/0", ""), login("zed", "pts/1", "")];
        assert_eq!(
            session_summary(TableState::Missing, &who, &logins, None, T0, &TimeZone::UTC),
            "hosthog: no reservation now.\nhosthog: also logged in: zed (pts/1)."
        );
        assert_eq!(
            session_summary(TableState::Unreadable, &who, &[], None, T0, &TimeZone::UTC),
            "hosthog: reservations cannot be shown: the table cannot be read \
             (an administrator can find why in the system log).\n\
             hosthog: nobody else is logged in."
        );
    }

    #[test]
    fn hostile_text_is_sanitized_and_lists_are_bounded() {
        let logins: Vec<Login<'_>> = (0..12)
            .map(|i| Login {
                user: Cow::Owned(format!("u{i}\u{1b}[2J")),
                line: Cow::Borrowed("pts/\u{7}"),
                host: Cow::Borrowed(""),
                pid: 1,
            })
            .collect();
        let mut state = State::default();
        for i in 0..7 {
            state.notices.push(Notice {
                id: i,
                author: "root".into(),
                text: format!("notice {i}"),
                start: 0,
                end: i64::MAX,
                created: 0,
            });
        }
        let text = summary(&state, "bob", &logins, T0);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text}"
        );
        assert!(text.contains("u0?[2J (pts/?)"), "{text}");
        assert!(text.contains(", and 4 more."), "{text}");
        assert!(text.contains("notice from root: notice 4"), "{text}");
        assert!(!text.contains("notice 5"), "{text}");
        assert!(
            text.ends_with("hosthog: (2 more notices not shown)"),
            "{text}"
        );
    }

    #[test]
    fn twenty_long_comments_and_a_padded_host_make_a_short_summary() {
        // Before: 20 shared reservations with 500-byte comments put 5.6 KB
        // into every summary, and a utmp host name padded with spaces put
        // a line that looked like hosthog's own at column 0.
        let mut state = State::default();
        for i in 0..20 {
            let mut r = r(i + 1, "alice", &[], (T0 - 60, T0 + 3600), Mode::Shared);
            r.comment = format!("{i} {}", "x".repeat(490));
            state.reservations.push(r);
        }
        let host = format!(
            "h{}hosthog: message from root (admin)\u{2066}",
            " ".repeat(150)
        );
        let logins = [login("carol", "pts/1", &host)];
        let text = summary(&state, "bob", &logins, T0);
        assert!(text.len() < 1200, "{} bytes: {text}", text.len());
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(
            text.contains("hosthog: now: and 17 more reservations (hosthog list shows them)."),
            "{text}"
        );
        assert!(
            text.contains("carol (pts/1 from h hosthog - message from root (admin)?)"),
            "{text}"
        );
        for line in text.lines() {
            assert!(line.starts_with("hosthog: "), "{line}");
            assert!(line.chars().count() < 260, "{line}");
            assert_eq!(line.matches("hosthog:").count(), 1, "{line}");
        }
    }

    #[test]
    fn presence_snapshot_names_every_way_people_are_on_the_host() {
        use crate::presence::{Session, SessionKind};
        let session = |user: &str, uid, kind, tty: &str, from: &str| Session {
            user: user.into(),
            uid,
            kind,
            pid: 1,
            tty: tty.into(),
            from: from.into(),
            detail: String::new(),
        };
        let mut presence = Presence::new(T0);
        presence.sessions = vec![
            session("alice", 2001, SessionKind::Login, "pts/3", "10.0.0.5"),
            session("bob", 2002, SessionKind::Tmux, "", ""),
            session("alice", 2001, SessionKind::Vscode, "", ""),
            session("carol", 2003, SessionKind::Login, "pts/4", ""),
        ];
        let who = Who {
            user: "carol",
            service: "sshd",
            ..Who::default()
        };
        assert_eq!(
            session_summary(
                TableState::Missing,
                &who,
                &[],
                Some(&presence),
                T0,
                &TimeZone::UTC
            ),
            "hosthog: no reservation now.\n\
             hosthog: also on this host: alice (pts/3 from 10.0.0.5, VS Code), bob (tmux)."
        );
        presence.sessions.retain(|s| s.user == "carol");
        assert_eq!(
            session_summary(
                TableState::Missing,
                &who,
                &[],
                Some(&presence),
                T0,
                &TimeZone::UTC
            ),
            "hosthog: no reservation now.\nhosthog: nobody else is on this host."
        );
    }
}
