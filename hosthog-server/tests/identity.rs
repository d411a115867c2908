//! Identity minted through a host (issue 13): `hosthog token
//! create|list|revoke`, `hosthog web` and `hosthog feed` on a host that
//! follows the calendar, through its hosthogd and the agent API. Secrets
//! are stored hashed, expire, are revocable by their owner only, and each
//! opens only what it is for. Real PostgreSQL, server and hosthogd; run as
//! root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use hosthog_tests::fleet::{Auth, FleetHost, FleetServer, binary, now};
use serde_json::json;

fn hosthog(host: &FleetHost, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary("hosthog"))
        .arg("--socket")
        .arg(host.dir.path().join("hosthogd.sock"))
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A raw HTTPS request with curl: status, headers, body.
fn curl(server: &FleetServer, method: &str, path: &str, extra: &[&str]) -> (u16, String, String) {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("/usr/bin/curl")
        .args(["-sS", "-X", method, "-w", "\n%{http_code}", "-D"])
        .arg(headers.path())
        .arg("--cacert")
        .arg(server.ca_dir().join("ca.pem"))
        .args(extra)
        .arg(format!("{}{path}", server.address()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.parse().unwrap(),
        std::fs::read_to_string(headers.path()).unwrap(),
        body.to_string(),
    )
}

fn sha256(text: &str) -> String {
    let out = Command::new("/usr/bin/sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

#[test]
fn tokens_links_and_feeds_are_minted_through_a_host() {
    let mut server = FleetServer::start();
    let gpu1_bundle = server.add_host("gpu1");
    server.serve();
    let gpu1 = FleetHost::start(&server, "gpu1", &gpu1_bundle);
    gpu1.wait_synced();

    // A token, shown once, stored only as its SHA-256.
    let (code, out, err) = hosthog(
        &gpu1,
        &["token", "create", "--label", "ci", "--expires-in", "2h"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let token = out.lines().next().unwrap().to_string();
    assert!(token.starts_with("hh_") && token.len() == 67, "{out}");
    let id = &sha256(&token)[..12];
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("(token {id}, expires ")),
        "{out}"
    );
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT user_name, scope, label, minted_by, expires_at - created_at FROM api_token"
        ),
        "root|api|ci|gpu1|02:00:00\n"
    );
    assert_eq!(
        server.pg.psql(
            "fleet",
            &format!(
                "SELECT count(*) FROM api_token WHERE sha256 = '{}'",
                sha256(&token)
            )
        ),
        "1\n"
    );
    let (status, body) = server.request("GET", "/api/v1/hosts", Auth::Token(&token), None);
    assert_eq!(status, 200, "{body}");

    // Listed (never the secret), then revoked by its owner.
    let (code, out, _) = hosthog(&gpu1, &["token", "list"]);
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("SCOPE"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("{id}  api ")) && lines[1].ends_with("ci"),
        "{out}"
    );
    assert!(!out.contains(&token));

    // Someone else's token: listed for them only, not revocable by root.
    let (status, bob) = server.request(
        "POST",
        "/agent/v1/tokens",
        Auth::Host(&gpu1_bundle),
        Some(&json!({"user": "bob", "label": "bob's"})),
    );
    assert_eq!(status, 201, "{bob}");
    let bob_token = bob["token"].as_str().unwrap().to_string();
    let bob_id = bob["id"].as_str().unwrap().to_string();
    let (code, _, err) = hosthog(&gpu1, &["token", "revoke", &bob_id]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim(),
        format!("hosthog: root has no live token {bob_id} (hosthog token list shows them)")
    );
    let (status, _) = server.request("GET", "/api/v1/hosts", Auth::Token(&bob_token), None);
    assert_eq!(status, 200);

    let (code, out, err) = hosthog(&gpu1, &["token", "revoke", &id[..6]]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("Revoked token {id}\n"));
    let (status, body) = server.request("GET", "/api/v1/hosts", Auth::Token(&token), None);
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unauthenticated", "{body}");

    // Expired tokens stop working at once.
    server.pg.psql(
        "fleet",
        "UPDATE api_token SET expires_at = now() - interval '1 second' WHERE user_name = 'bob'",
    );
    let (status, _) = server.request("GET", "/api/v1/hosts", Auth::Token(&bob_token), None);
    assert_eq!(status, 401);

    // Bad requests: a clear 4xx, nothing stored.
    let before = server.pg.psql("fleet", "SELECT count(*) FROM api_token");
    for (body, message) in [
        (
            json!({"user": "root", "expires_in": 10}),
            "a token lasts from 1 minute to 366 days; 10 seconds is out of range",
        ),
        (
            json!({"user": "root", "label": "a\u{202E}b"}),
            "the label may not contain control characters or text-direction overrides",
        ),
        (json!({"user": "root'; DROP TABLE api_token; --"}), ""),
    ] {
        let (status, answer) = server.request(
            "POST",
            "/agent/v1/tokens",
            Auth::Host(&gpu1_bundle),
            Some(&body),
        );
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], "invalid", "{answer}");
        if !message.is_empty() {
            assert_eq!(answer["message"], message);
        }
    }
    let (status, answer) = server.request(
        "POST",
        "/agent/v1/tokens",
        Auth::None,
        Some(&json!({"user": "root"})),
    );
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        server.pg.psql("fleet", "SELECT count(*) FROM api_token"),
        before
    );

    // A feed address: a feed token, which is no bearer token.
    let (code, out, _) = hosthog(&gpu1, &["feed"]);
    assert_eq!(code, Some(0));
    let feed = out.lines().next().unwrap();
    let feed_token = feed
        .strip_prefix(&format!("{}/feed/", server.address()))
        .and_then(|rest| rest.strip_suffix("/me.ics"))
        .unwrap_or_else(|| panic!("{out}"));
    let (status, headers, ics) = curl(&server, "GET", &format!("/feed/{feed_token}/me.ics"), &[]);
    assert_eq!(status, 200);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/calendar; charset=utf-8"),
        "{headers}"
    );
    assert!(
        ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"),
        "{ics}"
    );
    let (status, _) = server.request("GET", "/api/v1/hosts", Auth::Token(feed_token), None);
    assert_eq!(status, 401);
    // An event's UID is the same whichever name the feed is fetched by (a
    // calendar subscribed through two names would otherwise show each
    // event twice): `ID@hosthog`.
    let alice = server.token("alice");
    let t = now();
    let (status, body) = server.request(
        "POST",
        "/api/v1/reservations",
        Auth::Token(&alice),
        Some(&json!({"hosts": ["gpu1"], "mode": "shared", "start": t + 3600, "end": t + 7200})),
    );
    assert_eq!(status, 201, "{body}");
    let booked = body["id"].as_str().unwrap();
    let uids = |extra: &[&str]| -> Vec<String> {
        let (status, _, ics) = curl(
            &server,
            "GET",
            &format!("/feed/{feed_token}/host/gpu1.ics"),
            extra,
        );
        assert_eq!(status, 200, "{ics}");
        ics.replace("\r\n ", "")
            .lines()
            .filter_map(|l| l.strip_prefix("UID:"))
            .map(|uid| uid.trim_end().to_string())
            .collect()
    };
    let by_address = uids(&[]);
    let port = server.port;
    let by_name = uids(&["-H", &format!("Host: calendar.lab.example:{port}")]);
    assert_eq!(by_address, [format!("{booked}@hosthog")]);
    assert_eq!(by_name, by_address);
    let (status, _, body) = curl(&server, "GET", "/feed/hh_0000/me.ics", &[]);
    assert_eq!(
        (status, body.as_str()),
        (
            404,
            "no such feed (revoked, or never made): `hosthog feed` makes a new address\n"
        )
    );

    // A sign-in link: once, for 10 minutes; the session cookie is
    // HttpOnly, Secure, SameSite=Strict; only hashes are stored.
    let (code, out, _) = hosthog(&gpu1, &["web"]);
    assert_eq!(code, Some(0));
    let link = out.lines().next().unwrap();
    let secret = link
        .strip_prefix(&format!("{}/web/signin/", server.address()))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        server.pg.psql(
            "fleet",
            "SELECT user_name, minted_by, expires_at - created_at FROM web_link"
        ),
        "root|gpu1|00:10:00\n"
    );
    assert_eq!(
        server.pg.psql(
            "fleet",
            &format!(
                "SELECT count(*) FROM web_link WHERE sha256 = '{}'",
                sha256(secret)
            )
        ),
        "1\n"
    );
    let (status, headers, page) = curl(&server, "GET", &format!("/web/signin/{secret}"), &[]);
    assert_eq!(status, 200);
    assert!(
        page.contains("<button type=\"submit\" id=\"signin\">Sign in</button>"),
        "{page}"
    );
    let lower = headers.to_ascii_lowercase();
    assert!(
        lower.contains(
            "content-security-policy: default-src 'self'; script-src 'self'; style-src 'self';"
        ),
        "{headers}"
    );
    let origin = format!("Origin: {}", server.address());
    let form = format!("secret={secret}");
    // From another site: refused, the link still good.
    let (status, _, _) = curl(
        &server,
        "POST",
        "/web/signin",
        &["-H", "Origin: https://evil.example", "--data", &form],
    );
    assert_eq!(status, 403);
    let (status, headers, _) = curl(
        &server,
        "POST",
        "/web/signin",
        &["-H", &origin, "--data", &form],
    );
    assert_eq!(status, 303, "{headers}");
    let cookie_line = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{headers}"));
    assert!(
        cookie_line.contains("; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=43200"),
        "{cookie_line}"
    );
    let cookie = cookie_line
        .split_once('=')
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap();
    assert_eq!(
        server.pg.psql(
            "fleet",
            &format!(
                "SELECT count(*) FROM web_session WHERE sha256 = '{}'",
                sha256(cookie)
            )
        ),
        "1\n"
    );
    let (status, _, page) = curl(
        &server,
        "POST",
        "/web/signin",
        &["-H", &origin, "--data", &form],
    );
    assert_eq!(status, 403);
    assert!(
        page.contains("This sign-in link was used already"),
        "{page}"
    );
    // An expired link, and one never made.
    let (_, out, _) = hosthog(&gpu1, &["web"]);
    let secret = out
        .lines()
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    server.pg.psql(
        "fleet",
        &format!(
            "UPDATE web_link SET expires_at = now() - interval '1 second' WHERE sha256 = '{}'",
            sha256(&secret)
        ),
    );
    let (status, _, page) = curl(
        &server,
        "POST",
        "/web/signin",
        &["-H", &origin, "--data", &format!("secret={secret}")],
    );
    assert_eq!(status, 403);
    assert!(
        page.contains("This sign-in link has expired (links last 10 minutes)."),
        "{page}"
    );
    let (status, _, page) = curl(
        &server,
        "POST",
        "/web/signin",
        &[
            "-H",
            &origin,
            "--data",
            &format!("secret={}", "0".repeat(64)),
        ],
    );
    assert_eq!(status, 403);
    assert!(page.contains("This sign-in link is not valid."), "{page}");
    // The session opens the pages; without it, 401.
    let (status, _, page) = curl(
        &server,
        "GET",
        "/web/",
        &["-H", &format!("Cookie: __Host-hh_session={cookie}")],
    );
    assert_eq!(status, 200);
    assert!(page.contains("<span class=\"me\">root</span>"), "{page}");
    let (status, _, _) = curl(&server, "GET", "/web/", &[]);
    assert_eq!(status, 401);
}
