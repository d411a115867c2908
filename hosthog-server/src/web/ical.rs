//! iCalendar feeds (RFC 5545), as pure functions of the reservations.
//!
//! Times are UTC (`DTSTART:20261130T140000Z`, RFC 5545 3.3.5 form 2), so
//! no VTIMEZONE is needed and every calendar app shows them in its own
//! zone. A reservation is one VEVENT whatever its number of hosts
//! (LOCATION and DESCRIPTION list them), its UID is `ID@hosthog` (stable
//! across edits, and whichever name the feed was fetched by: a UID from
//! the request's Host made a calendar that subscribed through two names
//! show every event twice), SEQUENCE is the reservation's, and a cancelled
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

/// `YYYYMMDDTHHMMSSZ`: the civil UTC date and time of `seconds`
/// (H. Hinnant's days-to-civil; no time zone database needed for UTC).
pub fn utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86400);
    let secs = seconds.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
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
    if content.len() <= 75 {
        out.push_str(content);
        out.push_str("\r\n");
        return;
    }
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

/// One content line being written into the feed, folded as it goes.
struct Folded<'a> {
    out: &'a mut String,
    width: usize,
}

impl<'a> Folded<'a> {
    fn start(out: &'a mut String, name: &str) -> Folded<'a> {
        out.push_str(name);
        Folded {
            width: name.len(),
            out,
        }
    }

    fn push(&mut self, c: char) {
        let n = c.len_utf8();
        if self.width + n > 75 {
            self.out.push_str("\r\n ");
            self.width = 1;
        }
        self.out.push(c);
        self.width += n;
    }

    /// Characters of the format itself (`\n` separators, ASCII values).
    fn raw(&mut self, text: &str) -> &mut Self {
        for c in text.chars() {
            self.push(c);
        }
        self
    }

    /// User text: made safe to show, then TEXT-escaped.
    fn text(&mut self, value: &str) -> &mut Self {
        for c in value.chars() {
            let c = if super::text::is_bidi(c) || c.is_control() {
                '\u{FFFD}'
            } else {
                c
            };
            if matches!(c, '\\' | ';' | ',') {
                self.push('\\');
            }
            self.push(c);
        }
        self
    }

    fn end(&mut self) {
        self.out.push_str("\r\n");
    }
}

/// The domain part of every event's UID (`ID@hosthog`): fixed, so an
/// event's UID depends on nothing but its reservation. Reservation ids are
/// 64 random bits, unique enough across fleets.
pub const UID_DOMAIN: &str = "hosthog";

/// The whole feed: a calendar named `name`, events' UIDs `ID@hosthog`.
pub fn calendar(name: &str, events: &[Event]) -> String {
    let mut out = String::with_capacity(256 + events.len() * 700);
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, "PRODID:-//hosthog//hosthog-server//EN");
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "METHOD:PUBLISH");
    Folded::start(&mut out, "X-WR-CALNAME:").text(name).end();
    for e in events {
        let mode = if e.exclusive { "exclusive" } else { "shared" };
        line(&mut out, "BEGIN:VEVENT");
        Folded::start(&mut out, "UID:")
            .raw(&e.id)
            .raw("@")
            .raw(UID_DOMAIN)
            .end();
        for (name, t) in [
            ("DTSTAMP:", e.updated),
            ("CREATED:", e.created),
            ("LAST-MODIFIED:", e.updated),
            ("DTSTART:", e.start),
            ("DTEND:", e.end),
        ] {
            out.push_str(name);
            out.push_str(&utc(t));
            out.push_str("\r\n");
        }
        let _ = write!(out, "SEQUENCE:{}\r\n", e.sequence.max(0));
        out.push_str(if e.cancelled {
            "STATUS:CANCELLED\r\n"
        } else {
            "STATUS:CONFIRMED\r\n"
        });
        out.push_str("TRANSP:OPAQUE\r\n");
        let hosts = |f: &mut Folded<'_>| {
            for (i, h) in e.hosts.iter().enumerate() {
                if i > 0 {
                    f.text(", ");
                }
                f.text(h);
            }
        };
        let mut f = Folded::start(&mut out, "SUMMARY:");
        hosts(&mut f);
        f.text(": ").text(&e.owner).raw(" (").raw(mode).raw(")");
        if !e.comment.is_empty() {
            f.raw(" ").text(&e.comment);
        }
        f.end();
        let mut f = Folded::start(&mut out, "LOCATION:");
        hosts(&mut f);
        f.end();
        let mut f = Folded::start(&mut out, "DESCRIPTION:Hosts: ");
        hosts(&mut f);
        f.raw("\\nOwner: ")
            .text(&e.owner)
            .raw("\\nMode: ")
            .raw(mode);
        if !e.co_users.is_empty() {
            f.raw("\\nWith: ");
            for (i, u) in e.co_users.iter().enumerate() {
                if i > 0 {
                    f.text(", ");
                }
                f.text(u);
            }
        }
        if !e.comment.is_empty() {
            f.raw("\\nComment: ").text(&e.comment);
        }
        f.raw("\\nReservation: ").raw(&e.id).end();
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
    fn every_line_of_a_feed_is_folded() {
        let mut e = event();
        e.comment = "ü,;\\".repeat(60);
        let feed = calendar("alice", &[e.clone()]);
        for l in feed.split("\r\n") {
            assert!(l.len() <= 75, "{} octets: {l:?}", l.len());
        }
        let unfolded = feed.replace("\r\n ", "");
        assert!(unfolded.contains(&format!("\\nComment: {}\\n", text(&e.comment))));
    }

    #[test]
    fn utc_times_match_jiff() {
        for t in [0, 951_782_400, 1_795_000_000, 4_102_444_799, -86_401] {
            let expected = jiff::Timestamp::from_second(t)
                .unwrap()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string();
            assert_eq!(utc(t), expected, "{t}");
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
        let feed = calendar("alice", &[event()]);
        assert!(feed.ends_with("END:VCALENDAR\r\n"));
        assert_eq!(feed.matches("BEGIN:VEVENT").count(), 1);
        let unfolded = feed.replace("\r\n ", "");
        for expected in [
            "UID:00000000000000ab@hosthog\r\n",
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
