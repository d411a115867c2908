//! The web calendar's and the feeds' speed (issue 15): a real PostgreSQL
//! loaded with 1,000 hosts and 5,000 reservations in one week, a real
//! hosthog-server, an HTTPS client in this process.
//!
//! Side by side in the same run:
//! - the week view of all 1,000 hosts on one page (`per=1000`): the
//!   database reads alone (the floor), reads + render in-process, and the
//!   whole HTTPS request; the default page of 50 hosts over HTTPS;
//! - a feed of 1,000 events: reads alone, reads + iCal text in-process,
//!   and the whole HTTPS request.
//!
//! Every answer is checked (rows, bars, events) before it is timed.
//! Run as root: `cargo bench -p hosthog-server --bench web`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use askama::Template;
use hosthog_server::web::{data, ical, pages, timeline};
use hosthog_server::{Database, identity};
use hosthog_tests::fleet::FleetServer;

const SAMPLES: usize = 200;

#[allow(clippy::disallowed_methods)] // the benchmark's own clock
fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

struct Figures(Vec<Duration>);

impl Figures {
    fn line(&mut self, what: &str) -> Duration {
        self.0.sort();
        let at = |q: f64| self.0[((self.0.len() as f64 - 1.0) * q).round() as usize];
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {what} | {} | {} | {} |",
            ms(at(0.5)),
            ms(at(0.99)),
            ms(*self.0.last().unwrap())
        );
        at(0.99)
    }
}

fn time(mut f: impl FnMut()) -> Figures {
    for _ in 0..10 {
        f();
    }
    Figures(
        (0..SAMPLES)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let mut server = FleetServer::start();
    let t0 = now();
    // The week that holds tomorrow, in UTC.
    let tz = jiff::tz::TimeZone::UTC;
    let tomorrow = timeline::today(t0, &tz).tomorrow().unwrap();
    let frame = timeline::Frame::new(timeline::View::Week, tomorrow, tz.clone());
    let week = frame.from;
    // 1,000 hosts; 5 reservations on each, 4 h long, spread over the week,
    // exclusive and shared by turns; 1,000 of them alice's.
    server.pg.psql(
        "fleet",
        &format!(
            "INSERT INTO host (name, tags) SELECT 'h' || lpad(i::text, 4, '0'), ARRAY['rack' || (i % 10)]
               FROM generate_series(0, 999) i;
             INSERT INTO reservation (id, owner, co_users, exclusive, comment, start_at, end_at,
                                      created_at, updated_at, hosts, sequence)
               SELECT n, CASE WHEN n % 5 = 0 THEN 'alice' ELSE 'user' || (n % 50) END,
                      CASE WHEN n % 7 = 0 THEN ARRAY['bob'] ELSE '{{}}' END, n % 2 = 0,
                      'run ' || n || ' <b>&amp;</b>',
                      to_timestamp({week}) + (n % 5) * interval '32 hours' + (n % 3) * interval '1 hour',
                      to_timestamp({week}) + (n % 5) * interval '32 hours' + (n % 3) * interval '1 hour' + interval '4 hours',
                      now(), now(), ARRAY['h' || lpad((n / 5)::text, 4, '0')], n % 3
               FROM generate_series(0, 4999) n;
             INSERT INTO claim (reservation, host, start_at, end_at, exclusive)
               SELECT r.id, h.id, r.start_at, r.end_at, r.exclusive
               FROM reservation r JOIN host h ON h.name = r.hosts[1];"
        ),
    );
    let cookie = identity::secret().unwrap();
    server.pg.psql(
        "fleet",
        &format!(
            "INSERT INTO web_session (sha256, user_name, csrf, expires_at)
             VALUES ('{}', 'alice', 'x', now() + interval '1 hour')",
            identity::digest(&cookie)
        ),
    );
    server.serve();
    let ca = std::fs::read(server.ca_dir().join("ca.pem")).unwrap();
    let roots: Vec<_> = ureq::tls::parse_pem(&ca)
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let http = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                .build(),
        )
        .build()
        .new_agent();
    let base = format!("https://localhost:{}", server.port);
    // The certificate names localhost; ureq resolves it.
    let get = |path: &str| -> String {
        let mut r = http
            .get(&format!("{base}{path}"))
            .header("Cookie", &format!("__Host-hh_session={cookie}"))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        r.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = Database::new(&server.url).unwrap();

    println!("| measurement ({SAMPLES} samples) | p50 | p99 | max |");
    println!("|---|---|---|---|");

    // The week view, 1,000 hosts on one page.
    let query = pages::TimelineQuery {
        view: Some("week".into()),
        date: Some(tomorrow.to_string()),
        tz: Some("UTC".into()),
        per: Some(1000),
        ..Default::default()
    };
    let read = || {
        runtime.block_on(async {
            let (total, hosts) = data::hosts_page(&db, "", 0, 1000).await.unwrap();
            let claims = data::claims(&db, &hosts, frame.from, frame.to)
                .await
                .unwrap();
            pages::TimelineData {
                total,
                hosts,
                claims,
            }
        })
    };
    let sample = read();
    assert_eq!(
        (sample.total, sample.hosts.len(), sample.claims.len()),
        (1000, 1000, 5000)
    );
    time(|| {
        read();
    })
    .line("week view, 1,000 hosts: database reads only (floor)");
    let render = || {
        let data = read();
        let (f, tz_name, page, per) = pages::timeline_frame(&query, t0);
        pages::timeline_page(None, &query, &f, &tz_name, page, per, &data, "alice", t0)
            .render()
            .unwrap()
    };
    let html = render();
    assert_eq!(html.matches("role=\"rowheader\"").count(), 1000);
    assert_eq!(html.matches("<a class=\"bar ").count(), 5000);
    time(|| {
        render();
    })
    .line("week view, 1,000 hosts: reads + render, in-process");
    let path = format!("/web/?view=week&date={tomorrow}&tz=UTC&per=1000");
    let page = get(&path);
    assert_eq!(page.matches("role=\"rowheader\"").count(), 1000);
    assert_eq!(page.matches("<a class=\"bar ").count(), 5000);
    assert_eq!(
        page.matches("<a class=\"bar excl mine ").count()
            + page.matches("<a class=\"bar shared mine ").count(),
        1000
    );
    let p99_week = time(|| {
        get(&path);
    })
    .line("**week view, 1,000 hosts and 5,000 reservations, HTTPS request**");
    // Filtered by a tag (rack3: every tenth host) and by a part of a name.
    let rack = get(&format!(
        "/web/?view=week&date={tomorrow}&tz=UTC&per=1000&filter=rack3"
    ));
    assert_eq!(rack.matches("role=\"rowheader\"").count(), 100);
    let named = get(&format!(
        "/web/?view=week&date={tomorrow}&tz=UTC&filter=h09"
    ));
    assert_eq!(named.matches("role=\"rowheader\"").count(), 50);
    assert!(named.contains("Hosts 1–50 of 100"), "the pager");
    let path50 = format!("/web/?view=week&date={tomorrow}&tz=UTC");
    assert_eq!(get(&path50).matches("role=\"rowheader\"").count(), 50);
    time(|| {
        get(&path50);
    })
    .line("week view, default page (50 of 1,000 hosts), HTTPS request");

    // A feed of 1,000 events.
    let (token, _) = runtime
        .block_on(identity::mint_token(
            &db,
            "alice",
            identity::Scope::Feed,
            "bench",
            None,
            None,
            t0,
        ))
        .unwrap();
    let feed_read = || {
        runtime.block_on(async {
            data::feed_events(&db, &data::FeedOf::User("alice".into()), t0)
                .await
                .unwrap()
        })
    };
    assert_eq!(feed_read().len(), 1000);
    let alice_only = || {
        let events: Vec<_> = feed_read();
        ical::calendar("hosthog: alice", &events)
    };
    time(|| {
        feed_read();
    })
    .line("feed (1,000 events): database read only (floor)");
    assert_eq!(alice_only().matches("BEGIN:VEVENT").count(), 1000);
    time(|| {
        alice_only();
    })
    .line("feed (1,000 events): read + iCal text, in-process");
    let feed_path = hosthog_server::web::feed_path(&token);
    assert_eq!(get(&feed_path).matches("BEGIN:VEVENT").count(), 1000);
    let p99_feed = time(|| {
        get(&feed_path);
    })
    .line("**feed (1,000 events), HTTPS request**");
    // A host's feed: its 5 events.
    let host_feed = feed_path.replace("/me.ics", "/host/h0007.ics");
    assert_eq!(get(&host_feed).matches("BEGIN:VEVENT").count(), 5);
    println!();
    println!(
        "targets: week view p99 {:.1} ms (< 200 ms: {}), feed p99 {:.1} ms (< 50 ms: {})",
        p99_week.as_secs_f64() * 1000.0,
        p99_week < Duration::from_millis(200),
        p99_feed.as_secs_f64() * 1000.0,
        p99_feed < Duration::from_millis(50)
    );
}
