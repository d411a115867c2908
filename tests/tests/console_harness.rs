//! Proves the console harness: shadow's `/bin/login` on a pty in the mount namespace, PAM
//! service `login`, with placeholder stacks from stock modules.
//!
//! login shows account-phase text through its conversation function (`misc_conv`, on the
//! terminal), then `pam_strerror` of the account result on a line of its own and exits 1.
//! With pam_deny that is "Authentication failure" (PAM_AUTH_ERR); the hosthog module
//! returns PAM_PERM_DENIED, "Permission denied". On success login shows the account text,
//! then the session text, then starts the shell.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::TestHost;
use hosthog_tests::pam_stacks::{admitting_with_account_text, refusing};

const REFUSAL: &str = "HOSTHOG-TEST refused: carol holds this host exclusively until 18:00";
const SESSION: &str = "HOSTHOG-TEST session summary: 1 reservation";
const ACCOUNT_INFO: &str = "HOSTHOG-TEST account info";

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn console_login_shows_refusal_message() {
    let host = TestHost::builder()
        .pam_service("login", &refusing(REFUSAL, SESSION))
        .build();
    let mut console = host.console_login("alice", "alice-pw");
    assert_eq!(console.wait_exit(), Some(1));
    assert_eq!(
        console.transcript(),
        format!(
            "{} login: alice\r\nPassword: \r\n{REFUSAL}\r\n\r\nAuthentication failure\r\n",
            hostname()
        )
    );
}

#[test]
fn console_login_admits_and_runs_shell() {
    let host = TestHost::builder()
        .pam_service("login", &admitting_with_account_text(ACCOUNT_INFO, SESSION))
        .build();
    let mut console = host.console_login("bob", "bob-pw");
    console.expect(&format!("\r\n{ACCOUNT_INFO}\r\n{SESSION}\r\n"));
    console.send_line("echo MARK-$((6*7)); id -un; exit");
    console.expect("\r\nMARK-42\r\nbob\r\n");
    assert_eq!(console.wait_exit(), Some(0), "{}", console.transcript());
    assert!(console.transcript().ends_with("\r\nlogout\r\n"));
}

#[test]
fn console_wrong_password_prompts_again() {
    let host = TestHost::builder()
        .pam_service("login", &refusing(REFUSAL, SESSION))
        .build();
    let console = host.console_login("alice", "wrong");
    let text = console.expect("Login incorrect");
    assert!(!text.contains(REFUSAL), "{text}");
    console.expect("login: alice\r\nPassword: \r\n\r\nLogin incorrect\r\n");
    // Dropping the console stops login, which is waiting for the next user name.
}
