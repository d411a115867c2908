//! Reading the calendar for people: reservations by user, host and time,
//! one reservation by id, and the next free slot on a set of hosts.

use hosthog_booking::fleet::{earliest_free, host_matches};
use hosthog_booking::protocol::{
    Failure, FailureKind, FleetReservation, NextFreeArgs, Op, ReserveArgs,
};
use jiff::tz::TimeZone;
use libhosthog::{Mode, Reservation};

use super::{BookError, Calendar, Outcome, database, from_sql_id, mode};

/// Which reservations to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Those this user owns or is a co-user of.
    pub user: Option<String>,
    /// Those on this host.
    pub host: Option<String>,
    /// Those that end after this instant (default: now).
    pub from: Option<i64>,
    /// Those that start before this instant.
    pub to: Option<i64>,
    /// Also cancelled ones (and, with `from`, ended ones).
    pub cancelled: bool,
    /// At most this many (default and cap: [`MAX_LIST`]).
    pub limit: Option<i64>,
}

/// The most reservations one list answers with.
pub const MAX_LIST: i64 = 5000;

const COLUMNS: &str = "r.id, r.owner, r.co_users, r.exclusive, r.comment,
    extract(epoch FROM r.start_at)::bigint, extract(epoch FROM r.end_at)::bigint,
    extract(epoch FROM r.created_at)::bigint, extract(epoch FROM r.updated_at)::bigint,
    r.hosts, r.sequence::bigint, extract(epoch FROM r.cancelled_at)::bigint";

fn fleet_reservation(row: &tokio_postgres::Row) -> FleetReservation {
    FleetReservation {
        reservation: Reservation {
            id: from_sql_id(row.get(0)),
            owner: row.get(1),
            with: row.get(2),
            mode: mode(row.get(3)),
            comment: row.get(4),
            start: row.get(5),
            end: row.get(6),
            created: row.get(7),
            updated: row.get(8),
        },
        hosts: row.get(9),
        sequence: row.get(10),
        cancelled_at: row.get(11),
    }
}

impl Calendar {
    /// The reservations `filter` selects, by (start, id).
    ///
    /// # Errors
    /// [`BookError::Database`].
    pub async fn reservations(
        &self,
        filter: &Filter,
        now: i64,
    ) -> Result<Vec<FleetReservation>, BookError> {
        let client = self.db.connection().await?;
        let from = filter.from.unwrap_or(now);
        let limit = filter.limit.unwrap_or(MAX_LIST).clamp(1, MAX_LIST);
        let sql = format!(
            "SELECT {COLUMNS} FROM reservation r
             WHERE r.end_at > to_timestamp($1::bigint)
               AND ($2::bigint IS NULL OR r.start_at < to_timestamp($2::bigint))
               AND ($3::text IS NULL OR r.owner = $3 OR $3 = ANY(r.co_users))
               AND ($4::text IS NULL OR $4 = ANY(r.hosts))
               AND ($5 OR r.cancelled_at IS NULL)
             ORDER BY r.start_at, r.id LIMIT $6"
        );
        let rows = client
            .query(
                &sql,
                &[
                    &from,
                    &filter.to,
                    &filter.user,
                    &filter.host,
                    &filter.cancelled,
                    &limit,
                ],
            )
            .await
            .map_err(|e| database("cannot list the reservations", &e))?;
        Ok(rows.iter().map(fleet_reservation).collect())
    }

    /// The reservation whose id starts with `prefix` (hex digits), ended
    /// and cancelled ones included.
    ///
    /// # Errors
    /// [`BookError::Refused`] for a malformed, unknown or ambiguous prefix,
    /// [`BookError::Database`].
    pub async fn reservation(&self, prefix: &str) -> Result<FleetReservation, BookError> {
        let p = prefix.to_ascii_lowercase();
        if p.is_empty() || p.len() > 16 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BookError::Refused(
                Failure::new(
                    FailureKind::Invalid,
                    format!(
                        "{:?} is not a reservation id (hex digits)",
                        libhosthog::sanitize(prefix)
                    ),
                ),
                Vec::new(),
            ));
        }
        let client = self.db.connection().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM reservation r
             WHERE lpad(to_hex(r.id), 16, '0') LIKE $1 || '%'
             ORDER BY r.start_at DESC LIMIT 2"
        );
        let rows = client
            .query(&sql, &[&p])
            .await
            .map_err(|e| database("cannot read the reservation", &e))?;
        match rows.as_slice() {
            [row] => Ok(fleet_reservation(row)),
            [] => Err(BookError::Refused(
                Failure::new(
                    FailureKind::NotFound,
                    format!("there is no reservation {p}"),
                ),
                Vec::new(),
            )),
            _ => Err(BookError::Refused(
                Failure::new(
                    FailureKind::Ambiguous,
                    format!("{p} names more than one reservation; give more digits"),
                ),
                Vec::new(),
            )),
        }
    }

    /// Books the earliest slot of `args.duration` on one host matching
    /// `args.hosts`, for `actor` (ties go to the host first by name).
    ///
    /// # Errors
    /// As [`Calendar::request`]; [`BookError::UnknownHosts`] when no host
    /// matches.
    pub async fn next_free(
        &self,
        actor: &str,
        args: &NextFreeArgs,
        tz: &TimeZone,
        now: i64,
    ) -> Result<Outcome, BookError> {
        if args.duration <= 0 {
            return Err(BookError::Invalid("the length must be positive".into()));
        }
        if args.hosts.is_empty() {
            return Err(BookError::Invalid(
                "name the hosts or patterns to choose from (gpu*)".into(),
            ));
        }
        let from = args.not_before.unwrap_or(now).max(now);
        // Another booking may take the slot between the search and the
        // booking: search again.
        let mut last = None;
        for _ in 0..3 {
            let (host, start) = self.earliest(args, from).await?;
            let op = Op::Reserve(ReserveArgs {
                mode: args.mode,
                start,
                end: start.saturating_add(args.duration),
                with: args.with.clone(),
                comment: args.comment.clone(),
                owner: None,
                force: false,
                hosts: vec![host],
            });
            match self.request(actor, &op, None, tz, now).await {
                Err(BookError::Refused(f, w)) if f.kind == FailureKind::Conflict => {
                    last = Some(BookError::Refused(f, w));
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| BookError::Invalid("no slot found".into())))
    }

    /// The host and start of the earliest free slot.
    async fn earliest(&self, args: &NextFreeArgs, from: i64) -> Result<(String, i64), BookError> {
        let client = self.db.connection().await?;
        let names: Vec<String> = client
            .query(
                "SELECT name FROM host WHERE revoked_at IS NULL ORDER BY name",
                &[],
            )
            .await
            .map_err(|e| database("cannot list the hosts", &e))?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|name| args.hosts.iter().any(|p| host_matches(p, name)))
            .collect();
        if names.is_empty() {
            return Err(BookError::UnknownHosts(args.hosts.clone()));
        }
        let exclusive = args.mode == Mode::Exclusive;
        let rows = client
            .query(
                "SELECT h.name, extract(epoch FROM c.start_at)::bigint,
                        extract(epoch FROM c.end_at)::bigint
                 FROM claim c JOIN host h ON h.id = c.host
                 WHERE h.name = ANY($1) AND c.end_at > to_timestamp($2::bigint)
                   AND (c.exclusive OR $3)
                 ORDER BY h.name, c.start_at",
                &[&names, &from, &exclusive],
            )
            .await
            .map_err(|e| database("cannot read the calendar", &e))?;
        let mut busy: std::collections::HashMap<String, Vec<(i64, i64)>> = Default::default();
        for row in &rows {
            busy.entry(row.get(0))
                .or_default()
                .push((row.get(1), row.get(2)));
        }
        let mut best: Option<(i64, String)> = None;
        for name in names {
            let spans = busy.get(&name).map_or(&[][..], Vec::as_slice);
            let start = earliest_free(spans, from, args.duration);
            if best.as_ref().is_none_or(|(s, _)| start < *s) {
                best = Some((start, name));
            }
        }
        best.map(|(start, name)| (name, start))
            .ok_or_else(|| BookError::Invalid("no host matches".into()))
    }
}
