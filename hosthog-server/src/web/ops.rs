//! The page's writes: every form becomes one protocol `Op`, applied by
//! the calendar exactly as the API and hosthogd's forwards apply it.

use hosthog_booking::protocol::Op;
use libhosthog::ReservationId;

use crate::calendar::{BookError, Calendar, NewReservation};

/// What a granted change says on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub message: String,
    /// The reservation it concerns, when there is one left to show.
    pub id: Option<String>,
}

fn random_id() -> Result<ReservationId, BookError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| BookError::Invalid(format!("no randomness for an id: {e}")))?;
    Ok(ReservationId(u64::from_le_bytes(bytes)))
}

fn full_id(id: &str) -> Result<ReservationId, BookError> {
    id.parse()
        .map_err(|_| BookError::NotFound(format!("there is no reservation {id}")))
}

/// Applies `op` for `actor`.
///
/// # Errors
/// The calendar's refusal ([`BookError`]), nothing changed.
pub async fn apply(
    calendar: &Calendar,
    actor: &str,
    op: &Op,
    now: i64,
) -> Result<Done, BookError> {
    match op {
        Op::Reserve(args) => {
            let id = random_id()?;
            let request = NewReservation {
                id,
                owner: actor.to_string(),
                co_users: args.with.clone(),
                mode: args.mode,
                comment: args.comment.clone(),
                start: args.start,
                end: args.end,
            };
            let booked = calendar.book(actor, &args.hosts, &request, now).await?;
            let hosts: Vec<String> = booked.hosts.into_iter().map(|(h, _)| h).collect();
            Ok(Done {
                message: format!("Booked {} ({}).", hosts.join(", "), id.short()),
                id: Some(id.to_string()),
            })
        }
        Op::Release(args) | Op::Cancel(args) => {
            let id = full_id(&args.id)?;
            calendar.release(actor, id, now).await?;
            Ok(Done {
                message: format!("Reservation {} ended.", id.short()),
                id: None,
            })
        }
        other => Err(BookError::Invalid(format!(
            "{} is not available from the page yet",
            other.name()
        ))),
    }
}
