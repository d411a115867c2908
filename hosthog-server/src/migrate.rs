//! The schema, as versioned SQL files (`migrations/NNNN_name.sql`), each
//! applied once, in order, in a transaction of its own under an advisory
//! lock, so two servers starting at once do not apply one twice.

use crate::database::{Database, DatabaseError};

/// Every migration, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "calendar",
        include_str!("../migrations/0001_calendar.sql"),
    ),
    (
        2,
        "identity",
        include_str!("../migrations/0002_identity.sql"),
    ),
    (3, "admins", include_str!("../migrations/0003_admins.sql")),
    (
        4,
        "presence",
        include_str!("../migrations/0004_presence.sql"),
    ),
    (5, "history", include_str!("../migrations/0005_history.sql")),
    (6, "web", include_str!("../migrations/0006_web.sql")),
    (7, "sync", include_str!("../migrations/0007_sync.sql")),
];

/// Any fixed number: the advisory lock migrations take.
const LOCK: i64 = 0x0068_6f73_7468_6f67; // "hosthog"

/// The migrations the database lacks (all of them for an empty one), by
/// version: what `serve` refuses to start with.
///
/// # Errors
/// The database cannot be reached or read.
pub async fn missing(db: &Database) -> Result<Vec<i32>, DatabaseError> {
    let client = db.connection().await?;
    let failed = |e: tokio_postgres::Error| {
        DatabaseError(format!(
            "cannot read the applied migrations: {}",
            crate::database::with_causes(&e)
        ))
    };
    let recorded: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(failed)?
        .get(0);
    let applied: Vec<i32> = if recorded {
        client
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .map_err(failed)?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .map(|(version, _, _)| *version)
        .filter(|v| !applied.contains(v))
        .collect())
}

/// Applies the migrations the database lacks; returns the versions applied
/// now (empty when it was up to date).
///
/// # Errors
/// The database cannot be reached, or a migration fails (then nothing of
/// that migration is applied).
pub async fn migrate(db: &Database) -> Result<Vec<i32>, DatabaseError> {
    let mut client = db.connection().await?;
    let failed = |what: &str, e: tokio_postgres::Error| DatabaseError(format!("{what}: {e}"));
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(|e| failed("cannot record migrations", e))?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        let tx = client
            .transaction()
            .await
            .map_err(|e| failed("cannot start a transaction", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .await
            .map_err(|e| failed("cannot take the migration lock", e))?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await
            .map_err(|e| failed("cannot read the applied migrations", e))?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| failed(&format!("migration {version} ({name}) failed"), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(|e| failed("cannot record the migration", e))?;
        tx.commit()
            .await
            .map_err(|e| failed(&format!("migration {version} ({name}) failed"), e))?;
        applied.push(*version);
    }
    Ok(applied)
}
