//! Feeds arbitrary requests to hosthog-server's router: the method, the
//! path (one of the API's, with fuzzed ids and query strings), a bearer
//! token or a client certificate or neither, the content type, and the
//! body. The router is the one `serve` runs (the body limits, axum's JSON
//! and query extractors with the handlers' own types, the JSON error shape)
//! over a database that cannot be reached, so whatever parses ends in a
//! 503. It must never panic; it must never answer 500; every refusal must
//! be the JSON error shape with a one-line message (the web pages and feeds,
//! `limits::is_api` false, refuse as pages of their own); a body over the
//! limit must be refused 413.

#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Target {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let db = hosthog_server::Database::new(
            "host=/nonexistent/hosthog-fuzz user=nobody dbname=none",
        )
        .unwrap();
        let router = {
            let _guard = runtime.enter();
            hosthog_server::http::router(
                hosthog_server::Calendar::new(db),
                hosthog_server::notify::Changes::silent(),
            )
        };
        Target { runtime, router }
    })
}

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

/// `{}` is replaced by the fuzzed part (an id or a query string).
const PATHS: [&str; 15] = [
    "/agent/v1/window?{}",
    "/agent/v1/request",
    "/agent/v1/next-free",
    "/agent/v1/reservations?{}",
    "/agent/v1/reservations/{}",
    "/agent/v1/presence",
    "/agent/v1/hosts",
    "/api/v1/presence",
    "/api/v1/hosts",
    "/api/v1/reservations",
    "/api/v1/reservations/{}",
    "/api/v1/reservations/{}/share",
    "/api/v1/reservations/next-free",
    "/api/v1/reservations?{}",
    "/{}",
];

fuzz_target!(|data: &[u8]| {
    let [m, p, flags, rest @ ..] = data else {
        return;
    };
    let (part, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(part) = std::str::from_utf8(part) else {
        return;
    };
    let method = METHODS[usize::from(*m) % METHODS.len()].clone();
    let path = PATHS[usize::from(*p) % PATHS.len()].replace("{}", part);
    let mut builder = Request::builder().method(method).uri(path);
    if flags & 1 != 0 {
        builder = builder.header("content-type", "application/json");
    }
    if flags & 2 != 0 {
        builder = builder.header("authorization", "Bearer hh_00");
    }
    // hyper refuses what is not a URI or a header before the router sees it.
    let Ok(mut request) = builder.body(Body::from(body.to_vec())) else {
        return;
    };
    let api = hosthog_server::limits::is_api(request.uri().path());
    let certificate = (flags & 4 != 0).then(|| "ab".repeat(32));
    hosthog_server::http::from_peer(&mut request, certificate);
    let t = target();
    let (status, bytes) = t.runtime.block_on(async {
        let response = t.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes)
    });
    assert!(status.as_u16() != 500, "500 for {data:?}: {bytes:?}");
    if body.len() > hosthog_server::limits::MAX_BODY {
        assert_eq!(status.as_u16(), 413);
    }
    // The web pages and feeds refuse as pages and text of their own.
    if !status.is_success() && api {
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {bytes:?}"));
        assert!(json["error"].is_string(), "{json}");
        let message = json["message"].as_str().unwrap();
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "{json}"
        );
    }
});
