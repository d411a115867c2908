//! The Debian profile, pam.d/pam-configs/hosthog, through the real
//! pam-auth-update, on a scratch copy of /etc/pam.d/common-*,
//! /usr/share/pam-configs and /var/lib/pam (pam-auth-update --root), with a
//! private copy of the debconf database bound over /var/cache/debconf, so
//! nothing of the host changes. Then the generated common-account is used
//! through libpam to prove that a refusal really refuses: the trap is a
//! "[success=end default=ignore]" control, which turns PAM_PERM_DENIED into
//! silence.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::pamtester as harness;

use std::path::Path;
use std::process::Command;

use harness::{Sandbox, now};
use libhosthog::{Mode, Reservation, ReservationId, State};

const PROFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../pam.d/pam-configs/hosthog");

fn copy_dir(from: &Path, to: &Path, only: impl Fn(&str) -> bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_file() && only(&name) {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// Runs `pam-auth-update --root <root> --enable hosthog` on copies of the
/// host's files and returns the generated common-account and common-session.
fn generate(scratch: &Path) -> (String, String, String) {
    let root = scratch.join("root");
    copy_dir(Path::new("/etc/pam.d"), &root.join("etc/pam.d"), |n| {
        n.starts_with("common-")
    });
    copy_dir(
        Path::new("/usr/share/pam-configs"),
        &root.join("usr/share/pam-configs"),
        |_| true,
    );
    copy_dir(Path::new("/var/lib/pam"), &root.join("var/lib/pam"), |_| {
        true
    });
    std::fs::copy(PROFILE, root.join("usr/share/pam-configs/hosthog")).unwrap();
    let debconf = scratch.join("debconf");
    copy_dir(Path::new("/var/cache/debconf"), &debconf, |_| true);

    let out = Command::new("bwrap")
        .args(["--bind", "/", "/", "--dev", "/dev", "--bind"])
        .arg(&debconf)
        .args([
            "/var/cache/debconf",
            "--setenv",
            "DEBIAN_FRONTEND",
            "noninteractive",
        ])
        .args(["--die-with-parent", "--", "pam-auth-update", "--root"])
        .arg(&root)
        .args(["--enable", "hosthog"])
        .output()
        .expect("run pam-auth-update (libpam-runtime) in bwrap");
    assert!(
        out.status.success(),
        "pam-auth-update failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(root.join("etc/pam.d").join(name)).unwrap();
    (
        read("common-account"),
        read("common-session"),
        read("common-session-noninteractive"),
    )
}

fn rules(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn generated_common_account_refuses_for_real() {
    let sandbox = Sandbox::new();
    let (account, session, noninteractive) = generate(sandbox.path());

    // pam_hosthog heads the Primary block as "requisite": before pam_unix,
    // whose "new_authtok_reqd=done" would end the stack and skip any later
    // line, and with no "default=ignore" that could swallow a refusal.
    let account_rules = rules(&account);
    assert_eq!(
        account_rules.first().map(String::as_str),
        Some("account requisite pam_hosthog.so"),
        "{account}"
    );
    assert!(
        account_rules
            .iter()
            .any(|r| r == "account requisite pam_deny.so"),
        "{account}"
    );
    // The jump over pam_deny still lands on pam_permit.
    assert!(
        account_rules
            .iter()
            .any(|r| r == "account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so"),
        "{account}"
    );
    // The summary is in interactive sessions only, and optional.
    assert!(
        rules(&session)
            .iter()
            .any(|r| r == "session optional pam_hosthog.so"),
        "{session}"
    );
    assert!(!noninteractive.contains("pam_hosthog"), "{noninteractive}");

    // Use the generated file as it is, except that the module is named by
    // its built path and given the sandbox's table: the controls are what
    // this test is about.
    let module = sandbox.module().display().to_string();
    let table = sandbox.table().display().to_string();
    let account = account.replace("pam_hosthog.so", &format!("{module} table={table}"));
    sandbox.service("common-account", &account);
    sandbox.service("hosthog-test", "@include common-account\n");

    let now = now();
    sandbox.write_table(&State {
        reservations: vec![Reservation {
            id: ReservationId(0xa11ce000_00000001),
            owner: "alice".into(),
            with: vec!["daemon".into()],
            start: now - 60,
            end: now + 3600,
            mode: Mode::Exclusive,
            comment: "paper benchmarks".into(),
            created: now - 60,
            updated: now - 60,
        }],
        ..State::default()
    });
    // "nobody" and "daemon" exist in /etc/passwd, so pam_unix's account
    // check passes for both; only pam_hosthog tells them apart.
    let refused = sandbox.pamtester(&["hosthog-test", "nobody", "acct_mgmt"]);
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    assert!(
        refused
            .stderr
            .starts_with("hosthog: this host is reserved exclusively by alice")
    );
    assert!(
        refused.stderr.ends_with("pamtester: Permission denied\n"),
        "{refused:#?}"
    );
    for user in ["daemon", "root"] {
        let allowed = sandbox.pamtester(&["hosthog-test", user, "acct_mgmt"]);
        assert_eq!(allowed.code, Some(0), "{user}: {allowed:#?}");
        assert_eq!(allowed.stdout, "pamtester: account management done.\n");
    }
    // With no table, the stack behaves exactly as without pam_hosthog.
    std::fs::remove_file(sandbox.table()).unwrap();
    let run = sandbox.pamtester(&["hosthog-test", "nobody", "acct_mgmt"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
}

#[test]
fn the_default_ignore_trap_is_real() {
    // The same refusal under the control Primary profiles usually get,
    // followed by a module that succeeds (pam_permit standing in for
    // pam_unix): PAM_PERM_DENIED is ignored, the user even sees the refusal
    // text, and gets in. This is why the profile says "requisite".
    let sandbox = Sandbox::new();
    let module = sandbox.module().display().to_string();
    let table = sandbox.table().display().to_string();
    sandbox.service(
        "hosthog-test",
        &format!(
            "account [success=2 default=ignore] {module} table={table}\n\
             account [success=1 default=ignore] pam_permit.so\n\
             account requisite pam_deny.so\n\
             account required pam_permit.so\n"
        ),
    );
    let now = now();
    sandbox.write_table(&State {
        reservations: vec![Reservation {
            id: ReservationId(1),
            owner: "alice".into(),
            with: vec![],
            start: now - 60,
            end: now + 3600,
            mode: Mode::Exclusive,
            comment: String::new(),
            created: now,
            updated: now,
        }],
        ..State::default()
    });
    let run = sandbox.pamtester(&["hosthog-test", "nobody", "acct_mgmt"]);
    assert!(run.stderr.contains("this login is refused"), "{run:#?}");
    assert_eq!(run.code, Some(0), "the trap swallows the refusal: {run:#?}");
}
