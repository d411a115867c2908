//! When each host last synced the calendar: the last time it asked for its
//! window from the calendar's current version of it (`since=V`, V current),
//! which only a host that applied that version does. A host that cannot
//! apply what it is sent (a table it cannot write, a window it refuses)
//! keeps asking from its old version and is not counted as synced. What
//! `hosthog hosts` and the web's "who is where" show as the last sync.
//!
//! A window request only notes the time in memory; one task writes every
//! host noted since its last write in one statement, every [`FLUSH`], into
//! `host_sync` (migrations/0007_sync.sql), a table of its own so the write
//! never waits on the row locks bookings take on `host`. So a poll never
//! waits on the record, and a thousand hosts noted at once cost the
//! database one statement, not a thousand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::database::Database;

/// How often the noted syncs are written: the most a shown sync time lags.
pub const FLUSH: Duration = Duration::from_secs(5);

/// The longest one write may take before it is given up (its connection
/// discarded) and its batch tried again at the next flush.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The hosts' syncs, for one server process.
#[derive(Clone)]
pub struct Syncs {
    db: Database,
    /// Noted since the last write: host name → when it was last current.
    noted: Arc<Mutex<HashMap<String, i64>>>,
    /// Set once the writing task runs (started by the first note, inside
    /// the server's runtime).
    writer: Arc<OnceLock<()>>,
}

impl Syncs {
    pub fn new(db: Database) -> Syncs {
        Syncs {
            db,
            noted: Arc::default(),
            writer: Arc::default(),
        }
    }

    /// Host `host` holds the calendar's current version of its window at
    /// `now`. Must be called inside a tokio runtime (a request handler).
    pub fn current(&self, host: &str, now: i64) {
        note(&self.noted, host, now);
        self.writer.get_or_init(|| {
            tokio::spawn(write_every(self.db.clone(), Arc::clone(&self.noted)));
        });
    }
}

/// Notes `host` at `at`, keeping the later time if it was noted already.
fn note(noted: &Mutex<HashMap<String, i64>>, host: &str, at: i64) {
    let mut noted = noted.lock().unwrap_or_else(|e| e.into_inner());
    let t = noted.entry(host.to_string()).or_insert(at);
    *t = (*t).max(at);
}

/// Every [`FLUSH`], writes what was noted; what cannot be written (the
/// database is away) is said on stderr and noted again for the next try.
async fn write_every(db: Database, noted: Arc<Mutex<HashMap<String, i64>>>) {
    loop {
        tokio::time::sleep(FLUSH).await;
        let batch = std::mem::take(&mut *noted.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = write(&db, &batch).await {
            eprintln!(
                "hosthog-server: cannot record the syncs of {} hosts (tried again in {} s): {e}",
                batch.len(),
                FLUSH.as_secs()
            );
            for (host, at) in batch {
                note(&noted, &host, at);
            }
        }
    }
}

/// Records each host's sync in `batch`, never moving a host's time back;
/// revoked hosts are left out. Rows are taken in host order, so two
/// servers writing at once cannot deadlock.
async fn write(db: &Database, batch: &HashMap<String, i64>) -> Result<(), String> {
    let (hosts, times): (Vec<&str>, Vec<i64>) = batch.iter().map(|(h, t)| (h.as_str(), *t)).unzip();
    let client = db.connection().await.map_err(|e| e.to_string())?;
    let written = tokio::time::timeout(
        WRITE_TIMEOUT,
        client.execute(
            "INSERT INTO host_sync (host, synced_at)
             SELECT h.id, to_timestamp(b.at)
             FROM unnest($1::text[], $2::bigint[]) AS b (name, at)
             JOIN host h ON h.name = b.name AND h.revoked_at IS NULL
             ORDER BY h.id
             ON CONFLICT (host) DO UPDATE
             SET synced_at = GREATEST(host_sync.synced_at, EXCLUDED.synced_at)",
            &[&hosts, &times],
        ),
    )
    .await;
    match written {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(crate::database::with_causes(&e)),
        Err(_) => {
            // A connection that does not answer is not given back.
            let _ = deadpool_postgres::Object::take(client);
            Err(format!(
                "the database did not answer within {} s",
                WRITE_TIMEOUT.as_secs()
            ))
        }
    }
}
