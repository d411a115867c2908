//! The pages: one handler per page or form, each reading the clock once,
//! rendering a compile-checked askama template (every `{{ }}` escaped).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use hosthog_booking::protocol::{ChangeArgs, FailureKind, IdArgs, Op, ReserveArgs, ShareArgs};
use jiff::tz::TimeZone;
use libhosthog::Mode;
use std::collections::HashMap;

use super::data;
use super::ops;
use super::session::{self, Chrome, Form};
use super::text::display;
use super::timeline::{self, Frame, Heading, Row, View};
use crate::calendar::{BookError, Calendar};
use crate::identity::{self, Scope};
use crate::minting::now;

/// Rows of hosts on one page of the timeline, unless `per` asks otherwise.
pub const PER_PAGE: i64 = 50;
/// The most rows one page may ask for.
pub const MAX_PER_PAGE: i64 = 1000;

/// Renders `page` with `status`.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the page: {e}"),
        )
            .into_response(),
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub chrome: Option<Chrome>,
    pub heading: String,
    pub message: String,
}

/// A page saying `message`, with `status`.
pub fn message(
    status: StatusCode,
    chrome: Option<Chrome>,
    heading: &str,
    message: &str,
) -> Response {
    html(
        status,
        &MessagePage {
            chrome,
            heading: heading.to_string(),
            message: message.to_string(),
        },
    )
}

fn unavailable(e: &BookError) -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "The calendar is unavailable",
        &format!("{e}. Try again in a moment."),
    )
}

/// The time zone asked for (an IANA name), else UTC.
fn zone(name: Option<&str>) -> (TimeZone, String) {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => match TimeZone::get(n) {
            Ok(tz) => (tz, n.to_string()),
            Err(_) => (TimeZone::UTC, "UTC".to_string()),
        },
        None => (TimeZone::UTC, "UTC".to_string()),
    }
}

fn clock(t: i64, tz: &TimeZone) -> String {
    jiff::Timestamp::from_second(t)
        .map(|ts| {
            ts.to_zoned(tz.clone())
                .strftime("%a %-d %b %Y %H:%M %Z")
                .to_string()
        })
        .unwrap_or_else(|_| t.to_string())
}

fn query_string(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

// ----- sign-in and sign-out -----

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    chrome: Option<Chrome>,
    secret: String,
}

/// The link from `hosthog web`: a page with one button, so that a link
/// previewer fetching the URL does not use it up.
pub async fn signin_page(Path(secret): Path<String>) -> Response {
    if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return message(
            StatusCode::NOT_FOUND,
            None,
            "Not a sign-in link",
            identity::LinkRefused::Unknown.message(),
        );
    }
    html(
        StatusCode::OK,
        &SigninPage {
            chrome: None,
            secret,
        },
    )
}

pub async fn signin(State(calendar): State<Calendar>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = session::same_origin(&headers) {
        return refused;
    }
    let form = Form::parse(&body);
    let secret = form.get("secret").unwrap_or_default();
    match identity::redeem_link(calendar.database(), secret, now()).await {
        Ok(Ok((cookie, s))) => {
            let mut response = Redirect::to("/web/").into_response();
            session::set_cookie(&mut response, &cookie, s.expires_at - now());
            response
        }
        Ok(Err(why)) => message(StatusCode::FORBIDDEN, None, "Cannot sign in", why.message()),
        Err(e) => unavailable(&e),
    }
}

pub async fn signout(
    State(calendar): State<Calendar>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, _, _) = match session::checked(&calendar, &headers, &body, now()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(cookie) = session::cookie(&headers)
        && let Err(e) = identity::end_session(calendar.database(), &cookie).await
    {
        return unavailable(&e);
    }
    let mut response = message(
        StatusCode::OK,
        None,
        "Signed out",
        "You are signed out. Run `hosthog web` on any host to sign in again.",
    );
    session::clear_cookie(&mut response);
    response
}

// ----- the timeline -----

#[derive(Template)]
#[template(path = "timeline.html")]
pub struct TimelinePage {
    pub chrome: Option<Chrome>,
    pub notice: Option<String>,
    pub title: String,
    pub view: &'static str,
    pub date: String,
    pub filter: String,
    pub tz: String,
    pub prev_href: String,
    pub next_href: String,
    pub today_href: String,
    pub other_view_href: String,
    pub other_view_label: &'static str,
    pub now_text: String,
    pub headings: Vec<Heading>,
    pub rows: Vec<Row>,
    pub now_line: Option<usize>,
    pub total: i64,
    pub first: i64,
    pub last: i64,
    pub prev_page_href: Option<String>,
    pub prev_page_text: String,
    pub next_page_href: Option<String>,
    pub next_page_text: String,
}

/// What the timeline's address may say.
#[derive(Debug, Default, serde::Deserialize)]
pub struct TimelineQuery {
    #[serde(default)]
    pub view: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub tz: Option<String>,
    #[serde(default)]
    pub page: Option<i64>,
    #[serde(default)]
    pub per: Option<i64>,
    #[serde(default)]
    pub done: Option<String>,
}

/// Everything the timeline shows, read from the database: the pure part
/// of the page is [`timeline_page`].
pub struct TimelineData {
    pub total: i64,
    pub hosts: Vec<String>,
    pub claims: Vec<timeline::Claim>,
}

/// The timeline page for `q`, from `data` (see [`timeline_frame`]).
#[allow(clippy::too_many_arguments)]
pub fn timeline_page(
    chrome: Option<Chrome>,
    q: &TimelineQuery,
    frame: &Frame,
    tz_name: &str,
    page: i64,
    per: i64,
    data: &TimelineData,
    viewer: &str,
    now: i64,
) -> TimelinePage {
    let view = frame.view;
    let filter = q.filter.clone().unwrap_or_default();
    let date_of = |d: jiff::civil::Date| d.to_string();
    let shown_date = q
        .date
        .as_deref()
        .and_then(|d| d.parse::<jiff::civil::Date>().ok())
        .unwrap_or(frame.date);
    let step = match view {
        View::Day => jiff::ToSpan::days(1),
        View::Week => jiff::ToSpan::days(7),
    };
    let prev = shown_date.checked_sub(step).unwrap_or(shown_date);
    let next = shown_date.checked_add(step).unwrap_or(shown_date);
    let per_text = if per == PER_PAGE {
        String::new()
    } else {
        per.to_string()
    };
    let href = |view: &str, date: String, page: i64| {
        format!(
            "/web/?{}",
            query_string(&[
                ("view", view.to_string()),
                ("date", date),
                ("filter", filter.clone()),
                ("tz", tz_name.to_string()),
                (
                    "page",
                    if page > 0 {
                        page.to_string()
                    } else {
                        String::new()
                    }
                ),
                ("per", per_text.clone()),
            ])
        )
    };
    let (other, other_label) = match view {
        View::Day => ("week", "Week view"),
        View::Week => ("day", "Day view"),
    };
    let first = page * per + 1;
    let last = (page * per + data.hosts.len() as i64).max(first - 1);
    let title = match view {
        View::Day => format!("Day of {}", shown_date.strftime("%A %-d %B %Y")),
        View::Week => format!("Week of {}", frame.date.strftime("%A %-d %B %Y")),
    };
    TimelinePage {
        chrome,
        notice: q.done.as_deref().map(display),
        title,
        view: view.name(),
        date: date_of(shown_date),
        filter: filter.clone(),
        tz: tz_name.to_string(),
        prev_href: href(view.name(), date_of(prev), 0),
        next_href: href(view.name(), date_of(next), 0),
        today_href: href(view.name(), String::new(), 0),
        other_view_href: href(other, date_of(shown_date), page),
        other_view_label: other_label,
        now_text: clock(now, &frame.tz),
        headings: frame.headings(),
        rows: frame.rows(&data.hosts, &data.claims, viewer),
        now_line: frame.now_line(now),
        total: data.total,
        first,
        last,
        prev_page_href: (page > 0).then(|| href(view.name(), date_of(shown_date), page - 1)),
        prev_page_text: format!("{}–{}", (page - 1) * per + 1, page * per),
        next_page_href: (last < data.total)
            .then(|| href(view.name(), date_of(shown_date), page + 1)),
        next_page_text: format!("{}–{}", last + 1, (last + per).min(data.total)),
    }
}

/// The view, its span, the zone, the page and rows per page `q` asks for.
pub fn timeline_frame(q: &TimelineQuery, now: i64) -> (Frame, String, i64, i64) {
    let (tz, tz_name) = zone(q.tz.as_deref());
    let view = q.view.as_deref().and_then(View::parse).unwrap_or(View::Day);
    let date = q
        .date
        .as_deref()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| timeline::today(now, &tz));
    let per = q.per.unwrap_or(PER_PAGE).clamp(1, MAX_PER_PAGE);
    let page = q.page.unwrap_or(0).max(0);
    (Frame::new(view, date, tz), tz_name, page, per)
}

pub async fn timeline(
    State(calendar): State<Calendar>,
    headers: HeaderMap,
    Query(q): Query<TimelineQuery>,
) -> Response {
    let now = now();
    let (s, chrome) = match session::signed_in(&calendar, &headers, now).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (frame, tz_name, page, per) = timeline_frame(&q, now);
    let filter = q.filter.clone().unwrap_or_default();
    let db = calendar.database();
    let (total, hosts) = match data::hosts_page(db, filter.trim(), page * per, per).await {
        Ok(x) => x,
        Err(e) => return unavailable(&e),
    };
    let claims = match data::claims(db, &hosts, frame.from, frame.to).await {
        Ok(x) => x,
        Err(e) => return unavailable(&e),
    };
    let data = TimelineData {
        total,
        hosts,
        claims,
    };
    html(
        StatusCode::OK,
        &timeline_page(
            Some(chrome),
            &q,
            &frame,
            &tz_name,
            page,
            per,
            &data,
            &s.user,
            now,
        ),
    )
}

// ----- booking -----

/// A refusal as the page shows it.
pub struct Problem {
    pub message: String,
    pub in_the_way: Vec<String>,
}

fn problem(e: &BookError, tz: &TimeZone) -> (StatusCode, Problem) {
    let status = match e {
        BookError::Invalid(_) | BookError::UnknownHosts(_) => StatusCode::BAD_REQUEST,
        BookError::NotFound(_) => StatusCode::NOT_FOUND,
        BookError::Refused(f, _) => match f.kind {
            FailureKind::Denied => StatusCode::FORBIDDEN,
            FailureKind::Conflict => StatusCode::CONFLICT,
            FailureKind::Limit => StatusCode::UNPROCESSABLE_ENTITY,
            FailureKind::NotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        },
        BookError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let blockers = |list: &[crate::calendar::InTheWay]| -> Vec<String> {
        list.iter()
            .map(|w| {
                format!(
                    "{}: {} ({}) {} – {}, reservation {}",
                    w.host,
                    display(&w.owner),
                    w.mode,
                    clock(w.start, tz),
                    clock(w.end, tz),
                    w.reservation.short()
                )
            })
            .collect()
    };
    let (message, in_the_way) = match e {
        BookError::Refused(f, list) => (
            format!("{} Nothing was changed.", display(&f.message)),
            blockers(list),
        ),
        other => (
            format!("{}. Nothing was changed.", display(&other.to_string())),
            Vec::new(),
        ),
    };
    (
        status,
        Problem {
            message,
            in_the_way,
        },
    )
}

#[derive(Template)]
#[template(path = "book.html")]
struct BookPage {
    chrome: Option<Chrome>,
    csrf: String,
    error: Option<Problem>,
    tz: String,
    hosts: Vec<(String, bool)>,
    start: String,
    end: String,
    shared: bool,
    comment: String,
    with: String,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct BookQuery {
    #[serde(default)]
    hosts: Option<String>,
    #[serde(default)]
    tz: Option<String>,
    #[serde(default)]
    date: Option<String>,
}

async fn book_page(
    calendar: &Calendar,
    chrome: Chrome,
    status: StatusCode,
    error: Option<Problem>,
    form: &Form,
) -> Response {
    let (tz, tz_name) = zone(form.get("tz"));
    let chosen: Vec<&str> = form.all("hosts");
    let hosts = match data::host_names(calendar.database()).await {
        Ok(h) => h,
        Err(e) => return unavailable(&e),
    };
    let now = now();
    // By default: from the next full hour, for two hours.
    let start_default = (now / 3600 + 1) * 3600;
    let start = form
        .get("start")
        .map(String::from)
        .unwrap_or_else(|| timeline::local_input(start_default, &tz));
    let end = form
        .get("end")
        .map(String::from)
        .unwrap_or_else(|| timeline::local_input(start_default + 7200, &tz));
    html(
        status,
        &BookPage {
            csrf: chrome.csrf.clone(),
            chrome: Some(chrome),
            error,
            tz: tz_name,
            hosts: hosts
                .into_iter()
                .map(|h| {
                    let on = chosen.contains(&h.as_str());
                    (h, on)
                })
                .collect(),
            start,
            end,
            shared: form.get("mode") == Some("shared"),
            comment: form.get("comment").unwrap_or_default().to_string(),
            with: form.get("with").unwrap_or_default().to_string(),
        },
    )
}

pub async fn book_form(
    State(calendar): State<Calendar>,
    headers: HeaderMap,
    Query(q): Query<BookQuery>,
) -> Response {
    let (_, chrome) = match session::signed_in(&calendar, &headers, now()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut pairs = Vec::new();
    if let Some(h) = q.hosts {
        pairs.push(("hosts".to_string(), h));
    }
    if let Some(tz) = q.tz {
        pairs.push(("tz".to_string(), tz));
    }
    let _ = q.date;
    book_page(&calendar, chrome, StatusCode::OK, None, &Form(pairs)).await
}

fn users(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

pub async fn book(State(calendar): State<Calendar>, headers: HeaderMap, body: Bytes) -> Response {
    let now = now();
    let (s, chrome, form) = match session::checked(&calendar, &headers, &body, now).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (tz, _) = zone(form.get("tz"));
    let times = (
        form.get("start")
            .and_then(|t| timeline::parse_local(t, &tz)),
        form.get("end").and_then(|t| timeline::parse_local(t, &tz)),
    );
    let (Some(start), Some(end)) = times else {
        let error = Problem {
            message: "Give a start and an end (date and time). Nothing was changed.".into(),
            in_the_way: Vec::new(),
        };
        return book_page(
            &calendar,
            chrome,
            StatusCode::BAD_REQUEST,
            Some(error),
            &form,
        )
        .await;
    };
    let op = Op::Reserve(ReserveArgs {
        mode: if form.get("mode") == Some("shared") {
            Mode::Shared
        } else {
            Mode::Exclusive
        },
        start,
        end,
        with: users(form.get("with").unwrap_or_default()),
        comment: form.get("comment").unwrap_or_default().to_string(),
        owner: None,
        force: false,
        hosts: form.all("hosts").into_iter().map(String::from).collect(),
    });
    match ops::apply(&calendar, &s.user, &op, &tz, now).await {
        Ok(done) => {
            let date = timeline::local_input(start, &tz);
            Redirect::to(&format!(
                "/web/?{}",
                query_string(&[
                    ("date", date.get(..10).unwrap_or_default().to_string()),
                    ("tz", form.get("tz").unwrap_or_default().to_string()),
                    ("done", done.message),
                ])
            ))
            .into_response()
        }
        Err(e) => {
            let (status, error) = problem(&e, &tz);
            book_page(&calendar, chrome, status, Some(error), &form).await
        }
    }
}

// ----- one reservation -----

#[derive(Template)]
#[template(path = "reservation.html")]
struct ReservationPage {
    chrome: Option<Chrome>,
    csrf: String,
    notice: Option<String>,
    error: Option<Problem>,
    r: super::ical::Event,
    hosts: String,
    owner: String,
    co_users: String,
    comment: String,
    start_text: String,
    end_text: String,
    start_input: String,
    end_input: String,
    status: String,
    tz: String,
    live: bool,
    member: bool,
    admin: bool,
}

async fn reservation_page(
    calendar: &Calendar,
    chrome: Chrome,
    id: &str,
    tz_name: Option<&str>,
    status: StatusCode,
    notice: Option<String>,
    error: Option<Problem>,
) -> Response {
    let now = now();
    let (tz, tz_name) = zone(tz_name);
    let r = match data::reservation(calendar.database(), id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return message(
                StatusCode::NOT_FOUND,
                Some(chrome),
                "No such reservation",
                &format!("There is no reservation {}.", display(id)),
            );
        }
        Err(e) => return unavailable(&e),
    };
    let member = r.owner == chrome.user || r.co_users.contains(&chrome.user);
    let state = if r.cancelled {
        "cancelled"
    } else if r.end <= now {
        "over"
    } else if r.start <= now {
        "in force"
    } else {
        "booked"
    };
    html(
        status,
        &ReservationPage {
            csrf: chrome.csrf.clone(),
            admin: chrome.admin,
            chrome: Some(chrome),
            notice,
            error,
            hosts: r.hosts.join(", "),
            owner: display(&r.owner),
            co_users: if r.co_users.is_empty() {
                "none".into()
            } else {
                display(&r.co_users.join(", "))
            },
            comment: display(&r.comment),
            start_text: clock(r.start, &tz),
            end_text: clock(r.end, &tz),
            start_input: timeline::local_input(r.start, &tz),
            end_input: timeline::local_input(r.end, &tz),
            status: state.into(),
            tz: tz_name,
            live: !r.cancelled && r.end > now,
            member,
            r,
        },
    )
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct TzQuery {
    #[serde(default)]
    tz: Option<String>,
}

pub async fn reservation(
    State(calendar): State<Calendar>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<TzQuery>,
) -> Response {
    let (_, chrome) = match session::signed_in(&calendar, &headers, now()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    reservation_page(
        &calendar,
        chrome,
        &id,
        q.tz.as_deref(),
        StatusCode::OK,
        None,
        None,
    )
    .await
}

/// A form on a reservation's page: extend, edit, share, release, cancel.
pub async fn change(
    State(calendar): State<Calendar>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let now = now();
    let (s, chrome, form) = match session::checked(&calendar, &headers, &body, now).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (tz, _) = zone(form.get("tz"));
    let op = match action.as_str() {
        "extend" => {
            let by = form.get("by").and_then(|b| b.parse::<i64>().ok());
            Op::Change(ChangeArgs {
                id: id.clone(),
                extend_by: Some(by.unwrap_or(3600)),
                ..ChangeArgs::default()
            })
        }
        "edit" => Op::Change(ChangeArgs {
            id: id.clone(),
            start: form
                .get("start")
                .and_then(|t| timeline::parse_local(t, &tz)),
            end: form.get("end").and_then(|t| timeline::parse_local(t, &tz)),
            mode: match form.get("mode") {
                Some("shared") => Some(Mode::Shared),
                Some("exclusive") => Some(Mode::Exclusive),
                _ => None,
            },
            comment: form.get("comment").map(String::from),
            ..ChangeArgs::default()
        }),
        "share" => {
            let args = ShareArgs {
                id: id.clone(),
                users: users(form.get("users").unwrap_or_default()),
            };
            if form.get("how") == Some("unshare") {
                Op::Unshare(args)
            } else {
                Op::Share(args)
            }
        }
        "release" => Op::Release(IdArgs { id: id.clone() }),
        "cancel" => Op::Cancel(IdArgs { id: id.clone() }),
        _ => {
            return message(
                StatusCode::NOT_FOUND,
                Some(chrome),
                "No such action",
                "This page does not exist.",
            );
        }
    };
    match ops::apply(&calendar, &s.user, &op, &tz, now).await {
        Ok(done) => {
            if matches!(op, Op::Release(_) | Op::Cancel(_)) {
                return Redirect::to(&format!(
                    "/web/?{}",
                    query_string(&[("done", done.message)])
                ))
                .into_response();
            }
            reservation_page(
                &calendar,
                chrome,
                &id,
                form.get("tz"),
                StatusCode::OK,
                Some(done.message),
                None,
            )
            .await
        }
        Err(e) => {
            let (status, error) = problem(&e, &tz);
            reservation_page(
                &calendar,
                chrome,
                &id,
                form.get("tz"),
                status,
                None,
                Some(error),
            )
            .await
        }
    }
}

// ----- who is where -----

pub struct PresentUser {
    user: String,
    how: String,
    unreserved: bool,
}

pub struct WhoRow {
    name: String,
    holders: Vec<String>,
    present: Vec<PresentUser>,
    /// How long ago it last synced the calendar.
    synced: String,
    /// How long ago it last reported who is on it.
    reported: String,
}

#[derive(Template)]
#[template(path = "who.html")]
struct WhoPage {
    chrome: Option<Chrome>,
    hosts: Vec<WhoRow>,
}

/// How a session kind reads on the page.
fn how(kind: &str) -> &str {
    match kind {
        "login" => "ssh/console",
        "ssh" => "ssh",
        "tmux" => "tmux",
        "screen" => "screen",
        "vscode" => "VS Code",
        "xrdp" | "xorg" => "desktop",
        "gpu" => "GPU",
        other => other,
    }
}

/// "12s ago", "5m ago", "3h ago", "never".
fn age(seen: Option<i64>, now: i64) -> String {
    match seen {
        None => "never".into(),
        Some(t) => {
            let a = (now - t).max(0);
            if a < 120 {
                format!("{a}s ago")
            } else if a < 7200 {
                format!("{}m ago", a / 60)
            } else {
                format!("{}h ago", a / 3600)
            }
        }
    }
}

/// Who is on each host, how, and who is there without a reservation
/// while another user holds the host exclusively.
pub fn who_rows(
    status: &[crate::calendar::HostStatus],
    presence: &HashMap<String, serde_json::Value>,
    members: &HashMap<String, Vec<String>>,
    now: i64,
) -> Vec<WhoRow> {
    status
        .iter()
        .map(|h| {
            let exclusive_held = h.holders.iter().any(|x| x.mode == Mode::Exclusive);
            let allowed = members.get(&h.name).cloned().unwrap_or_default();
            let mut by_user: Vec<(String, Vec<String>)> = Vec::new();
            if let Some(sessions) = presence.get(&h.name).and_then(|s| s["sessions"].as_array()) {
                for s in sessions {
                    let (Some(user), Some(kind)) = (s["user"].as_str(), s["kind"].as_str()) else {
                        continue;
                    };
                    let how = how(kind).to_string();
                    match by_user.iter_mut().find(|(u, _)| u == user) {
                        Some((_, hows)) => {
                            if !hows.contains(&how) {
                                hows.push(how);
                            }
                        }
                        None => by_user.push((user.to_string(), vec![how])),
                    }
                }
            }
            WhoRow {
                name: h.name.clone(),
                holders: h
                    .holders
                    .iter()
                    .map(|x| {
                        format!(
                            "{} {} ({}) until {}",
                            if x.mode == Mode::Exclusive {
                                "■"
                            } else {
                                "▨"
                            },
                            display(&x.owner),
                            x.mode,
                            clock(x.end, &TimeZone::UTC)
                        )
                    })
                    .collect(),
                present: by_user
                    .into_iter()
                    .map(|(user, hows)| PresentUser {
                        unreserved: exclusive_held && user != "root" && !allowed.contains(&user),
                        user: display(&user),
                        how: hows.join(", "),
                    })
                    .collect(),
                synced: age(h.synced, now),
                reported: age(h.seen, now),
            }
        })
        .collect()
}

pub async fn who(State(calendar): State<Calendar>, headers: HeaderMap) -> Response {
    let now = now();
    let (_, chrome) = match session::signed_in(&calendar, &headers, now).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let status = match calendar.host_status(now).await {
        Ok(s) => s,
        Err(e) => return unavailable(&e),
    };
    let presence: HashMap<String, serde_json::Value> = match calendar.presence().await {
        Ok(p) => p.into_iter().map(|(h, _, s)| (h, s)).collect(),
        Err(e) => return unavailable(&e),
    };
    let members = match data::members_now(calendar.database(), now).await {
        Ok(m) => m,
        Err(e) => return unavailable(&e),
    };
    html(
        StatusCode::OK,
        &WhoPage {
            chrome: Some(chrome),
            hosts: who_rows(&status, &presence, &members, now),
        },
    )
}

// ----- feeds -----

#[derive(Template)]
#[template(path = "feeds.html")]
struct FeedsPage {
    chrome: Option<Chrome>,
    csrf: String,
    user_url: Option<String>,
    host_example: String,
}

pub async fn feeds(State(calendar): State<Calendar>, headers: HeaderMap) -> Response {
    let (_, chrome) = match session::signed_in(&calendar, &headers, now()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    html(
        StatusCode::OK,
        &FeedsPage {
            csrf: chrome.csrf.clone(),
            chrome: Some(chrome),
            user_url: None,
            host_example: String::new(),
        },
    )
}

pub async fn make_feed(
    State(calendar): State<Calendar>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = now();
    let (s, chrome, _) = match session::checked(&calendar, &headers, &body, now).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let token = match identity::mint_token(
        calendar.database(),
        &s.user,
        Scope::Feed,
        "iCal feed (web)",
        None,
        None,
        now,
    )
    .await
    {
        Ok((t, _)) => t,
        Err(e) => {
            let (status, p) = problem(&e, &TimeZone::UTC);
            return message(status, Some(chrome), "No feed address", &p.message);
        }
    };
    let origin = session::origin_of(&headers);
    let example = match data::host_names(calendar.database()).await {
        Ok(h) => h.into_iter().next().unwrap_or_else(|| "HOST".into()),
        Err(_) => "HOST".into(),
    };
    html(
        StatusCode::OK,
        &FeedsPage {
            csrf: chrome.csrf.clone(),
            chrome: Some(chrome),
            user_url: Some(format!("{origin}{}", super::feed_path(&token))),
            host_example: format!("{origin}/feed/{token}/host/{example}.ics"),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{Holder, HostStatus};

    #[test]
    fn who_is_where_flags_use_without_a_reservation() {
        let status = vec![HostStatus {
            name: "gpu1".into(),
            version: 3,
            holders: vec![Holder {
                owner: "alice".into(),
                mode: Mode::Exclusive,
                end: 1_800_003_600,
            }],
            present: vec![],
            seen: Some(1_800_000_000 - 30),
            synced: Some(1_800_000_000 - 200),
        }];
        let session = |user: &str, kind: &str| serde_json::json!({"user": user, "kind": kind});
        let presence = HashMap::from([(
            "gpu1".to_string(),
            serde_json::json!({"sessions": [
                session("alice", "vscode"), session("alice", "gpu"), session("bob", "tmux"),
                session("carol", "login"), session("root", "login")]}),
        )]);
        let members = HashMap::from([("gpu1".to_string(), vec!["alice".into(), "carol".into()])]);
        let rows = who_rows(&status, &presence, &members, 1_800_000_000);
        let row = &rows[0];
        assert_eq!(row.reported, "30s ago");
        assert_eq!(row.synced, "3m ago");
        assert_eq!(
            row.holders,
            ["■ alice (exclusive) until Fri 15 Jan 2027 09:00 UTC"]
        );
        let seen: Vec<(&str, &str, bool)> = row
            .present
            .iter()
            .map(|p| (p.user.as_str(), p.how.as_str(), p.unreserved))
            .collect();
        assert_eq!(
            seen,
            [
                ("alice", "VS Code, GPU", false),
                ("bob", "tmux", true),
                ("carol", "ssh/console", false),
                ("root", "ssh/console", false)
            ]
        );
    }
}
