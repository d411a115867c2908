//! The model: reservations, exemptions and admin notices, as owned values.
//!
//! Times are UTC seconds since the Unix epoch; every span is half-open,
//! `[start, end)`: a reservation ending at 18:00 no longer applies at 18:00.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits;

/// A reservation's id: 64 random bits, so ids made on different hosts of a
/// fleet do not collide. Shown as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ReservationId(pub u64);

impl ReservationId {
    /// The first 8 hex digits: enough to name a reservation on one host.
    pub fn short(&self) -> String {
        format!("{:08x}", self.0 >> 32)
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for ReservationId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "{s:?} is not a reservation id (16 hex digits)"
            )));
        }
        u64::from_str_radix(s, 16)
            .map(ReservationId)
            .map_err(|_| Error::invalid(format!("{s:?} is not a reservation id")))
    }
}

impl From<ReservationId> for String {
    fn from(id: ReservationId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for ReservationId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// Whether others may use the host during a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only the owner, co-users, exempt users and root may log in.
    Exclusive,
    /// Everyone may log in; the reservation tells others the host is busy.
    Shared,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        })
    }
}

/// One reservation of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: ReservationId,
    /// User name of the owner.
    pub owner: String,
    /// Co-users: may log in and change the reservation like the owner.
    pub with: Vec<String>,
    /// First second the reservation applies (UTC seconds).
    pub start: i64,
    /// First second it no longer applies (UTC seconds).
    pub end: i64,
    pub mode: Mode,
    /// Why; shown to people refused at login. Printable text only.
    pub comment: String,
    pub created: i64,
    pub updated: i64,
}

impl Reservation {
    /// A reservation of `owner` over `[start, end)`, with no co-users and
    /// no comment, created and updated at `start`.
    ///
    /// # Example
    /// ```
    /// use libhosthog::{Mode, Reservation, ReservationId};
    /// let r = Reservation::new(ReservationId(1), "alice", 100, 200, Mode::Exclusive);
    /// assert!(r.is_active(150) && !r.is_active(200));
    /// ```
    pub fn new(id: ReservationId, owner: &str, start: i64, end: i64, mode: Mode) -> Reservation {
        Reservation {
            id,
            owner: owner.to_string(),
            with: Vec::new(),
            start,
            end,
            mode,
            comment: String::new(),
            created: start,
            updated: start,
        }
    }

    /// True if `[start, end)` contains `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.start <= now && now < self.end
    }

    /// True if `user` is the owner or a co-user.
    pub fn is_member(&self, user: &str) -> bool {
        self.owner == user || self.with.iter().any(|u| u == user)
    }

    /// True if the two half-open spans share at least one second.
    pub fn overlaps(&self, other: &Reservation) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Checks every rule of the model for one reservation.
    ///
    /// # Errors
    /// An [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) error naming the
    /// first rule broken.
    pub fn validate(&self) -> Result<()> {
        validate_user_name(&self.owner)?;
        if self.start >= self.end {
            return Err(Error::invalid(
                "the reservation must end after it starts".to_string(),
            ));
        }
        if self.with.len() > limits::MAX_CO_USERS {
            return Err(Error::invalid(format!(
                "a reservation may have at most {} co-users",
                limits::MAX_CO_USERS
            )));
        }
        let mut seen = HashSet::new();
        for user in &self.with {
            validate_user_name(user)?;
            if user == &self.owner || !seen.insert(user.as_str()) {
                return Err(Error::invalid(format!(
                    "{user} is listed twice on the reservation"
                )));
            }
        }
        validate_text("comment", &self.comment, limits::MAX_COMMENT)
    }
}

/// An admin's notice, shown in every session summary while it is current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub id: u64,
    pub author: String,
    pub text: String,
    /// First second the notice is shown (UTC seconds).
    pub start: i64,
    /// First second it is no longer shown; `i64::MAX` for "until removed".
    pub end: i64,
    pub created: i64,
}

impl Notice {
    /// Checks the notice's fields.
    ///
    /// # Errors
    /// An [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) error naming the
    /// first rule broken.
    pub fn validate(&self) -> Result<()> {
        validate_user_name(&self.author)?;
        if self.start >= self.end {
            return Err(Error::invalid("the notice must end after it starts"));
        }
        validate_text("notice", &self.text, limits::MAX_NOTICE)
    }
}

/// Everything the table holds, as owned values: what writers edit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Bumped by every write; lets readers tell two tables apart cheaply.
    pub generation: u64,
    pub reservations: Vec<Reservation>,
    /// Users who may always log in (admin accounts, monitoring). Groups are
    /// expanded to user names by the writer: readers do no NSS lookups.
    pub exempt: Vec<String>,
    pub notices: Vec<Notice>,
}

impl State {
    /// Drops reservations and notices that ended at or before `now`.
    /// Returns how many reservations were dropped.
    pub fn prune(&mut self, now: i64) -> usize {
        let before = self.reservations.len();
        self.reservations.retain(|r| r.end > now);
        self.notices.retain(|n| n.end > now);
        before - self.reservations.len()
    }

    /// Finds a reservation by id.
    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.iter().find(|r| r.id == id)
    }

    /// Checks every rule of the model and every limit of the table format.
    ///
    /// # Errors
    /// An [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) error naming the
    /// first rule broken.
    pub fn validate(&self) -> Result<()> {
        if self.reservations.len() > limits::MAX_RESERVATIONS {
            return Err(Error::invalid(format!(
                "the table holds at most {} reservations",
                limits::MAX_RESERVATIONS
            )));
        }
        if self.exempt.len() > limits::MAX_EXEMPT {
            return Err(Error::invalid(format!(
                "the exemption list holds at most {} users",
                limits::MAX_EXEMPT
            )));
        }
        if self.notices.len() > limits::MAX_NOTICES {
            return Err(Error::invalid(format!(
                "at most {} notices may be posted at once",
                limits::MAX_NOTICES
            )));
        }
        for r in &self.reservations {
            r.validate()?;
        }
        // Sorting the ids is cheaper than hashing them (a daemon write
        // validates a table of thousands of reservations).
        let mut ids: Vec<u64> = self.reservations.iter().map(|r| r.id.0).collect();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(Error::invalid(format!(
                "reservation id {} is used twice",
                ReservationId(pair[0])
            )));
        }
        for user in &self.exempt {
            validate_user_name(user)?;
        }
        for n in &self.notices {
            n.validate()?;
        }
        Ok(())
    }
}

/// Checks a user name: 1 to 64 bytes of ASCII letters, digits, `.`, `_`,
/// `-` and `@` (for directory-backed names like `ann@lab`), not starting with
/// `-`, optionally ending in `$` (Samba machine accounts).
///
/// # Errors
/// An [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) error that shows the
/// rejected name with its special characters escaped.
///
/// # Example
/// ```
/// assert!(libhosthog::validate_user_name("alice").is_ok());
/// assert!(libhosthog::validate_user_name("al ice").is_err());
/// ```
pub fn validate_user_name(name: &str) -> Result<()> {
    let body = name.strip_suffix('$').unwrap_or(name);
    let ok = !body.is_empty()
        && name.len() <= limits::MAX_NAME
        && !body.starts_with('-')
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{} is not a valid user name (letters, digits, '.', '_', '-', '@'; at most {} bytes)",
            name.escape_debug()
                .collect::<String>()
                .chars()
                .take(80)
                .collect::<String>(),
            limits::MAX_NAME
        )))
    }
}

/// Checks free text shown on other people's terminals: bounded length and no
/// control characters at all (no escape sequences, no newlines, no bidi
/// overrides). Display paths sanitize again; this refuses bad input early.
fn validate_text(what: &str, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        return Err(Error::invalid(format!(
            "the {what} is {} bytes long; at most {max} are allowed",
            text.len()
        )));
    }
    // Fast path: printable ASCII is safe, and it is almost every comment;
    // a daemon write validates every comment in the table.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    if let Some(c) = text.chars().find(|c| crate::terminal::is_unsafe(*c)) {
        return Err(Error::invalid(format!(
            "the {what} contains the control character {}; use printable text only",
            c.escape_unicode()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Reservation {
        Reservation {
            id: ReservationId(7),
            owner: "alice".into(),
            with: vec!["bob".into()],
            start: 10,
            end: 20,
            mode: Mode::Exclusive,
            comment: "paper benchmarks, Grüße".into(),
            created: 0,
            updated: 0,
        }
    }

    #[test]
    fn user_names() {
        for ok in [
            "alice",
            "a",
            "svc-backup",
            "ann.lee",
            "ann@lab",
            "host$",
            "_apt",
        ] {
            assert!(validate_user_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(limits::MAX_NAME + 1);
        for bad in ["", "$", "-rf", "al ice", "bob\n", "ça", "a/b", "a:b", &long] {
            assert!(validate_user_name(bad).is_err(), "{bad:?}");
        }
        let err = validate_user_name("bo\u{1b}b").unwrap_err().to_string();
        assert_eq!(
            err,
            "bo\\u{1b}b is not a valid user name (letters, digits, '.', '_', '-', '@'; at most 64 bytes)"
        );
    }

    #[test]
    fn reservation_rules() {
        assert!(valid().validate().is_ok());
        let cases: Vec<(Reservation, &str)> = vec![
            (
                Reservation { end: 10, ..valid() },
                "the reservation must end after it starts",
            ),
            (
                Reservation {
                    comment: "x".repeat(501),
                    ..valid()
                },
                "the comment is 501 bytes long; at most 500 are allowed",
            ),
            (
                Reservation {
                    comment: "a\u{1b}[31mred".into(),
                    ..valid()
                },
                "the comment contains the control character \\u{1b}; use printable text only",
            ),
            (
                Reservation {
                    comment: "two\nlines".into(),
                    ..valid()
                },
                "the comment contains the control character \\u{a}; use printable text only",
            ),
            (
                Reservation {
                    with: vec!["bob".into(), "bob".into()],
                    ..valid()
                },
                "bob is listed twice on the reservation",
            ),
            (
                Reservation {
                    with: vec!["alice".into()],
                    ..valid()
                },
                "alice is listed twice on the reservation",
            ),
        ];
        for (r, message) in cases {
            assert_eq!(r.validate().unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn state_rejects_duplicate_ids_and_prunes_ended() {
        let mut state = State {
            reservations: vec![valid(), valid()],
            ..State::default()
        };
        assert_eq!(
            state.validate().unwrap_err().to_string(),
            "reservation id 0000000000000007 is used twice"
        );
        state.reservations[1].id = ReservationId(8);
        state.reservations[1].end = 30;
        assert!(state.validate().is_ok());
        // Half-open: a reservation ending at 20 has ended at 20.
        assert_eq!(state.prune(20), 1);
        assert_eq!(state.reservations.len(), 1);
        assert_eq!(state.reservations[0].id, ReservationId(8));
    }

    #[test]
    fn ids_print_and_parse() {
        let id = ReservationId(0x0123_4567_89ab_cdef);
        assert_eq!(id.to_string(), "0123456789abcdef");
        assert_eq!(id.short(), "01234567");
        assert_eq!("0123456789abcdef".parse::<ReservationId>().unwrap(), id);
        assert!("0123".parse::<ReservationId>().is_err());
        assert!("+123456789abcdef".parse::<ReservationId>().is_err());
    }
}
