//! The MOTD fragment: what pam_motd shows at every login, from
//! `/run/motd.d/hosthog`. hosthogd rewrites it at every change and every
//! start and end; `hosthog motd` prints the same text. Both call
//! [`render_motd`], so they cannot disagree.
//!
//! Admin notices are not in it: pam_hosthog's session summary shows them
//! (libhosthog/src/summary.rs), and a login that runs both pam_motd and
//! the summary would show each notice twice. The summary is the one place
//! because it is always in hosthog's PAM stack, where pam_motd may not be.

use std::fmt::Write as _;

use jiff::tz::TimeZone;

use libhosthog::{Reservation, State, format_instant, sanitize};

/// Where hosthogd writes the fragment unless told otherwise.
pub const MOTD_PATH: &str = "/run/motd.d/hosthog";
/// Most reservations listed; the rest are counted.
pub const MAX_MOTD_RESERVATIONS: usize = 12;

/// The reservations the fragment lists (and `hosthog list` shows): not
/// ended, by start, then id.
pub fn listed(state: &State, now: i64) -> Vec<&Reservation> {
    let mut list: Vec<&Reservation> = state.reservations.iter().filter(|r| r.end > now).collect();
    list.sort_by_key(|r| (r.start, r.id));
    list
}

/// The fragment at `now`, times in `tz`: the reservations `hosthog list`
/// shows (not ended; by start, then id) with the one in force marked
/// `now` (not the notices: see the module's documentation). Ends with a
/// newline; all user text is sanitized.
///
/// # Example
/// ```
/// use libhosthog::*;
/// use hosthogd::motd::render_motd;
/// let state = State { reservations: vec![Reservation {
///     id: ReservationId(0x1234abcd_00000000), owner: "alice".into(), with: vec!["bob".into()],
///     start: 0, end: 7200, mode: Mode::Exclusive,
///     comment: "paper".into(), created: 0, updated: 0 }], ..State::default() };
/// let text = render_motd(&state, 60, &jiff::tz::TimeZone::UTC);
/// assert_eq!(text, "hosthog: reservations of this host (hosthog list shows more):\n\
///                   \x20 1234abcd  now, until 02:00 UTC  exclusive  alice with bob  \"paper\"\n");
/// assert_eq!(render_motd(&State::default(), 60, &jiff::tz::TimeZone::UTC),
///     "hosthog: this host is not reserved (hosthog reserve books it).\n");
/// ```
pub fn render_motd(state: &State, now: i64, tz: &TimeZone) -> String {
    let list = listed(state, now);
    let mut out = String::new();
    if list.is_empty() {
        out.push_str("hosthog: this host is not reserved (hosthog reserve books it).\n");
    } else {
        out.push_str("hosthog: reservations of this host (hosthog list shows more):\n");
        let rows: Vec<[String; 5]> = list
            .iter()
            .take(MAX_MOTD_RESERVATIONS)
            .map(|r| {
                let when = if r.is_active(now) {
                    format!("now, until {}", format_instant(r.end, now, tz))
                } else {
                    format!(
                        "{} to {}",
                        format_instant(r.start, now, tz),
                        format_instant(r.end, now, tz)
                    )
                };
                let mut holders = sanitize(&r.owner).into_owned();
                if !r.with.is_empty() {
                    let _ = write!(holders, " with {}", sanitize(&r.with.join(", ")));
                }
                let comment = if r.comment.is_empty() {
                    String::new()
                } else {
                    format!(
                        "\"{}\"",
                        libhosthog::user_text(&r.comment, libhosthog::describe::MAX_COMMENT_SHOWN)
                    )
                };
                [r.id.short(), when, r.mode.to_string(), holders, comment]
            })
            .collect();
        let mut widths = [0usize; 5];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::from(" ");
            for (cell, w) in row.iter().zip(widths) {
                line.push(' ');
                line.push_str(cell);
                line.push_str(&" ".repeat(w.saturating_sub(cell.chars().count()) + 1));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let more = list.len().saturating_sub(MAX_MOTD_RESERVATIONS);
        if more > 0 {
            let _ = writeln!(out, "  ... and {more} more");
        }
    }
    // The one notice that is hosthogd's own: how old a fleet host's copy
    // of the calendar is, when it is stale (crate::fleet). The reservations
    // above are only as good as that copy, so the fragment says it too.
    for notice in state
        .notices
        .iter()
        .filter(|n| n.id == crate::service::FLEET_NOTICE_ID)
    {
        let _ = writeln!(out, "hosthog: {}", sanitize(&notice.text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use libhosthog::{Mode, Notice, ReservationId};

    fn res(id: u64, owner: &str, start: i64, end: i64) -> Reservation {
        Reservation {
            id: ReservationId(id << 32),
            owner: owner.into(),
            with: vec![],
            start,
            end,
            mode: Mode::Shared,
            comment: String::new(),
            created: 0,
            updated: 0,
        }
    }

    #[test]
    fn a_stale_fleet_calendar_is_said() {
        let mut state = State::default();
        state.notices.push(Notice {
            id: crate::service::FLEET_NOTICE_ID,
            author: "hosthog".into(),
            text: "calendar last synced 7 min ago: https://cal cannot be reached\x1b[2J".into(),
            start: 0,
            end: i64::MAX,
            created: 0,
        });
        assert_eq!(
            render_motd(&state, 60, &TimeZone::UTC),
            "hosthog: this host is not reserved (hosthog reserve books it).\n\
             hosthog: calendar last synced 7 min ago: https://cal cannot be reached?[2J\n"
        );
    }

    #[test]
    fn lists_what_list_lists_in_the_same_order() {
        let mut state = State::default();
        for i in 0..20u64 {
            state.reservations.push(res(
                0x100 + (19 - i),
                "alice",
                100 + i as i64,
                200 + i as i64,
            ));
        }
        state.reservations.push(res(0x999, "gone", 0, 50));
        state.notices.push(Notice {
            id: 1,
            author: "dave".into(),
            text: "kernel \u{1b}[1mupdate".into(),
            start: 0,
            end: i64::MAX,
            created: 0,
        });
        state.notices.push(Notice {
            id: 2,
            author: "dave".into(),
            text: "later".into(),
            start: 1000,
            end: i64::MAX,
            created: 0,
        });
        let text = render_motd(&state, 105, &TimeZone::UTC);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + MAX_MOTD_RESERVATIONS + 1, "{text}");
        assert!(
            lines[1].starts_with("  00000113  now, until 00:03 UTC "),
            "{text}"
        );
        assert!(lines[1].ends_with("  shared  alice"), "{text}");
        assert!(lines[6].starts_with("  0000010e  now,"), "{text}");
        assert!(
            lines[7].starts_with("  0000010d  00:01 UTC to 00:03 UTC"),
            "{text}"
        );
        assert_eq!(lines[13], "  ... and 8 more");
        // Notices are the session summary's, not shown twice.
        assert!(!text.contains("notice"), "{text}");
        assert!(!text.contains("gone"));
    }
}
