//! Acceptance tests with real uids: users cannot touch others'
//! reservations, admins can, identities cannot be claimed, conflicts are
//! refused naming the holder. Needs root (see common/mod.rs).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::daemon as common;

use common::{DEFAULT_CONFIG, Daemon, raw_as};

/// Not a test of its own: the raw socket client `raw_as` re-executes.
#[test]
#[ignore = "a helper the test above re-executes (with --ignored); it fails when run by hand without its environment"]
fn raw_client() {
    common::raw_client_helper();
}

fn id_of(run: &common::Run) -> String {
    run.json()["id"].as_str().unwrap()[..8].to_string()
}

#[test]
fn users_cannot_touch_others_reservations_admins_can() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let alice = d.run_as(
        "alice",
        &[
            "--json",
            "reserve",
            "--exclusive",
            "--for",
            "3h",
            "paper",
            "benchmarks",
        ],
    );
    alice.ok();
    assert_eq!(alice.json()["owner"], "alice");
    let id = id_of(&alice);

    // bob cannot release, edit, extend, share or cancel it; the table stays
    // byte-identical.
    let before = d.table_bytes();
    d.run_as("bob", &["release", &id])
        .refused("you (bob) may not release alice's reservation");
    d.run_as("bob", &["edit", &id, "--comment", "mine now"])
        .refused("you (bob) may not change alice's reservation");
    d.run_as("bob", &["extend", &id, "--for", "1h"])
        .refused("may not change");
    d.run_as("bob", &["share", &id, "bob"])
        .refused("may not share");
    d.run_as("bob", &["cancel", &id])
        .refused("only admins may cancel reservations");
    assert_eq!(d.table_bytes(), before);

    // bob's overlapping exclusive is refused, naming alice's reservation.
    d.run_as("bob", &["reserve", "--start", "1h", "--for", "1h", "mine"])
        .refused(&format!(
            "conflicts with alice's exclusive reservation {id}"
        ));
    // Even a shared one overlapping alice's exclusive.
    d.run_as("bob", &["reserve", "--shared", "--for", "1h"])
        .refused("conflicts with alice's");
    assert_eq!(d.table_bytes(), before);
    // bob may not override.
    d.run_as("bob", &["reserve", "--force", "--for", "1h"])
        .refused("only admins may use --force");

    // bob's shared reservation in a free slot works.
    let bob = d.run_as(
        "bob",
        &[
            "--json", "reserve", "--shared", "--start", "4h", "--for", "1h", "training",
        ],
    );
    bob.ok();
    assert_eq!(bob.json()["mode"], "shared");

    // bob is refused now; after `share ID bob`, check says allowed.
    let check = d.run_as("bob", &["check", "bob"]);
    assert_eq!(check.code, Some(1), "{check:?}");
    assert!(
        check.stdout.contains("bob would be refused now"),
        "{check:?}"
    );
    assert!(check.stdout.contains(&format!("hosthog share {id} bob")));
    d.run_as("alice", &["share", &id, "bob"]).ok();
    let check = d.run_as("bob", &["check", "bob"]);
    assert_eq!(check.code, Some(0), "{check:?}");
    assert!(
        check
            .stdout
            .contains("bob may log in now: bob is a co-user of alice's"),
        "{check:?}"
    );
    // As a co-user bob may now change it, like the owner.
    d.run_as("bob", &["extend", &id, "--for", "30m"]).ok();

    // carol (no rights) still may not; dave (admin group) may.
    d.run_as("carol", &["release", &id])
        .refused("may not release");
    d.run_as("dave", &["whoami"]).ok();
    assert!(d.run_as("dave", &["whoami"]).stdout.contains("admin"));
    d.run_as("dave", &["edit", &id, "--comment", "edited by admin"])
        .ok();
    // Admins may act for a user and override conflicts, audited.
    let forced = d.run_as(
        "dave",
        &[
            "--json", "reserve", "--owner", "carol", "--force", "--for", "1h", "urgent",
        ],
    );
    forced.ok();
    assert_eq!(forced.json()["owner"], "carol");
    let audit = d.audit_lines();
    let last = audit.last().unwrap();
    assert_eq!(last["user"], "dave");
    assert_eq!(last["uid"], 2004);
    assert_eq!(last["action"], "reserve");
    assert!(
        last["overridden"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().unwrap().starts_with(&id))
    );
    d.run_as("dave", &["cancel", &id]).ok();
    assert!(
        d.state()
            .reservations
            .iter()
            .all(|r| !r.id.to_string().starts_with(&id))
    );
    d.run_as("alice", &["show", &id])
        .refused("there is no reservation");

    // Exempt groups are expanded to user names in the table.
    assert!(
        d.state().exempt.contains(&"erin".to_string()),
        "{:?}",
        d.state().exempt
    );
    let check = d.run_as("alice", &["check", "erin"]);
    assert!(check.stdout.contains("exemption list"), "{check:?}");
    // Only admins change the exemption list.
    d.run_as("bob", &["exempt", "add", "bob"])
        .refused("only admins");
    d.run_as("dave", &["exempt", "add", "carol"]).ok();
    assert!(d.state().exempt.contains(&"carol".to_string()));

    // Every change is one audit line, with who (uid and name) and before/after.
    for line in d.audit_lines() {
        assert!(line["uid"].is_u64() && line["user"].is_string() && line["time"].is_i64());
        assert!(line.get("before").is_some() && line.get("after").is_some());
    }
    let mode = std::fs::metadata(d.state.join("audit.log")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o640
    );
}

#[test]
fn a_client_cannot_claim_to_be_someone_else() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    let alice = d.run_as("alice", &["--json", "reserve", "--for", "2h", "mine"]);
    alice.ok();
    let id = alice.json()["id"].as_str().unwrap().to_string();
    let before = d.table_bytes();

    // Environment variables name nobody.
    let out = std::process::Command::new(common::SETPRIV)
        .args(["--reuid=2002", "--regid=2002", "--clear-groups", "--"])
        .arg(common::hosthog_bin())
        .args(["release", &id[..8]])
        .env("HOSTHOG_SOCKET", &d.socket)
        .env("USER", "alice")
        .env("LOGNAME", "alice")
        .env("SUDO_USER", "alice")
        .env("SUDO_UID", "2001")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("you (bob) may not release"));

    // Every field a request could carry to claim an identity.
    let whoami = raw_as(&d, "bob", r#"{"version":1,"op":"whoami"}"#);
    assert!(
        whoami.contains(r#""user":"bob""#) && whoami.contains(r#""admin":false"#),
        "{whoami}"
    );
    for payload in [
        format!(r#"{{"version":1,"op":{{"release":{{"id":"{id}"}}}},"uid":2001}}"#),
        format!(r#"{{"version":1,"op":{{"release":{{"id":"{id}"}}}},"user":"alice"}}"#),
        format!(r#"{{"version":1,"op":{{"release":{{"id":"{id}","user":"alice"}}}}}}"#),
        format!(r#"{{"version":1,"op":{{"release":{{"id":"{id}","owner":"alice"}}}}}}"#),
        format!(r#"{{"version":1,"op":{{"release":{{"id":"{id}","uid":0}}}}}}"#),
        format!(r#"{{"version":1,"op":{{"cancel":{{"id":"{id}"}}}},"admin":true}}"#),
        r#"{"version":1,"op":{"reserve":{"mode":"exclusive","start":0,"end":9999999999,"owner":"alice"}}}"#.to_string(),
        r#"{"version":1,"op":{"exempt_add":{"users":["bob"]}}}"#.to_string(),
        r#"{"version":1,"op":{"notice_add":{"text":"I am root"}}}"#.to_string(),
        format!(r#"{{"version":1,"op":{{"change":{{"id":"{id}","comment":"x"}}}},"peer":{{"uid":2001}}}}"#),
    ] {
        let answer = raw_as(&d, "bob", &payload);
        assert!(answer.contains(r#""error""#), "{payload} -> {answer}");
        assert!(!answer.contains(r#""ok""#), "{payload} -> {answer}");
        assert_eq!(d.table_bytes(), before, "{payload}");
    }
    // A forced reservation over alice's, in the future so that it passes
    // every check before the force check: refused there, as bob is no admin.
    #[allow(clippy::disallowed_methods)] // tests: the clock of the test itself
    let now = jiff::Timestamp::now().as_second();
    let forced = format!(
        r#"{{"version":1,"op":{{"reserve":{{"mode":"exclusive","start":{},"end":{},"force":true}}}}}}"#,
        now + 600,
        now + 3600
    );
    let answer = raw_as(&d, "bob", &forced);
    assert!(
        answer.contains("only admins may use --force to override conflicts and limits"),
        "{forced} -> {answer}"
    );
    assert_eq!(d.table_bytes(), before, "{forced}");
    // alice's reservation is untouched and still hers.
    let state = d.state();
    assert_eq!(state.reservations.len(), 1);
    assert_eq!(state.reservations[0].owner, "alice");
    assert_eq!(d.audit_lines().len(), 1);
}

#[test]
fn root_with_state_dir_and_the_daemon_share_rules_and_table() {
    let d = Daemon::start(DEFAULT_CONFIG, 0);
    d.run_as("alice", &["reserve", "--for", "1h", "first"]).ok();
    let state_dir = d.state.to_str().unwrap().to_string();
    let config = d.config.to_str().unwrap().to_string();
    // root writes directly, bypassing the daemon, with the same rules: an
    // overlapping exclusive is refused without --force.
    d.run_as(
        "root",
        &[
            "--state-dir",
            &state_dir,
            "--config",
            &config,
            "reserve",
            "--for",
            "1h",
        ],
    )
    .refused("conflicts with alice's exclusive reservation");
    let direct = d.run_as(
        "root",
        &[
            "--state-dir",
            &state_dir,
            "--config",
            &config,
            "--json",
            "reserve",
            "--start",
            "2h",
            "--for",
            "1h",
            "maintenance",
        ],
    );
    direct.ok();
    // The daemon sees root's write (its cached state is stale) and keeps it.
    d.run_as(
        "alice",
        &["reserve", "--start", "4h", "--for", "1h", "second"],
    )
    .ok();
    let state = d.state();
    assert_eq!(state.reservations.len(), 3, "{state:?}");
    assert!(state.reservations.iter().any(|r| r.owner == "root"));
    let audit = d.audit_lines();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[1]["user"], "root");
}
