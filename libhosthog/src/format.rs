//! The table file format, version 1 (specified in docs/table-format.md).
//!
//! ```text
//! header (64 bytes) | reservations (72 bytes each) | co-users (8 each)
//!                   | exempt (8 each) | notices (48 each) | string pool
//! ```
//! Little-endian, no alignment requirement, no padding between sections.
//! [`Table::parse`] validates every byte before handing out anything, and
//! reads borrow from the input: answering "may USER log in now?" allocates
//! nothing.

use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::model::{Mode, Notice, Reservation, ReservationId, State};

/// The first 8 bytes of every table file.
pub const MAGIC: [u8; 8] = *b"HOSTHOG\0";
/// The format version this code writes and the only one it reads.
pub const VERSION: u16 = 1;
/// Byte offset of the checksum field; the checksum covers every other byte.
pub const CHECKSUM_OFFSET: usize = 12;

const MODE_EXCLUSIVE: u8 = 1;
const MODE_SHARED: u8 = 2;

/// Reference to a string in the pool: byte offset from the pool's start and
/// length in bytes.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct StrRef {
    pub offset: U32,
    pub len: U32,
}

/// The fixed 64-byte header.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: U16,
    pub header_len: U16,
    pub checksum: U32,
    pub file_len: U64,
    pub generation: U64,
    pub written_at: I64,
    pub reservation_count: U32,
    pub co_user_count: U32,
    pub exempt_count: U32,
    pub notice_count: U32,
    pub pool_len: U32,
    pub flags: U32,
}

/// One reservation record (72 bytes).
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ReservationRecord {
    pub id: U64,
    pub start: I64,
    pub end: I64,
    pub created: I64,
    pub updated: I64,
    pub owner: StrRef,
    pub comment: StrRef,
    /// Index of the first co-user in the co-user section.
    pub with_first: U32,
    pub with_count: U32,
    pub mode: u8,
    pub reserved: [u8; 7],
}

/// One notice record (48 bytes).
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct NoticeRecord {
    pub id: U64,
    pub start: I64,
    pub end: I64,
    pub created: I64,
    pub author: StrRef,
    pub text: StrRef,
}

const HEADER_LEN: usize = size_of::<Header>();
const _: () = assert!(HEADER_LEN == 64);
const _: () = assert!(size_of::<ReservationRecord>() == 72);
const _: () = assert!(size_of::<NoticeRecord>() == 48);
const _: () = assert!(size_of::<StrRef>() == 8);

fn corrupt(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Corrupt, what)
}

/// The checksum of a table file: CRC-32 (IEEE) over every byte except the
/// four at [`CHECKSUM_OFFSET`].
pub fn checksum(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytes.get(..CHECKSUM_OFFSET).unwrap_or(&[]));
    hasher.update(bytes.get(CHECKSUM_OFFSET + 4..).unwrap_or(&[]));
    hasher.finalize()
}

/// The generation in a table's header, from its first 64 bytes, with only
/// the magic and version checked. For a writer that keeps the state it last
/// wrote and wants to know cheaply whether anyone wrote since: it must not
/// be used to trust the rest of the file.
///
/// # Example
/// ```
/// let state = hosthog::State { generation: 7, ..Default::default() };
/// let bytes = hosthog::encode(&state).unwrap();
/// assert_eq!(hosthog::peek_generation(&bytes), Some(7));
/// assert_eq!(hosthog::peek_generation(&bytes[..10]), None);
/// ```
pub fn peek_generation(bytes: &[u8]) -> Option<u64> {
    let (header, _) = Header::ref_from_prefix(bytes).ok()?;
    (header.magic == MAGIC && header.version.get() == VERSION).then(|| header.generation.get())
}

/// A validated, read-only view of a table file's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    header: &'a Header,
    reservations: &'a [ReservationRecord],
    co_users: &'a [StrRef],
    exempt: &'a [StrRef],
    notices: &'a [NoticeRecord],
    pool: &'a [u8],
    /// The pool as text, when all of it is valid UTF-8 (as every pool
    /// hosthog writes is). Then a string in it is valid UTF-8 exactly when
    /// both its ends fall on character boundaries, which is much cheaper to
    /// check than validating each short string on its own: this halves the
    /// time a login spends on a 1,000-reservation table.
    pool_text: Option<&'a str>,
}

/// Splits `count` records of type `T` off the front of `rest`.
fn take<'a, T>(rest: &mut &'a [u8], count: u32, what: &str) -> Result<&'a [T]>
where
    T: FromBytes + KnownLayout + Immutable + Unaligned,
{
    let (records, tail) = <[T]>::ref_from_prefix_with_elems(rest, count as usize)
        .map_err(|_| corrupt(format!("the {what} section runs past the end of the file")))?;
    *rest = tail;
    Ok(records)
}

impl<'a> Table<'a> {
    /// Validates `bytes` completely and returns a view of them.
    ///
    /// Checks, in order: length bounds, magic, version, header length, flags,
    /// exact file length, checksum, then every record: string references
    /// inside the pool and valid UTF-8 within their limits, `start < end`,
    /// a known mode, zero reserved bytes, co-user ranges inside their
    /// section, reservations sorted by `(start, id)`.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] naming the first check that failed. Never panics.
    ///
    /// # Example
    /// ```
    /// let bytes = hosthog::encode(&hosthog::State::default()).unwrap();
    /// let table = hosthog::Table::parse(&bytes).unwrap();
    /// assert_eq!(table.reservations().count(), 0);
    /// assert!(hosthog::Table::parse(&bytes[..10]).is_err());
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Result<Table<'a>> {
        if bytes.len() as u64 > limits::MAX_TABLE_BYTES {
            return Err(corrupt(format!(
                "the table is {} bytes; at most {} are accepted",
                bytes.len(),
                limits::MAX_TABLE_BYTES
            )));
        }
        let (header, mut rest) = Header::ref_from_prefix(bytes).map_err(|_| {
            corrupt(format!(
                "the table is {} bytes, shorter than its header",
                bytes.len()
            ))
        })?;
        if header.magic != MAGIC {
            return Err(corrupt("this is not a hosthog table (wrong magic number)"));
        }
        if header.version.get() != VERSION {
            return Err(corrupt(format!(
                "the table has format version {}; this build reads version {VERSION}",
                header.version.get()
            )));
        }
        if usize::from(header.header_len.get()) != HEADER_LEN {
            return Err(corrupt("the header length field is wrong"));
        }
        if header.flags.get() != 0 {
            return Err(corrupt("the header has unknown flags set"));
        }
        if header.file_len.get() != bytes.len() as u64 {
            return Err(corrupt(format!(
                "the table is {} bytes but its header says {} (truncated or extended)",
                bytes.len(),
                header.file_len.get()
            )));
        }
        let expected = expected_len(
            header.reservation_count.get(),
            header.co_user_count.get(),
            header.exempt_count.get(),
            header.notice_count.get(),
            header.pool_len.get(),
        );
        if expected != bytes.len() as u64 {
            return Err(corrupt(
                "the section lengths do not add up to the file length",
            ));
        }
        if checksum(bytes) != header.checksum.get() {
            return Err(corrupt("checksum mismatch"));
        }
        if header.reservation_count.get() as usize > limits::MAX_RESERVATIONS
            || header.exempt_count.get() as usize > limits::MAX_EXEMPT
            || header.notice_count.get() as usize > limits::MAX_NOTICES
        {
            return Err(corrupt(
                "a section holds more entries than the format allows",
            ));
        }
        let reservations = take(&mut rest, header.reservation_count.get(), "reservation")?;
        let co_users = take(&mut rest, header.co_user_count.get(), "co-user")?;
        let exempt = take(&mut rest, header.exempt_count.get(), "exemption")?;
        let notices = take(&mut rest, header.notice_count.get(), "notice")?;
        let table = Table {
            header,
            reservations,
            co_users,
            exempt,
            notices,
            pool: rest,
            pool_text: std::str::from_utf8(rest).ok(),
        };
        table.validate_records()?;
        Ok(table)
    }

    fn validate_records(&self) -> Result<()> {
        let mut previous: Option<(i64, u64)> = None;
        let mut co_users_used: u64 = 0;
        for (i, r) in self.reservations.iter().enumerate() {
            let bad = |what: &str| corrupt(format!("reservation #{i}: {what}"));
            let name = self.checked_str(r.owner, limits::MAX_NAME).map_err(&bad)?;
            if name.is_empty() {
                return Err(bad("empty owner"));
            }
            self.checked_str(r.comment, limits::MAX_COMMENT)
                .map_err(&bad)?;
            if r.start.get() >= r.end.get() {
                return Err(bad("start is not before end"));
            }
            if r.mode != MODE_EXCLUSIVE && r.mode != MODE_SHARED {
                return Err(bad("unknown mode"));
            }
            if r.reserved != [0; 7] {
                return Err(bad("reserved bytes are not zero"));
            }
            let key = (r.start.get(), r.id.get());
            if previous.is_some_and(|p| p >= key) {
                return Err(bad("reservations are not sorted by (start, id)"));
            }
            previous = Some(key);
            if r.with_count.get() as usize > limits::MAX_CO_USERS {
                return Err(bad("too many co-users"));
            }
            // Co-user ranges are laid out back to back, in record order.
            if u64::from(r.with_first.get()) != co_users_used {
                return Err(bad("co-user range out of place"));
            }
            co_users_used += u64::from(r.with_count.get());
            if co_users_used > self.co_users.len() as u64 {
                return Err(bad("co-user range runs past its section"));
            }
        }
        if co_users_used != self.co_users.len() as u64 {
            return Err(corrupt(
                "the co-user section has entries no reservation uses",
            ));
        }
        for (i, s) in self.co_users.iter().chain(self.exempt).enumerate() {
            match self.checked_str(*s, limits::MAX_NAME) {
                Ok("") => return Err(corrupt(format!("user name #{i}: empty"))),
                Ok(_) => {}
                Err(e) => return Err(corrupt(format!("user name #{i}: {e}"))),
            }
        }
        for (i, n) in self.notices.iter().enumerate() {
            let bad = |what: &str| corrupt(format!("notice #{i}: {what}"));
            self.checked_str(n.author, limits::MAX_NAME).map_err(&bad)?;
            self.checked_str(n.text, limits::MAX_NOTICE).map_err(&bad)?;
            if n.start.get() >= n.end.get() {
                return Err(bad("start is not before end"));
            }
        }
        Ok(())
    }

    fn checked_str(&self, s: StrRef, max: usize) -> Result<&'a str, &'static str> {
        let len = s.len.get() as usize;
        if len > max {
            return Err("string longer than its limit");
        }
        let start = s.offset.get() as usize;
        let end = start.checked_add(len).ok_or("string outside the pool")?;
        let bytes = self.pool.get(start..end).ok_or("string outside the pool")?;
        match self.pool_text {
            Some(text) => text.get(start..end).ok_or("string is not UTF-8"),
            None => std::str::from_utf8(bytes).map_err(|_| "string is not UTF-8"),
        }
    }

    /// Resolves a string reference. Only called on references that
    /// [`Table::parse`] validated; the fallback never happens.
    fn str(&self, s: StrRef) -> &'a str {
        self.checked_str(s, usize::MAX).unwrap_or("")
    }

    /// Raw bytes of a validated string reference (no UTF-8 re-check).
    fn bytes(&self, s: StrRef) -> &'a [u8] {
        let start = s.offset.get() as usize;
        self.pool
            .get(start..start.saturating_add(s.len.get() as usize))
            .unwrap_or(&[])
    }

    /// Bumped by every write.
    pub fn generation(&self) -> u64 {
        self.header.generation.get()
    }

    /// When the table was written (UTC seconds).
    pub fn written_at(&self) -> i64 {
        self.header.written_at.get()
    }

    /// All reservations, sorted by start.
    pub fn reservations(&self) -> impl ExactSizeIterator<Item = ReservationView<'a>> + '_ {
        let table = *self;
        self.reservations
            .iter()
            .map(move |record| ReservationView { table, record })
    }

    /// Reservations that started at or before `now`, in start order: the
    /// only ones that can be active at `now`. Found by binary search, since
    /// records are sorted by start.
    pub fn started_by(&self, now: i64) -> impl Iterator<Item = ReservationView<'a>> + '_ {
        let n = self.reservations.partition_point(|r| r.start.get() <= now);
        let table = *self;
        self.reservations
            .get(..n)
            .unwrap_or(&[])
            .iter()
            .map(move |record| ReservationView { table, record })
    }

    /// The reservations active at `now` (`start <= now < end`).
    pub fn active_at(&self, now: i64) -> impl Iterator<Item = ReservationView<'a>> + '_ {
        self.started_by(now).filter(move |r| r.end() > now)
    }

    /// Users on the exemption list.
    pub fn exempt(&self) -> impl Iterator<Item = &'a str> + '_ {
        let table = *self;
        self.exempt.iter().map(move |s| table.str(*s))
    }

    /// True if `user` is on the exemption list. Allocates nothing.
    pub fn is_exempt(&self, user: &str) -> bool {
        self.exempt
            .iter()
            .any(|s| self.bytes(*s) == user.as_bytes())
    }

    /// Admin notices.
    pub fn notices(&self) -> impl Iterator<Item = NoticeView<'a>> + '_ {
        let table = *self;
        self.notices
            .iter()
            .map(move |record| NoticeView { table, record })
    }

    /// Copies the whole table into owned values, for writers.
    pub fn to_state(&self) -> State {
        State {
            generation: self.generation(),
            reservations: self.reservations().map(|r| r.to_owned()).collect(),
            exempt: self.exempt().map(str::to_owned).collect(),
            notices: self.notices().map(|n| n.to_owned()).collect(),
        }
    }
}

/// A reservation inside a validated table; reads borrow from the file.
#[derive(Clone, Copy)]
pub struct ReservationView<'a> {
    table: Table<'a>,
    record: &'a ReservationRecord,
}

impl std::fmt::Debug for ReservationView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.to_owned(), f)
    }
}

impl<'a> ReservationView<'a> {
    pub fn id(&self) -> ReservationId {
        ReservationId(self.record.id.get())
    }
    pub fn owner(&self) -> &'a str {
        self.table.str(self.record.owner)
    }
    pub fn comment(&self) -> &'a str {
        self.table.str(self.record.comment)
    }
    pub fn start(&self) -> i64 {
        self.record.start.get()
    }
    pub fn end(&self) -> i64 {
        self.record.end.get()
    }
    pub fn created(&self) -> i64 {
        self.record.created.get()
    }
    pub fn updated(&self) -> i64 {
        self.record.updated.get()
    }
    pub fn mode(&self) -> Mode {
        if self.record.mode == MODE_SHARED {
            Mode::Shared
        } else {
            Mode::Exclusive
        }
    }

    /// Co-users.
    pub fn with(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.co_user_refs().iter().map(|s| self.table.str(*s))
    }

    fn co_user_refs(&self) -> &'a [StrRef] {
        let first = self.record.with_first.get() as usize;
        let count = self.record.with_count.get() as usize;
        self.table
            .co_users
            .get(first..first.saturating_add(count))
            .unwrap_or(&[])
    }

    /// True if `user` is the owner or a co-user. Allocates nothing.
    pub fn is_member(&self, user: &str) -> bool {
        let user = user.as_bytes();
        self.table.bytes(self.record.owner) == user
            || self
                .co_user_refs()
                .iter()
                .any(|s| self.table.bytes(*s) == user)
    }

    /// Copies the reservation into an owned value.
    pub fn to_owned(&self) -> Reservation {
        Reservation {
            id: self.id(),
            owner: self.owner().to_owned(),
            with: self.with().map(str::to_owned).collect(),
            start: self.start(),
            end: self.end(),
            mode: self.mode(),
            comment: self.comment().to_owned(),
            created: self.created(),
            updated: self.updated(),
        }
    }
}

/// An admin notice inside a validated table.
#[derive(Clone, Copy)]
pub struct NoticeView<'a> {
    table: Table<'a>,
    record: &'a NoticeRecord,
}

impl<'a> NoticeView<'a> {
    pub fn id(&self) -> u64 {
        self.record.id.get()
    }
    pub fn author(&self) -> &'a str {
        self.table.str(self.record.author)
    }
    pub fn text(&self) -> &'a str {
        self.table.str(self.record.text)
    }
    pub fn start(&self) -> i64 {
        self.record.start.get()
    }
    pub fn end(&self) -> i64 {
        self.record.end.get()
    }
    /// True if the notice is shown at `now`.
    pub fn is_current(&self, now: i64) -> bool {
        self.start() <= now && now < self.end()
    }
    pub fn to_owned(&self) -> Notice {
        Notice {
            id: self.id(),
            author: self.author().to_owned(),
            text: self.text().to_owned(),
            start: self.start(),
            end: self.end(),
            created: self.record.created.get(),
        }
    }
}

fn expected_len(reservations: u32, co_users: u32, exempt: u32, notices: u32, pool: u32) -> u64 {
    HEADER_LEN as u64
        + u64::from(reservations) * size_of::<ReservationRecord>() as u64
        + u64::from(co_users) * size_of::<StrRef>() as u64
        + u64::from(exempt) * size_of::<StrRef>() as u64
        + u64::from(notices) * size_of::<NoticeRecord>() as u64
        + u64::from(pool)
}

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

/// Serializes a state into table file bytes (generation and `written_at`
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
    let mut order: Vec<&Reservation> = state.reservations.iter().collect();
    order.sort_by_key(|r| (r.start, r.id.0));

    let mut pool = Pool::default();
    let mut records = Vec::with_capacity(order.len());
    let mut co_users = Vec::new();
    for r in &order {
        let with_first = count(co_users.len())?;
        for user in &r.with {
            co_users.push(pool.push(user)?);
        }
        records.push(ReservationRecord {
            id: r.id.0.into(),
            start: r.start.into(),
            end: r.end.into(),
            created: r.created.into(),
            updated: r.updated.into(),
            owner: pool.push(&r.owner)?,
            comment: pool.push(&r.comment)?,
            with_first,
            with_count: count(r.with.len())?,
            mode: match r.mode {
                Mode::Exclusive => MODE_EXCLUSIVE,
                Mode::Shared => MODE_SHARED,
            },
            reserved: [0; 7],
        });
    }
    let exempt = state
        .exempt
        .iter()
        .map(|u| pool.push(u))
        .collect::<Result<Vec<_>>>()?;
    let notices = state
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
        generation: state.generation.into(),
        written_at: written_at.into(),
        reservation_count: count(records.len())?,
        co_user_count: count(co_users.len())?,
        exempt_count: count(exempt.len())?,
        notice_count: count(notices.len())?,
        pool_len: count(pool.0.len())?,
        flags: 0.into(),
    };
    let len = expected_len(
        header.reservation_count.get(),
        header.co_user_count.get(),
        header.exempt_count.get(),
        header.notice_count.get(),
        header.pool_len.get(),
    );
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
