//! Every text that describes a reservation to people: the refusal at login,
//! the session summary's lines, the one-line description in replies and
//! notifications. One place, so a reservation reads the same wherever it is
//! shown, and every piece of user text is sanitized on its way out.
//!
//! The functions take any [`Booking`]: a view into the table file or a
//! reservation of the owned model.

use std::fmt::Write as _;

use jiff::tz::TimeZone;

use crate::decide::{Booking, Denial};
use crate::model::Mode;
use crate::terminal::sanitize;
use crate::when::format_instant;

/// `exclusively` or `shared`, as in "reserved exclusively by alice".
pub fn mode_word(mode: Mode) -> &'static str {
    match mode {
        Mode::Exclusive => "exclusively",
        Mode::Shared => "shared",
    }
}

/// `alice`, `alice with carol, dave`, or `you` for `viewer`.
pub fn holders(r: &impl Booking, viewer: &str) -> String {
    let name = |n: &str| {
        if n == viewer {
            "you".to_string()
        } else {
            sanitize(n).into_owned()
        }
    };
    let mut text = name(r.owner());
    let with: Vec<String> = r.co_users().map(name).collect();
    if !with.is_empty() {
        let _ = write!(text, " with {}", with.join(", "));
    }
    text
}

/// Most characters of a comment shown inside a line of text.
pub const MAX_COMMENT_SHOWN: usize = 100;

/// ` for "paper benchmarks"`, or nothing when there is no comment; the
/// comment as [`crate::user_text`] makes it (one line, at most
/// [`MAX_COMMENT_SHOWN`] characters).
pub fn for_comment(r: &impl Booking) -> String {
    let c = crate::user_text(r.comment(), MAX_COMMENT_SHOWN);
    if c.is_empty() {
        String::new()
    } else {
        format!(" for \"{c}\"")
    }
}

/// One line naming a reservation: `alice's exclusive reservation 1234abcd
/// (14:00 CET to 18:00 CET, "paper benchmarks")`; `your ...` when `viewer`
/// owns it.
///
/// # Example
/// ```
/// use libhosthog::{Mode, Reservation, ReservationId, describe};
/// let r = Reservation { id: ReservationId(0x1234abcd_00000000), owner: "alice".into(),
///     with: vec![], start: 3600, end: 7200, mode: Mode::Exclusive,
///     comment: "paper".into(), created: 0, updated: 0 };
/// let tz = jiff::tz::TimeZone::UTC;
/// assert_eq!(describe::reservation(&r, None, 0, &tz),
///     "alice's exclusive reservation 1234abcd (01:00 UTC to 02:00 UTC, \"paper\")");
/// assert!(describe::reservation(&r, Some("alice"), 0, &tz).starts_with("your exclusive"));
/// ```
pub fn reservation(r: &impl Booking, viewer: Option<&str>, now: i64, tz: &TimeZone) -> String {
    let whose = if viewer == Some(r.owner()) {
        "your".to_string()
    } else {
        format!("{}'s", sanitize(r.owner()))
    };
    let c = crate::user_text(r.comment(), MAX_COMMENT_SHOWN);
    let comment = if c.is_empty() {
        String::new()
    } else {
        format!(", \"{c}\"")
    };
    format!(
        "{whose} {} reservation {} ({} to {}{comment})",
        r.mode(),
        r.id().short(),
        format_instant(r.start(), now, tz),
        format_instant(r.end(), now, tz),
    )
}

impl<B: Booking> Denial<'_, B> {
    /// The text shown to the refused user: who holds the host, until when
    /// (in `tz`; with the date when it is not `now`'s day), why, and what to
    /// do. Every user-supplied part is sanitized for terminals.
    ///
    /// # Example
    /// ```
    /// # use libhosthog::*;
    /// # let state = State { reservations: vec![Reservation {
    /// #     id: ReservationId(0x1234abcd_00000000), owner: "alice".into(), with: vec![],
    /// #     start: 0, end: 7200, mode: Mode::Exclusive,
    /// #     comment: "paper benchmarks".into(), created: 0, updated: 0 }], ..State::default() };
    /// # let bytes = encode(&state).unwrap();
    /// let table = Table::parse(&bytes).unwrap();
    /// let who = Who { user: "bob", service: "sshd", ..Who::default() };
    /// let Decision::Deny(denial) = decide(&table, &who, 60) else { panic!() };
    /// let text = denial.message(&jiff::tz::TimeZone::UTC, 60);
    /// assert!(text.contains("reserved exclusively by alice until 02:00 UTC"));
    /// assert!(text.contains("for \"paper benchmarks\""));
    /// assert!(text.contains("hosthog share 1234abcd bob"));
    /// ```
    pub fn message(&self, tz: &TimeZone, now: i64) -> String {
        let r = &self.reservation;
        let owner = sanitize(r.owner());
        format!(
            "hosthog: this host is reserved exclusively by {owner} until {until}{reason}.\n\
             {user} is not on that reservation, so this login is refused.\n\
             To get in, ask {owner} to run: hosthog share {id} {user}\n\
             If it is urgent and {owner} cannot be reached, ask an admin of this host.",
            until = format_instant(r.end(), now, tz),
            reason = for_comment(r),
            user = sanitize(self.user),
            id = r.id().short(),
        )
    }
}
