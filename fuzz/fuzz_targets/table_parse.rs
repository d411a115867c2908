//! Feeds arbitrary bytes to `Table::parse`. On success, every accessor,
//! `decide` and the denial message run over the table, and the table must
//! survive `to_state` + `encode` unchanged.
//!
//! Almost every random input dies at the checksum, so each input is also
//! tried with its length and checksum fields made right: that sends the
//! fuzzer past the CRC into the structural checks behind it.

#![no_main]

use hosthog::{
    Allowed, CHECKSUM_OFFSET, Decision, ErrorKind, Mode, Table, Who, checksum, decide, encode_at,
    limits,
};
use jiff::tz::{Offset, TimeZone};
use libfuzzer_sys::fuzz_target;

const FILE_LEN_OFFSET: usize = 16;
const HEADER_LEN: usize = 64;

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

/// Calls every accessor and checks what the format promises about it.
fn exercise(table: &Table<'_>) {
    let _ = (table.generation(), table.written_at());
    let mut previous = None;
    let mut users: Vec<&str> = vec!["root", "nobody", ""];
    let mut instants: Vec<i64> = vec![i64::MIN, 0, i64::MAX];
    for r in table.reservations() {
        assert!(r.start() < r.end());
        assert!(
            previous < Some((r.start(), r.id().0)),
            "records out of order"
        );
        previous = Some((r.start(), r.id().0));
        assert!(!r.owner().is_empty() && r.owner().len() <= limits::MAX_NAME);
        assert!(r.comment().len() <= limits::MAX_COMMENT);
        assert!(matches!(r.mode(), Mode::Exclusive | Mode::Shared));
        let _ = (r.created(), r.updated(), r.id().short(), format!("{r:?}"));
        assert!(r.is_member(r.owner()));
        for u in r.with() {
            assert!(r.is_member(u));
            assert!(!u.is_empty());
        }
        let owned = r.to_owned();
        assert_eq!(owned.owner, r.owner());
        assert_eq!(owned.with.len(), r.with().count());
        if users.len() < 12 {
            users.push(r.owner());
            users.extend(r.with().take(2));
        }
        if instants.len() < 24 {
            instants.extend([r.start() - 1, r.start(), r.end() - 1, r.end()]);
        }
    }
    for u in table.exempt() {
        assert!(table.is_exempt(u));
        if users.len() < 16 {
            users.push(u);
        }
    }
    for n in table.notices() {
        assert!(n.start() < n.end());
        assert!(n.is_current(n.start()));
        assert!(!n.is_current(n.end()));
        let owned = n.to_owned();
        assert_eq!(
            (owned.id, owned.author.as_str(), owned.text.as_str()),
            (n.id(), n.author(), n.text())
        );
    }
    let zones = [
        TimeZone::UTC,
        TimeZone::fixed(Offset::constant(14)),
        TimeZone::fixed(Offset::constant(-12)),
    ];
    for &now in &instants {
        let started = table.started_by(now).count();
        assert_eq!(
            started,
            table.reservations().filter(|r| r.start() <= now).count()
        );
        for r in table.active_at(now) {
            assert!(r.start() <= now && now < r.end());
        }
        for &user in &users {
            let who = Who {
                user,
                service: "sshd",
                tty: Some("ssh"),
                rhost: Some("192.0.2.1"),
                also_exempt: &["backup"],
            };
            match decide(table, &who, now) {
                Decision::Allow(Allowed::Root) => assert_eq!(user, "root"),
                Decision::Allow(Allowed::Exempt) => {
                    assert!(table.is_exempt(user) || user == "backup");
                }
                Decision::Allow(Allowed::NoReservation) => {
                    assert_eq!(table.active_at(now).count(), 0);
                }
                Decision::Allow(Allowed::Holder(r)) => {
                    assert_eq!(r.owner(), user);
                    assert!(r.start() <= now && now < r.end());
                }
                Decision::Allow(Allowed::CoUser(r)) => {
                    assert!(r.is_member(user) && r.owner() != user);
                    assert!(r.start() <= now && now < r.end());
                }
                Decision::Allow(Allowed::Shared(r)) => {
                    assert_eq!(r.mode(), Mode::Shared);
                    assert!(r.start() <= now && now < r.end());
                }
                Decision::Deny(denial) => {
                    let r = denial.reservation;
                    assert_eq!(user, denial.user);
                    assert!(user != "root" && user != "backup" && !table.is_exempt(user));
                    assert_eq!(r.mode(), Mode::Exclusive);
                    assert!(r.start() <= now && now < r.end());
                    assert!(!r.is_member(user));
                    for tz in &zones {
                        let text = denial.message(tz, now);
                        assert!(!text.contains('\u{1b}'));
                    }
                }
            }
        }
    }
}

/// `to_state` + `encode` must give back a table that parses to the same
/// state. The parser checks structure, not the model's policy (user-name
/// syntax, printable comments, unique ids), so a table that parses may
/// still be one the writer refuses; then encoding must fail cleanly.
fn round_trip(table: &Table<'_>) {
    let state = table.to_state();
    let encoded = encode_at(&state, table.written_at());
    if let Err(e) = state.validate() {
        let err = encoded.err().map(|e| e.kind());
        assert_eq!(err, Some(ErrorKind::Invalid), "validate said: {e}");
        return;
    }
    let bytes = match encoded {
        Ok(bytes) => bytes,
        // Strings shared in the pool are written once per use: a valid but
        // highly shared table may grow past the size limit when re-encoded.
        Err(e) if e.kind() == ErrorKind::Invalid && e.to_string().contains("at most") => return,
        Err(e) => panic!("a valid state failed to encode: {e}"),
    };
    let again = Table::parse(&bytes).unwrap_or_else(|e| panic!("re-encoded table: {e}"));
    assert_eq!(again.to_state(), state);
    assert_eq!(again.written_at(), table.written_at());
    // Encoding is canonical: a second round gives identical bytes.
    assert_eq!(
        encode_at(&again.to_state(), again.written_at()).ok(),
        Some(bytes)
    );
}
