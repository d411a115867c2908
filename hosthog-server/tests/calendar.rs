//! The fleet calendar against a real PostgreSQL (tests/src/postgres.rs:
//! initdb in a temporary directory, a Unix socket only, run as postgres
//! with setpriv, stopped by pid). Run as root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_booking::protocol::{FailureKind, Op, Reply, ReserveArgs};
use hosthog_server::{BookError, Calendar, Database, InTheWay, Outcome};
use hosthog_tests::postgres::Postgres;
use jiff::tz::TimeZone;
use libhosthog::{Mode, Reservation, ReservationId};

const T0: i64 = 1_800_000_000;
const HOUR: i64 = 3600;

/// Every migration's version, in order: what a fresh database gets.
fn all_versions() -> Vec<i32> {
    let versions: Vec<i32> = hosthog_server::migrate::MIGRATIONS
        .iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(versions, (1..=versions.len() as i32).collect::<Vec<_>>());
    versions
}

async fn calendar(pg: &Postgres, name: &str, hosts: &[&str]) -> Calendar {
    pg.create_database(name);
    let db = Database::new(&pg.url(name)).unwrap();
    assert_eq!(
        hosthog_server::migrate::migrate(&db).await.unwrap(),
        all_versions()
    );
    let calendar = Calendar::new(db);
    for host in hosts {
        assert_eq!(calendar.add_host(host).await.unwrap(), 0);
    }
    calendar
}

/// A booking of `hosts` by whoever asks for it, as every door makes one.
fn reserve(hosts: &[&str], mode: Mode, start: i64, end: i64, comment: &str) -> Op {
    Op::Reserve(ReserveArgs {
        mode,
        start,
        end,
        with: vec![],
        comment: comment.into(),
        owner: None,
        force: false,
        hosts: hosts.iter().map(|n| n.to_string()).collect(),
    })
}

/// `actor`'s booking, through the one write path ([`Calendar::request`]).
async fn book(
    calendar: &Calendar,
    actor: &str,
    op: &Op,
    now: i64,
) -> Result<(Reservation, Outcome), BookError> {
    let outcome = calendar
        .request(actor, op, None, &TimeZone::UTC, now)
        .await?;
    let Reply::Reservation(r) = &outcome.reply else {
        panic!("a booking answered {:?}", outcome.reply);
    };
    Ok((r.clone(), outcome))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_versioned_and_idempotent() {
    let pg = Postgres::start();
    pg.create_database("fleet");
    let db = Database::new(&pg.url("fleet")).unwrap();
    assert_eq!(
        hosthog_server::migrate::migrate(&db).await.unwrap(),
        all_versions()
    );
    assert!(
        hosthog_server::migrate::migrate(&db)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        pg.psql("fleet", "SELECT version, name FROM schema_migrations"),
        hosthog_server::migrate::MIGRATIONS
            .iter()
            .map(|(version, name, _)| format!("{version}|{name}\n"))
            .collect::<String>()
    );
    // The binary, with the database from the environment.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hosthog-server"))
        .args(["--config", "/nonexistent/server.toml", "migrate"])
        .env("HOSTHOG_DATABASE_URL", pg.url("fleet"))
        .output()
        .unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "the schema is up to date\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No database anywhere: one line saying where to give one.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hosthog-server"))
        .args(["--config", "/nonexistent/server.toml", "migrate"])
        .env_remove("HOSTHOG_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.starts_with(
            "hosthog-server: no database given: pass --database URL, set HOSTHOG_DATABASE_URL"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// The rule is the schema's: plain SQL, skipping hosthog-server, cannot
/// double-book either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_double_booking_from_any_writer() {
    let pg = Postgres::start();
    calendar(&pg, "fleet", &["gpu1"]).await;
    pg.psql(
        "fleet",
        "INSERT INTO reservation (id, owner, exclusive, start_at, end_at, created_at, updated_at) \
         SELECT g, 'u' || g, g % 2 = 1, now(), now() + interval '1 day', now(), now() \
         FROM generate_series(1, 6) g",
    );
    // Straight to the database, as any writer could: each refusal is
    // SQLSTATE 23P01 (exclusion_violation) from the constraint named.
    let db = Database::new(&pg.url("fleet")).unwrap();
    let client = db.connection().await.unwrap();
    let claim = async |reservation: i64, exclusive: bool, from: &str, to: &str| {
        client
            .execute(
                "INSERT INTO claim (reservation, host, start_at, end_at, exclusive)
                 SELECT $1, id, $2::text::timestamptz, $3::text::timestamptz, $4
                 FROM host WHERE name = 'gpu1'",
                &[&reservation, &from, &to, &exclusive],
            )
            .await
            .map(|n| assert_eq!(n, 1))
            .map_err(|e| {
                let db = e.as_db_error().expect("an error from PostgreSQL");
                (
                    db.code().code().to_string(),
                    db.constraint().unwrap_or_default().to_string(),
                )
            })
    };
    let refused = |sqlstate: &str, constraint: &str| Err((sqlstate.into(), constraint.into()));
    // An exclusive claim 10:00-12:00.
    claim(1, true, "2027-01-15 10:00Z", "2027-01-15 12:00Z")
        .await
        .unwrap();
    // exclusive over exclusive: refused by claim_exclusive_alone.
    assert_eq!(
        claim(3, true, "2027-01-15 11:00Z", "2027-01-15 13:00Z").await,
        refused("23P01", "claim_exclusive_alone")
    );
    // shared over exclusive: refused by claim_exclusive_not_shared.
    assert_eq!(
        claim(2, false, "2027-01-15 11:59Z", "2027-01-15 13:00Z").await,
        refused("23P01", "claim_exclusive_not_shared")
    );
    // Back to back is not overlapping: [12:00, 13:00) after [10:00, 12:00).
    claim(2, false, "2027-01-15 12:00Z", "2027-01-15 13:00Z")
        .await
        .unwrap();
    // shared over shared: allowed.
    claim(4, false, "2027-01-15 12:30Z", "2027-01-15 14:00Z")
        .await
        .unwrap();
    // exclusive over shared: refused by claim_exclusive_not_shared.
    assert_eq!(
        claim(5, true, "2027-01-15 13:30Z", "2027-01-15 15:00Z").await,
        refused("23P01", "claim_exclusive_not_shared")
    );
    // exclusive back to back after the shared ones, and before the first.
    claim(5, true, "2027-01-15 14:00Z", "2027-01-15 15:00Z")
        .await
        .unwrap();
    claim(3, true, "2027-01-15 09:00Z", "2027-01-15 10:00Z")
        .await
        .unwrap();
    // An empty span: refused by the CHECK (23514, check_violation).
    assert_eq!(
        claim(6, false, "2027-01-15 16:00Z", "2027-01-15 16:00Z").await,
        refused("23514", "claim_check")
    );
    assert_eq!(
        pg.psql(
            "fleet",
            "SELECT reservation FROM claim ORDER BY reservation"
        ),
        "1\n2\n3\n4\n5\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_host_booking_is_all_or_nothing_with_everything_in_the_way() {
    let pg = Postgres::start();
    let calendar = calendar(&pg, "fleet", &["gpu1", "gpu2", "gpu3"]).await;
    let now = T0 - HOUR;
    let op = reserve(
        &["gpu2", "gpu1"],
        Mode::Exclusive,
        T0,
        T0 + 4 * HOUR,
        "sweep",
    );
    let (alice, booked) = book(&calendar, "alice", &op, now).await.unwrap();
    assert_eq!(
        (
            alice.owner.as_str(),
            alice.mode,
            alice.start,
            alice.end,
            alice.comment.as_str()
        ),
        ("alice", Mode::Exclusive, T0, T0 + 4 * HOUR, "sweep")
    );
    assert_eq!(
        (booked.hosts, booked.sequence),
        (vec![("gpu1".into(), 1), ("gpu2".into(), 1)], 0)
    );
    // dave and carol share gpu3 in the afternoon (dave from 14:00, carol
    // from 14:30).
    let mut shared = Vec::new();
    for (who, start) in [("dave", T0 + 2 * HOUR), ("carol", T0 + 2 * HOUR + HOUR / 2)] {
        let op = reserve(&["gpu3"], Mode::Shared, start, T0 + 6 * HOUR, "");
        shared.push(book(&calendar, who, &op, now).await.unwrap().0);
    }
    let [dave, carol] = &shared[..] else {
        unreachable!()
    };
    // bob wants gpu2 and gpu3 exclusively over both: refused, with all
    // three reservations in the way, each on its host, and nothing of his
    // is written.
    let op = reserve(
        &["gpu3", "gpu2"],
        Mode::Exclusive,
        T0 + 3 * HOUR,
        T0 + 5 * HOUR,
        "",
    );
    let err = book(&calendar, "bob", &op, now).await.unwrap_err();
    let BookError::Refused(failure, list) = err else {
        panic!("expected a conflict, got {err}");
    };
    assert_eq!(failure.kind, FailureKind::Conflict, "{}", failure.message);
    assert_eq!(
        failure.message,
        format!(
            "on gpu2: this exclusive reservation conflicts with alice's exclusive reservation \
             {} (08:00 UTC to 12:00 UTC, \"sweep\")\n\
             on gpu3: this exclusive reservation conflicts with dave's shared reservation \
             {} (10:00 UTC to 14:00 UTC); carol's shared reservation {} (10:30 UTC to 14:00 UTC)",
            alice.id.short(),
            dave.id.short(),
            carol.id.short()
        )
    );
    let way = |host: &str, r: &Reservation| InTheWay {
        host: host.into(),
        reservation: r.id,
        owner: r.owner.clone(),
        mode: r.mode,
        start: r.start,
        end: r.end,
    };
    // By host, then start.
    assert_eq!(
        list,
        [way("gpu2", &alice), way("gpu3", dave), way("gpu3", carol)]
    );
    assert_eq!(
        pg.psql(
            "fleet",
            "SELECT count(*) FROM reservation WHERE owner = 'bob'"
        ),
        "0\n"
    );
    assert_eq!(
        calendar.hosts().await.unwrap(),
        [("gpu1".into(), 1), ("gpu2".into(), 1), ("gpu3".into(), 2)]
    );
    assert_eq!(
        pg.psql(
            "fleet",
            "SELECT actor, action, hosts FROM audit ORDER BY id"
        ),
        "alice|reserve|{gpu1,gpu2}\ndave|reserve|{gpu3}\ncarol|reserve|{gpu3}\n"
    );
    // An unknown host refuses the whole booking; a shared booking beside
    // shared ones is fine.
    let erin = |hosts: &[&str]| reserve(hosts, Mode::Shared, T0 + 5 * HOUR, T0 + 7 * HOUR, "");
    let err = book(&calendar, "erin", &erin(&["gpu3", "gpu9"]), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BookError::UnknownHosts(h) if h == &["gpu9".to_string()]),
        "{err}"
    );
    book(&calendar, "erin", &erin(&["gpu3"]), T0).await.unwrap();
    // What gpu3's agent gets: its version and its window, as the model.
    let (version, state) = calendar.window("gpu3", T0).await.unwrap();
    assert_eq!(version, 3);
    let owners: Vec<(&str, Mode)> = state
        .reservations
        .iter()
        .map(|r| (r.owner.as_str(), r.mode))
        .collect();
    assert_eq!(
        owners,
        [
            ("dave", Mode::Shared),
            ("carol", Mode::Shared),
            ("erin", Mode::Shared)
        ]
    );
    state.validate().unwrap();
    // Bad input is refused and nothing is written: a span that ends before
    // it starts, a co-user's name with a terminal escape, such a caller.
    let backwards = reserve(&["gpu1"], Mode::Shared, T0 + HOUR, T0, "");
    let err = book(&calendar, "bob", &backwards, T0).await.unwrap_err();
    assert!(
        matches!(&err, BookError::Refused(f, _) if f.kind == FailureKind::Invalid),
        "{err}"
    );
    let Op::Reserve(mut hostile) = reserve(&["gpu1"], Mode::Shared, T0, T0 + HOUR, "") else {
        unreachable!()
    };
    hostile.with = vec!["bob\u{1b}[2J".into()];
    let err = book(&calendar, "bob", &Op::Reserve(hostile), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BookError::Refused(f, _) if f.kind == FailureKind::Invalid),
        "{err}"
    );
    let fine = reserve(&["gpu1"], Mode::Shared, T0 + 4 * HOUR, T0 + 5 * HOUR, "");
    let err = book(&calendar, "bob\u{1b}[2J", &fine, T0)
        .await
        .unwrap_err();
    assert!(matches!(&err, BookError::Invalid(_)), "{err}");
    assert_eq!(
        pg.psql(
            "fleet",
            "SELECT count(*) FROM reservation WHERE owner = 'bob'"
        ),
        "0\n"
    );
    assert_eq!(
        calendar.hosts().await.unwrap(),
        [("gpu1".into(), 1), ("gpu2".into(), 1), ("gpu3".into(), 3)]
    );
}

/// Bookings naming the same hosts in opposite orders, all at once: the
/// hosts are locked in name order, so none deadlocks and every one commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opposite_host_orders_at_once_neither_deadlock_nor_lose_a_booking() {
    let pg = Postgres::start();
    let calendar = calendar(&pg, "fleet", &["a1", "b2"]).await;
    let mut tasks = Vec::new();
    for i in 0..24i64 {
        let calendar = calendar.clone();
        tasks.push(tokio::spawn(async move {
            let order = if i % 2 == 0 {
                ["a1", "b2"]
            } else {
                ["b2", "a1"]
            };
            let start = T0 + i * HOUR;
            let op = reserve(&order, Mode::Exclusive, start, start + HOUR, "");
            book(&calendar, "alice", &op, T0).await.map(|(r, _)| r.id)
        }));
    }
    let mut ids: Vec<ReservationId> = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 24);
    assert_eq!(
        calendar.hosts().await.unwrap(),
        [("a1".into(), 24), ("b2".into(), 24)]
    );
    assert_eq!(pg.psql("fleet", "SELECT count(*) FROM claim"), "48\n");
    assert_eq!(pg.psql("fleet", "SELECT count(*) FROM audit"), "24\n");
}
