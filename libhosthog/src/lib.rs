//! libhosthog: what a login needs, and what everything else builds on.
//!
//! The PAM module links this crate alone, so it holds the login path and
//! nothing more: the model, the table file (format, safe opening, the
//! atomic [`Store`] that writes it), the login rule [`decide`] with the
//! texts that explain it, the session summary, and the two small files a
//! session reads besides the table (utmp, hosthogd's presence snapshot).
//! Booking rules and the socket protocol live in `hosthog-booking`; timers,
//! notification and clearing in `hosthogd`. See docs/architecture.md.
//!
//! - [`State`], [`Reservation`], [`Notice`]: the model, owned.
//! - [`format`]: the table file format (docs/table-format.md), written by
//!   [`encode`] and read zero-copy by [`Table::parse`], validated completely.
//! - [`TableFile`]: opening the table safely on a login path.
//! - [`Store`]: the only writer (lock, temp file, fsync, rename, fsync).
//! - [`decide`]: who may be on the host at an instant, over any
//!   [`Calendar`] (the table file or the owned model).
//! - [`describe`]: every text that describes a reservation to people.
//! - [`session_summary`]: the text shown at the start of a session.
//! - [`Utmp`]: who is logged in, read from utmp without locks.
//! - [`Presence`]: who is on the host and how, the snapshot hosthogd writes.
//!
//! The library never reads the clock: every function that needs the time
//! takes `now` (UTC seconds) as an argument.

mod decide;
pub mod describe;
mod error;
pub mod format;
pub mod limits;
mod model;
pub mod presence;
mod store;
mod summary;
mod table_file;
mod terminal;
mod utmp;
mod when;

pub use decide::{Allowed, Booking, Bookings, Calendar, Decision, Denial, Who, decide};
pub use error::{Error, ErrorKind, Result};
pub use format::{NoticeView, ReservationView, Reservations, Table, encode, encode_at};
pub use model::{Mode, Notice, Reservation, ReservationId, State, validate_user_name};
pub use presence::{
    MAX_COMMANDS, MAX_PRESENCE_BYTES, MAX_SESSIONS, MAX_SESSIONS_PER_USER, PRESENCE_PATH,
    PRESENCE_VERSION, Presence, Processes, Session, SessionKind, UserPresence, classify_process,
};
pub use store::{COMPACT_AFTER, FULL_WRITE_UP_TO, LOCK_NAME, Locked, Store, TABLE_NAME};
pub use summary::{
    MAX_NOTICES_SHOWN, MAX_USERS_SHOWN, TableState, WARN_AHEAD_SECONDS, session_summary,
};
pub use table_file::{TableFile, delta_path};
pub use terminal::{is_unsafe, sanitize, user_text};
pub use utmp::{Login, MAX_RECORDS, RECORD_LEN, UTMP_PATH, Utmp, process_exists, utmp_record};
pub use when::format_instant;
