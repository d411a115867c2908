//! hosthog-booking: what a request to change the calendar is, and whether
//! it may be granted. Shared by everything that takes requests (hosthogd,
//! and the fleet server to come) and everything that makes them (the
//! `hosthog` command), whatever carries them.
//!
//! - [`protocol`]: requests, replies and their framing (docs/protocol.md).
//! - [`fleet`]: the same rules for a reservation of several hosts (the
//!   fleet server's decision, [`fleet::apply`]).
//! - [`policy`]: who may change what, applied to the owned model as pure
//!   functions ([`policy::apply`], [`policy::check`]).
//! - [`conflicts`]: the booking rule (exclusive reservations overlap no one
//!   else's).
//! - [`parse_duration`], [`parse_instant`]: times as people type them.
//!
//! Like libhosthog, nothing here reads the clock.

pub mod fleet;
pub mod policy;
pub mod protocol;
mod rules;
mod time_input;

pub use rules::conflicts;
pub use time_input::{parse_duration, parse_instant, parse_time_zone};
