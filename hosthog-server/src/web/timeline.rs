//! The timeline as data: hosts as rows, time as columns, reservations as
//! bars placed on a CSS grid by class names (`gsN`/`geN`: grid column
//! start and end), so the page needs no inline style and its CSP can
//! forbid them. A day is 96 columns of 15 minutes, a week 168 of an hour;
//! a bar covers the columns its span touches, clipped to the view.
//! Pure: the caller reads the clock and the database.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{ToSpan, Zoned};

/// Day or week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Day,
    Week,
}

impl View {
    pub fn columns(self) -> usize {
        match self {
            View::Day => 96,
            View::Week => 168,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            View::Day => "day",
            View::Week => "week",
        }
    }

    pub fn parse(text: &str) -> Option<View> {
        match text {
            "day" => Some(View::Day),
            "week" => Some(View::Week),
            _ => None,
        }
    }
}

/// A reservation's claim on one host, as the timeline needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub host: String,
    pub id: String,
    pub owner: String,
    pub co_users: Vec<String>,
    pub exclusive: bool,
    pub comment: String,
    pub start: i64,
    pub end: i64,
}

/// A bar on a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub id: String,
    /// Grid lines: the bar spans `[start_line, end_line)`, 1-based.
    pub start_line: usize,
    pub end_line: usize,
    /// `excl` or `shared`, and ` mine` for the viewer's own.
    pub class: String,
    /// The visible words: mode, owner, comment (escaped by the template).
    pub label: String,
    /// The tooltip: the same, with times.
    pub title: String,
    pub mine: bool,
    pub exclusive: bool,
}

/// One host's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub host: String,
    pub bars: Vec<Bar>,
}

/// A column header: its text and the grid lines it spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    pub text: String,
    pub start_line: usize,
    pub end_line: usize,
}

/// The view's span and its headings.
#[derive(Debug, Clone)]
pub struct Frame {
    pub view: View,
    pub date: Date,
    /// UTC seconds, `[from, to)`.
    pub from: i64,
    pub to: i64,
    pub tz: TimeZone,
}

impl Frame {
    /// The view of `view` that holds `date` (a week starts on Monday), in
    /// `tz`.
    pub fn new(view: View, date: Date, tz: TimeZone) -> Frame {
        let first = match view {
            View::Day => date,
            View::Week => {
                let back = i64::from(date.weekday().to_monday_zero_offset());
                date.checked_sub(back.days()).unwrap_or(date)
            }
        };
        let start = first.to_zoned(tz.clone()).ok();
        let length = match view {
            View::Day => 1.day(),
            View::Week => 7.days(),
        };
        let from = start.as_ref().map_or(0, |z| z.timestamp().as_second());
        let to = start
            .as_ref()
            .and_then(|z| z.checked_add(length).ok())
            .map_or(from + 86400, |z| z.timestamp().as_second());
        Frame {
            view,
            date: first,
            from,
            to,
            tz,
        }
    }

    /// The grid line (1-based, 1..=columns+1) at `t`, clipped to the view.
    pub fn line(&self, t: i64) -> usize {
        let columns = self.view.columns() as i64;
        let span = (self.to - self.from).max(1);
        let t = t.clamp(self.from, self.to);
        (((t - self.from) * columns) / span + 1) as usize
    }

    /// The last grid line a bar ending at `t` reaches (a partly covered
    /// column counts).
    fn end_line(&self, t: i64) -> usize {
        let columns = self.view.columns() as i64;
        let span = (self.to - self.from).max(1);
        let t = t.clamp(self.from, self.to);
        ((((t - self.from) * columns) + span - 1) / span + 1) as usize
    }

    pub fn headings(&self) -> Vec<Heading> {
        match self.view {
            View::Day => (0..24)
                .map(|h| Heading {
                    text: format!("{h:02}"),
                    start_line: h * 4 + 1,
                    end_line: h * 4 + 5,
                })
                .collect(),
            View::Week => (0..7)
                .map(|d| {
                    let date = self
                        .date
                        .checked_add((d as i64).days())
                        .unwrap_or(self.date);
                    Heading {
                        text: date.strftime("%a %-d %b").to_string(),
                        start_line: d * 24 + 1,
                        end_line: d * 24 + 25,
                    }
                })
                .collect(),
        }
    }

    /// "Tue 1 Dec 10:00" in the view's zone (built from the civil fields:
    /// a week of 5,000 bars asks for 10,000 of these).
    fn clock(&self, t: i64) -> String {
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let Ok(ts) = jiff::Timestamp::from_second(t) else {
            return t.to_string();
        };
        let dt = self.tz.to_datetime(ts);
        format!(
            "{} {} {} {:02}:{:02}",
            DAYS[dt.weekday().to_monday_zero_offset() as usize],
            dt.day(),
            MONTHS[(dt.month() - 1) as usize],
            dt.hour(),
            dt.minute()
        )
    }

    /// The "now" marker's column, if now is in view.
    pub fn now_line(&self, now: i64) -> Option<usize> {
        (self.from..self.to).contains(&now).then(|| self.line(now))
    }

    /// Rows for `hosts` (in order) with the claims that overlap the view.
    pub fn rows(&self, hosts: &[String], claims: &[Claim], viewer: &str) -> Vec<Row> {
        let mut rows: Vec<Row> = hosts
            .iter()
            .map(|h| Row {
                host: h.clone(),
                bars: Vec::new(),
            })
            .collect();
        let index: std::collections::HashMap<&str, usize> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.as_str(), i))
            .collect();
        for c in claims {
            if c.end <= self.from || c.start >= self.to {
                continue;
            }
            let Some(&i) = index.get(c.host.as_str()) else {
                continue;
            };
            let mine = c.owner == viewer || c.co_users.iter().any(|u| u == viewer);
            let mode = if c.exclusive { "exclusive" } else { "shared" };
            let who = super::text::display(&c.owner);
            let comment = super::text::display(&c.comment);
            let mut label = format!("{} {who}", if c.exclusive { "■" } else { "▨" });
            if mine {
                label.push_str(" (mine)");
            }
            if !comment.is_empty() {
                label.push_str(" · ");
                label.push_str(&comment);
            }
            let start_line = self.line(c.start);
            let end_line = self.end_line(c.end).max(start_line + 1);
            rows[i].bars.push(Bar {
                id: c.id.clone(),
                start_line,
                end_line,
                class: format!(
                    "{}{}",
                    if c.exclusive { "excl" } else { "shared" },
                    if mine { " mine" } else { "" }
                ),
                label,
                title: format!(
                    "{who}, {mode}, {} – {}{}{}",
                    self.clock(c.start),
                    self.clock(c.end),
                    if comment.is_empty() { "" } else { ": " },
                    comment
                ),
                mine,
                exclusive: c.exclusive,
            });
        }
        for row in &mut rows {
            row.bars.sort_by_key(|b| (b.start_line, b.end_line));
        }
        rows
    }
}

/// The stylesheet rules that place bars: `.gsN` and `.geN` for every grid
/// line of the widest view.
pub fn grid_css() -> String {
    let mut css = String::new();
    for n in 1..=View::Week.columns() + 1 {
        css.push_str(&format!(
            ".gs{n}{{grid-column-start:{}}}.ge{n}{{grid-column-end:{}}}\n",
            n + 1,
            n + 1
        ));
    }
    css
}

/// Today's date in `tz`.
pub fn today(now: i64, tz: &TimeZone) -> Date {
    jiff::Timestamp::from_second(now)
        .map(|t| t.to_zoned(tz.clone()).date())
        .unwrap_or_default()
}

/// Local `YYYY-MM-DDTHH:MM` (an `<input type=datetime-local>` value) for
/// UTC seconds `t`.
pub fn local_input(t: i64, tz: &TimeZone) -> String {
    jiff::Timestamp::from_second(t)
        .map(|ts| {
            ts.to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

/// UTC seconds of a local `YYYY-MM-DDTHH:MM` (or with `:SS`) in `tz`.
pub fn parse_local(text: &str, tz: &TimeZone) -> Option<i64> {
    let dt: jiff::civil::DateTime = text.trim().parse().ok()?;
    let z: Zoned = dt.to_zoned(tz.clone()).ok()?;
    Some(z.timestamp().as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(host: &str, start: i64, end: i64, exclusive: bool) -> Claim {
        Claim {
            host: host.into(),
            id: "00000000000000ab".into(),
            owner: "alice".into(),
            co_users: vec![],
            exclusive,
            comment: "<b>".into(),
            start,
            end,
        }
    }

    #[test]
    fn a_day_is_96_quarter_hours() {
        let f = Frame::new(View::Day, "2026-11-30".parse().unwrap(), TimeZone::UTC);
        assert_eq!(f.to - f.from, 86400);
        assert_eq!(f.line(f.from), 1);
        assert_eq!(f.line(f.from + 3600), 5);
        assert_eq!(f.line(f.to), 97);
        let rows = f.rows(
            &["a".into(), "b".into()],
            &[claim("b", f.from + 3600, f.from + 3600 + 60, true)],
            "bob",
        );
        assert!(rows[0].bars.is_empty());
        let bar = &rows[1].bars[0];
        assert_eq!((bar.start_line, bar.end_line), (5, 6));
        assert_eq!(bar.class, "excl");
        assert_eq!(bar.label, "■ alice · <b>");
    }

    #[test]
    fn a_week_starts_on_monday_and_clips() {
        let f = Frame::new(View::Week, "2026-12-03".parse().unwrap(), TimeZone::UTC);
        assert_eq!(f.date.to_string(), "2026-11-30");
        let rows = f.rows(
            &["a".into()],
            &[claim("a", f.from - 999, f.to + 999, false)],
            "alice",
        );
        let bar = &rows[0].bars[0];
        assert_eq!((bar.start_line, bar.end_line), (1, 169));
        assert_eq!(bar.class, "shared mine");
        assert_eq!(f.headings()[0].text, "Mon 30 Nov");
    }

    #[test]
    fn bar_titles_say_when_in_the_zone() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let f = Frame::new(View::Day, "2026-12-01".parse().unwrap(), tz);
        assert_eq!(f.clock(f.from + 3600 * 10 + 60 * 5), "Tue 1 Dec 10:05");
    }

    #[test]
    fn local_times_round_trip() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let t = parse_local("2026-11-30T14:00", &tz).unwrap();
        assert_eq!(local_input(t, &tz), "2026-11-30T14:00");
        assert_eq!(parse_local("nonsense", &tz), None);
    }
}
