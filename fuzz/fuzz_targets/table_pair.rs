//! Feeds arbitrary bytes to `Table::with_delta` as a full table and its
//! change file. The first two bytes choose where the input splits; both
//! parts are also tried with their length and checksum fields made right,
//! the first marked as a full table and the second as its change file, so
//! the fuzzer gets past the CRCs to the merging of the two. Every table
//! that parses goes through the same checks as in `table_parse`.

#![no_main]

use libhosthog::format::{CHECKSUM_OFFSET, FLAG_DELTA, checksum};
use libhosthog::{ErrorKind, Table};
use libfuzzer_sys::fuzz_target;

#[path = "table_common.rs"]
mod common;
use common::{exercise, round_trip};

const FILE_LEN_OFFSET: usize = 16;
const GENERATION_OFFSET: usize = 24;
const FLAGS_OFFSET: usize = 60;
const BASE_GENERATION_OFFSET: usize = 64;
const HEADER_LEN: usize = 72;

fuzz_target!(|data: &[u8]| {
    let Some((split, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let at = usize::from(u16::from_le_bytes(*split)) % (rest.len() + 1);
    let (base, delta) = rest.split_at(at);
    check(base, delta);
    if base.len() >= HEADER_LEN && delta.len() >= HEADER_LEN {
        let mut base = base.to_vec();
        let mut delta = delta.to_vec();
        let generation: [u8; 8] = base[GENERATION_OFFSET..GENERATION_OFFSET + 8]
            .try_into()
            .unwrap_or_default();
        base[BASE_GENERATION_OFFSET..BASE_GENERATION_OFFSET + 8].copy_from_slice(&generation);
        base[FLAGS_OFFSET..FLAGS_OFFSET + 4].copy_from_slice(&0u32.to_le_bytes());
        delta[BASE_GENERATION_OFFSET..BASE_GENERATION_OFFSET + 8].copy_from_slice(&generation);
        delta[FLAGS_OFFSET..FLAGS_OFFSET + 4].copy_from_slice(&FLAG_DELTA.to_le_bytes());
        seal(&mut base);
        seal(&mut delta);
        check(&base, &delta);
    }
});

fn seal(bytes: &mut [u8]) {
    let len = bytes.len() as u64;
    bytes[FILE_LEN_OFFSET..FILE_LEN_OFFSET + 8].copy_from_slice(&len.to_le_bytes());
    let sum = checksum(bytes);
    bytes[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&sum.to_le_bytes());
}

fn check(base: &[u8], delta: &[u8]) {
    let table = match Table::with_delta(base, Some(delta)) {
        Ok(table) => table,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            return;
        }
    };
    exercise(&table);
    round_trip(&table);
}
