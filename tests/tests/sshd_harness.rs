//! Proves the sshd harness with placeholder PAM stacks (stock modules only), and pins down
//! where OpenSSH 9.2 shows account-phase PAM text.
//!
//! What OpenSSH does with text a PAM module sends in the **account** phase (`pam_acct_mgmt`;
//! PAM_ERROR_MSG and PAM_TEXT_INFO alike, each message followed by `\n`):
//!
//! - **publickey** and **password**: sshd collects the text (`loginmsg`), and after
//!   `pam_acct_mgmt` sends it as an `SSH2_MSG_USERAUTH_BANNER` (`userauth_finish`). The
//!   client prints banners on stderr. On refusal sshd then logs "Access denied for user U by
//!   PAM account configuration [preauth]" and drops the connection: the client adds
//!   "Connection closed by 127.0.0.1 port P" and exits 255. So pam_echo in the account
//!   phase *is* shown for publickey logins.
//! - **keyboard-interactive**: PAM runs in sshd's PAM thread (auth and account together);
//!   the text arrives as the *instruction* of a second `SSH2_MSG_USERAUTH_INFO_REQUEST`
//!   with zero prompts. The client prints it on stderr (followed by an empty line), gets
//!   `USERAUTH_FAILURE`, says "U@127.0.0.1: Permission denied (...)." and exits 255 once no
//!   method is left. sshd logs "Failed keyboard-interactive/pam for U".
//! - On success the same account text is shown too: as the banner on stderr, and, for an
//!   interactive login shell on a pty, a second time on the pty (sshd prints its `loginmsg`
//!   after opening the session, followed by the session-phase text).
//! - Session-phase text is shown only for a login shell on a pty: not with a remote
//!   command (`ssh -tt host cmd`), not without a pty.
//! - Clients running with `-q` (or `LogLevel` below INFO) print neither banners nor the
//!   keyboard-interactive instruction.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use hosthog_tests::pam_stacks::{admitting, admitting_with_account_text, refusing};
use hosthog_tests::process::{ProcessGuard, descendants, run, wait_until};
use hosthog_tests::{Auth, Sshd, TestHost};

const REFUSAL: &str = "HOSTHOG-TEST refused: carol holds this host exclusively until 18:00";
const SESSION: &str = "HOSTHOG-TEST session summary: 1 reservation";
const ACCOUNT_INFO: &str = "HOSTHOG-TEST account info";
/// Typed into interactive shells; the shell prints `MARK-42`, which the echo of the typed
/// line does not contain.
const INPUT: &str = "echo MARK-$((6*7)); exit\n";
const MARK: &str = "MARK-42";

/// The lines of a pty transcript (the input is typed after the prompt shows).
fn pty_lines(text: &str) -> Vec<&str> {
    text.split("\r\n").collect()
}

fn all_methods(password: &str) -> [Auth<'_>; 3] {
    [
        Auth::PublicKey,
        Auth::Password(password),
        Auth::KbdInteractive(password),
    ]
}

/// Exactly what the client prints on stderr when the account phase refuses.
fn refused_stderr(sshd: &Sshd<'_>, user: &str, auth: Auth<'_>) -> String {
    match auth {
        Auth::PublicKey | Auth::Password(_) => format!(
            "{REFUSAL}\nConnection closed by 127.0.0.1 port {}\r\n",
            sshd.port()
        ),
        Auth::KbdInteractive(_) => format!(
            "{REFUSAL}\n\r\n{user}@127.0.0.1: Permission denied \
             (publickey,password,keyboard-interactive).\r\n"
        ),
    }
}

#[test]
fn refused_user_sees_account_message_for_every_method() {
    let host = TestHost::builder()
        .pam_service("sshd", &refusing(REFUSAL, SESSION))
        .build();
    let sshd = host.start_sshd();
    for tty in [false, true] {
        for auth in all_methods("alice-pw") {
            let out = sshd.ssh("alice", auth, tty, "echo should-not-run");
            let what = format!("{auth:?}, tty {tty}: {out:?}");
            assert_eq!(out.code, Some(255), "{what}");
            assert_eq!(out.stdout, "", "{what}");
            assert_eq!(out.stderr, refused_stderr(&sshd, "alice", auth), "{what}");
        }
    }
    let log = sshd.log();
    let denied = "Access denied for user alice by PAM account configuration [preauth]";
    // publickey and password, with and without a pty.
    assert_eq!(log.matches(denied).count(), 4, "{log}");
    assert_eq!(
        log.matches("Failed keyboard-interactive/pam for alice from 127.0.0.1")
            .count(),
        2,
        "{log}"
    );
    // The monitor logs the refused login as a *failed* authentication, although the key
    // or password was right (pam_acct_mgmt runs inside the monitor's auth step).
    assert_eq!(
        log.matches("Failed publickey for alice").count(),
        2,
        "{log}"
    );
    assert_eq!(log.matches("Failed password for alice").count(), 2, "{log}");
    for success in [
        "Accepted publickey",
        "Accepted password",
        "Starting session",
    ] {
        assert!(!log.contains(success), "nobody may log in:\n{log}");
    }
}

#[test]
fn wrong_password_is_not_an_account_refusal() {
    let host = TestHost::builder()
        .pam_service("sshd", &refusing(REFUSAL, SESSION))
        .build();
    let sshd = host.start_sshd();
    for auth in [Auth::Password("wrong"), Auth::KbdInteractive("wrong")] {
        let out = sshd.ssh("alice", auth, false, "true");
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (
                Some(255),
                "",
                "alice@127.0.0.1: Permission denied (publickey,password,keyboard-interactive).\r\n"
            ),
            "{auth:?}"
        );
    }
    assert!(!sshd.log().contains("PAM account configuration"));
}

#[test]
fn quiet_client_does_not_show_account_message() {
    let host = TestHost::builder()
        .pam_service("sshd", &refusing(REFUSAL, SESSION))
        .build();
    let sshd = host.start_sshd();
    for auth in all_methods("alice-pw") {
        let (mut cmd, password) = sshd.client_command("alice", auth, false);
        cmd.args(["-q", "--", "true"]);
        if let Some(password) = password {
            cmd.env("SSHPASS", password);
        }
        let out = run(&mut cmd, None, Duration::from_secs(30));
        assert_eq!(out.code, Some(255), "{auth:?}: {out:?}");
        assert_eq!(out.stderr, "", "{auth:?}: {out:?}");
    }
}

#[test]
fn admitted_user_with_pty_sees_session_text_and_command_output() {
    let host = TestHost::builder()
        .pam_service("sshd", &admitting(SESSION))
        .build();
    let sshd = host.start_sshd();
    for auth in all_methods("bob-pw") {
        let out = sshd.ssh_interactive("bob", auth, INPUT);
        let what = format!("{auth:?}: {out:?}");
        assert_eq!(out.code, Some(0), "{what}");
        assert_eq!(out.stderr, "Connection to 127.0.0.1 closed.\r\n", "{what}");
        let lines = pty_lines(&out.stdout);
        let session = lines.iter().position(|l| *l == SESSION);
        let mark = lines.iter().position(|l| *l == MARK);
        assert!(
            session.is_some() && mark.is_some() && session < mark,
            "session text, then command output: {what}"
        );
        assert!(out.stdout.ends_with("\r\nlogout\r\n"), "{what}");
    }
}

#[test]
fn admitted_command_output_is_exact_and_session_text_is_not_shown() {
    let host = TestHost::builder()
        .pam_service("sshd", &admitting(SESSION))
        .build();
    let sshd = host.start_sshd();
    for auth in all_methods("bob-pw") {
        let out = sshd.ssh("bob", auth, false, "echo MARK-$((6*7)); id -un");
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (Some(0), "MARK-42\nbob\n", ""),
            "{auth:?}"
        );
        // With a pty but a command: still no session text (sshd's check_quietlogin).
        let out = sshd.ssh_tty("bob", auth, "echo MARK-$((6*7))");
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (
                Some(0),
                "MARK-42\r\n",
                "Connection to 127.0.0.1 closed.\r\n"
            ),
            "{auth:?}"
        );
    }
}

#[test]
fn account_text_is_shown_on_success_too_and_twice_for_a_login_shell() {
    let host = TestHost::builder()
        .pam_service("sshd", &admitting_with_account_text(ACCOUNT_INFO, SESSION))
        .build();
    let sshd = host.start_sshd();
    for auth in all_methods("carol-pw") {
        let out = sshd.ssh("carol", auth, false, "echo MARK-$((6*7))");
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (Some(0), "MARK-42\n", format!("{ACCOUNT_INFO}\n").as_str()),
            "{auth:?}"
        );

        let out = sshd.ssh_interactive("carol", auth, INPUT);
        assert_eq!(out.code, Some(0), "{auth:?}: {out:?}");
        assert_eq!(
            out.stderr,
            format!("{ACCOUNT_INFO}\nConnection to 127.0.0.1 closed.\r\n"),
            "{auth:?}"
        );
        let lines = pty_lines(&out.stdout);
        let account = lines.iter().position(|l| *l == ACCOUNT_INFO);
        let session = lines.iter().position(|l| *l == SESSION);
        let mark = lines.iter().position(|l| *l == MARK);
        assert!(
            account.is_some() && account < session && session < mark,
            "account text again on the pty, then the session text: {auth:?}: {out:?}"
        );
    }
}

#[test]
fn root_logs_in_with_key() {
    let host = TestHost::builder()
        .pam_service("sshd", &admitting(SESSION))
        .build();
    let sshd = host.start_sshd();
    let out = sshd.ssh_publickey("root", "id -u; echo $HOME");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("0\n{}\n", host.user("root").home.display())
    );
    // The same host refuses when the stack says so: the key alone does not decide.
    host.set_pam_service("sshd", &refusing(REFUSAL, SESSION));
    let out = sshd.ssh_publickey("root", "true");
    assert_eq!(out.code, Some(255), "{out:?}");
    assert_eq!(out.stderr, refused_stderr(&sshd, "root", Auth::PublicKey));
}

#[test]
fn per_test_sshd_config_authentication_methods() {
    let host = TestHost::builder()
        .pam_service("sshd", &admitting(SESSION))
        .build();
    let config = hosthog_tests::SshdConfig::default()
        .set("AuthenticationMethods", "publickey")
        .set("LogLevel", "DEBUG");
    let sshd = host.start_sshd_with(&config);
    let out = sshd.ssh_password("alice", "alice-pw", "true");
    assert_eq!(out.code, Some(255), "{out:?}");
    assert_eq!(
        out.stderr,
        "alice@127.0.0.1: Permission denied (publickey).\r\n"
    );
    let out = sshd.ssh_publickey("alice", "echo ok");
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "ok\n"),
        "{out:?}"
    );
    assert!(sshd.log().contains("debug1:"), "LogLevel DEBUG applied");
}

/// The pid held is sshd's own; stopping it also stops its per-connection children and
/// the users' processes.
#[test]
fn sshd_and_its_connections_are_stopped_by_pid() {
    let host = TestHost::builder()
        .pam_service("sshd", &admitting(SESSION))
        .build();
    let sshd = host.start_sshd();
    let pid = sshd.pid();
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        Path::new("/usr/sbin/sshd")
    );
    assert_eq!(
        fs::read_to_string(sshd.dir().join("sshd.pid"))
            .unwrap()
            .trim(),
        pid.to_string(),
        "sshd's own pid file names the pid we hold"
    );

    // A session that would outlive the test if nobody stopped it.
    let (mut cmd, _) = sshd.client_command("alice", Auth::PublicKey, false);
    cmd.args(["--", "exec sleep 300"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut client = ProcessGuard::new(cmd.spawn().unwrap(), "ssh client");
    assert!(
        wait_until(Duration::from_secs(10), || {
            descendants(pid)
                .iter()
                .any(|p| comm(*p).as_deref() == Some("sleep"))
        }),
        "the remote sleep did not start; log:\n{}",
        sshd.log()
    );
    let tree = descendants(pid);
    assert!(
        tree.len() >= 3,
        "connection child, user child, sleep: {tree:?}"
    );

    sshd.stop();
    assert!(gone(pid), "sshd {pid} still running");
    for p in &tree {
        assert!(gone(*p), "sshd descendant {p} still running");
    }
    // The client notices the connection is gone.
    assert!(
        client.wait_timeout(Duration::from_secs(10)).is_some(),
        "ssh client still connected"
    );
}

fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Exited (or a zombie nobody has reaped yet).
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z')),
    }
}
