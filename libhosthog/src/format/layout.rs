//! The bytes of a table file: header and record layouts, the checksum, and
//! the header peek writers use.

use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, ErrorKind};

/// The first 8 bytes of every table file.
pub const MAGIC: [u8; 8] = *b"HOSTHOG\0";
/// The format version this code writes and the only one it reads.
pub const VERSION: u16 = 2;
/// Byte offset of the checksum field; the checksum covers every other byte.
pub const CHECKSUM_OFFSET: usize = 12;

pub(super) const MODE_EXCLUSIVE: u8 = 1;
pub(super) const MODE_SHARED: u8 = 2;
/// In a change file only: the reservation with this id is gone.
pub(super) const MODE_REMOVED: u8 = 3;

/// Header flag: this file is a change file, not a full table.
pub const FLAG_DELTA: u32 = 1;

/// Reference to a string in the pool: byte offset from the pool's start and
/// length in bytes.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct StrRef {
    pub offset: U32,
    pub len: U32,
}

/// The fixed 72-byte header.
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
    /// A full table: its own generation. A change file: the generation of
    /// the full table it applies to.
    pub base_generation: U64,
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

pub(super) const HEADER_LEN: usize = size_of::<Header>();
const _: () = assert!(HEADER_LEN == 72);
const _: () = assert!(size_of::<ReservationRecord>() == 72);
const _: () = assert!(size_of::<NoticeRecord>() == 48);
const _: () = assert!(size_of::<StrRef>() == 8);

pub(super) fn corrupt(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Corrupt, what)
}

/// The checksum of a table file: CRC-32 (IEEE) over every byte except the
/// four at [`CHECKSUM_OFFSET`].
/// (The PAM module computes it in a fresh process at every login:
/// super::crc32 says why not crc32fast directly.)
pub fn checksum(bytes: &[u8]) -> u32 {
    let head = super::crc32::update(0, bytes.get(..CHECKSUM_OFFSET).unwrap_or(&[]));
    super::crc32::update(head, bytes.get(CHECKSUM_OFFSET + 4..).unwrap_or(&[]))
}

/// The generation in a table file's header (a full table or a change
/// file), from its first 72 bytes, with only the magic and version checked.
/// For a writer that keeps the state it last wrote and wants to know
/// cheaply whether anyone wrote since: it must not be used to trust the
/// rest of the file.
///
/// # Example
/// ```
/// let state = libhosthog::State { generation: 7, ..Default::default() };
/// let bytes = libhosthog::encode(&state).unwrap();
/// assert_eq!(libhosthog::format::peek_generation(&bytes), Some(7));
/// assert_eq!(libhosthog::format::peek_generation(&bytes[..10]), None);
/// ```
pub fn peek_generation(bytes: &[u8]) -> Option<u64> {
    peek(bytes).map(|p| p.generation)
}

/// What a header says, unchecked beyond magic and version: see
/// [`peek_generation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peeked {
    pub generation: u64,
    pub base_generation: u64,
    pub delta: bool,
}

/// Reads a header's generations without validating the file.
pub fn peek(bytes: &[u8]) -> Option<Peeked> {
    let (header, _) = Header::ref_from_prefix(bytes).ok()?;
    (header.magic == MAGIC && header.version.get() == VERSION).then(|| Peeked {
        generation: header.generation.get(),
        base_generation: header.base_generation.get(),
        delta: header.flags.get() & FLAG_DELTA != 0,
    })
}

/// The length of a file whose header says `header`, from its counts.
pub(super) fn expected_len(header: &Header) -> u64 {
    HEADER_LEN as u64
        + u64::from(header.reservation_count.get()) * size_of::<ReservationRecord>() as u64
        + u64::from(header.co_user_count.get()) * size_of::<StrRef>() as u64
        + u64::from(header.exempt_count.get()) * size_of::<StrRef>() as u64
        + u64::from(header.notice_count.get()) * size_of::<NoticeRecord>() as u64
        + u64::from(header.pool_len.get())
}
