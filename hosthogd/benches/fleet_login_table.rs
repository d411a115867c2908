//! A live fleet host's table, for bench/pam-login-fleet.sh (the login path
//! on a fleet host against a plain host's, side by side).
//!
//! Starts a real PostgreSQL and a real `hosthog-server serve` (release)
//! whose calendar holds exactly the reservations of the plain benchmark
//! table it is given (read from that table, written by SQL), and a real
//! hosthogd (release) following the calendar as host "bench". Once that
//! host's table holds every one of them (compared field by field), prints
//! its path on stdout and keeps the fleet running, hosthogd long-polling as
//! on any fleet host, until stdin closes; then stops every process it
//! started.
//!
//!     cargo bench -p hosthogd --bench fleet_login_table -- PLAIN_TABLE

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use hosthog_tests::fleet::{FleetHost, FleetServer};
use libhosthog::{Mode, Reservation};

/// Reservations written by one psql call (its SQL stays well under the
/// 128 KiB an argument may have).
const CHUNK: usize = 100;

fn main() {
    // cargo bench passes `--bench` too.
    let Some(plain) = std::env::args().skip(1).find(|a| !a.starts_with("--")) else {
        eprintln!("usage: cargo bench -p hosthogd --bench fleet_login_table -- PLAIN_TABLE");
        std::process::exit(2);
    };
    let mut want = libhosthog::TableFile::open(Path::new(&plain), 0)
        .and_then(|file| file.table().map(|t| t.to_state()))
        .unwrap_or_else(|e| panic!("{plain}: {e}"))
        .reservations;
    want.sort_by_key(|r| r.id);

    let mut server = FleetServer::start();
    let bundle = server.add_host("bench");
    for chunk in want.chunks(CHUNK) {
        let sql: String = chunk.iter().map(insert).collect();
        server.pg.psql("fleet", &format!("BEGIN;{sql}COMMIT;"));
    }
    server.pg.psql(
        "fleet",
        "UPDATE host SET version = version + 1 WHERE name = 'bench'",
    );
    server.serve();
    let host = FleetHost::start(&server, "bench", &bundle);
    host.wait_synced();
    let started = Instant::now();
    loop {
        let mut held = host.state().reservations;
        held.sort_by_key(|r| r.id);
        if held == want {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the fleet host's table holds {} reservations, not the plain table's {}:\n{}",
            held.len(),
            want.len(),
            host.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "fleet_login_table: host \"bench\" follows the calendar; its table holds the plain table's {} reservations",
        want.len()
    );
    println!("{}", host.table_path().display());
    std::io::stdout().flush().expect("stdout");
    // Until the benchmark is done with the table.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(host);
    drop(server);
}

/// The SQL that puts `r` in the calendar, claiming host "bench".
fn insert(r: &Reservation) -> String {
    let text = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let with: Vec<String> = r.with.iter().map(|u| text(u)).collect();
    let exclusive = r.mode == Mode::Exclusive;
    let id = r.id.0 as i64;
    format!(
        "INSERT INTO reservation (id, owner, co_users, exclusive, comment, start_at, end_at,
                                  created_at, updated_at)
         VALUES ({id}, {owner}, ARRAY[{with}]::text[], {exclusive}, {comment},
                 to_timestamp({start}), to_timestamp({end}),
                 to_timestamp({created}), to_timestamp({updated}));
         INSERT INTO claim (reservation, host, start_at, end_at, exclusive)
         SELECT {id}, id, to_timestamp({start}), to_timestamp({end}), {exclusive}
         FROM host WHERE name = 'bench';",
        owner = text(&r.owner),
        with = with.join(","),
        comment = text(&r.comment),
        start = r.start,
        end = r.end,
        created = r.created,
        updated = r.updated,
    )
}
