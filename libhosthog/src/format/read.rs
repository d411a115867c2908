//! Reading a table file: validating every byte, then views that borrow
//! from it.

use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::layout::*;
use crate::error::Result;
use crate::limits;
use crate::model::{Mode, Notice, Reservation, ReservationId, State};

/// One validated file, a full table or a change file: a read-only view of
/// its bytes. Readers use [`Table`], which applies the change file.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
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

impl<'a> Layer<'a> {
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
    /// let bytes = libhosthog::encode(&libhosthog::State::default()).unwrap();
    /// let layer = libhosthog::format::Layer::parse(&bytes).unwrap();
    /// assert!(!layer.is_delta());
    /// assert!(libhosthog::format::Layer::parse(&bytes[..10]).is_err());
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Result<Layer<'a>> {
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
        if header.flags.get() & !FLAG_DELTA != 0 {
            return Err(corrupt("the header has unknown flags set"));
        }
        if header.file_len.get() != bytes.len() as u64 {
            return Err(corrupt(format!(
                "the table is {} bytes but its header says {} (truncated or extended)",
                bytes.len(),
                header.file_len.get()
            )));
        }
        let expected = expected_len(header);
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
        let delta = header.flags.get() & FLAG_DELTA != 0;
        let (generation, base) = (header.generation.get(), header.base_generation.get());
        if !delta && base != generation {
            return Err(corrupt(
                "a full table's base generation differs from its generation",
            ));
        }
        if delta && base >= generation {
            return Err(corrupt(
                "a change file's base generation is not before its generation",
            ));
        }
        if delta && header.reservation_count.get() as usize > limits::MAX_DELTA_RESERVATIONS {
            return Err(corrupt(format!(
                "the change file holds more than {} reservations",
                limits::MAX_DELTA_RESERVATIONS
            )));
        }
        let reservations = take(&mut rest, header.reservation_count.get(), "reservation")?;
        let co_users = take(&mut rest, header.co_user_count.get(), "co-user")?;
        let exempt = take(&mut rest, header.exempt_count.get(), "exemption")?;
        let notices = take(&mut rest, header.notice_count.get(), "notice")?;
        let table = Layer {
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
            let removed_ok = r.mode == MODE_REMOVED && self.is_delta();
            if r.mode != MODE_EXCLUSIVE && r.mode != MODE_SHARED && !removed_ok {
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
    /// [`Layer::parse`] validated; the fallback never happens.
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

    /// A full table: its own generation; a change file: the generation of
    /// the full table it applies to.
    pub fn base_generation(&self) -> u64 {
        self.header.base_generation.get()
    }

    /// True for a change file, false for a full table.
    pub fn is_delta(&self) -> bool {
        self.header.flags.get() & FLAG_DELTA != 0
    }

    /// When the file was written (UTC seconds).
    pub fn written_at(&self) -> i64 {
        self.header.written_at.get()
    }

    /// Records (with removals, in a change file) that started by `now`, in
    /// `(start, id)` order; all of them for `i64::MAX`. Binary search, since
    /// records are sorted by start.
    fn records_started_by(&self, now: i64) -> &'a [ReservationRecord] {
        let n = self.reservations.partition_point(|r| r.start.get() <= now);
        self.reservations.get(..n).unwrap_or(&[])
    }

    /// True if a record (a reservation or a removal) has this id.
    fn has_id(&self, id: u64) -> bool {
        self.reservations.iter().any(|r| r.id.get() == id)
    }
}

/// A table as readers see it: a full table, with the change file written
/// since applied when there is one for exactly that full table.
///
/// A change file for an older full table is already part of the full table
/// and is ignored. One for a newer full table means the full table was
/// replaced between the two opens; [`TableFile::open`](crate::TableFile::open)
/// then opens both again.
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    base: Layer<'a>,
    delta: Option<Layer<'a>>,
}

impl<'a> Table<'a> {
    /// Validates a full table completely (see [`Layer::parse`]) and returns
    /// a view of it.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] naming the first check that failed, also for
    /// a change file. Never panics.
    ///
    /// # Example
    /// ```
    /// let bytes = libhosthog::encode(&libhosthog::State::default()).unwrap();
    /// let table = libhosthog::Table::parse(&bytes).unwrap();
    /// assert_eq!(table.reservations().count(), 0);
    /// assert!(libhosthog::Table::parse(&bytes[..10]).is_err());
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Result<Table<'a>> {
        Table::with_delta(bytes, None)
    }

    /// Validates a full table and, if given, the change file beside it, and
    /// returns the table with the changes applied.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] if either file is invalid, if `base` is a
    /// change file or `delta` a full table, or if the change file belongs
    /// to a newer full table than `base`.
    pub fn with_delta(base: &'a [u8], delta: Option<&'a [u8]>) -> Result<Table<'a>> {
        let base = Layer::parse(base)?;
        if base.is_delta() {
            return Err(corrupt("this is a change file, not a full table"));
        }
        let Some(delta) = delta else {
            return Ok(Table { base, delta: None });
        };
        let delta = Layer::parse(delta).map_err(|e| e.context("its change file (.delta)"))?;
        if !delta.is_delta() {
            return Err(corrupt("the change file is a full table"));
        }
        match delta.base_generation().cmp(&base.generation()) {
            std::cmp::Ordering::Less => Ok(Table { base, delta: None }),
            std::cmp::Ordering::Equal => Ok(Table {
                base,
                delta: Some(delta),
            }),
            std::cmp::Ordering::Greater => Err(corrupt(format!(
                "the change file belongs to table generation {}, newer than the table's {}",
                delta.base_generation(),
                base.generation()
            ))),
        }
    }

    /// Bumped by every write.
    pub fn generation(&self) -> u64 {
        self.delta.unwrap_or(self.base).generation()
    }

    /// When the table was last written (UTC seconds).
    pub fn written_at(&self) -> i64 {
        self.delta.unwrap_or(self.base).written_at()
    }

    /// The full table's generation: the number of the last full write.
    pub fn base_generation(&self) -> u64 {
        self.base.generation()
    }

    /// How many reservations the change file adds, changes or removes.
    pub fn changes_pending(&self) -> usize {
        self.delta.map_or(0, |d| d.reservations.len())
    }

    /// All reservations, sorted by `(start, id)`.
    pub fn reservations(&self) -> Reservations<'a> {
        self.started_by(i64::MAX)
    }

    /// Reservations that started at or before `now`, in `(start, id)`
    /// order: the only ones that can be active at `now`. Found by binary
    /// search, since records are sorted by start.
    pub fn started_by(&self, now: i64) -> Reservations<'a> {
        Reservations {
            base: self.base,
            delta: self.delta,
            base_records: self.base.records_started_by(now),
            delta_records: self.delta.map_or(&[], |d| d.records_started_by(now)),
        }
    }

    /// The reservations active at `now` (`start <= now < end`).
    pub fn active_at(&self, now: i64) -> impl Iterator<Item = ReservationView<'a>> + 'a {
        self.started_by(now).filter(move |r| r.end() > now)
    }

    fn lists(&self) -> Layer<'a> {
        // A change file carries the whole exemption and notice lists.
        self.delta.unwrap_or(self.base)
    }

    /// Users on the exemption list.
    pub fn exempt(&self) -> impl Iterator<Item = &'a str> + 'a {
        let layer = self.lists();
        layer.exempt.iter().map(move |s| layer.str(*s))
    }

    /// True if `user` is on the exemption list. Allocates nothing.
    pub fn is_exempt(&self, user: &str) -> bool {
        let layer = self.lists();
        layer
            .exempt
            .iter()
            .any(|s| layer.bytes(*s) == user.as_bytes())
    }

    /// Admin notices.
    pub fn notices(&self) -> impl Iterator<Item = NoticeView<'a>> + 'a {
        let layer = self.lists();
        layer.notices.iter().map(move |record| NoticeView {
            table: layer,
            record,
        })
    }

    /// Copies the whole table into owned values, for writers.
    pub fn to_state(&self) -> State {
        // Sorted ids of the change file, so the full table's records are
        // looked up in log time rather than scanned for.
        let mut changed: Vec<u64> = self
            .delta
            .map(|d| d.reservations.iter().map(|r| r.id.get()).collect())
            .unwrap_or_default();
        changed.sort_unstable();
        let base = self.base;
        let kept = base
            .reservations
            .iter()
            .filter(|r| changed.binary_search(&r.id.get()).is_err())
            .map(|record| ReservationView {
                table: base,
                record,
            });
        let added = self.delta.into_iter().flat_map(|d| {
            d.reservations
                .iter()
                .filter(|r| r.mode != MODE_REMOVED)
                .map(move |record| ReservationView { table: d, record })
        });
        let mut reservations: Vec<Reservation> = kept.chain(added).map(|r| r.to_owned()).collect();
        reservations.sort_by_key(|r| (r.start, r.id.0));
        State {
            generation: self.generation(),
            reservations,
            exempt: self.exempt().map(str::to_owned).collect(),
            notices: self.notices().map(|n| n.to_owned()).collect(),
        }
    }
}

/// The reservations of a [`Table`] in `(start, id)` order: the full
/// table's, less those the change file replaces or removes, merged with
/// the change file's.
#[derive(Debug, Clone)]
pub struct Reservations<'a> {
    base: Layer<'a>,
    delta: Option<Layer<'a>>,
    base_records: &'a [ReservationRecord],
    delta_records: &'a [ReservationRecord],
}

impl<'a> Iterator for Reservations<'a> {
    type Item = ReservationView<'a>;

    fn next(&mut self) -> Option<ReservationView<'a>> {
        loop {
            // Skip what is not shown: base records the change file replaces
            // or removes, and the change file's removals.
            if let Some((first, rest)) = self.base_records.split_first()
                && self.delta.is_some_and(|d| d.has_id(first.id.get()))
            {
                self.base_records = rest;
                continue;
            }
            if let Some((first, rest)) = self.delta_records.split_first()
                && first.mode == MODE_REMOVED
            {
                self.delta_records = rest;
                continue;
            }
            let key = |r: &ReservationRecord| (r.start.get(), r.id.get());
            let from_base = match (self.base_records.first(), self.delta_records.first()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(b), Some(d)) => key(b) < key(d),
            };
            return if from_base {
                let (record, rest) = self.base_records.split_first()?;
                self.base_records = rest;
                Some(ReservationView {
                    table: self.base,
                    record,
                })
            } else {
                let (record, rest) = self.delta_records.split_first()?;
                self.delta_records = rest;
                Some(ReservationView {
                    table: self.delta?,
                    record,
                })
            };
        }
    }
}

/// A reservation inside a validated table; reads borrow from the file.
#[derive(Clone, Copy)]
pub struct ReservationView<'a> {
    table: Layer<'a>,
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
    table: Layer<'a>,
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
