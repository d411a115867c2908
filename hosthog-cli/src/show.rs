//! Replies as text for people: local times, sanitized user text.

use hosthog::protocol::{Op, Reply};
use hosthog::{Reservation, format_instant, sanitize};
use jiff::tz::TimeZone;

fn when(at: i64, now: i64, tz: &TimeZone) -> String {
    if at == i64::MAX {
        "until removed".to_string()
    } else {
        format_instant(at, now, tz)
    }
}

fn with(r: &Reservation) -> String {
    if r.with.is_empty() {
        "-".to_string()
    } else {
        sanitize(&r.with.join(",")).into_owned()
    }
}

/// `1234abcd  exclusive  alice  14:00 CET to 18:00 CET  with bob  "paper"`
fn summary(r: &Reservation, now: i64, tz: &TimeZone) -> String {
    let mut line = format!(
        "{} {} reservation of {}, {} to {}",
        r.id.short(),
        r.mode,
        sanitize(&r.owner),
        when(r.start, now, tz),
        when(r.end, now, tz)
    );
    if !r.with.is_empty() {
        line += &format!(", with {}", with(r));
    }
    if !r.comment.is_empty() {
        line += &format!(", \"{}\"", sanitize(&r.comment));
    }
    line
}

fn table(reservations: &[Reservation], now: i64, tz: &TimeZone) -> String {
    if reservations.is_empty() {
        return "No reservations.\n".to_string();
    }
    let header = ["ID", "MODE", "OWNER", "START", "END", "WITH", "COMMENT"];
    let rows: Vec<[String; 7]> = reservations
        .iter()
        .map(|r| {
            let mut mode = r.mode.to_string();
            if r.is_active(now) {
                mode += "*";
            }
            [
                r.id.short(),
                mode,
                sanitize(&r.owner).into_owned(),
                when(r.start, now, tz),
                when(r.end, now, tz),
                with(r),
                sanitize(&r.comment).into_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| -> String {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out += cell;
            } else {
                let pad = w.saturating_sub(cell.chars().count());
                out += cell;
                out += &" ".repeat(pad + 2);
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    for row in &rows {
        out += &line(&row.each_ref().map(String::as_str));
    }
    if reservations.iter().any(|r| r.is_active(now)) {
        out += "(* in force now)\n";
    }
    out
}

/// The text for `reply` to `op`.
pub fn text(op: &Op, reply: &Reply, now: i64, tz: &TimeZone) -> String {
    match reply {
        Reply::Whoami(id) => format!(
            "{} (uid {}){}\n",
            sanitize(&id.user),
            id.uid,
            if id.admin { ", admin" } else { "" }
        ),
        Reply::Reservation(r) => match op {
            Op::Reserve(_) => format!("Reserved {}\n", summary(r, now, tz)),
            Op::Show(_) => {
                let mut out = String::new();
                out += &format!("id:       {}\n", r.id);
                out += &format!("owner:    {}\n", sanitize(&r.owner));
                out += &format!("mode:     {}\n", r.mode);
                out += &format!("start:    {}\n", when(r.start, now, tz));
                out += &format!("end:      {}\n", when(r.end, now, tz));
                out += &format!("with:     {}\n", with(r));
                out += &format!("comment:  {}\n", sanitize(&r.comment));
                out += &format!("created:  {}\n", when(r.created, now, tz));
                out += &format!("updated:  {}\n", when(r.updated, now, tz));
                out
            }
            _ => format!("Updated {}\n", summary(r, now, tz)),
        },
        Reply::Removed(r) => match op {
            Op::Cancel(_) => format!("Cancelled {}\n", summary(r, now, tz)),
            _ => format!("Released {}\n", summary(r, now, tz)),
        },
        Reply::Reservations(list) => table(list, now, tz),
        Reply::Check(report) => format!("{}\n", report.explanation),
        Reply::Notice(n) => match op {
            Op::NoticeRemove(_) => format!("Removed notice {}\n", n.id),
            _ => format!("Posted notice {}: {}\n", n.id, sanitize(&n.text)),
        },
        Reply::Notices(list) => {
            if list.is_empty() {
                return "No notices.\n".to_string();
            }
            list.iter()
                .map(|n| {
                    let span = if n.end == i64::MAX {
                        format!("from {} until removed", when(n.start, now, tz))
                    } else {
                        format!("{} to {}", when(n.start, now, tz), when(n.end, now, tz))
                    };
                    format!(
                        "{}  {span}  by {}: {}\n",
                        n.id,
                        sanitize(&n.author),
                        sanitize(&n.text)
                    )
                })
                .collect()
        }
        Reply::Exempt(e) => {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    sanitize(&v.join(", ")).into_owned()
                }
            };
            format!(
                "users:          {}\ngroups:         {}\nconfig users:   {}\nconfig groups:  {}\nin the table:   root, {}\n",
                list(&e.users),
                list(&e.groups),
                list(&e.config_users),
                list(&e.config_groups),
                list(&e.effective)
            )
        }
    }
}
