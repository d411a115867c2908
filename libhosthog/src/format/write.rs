//! Writing a table file or a change file from the owned model.

use zerocopy::IntoBytes;
use zerocopy::little_endian::U32;

use super::layout::*;
use crate::error::{Error, Result};
use crate::limits;
use crate::model::{Mode, Notice, Reservation, State};

/// Appends strings to the pool and hands out references to them.
#[derive(Default)]
struct Pool(Vec<u8>);

impl Pool {
    fn push(&mut self, s: &str) -> Result<StrRef> {
        let offset =
            u32::try_from(self.0.len()).map_err(|_| Error::invalid("the table is too large"))?;
        let len = u32::try_from(s.len()).map_err(|_| Error::invalid("a string is too long"))?;
        self.0.extend_from_slice(s.as_bytes());
        Ok(StrRef {
            offset: offset.into(),
            len: len.into(),
        })
    }
}

fn count(n: usize) -> Result<U32> {
    u32::try_from(n)
        .map(U32::new)
        .map_err(|_| Error::invalid("too many entries for the table format"))
}

/// Serializes a state into full table bytes (generation and `written_at`
/// as given in the state and argument). Reservations are written sorted by
/// `(start, id)`.
///
/// # Errors
/// [`ErrorKind::Invalid`] if the state breaks a rule of the model or a
/// limit of the format (see [`State::validate`]).
pub fn encode(state: &State) -> Result<Vec<u8>> {
    encode_at(state, 0)
}

/// Like [`encode`], recording `written_at` (UTC seconds) in the header.
///
/// # Errors
/// As [`encode`].
pub fn encode_at(state: &State, written_at: i64) -> Result<Vec<u8>> {
    state.validate()?;
    encode_unchecked(state, written_at)
}

/// [`encode_at`] for a state the caller has just validated.
pub(crate) fn encode_unchecked(state: &State, written_at: i64) -> Result<Vec<u8>> {
    encode_parts(&Parts {
        generation: state.generation,
        base_generation: state.generation,
        flags: 0,
        written_at,
        reservations: state.reservations.iter().map(|r| (r, false)).collect(),
        exempt: &state.exempt,
        notices: &state.notices,
    })
}

/// What a change file records against the full table it applies to.
#[derive(Debug, Clone, Copy)]
pub struct Changes<'a> {
    /// The generation of that full table.
    pub base_generation: u64,
    /// The reservations of the new state that the full table lacks or holds
    /// differently.
    pub changed: &'a [&'a Reservation],
    /// The full table's reservations that the new state no longer has.
    pub removed: &'a [&'a Reservation],
}

/// Serializes the change file that turns the full table of generation
/// `changes.base_generation` into `state`. The exemption and notice lists
/// are written whole.
///
/// # Errors
/// As [`encode`]; also if there are more changes than a change file holds,
/// or the base generation is not before the state's generation.
pub fn encode_delta(state: &State, changes: &Changes<'_>, written_at: i64) -> Result<Vec<u8>> {
    state.validate()?;
    encode_delta_unchecked(state, changes, written_at)
}

/// [`encode_delta`] for a state the caller has just validated.
pub(crate) fn encode_delta_unchecked(
    state: &State,
    changes: &Changes<'_>,
    written_at: i64,
) -> Result<Vec<u8>> {
    let Changes {
        base_generation,
        changed,
        removed,
    } = *changes;
    if changed.len() + removed.len() > limits::MAX_DELTA_RESERVATIONS {
        return Err(Error::invalid(format!(
            "a change file holds at most {} reservations",
            limits::MAX_DELTA_RESERVATIONS
        )));
    }
    if base_generation >= state.generation {
        return Err(Error::invalid(
            "a change file must be newer than the table it applies to",
        ));
    }
    let reservations = changed
        .iter()
        .map(|r| (*r, false))
        .chain(removed.iter().map(|r| (*r, true)))
        .collect();
    encode_parts(&Parts {
        generation: state.generation,
        base_generation,
        flags: FLAG_DELTA,
        written_at,
        reservations,
        exempt: &state.exempt,
        notices: &state.notices,
    })
}

/// What one file holds; `(reservation, removed)` pairs in any order.
struct Parts<'s> {
    generation: u64,
    base_generation: u64,
    flags: u32,
    written_at: i64,
    reservations: Vec<(&'s Reservation, bool)>,
    exempt: &'s [String],
    notices: &'s [Notice],
}

fn encode_parts(parts: &Parts<'_>) -> Result<Vec<u8>> {
    let mut order = parts.reservations.clone();
    order.sort_by_key(|(r, _)| (r.start, r.id.0));

    let mut pool = Pool::default();
    let mut records = Vec::with_capacity(order.len());
    let mut co_users = Vec::new();
    for (r, removed) in &order {
        let with_first = count(co_users.len())?;
        let with: &[String] = if *removed { &[] } else { &r.with };
        for user in with {
            co_users.push(pool.push(user)?);
        }
        records.push(ReservationRecord {
            id: r.id.0.into(),
            start: r.start.into(),
            end: r.end.into(),
            created: r.created.into(),
            updated: r.updated.into(),
            owner: pool.push(&r.owner)?,
            comment: pool.push(if *removed { "" } else { &r.comment })?,
            with_first,
            with_count: count(with.len())?,
            mode: match (removed, r.mode) {
                (true, _) => MODE_REMOVED,
                (false, Mode::Exclusive) => MODE_EXCLUSIVE,
                (false, Mode::Shared) => MODE_SHARED,
            },
            reserved: [0; 7],
        });
    }
    let exempt = parts
        .exempt
        .iter()
        .map(|u| pool.push(u))
        .collect::<Result<Vec<_>>>()?;
    let notices = parts
        .notices
        .iter()
        .map(|n| {
            Ok(NoticeRecord {
                id: n.id.into(),
                start: n.start.into(),
                end: n.end.into(),
                created: n.created.into(),
                author: pool.push(&n.author)?,
                text: pool.push(&n.text)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let mut header = Header {
        magic: MAGIC,
        version: VERSION.into(),
        header_len: (HEADER_LEN as u16).into(),
        checksum: 0.into(),
        file_len: 0.into(),
        generation: parts.generation.into(),
        written_at: parts.written_at.into(),
        reservation_count: count(records.len())?,
        co_user_count: count(co_users.len())?,
        exempt_count: count(exempt.len())?,
        notice_count: count(notices.len())?,
        pool_len: count(pool.0.len())?,
        flags: parts.flags.into(),
        base_generation: parts.base_generation.into(),
    };
    let len = expected_len(&header);
    if len > limits::MAX_TABLE_BYTES {
        return Err(Error::invalid(format!(
            "the table would be {len} bytes; at most {} are allowed",
            limits::MAX_TABLE_BYTES
        )));
    }
    header.file_len = len.into();

    let mut bytes = Vec::with_capacity(len as usize);
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(records.as_bytes());
    bytes.extend_from_slice(co_users.as_bytes());
    bytes.extend_from_slice(exempt.as_bytes());
    bytes.extend_from_slice(notices.as_bytes());
    bytes.extend_from_slice(&pool.0);
    let sum = checksum(&bytes).to_le_bytes();
    if let Some(field) = bytes.get_mut(CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4) {
        field.copy_from_slice(&sum);
    }
    Ok(bytes)
}
