//! A person's change to the calendar, from any door (a host's hosthogd,
//! the people's API, the web page): read, decide, write, in one
//! transaction.
//!
//! 1. Which hosts: those a new reservation names (or the host the request
//!    came from), or the hosts of the reservation an id prefix names.
//! 2. Lock those hosts in name order (two requests naming the same hosts
//!    in opposite orders queue instead of deadlocking) and read each one's
//!    state: its reservations that have not ended.
//! 3. Decide with [`hosthog_booking::fleet::apply`]: the single host's
//!    rules and limits, on every host, answering with the same sentences.
//! 4. Write the record, its claims, the hosts' versions and an audit row.
//!
//! The exclusion constraints of the schema stay the last word: a writer
//! that skipped this code and committed an overlapping claim between our
//! read and our write makes the insert fail with 23P01, and the request is
//! decided again.

use std::collections::BTreeMap;

use hosthog_booking::fleet::{self, Granted};
use hosthog_booking::policy::{Caller, Context, START_SLACK};
use hosthog_booking::protocol::{ChangeArgs, Failure, FailureKind, IdArgs, Op, Reply, ShareArgs};
use jiff::tz::TimeZone;
use libhosthog::{Mode, Reservation, State, validate_user_name};

use super::{
    Attempt, BookError, CHANNEL, Calendar, InTheWay, TRIES, database, from_sql_id, mode, to_sql_id,
};

/// A change that committed: the reply for the caller, the hosts it
/// touched with their new versions, and the reservation's sequence as it
/// committed (0 for a new one; every change bumps it; iCal's SEQUENCE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reply: Reply,
    pub hosts: Vec<(String, i64)>,
    pub sequence: i64,
}

fn refused(kind: FailureKind, message: impl Into<String>) -> BookError {
    BookError::Refused(Failure::new(kind, message), Vec::new())
}

/// A fresh random reservation id.
fn random_id() -> Result<u64, BookError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| BookError::Invalid(format!("no randomness for an id: {e}")))?;
    Ok(u64::from_le_bytes(bytes))
}

/// The hex digits of an id prefix, as `hosthog list` shows ids.
fn prefix_of(id: &str) -> Result<String, BookError> {
    let p = id.to_ascii_lowercase();
    if p.is_empty() || p.len() > 16 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused(
            FailureKind::Invalid,
            format!(
                "{:?} is not a reservation id (hex digits, as shown by hosthog list --fleet)",
                libhosthog::sanitize(id)
            ),
        ));
    }
    Ok(p)
}

impl Calendar {
    /// Carries out write `op` for user `actor` at `now`: reserve (of
    /// `args.hosts`, or of `here`, the host the request came from),
    /// change, share, unshare, release or cancel. Messages give times in
    /// `tz`. Admins are the server's list.
    ///
    /// # Errors
    /// [`BookError::Refused`] with the rules' sentence (and every
    /// reservation in the way, with its host), [`BookError::UnknownHosts`],
    /// [`BookError::Database`]. Nothing is written in any of these cases.
    pub async fn request(
        &self,
        actor: &str,
        op: &Op,
        here: Option<&str>,
        tz: &TimeZone,
        now: i64,
    ) -> Result<Outcome, BookError> {
        validate_user_name(actor).map_err(|e| BookError::Invalid(e.to_string()))?;
        let caller = Caller {
            uid: u32::MAX,
            name: actor.to_string(),
            admin: self.is_admin(actor).await?,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_request(&caller, op, here, tz, now).await {
                Err(Attempt::Retry(_) | Attempt::Raced) if tries < TRIES => {}
                Err(Attempt::Retry(e)) => {
                    return Err(database("the request kept colliding", &e));
                }
                Err(Attempt::Raced) => {
                    return Err(refused(
                        FailureKind::Conflict,
                        "the hosts kept changing under this request; try again",
                    ));
                }
                Err(Attempt::Failed(e)) => return Err(e),
                Ok(outcome) => return Ok(outcome),
            }
        }
    }

    async fn try_request(
        &self,
        caller: &Caller,
        op: &Op,
        here: Option<&str>,
        tz: &TimeZone,
        now: i64,
    ) -> Result<Outcome, Attempt> {
        let mut client = self.db.connection().await.map_err(BookError::from)?;
        let tx = client.transaction().await.map_err(Attempt::of)?;
        let (names, op, existing, scope) = match op {
            Op::Reserve(args) => {
                let mut names = if args.hosts.is_empty() {
                    match here {
                        Some(host) => vec![host.to_string()],
                        None => {
                            return Err(refused(
                                FailureKind::Invalid,
                                "name the hosts to reserve (\"hosts\": [\"gpu1\", ...])",
                            )
                            .into());
                        }
                    }
                } else {
                    args.hosts.clone()
                };
                names.sort();
                names.dedup();
                // A start a little in the past means now (policy's
                // START_SLACK); one further back is refused as past.
                let scope = Scope {
                    from: args.start.max(now - START_SLACK),
                    to: args.end,
                    owner: args.owner.clone().unwrap_or_else(|| caller.name.clone()),
                };
                (names, op.clone(), None, scope)
            }
            Op::Change(args) => {
                let found = resolve(&tx, &args.id, now).await?;
                let new_end = args.end.unwrap_or(found.end);
                let scope = Scope {
                    from: found.start.min(args.start.unwrap_or(found.start)),
                    to: found
                        .end
                        .max(new_end)
                        .max(new_end.saturating_add(args.extend_by.unwrap_or(0))),
                    owner: found.owner.clone(),
                };
                let op = Op::Change(ChangeArgs {
                    id: found.id.to_string(),
                    ..args.clone()
                });
                (found.hosts, op, Some(found.id), scope)
            }
            Op::Share(args) | Op::Unshare(args) => {
                let found = resolve(&tx, &args.id, now).await?;
                let id = found.id;
                let args = ShareArgs {
                    id: id.to_string(),
                    users: args.users.clone(),
                };
                let op = if matches!(op, Op::Share(_)) {
                    Op::Share(args)
                } else {
                    Op::Unshare(args)
                };
                let scope = Scope::of(&found);
                (found.hosts, op, Some(id), scope)
            }
            Op::Release(args) | Op::Cancel(args) => {
                let found = resolve(&tx, &args.id, now).await?;
                let id = found.id;
                let args = IdArgs { id: id.to_string() };
                let op = if matches!(op, Op::Release(_)) {
                    Op::Release(args)
                } else {
                    Op::Cancel(args)
                };
                let scope = Scope::of(&found);
                (found.hosts, op, Some(id), scope)
            }
            other => {
                return Err(refused(
                    FailureKind::Invalid,
                    format!("{} is not a change to the fleet calendar", other.name()),
                )
                .into());
            }
        };
        // FOR NO KEY UPDATE: bookings of a host wait for each other, but
        // the foreign-key checks of presence reports and sync records (KEY
        // SHARE) never wait for a booking, as FOR UPDATE would make them.
        let rows = tx
            .query(
                &tx.prepare_cached(
                    "SELECT id, name FROM host
                 WHERE name = ANY($1) AND revoked_at IS NULL
                 ORDER BY name FOR NO KEY UPDATE",
                )
                .await
                .map_err(Attempt::of)?,
                &[&names],
            )
            .await
            .map_err(Attempt::of)?;
        if rows.len() != names.len() {
            let found: Vec<String> = rows.iter().map(|row| row.get(1)).collect();
            let missing = names.iter().filter(|n| !found.contains(n)).cloned();
            return Err(BookError::UnknownHosts(missing.collect()).into());
        }
        let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        let mut states = states(&tx, &ids, &names, &scope, now).await?;
        let new_id = random_id()?;
        // Decided in a block of its own: the context's closure is not
        // Send, and must be gone before the next await.
        let decided = {
            let ctx = Context {
                now,
                tz,
                limits: &self.limits,
                new_id,
                // Names are checked for form only: the fleet has no common
                // account database, and the hosts' PAM decides by name.
                user_exists: &|_| true,
                admins: fleet::FLEET_ADMINS,
            };
            fleet::apply(&mut states, caller, &op, &ctx)
        };
        let Granted {
            reply,
            change,
            after,
        } = decided.map_err(|refusal| {
            let in_the_way = refusal
                .in_the_way
                .iter()
                .map(|(host, r)| InTheWay {
                    host: host.clone(),
                    reservation: r.id,
                    owner: r.owner.clone(),
                    mode: r.mode,
                    start: r.start,
                    end: r.end,
                })
                .collect();
            BookError::Refused(refusal.failure, in_the_way)
        })?;
        let sequence = match (existing, after) {
            (None, Some(r)) => insert(&tx, &r, &names, &ids).await?,
            (Some(id), Some(_)) if matches!(op, Op::Release(_)) => end_now(&tx, to_sql_id(id), now)
                .await
                .map_err(Attempt::of)?,
            (Some(_), Some(r)) => update(&tx, &r).await?,
            (Some(id), None) => tombstone(&tx, to_sql_id(id), now)
                .await
                .map_err(Attempt::of)?,
            (None, None) => {
                return Err(refused(FailureKind::Internal, "nothing to write").into());
            }
        };
        let versions = bump(&tx, &ids).await.map_err(Attempt::of)?;
        let id = match &reply {
            Reply::Reservation(r) | Reply::Removed(r) => Some(to_sql_id(r.id)),
            Reply::Forced(f) => Some(to_sql_id(f.reservation.id)),
            _ => existing.map(to_sql_id),
        };
        let detail = serde_json::to_string(&change)
            .map_err(|e| BookError::Invalid(format!("cannot audit the change: {e}")))?;
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO audit (actor, action, reservation, hosts, detail)
             VALUES ($1, $2, $3, $4, $5::text::jsonb)",
            )
            .await
            .map_err(Attempt::of)?,
            &[&caller.name, &change.action, &id, &names, &detail],
        )
        .await
        .map_err(Attempt::of)?;
        tx.commit().await.map_err(Attempt::of)?;
        Ok(Outcome {
            reply,
            hosts: versions,
            sequence,
        })
    }
}

/// The reservation an id prefix names among those not cancelled and not
/// over, and its hosts.
/// A reservation an id prefix names: its id, hosts, owner and span.
struct Found {
    id: libhosthog::ReservationId,
    hosts: Vec<String>,
    owner: String,
    start: i64,
    end: i64,
}

async fn resolve(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &str,
    now: i64,
) -> Result<Found, Attempt> {
    let prefix = prefix_of(id)?;
    let rows = if prefix.len() == 16 {
        let full: libhosthog::ReservationId = prefix
            .parse()
            .map_err(|e: libhosthog::Error| BookError::Invalid(e.to_string()))?;
        tx.query(
            &tx.prepare_cached(
                "SELECT id, hosts, owner, extract(epoch FROM start_at)::bigint,
                    extract(epoch FROM end_at)::bigint
             FROM reservation
             WHERE id = $1 AND cancelled_at IS NULL AND end_at > to_timestamp($2::bigint)",
            )
            .await
            .map_err(Attempt::of)?,
            &[&to_sql_id(full), &now],
        )
        .await
    } else {
        tx.query(
            &tx.prepare_cached(
                "SELECT id, hosts, owner, extract(epoch FROM start_at)::bigint,
                    extract(epoch FROM end_at)::bigint
             FROM reservation
             WHERE cancelled_at IS NULL AND end_at > to_timestamp($2::bigint)
               AND lpad(to_hex(id), 16, '0') LIKE $1 || '%'
             ORDER BY start_at, id LIMIT 10",
            )
            .await
            .map_err(Attempt::of)?,
            &[&prefix, &now],
        )
        .await
    }
    .map_err(Attempt::of)?;
    match rows.as_slice() {
        [] => Err(refused(
            FailureKind::NotFound,
            format!(
                "there is no reservation {prefix} that has not ended (hosthog list --fleet shows yours)"
            ),
        )
        .into()),
        [row] => Ok(Found {
            id: from_sql_id(row.get(0)),
            hosts: row.get(1),
            owner: row.get(2),
            start: row.get(3),
            end: row.get(4),
        }),
        many => {
            let listed: Vec<String> = many
                .iter()
                .map(|row| {
                    format!(
                        "{} ({})",
                        from_sql_id(row.get(0)),
                        row.get::<_, String>(2)
                    )
                })
                .collect();
            Err(refused(
                FailureKind::Ambiguous,
                format!(
                    "{prefix} names more than one reservation: {}; give more digits",
                    listed.join(", ")
                ),
            )
            .into())
        }
    }
}

/// What of the hosts' states a decision reads: the reservations that
/// overlap `from..to` (conflicts; the one being changed lies inside), and
/// every reservation of `owner` not yet ended (the per-person limits). The
/// rest of a busy host's calendar does not change the answer, and reading
/// it all made a 64-host booking read every claim of 64 hosts.
struct Scope {
    from: i64,
    to: i64,
    owner: String,
}

impl Scope {
    fn of(found: &Found) -> Scope {
        Scope {
            from: found.start,
            to: found.end,
            owner: found.owner.clone(),
        }
    }
}

/// Each host's state as far as `scope` reaches, of reservations that have
/// not ended at `now`, by (start, id), as the claims on it say.
async fn states(
    tx: &deadpool_postgres::Transaction<'_>,
    ids: &[i64],
    names: &[String],
    scope: &Scope,
    now: i64,
) -> Result<Vec<(String, State)>, Attempt> {
    let columns = "h.name, r.id, r.owner, r.co_users, c.exclusive, r.comment,
                    extract(epoch FROM c.start_at)::bigint AS start_s,
                    extract(epoch FROM c.end_at)::bigint,
                    extract(epoch FROM r.created_at)::bigint,
                    extract(epoch FROM r.updated_at)::bigint";
    let to = scope.to.max(scope.from);
    let sql = format!(
        "SELECT {columns}
                 FROM claim c
                 JOIN host h ON h.id = c.host
                 JOIN reservation r ON r.id = c.reservation
                 -- Host by host (h.id, not c.host, takes the array: a GiST
                 -- scan cannot), and the overlap as the exclusion
                 -- constraints state it, so their index finds it.
                 WHERE h.id = ANY($1) AND c.end_at > to_timestamp($2::bigint)
                   AND tstzrange(c.start_at, c.end_at)
                       && tstzrange(to_timestamp($3::bigint), to_timestamp($4::bigint))
                 UNION
                 SELECT {columns}
                 FROM reservation r
                 JOIN claim c ON c.reservation = r.id
                 JOIN host h ON h.id = c.host
                 WHERE r.owner = $5 AND r.end_at > to_timestamp($2::bigint)
                   AND c.host = ANY($1) AND c.end_at > to_timestamp($2::bigint)
                 ORDER BY 1, 7, 2"
    );
    let rows = tx
        .query(
            &tx.prepare_cached(&sql).await.map_err(Attempt::of)?,
            &[&ids, &now, &scope.from, &to, &scope.owner],
        )
        .await
        .map_err(Attempt::of)?;
    let mut by_host: BTreeMap<String, State> = names
        .iter()
        .map(|n| (n.clone(), State::default()))
        .collect();
    for row in &rows {
        let host: String = row.get(0);
        let r = Reservation {
            id: from_sql_id(row.get(1)),
            owner: row.get(2),
            with: row.get(3),
            mode: mode(row.get(4)),
            comment: row.get(5),
            start: row.get(6),
            end: row.get(7),
            created: row.get(8),
            updated: row.get(9),
        };
        by_host.entry(host).or_default().reservations.push(r);
    }
    Ok(by_host.into_iter().collect())
}

/// Writes new reservation `r` and its claims on hosts `ids`; returns its
/// sequence as the schema starts it.
async fn insert(
    tx: &deadpool_postgres::Transaction<'_>,
    r: &Reservation,
    names: &[String],
    ids: &[i64],
) -> Result<i64, Attempt> {
    let id = to_sql_id(r.id);
    let exclusive = r.mode == Mode::Exclusive;
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "INSERT INTO reservation
                 (id, owner, co_users, exclusive, comment, start_at, end_at, created_at,
                  updated_at, hosts)
             VALUES ($1, $2, $3, $4, $5, to_timestamp($6::bigint), to_timestamp($7::bigint),
                     to_timestamp($8::bigint), to_timestamp($9::bigint), $10)
             RETURNING sequence::bigint",
            )
            .await
            .map_err(Attempt::of)?,
            &[
                &id, &r.owner, &r.with, &exclusive, &r.comment, &r.start, &r.end, &r.created,
                &r.updated, &names,
            ],
        )
        .await
        .map_err(Attempt::of)?;
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO claim (reservation, host, start_at, end_at, exclusive)
         SELECT $1, host.id, to_timestamp($2::bigint), to_timestamp($3::bigint), $4
         FROM host WHERE host.id = ANY($5)",
        )
        .await
        .map_err(Attempt::of)?,
        &[&id, &r.start, &r.end, &exclusive, &ids],
    )
    .await
    .map_err(Attempt::of)?;
    Ok(row.get(0))
}

/// Writes `r` as it is now over its record and claims; returns its
/// sequence, bumped.
async fn update(tx: &deadpool_postgres::Transaction<'_>, r: &Reservation) -> Result<i64, Attempt> {
    let id = to_sql_id(r.id);
    let exclusive = r.mode == Mode::Exclusive;
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "UPDATE reservation SET owner = $2, co_users = $3, exclusive = $4, comment = $5,
                    start_at = to_timestamp($6::bigint), end_at = to_timestamp($7::bigint),
                    updated_at = to_timestamp($8::bigint), sequence = sequence + 1
             WHERE id = $1 RETURNING sequence::bigint",
            )
            .await
            .map_err(Attempt::of)?,
            &[
                &id, &r.owner, &r.with, &exclusive, &r.comment, &r.start, &r.end, &r.updated,
            ],
        )
        .await
        .map_err(Attempt::of)?;
    tx.execute(
&tx.prepare_cached("UPDATE claim SET start_at = to_timestamp($2::bigint), end_at = to_timestamp($3::bigint),
                exclusive = $4
         WHERE reservation = $1").await.map_err(Attempt::of)?,
        &[&id, &r.start, &r.end, &exclusive],
    )
    .await
    .map_err(Attempt::of)?;
    Ok(row.get(0))
}

/// Bumps the versions of hosts `ids` and, when the transaction commits,
/// tells every listening server which hosts changed. Returns the hosts'
/// names and new versions, by name.
async fn bump(
    tx: &deadpool_postgres::Transaction<'_>,
    ids: &[i64],
) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "UPDATE host SET version = version + 1 WHERE id = ANY($1) RETURNING name, version",
            )
            .await?,
            &[&ids],
        )
        .await?;
    let mut versions: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    versions.sort();
    let names: Vec<&str> = versions.iter().map(|(n, _)| n.as_str()).collect();
    tx.execute(
        &tx.prepare_cached("SELECT pg_notify($1, $2)").await?,
        &[&CHANNEL, &names.join(",")],
    )
    .await?;
    Ok(versions)
}

/// Marks reservation `id` cancelled at `now` and drops its claims: it
/// blocks nothing, leaves every window, and stays for calendars. Returns
/// its sequence, bumped.
async fn tombstone(
    tx: &deadpool_postgres::Transaction<'_>,
    id: i64,
    now: i64,
) -> Result<i64, tokio_postgres::Error> {
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "UPDATE reservation SET cancelled_at = to_timestamp($2::bigint),
                    updated_at = to_timestamp($2::bigint), sequence = sequence + 1
             WHERE id = $1 RETURNING sequence::bigint",
            )
            .await?,
            &[&id, &now],
        )
        .await?;
    tx.execute(
        &tx.prepare_cached("DELETE FROM claim WHERE reservation = $1")
            .await?,
        &[&id],
    )
    .await?;
    Ok(row.get(0))
}

/// Ends reservation `id` (in force) at `now`, on all its hosts; returns
/// its sequence, bumped.
async fn end_now(
    tx: &deadpool_postgres::Transaction<'_>,
    id: i64,
    now: i64,
) -> Result<i64, tokio_postgres::Error> {
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "UPDATE reservation SET end_at = to_timestamp($2::bigint),
                    updated_at = to_timestamp($2::bigint), sequence = sequence + 1
             WHERE id = $1 RETURNING sequence::bigint",
            )
            .await?,
            &[&id, &now],
        )
        .await?;
    tx.execute(
        &tx.prepare_cached(
            "UPDATE claim SET end_at = to_timestamp($2::bigint) WHERE reservation = $1",
        )
        .await?,
        &[&id, &now],
    )
    .await?;
    Ok(row.get(0))
}
