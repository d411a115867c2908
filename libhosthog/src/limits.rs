//! The limits of the model and the table format. Writers refuse anything
//! beyond them; readers refuse any table that breaks them.

/// Largest table file a reader accepts, in bytes.
pub const MAX_TABLE_BYTES: u64 = 64 << 20;
/// Most reservations one table holds.
pub const MAX_RESERVATIONS: usize = 200_000;
/// Most co-users on one reservation.
pub const MAX_CO_USERS: usize = 64;
/// Most entries on the exemption list (after group expansion).
pub const MAX_EXEMPT: usize = 10_000;
/// Most admin notices at once.
pub const MAX_NOTICES: usize = 64;
/// Longest user name, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest reservation comment, in bytes.
pub const MAX_COMMENT: usize = 500;
/// Longest notice text, in bytes.
pub const MAX_NOTICE: usize = 1000;
/// Most reservations (added, changed or removed) one change file holds.
/// Writers write a full table instead well before this.
pub const MAX_DELTA_RESERVATIONS: usize = 4096;
