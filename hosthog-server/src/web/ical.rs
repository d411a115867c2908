//! iCalendar feeds (RFC 5545), as pure functions of the reservations.
//!
//! Times are UTC (`DTSTART:20261130T140000Z`, RFC 5545 3.3.5 form 2), so
//! no VTIMEZONE is needed and every calendar app shows them in its own
//! zone. A reservation is one VEVENT whatever its number of hosts
//! (LOCATION and DESCRIPTION list them), its UID is its id at the server
//! (stable across edits), SEQUENCE is the reservation's, and a cancelled
//! one stays in the feed with STATUS:CANCELLED so subscribed calendars
//! drop it. Lines end in CRLF and are folded at 75 octets; TEXT values
//! escape `\`, `;`, `,` and newlines, and user text has its control and
//! bidi characters replaced first (super::text::display).

use std::fmt::Write;

/// One reservation, as a feed shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The reservation id (16 hex digits).
    pub id: String,
    pub owner: String,
    pub co_users: Vec<String>,
    pub hosts: Vec<String>,
    pub exclusive: bool,
    pub comment: String,
    /// UTC seconds.
    pub start: i64,
    pub end: i64,
    pub created: i64,
    pub updated: i64,
    pub sequence: i64,
    pub cancelled: bool,
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn utc(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(t) => t.strftime("%Y%m%dT%H%M%SZ").to_string(),
        Err(_) => "19700101T000000Z".to_string(),
    }
}

/// A TEXT value (RFC 5545 3.3.11): user text made safe to show, then
/// escaped.
pub fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in super::text::display(value).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            c => out.push(c),
        }
    }
    out
}

/// Appends one content line, folded at 75 octets (never inside a UTF-8
/// character), ending in CRLF.
pub fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            // The space that starts a continuation line counts.
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

/// The whole feed: a calendar named `name`, events' UIDs `ID@server`.
pub fn calendar(name: &str, server: &str, events: &[Event]) -> String {
    let mut out = String::with_capacity(256 + events.len() * 600);
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, "PRODID:-//hosthog//hosthog-server//EN");
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "METHOD:PUBLISH");
    line(&mut out, &format!("X-WR-CALNAME:{}", text(name)));
    let mut buf = String::new();
    for e in events {
        let mode = if e.exclusive { "exclusive" } else { "shared" };
        let hosts = e.hosts.join(", ");
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}@{}", e.id, text(server)));
        line(&mut out, &format!("DTSTAMP:{}", utc(e.updated)));
        line(&mut out, &format!("CREATED:{}", utc(e.created)));
        line(&mut out, &format!("LAST-MODIFIED:{}", utc(e.updated)));
        line(&mut out, &format!("DTSTART:{}", utc(e.start)));
        line(&mut out, &format!("DTEND:{}", utc(e.end)));
        line(&mut out, &format!("SEQUENCE:{}", e.sequence.max(0)));
        let status = if e.cancelled {
            "CANCELLED"
        } else {
            "CONFIRMED"
        };
        line(&mut out, &format!("STATUS:{status}"));
        line(&mut out, "TRANSP:OPAQUE");
        buf.clear();
        let _ = write!(buf, "{hosts}: {} ({mode})", e.owner);
        if !e.comment.is_empty() {
            let _ = write!(buf, " {}", e.comment);
        }
        line(&mut out, &format!("SUMMARY:{}", text(&buf)));
        line(&mut out, &format!("LOCATION:{}", text(&hosts)));
        let mut description = vec![
            format!("Hosts: {}", text(&hosts)),
            format!("Owner: {}", text(&e.owner)),
            format!("Mode: {mode}"),
        ];
        if !e.co_users.is_empty() {
            description.push(format!("With: {}", text(&e.co_users.join(", "))));
        }
        if !e.comment.is_empty() {
            description.push(format!("Comment: {}", text(&e.comment)));
        }
        description.push(format!("Reservation: {}", e.id));
        line(
            &mut out,
            &format!("DESCRIPTION:{}", description.join("\\n")),
        );
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            id: "00000000000000ab".into(),
            owner: "alice".into(),
            co_users: vec!["bob".into()],
            hosts: vec!["gpu1".into(), "gpu2".into()],
            exclusive: true,
            comment: "a; b, c\\d \u{202E}x".into(),
            start: 1_795_000_000,
            end: 1_795_003_600,
            created: 1_794_990_000,
            updated: 1_794_990_100,
            sequence: 2,
            cancelled: false,
        }
    }

    #[test]
    fn text_is_escaped_and_bidi_neutralized() {
        assert_eq!(
            text("a;b,c\\d\ne\u{202E}"),
            "a\\;b\\,c\\\\d\u{FFFD}e\u{FFFD}"
        );
    }

    #[test]
    fn lines_fold_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let long = format!("SUMMARY:{}", "é".repeat(100));
        line(&mut out, &long);
        for l in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(l.len() <= 75, "{} octets: {l}", l.len());
        }
        let unfolded = out.replace("\r\n ", "");
        assert_eq!(unfolded, format!("{long}\r\n"));
    }

    #[test]
    fn one_event_per_reservation_with_its_hosts() {
        let feed = calendar("alice", "cal.lab", &[event()]);
        assert!(feed.ends_with("END:VCALENDAR\r\n"));
        assert_eq!(feed.matches("BEGIN:VEVENT").count(), 1);
        let unfolded = feed.replace("\r\n ", "");
        for expected in [
            "UID:00000000000000ab@cal.lab\r\n",
            "DTSTART:20261118T110640Z\r\n",
            "SEQUENCE:2\r\n",
            "STATUS:CONFIRMED\r\n",
            "LOCATION:gpu1\\, gpu2\r\n",
        ] {
            assert!(unfolded.contains(expected), "{expected:?} in {unfolded}");
        }
        assert!(!feed.contains('\u{202E}'));
        assert!(!feed.replace("\r\n", "").contains('\n'));
    }
}
