//! libhosthog: the model, the reservation table file, the atomic store, and
//! the access decision shared by the PAM module, the CLI and the daemon.
//!
//! - [`State`], [`Reservation`], [`Notice`]: the model, owned.
//! - [`encode`] and [`Table::parse`]: the table file format (see
//!   docs/table-format.md), read zero-copy and validated completely.
//! - [`TableFile`]: opening the table safely on a login path.
//! - [`Store`]: the only writer (lock, temp file, fsync, rename, fsync).
//! - [`decide`]: who may log in now, and why.
//! - [`conflicts`]: the booking rule.
//! - [`Utmp`]: who is logged in, read from utmp without locks.
//! - [`session_summary`]: the text shown at the start of a session.
//! - [`Presence`]: who is on the host and how, the snapshot hosthogd writes.
//! - [`events`]: who should be told what and when (hosthogd's timers).
//! - [`render_motd`]: the MOTD fragment.
//!
//! The library never reads the clock: every function that needs the time
//! takes `now` (UTC seconds) as an argument.

mod decide;
mod error;
pub mod events;
mod format;
pub mod limits;
mod model;
mod motd;
pub mod policy;
pub mod presence;
pub mod protocol;
mod rules;
mod store;
mod summary;
mod table_file;
mod terminal;
mod time_input;
mod utmp;
mod when;

pub use decide::{Allowed, Decision, Denial, Who, decide};
pub use error::{Error, ErrorKind, Result};
pub use format::{
    CHECKSUM_OFFSET, FLAG_DELTA, Layer, MAGIC, NoticeView, Peeked, ReservationView, Reservations,
    Table, VERSION, checksum, encode, encode_at, encode_delta, peek, peek_generation,
};
pub use model::{Mode, Notice, Reservation, ReservationId, State, validate_user_name};
pub use motd::{MAX_MOTD_NOTICES, MAX_MOTD_RESERVATIONS, MOTD_PATH, render_motd};
pub use presence::{
    MAX_PRESENCE_BYTES, MAX_SESSIONS, PRESENCE_PATH, PRESENCE_VERSION, Presence, Session,
    SessionKind, UserPresence, classify_process,
};
pub use rules::conflicts;
pub use store::{COMPACT_AFTER, FULL_WRITE_UP_TO, LOCK_NAME, Locked, Store, TABLE_NAME};
pub use summary::{
    MAX_NOTICES_SHOWN, MAX_USERS_SHOWN, TableState, WARN_AHEAD_SECONDS, session_summary,
};
pub use table_file::{TableFile, delta_path};
pub use terminal::{is_unsafe, sanitize};
pub use time_input::{parse_duration, parse_instant};
pub use utmp::{Login, MAX_RECORDS, RECORD_LEN, UTMP_PATH, Utmp, process_exists, utmp_record};
pub use when::format_instant;
