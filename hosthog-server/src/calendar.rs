//! The fleet calendar in PostgreSQL: hosts, and reservations of one or
//! several hosts.
//!
//! Every write, from any door, is [`Calendar::request`] (calendar/change.rs):
//! one transaction that locks the hosts in name order (two requests that
//! name the same hosts in opposite orders would otherwise deadlock),
//! decides with the booking rules, writes the reservation and one claim per
//! host, bumps each host's version and adds an audit row. All of it
//! commits, or none of it. The rule that no exclusive claim overlaps
//! another claim on its host is the schema's
//! (migrations/0001_calendar.sql); a writer that skips this code still
//! cannot double-book, and its 23P01 makes the request be decided again.
//! This file holds the rest: hosts and their certificates, tokens, admins,
//! presence, and a host's window.

use hosthog_booking::policy::Limits;
use hosthog_booking::protocol::Failure;
use libhosthog::{Mode, Reservation, ReservationId, State};
use tokio_postgres::error::SqlState;

use crate::database::{Database, DatabaseError};

/// How often a booking is tried again after a deadlock or a serialization
/// failure before the error is given to the caller.
const TRIES: usize = 5;

/// A reservation that is in the way of a booking, on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InTheWay {
    pub host: String,
    pub reservation: ReservationId,
    pub owner: String,
    pub mode: Mode,
    pub start: i64,
    pub end: i64,
}

/// A host as `hosthog hosts` and "who is where" show it: the protocol's
/// type, so the server and hosthogd cannot disagree on its shape.
pub use hosthog_booking::protocol::{HostHolder as Holder, HostStatus};

/// Why a booking or a change was refused.
#[derive(Debug)]
pub enum BookError {
    /// The reservation breaks a rule of the model (names, span, comment).
    Invalid(String),
    /// These hosts are not in the calendar (or were revoked).
    UnknownHosts(Vec<String>),
    /// No such reservation.
    NotFound(String),
    /// The booking rules refused it (hosthog_booking::fleet::apply): the
    /// same sentence a single host would give, and each reservation in the
    /// way with its host.
    Refused(Failure, Vec<InTheWay>),
    /// The database failed.
    Database(DatabaseError),
}

impl std::fmt::Display for BookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BookError::Invalid(why) => f.write_str(why),
            BookError::UnknownHosts(hosts) => {
                write!(f, "no such host in the calendar: {}", hosts.join(", "))
            }
            BookError::NotFound(why) => f.write_str(why),
            BookError::Refused(failure, _) => f.write_str(&failure.message),
            BookError::Database(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BookError {}

impl From<DatabaseError> for BookError {
    fn from(e: DatabaseError) -> BookError {
        BookError::Database(e)
    }
}

/// tokio-postgres says only "db error"; PostgreSQL's own message is its
/// cause.
fn database(what: &str, e: &tokio_postgres::Error) -> BookError {
    BookError::Database(DatabaseError(format!(
        "{what}: {}",
        crate::database::with_causes(e)
    )))
}

/// True for the errors that mean "try the whole transaction again".
fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

fn is_exclusion_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::EXCLUSION_VIOLATION)
}

/// The reservation id as PostgreSQL's bigint: the same 64 bits.
fn to_sql_id(id: ReservationId) -> i64 {
    i64::from_ne_bytes(id.0.to_ne_bytes())
}

fn from_sql_id(id: i64) -> ReservationId {
    ReservationId(u64::from_ne_bytes(id.to_ne_bytes()))
}

fn mode(exclusive: bool) -> Mode {
    if exclusive {
        Mode::Exclusive
    } else {
        Mode::Shared
    }
}

mod change;
mod listing;

pub use change::Outcome;
pub use listing::Filter;

/// The calendar of one database.
#[derive(Clone)]
pub struct Calendar {
    db: Database,
    /// The booking limits, applied per host (`[limits]` of server.toml).
    limits: Limits,
}

impl Calendar {
    /// A calendar without limits (see [`Calendar::with_limits`]).
    pub fn new(db: Database) -> Calendar {
        Calendar {
            db,
            limits: Limits::default(),
        }
    }

    /// The same calendar, applying `limits` to every host.
    pub fn with_limits(mut self, limits: Limits) -> Calendar {
        self.limits = limits;
        self
    }

    /// The database this calendar is kept in.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Adds a host to the calendar (idempotent); returns its version.
    ///
    /// # Errors
    /// [`BookError::Invalid`] for a name that is not a lowercase host name;
    /// [`BookError::Database`].
    pub async fn add_host(&self, name: &str) -> Result<i64, BookError> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && name.as_bytes()[0].is_ascii_alphanumeric();
        if !valid {
            return Err(BookError::Invalid(format!(
                "{name:?} is not a host name (lowercase letters, digits, '.' and '-', \
                 at most 63 characters)"
            )));
        }
        let client = self.db.connection().await?;
        let row = client
            .query_one(
                "INSERT INTO host (name) VALUES ($1)
                 ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
                 RETURNING version",
                &[&name],
            )
            .await
            .map_err(|e| database("cannot add the host", &e))?;
        Ok(row.get(0))
    }

    /// Records `fingerprint` as the one certificate host `name` may use
    /// (replacing any earlier one) and clears a revocation.
    ///
    /// # Errors
    /// [`BookError::UnknownHosts`], [`BookError::Database`].
    pub async fn set_host_certificate(
        &self,
        name: &str,
        fingerprint: &str,
    ) -> Result<(), BookError> {
        self.certificate(
            name,
            Some(fingerprint),
            "cannot record the host's certificate",
        )
        .await
    }

    /// Revokes host `name`: its certificate no longer opens the agent API
    /// and it is left out of new bookings.
    ///
    /// # Errors
    /// [`BookError::UnknownHosts`], [`BookError::Database`].
    pub async fn revoke_host(&self, name: &str) -> Result<(), BookError> {
        self.certificate(name, None, "cannot revoke the host").await
    }

    /// Host `name`'s certificate becomes `fingerprint`, or none (revoked).
    /// Either way its record of syncs goes: a new certificate is a new
    /// machine, or one set up again, and the last sync of the one before
    /// is not its.
    async fn certificate(
        &self,
        name: &str,
        fingerprint: Option<&str>,
        what: &str,
    ) -> Result<(), BookError> {
        let client = self.db.connection().await?;
        let n: i64 = client
            .query_one(
                "WITH h AS (UPDATE host SET cert_sha256 = $2::text,
                                            revoked_at = CASE WHEN $2::text IS NULL THEN now() END
                            WHERE name = $1 RETURNING id),
                      forgotten AS (DELETE FROM host_sync WHERE host IN (SELECT id FROM h))
                 SELECT count(*) FROM h",
                &[&name, &fingerprint],
            )
            .await
            .map_err(|e| database(what, &e))?
            .get(0);
        if n == 0 {
            return Err(BookError::UnknownHosts(vec![name.to_string()]));
        }
        Ok(())
    }

    /// The host whose current certificate has `fingerprint`, if any.
    ///
    /// # Errors
    /// [`BookError::Database`].
    pub async fn host_by_certificate(
        &self,
        fingerprint: &str,
    ) -> Result<Option<String>, BookError> {
        let client = self.db.connection().await?;
        let row = client
            .query_opt(
                "SELECT name FROM host WHERE cert_sha256 = $1 AND revoked_at IS NULL",
                &[&fingerprint],
            )
            .await
            .map_err(|e| database("cannot look the host up", &e))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Makes an API token for `user`; returns the token (shown once; only
    /// its SHA-256 is kept).
    ///
    /// # Errors
    /// [`BookError::Invalid`] for a bad user name; [`BookError::Database`].
    pub async fn add_token(&self, user: &str) -> Result<String, BookError> {
        libhosthog::validate_user_name(user).map_err(|e| BookError::Invalid(e.to_string()))?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| BookError::Invalid(format!("no randomness for a token: {e}")))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("hh_{token}");
        let client = self.db.connection().await?;
        client
            .execute(
                "INSERT INTO api_token (sha256, user_name) VALUES ($1, $2)",
                &[&crate::tls::fingerprint(token.as_bytes()), &user],
            )
            .await
            .map_err(|e| database("cannot store the token", &e))?;
        Ok(token)
    }

    /// The user a bearer token belongs to, if it is valid.
    ///
    /// # Errors
    /// [`BookError::Database`].
    pub async fn token_user(&self, token: &str) -> Result<Option<String>, BookError> {
        let client = self.db.connection().await?;
        let row = client
            .query_opt(
                // Only `api` tokens (a feed token opens only its feeds) that
                // have not expired (migration 0006).
                &client
                    .prepare_cached(
                        "SELECT user_name FROM api_token WHERE sha256 = $1 AND revoked_at IS NULL
                   AND scope = 'api' AND (expires_at IS NULL OR expires_at > now())",
                    )
                    .await
                    .map_err(|e| database("cannot prepare a query", &e))?,
                &[&crate::tls::fingerprint(token.as_bytes())],
            )
            .await
            .map_err(|e| database("cannot check the token", &e))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Adds or removes `user` on the admin list; returns whether the list
    /// changed.
    ///
    /// # Errors
    /// [`BookError::Invalid`] for a bad user name; [`BookError::Database`].
    pub async fn set_admin(&self, user: &str, admin: bool) -> Result<bool, BookError> {
        libhosthog::validate_user_name(user).map_err(|e| BookError::Invalid(e.to_string()))?;
        let client = self.db.connection().await?;
        let sql = if admin {
            "INSERT INTO admin (user_name) VALUES ($1) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM admin WHERE user_name = $1"
        };
        let n = client
            .execute(sql, &[&user])
            .await
            .map_err(|e| database("cannot change the admins", &e))?;
        Ok(n > 0)
    }

    /// Whether `user` is a fleet admin.
    ///
    /// # Errors
    /// [`BookError::Database`].
    pub async fn is_admin(&self, user: &str) -> Result<bool, BookError> {
        let client = self.db.connection().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached("SELECT 1 FROM admin WHERE user_name = $1")
                    .await
                    .map_err(|e| database("cannot prepare a query", &e))?,
                &[&user],
            )
            .await
            .map_err(|e| database("cannot read the admins", &e))?;
        Ok(row.is_some())
    }

    /// Records what host `name` reports of who is on it (a presence
    /// snapshot, already validated by the caller), replacing the last one.
    ///
    /// # Errors
    /// [`BookError::UnknownHosts`], [`BookError::Database`].
    pub async fn report_presence(
        &self,
        name: &str,
        snapshot: &serde_json::Value,
        now: i64,
    ) -> Result<(), BookError> {
        let client = self.db.connection().await?;
        let n = client
            .execute(
                "INSERT INTO presence (host, reported_at, snapshot)
                 SELECT id, to_timestamp($2::bigint), $3::text::jsonb FROM host WHERE name = $1
                 ON CONFLICT (host) DO UPDATE
                 SET reported_at = EXCLUDED.reported_at, snapshot = EXCLUDED.snapshot",
                &[&name, &now, &snapshot.to_string()],
            )
            .await
            .map_err(|e| database("cannot record presence", &e))?;
        if n == 0 {
            return Err(BookError::UnknownHosts(vec![name.to_string()]));
        }
        Ok(())
    }

    /// Every host's last presence report: (host, reported at, snapshot),
    /// by host name; hosts that never reported are left out.
    ///
    /// # Errors
    /// [`BookError::Database`].
    pub async fn presence(&self) -> Result<Vec<(String, i64, serde_json::Value)>, BookError> {
        let client = self.db.connection().await?;
        let rows = client
            .query(
                "SELECT h.name, extract(epoch FROM p.reported_at)::bigint, p.snapshot::text
                 FROM presence p JOIN host h ON h.id = p.host
                 WHERE h.revoked_at IS NULL ORDER BY h.name",
                &[],
            )
            .await
            .map_err(|e| database("cannot read presence", &e))?;
        rows.iter()
            .map(|r| {
                let text: String = r.get(2);
                let snapshot = serde_json::from_str(&text).map_err(|e| {
                    BookError::Invalid(format!("a stored snapshot is not JSON: {e}"))
                })?;
                Ok((r.get(0), r.get(1), snapshot))
            })
            .collect()
    }

    /// Every host with who holds it at `now`, who is on it (from its last
    /// presence report), when it last reported and when it last synced
    /// (crate::syncs).
    ///
    /// # Errors
    /// [`BookError::Database`].
    pub async fn host_status(&self, now: i64) -> Result<Vec<HostStatus>, BookError> {
        let client = self.db.connection().await?;
        let rows = client
            .query(
                "SELECT h.name, h.version,
                        extract(epoch FROM p.reported_at)::bigint,
                        extract(epoch FROM s.synced_at)::bigint,
                        COALESCE(p.snapshot::text, 'null'),
                        COALESCE((SELECT json_agg(json_build_object(
                                    'owner', r.owner, 'exclusive', c.exclusive,
                                    'end', extract(epoch FROM c.end_at)::bigint)
                                  ORDER BY c.exclusive DESC, r.owner)::text
                           FROM claim c JOIN reservation r ON r.id = c.reservation
                           WHERE c.host = h.id
                             AND c.start_at <= to_timestamp($1::bigint)
                             AND c.end_at > to_timestamp($1::bigint)), '[]')
                 FROM host h LEFT JOIN presence p ON p.host = h.id
                             LEFT JOIN host_sync s ON s.host = h.id
                 WHERE h.revoked_at IS NULL ORDER BY h.name",
                &[&now],
            )
            .await
            .map_err(|e| database("cannot read the hosts", &e))?;
        let mut out = Vec::new();
        for row in &rows {
            let snapshot: serde_json::Value =
                serde_json::from_str(&row.get::<_, String>(4)).unwrap_or_default();
            let mut present: Vec<String> = snapshot["sessions"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|x| x["user"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            present.sort();
            present.dedup();
            let holders: Vec<serde_json::Value> =
                serde_json::from_str(&row.get::<_, String>(5)).unwrap_or_default();
            out.push(HostStatus {
                name: row.get(0),
                version: row.get(1),
                seen: row.get(2),
                synced: row.get(3),
                present,
                holders: holders
                    .iter()
                    .map(|h| Holder {
                        owner: h["owner"].as_str().unwrap_or_default().to_string(),
                        mode: mode(h["exclusive"].as_bool().unwrap_or(false)),
                        end: h["end"].as_i64().unwrap_or_default(),
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    /// The hosts in the calendar, by name, with their versions.
    ///
    /// # Errors
    /// [`BookError::Database`].
    pub async fn hosts(&self) -> Result<Vec<(String, i64)>, BookError> {
        let client = self.db.connection().await?;
        let rows = client
            .query(
                "SELECT name, version FROM host WHERE revoked_at IS NULL ORDER BY name",
                &[],
            )
            .await
            .map_err(|e| database("cannot list the hosts", &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The host's window: its version, and every reservation on it that
    /// has not ended by `from`, as the owned model hosthogd writes into the
    /// local table. Read in one snapshot, so the version matches the rows.
    ///
    /// # Errors
    /// [`BookError::UnknownHosts`], [`BookError::Database`].
    pub async fn window(&self, host: &str, from: i64) -> Result<(i64, State), BookError> {
        let mut client = self.db.connection().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| database("cannot read the calendar", &e))?;
        let Some(row) = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT version FROM host WHERE name = $1 AND revoked_at IS NULL",
                )
                .await
                .map_err(|e| database("cannot read the calendar", &e))?,
                &[&host],
            )
            .await
            .map_err(|e| database("cannot read the calendar", &e))?
        else {
            return Err(BookError::UnknownHosts(vec![host.to_string()]));
        };
        let version: i64 = row.get(0);
        let rows = tx
            .query(
                &tx.prepare_cached(
                    "SELECT r.id, r.owner, r.co_users, r.exclusive, r.comment,
                        extract(epoch FROM c.start_at)::bigint,
                        extract(epoch FROM c.end_at)::bigint,
                        extract(epoch FROM r.created_at)::bigint,
                        extract(epoch FROM r.updated_at)::bigint
                 FROM claim c
                 JOIN host h ON h.id = c.host
                 JOIN reservation r ON r.id = c.reservation
                 WHERE h.name = $1 AND c.end_at > to_timestamp($2::bigint)
                 ORDER BY c.start_at, r.id",
                )
                .await
                .map_err(|e| database("cannot read the calendar", &e))?,
                &[&host, &from],
            )
            .await
            .map_err(|e| database("cannot read the calendar", &e))?;
        tx.commit()
            .await
            .map_err(|e| database("cannot read the calendar", &e))?;
        let reservations = rows
            .iter()
            .map(|row| Reservation {
                id: from_sql_id(row.get(0)),
                owner: row.get(1),
                with: row.get(2),
                mode: mode(row.get(3)),
                comment: row.get(4),
                start: row.get(5),
                end: row.get(6),
                created: row.get(7),
                updated: row.get(8),
            })
            .collect();
        Ok((
            version,
            State {
                reservations,
                ..State::default()
            },
        ))
    }
}

/// How one try of a booking ended, when it did not commit.
enum Attempt {
    /// A deadlock or serialization failure: try the transaction again.
    Retry(tokio_postgres::Error),
    /// The schema refused an overlapping claim that our check did not see.
    Raced,
    Failed(BookError),
}

impl Attempt {
    fn of(e: tokio_postgres::Error) -> Attempt {
        if retryable(&e) {
            Attempt::Retry(e)
        } else if is_exclusion_violation(&e) {
            Attempt::Raced
        } else {
            Attempt::Failed(database("the booking failed", &e))
        }
    }
}

impl From<BookError> for Attempt {
    fn from(e: BookError) -> Attempt {
        Attempt::Failed(e)
    }
}

/// The channel on which every committed change names the hosts it touched
/// (see [`crate::notify`]).
pub const CHANNEL: &str = "hosthog_hosts";
