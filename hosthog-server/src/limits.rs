//! What a client may send and how long it may take: a request body of at
//! most [`MAX_BODY`] bytes, headers within [`HEADER_TIMEOUT`], a body within
//! [`BODY_TIMEOUT`]; and every refusal, whoever makes it (a handler, an
//! extractor such as axum's `Json`, the router itself), answered in the one
//! JSON error shape of docs/fleet-api.md:
//! `{"error": KIND, "message": TEXT}`.
//!
//! A slow or hostile client costs one task and is cut off; it never holds a
//! database connection (bodies are read before any handler runs).

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The largest request body accepted, in bytes (the biggest real one, a
/// presence report of a busy host, is well under it).
pub const MAX_BODY: usize = 64 * 1024;
/// How long a client may take to send a request's headers (and how long
/// an idle kept-alive connection stays open).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest kept of a refusal's plain-text reason.
const MAX_MESSAGE: usize = 300;

/// The error kind a status means, for refusals made outside the handlers.
#[must_use]
pub fn kind(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "invalid",
    }
}

/// The JSON error body for `status` with `message`.
#[must_use]
pub fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": kind(status), "message": message });
    (status, axum::Json(body)).into_response()
}

/// The message for a refusal whose reason came as plain text: the text,
/// cut short and stripped of control characters, with what to do.
#[must_use]
pub fn message(status: StatusCode, text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut reason: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE)
        .collect();
    reason = reason.trim().to_string();
    let hint = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the request body is larger than {MAX_BODY} bytes")
        }
        StatusCode::REQUEST_TIMEOUT => format!(
            "the request body did not arrive within {} s",
            BODY_TIMEOUT.as_secs()
        ),
        StatusCode::NOT_FOUND => "no such path: see docs/fleet-api.md".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => {
            "this path does not take that method: see docs/fleet-api.md".to_string()
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            "send the body as JSON with Content-Type: application/json".to_string()
        }
        _ => String::new(),
    };
    match (reason.is_empty(), hint.is_empty()) {
        (true, true) => status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase(),
        (true, false) => hint,
        (false, true) => reason,
        (false, false) => format!("{reason} ({hint})"),
    }
}

/// Whether `path` belongs to an API, whose errors are the JSON shape. The
/// web pages and the feeds answer errors as pages and text of their own
/// (crate::web).
#[must_use]
pub fn is_api(path: &str) -> bool {
    !(path == "/web" || path.starts_with("/web/") || path.starts_with("/feed/"))
}

/// Middleware (axum::middleware::from_fn): reads the body within the
/// limits before the handler runs, and gives every error answer that is
/// not JSON yet the JSON error shape.
pub async fn guard(request: Request, next: Next) -> Response {
    let too_large = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY as u64);
    if too_large {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &message(StatusCode::PAYLOAD_TOO_LARGE, b""),
        );
    }
    let api = is_api(request.uri().path());
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await
    {
        Ok(Ok(bytes)) => bytes,
        // to_bytes fails for a body over the limit (chunked, without a
        // length) or one the client broke off.
        Ok(Err(_)) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &message(StatusCode::PAYLOAD_TOO_LARGE, b""),
            );
        }
        Err(_) => {
            return error_response(
                StatusCode::REQUEST_TIMEOUT,
                &message(StatusCode::REQUEST_TIMEOUT, b""),
            );
        }
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if !api {
        return response;
    }
    as_json(response).await
}

/// `response` itself if it succeeded or is JSON already; else the JSON
/// error shape with its plain-text reason as the message.
async fn as_json(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == HeaderValue::from_static("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let mut fixed = error_response(status, &message(status, &text));
    // Keep what the refusal said besides its body (Allow on a 405).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name, value.clone());
        }
    }
    fixed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_say_what_to_do_and_carry_no_control_characters() {
        assert_eq!(
            message(StatusCode::PAYLOAD_TOO_LARGE, b""),
            "the request body is larger than 65536 bytes"
        );
        assert_eq!(
            message(StatusCode::BAD_REQUEST, b"bad\x1b]0;x\x07 json\n"),
            "bad ]0;x  json"
        );
        assert_eq!(
            message(StatusCode::UNSUPPORTED_MEDIA_TYPE, b"Expected json"),
            "Expected json (send the body as JSON with Content-Type: application/json)"
        );
        assert_eq!(message(StatusCode::IM_A_TEAPOT, b""), "i'm a teapot");
        assert_eq!(message(StatusCode::BAD_REQUEST, &[b'x'; 1000]).len(), 300);
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(StatusCode::UNPROCESSABLE_ENTITY), "invalid");
        assert_eq!(kind(StatusCode::INTERNAL_SERVER_ERROR), "internal");
        assert_eq!(kind(StatusCode::PAYLOAD_TOO_LARGE), "too_large");
    }
}
