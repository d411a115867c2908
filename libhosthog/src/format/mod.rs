//! The table file format, version 2 (specified in docs/table-format.md).
//!
//! ```text
//! header (72 bytes) | reservations (72 bytes each) | co-users (8 each)
//!                   | exempt (8 each) | notices (48 each) | string pool
//! ```
//! Little-endian, no alignment requirement, no padding between sections.
//!
//! Two kinds of file share this layout: a *full* table (`table`), and a
//! *change file* (`table.delta`) holding what changed since the full table
//! of a given generation was written: reservations added or changed, ids
//! removed, and the whole exemption and notice lists. Writers replace the
//! small change file for most edits and the full table only now and then,
//! so an edit costs a write of kilobytes, not of the whole table.
//!
//! [`Layer::parse`] validates every byte of one file before handing out
//! anything; [`Table`] is the view of a full table with its change file
//! applied. Reads borrow from the input: answering "may USER log in now?"
//! allocates nothing.

mod crc32;
mod layout;
mod read;
mod write;

pub use layout::{
    CHECKSUM_OFFSET, FLAG_DELTA, MAGIC, Peeked, VERSION, checksum, peek, peek_generation,
};
pub use read::{Layer, NoticeView, ReservationView, Reservations, Table};
pub use write::{Changes, encode, encode_at, encode_delta};
pub(crate) use write::{encode_delta_unchecked, encode_unchecked};
