//! Who may log in now: the one decision every front end asks for.
//!
//! [`decide`] is pure: the table, the login attempt and the time come in,
//! a [`Decision`] with its reason comes out. It reads no clock, no files and
//! no user database, and allocates nothing.

use jiff::tz::TimeZone;

use crate::format::{ReservationView, Table};
use crate::model::Mode;
use crate::terminal::sanitize;
use crate::when::format_instant;

/// A login attempt, as PAM describes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Who<'a> {
    /// PAM_USER: the account being logged into.
    pub user: &'a str,
    /// PAM_SERVICE: `sshd`, `login`, `xrdp-sesman`, ...
    pub service: &'a str,
    /// PAM_TTY, if the application set it.
    pub tty: Option<&'a str>,
    /// PAM_RHOST, if the login is remote.
    pub rhost: Option<&'a str>,
    /// Users exempt by the caller's own configuration (the PAM module's
    /// `exempt=` argument), in addition to the table's exemption list.
    pub also_exempt: &'a [&'a str],
}

/// Why a login is allowed.
#[derive(Debug, Clone, Copy)]
pub enum Allowed<'t> {
    /// `root` is never locked out.
    Root,
    /// On the table's exemption list or the caller's `also_exempt`.
    Exempt,
    /// No reservation applies now.
    NoReservation,
    /// The user holds the current exclusive reservation.
    Holder(ReservationView<'t>),
    /// The user is a co-user of the current exclusive reservation.
    CoUser(ReservationView<'t>),
    /// Only shared reservations apply now; everyone may log in.
    Shared(ReservationView<'t>),
}

/// The outcome of [`decide`], carrying its reason.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'t> {
    Allow(Allowed<'t>),
    /// Someone else holds the host exclusively.
    Deny(Denial<'t>),
}

/// A refusal: the reservation that excludes the user.
#[derive(Debug, Clone, Copy)]
pub struct Denial<'t> {
    /// The exclusive reservation in force.
    pub reservation: ReservationView<'t>,
    /// The user who was refused.
    pub user: &'t str,
}

/// Decides whether `who` may log in at `now` (UTC seconds).
///
/// Rules, in order: `root` is allowed; exempt users are allowed; if an
/// exclusive reservation is active at `now` (`start <= now < end`) and the
/// user is neither its owner nor a co-user, the login is denied; otherwise
/// it is allowed, with the reservation that let the user in as the reason.
///
/// # Example
/// ```
/// use hosthog::{decide, encode, Decision, Mode, Reservation, ReservationId, State, Table, Who};
/// let state = State {
///     reservations: vec![Reservation {
///         id: ReservationId(1), owner: "alice".into(), with: vec![],
///         start: 100, end: 200, mode: Mode::Exclusive,
///         comment: "benchmarks".into(), created: 0, updated: 0,
///     }],
///     ..State::default()
/// };
/// let bytes = encode(&state).unwrap();
/// let table = Table::parse(&bytes).unwrap();
/// let bob = Who { user: "bob", service: "sshd", ..Who::default() };
/// assert!(matches!(decide(&table, &bob, 150), Decision::Deny(_)));
/// assert!(matches!(decide(&table, &bob, 200), Decision::Allow(_)));
/// ```
pub fn decide<'t>(table: &Table<'t>, who: &Who<'t>, now: i64) -> Decision<'t> {
    if who.user == "root" {
        return Decision::Allow(Allowed::Root);
    }
    if table.is_exempt(who.user) || who.also_exempt.contains(&who.user) {
        return Decision::Allow(Allowed::Exempt);
    }
    let mut allowed = Allowed::NoReservation;
    for r in table.active_at(now) {
        match r.mode() {
            Mode::Exclusive if r.is_member(who.user) => {
                allowed = if r.owner() == who.user {
                    Allowed::Holder(r)
                } else {
                    Allowed::CoUser(r)
                };
            }
            Mode::Exclusive => {
                return Decision::Deny(Denial {
                    reservation: r,
                    user: who.user,
                });
            }
            Mode::Shared => {
                if matches!(allowed, Allowed::NoReservation) {
                    allowed = Allowed::Shared(r);
                }
            }
        }
    }
    Decision::Allow(allowed)
}

impl Denial<'_> {
    /// The text shown to the refused user: who holds the host, until when
    /// (in `tz`; with the date when it is not `now`'s day), why, and what to
    /// do. Every user-supplied part is sanitized for terminals.
    ///
    /// # Example
    /// ```
    /// # use hosthog::*;
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
        let comment = sanitize(r.comment());
        let reason = if comment.is_empty() {
            String::new()
        } else {
            format!(" for \"{comment}\"")
        };
        format!(
            "hosthog: this host is reserved exclusively by {owner} until {until}{reason}.\n\
             {user} is not on that reservation, so this login is refused.\n\
             To get in, ask {owner} to run: hosthog share {id} {user}\n\
             Other hosts and reservations: hosthog list",
            until = format_instant(r.end(), now, tz),
            user = sanitize(self.user),
            id = r.id().short(),
        )
    }
}
