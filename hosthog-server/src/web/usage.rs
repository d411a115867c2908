//! Usage: per user and per host, hours reserved and hours present over a
//! period, as a chart (SVG drawn here, no script) and as CSV.
//!
//! Hours reserved: the claims' overlap with the period (a multi-host
//! booking counts on each host; per user, the owner's). Hours present:
//! the `presence_interval` rows ([`record`] keeps them from every presence
//! report; see migrations/0006_web.sql), clipped to the period.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::pages::{html, message};
use super::session::{self, Chrome};
use crate::calendar::{BookError, Calendar};
use crate::database::Database;
use crate::minting::now;

/// The longest gap between two reports that still joins them, seconds.
pub const GAP: i64 = 180;

fn database(what: &str, e: &tokio_postgres::Error) -> BookError {
    BookError::Database(crate::database::DatabaseError(format!("{what}: {e}")))
}

/// Records host `host`'s presence report (`snapshot`, taken at `now`):
/// extends or starts each present user's interval.
///
/// # Errors
/// [`BookError::Database`].
pub async fn record(
    db: &Database,
    host: &str,
    snapshot: &serde_json::Value,
    now: i64,
) -> Result<(), BookError> {
    let mut users: Vec<String> = snapshot["sessions"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| x["user"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    users.sort();
    users.dedup();
    if users.is_empty() {
        return Ok(());
    }
    let client = db.connection().await?;
    client
        .execute(
            "WITH h AS (SELECT id FROM host WHERE name = $1),
                  seen AS (SELECT unnest($2::text[]) AS user_name),
                  extended AS (
                      UPDATE presence_interval p SET end_at = to_timestamp($3::bigint)
                      FROM h, seen s
                      WHERE p.host = h.id AND p.user_name = s.user_name
                        AND p.end_at >= to_timestamp($3::bigint) - make_interval(secs => $4)
                        AND p.end_at <= to_timestamp($3::bigint)
                      RETURNING p.user_name)
             INSERT INTO presence_interval (host, user_name, start_at, end_at)
             SELECT h.id, s.user_name, to_timestamp($3::bigint), to_timestamp($3::bigint)
             FROM h, seen s
             WHERE NOT EXISTS (SELECT 1 FROM extended e WHERE e.user_name = s.user_name)",
            &[&host, &users, &now, &(GAP as f64)],
        )
        .await
        .map_err(|e| database("cannot record presence", &e))?;
    Ok(())
}

/// One line of the usage: a user or a host and its hours.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub reserved: f64,
    pub present: f64,
}

/// Per user and per host over `[from, to)`, by name.
///
/// # Errors
/// [`BookError::Database`].
pub async fn usage(db: &Database, from: i64, to: i64) -> Result<(Vec<Line>, Vec<Line>), BookError> {
    let client = db.connection().await?;
    let overlap = |a: &str, b: &str| {
        format!(
            "greatest(0, extract(epoch FROM least({b}, to_timestamp($2::bigint)) \
             - greatest({a}, to_timestamp($1::bigint))))"
        )
    };
    let claims = overlap("c.start_at", "c.end_at");
    let present = overlap("p.start_at", "p.end_at");
    let sql = |key_claim: &str, key_present: &str| {
        format!(
            "WITH r AS (SELECT {key_claim} AS name, sum({claims}) AS s
                        FROM claim c JOIN reservation r ON r.id = c.reservation
                        JOIN host h ON h.id = c.host
                        WHERE c.end_at > to_timestamp($1::bigint)
                          AND c.start_at < to_timestamp($2::bigint) GROUP BY 1),
                  p AS (SELECT {key_present} AS name, sum({present}) AS s
                        FROM presence_interval p JOIN host h ON h.id = p.host
                        WHERE p.end_at > to_timestamp($1::bigint)
                          AND p.start_at < to_timestamp($2::bigint) GROUP BY 1)
             SELECT coalesce(r.name, p.name), coalesce(r.s, 0)::float8 / 3600,
                    coalesce(p.s, 0)::float8 / 3600
             FROM r FULL JOIN p ON p.name = r.name ORDER BY 1"
        )
    };
    let read = |rows: Vec<tokio_postgres::Row>| -> Vec<Line> {
        rows.iter()
            .map(|r| Line {
                name: r.get(0),
                reserved: r.get(1),
                present: r.get(2),
            })
            .collect()
    };
    let users = client
        .query(&sql("r.owner", "p.user_name"), &[&from, &to])
        .await
        .map_err(|e| database("cannot read the usage", &e))?;
    let hosts = client
        .query(&sql("h.name", "h.name"), &[&from, &to])
        .await
        .map_err(|e| database("cannot read the usage", &e))?;
    Ok((read(users), read(hosts)))
}

/// A bar chart's shapes, computed here so the template only places them.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub rows: Vec<ChartRow>,
    pub max_label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChartRow {
    pub name: String,
    pub y: u32,
    pub reserved_w: u32,
    pub present_w: u32,
    /// Where the numbers go: right of the longer bar.
    pub label_x: u32,
    pub text: String,
}

/// Lays out `lines` as pairs of bars: reserved (solid) above present
/// (hatched), scaled to the largest value.
pub fn chart(lines: &[Line]) -> Chart {
    const LABEL: u32 = 140;
    const BAR: u32 = 440;
    const ROW: u32 = 34;
    let max = lines
        .iter()
        .map(|l| l.reserved.max(l.present))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let scale = |v: f64| ((v / max) * f64::from(BAR)).round() as u32;
    Chart {
        width: LABEL + BAR + 160,
        height: ROW * lines.len() as u32 + 30,
        max_label: format!("{max:.1} h"),
        rows: lines
            .iter()
            .enumerate()
            .map(|(i, l)| ChartRow {
                name: super::text::display(&l.name),
                y: 20 + ROW * i as u32,
                reserved_w: scale(l.reserved),
                present_w: scale(l.present),
                label_x: LABEL + 10 + scale(l.reserved).max(scale(l.present)),
                text: format!("{:.1} h reserved, {:.1} h present", l.reserved, l.present),
            })
            .collect(),
    }
}

/// The CSV: `kind,name,hours_reserved,hours_present`.
pub fn csv(users: &[Line], hosts: &[Line]) -> String {
    let mut out = String::from("kind,name,hours_reserved,hours_present\r\n");
    for (kind, lines) in [("user", users), ("host", hosts)] {
        for l in lines {
            // Names are validated user and host names; quote anyway, and
            // keep a spreadsheet from reading one as a formula.
            let mut name = l.name.replace('"', "\"\"");
            if name.starts_with(['=', '+', '-', '@']) {
                name.insert(0, '\'');
            }
            out.push_str(&format!(
                "{kind},\"{name}\",{:.2},{:.2}\r\n",
                l.reserved, l.present
            ));
        }
    }
    out
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Period {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// The period asked for (dates, UTC, `to` inclusive): by default the last
/// 7 days.
fn period(p: &Period, now: i64) -> (String, String, i64, i64) {
    let today = super::timeline::today(now, &jiff::tz::TimeZone::UTC);
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|d| d.parse::<jiff::civil::Date>().ok())
    };
    let to = parse(&p.to).unwrap_or(today);
    let from =
        parse(&p.from).unwrap_or_else(|| to.checked_sub(jiff::ToSpan::days(6)).unwrap_or(to));
    let secs = |d: jiff::civil::Date| {
        d.to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_second())
            .unwrap_or(0)
    };
    (
        from.to_string(),
        to.to_string(),
        secs(from),
        secs(to) + 86400,
    )
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    chrome: Option<Chrome>,
    from: String,
    to: String,
    users: Chart,
    hosts: Chart,
    csv_href: String,
}

pub async fn page(
    State(calendar): State<Calendar>,
    headers: HeaderMap,
    Query(p): Query<Period>,
) -> Response {
    let now = now();
    let (_, chrome) = match session::signed_in(&calendar, &headers, now).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (from_text, to_text, from, to) = period(&p, now);
    let (users, mut hosts) = match usage(calendar.database(), from, to).await {
        Ok(x) => x,
        Err(e) => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(chrome),
                "Unavailable",
                &e.to_string(),
            );
        }
    };
    // The 40 hosts with the most hours reserved; all of them in the CSV.
    hosts.sort_by(|a, b| b.reserved.total_cmp(&a.reserved).then(a.name.cmp(&b.name)));
    hosts.truncate(40);
    html(
        StatusCode::OK,
        &UsagePage {
            chrome: Some(chrome),
            csv_href: format!("/web/usage.csv?from={from_text}&to={to_text}"),
            from: from_text,
            to: to_text,
            users: chart(&users),
            hosts: chart(&hosts),
        },
    )
}

pub async fn csv_handler(calendar: Calendar, headers: HeaderMap, p: Period) -> Response {
    let now = now();
    if let Err(r) = session::signed_in(&calendar, &headers, now).await {
        return r;
    }
    let (from_text, to_text, from, to) = period(&p, now);
    match usage(calendar.database(), from, to).await {
        Ok((users, hosts)) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"hosthog-usage-{from_text}-{to_text}.csv\""),
                ),
            ],
            csv(&users, &hosts),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

pub async fn csv_route(
    State(calendar): State<Calendar>,
    headers: HeaderMap,
    Query(p): Query<Period>,
) -> Response {
    csv_handler(calendar, headers, p).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_scales_to_the_largest_value() {
        let c = chart(&[
            Line {
                name: "alice".into(),
                reserved: 10.0,
                present: 5.0,
            },
            Line {
                name: "bob".into(),
                reserved: 0.0,
                present: 2.5,
            },
        ]);
        assert_eq!((c.rows[0].reserved_w, c.rows[0].present_w), (440, 220));
        assert_eq!((c.rows[1].reserved_w, c.rows[1].present_w), (0, 110));
        assert_eq!(c.rows[1].text, "0.0 h reserved, 2.5 h present");
    }

    #[test]
    fn csv_lists_users_then_hosts() {
        let l = Line {
            name: "=cmd".into(),
            reserved: 1.0,
            present: 0.5,
        };
        assert_eq!(
            csv(std::slice::from_ref(&l), &[]),
            "kind,name,hours_reserved,hours_present\r\nuser,\"'=cmd\",1.00,0.50\r\n"
        );
    }
}
