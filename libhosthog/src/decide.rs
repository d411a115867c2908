//! Who may be on the host at an instant: the one rule every part asks.
//!
//! [`decide`] is the login rule, written once. The PAM module asks it about
//! the table file ([`Table`]); hosthogd asks it about the owned model
//! ([`State`], [`Bookings`]) when it chooses whom to warn and whose
//! sessions to end; the fleet calendar will ask it about what it holds in
//! memory. Each of those is a [`Calendar`] of [`Booking`]s.
//!
//! [`decide`] is pure: the calendar, the login attempt and the time come in,
//! a [`Decision`] with its reason comes out. It reads no clock, no files and
//! no user database, and allocates nothing.

use crate::format::{ReservationView, Table};
use crate::model::{Mode, Reservation, ReservationId, State};

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

/// One reservation, as the login rule and the texts shown to people read
/// it: a [`ReservationView`] into the table file, or a [`Reservation`] of
/// the owned model.
pub trait Booking {
    fn id(&self) -> ReservationId;
    fn owner(&self) -> &str;
    /// The co-users, in the order they were added.
    fn co_users(&self) -> impl Iterator<Item = &str>;
    fn start(&self) -> i64;
    fn end(&self) -> i64;
    fn mode(&self) -> Mode;
    fn comment(&self) -> &str;
    /// True if `user` is the owner or a co-user.
    fn is_member(&self, user: &str) -> bool;
    /// The reservation as an owned value of the model.
    fn to_reservation(&self) -> Reservation;
}

/// What the login rule reads: the reservations in force at an instant,
/// and the exemption list.
pub trait Calendar {
    type Booking<'c>: Booking
    where
        Self: 'c;
    /// The reservations with `start <= now < end`.
    fn active_at(&self, now: i64) -> impl Iterator<Item = Self::Booking<'_>>;
    /// True if `user` is on the exemption list.
    fn is_exempt(&self, user: &str) -> bool;
}

impl<'a> Booking for ReservationView<'a> {
    fn id(&self) -> ReservationId {
        ReservationView::id(self)
    }
    fn owner(&self) -> &str {
        ReservationView::owner(self)
    }
    fn co_users(&self) -> impl Iterator<Item = &str> {
        ReservationView::with(self)
    }
    fn start(&self) -> i64 {
        ReservationView::start(self)
    }
    fn end(&self) -> i64 {
        ReservationView::end(self)
    }
    fn mode(&self) -> Mode {
        ReservationView::mode(self)
    }
    fn comment(&self) -> &str {
        ReservationView::comment(self)
    }
    fn is_member(&self, user: &str) -> bool {
        ReservationView::is_member(self, user)
    }
    fn to_reservation(&self) -> Reservation {
        ReservationView::to_owned(self)
    }
}

impl Booking for Reservation {
    fn id(&self) -> ReservationId {
        self.id
    }
    fn owner(&self) -> &str {
        &self.owner
    }
    fn co_users(&self) -> impl Iterator<Item = &str> {
        self.with.iter().map(String::as_str)
    }
    fn start(&self) -> i64 {
        self.start
    }
    fn end(&self) -> i64 {
        self.end
    }
    fn mode(&self) -> Mode {
        self.mode
    }
    fn comment(&self) -> &str {
        &self.comment
    }
    fn is_member(&self, user: &str) -> bool {
        Reservation::is_member(self, user)
    }
    fn to_reservation(&self) -> Reservation {
        self.clone()
    }
}

impl<B: Booking + ?Sized> Booking for &B {
    fn id(&self) -> ReservationId {
        (**self).id()
    }
    fn owner(&self) -> &str {
        (**self).owner()
    }
    fn co_users(&self) -> impl Iterator<Item = &str> {
        (**self).co_users()
    }
    fn start(&self) -> i64 {
        (**self).start()
    }
    fn end(&self) -> i64 {
        (**self).end()
    }
    fn mode(&self) -> Mode {
        (**self).mode()
    }
    fn comment(&self) -> &str {
        (**self).comment()
    }
    fn is_member(&self, user: &str) -> bool {
        (**self).is_member(user)
    }
    fn to_reservation(&self) -> Reservation {
        (**self).to_reservation()
    }
}

impl<'a> Calendar for Table<'a> {
    type Booking<'c>
        = ReservationView<'a>
    where
        Self: 'c;
    fn active_at(&self, now: i64) -> impl Iterator<Item = ReservationView<'a>> {
        Table::active_at(self, now)
    }
    fn is_exempt(&self, user: &str) -> bool {
        Table::is_exempt(self, user)
    }
}

/// Reservations and an exemption list of the owned model, borrowed: the
/// calendar of a [`State`], or of one reservation alone.
#[derive(Debug, Clone, Copy)]
pub struct Bookings<'a> {
    pub reservations: &'a [Reservation],
    pub exempt: &'a [String],
}

impl<'a> Calendar for Bookings<'a> {
    type Booking<'c>
        = &'a Reservation
    where
        Self: 'c;
    fn active_at(&self, now: i64) -> impl Iterator<Item = &'a Reservation> {
        self.reservations.iter().filter(move |r| r.is_active(now))
    }
    fn is_exempt(&self, user: &str) -> bool {
        self.exempt.iter().any(|e| e == user)
    }
}

impl Calendar for State {
    type Booking<'c> = &'c Reservation;
    fn active_at(&self, now: i64) -> impl Iterator<Item = &Reservation> {
        self.reservations.iter().filter(move |r| r.is_active(now))
    }
    fn is_exempt(&self, user: &str) -> bool {
        self.exempt.iter().any(|e| e == user)
    }
}

/// Why a login is allowed.
#[derive(Debug, Clone, Copy)]
pub enum Allowed<B> {
    /// `root` is never locked out.
    Root,
    /// On the table's exemption list or the caller's `also_exempt`.
    Exempt,
    /// No reservation applies now.
    NoReservation,
    /// The user holds the current exclusive reservation.
    Holder(B),
    /// The user is a co-user of the current exclusive reservation.
    CoUser(B),
    /// Only shared reservations apply now; everyone may log in.
    Shared(B),
}

/// The outcome of [`decide`], carrying its reason.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'w, B> {
    Allow(Allowed<B>),
    /// Someone else holds the host exclusively.
    Deny(Denial<'w, B>),
}

/// A refusal: the reservation that excludes the user.
#[derive(Debug, Clone, Copy)]
pub struct Denial<'w, B> {
    /// The exclusive reservation in force.
    pub reservation: B,
    /// The user who was refused.
    pub user: &'w str,
}

impl<B> Decision<'_, B> {
    /// True if the login is refused.
    pub fn is_deny(&self) -> bool {
        matches!(self, Decision::Deny(_))
    }
}

/// Decides whether `who` may be on the host at `now` (UTC seconds).
///
/// Rules, in order: `root` is allowed; exempt users are allowed; if an
/// exclusive reservation is active at `now` (`start <= now < end`) and the
/// user is neither its owner nor a co-user, the login is denied; otherwise
/// it is allowed, with the reservation that let the user in as the reason.
///
/// # Example
/// ```
/// use libhosthog::{decide, encode, Decision, Mode, Reservation, ReservationId, State, Table, Who};
/// let state = State {
///     reservations: vec![Reservation {
///         id: ReservationId(1), owner: "alice".into(), with: vec![],
///         start: 100, end: 200, mode: Mode::Exclusive,
///         comment: "benchmarks".into(), created: 0, updated: 0,
///     }],
///     ..State::default()
/// };
/// let bob = Who { user: "bob", service: "sshd", ..Who::default() };
/// // The owned model and the table file give the same answer.
/// assert!(decide(&state, &bob, 150).is_deny());
/// let bytes = encode(&state).unwrap();
/// let table = Table::parse(&bytes).unwrap();
/// assert!(matches!(decide(&table, &bob, 150), Decision::Deny(_)));
/// assert!(matches!(decide(&table, &bob, 200), Decision::Allow(_)));
/// ```
pub fn decide<'c, 'w, C: Calendar + ?Sized>(
    calendar: &'c C,
    who: &Who<'w>,
    now: i64,
) -> Decision<'w, C::Booking<'c>> {
    if who.user == "root" {
        return Decision::Allow(Allowed::Root);
    }
    if calendar.is_exempt(who.user) || who.also_exempt.contains(&who.user) {
        return Decision::Allow(Allowed::Exempt);
    }
    let mut allowed = Allowed::NoReservation;
    for r in calendar.active_at(now) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode;
    use jiff::tz::TimeZone;

    const T0: i64 = 1_800_000_000;

    fn reservation(
        id: u64,
        owner: &str,
        with: &[&str],
        span: (i64, i64),
        mode: Mode,
    ) -> Reservation {
        Reservation {
            with: with.iter().map(|u| u.to_string()).collect(),
            comment: format!("comment of {owner}"),
            created: T0 - 1000,
            updated: T0 - 1000,
            ..Reservation::new(ReservationId(id), owner, span.0, span.1, mode)
        }
    }

    fn table_bytes() -> Vec<u8> {
        let state = State {
            reservations: vec![
                reservation(
                    0xa11ce000_00000001,
                    "alice",
                    &["carol"],
                    (T0, T0 + 3600),
                    Mode::Exclusive,
                ),
                reservation(
                    0xb0b00000_00000002,
                    "bob",
                    &[],
                    (T0 + 3600, T0 + 7200),
                    Mode::Shared,
                ),
                reservation(
                    0xda7e0000_00000003,
                    "dave",
                    &[],
                    (T0 + 7200, T0 + 9000),
                    Mode::Exclusive,
                ),
                reservation(
                    0xe7e00000_00000004,
                    "erin",
                    &[],
                    (T0 + 7200, T0 + 9000),
                    Mode::Shared,
                ),
            ],
            exempt: vec!["monitor".into()],
            ..State::default()
        };
        encode(&state).unwrap()
    }

    /// What a case expects: the decision's variant and, for reasons that
    /// name a reservation, its owner.
    #[derive(Debug, PartialEq)]
    enum Expect {
        Root,
        Exempt,
        NoReservation,
        Holder(&'static str),
        CoUser(&'static str),
        Shared(&'static str),
        Deny(&'static str),
    }

    fn outcome(d: &Decision<'_, ReservationView<'_>>) -> Expect {
        let owner = |r: &ReservationView<'_>| -> &'static str {
            match r.owner() {
                "alice" => "alice",
                "bob" => "bob",
                "dave" => "dave",
                "erin" => "erin",
                other => panic!("unexpected owner {other}"),
            }
        };
        match d {
            Decision::Allow(Allowed::Root) => Expect::Root,
            Decision::Allow(Allowed::Exempt) => Expect::Exempt,
            Decision::Allow(Allowed::NoReservation) => Expect::NoReservation,
            Decision::Allow(Allowed::Holder(r)) => Expect::Holder(owner(r)),
            Decision::Allow(Allowed::CoUser(r)) => Expect::CoUser(owner(r)),
            Decision::Allow(Allowed::Shared(r)) => Expect::Shared(owner(r)),
            Decision::Deny(d) => Expect::Deny(owner(&d.reservation)),
        }
    }

    #[test]
    fn decide_table() {
        let bytes = table_bytes();
        let table = Table::parse(&bytes).unwrap();
        let extra: &[&str] = &["backup"];
        #[rustfmt::skip]
        let cases: &[(&str, i64, Expect)] = &[
            // before anything starts
            ("bob", T0 - 1, Expect::NoReservation),
            // alice's exclusive hour, half-open [T0, T0+3600)
            ("bob", T0, Expect::Deny("alice")),
            ("bob", T0 + 3599, Expect::Deny("alice")),
            ("bob", T0 + 3600, Expect::Shared("bob")),
            ("alice", T0, Expect::Holder("alice")),
            ("alice", T0 + 3599, Expect::Holder("alice")),
            ("carol", T0 + 10, Expect::CoUser("alice")),
            ("root", T0 + 10, Expect::Root),
            ("monitor", T0 + 10, Expect::Exempt),
            ("backup", T0 + 10, Expect::Exempt),
            ("mallory", T0 + 10, Expect::Deny("alice")),
            // a name that is a prefix or extension of a member is not one
            ("alic", T0 + 10, Expect::Deny("alice")),
            ("alicea", T0 + 10, Expect::Deny("alice")),
            // bob's shared hour: everyone may log in
            ("alice", T0 + 3600, Expect::Shared("bob")),
            ("carol", T0 + 7199, Expect::Shared("bob")),
            // dave's exclusive overlaps erin's shared (admin override)
            ("dave", T0 + 7200, Expect::Holder("dave")),
            ("erin", T0 + 7200, Expect::Deny("dave")),
            ("bob", T0 + 8999, Expect::Deny("dave")),
            ("bob", T0 + 9000, Expect::NoReservation),
            ("root", T0 + 8000, Expect::Root),
        ];
        for (user, now, expect) in cases {
            let who = Who {
                user,
                service: "sshd",
                also_exempt: extra,
                ..Who::default()
            };
            let got = outcome(&decide(&table, &who, *now));
            assert_eq!(&got, expect, "user {user} at T0{:+}", now - T0);
        }
    }

    #[test]
    fn empty_table_allows_everyone() {
        let bytes = encode(&State::default()).unwrap();
        let table = Table::parse(&bytes).unwrap();
        let who = Who {
            user: "bob",
            ..Who::default()
        };
        assert_eq!(outcome(&decide(&table, &who, T0)), Expect::NoReservation);
    }

    #[test]
    fn denial_message_names_owner_end_comment_and_remedy() {
        let bytes = table_bytes();
        let table = Table::parse(&bytes).unwrap();
        let who = Who {
            user: "bob",
            service: "sshd",
            ..Who::default()
        };
        let Decision::Deny(denial) = decide(&table, &who, T0 + 60) else {
            panic!("bob must be denied");
        };
        // T0 = 2027-01-15 08:00:00 UTC; alice's slot ends 09:00 the same day.
        assert_eq!(
            denial.message(&TimeZone::UTC, T0 + 60),
            "hosthog: this host is reserved exclusively by alice until 09:00 UTC for \"comment of alice\".\n\
             bob is not on that reservation, so this login is refused.\n\
             To get in, ask alice to run: hosthog share a11ce000 bob\n\
             If it is urgent and alice cannot be reached, ask an admin of this host."
        );
        // Seen from the previous day, the end carries its date.
        assert!(
            denial
                .message(&TimeZone::UTC, T0 - 86_400)
                .contains("until Fri 15 Jan 09:00 UTC")
        );
    }

    #[test]
    fn denial_message_sanitizes_a_hostile_table() {
        // A table is structurally valid with control characters in a
        // comment (writers refuse them, but readers must not trust that).
        let mut bytes = table_bytes();
        let needle = b"comment of alice";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        bytes[at..at + 4].copy_from_slice(b"\x1b[2J");
        let sum = crate::format::checksum(&bytes).to_le_bytes();
        bytes[crate::format::CHECKSUM_OFFSET..crate::format::CHECKSUM_OFFSET + 4]
            .copy_from_slice(&sum);
        let table = Table::parse(&bytes).unwrap();
        let who = Who {
            user: "bob",
            ..Who::default()
        };
        let Decision::Deny(denial) = decide(&table, &who, T0) else {
            panic!("bob must be denied");
        };
        let text = denial.message(&TimeZone::UTC, T0);
        assert!(text.contains("for \"?[2Jent of alice\""), "{text}");
        assert!(!text.contains('\u{1b}'));
    }
}
