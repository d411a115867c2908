//! Issue 14, acceptance 1: three hosts of one fleet (a real PostgreSQL,
//! hosthog-server and three hosthogd, each with its own state directory and
//! its own /etc/passwd). alice, on host A, books A and B exclusively through
//! A's hosthogd; within a second bob is refused on B through the real libpam
//! (pamtester, with the message naming alice) and admitted on C. Run as
//! root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use hosthog_tests::fleet::{FleetHost, FleetServer, now, table_matches};
use hosthog_tests::pamtester::{Run, Sandbox};
use jiff::tz::TimeZone;

/// A PAM service for `host` whose account stack is pam_hosthog reading
/// that host's table.
fn service_for(sandbox: &Sandbox, host: &FleetHost) -> String {
    let name = format!("hosthog-{}", host.name);
    sandbox.service(
        &name,
        &format!(
            "account requisite {} table={}\naccount required pam_permit.so\n",
            sandbox.module().display(),
            host.table_path().display()
        ),
    );
    name
}

fn login(sandbox: &Sandbox, service: &str, user: &str) -> Run {
    sandbox.pamtester(&[service, user, "acct_mgmt"])
}

#[test]
fn alice_books_a_and_b_from_a_bob_is_refused_on_b_within_a_second_and_admitted_on_c() {
    let mut server = FleetServer::start();
    let bundles: Vec<_> = ["hosta", "hostb", "hostc"]
        .iter()
        .map(|h| server.add_host(h))
        .collect();
    server.serve();
    let hosts: Vec<FleetHost> = ["hosta", "hostb", "hostc"]
        .iter()
        .zip(&bundles)
        .map(|(name, bundle)| FleetHost::start(&server, name, bundle))
        .collect();
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);
    for host in &hosts {
        host.wait_synced();
    }
    let sandbox = Sandbox::new();
    let (on_b, on_c) = (service_for(&sandbox, b), service_for(&sandbox, c));
    // Before: bob may log in on B.
    let run = login(&sandbox, &on_b, "bob");
    assert_eq!(run.code, Some(0), "{run:#?}");

    let (code, stdout, stderr) = a.hosthog(
        "alice",
        &[
            "reserve",
            "--hosts",
            "hosta,hostb",
            "--exclusive",
            "--for",
            "1h",
            "paper",
        ],
    );
    let committed = Instant::now();
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{}", a.log());
    // bob, on B, through the real libpam, until refused.
    let refused = loop {
        let run = login(&sandbox, &on_b, "bob");
        if run.code == Some(1) {
            break run;
        }
        assert_eq!(run.code, Some(0), "{run:#?}");
        assert!(
            committed.elapsed() < Duration::from_secs(5),
            "bob was never refused on B: {}",
            b.log()
        );
    };
    let took = committed.elapsed();
    eprintln!("bob refused on hostb {took:?} after the booking's answer on hosta");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // The message names alice, exactly as a plain host's does.
    let held = b.state();
    assert_eq!(held.reservations.len(), 1, "{held:?}");
    let r = &held.reservations[0];
    // `--for 1h` is read as start = the CLI's now, end = start + 1 h; a
    // start the server finds a second in its past becomes its now
    // (policy::START_SLACK) and the end stays.
    assert_eq!(r.owner, "alice");
    assert!((3599..=3600).contains(&(r.end - r.start)), "{r:?}");
    let at = now();
    assert_eq!(
        refused.stderr,
        format!(
            "hosthog: this host is reserved exclusively by alice until {} for \"paper\".\n\
             bob is not on that reservation, so this login is refused.\n\
             To get in, ask alice to run: hosthog share {} bob\n\
             If it is urgent and alice cannot be reached, ask an admin of this host.\n\
             pamtester: Permission denied\n",
            libhosthog::format_instant(r.end, at, &TimeZone::UTC),
            r.id.short()
        )
    );
    // alice herself gets in on B; bob is admitted on C, which is not booked.
    let run = login(&sandbox, &on_b, "alice");
    assert_eq!(run.code, Some(0), "{run:#?}");
    let run = login(&sandbox, &on_c, "bob");
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.stdout, "pamtester: account management done.\n");
    assert!(c.owners().is_empty());
    // A holds the same booking; every table is the server's window.
    let started = Instant::now();
    for (host, bundle) in hosts.iter().zip(&bundles) {
        loop {
            match table_matches(host, &server.window(bundle), now()) {
                Ok(()) => break,
                Err(e) => assert!(started.elapsed() < Duration::from_secs(5), "{e}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(a.state().reservations, held.reservations);
}
