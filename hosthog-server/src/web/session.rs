//! Browser sessions and forms: the session cookie (`__Host-hh_session`:
//! HttpOnly, Secure, SameSite=Strict, Path=/, a random value stored only
//! hashed), the CSRF token every form carries, and the Origin check every
//! POST passes. A form that fails either is refused with 403 and nothing
//! is changed.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::calendar::Calendar;
use crate::identity::{self, Session};

/// The cookie's name; the `__Host-` prefix makes browsers insist on
/// Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-hh_session";

/// What every signed-in page's frame shows.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub user: String,
    pub csrf: String,
    pub admin: bool,
}

/// A posted form's fields, in order (a multi-select repeats its name).
#[derive(Debug, Clone, Default)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The session cookie's value, if the request carries one.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

pub fn set_cookie(response: &mut Response, value: &str, max_age: i64) {
    let cookie =
        format!("{COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub fn clear_cookie(response: &mut Response) {
    set_cookie(response, "", 0);
}

/// `https://HOST[:PORT]` as the request addressed this server.
pub fn origin_of(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    format!("https://{host}")
}

fn forbidden(message: &str) -> Response {
    super::pages::message(StatusCode::FORBIDDEN, None, "Refused", message)
}

/// A POST must come from a page of this server: its `Origin` (which
/// browsers send with every POST) must be this server's, and a browser's
/// `Sec-Fetch-Site` must say same-origin.
///
/// # Errors
/// The 403 page.
#[allow(clippy::result_large_err)]
pub fn same_origin(headers: &HeaderMap) -> Result<(), Response> {
    let expected = origin_of(headers);
    if let Some(origin) = headers.get(header::ORIGIN)
        && origin.to_str().ok() != Some(expected.as_str())
    {
        return Err(forbidden(
            "This form was sent from another site (its Origin is not this server's), so it \
             was refused and nothing was changed.",
        ));
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin") | Ok("none"))
    {
        return Err(forbidden(
            "This form was sent from another site, so it was refused and nothing was changed.",
        ));
    }
    Ok(())
}

fn not_signed_in() -> Response {
    super::pages::message(
        StatusCode::UNAUTHORIZED,
        None,
        "Not signed in",
        "Sign in with the one-time link that `hosthog web` prints on any host of the fleet.",
    )
}

/// The session of a signed-in request, and its page frame.
///
/// # Errors
/// The "not signed in" page (401), or 503 when the database is down.
#[allow(clippy::result_large_err)]
pub async fn signed_in(
    calendar: &Calendar,
    headers: &HeaderMap,
    now: i64,
) -> Result<(Session, Chrome), Response> {
    let Some(value) = cookie(headers) else {
        return Err(not_signed_in());
    };
    let session = match identity::session(calendar.database(), &value, now).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(not_signed_in()),
        Err(e) => {
            return Err(super::pages::message(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "The calendar is unavailable",
                &e.to_string(),
            ));
        }
    };
    let admin = calendar.is_admin(&session.user).await.unwrap_or(false);
    let chrome = Chrome {
        user: session.user.clone(),
        csrf: session.csrf.clone(),
        admin,
    };
    Ok((session, chrome))
}

/// A posted form of a signed-in page: same origin, signed in, and
/// carrying the session's CSRF token.
///
/// # Errors
/// 403 (foreign origin, missing or wrong token), 401, 503.
#[allow(clippy::result_large_err)]
pub async fn checked(
    calendar: &Calendar,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(Session, Chrome, Form), Response> {
    same_origin(headers)?;
    let (session, chrome) = signed_in(calendar, headers, now).await?;
    let form = Form::parse(body);
    let sent = form.get("csrf").unwrap_or_default();
    if !constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) {
        return Err(forbidden(
            "This form lacks this session's CSRF token (it did not come from a page of this \
             session), so it was refused and nothing was changed. Reload the page and try again.",
        ));
    }
    Ok((session, chrome, form))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
