//! The fake `/etc` is visible only inside the mount namespace; the host's files never
//! change.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::MetadataExt;

use hosthog_tests::pam_stacks::{admitting, refusing};
use hosthog_tests::{Auth, TestHost};

const REFUSAL: &str = "HOSTHOG-TEST refused: carol holds this host exclusively until 18:00";
const SESSION: &str = "HOSTHOG-TEST session summary: 1 reservation";

/// Host files the harness shadows with bind mounts.
const WATCHED: [&str; 6] = [
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/pam.d/sshd",
    "/etc/pam.d/login",
    "/etc/pam.d/other",
];

/// SHA-256 (via coreutils' sha256sum), inode and mtime of every watched file.
fn fingerprint() -> Vec<(String, String, u64, i64, i64)> {
    WATCHED
        .iter()
        .map(|path| {
            let out = hosthog_tests::process::run(
                std::process::Command::new("/usr/bin/sha256sum").arg(path),
                None,
                std::time::Duration::from_secs(10),
            );
            out.assert_success("sha256sum");
            let meta = fs::metadata(path).unwrap();
            (
                (*path).to_owned(),
                out.stdout,
                meta.ino(),
                meta.mtime(),
                meta.mtime_nsec(),
            )
        })
        .collect()
}

#[test]
fn host_etc_is_unchanged_by_sshd_and_console_runs() {
    let before = fingerprint();
    let host_passwd = fs::read_to_string("/etc/passwd").unwrap();
    {
        let host = TestHost::builder()
            .pam_service("sshd", &admitting(SESSION))
            .pam_service("login", &refusing(REFUSAL, SESSION))
            .build();
        let sshd = host.start_sshd();
        let out = sshd.ssh_interactive("alice", Auth::Password("alice-pw"), "exit\n");
        assert_eq!(out.code, Some(0), "{out:?}");
        let mut console = host.console_login("bob", "bob-pw");
        assert_eq!(console.wait_exit(), Some(1));
        // While sshd runs with its mounts, the host still sees its own files.
        assert_eq!(fs::read_to_string("/etc/passwd").unwrap(), host_passwd);
        assert_eq!(fingerprint(), before);
    }
    assert_eq!(fingerprint(), before);
}

#[test]
fn namespace_sees_fake_accounts_and_pam_stacks() {
    let stack = admitting(SESSION);
    let host = TestHost::builder().pam_service("sshd", &stack).build();
    let fake_passwd = fs::read_to_string(host.dir().join("etc/passwd")).unwrap();

    let out = host.run_in_namespace("/bin/cat", &["/etc/passwd"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), fake_passwd.as_str())
    );
    let out = host.run_in_namespace("/bin/cat", &["/etc/pam.d/sshd"]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), stack.as_str()));

    let out = host.run_in_namespace("/usr/bin/getent", &["passwd", "alice"]);
    assert_eq!(
        out.stdout,
        format!(
            "alice:x:2001:2001:alice (hosthog test):{}:/bin/bash\n",
            host.user("alice").home.display()
        )
    );
    assert!(
        !fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("hosthog test"),
        "the host's passwd must not see the test accounts"
    );

    // sshd's sessions see the same files.
    let sshd = host.start_sshd();
    let out = sshd.ssh_publickey("carol", "cat /etc/pam.d/sshd; id");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{stack}uid=2003(carol) gid=2003(carol) groups=2003(carol)\n")
    );
}

#[test]
fn supplementary_groups_and_extra_users() {
    let host = TestHost::builder()
        .user("dave", 2004, "dave-pw")
        .group("hosthog-admins", 3000, &["alice", "dave"])
        .pam_service("sshd", &admitting(SESSION))
        .build();
    let sshd = host.start_sshd();
    let out = sshd.ssh_password("dave", "dave-pw", "id");
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            Some(0),
            "uid=2004(dave) gid=2004(dave) groups=2004(dave),3000(hosthog-admins)\n"
        ),
        "{out:?}"
    );
}

#[test]
fn pamtester_runs_the_account_stack_in_the_namespace() {
    let host = TestHost::builder()
        .pam_service("sshd", &refusing(REFUSAL, SESSION))
        .build();
    let out = host.pamtester("sshd", "alice", &["acct_mgmt"], None);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains(REFUSAL), "{out:?}");

    host.set_pam_service("sshd", &admitting(SESSION));
    let out = host.pamtester(
        "sshd",
        "alice",
        &["authenticate", "acct_mgmt"],
        Some("alice-pw\n"),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
}
