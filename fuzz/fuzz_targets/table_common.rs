//! What the table fuzz targets check of every table that parses.

use libhosthog::{Allowed, Decision, ErrorKind, Mode, Table, Who, decide, encode_at, limits};
use jiff::tz::{Offset, TimeZone};

/// Calls every accessor and checks what the format promises about it.
pub fn exercise(table: &Table<'_>) {
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
pub fn round_trip(table: &Table<'_>) {
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
