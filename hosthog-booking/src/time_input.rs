//! Reading times and durations the way people type them.
//!
//! Durations: `2h`, `90m`, `1h30m`, `1h 30m`, `2 hours`, `1d`, `45min`.
//! Instants: `now`, `in 2h`, `18:00` (a time of day already past means
//! tomorrow), `9am`, `9:30pm`, `today 14:00`, `tomorrow 9:00`,
//! `monday 9am`, `next monday 9am`, `2026-12-01 14:00`, `2026-12-01T14:00`,
//! and RFC 3339 with an offset (`2026-12-01T14:00:00+01:00`, `…Z`). A
//! leading `until` or `at` is ignored, so `--until "until 18:00"` reads well.
//!
//! Durations are tried first wherever both could apply: `2h` is two hours
//! from now, never 02:00. A bare number (`18`, `1800`) is refused as
//! ambiguous. Local times are read in the zone given (the host's), and a
//! local time that falls in a daylight-saving gap or fold resolves the way
//! most software does (`compatible`: the later instant in a gap, the
//! earlier in a fold).

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;

use libhosthog::{Error, Result};

/// Longest input accepted, in bytes; anything longer is surely not a time.
const MAX_INPUT: usize = 64;

const EXAMPLES: &str =
    "e.g. \"2h\", \"18:00\", \"tomorrow 9:00\", \"next monday 9am\", \"2026-12-01 14:00\"";

/// The time zone a user set in `TZ`: an IANA name (`Europe/Berlin`, also
/// written `:Europe/Berlin`) or a POSIX TZ string
/// (`CET-1CEST,M3.5.0,M10.5.0/3`). The `hosthog` command sends it with
/// each request, and hosthogd writes that request's messages in it.
/// File paths are refused: hosthogd opens no file a client names.
///
/// # Errors
/// [`ErrorKind::Invalid`](libhosthog::ErrorKind::Invalid) naming the value.
///
/// # Example
/// ```
/// use hosthog_booking::parse_time_zone;
/// assert_eq!(parse_time_zone("Europe/Berlin").unwrap().iana_name(), Some("Europe/Berlin"));
/// assert!(parse_time_zone("CET-1CEST,M3.5.0,M10.5.0/3").is_ok());
/// assert!(parse_time_zone("Mars/Olympus_Mons").is_err());
/// assert!(parse_time_zone("/etc/shadow").is_err());
/// assert!(parse_time_zone("../../etc/shadow").is_err());
/// ```
pub fn parse_time_zone(name: &str) -> Result<TimeZone> {
    let bad = || {
        Error::invalid(format!(
            "TZ={:?} is not a time zone hosthog knows; use an IANA name such as Europe/Berlin, \
             or unset TZ for the host's zone",
            name.chars().take(MAX_INPUT).collect::<String>()
        ))
    };
    let plain = name.strip_prefix(':').unwrap_or(name);
    if plain.is_empty()
        || plain.len() > MAX_INPUT
        || plain.starts_with('/')
        || plain.contains("..")
        || !plain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+-.,:<>".contains(&b))
    {
        return Err(bad());
    }
    if let Ok(tz) = TimeZone::get(plain) {
        return Ok(tz);
    }
    TimeZone::posix(plain).map_err(|_| bad())
}

/// Reads a duration in seconds. It must be positive.
///
/// # Errors
/// [`ErrorKind::Invalid`](libhosthog::ErrorKind::Invalid) with a sentence naming
/// the input and showing accepted forms.
///
/// # Example
/// ```
/// assert_eq!(hosthog_booking::parse_duration("1h30m").unwrap(), 5400);
/// assert_eq!(hosthog_booking::parse_duration("90 minutes").unwrap(), 5400);
/// assert!(hosthog_booking::parse_duration("18:00").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<i64> {
    let text = normalize(input)?;
    match duration(&text) {
        Some(0) => Err(Error::invalid(format!(
            "{} is a zero duration; give a positive one like \"2h\"",
            quoted(input)
        ))),
        Some(secs) => Ok(secs),
        None => Err(Error::invalid(format!(
            "{} is not a duration; use e.g. \"2h\", \"90m\", \"1h30m\", \"1d\"",
            quoted(input)
        ))),
    }
}

/// Reads an instant (UTC seconds) relative to `now` in time zone `tz`.
///
/// # Errors
/// [`ErrorKind::Invalid`](libhosthog::ErrorKind::Invalid) with a sentence naming
/// the input and showing accepted forms.
///
/// # Example
/// ```
/// use jiff::tz::TimeZone;
/// let now = 1_767_261_600; // Thu 2026-01-01 10:00 UTC
/// let at = |s| hosthog_booking::parse_instant(s, now, &TimeZone::UTC).unwrap();
/// assert_eq!(at("2h"), now + 7200);
/// assert_eq!(at("18:00"), now + 8 * 3600);
/// assert_eq!(at("9:00"), now + 23 * 3600); // already past today: tomorrow
/// assert_eq!(at("tomorrow 9am"), now + 23 * 3600);
/// ```
pub fn parse_instant(input: &str, now: i64, tz: &TimeZone) -> Result<i64> {
    let text = normalize(input)?;
    let text = strip_word(&text, "until")
        .or_else(|| strip_word(&text, "at"))
        .unwrap_or(&text)
        .to_string();
    let bad = || {
        Error::invalid(format!(
            "cannot read {} as a time; use {EXAMPLES}",
            quoted(input)
        ))
    };
    if text == "now" {
        return Ok(now);
    }
    // Durations first: "2h" is two hours from now, never 02:00.
    if let Some(secs) = strip_word(&text, "in")
        .and_then(duration)
        .or_else(|| duration(&text))
    {
        return now.checked_add(secs).ok_or_else(bad);
    }
    if let Ok(ts) = text.to_uppercase().parse::<Timestamp>() {
        return Ok(ts.as_second());
    }
    let now_ts = Timestamp::from_second(now).map_err(|_| bad())?;
    let today = now_ts.to_zoned(tz.clone()).date();
    let local = |date: Date, time: Time| -> Result<i64> {
        tz.to_ambiguous_zoned(DateTime::from_parts(date, time))
            .compatible()
            .map(|z| z.timestamp().as_second())
            .map_err(|_| bad())
    };

    let words: Vec<&str> = text.split(' ').collect();
    match words.as_slice() {
        [date, time] if date.contains('-') => {
            let date: Date = date.parse().map_err(|_| bad())?;
            local(date, time_of_day(time).ok_or_else(bad)?)
        }
        [one] if one.contains('-') && one.contains('t') => {
            let dt: DateTime = one.parse().map_err(|_| bad())?;
            local(dt.date(), dt.time())
        }
        [one] if one.len() == 10 && one.contains('-') => Err(Error::invalid(format!(
            "{} has no time of day; add one, e.g. \"{one} 09:00\"",
            quoted(input)
        ))),
        ["today" | "tomorrow"] => Err(Error::invalid(format!(
            "{} needs a time of day, e.g. \"{text} 9:00\"",
            quoted(input)
        ))),
        [time] => {
            let time = time_of_day(time).ok_or_else(bad)?;
            let at = local(today, time)?;
            if at > now {
                Ok(at)
            } else {
                local(today.tomorrow().map_err(|_| bad())?, time)
            }
        }
        ["today", time] => local(today, time_of_day(time).ok_or_else(bad)?),
        ["tomorrow", time] => local(
            today.tomorrow().map_err(|_| bad())?,
            time_of_day(time).ok_or_else(bad)?,
        ),
        [day, time] | ["next", day, time] => {
            let weekday = weekday(day).ok_or_else(bad)?;
            let time = time_of_day(time).ok_or_else(bad)?;
            let strictly_after_today = words.first() == Some(&"next");
            let mut date = today;
            for _ in 0..8 {
                if date.weekday() == weekday && (date != today || !strictly_after_today) {
                    let at = local(date, time)?;
                    if at > now || strictly_after_today {
                        return Ok(at);
                    }
                }
                date = date.tomorrow().map_err(|_| bad())?;
            }
            Err(bad())
        }
        _ => Err(bad()),
    }
}

fn quoted(input: &str) -> String {
    let shown: String = input.chars().take(MAX_INPUT).collect();
    format!("{:?}", shown)
}

/// Lower-cases, trims and collapses whitespace; refuses huge inputs.
fn normalize(input: &str) -> Result<String> {
    if input.len() > MAX_INPUT {
        return Err(Error::invalid(format!(
            "the time {}… is {} bytes long; that is not a time",
            quoted(&input.chars().take(20).collect::<String>()),
            input.len()
        )));
    }
    Ok(input
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase())
}

fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    text.strip_prefix(word)?.strip_prefix(' ')
}

/// `2h`, `90m`, `1h30m`, `1h 30m`, `2 hours`, `1d`: a sum of number-unit
/// pairs. `None` if the text is not entirely such pairs.
fn duration(text: &str) -> Option<i64> {
    let compact: String = text.chars().filter(|c| *c != ' ').collect();
    let mut total: i64 = 0;
    let mut rest = compact.as_str();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            _ => return None,
        };
        let n: i64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(scale)?)?;
        rest = tail;
    }
    Some(total)
}

/// `18:00`, `9:05`, `18:00:30`, `9am`, `9:30pm`, `12am` (midnight).
fn time_of_day(text: &str) -> Option<Time> {
    let (clock, meridiem) = if let Some(c) = text.strip_suffix("am") {
        (c, Some(false))
    } else if let Some(c) = text.strip_suffix("pm") {
        (c, Some(true))
    } else {
        (text, None)
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let number = |s: &str| -> Option<i8> {
        if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (hour, minute, second) = match (parts.as_slice(), meridiem) {
        ([h], Some(_)) => (number(h)?, 0, 0),
        ([h, m], _) if m.len() == 2 => (number(h)?, number(m)?, 0),
        ([h, m, s], None) if m.len() == 2 && s.len() == 2 => (number(h)?, number(m)?, number(s)?),
        _ => return None,
    };
    let hour = match meridiem {
        Some(pm) if (1..=12).contains(&hour) => hour % 12 + if pm { 12 } else { 0 },
        Some(_) => return None,
        None => hour,
    };
    Time::new(hour, minute, second, 0).ok()
}

fn weekday(text: &str) -> Option<Weekday> {
    Some(match text {
        "monday" | "mon" => Weekday::Monday,
        "tuesday" | "tue" | "tues" => Weekday::Tuesday,
        "wednesday" | "wed" => Weekday::Wednesday,
        "thursday" | "thu" | "thurs" => Weekday::Thursday,
        "friday" | "fri" => Weekday::Friday,
        "saturday" | "sat" => Weekday::Saturday,
        "sunday" | "sun" => Weekday::Sunday,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thu 2026-01-01 10:00:00 UTC.
    const NOW: i64 = 1_767_261_600;
    const H: i64 = 3600;

    #[test]
    fn durations() {
        for (text, secs) in [
            ("2h", 2 * H),
            ("90m", 5400),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("2 hours", 2 * H),
            ("45min", 2700),
            ("1d", 24 * H),
            ("1w", 7 * 24 * H),
            (" 2H ", 2 * H),
        ] {
            assert_eq!(parse_duration(text).unwrap(), secs, "{text}");
        }
        for bad in [
            "",
            "0h",
            "0m0s",
            "h",
            "2",
            "18:00",
            "-2h",
            "2x",
            "1h-30m",
            "9999999999h",
            "2h ago",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_duration("0h").unwrap_err().to_string(),
            "\"0h\" is a zero duration; give a positive one like \"2h\""
        );
    }

    #[test]
    fn instants_in_utc() {
        let tz = TimeZone::UTC;
        #[rustfmt::skip]
        let cases = [
            ("now", NOW),
            ("2h", NOW + 2 * H),
            ("in 90m", NOW + 5400),
            ("until 18:00", NOW + 8 * H),
            ("18:00", NOW + 8 * H),
            ("at 6pm", NOW + 8 * H),
            ("10:00", NOW + 24 * H),       // now exactly: past, so tomorrow
            ("10:01", NOW + 60),
            ("9:00", NOW + 23 * H),
            ("12am", NOW + 14 * H),        // midnight tonight
            ("12pm", NOW + 2 * H),         // noon
            ("today 14:00", NOW + 4 * H),
            ("today 9:00", NOW - H),       // explicit: in the past (caller refuses)
            ("tomorrow 9:00", NOW + 23 * H),
            ("Tomorrow 9AM", NOW + 23 * H),
            ("friday 9am", NOW + 23 * H),  // 2026-01-02 is a Friday
            ("thursday 11:00", NOW + H),   // today, still ahead
            ("thursday 9:00", NOW + 7 * 24 * H - H), // today but past: next week
            ("next thursday 11:00", NOW + 7 * 24 * H + H),
            ("next monday 9am", NOW + 4 * 24 * H - H),
            ("2026-12-01 14:00", 1_796_133_600),
            ("2026-12-01T14:00", 1_796_133_600),
            ("2026-12-01T14:00:00Z", 1_796_133_600),
            ("2026-12-01T15:00:00+01:00", 1_796_133_600),
        ];
        for (text, expect) in cases {
            assert_eq!(parse_instant(text, NOW, &tz).unwrap(), expect, "{text}");
        }
    }

    #[test]
    fn refused_instants() {
        let tz = TimeZone::UTC;
        for bad in [
            "",
            "18",
            "1800",
            "25:00",
            "18:60",
            "13pm",
            "0am",
            "tomorrow",
            "noonish",
            "2026-13-01 10:00",
            "2026-12-01",
            "someday 9:00",
            "next 9:00",
            "18:00 tomorrow",
            "9:5",
            "\u{1b}[2J",
        ] {
            assert!(parse_instant(bad, NOW, &tz).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_instant("18", NOW, &tz).unwrap_err().to_string(),
            "cannot read \"18\" as a time; use e.g. \"2h\", \"18:00\", \"tomorrow 9:00\", \"next monday 9am\", \"2026-12-01 14:00\""
        );
        assert_eq!(
            parse_instant("tomorrow", NOW, &tz).unwrap_err().to_string(),
            "\"tomorrow\" needs a time of day, e.g. \"tomorrow 9:00\""
        );
        assert_eq!(
            parse_instant("2026-12-01", NOW, &tz)
                .unwrap_err()
                .to_string(),
            "\"2026-12-01\" has no time of day; add one, e.g. \"2026-12-01 09:00\""
        );
        let huge = "1".repeat(100_000);
        assert!(
            parse_instant(&huge, NOW, &tz)
                .unwrap_err()
                .to_string()
                .contains("100000 bytes long")
        );
    }

    #[test]
    fn local_zone_and_dst() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        // 10:00 UTC is 11:00 in Berlin in winter.
        assert_eq!(parse_instant("18:00", NOW, &tz).unwrap(), NOW + 7 * H);
        // 2026-03-29 02:30 does not exist in Berlin (clocks jump 02:00→03:00):
        // compatible resolution gives 03:30 CEST = 01:30 UTC.
        assert_eq!(
            parse_instant("2026-03-29 02:30", NOW, &tz).unwrap(),
            1_774_747_800
        );
    }
}
