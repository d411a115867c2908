//! The booking rule every writer applies before adding or changing a
//! reservation.

use crate::model::{Mode, Reservation};

/// The reservations in `existing` that `candidate` may not coexist with.
///
/// Two reservations conflict when their spans overlap, they belong to
/// different owners, and at least one of them is exclusive: an exclusive
/// reservation may not overlap another owner's reservation of any kind;
/// shared ones may overlap each other. A reservation never conflicts with
/// itself (same id, as when it is being edited) nor with its owner's own.
///
/// # Example
/// ```
/// use hosthog::{conflicts, Mode, Reservation, ReservationId};
/// let r = |id, owner: &str, start, end, mode| Reservation {
///     id: ReservationId(id), owner: owner.into(), with: vec![], start, end,
///     mode, comment: String::new(), created: 0, updated: 0 };
/// let existing = [r(1, "alice", 100, 200, Mode::Exclusive)];
/// assert_eq!(conflicts(&existing, &r(2, "bob", 150, 250, Mode::Shared)).len(), 1);
/// assert!(conflicts(&existing, &r(3, "bob", 200, 300, Mode::Exclusive)).is_empty());
/// ```
pub fn conflicts<'a>(existing: &'a [Reservation], candidate: &Reservation) -> Vec<&'a Reservation> {
    existing
        .iter()
        .filter(|r| {
            r.id != candidate.id
                && r.owner != candidate.owner
                && r.overlaps(candidate)
                && (r.mode == Mode::Exclusive || candidate.mode == Mode::Exclusive)
        })
        .collect()
}
