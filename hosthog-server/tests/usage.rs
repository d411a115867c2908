//! Hours present and reserved (the web's usage page), against a real
//! PostgreSQL: presence reports become intervals (joined when at most
//! 180 s apart), reservations count by their claims, both clipped to the
//! period; the CSV says the same. Run as root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_booking::protocol::{Op, ReserveArgs};
use hosthog_server::web::usage;
use hosthog_server::{Calendar, Database};
use hosthog_tests::postgres::Postgres;
use libhosthog::Mode;
use serde_json::json;

fn snapshot(users: &[&str]) -> serde_json::Value {
    json!({"version": 1, "taken": 0, "sessions": users.iter().map(|u| json!({
        "user": u, "uid": 1000, "kind": "tmux", "pid": 1, "tty": "", "from": "", "detail": ""
    })).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_present_and_reserved() {
    let pg = Postgres::start();
    pg.create_database("fleet");
    let db = Database::new(&pg.url("fleet")).unwrap();
    hosthog_server::migrate::migrate(&db).await.unwrap();
    let calendar = Calendar::new(db.clone());
    for h in ["gpu1", "gpu2"] {
        calendar.add_host(h).await.unwrap();
    }
    let day = 1_800_000_000 / 86400 * 86400 + 86400;
    // alice on gpu1 from 10:00 to 11:00, a report a minute; bob seen at
    // 10:00 and 10:10 only (too far apart to join): no time.
    for m in 0..=60 {
        let users: &[&str] = if m == 0 || m == 10 {
            &["alice", "bob"]
        } else {
            &["alice"]
        };
        usage::record(&db, "gpu1", &snapshot(users), day + 10 * 3600 + m * 60)
            .await
            .unwrap();
    }
    // alice again on gpu1 at 12:00-12:30 (a new interval after the gap).
    for m in 0..=30 {
        usage::record(&db, "gpu1", &snapshot(&["alice"]), day + 12 * 3600 + m * 60)
            .await
            .unwrap();
    }
    assert_eq!(
        pg.psql(
            "fleet",
            "SELECT user_name, to_char(start_at AT TIME ZONE 'UTC', 'HH24:MI'), \
             to_char(end_at AT TIME ZONE 'UTC', 'HH24:MI') FROM presence_interval ORDER BY 1, 2"
        ),
        "alice|10:00|11:00\nalice|12:00|12:30\nbob|10:00|10:00\nbob|10:10|10:10\n"
    );
    // alice reserves gpu1 and gpu2 from 09:00 to 13:00.
    let op = Op::Reserve(ReserveArgs {
        mode: Mode::Exclusive,
        start: day + 9 * 3600,
        end: day + 13 * 3600,
        with: vec![],
        comment: String::new(),
        owner: None,
        force: false,
        hosts: vec!["gpu1".into(), "gpu2".into()],
    });
    calendar
        .request("alice", &op, None, &jiff::tz::TimeZone::UTC, day)
        .await
        .unwrap();
    // The whole day; then a period that cuts everything at 10:30.
    let (users, hosts) = usage::usage(&db, day, day + 86400).await.unwrap();
    let rows = |lines: &[usage::Line]| -> Vec<(String, f64, f64)> {
        lines
            .iter()
            .map(|l| (l.name.clone(), l.reserved, l.present))
            .collect()
    };
    assert_eq!(
        rows(&users),
        [
            ("alice".to_string(), 8.0, 1.5),
            ("bob".to_string(), 0.0, 0.0)
        ]
    );
    assert_eq!(
        rows(&hosts),
        [
            ("gpu1".to_string(), 4.0, 1.5),
            ("gpu2".to_string(), 4.0, 0.0)
        ]
    );
    let (users, _) = usage::usage(&db, day, day + 10 * 3600 + 1800)
        .await
        .unwrap();
    assert_eq!(rows(&users)[0], ("alice".to_string(), 3.0, 0.5));
    assert_eq!(
        usage::csv(&users, &[]),
        "kind,name,hours_reserved,hours_present\r\nuser,\"alice\",3.00,0.50\r\nuser,\"bob\",0.00,0.00\r\n"
    );
}
