//! Replies as text for people: local times, sanitized user text.

use hosthog_booking::protocol::{FleetReservation, History, HostStatus, Op, Reply, TokenInfo};
use jiff::tz::TimeZone;
use libhosthog::{Presence, Reservation, describe, format_instant, sanitize};

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
    out += &free(reservations, now, tz);
    out
}

/// `Free: now to 14:00 CET, 18:00 CET to 20:00 CET, from 22:00 CET on.`:
/// the times from now on that no reservation holds, where an exclusive
/// reservation may be made.
fn free(reservations: &[Reservation], now: i64, tz: &TimeZone) -> String {
    let mut spans: Vec<(i64, i64)> = reservations
        .iter()
        .filter(|r| r.end > now)
        .map(|r| (r.start.max(now), r.end))
        .collect();
    spans.sort_unstable();
    let mut gaps = Vec::new();
    let mut from = now;
    for (start, end) in spans {
        if start > from {
            gaps.push((from, Some(start)));
        }
        from = from.max(end);
    }
    if from < i64::MAX {
        gaps.push((from, None));
    }
    let at = |t: i64| {
        if t == now {
            "now".to_string()
        } else {
            format_instant(t, now, tz)
        }
    };
    let words: Vec<String> = gaps
        .iter()
        .map(|&(start, end)| match end {
            Some(end) => format!("{} to {}", at(start), at(end)),
            None => format!("from {} on", at(start)),
        })
        .collect();
    if words.is_empty() {
        "Free: not before the last reservation is removed.\n".to_string()
    } else {
        format!("Free: {}.\n", words.join(", "))
    }
}

/// Lays out rows under a header, columns padded to their widest cell.
fn columns<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| -> String {
        let mut out = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            out += cell;
            out += &" ".repeat(w.saturating_sub(cell.chars().count()) + 2);
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    for row in rows {
        out += &line(row.each_ref().map(String::as_str));
    }
    out
}

/// `hosthog list --fleet`: the fleet calendar's reservations, each with
/// its hosts.
fn fleet_table(list: &[FleetReservation], now: i64, tz: &TimeZone) -> String {
    if list.is_empty() {
        return "No reservations on the fleet calendar.\n".to_string();
    }
    let rows: Vec<[String; 8]> = list
        .iter()
        .map(|f| {
            let r = &f.reservation;
            let mut mode = r.mode.to_string();
            if f.cancelled_at.is_some() {
                mode += " (cancelled)";
            } else if r.is_active(now) {
                mode += "*";
            }
            [
                r.id.short(),
                sanitize(&f.hosts.join(",")).into_owned(),
                mode,
                sanitize(&r.owner).into_owned(),
                when(r.start, now, tz),
                when(r.end, now, tz),
                with(r),
                sanitize(&r.comment).into_owned(),
            ]
        })
        .collect();
    let mut out = columns(
        [
            "ID", "HOSTS", "MODE", "OWNER", "START", "END", "WITH", "COMMENT",
        ],
        &rows,
    );
    if list
        .iter()
        .any(|f| f.cancelled_at.is_none() && f.reservation.is_active(now))
    {
        out += "(* in force now)\n";
    }
    out
}

/// `hosthog who`: everyone on the host grouped by person — each session
/// (how, pid, where, what) and, for people in the user uid range, their
/// processes: what clearing the host would end if it ended their sessions.
/// Root and system accounts are never cleared.
fn who(presence: &Presence) -> String {
    let people = presence.people();
    if people.is_empty() {
        return "Nobody is on the host.\n".to_string();
    }
    let mut out = String::new();
    for (user, uid) in people {
        out += &format!("{} (uid {uid})\n", sanitize(user));
        let rows: Vec<[String; 4]> = presence
            .sessions
            .iter()
            .filter(|s| s.user == user)
            .map(|s| {
                let mut place = sanitize(&s.tty).into_owned();
                if !s.from.is_empty() {
                    place += &format!(" from {}", sanitize(&s.from));
                }
                [
                    s.kind.label().to_string(),
                    s.pid.to_string(),
                    place,
                    sanitize(&s.detail).into_owned(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            for line in columns(["HOW", "PID", "WHERE", "DETAIL"], &rows).lines() {
                out += &format!("  {line}\n");
            }
        }
        match presence.processes_of(user) {
            Some(p) => {
                let commands = p
                    .commands
                    .iter()
                    .map(|c| sanitize(c).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut place = Vec::new();
                if !p.ttys.is_empty() {
                    place.push(format!("on {}", p.ttys.join(", ")));
                }
                if p.detached > 0 {
                    place.push(format!("{} without a terminal", p.detached));
                }
                out += &format!(
                    "  {} process{} ({commands}){}; clearing the host would end all of them\n",
                    p.count,
                    if p.count == 1 { "" } else { "es" },
                    if place.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", place.join("; "))
                    }
                );
            }
            None => out += "  not in the user uid range: clearing the host never ends these\n",
        }
    }
    if presence.omitted > 0 {
        out += &format!("({} more sessions not shown)\n", presence.omitted);
    }
    out
}

/// Hours for people: `2.5 h`.
fn hours(seconds: i64) -> String {
    format!("{:.1} h", seconds as f64 / 3600.0)
}

/// `hosthog hosts`: one line a host.
fn hosts(list: &[HostStatus], now: i64, tz: &TimeZone) -> String {
    if list.is_empty() {
        return "The fleet calendar has no hosts.\n".into();
    }
    let width = list.iter().map(|h| h.name.len()).max().unwrap_or(4).max(4);
    let ago = |at: Option<i64>| match at {
        Some(at) => format!("{} ago", hosthog_booking::policy::span((now - at).max(0))),
        None => "never".into(),
    };
    // 12 wide, wider for a host not synced for days ("12d 3h 5m ago").
    let synced_width = list
        .iter()
        .map(|h| ago(h.synced).len())
        .max()
        .unwrap_or(0)
        .max(12);
    let mut out = format!(
        "{:width$}  {:40}  {:24}  {:synced_width$}  REPORTED\n",
        "HOST", "NOW", "ON IT", "SYNCED"
    );
    for host in list {
        let now_text = if host.holders.is_empty() {
            "free".to_string()
        } else {
            host.holders
                .iter()
                .map(|h| {
                    format!(
                        "{} ({}) until {}",
                        sanitize(&h.owner),
                        h.mode,
                        format_instant(h.end, now, tz)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let on_it = if host.present.is_empty() {
            "nobody".to_string()
        } else {
            host.present
                .iter()
                .map(|u| sanitize(u).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (synced, seen) = (ago(host.synced), ago(host.seen));
        out.push_str(&format!(
            "{:width$}  {now_text:40}  {on_it:24}  {synced:synced_width$}  {seen}\n",
            sanitize(&host.name)
        ));
    }
    out
}

fn tokens(list: &[TokenInfo], now: i64, tz: &TimeZone) -> String {
    if list.is_empty() {
        return "No tokens (hosthog token create makes one).\n".to_string();
    }
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|t| {
            [
                t.id.clone(),
                t.scope.clone(),
                when(t.created_at, now, tz),
                t.expires_at
                    .map_or_else(|| "never".to_string(), |at| when(at, now, tz)),
                sanitize(&t.label).into_owned(),
            ]
        })
        .collect();
    columns(["ID", "SCOPE", "CREATED", "EXPIRES", "LABEL"], &rows)
}

fn history(h: &History, now: i64, tz: &TimeZone) -> String {
    let whose = match &h.user {
        Some(user) => format!("of {}", sanitize(user)),
        None => "of everyone".to_string(),
    };
    let mut out = format!(
        "Reservations {whose} since {}:\n",
        format_instant(h.since, now, tz)
    );
    if h.reservations.is_empty() {
        out += "none\n";
    } else {
        let rows: Vec<[String; 7]> = h
            .reservations
            .iter()
            .map(|p| {
                let r = &p.reservation;
                let how = match (p.ending.as_str(), &p.ended_by) {
                    ("in_force", _) => "in force".to_string(),
                    (how, Some(by)) => format!("{how} by {}", sanitize(by)),
                    (how, None) => sanitize(how).into_owned(),
                };
                [
                    r.id.short(),
                    r.mode.to_string(),
                    sanitize(&r.owner).into_owned(),
                    when(r.start, now, tz),
                    when(p.ended_at, now, tz),
                    how,
                    sanitize(&r.comment).into_owned(),
                ]
            })
            .collect();
        out += &columns(
            ["ID", "MODE", "OWNER", "START", "END", "HOW", "COMMENT"],
            &rows,
        );
        if h.more > 0 {
            out += &format!("... and {} older (narrow --since to see them)\n", h.more);
        }
    }
    out += "Hours reserved:\n";
    if h.totals.is_empty() {
        out += "none\n";
    }
    for t in &h.totals {
        out += &format!(
            "{}: {} in {} reservation{} ({} exclusive)\n",
            sanitize(&t.user),
            hours(t.seconds),
            t.reservations,
            if t.reservations == 1 { "" } else { "s" },
            hours(t.exclusive_seconds)
        );
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
        Reply::Forced(f) => {
            let mut out = text(op, &Reply::Reservation(f.reservation.clone()), now, tz);
            for r in &f.overridden {
                out += &format!(
                    "Overrode (--force, recorded in the audit log): it overlaps {}\n",
                    describe::reservation(r, None, now, tz)
                );
            }
            for limit in &f.limits_overridden {
                out += &format!(
                    "Overrode (--force, recorded in the audit log): {}\n",
                    sanitize(limit)
                );
            }
            out
        }
        Reply::Removed(r) => match op {
            Op::Cancel(_) => format!("Cancelled {}\n", summary(r, now, tz)),
            _ if r.start > now => format!(
                "Removed {} (it had not started; the time is free again)\n",
                summary(r, now, tz)
            ),
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
        Reply::Presence(p) => who(p),
        Reply::Motd(motd) => motd.text.clone(),
        Reply::Posted(r) => {
            let mut out = if r.users.is_empty() {
                "Nobody else on the host could be reached.".to_string()
            } else {
                format!(
                    "Sent to {} ({} {}).",
                    sanitize(&r.users.join(", ")),
                    r.deliveries,
                    if r.deliveries == 1 {
                        "terminal or client"
                    } else {
                        "terminals and clients"
                    }
                )
            };
            if r.refused > 0 {
                out += &format!(
                    " {} terminal{} refused messages (mesg n).",
                    r.refused,
                    if r.refused == 1 { "" } else { "s" }
                );
            }
            out + "\n"
        }
        Reply::History(h) => history(h, now, tz),
        Reply::Hosts(list) => hosts(list, now, tz),
        Reply::Token(t) => format!(
            "{}\n(token {}, {}; shown only now: keep it secret, send it as \
             Authorization: Bearer TOKEN; hosthog token revoke {} ends it)\n",
            t.token,
            t.info.id,
            match t.info.expires_at {
                Some(at) => format!("expires {}", when(at, now, tz)),
                None => "until revoked".to_string(),
            },
            t.info.id
        ),
        Reply::Tokens(list) => match op {
            Op::TokenRevoke(_) => list
                .iter()
                .map(|t| format!("Revoked token {}\n", t.id))
                .collect(),
            _ => tokens(list, now, tz),
        },
        Reply::Link(link) => match link.expires_at {
            Some(at) => format!(
                "{}\n(signs you in once, in one browser, until {})\n",
                link.url,
                when(at, now, tz)
            ),
            None => format!(
                "{}\n(keep it secret: anyone with it sees these reservations; \
                 hosthog token list shows it as a feed token to revoke)\n",
                link.url
            ),
        },
        Reply::FleetReservations(list) => fleet_table(list, now, tz),
        Reply::Booked(f) => format!(
            "Reserved {}: {}\n",
            sanitize(&f.hosts.join(",")),
            summary(&f.reservation, now, tz)
        ),
        Reply::Exempt(e) => {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    sanitize(&v.join(", ")).into_owned()
                }
            };
            let mut always = vec!["root".to_string()];
            always.extend(e.effective.iter().filter(|u| *u != "root").cloned());
            format!(
                "users (hosthog exempt add):          {}\n\
                 groups (hosthog exempt add --group): {}\n\
                 users (configuration):               {}\n\
                 groups (configuration):              {}\n\
                 always allowed to log in:            {}\n",
                list(&e.users),
                list(&e.groups),
                list(&e.config_users),
                list(&e.config_groups),
                list(&always)
            )
        }
    }
}
