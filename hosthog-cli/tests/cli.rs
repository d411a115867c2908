//! The hosthog command without a daemon: usage errors, the "daemon gone"
//! message and completions (the man pages are xtask's). (The daemon tests are in
//! hosthogd/tests; building this test also builds the `hosthog` binary
//! they run.)

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn hosthog(args: &[&str], socket: &str) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hosthog"))
        .args(args)
        .env("HOSTHOG_SOCKET", socket)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_a_daemon_one_line_names_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let (code, stdout, stderr) = hosthog(&["list"], socket.to_str().unwrap());
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("hosthog: hosthogd is not running"),
        "{stderr}"
    );
    assert!(
        stderr.contains("systemctl start hosthogd.socket"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("hosthogd --socket {}", socket.display())));
}

#[test]
fn usage_errors_are_one_line_and_time_errors_come_before_the_daemon() {
    for (args, needle) in [
        (
            &["reserve", "--for", "1h", "--until", "18:00"][..],
            "cannot be used with",
        ),
        (
            &["reserve", "--for", "18:00"][..],
            "\"18:00\" is not a duration",
        ),
        (&["frobnicate"][..], "unrecognized subcommand"),
    ] {
        let (code, _, stderr) = hosthog(args, "/nonexistent/sock");
        assert_eq!(code, Some(2), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("hosthog: ") && stderr.contains(needle),
            "{stderr}"
        );
    }
    let (code, stdout, _) = hosthog(&["--help"], "/nonexistent/sock");
    assert_eq!(code, Some(0));
    assert!(stdout.contains("reserve"));
}

#[test]
fn completions() {
    let (code, stdout, _) = hosthog(&["completions", "bash"], "/x");
    assert_eq!(code, Some(0));
    assert!(stdout.contains("_hosthog()"));
}

#[test]
fn a_missing_argument_is_named_with_the_usage() {
    for (args, expect) in [
        (
            &["release"][..],
            "hosthog: release needs a reservation id (see hosthog list); usage: hosthog release <ID>\n",
        ),
        (
            &["show"][..],
            "hosthog: show needs a reservation id (see hosthog list); usage: hosthog show <ID>\n",
        ),
        (
            &["extend", "1234abcd"][..],
            "hosthog: extend needs --for DURATION or --until WHEN; usage: hosthog extend --for <DURATION> <ID>\n",
        ),
        (
            &["reserve", "x"][..],
            "hosthog: reserve needs --for DURATION or --until WHEN; usage: hosthog reserve --for <DURATION> <COMMENT>...\n",
        ),
        (
            &["share", "1234abcd"][..],
            "hosthog: share needs at least one user name; usage: hosthog share <ID> <USER>...\n",
        ),
        (
            &["notice", "remove"][..],
            "hosthog: notice remove needs a notice id (see hosthog notice list); usage: hosthog notice remove <ID>\n",
        ),
        (
            &["completions", "tcsh"][..],
            "hosthog: invalid value 'tcsh' for '<SHELL>'; valid values: bash, elvish, fish, powershell, zsh\n",
        ),
    ] {
        let (code, stdout, stderr) = hosthog(args, "/nonexistent/sock");
        assert_eq!(code, Some(2), "{args:?}");
        assert_eq!(stdout, "", "{args:?}");
        assert_eq!(stderr, expect, "{args:?}");
    }
}
