//! Showing instants to people, in the host's local time.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Formats `at` (UTC seconds) for a person reading it at `now`: `18:00 CET`
/// when it falls on the same local day as `now`, `Tue 24 Nov 18:00 CET`
/// within the year, and `2027-01-05 18:00 CET` otherwise.
///
/// # Example
/// ```
/// use jiff::tz::TimeZone;
/// let now = 1_767_261_600; // 2026-01-01 10:00 UTC
/// assert_eq!(libhosthog::format_instant(now + 3600, now, &TimeZone::UTC), "11:00 UTC");
/// assert_eq!(libhosthog::format_instant(now + 86_400, now, &TimeZone::UTC), "Fri 2 Jan 10:00 UTC");
/// ```
pub fn format_instant(at: i64, now: i64, tz: &TimeZone) -> String {
    let (Ok(at), Ok(now)) = (Timestamp::from_second(at), Timestamp::from_second(now)) else {
        return format!("@{at}");
    };
    let at = at.to_zoned(tz.clone());
    let now = now.to_zoned(tz.clone());
    let pattern = if at.date() == now.date() {
        "%H:%M %Z"
    } else if at.year() == now.year() {
        "%a %-d %b %H:%M %Z"
    } else {
        "%Y-%m-%d %H:%M %Z"
    };
    at.strftime(pattern).to_string()
}
