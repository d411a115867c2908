//! Login and clearing agree on whom hosthog never stands in the way of:
//! every uid-0 account (not just the one named root), every system account
//! (uid outside UID_MIN..=UID_MAX: `su postgres`, cron jobs of system
//! users) and the admins. hosthogd writes them into the table's exemption
//! list; the PAM module, through real libpam, lets them in from that table
//! alone (no NSS); clearing leaves the same accounts alone. Needs root,
//! pamtester and bwrap.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::daemon::now;
use hosthog_tests::daemon::{DEFAULT_CONFIG, Daemon};
use hosthog_tests::pamtester::Sandbox;

/// A second uid-0 account and two system accounts, besides the harness's
/// root, nobody and test users (dave is in the admin group hhadmin).
const MORE_PASSWD: &str = "toor:x:0:0::/root:/bin/sh\n\
postgres:x:120:127::/var/lib/postgresql:/bin/sh\n\
daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n";

const SERVICE: &str = "hosthog-test";

#[test]
fn uid_zero_system_accounts_and_admins_get_in_and_clearing_agrees() {
    let d = Daemon::start_with_accounts(DEFAULT_CONFIG, 0, MORE_PASSWD);
    d.run_as("alice", &["reserve", "--exclusive", "--for", "1h", "quiet"])
        .ok();
    let state = d.state();
    let mut exempt = state.exempt.clone();
    exempt.sort();
    assert_eq!(
        exempt,
        [
            "daemon", "dave", "erin", "nobody", "postgres", "root", "toor"
        ],
        "the table's exemption list"
    );

    // Through real libpam, from the table hosthogd wrote.
    let sandbox = Sandbox::new();
    sandbox.write_table_bytes(&d.table_bytes());
    sandbox.hosthog_service(SERVICE, "");
    for user in [
        "toor", "postgres", "daemon", "dave", "root", "alice", "erin",
    ] {
        let run = sandbox.pamtester(&[SERVICE, user, "acct_mgmt"]);
        assert_eq!(run.code, Some(0), "{user} was refused: {run:#?}");
        assert_eq!(
            run.stdout, "pamtester: account management done.\n",
            "{user}"
        );
    }
    let bob = sandbox.pamtester(&[SERVICE, "bob", "acct_mgmt"]);
    assert_eq!(bob.code, Some(1), "{bob:#?}");
    assert!(
        bob.stderr.contains("reserved exclusively by alice"),
        "{bob:#?}"
    );

    // Clearing would end exactly the sessions login refuses.
    let candidates: Vec<(String, u32)> = [
        ("toor", 0),
        ("postgres", 120),
        ("daemon", 1),
        ("nobody", 65534),
        ("dave", 2004),
        ("erin", 2005),
        ("alice", 2001),
        ("bob", 2002),
        ("carol", 2003),
    ]
    .iter()
    .map(|(n, u)| (n.to_string(), *u))
    .collect();
    assert_eq!(
        hosthogd::clear::disallowed(&state, &candidates, now()),
        [("bob".to_string(), 2002), ("carol".to_string(), 2003)]
    );
}

/// A system account made while someone holds the host exclusively (a
/// package's postinst: `useradd --system`, then `su` to it) is let in
/// within moments, not after the next periodic refresh (300 s).
#[test]
fn a_system_account_made_now_is_let_in_at_once() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let d = Daemon::start_with_accounts(DEFAULT_CONFIG, 0, "");
    d.run_as("alice", &["reserve", "--exclusive", "--for", "1h", "quiet"])
        .ok();
    assert!(!d.state().exempt.contains(&"pgnew".to_string()));
    // Appended in place: the namespace's /etc/passwd is a bind mount of
    // this file (a rename would leave the mount on the old one).
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.dir.path().join("passwd"))
        .unwrap()
        .write_all(b"pgnew:x:121:130::/var/lib/pgnew:/bin/sh\n")
        .unwrap();
    let started = Instant::now();
    while !d.state().exempt.contains(&"pgnew".to_string()) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "pgnew is not exempt after 5 s: {:?}",
            d.state().exempt
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("exempt after {:?}", started.elapsed());
    let sandbox = Sandbox::new();
    sandbox.write_table_bytes(&d.table_bytes());
    sandbox.hosthog_service(SERVICE, "");
    let run = sandbox.pamtester(&[SERVICE, "pgnew", "acct_mgmt"]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "pamtester: account management done.\n"),
        "{run:#?}"
    );
}
