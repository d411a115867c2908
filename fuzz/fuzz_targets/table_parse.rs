//! Feeds arbitrary bytes to `Table::parse`. On success, every accessor,
//! `decide` and the denial message run over the table, and the table must
//! survive `to_state` + `encode` unchanged.
//!
//! Almost every random input dies at the checksum, so each input is also
//! tried with its length and checksum fields made right: that sends the
//! fuzzer past the CRC into the structural checks behind it.

#![no_main]

use libhosthog::format::{CHECKSUM_OFFSET, checksum};
use libhosthog::{ErrorKind, Table};
use libfuzzer_sys::fuzz_target;

#[path = "table_common.rs"]
mod common;
use common::{exercise, round_trip};

const FILE_LEN_OFFSET: usize = 16;
const HEADER_LEN: usize = 72;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= HEADER_LEN {
        let mut fixed = data.to_vec();
        fixed[FILE_LEN_OFFSET..FILE_LEN_OFFSET + 8]
            .copy_from_slice(&(data.len() as u64).to_le_bytes());
        let sum = checksum(&fixed);
        fixed[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&sum.to_le_bytes());
        check(&fixed);
    }
});

fn check(bytes: &[u8]) {
    let table = match Table::parse(bytes) {
        Ok(table) => table,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            return;
        }
    };
    exercise(&table);
    round_trip(&table);
}

