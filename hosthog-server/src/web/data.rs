//! What the web pages and feeds read from the database: read-only
//! queries, each one statement. Writes go through the calendar
//! (super::ops), never from here.

use crate::calendar::BookError;
use crate::database::Database;

use super::ical::Event;
use super::timeline::Claim;

fn database(what: &str, e: &tokio_postgres::Error) -> BookError {
    BookError::Database(crate::database::DatabaseError(format!("{what}: {e}")))
}

fn hex(id: i64) -> String {
    format!("{:016x}", u64::from_ne_bytes(id.to_ne_bytes()))
}

/// A reservation's hosts: the names kept on it (migration 0005), also
/// after it is cancelled.
const HOSTS: &str = "r.hosts";

/// A page of the hosts whose name contains `filter` or that carry the tag
/// `filter` (all when it is empty), by name; and how many match in all.
///
/// # Errors
/// [`BookError::Database`].
pub async fn hosts_page(
    db: &Database,
    filter: &str,
    offset: i64,
    limit: i64,
) -> Result<(i64, Vec<String>), BookError> {
    let client = db.connection().await?;
    let rows = client
        .query(
            "SELECT name, count(*) OVER () FROM host
             WHERE revoked_at IS NULL
               AND ($1 = '' OR strpos(name, $1) > 0 OR $1 = ANY (tags))
             ORDER BY name OFFSET $2 LIMIT $3",
            &[&filter, &offset, &limit],
        )
        .await
        .map_err(|e| database("cannot list the hosts", &e))?;
    let total = match rows.first() {
        Some(r) => r.get(1),
        None => {
            // Past the last page: still say how many there are.
            client
                .query_one(
                    "SELECT count(*) FROM host WHERE revoked_at IS NULL
                       AND ($1 = '' OR strpos(name, $1) > 0 OR $1 = ANY (tags))",
                    &[&filter],
                )
                .await
                .map_err(|e| database("cannot count the hosts", &e))?
                .get(0)
        }
    };
    Ok((total, rows.iter().map(|r| r.get(0)).collect()))
}

/// Every claim on `hosts` that overlaps `[from, to)`.
///
/// # Errors
/// [`BookError::Database`].
pub async fn claims(
    db: &Database,
    hosts: &[String],
    from: i64,
    to: i64,
) -> Result<Vec<Claim>, BookError> {
    let client = db.connection().await?;
    let rows = client
        .query(
            "SELECT h.name, r.id, r.owner, r.co_users, c.exclusive, r.comment,
                    extract(epoch FROM c.start_at)::bigint, extract(epoch FROM c.end_at)::bigint
             FROM claim c JOIN host h ON h.id = c.host JOIN reservation r ON r.id = c.reservation
             WHERE h.name = ANY ($1)
               AND c.end_at > to_timestamp($2::bigint) AND c.start_at < to_timestamp($3::bigint)
             ORDER BY h.name, c.start_at",
            &[&hosts, &from, &to],
        )
        .await
        .map_err(|e| database("cannot read the calendar", &e))?;
    Ok(rows
        .iter()
        .map(|r| Claim {
            host: r.get(0),
            id: hex(r.get(1)),
            owner: r.get(2),
            co_users: r.get(3),
            exclusive: r.get(4),
            comment: r.get(5),
            start: r.get(6),
            end: r.get(7),
        })
        .collect())
}

/// All host names, for the booking form's list.
///
/// # Errors
/// [`BookError::Database`].
pub async fn host_names(db: &Database) -> Result<Vec<String>, BookError> {
    let client = db.connection().await?;
    let rows = client
        .query(
            "SELECT name FROM host WHERE revoked_at IS NULL ORDER BY name",
            &[],
        )
        .await
        .map_err(|e| database("cannot list the hosts", &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

const EVENT_COLUMNS: &str = "lpad(to_hex(r.id), 16, '0'), r.owner, r.co_users, __HOSTS__,
        r.exclusive, r.comment,
        extract(epoch FROM r.start_at)::bigint, extract(epoch FROM r.end_at)::bigint,
        extract(epoch FROM r.created_at)::bigint, extract(epoch FROM r.updated_at)::bigint,
        r.sequence, r.cancelled_at IS NOT NULL";

fn event(r: &tokio_postgres::Row) -> Event {
    Event {
        id: r.get(0),
        owner: r.get(1),
        co_users: r.get(2),
        hosts: r.get(3),
        exclusive: r.get(4),
        comment: r.get(5),
        start: r.get(6),
        end: r.get(7),
        created: r.get(8),
        updated: r.get(9),
        sequence: i64::from(r.get::<_, i32>(10)),
        cancelled: r.get(11),
    }
}

/// Whose reservations a feed shows.
#[derive(Debug, Clone)]
pub enum FeedOf {
    /// Those the user owns or is a co-user of.
    User(String),
    /// Those on the host.
    Host(String),
}

/// How far back a feed reaches, in seconds.
pub const FEED_PAST: i64 = 30 * 86400;

/// The reservations of a feed: every one that ends after `now -
/// FEED_PAST`, cancelled ones included, by start.
///
/// # Errors
/// [`BookError::Database`].
pub async fn feed_events(db: &Database, of: &FeedOf, now: i64) -> Result<Vec<Event>, BookError> {
    let client = db.connection().await?;
    let (filter, who) = match of {
        FeedOf::User(u) => ("(r.owner = $1 OR $1 = ANY (r.co_users))", u),
        FeedOf::Host(h) => ("$1 = ANY (__HOSTS__)", h),
    };
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM reservation r
         WHERE {filter} AND r.end_at > to_timestamp($2::bigint)
         ORDER BY r.start_at, r.id"
    )
    .replace("__HOSTS__", HOSTS);
    let since = now - FEED_PAST;
    let rows = client
        .query(&sql, &[who, &since])
        .await
        .map_err(|e| database("cannot read the feed", &e))?;
    Ok(rows.iter().map(event).collect())
}

/// One reservation by its full id, cancelled or not.
///
/// # Errors
/// [`BookError::Database`].
pub async fn reservation(db: &Database, id: &str) -> Result<Option<Event>, BookError> {
    let Ok(id) = id.parse::<libhosthog::ReservationId>() else {
        return Ok(None);
    };
    let sql_id = i64::from_ne_bytes(id.0.to_ne_bytes());
    let client = db.connection().await?;
    let sql = format!("SELECT {EVENT_COLUMNS} FROM reservation r WHERE r.id = $1")
        .replace("__HOSTS__", HOSTS);
    let row = client
        .query_opt(&sql, &[&sql_id])
        .await
        .map_err(|e| database("cannot read the reservation", &e))?;
    Ok(row.as_ref().map(event))
}

/// Whether host `name` is in the calendar.
///
/// # Errors
/// [`BookError::Database`].
pub async fn host_exists(db: &Database, name: &str) -> Result<bool, BookError> {
    let client = db.connection().await?;
    Ok(client
        .query_opt(
            "SELECT 1 FROM host WHERE name = $1 AND revoked_at IS NULL",
            &[&name],
        )
        .await
        .map_err(|e| database("cannot read the hosts", &e))?
        .is_some())
}

/// For each host, the owners and co-users of the reservations in force
/// at `now` (who may be on it).
///
/// # Errors
/// [`BookError::Database`].
pub async fn members_now(
    db: &Database,
    now: i64,
) -> Result<std::collections::HashMap<String, Vec<String>>, BookError> {
    let client = db.connection().await?;
    let rows = client
        .query(
            "SELECT h.name, r.owner, r.co_users
             FROM claim c JOIN host h ON h.id = c.host JOIN reservation r ON r.id = c.reservation
             WHERE c.start_at <= to_timestamp($1::bigint) AND c.end_at > to_timestamp($1::bigint)",
            &[&now],
        )
        .await
        .map_err(|e| database("cannot read the calendar", &e))?;
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    for r in &rows {
        let entry = out.entry(r.get(0)).or_default();
        entry.push(r.get(1));
        entry.extend(r.get::<_, Vec<String>>(2));
    }
    Ok(out)
}
