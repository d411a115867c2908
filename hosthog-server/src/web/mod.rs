//! The web calendar and the iCal feeds, served by hosthog-server itself:
//! server-rendered HTML (askama templates in hosthog-server/templates),
//! a stylesheet and a little JavaScript compiled into the binary, no
//! build step. docs/web.md describes the pages.
//!
//! - `/web/signin/SECRET`: the one-time link from `hosthog web`.
//! - `/web/`: the timeline (day and week); `/web/book`, `/web/r/ID`:
//!   booking and changing, through the calendar like the API.
//! - `/web/who`, `/web/usage`, `/web/feeds`.
//! - `/feed/TOKEN/me.ics`, `/feed/TOKEN/host/NAME.ics`: iCal feeds.
//!
//! Every page is sent with a Content-Security-Policy that allows no
//! inline script or style, and every form passes the session's CSRF token
//! and an Origin check (super::session).

pub mod data;
pub mod ical;
pub mod ops;
pub mod pages;
pub mod session;
pub mod text;
pub mod timeline;
pub mod usage;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::calendar::Calendar;
use crate::identity::{self, Scope};
use crate::minting::now;

/// The path of a user's own feed for feed token `token`.
pub fn feed_path(token: &str) -> String {
    format!("/feed/{token}/me.ics")
}

/// The web's and the feeds' routes, and the agent API's identity routes
/// (crate::minting), over one calendar.
pub fn routes(calendar: Calendar) -> Router {
    let web = Router::new()
        .route(
            "/web",
            get(|| async { axum::response::Redirect::to("/web/") }),
        )
        .route("/web/", get(pages::timeline))
        .route("/web/signin/{secret}", get(pages::signin_page))
        .route("/web/signin", post(pages::signin))
        .route("/web/signout", post(pages::signout))
        .route("/web/book", get(pages::book_form).post(pages::book))
        .route("/web/r/{id}", get(pages::reservation))
        .route("/web/r/{id}/{action}", post(pages::change))
        .route("/web/who", get(pages::who))
        .route("/web/usage", get(usage::page))
        .route("/web/usage.csv", get(usage::csv_route))
        .route("/web/feeds", get(pages::feeds).post(pages::make_feed))
        .route("/web/static/style.css", get(style))
        .route("/web/static/app.js", get(script))
        .route("/feed/{token}/me.ics", get(user_feed))
        .route("/feed/{token}/host/{file}", get(host_feed))
        .layer(axum::middleware::from_fn(security_headers));
    Router::new()
        .merge(crate::minting::routes())
        .merge(web)
        .with_state(calendar)
}

/// The policy: scripts, styles and everything else from this server only;
/// no inline script or style, no framing, forms post only here.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        // same-origin: no address (a sign-in link's secret) leaks to another
        // site, while same-origin POSTs keep their Origin header.
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

const STYLE: &str = include_str!("../../static/style.css");
const SCRIPT: &str = include_str!("../../static/app.js");

async fn style() -> Response {
    static CSS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let css = CSS.get_or_init(|| format!("{STYLE}\n{}", timeline::grid_css()));
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        css.as_str(),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

fn ics(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        body,
    )
        .into_response()
}

fn feed_refused(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

async fn feed_user(calendar: &Calendar, token: &str) -> Result<String, Response> {
    match identity::token_user(calendar.database(), token, Scope::Feed, now()).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(feed_refused(
            StatusCode::NOT_FOUND,
            "no such feed (revoked, or never made): `hosthog feed` makes a new address",
        )),
        Err(e) => Err(feed_refused(
            StatusCode::SERVICE_UNAVAILABLE,
            &e.to_string(),
        )),
    }
}

async fn user_feed(State(calendar): State<Calendar>, Path(token): Path<String>) -> Response {
    let user = match feed_user(&calendar, &token).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match data::feed_events(
        calendar.database(),
        &data::FeedOf::User(user.clone()),
        now(),
    )
    .await
    {
        Ok(events) => ics(ical::calendar(&format!("hosthog: {user}"), &events)),
        Err(e) => feed_refused(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn host_feed(
    State(calendar): State<Calendar>,
    Path((token, file)): Path<(String, String)>,
) -> Response {
    if let Err(r) = feed_user(&calendar, &token).await {
        return r;
    }
    let Some(host) = file.strip_suffix(".ics") else {
        return feed_refused(StatusCode::NOT_FOUND, "a host's feed is /host/NAME.ics");
    };
    match data::host_exists(calendar.database(), host).await {
        Ok(true) => {}
        Ok(false) => return feed_refused(StatusCode::NOT_FOUND, "no such host in the calendar"),
        Err(e) => return feed_refused(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
    match data::feed_events(
        calendar.database(),
        &data::FeedOf::Host(host.to_string()),
        now(),
    )
    .await
    {
        Ok(events) => ics(ical::calendar(&format!("hosthog: {host}"), &events)),
        Err(e) => feed_refused(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
