//! hosthog-server: one calendar for a fleet of hosts, on PostgreSQL.
//!
//! - [`database`]: where the database is (`--database`, `HOSTHOG_DATABASE_URL`
//!   or server.toml) and the connection pool.
//! - [`migrate`]: the schema, as versioned SQL files applied once each.
//! - [`calendar`]: booking one or several hosts in one transaction, hosts
//!   locked in name order, deadlocks retried, every change audited and
//!   bumping the touched hosts' versions. The double-booking rule itself is
//!   the schema's (two exclusion constraints on `claim`).
//!
//! - [`http`]: the HTTPS APIs; [`limits`]: body size and time limits and
//!   the one JSON error shape for every refusal; [`notify`]: which hosts
//!   changed, so a waiting long-poll wakes only for its own.
//!
//! See docs/architecture.md; the HTTPS API, host certificates and the web
//! calendar build on this.

pub mod calendar;
pub mod cli;
pub mod database;
pub mod http;
pub mod identity;
pub mod limits;
pub mod migrate;
pub mod minting;
pub mod notify;
pub mod syncs;
pub mod tls;
pub mod web;

pub use calendar::{BookError, Calendar, InTheWay, Outcome};
pub use database::{Database, DatabaseError};
