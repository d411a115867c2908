//! The page's writes: every form becomes one protocol `Op`, applied by
//! [`Calendar::request`] exactly as the API and hosthogd's forwards apply
//! it (the single-host rules on every host, in one transaction).

use hosthog_booking::protocol::{Op, Reply};
use jiff::tz::TimeZone;

use crate::calendar::{BookError, Calendar};

/// What a granted change says on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub message: String,
    /// The reservation it concerns, when there is one left to show.
    pub id: Option<String>,
}

/// Applies `op` for `actor`; messages give times in `tz`.
///
/// # Errors
/// The calendar's refusal ([`BookError`]), nothing changed.
pub async fn apply(
    calendar: &Calendar,
    actor: &str,
    op: &Op,
    tz: &TimeZone,
    now: i64,
) -> Result<Done, BookError> {
    let outcome = calendar.request(actor, op, None, tz, now).await?;
    let hosts: Vec<String> = outcome.hosts.iter().map(|(h, _)| h.clone()).collect();
    let (verb, id) = match (&outcome.reply, op) {
        (
            Reply::Reservation(r)
            | Reply::Forced(hosthog_booking::protocol::Forced { reservation: r, .. }),
            Op::Reserve(_),
        ) => ("Booked", Some(r.id)),
        (Reply::Reservation(r), _) => ("Changed", Some(r.id)),
        (Reply::Removed(r), Op::Cancel(_)) => ("Cancelled", Some(r.id)),
        (Reply::Removed(r), _) => ("Released", Some(r.id)),
        (_, _) => ("Done", None),
    };
    Ok(Done {
        message: match id {
            Some(id) => format!("{verb} {} on {}.", id.short(), hosts.join(", ")),
            None => format!("{verb}."),
        },
        id: id.map(|i| i.to_string()),
    })
}
