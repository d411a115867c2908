//! The booking rule every writer applies before adding or changing a
//! reservation.

use libhosthog::{Mode, Reservation};

/// The reservations in `existing` that `candidate` may not coexist with.
///
/// Two reservations conflict when their spans overlap and at least one of
/// them is exclusive: an exclusive reservation may not overlap any other
/// reservation, its owner's own included (booking the same slot twice is a
/// mistake, and two overlapping reservations of one owner would each need
/// changing); shared ones may overlap each other. A reservation never
/// conflicts with itself (same id, as when it is being edited).
///
/// # Example
/// ```
/// use hosthog_booking::conflicts;
/// use libhosthog::{Mode, Reservation, ReservationId};
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
                && r.overlaps(candidate)
                && (r.mode == Mode::Exclusive || candidate.mode == Mode::Exclusive)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use libhosthog::ReservationId;

    fn r(id: u64, owner: &str, start: i64, end: i64, mode: Mode) -> Reservation {
        Reservation {
            created: 0,
            updated: 0,
            ..Reservation::new(ReservationId(id), owner, start, end, mode)
        }
    }

    #[test]
    fn overlap_rule_table() {
        use Mode::{Exclusive as X, Shared as S};
        let existing = [r(1, "alice", 100, 200, X), r(2, "bob", 300, 400, S)];
        #[rustfmt::skip]
        let cases: &[(Reservation, &[u64])] = &[
            // another owner's exclusive overlapping alice's exclusive
            (r(10, "carol", 150, 250, X), &[1]),
            // another owner's shared overlapping alice's exclusive
            (r(11, "carol", 199, 250, S), &[1]),
            // touching ends do not overlap (half-open)
            (r(12, "carol", 200, 300, X), &[]),
            (r(13, "carol", 50, 100, X), &[]),
            // shared over shared is fine
            (r(14, "carol", 350, 450, S), &[]),
            // exclusive over someone's shared is not
            (r(15, "carol", 350, 450, X), &[2]),
            // spanning both
            (r(16, "carol", 0, 1000, X), &[1, 2]),
            (r(17, "carol", 0, 1000, S), &[1]),
            // the same owner may not book an exclusive slot twice
            (r(18, "alice", 150, 250, X), &[1]),
            (r(20, "alice", 150, 250, S), &[1]),
            (r(21, "bob", 350, 450, S), &[]),
            // editing a reservation does not conflict with itself
            (r(1, "alice", 100, 300, X), &[]),
            // a reservation strictly inside another
            (r(19, "dave", 120, 130, S), &[1]),
        ];
        for (candidate, expect) in cases {
            let got: Vec<u64> = conflicts(&existing, candidate)
                .iter()
                .map(|c| c.id.0)
                .collect();
            assert_eq!(&got, expect, "candidate {candidate:?}");
        }
    }
}
