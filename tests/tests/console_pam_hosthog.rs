//! The real pam_hosthog module at the console: shadow's `/bin/login` on a pty in the test
//! host's mount namespace, PAM service `login` (issue 3, acceptance 3).
//!
//! login shows the module's account-phase PAM_ERROR_MSG through its conversation function
//! (on the terminal), then `pam_strerror` of the result on a line of its own ("Permission
//! denied" for PAM_PERM_DENIED) and exits 1 without starting a shell (see
//! `console_harness.rs`). On success it shows the session summary, then starts the shell.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::pam_stacks::hosthog_stack;
use hosthog_tests::table::{assert_one_of, bracket, module_time_zone, now, reservation};
use hosthog_tests::{TestHost, pam_module_path};
use libhosthog::{Mode, Reservation, format_instant};

const PAPER: &str = "paper benchmarks";
const ALICE_ID: u64 = 0x5eed_a11c_0000_0001;

/// alice holds the host exclusively, with carol on the reservation, from an hour ago for
/// another two hours.
fn alice_exclusive(now: i64) -> Reservation {
    reservation(
        ALICE_ID,
        "alice",
        &["carol"],
        Mode::Exclusive,
        (now - 3600, now + 2 * 3600),
        PAPER,
    )
}

/// A host whose `login` service is [`hosthog_stack`] with the real module.
fn hosthog_host() -> TestHost {
    let host = TestHost::new();
    host.set_pam_service(
        "login",
        &hosthog_stack(&pam_module_path(), &host.table_path()),
    );
    host
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// The console shows `text`'s lines as the terminal shows them (`\r\n` line ends).
fn on_terminal(text: &str) -> String {
    text.replace('\n', "\r\n")
}

#[test]
fn console_login_is_refused_with_the_message_and_no_shell() {
    let host = hosthog_host();
    let t = now();
    host.write_table(&[alice_exclusive(t)], t);
    let (mut console, when) = bracket(|| {
        let mut console = host.console_login("bob", "bob-pw");
        assert_eq!(console.wait_exit(), Some(1), "{}", console.transcript());
        console
    });
    let expected = when.texts(|t| {
        format!(
            "{} login: bob\r\nPassword: \r\n{}\r\n\r\nPermission denied\r\n",
            hostname(),
            on_terminal(&host.refusal_message("bob", "login", t))
        )
    });
    // Everything the terminal showed, to the end: no session text, no prompt of a shell.
    assert_one_of(&console.transcript(), &expected, "console transcript");
    assert_eq!(console.wait_exit(), Some(1));
}

#[test]
fn holder_at_the_console_sees_the_summary_and_gets_a_shell() {
    let host = hosthog_host();
    let t = now();
    let alice = alice_exclusive(t);
    host.write_table(std::slice::from_ref(&alice), t);
    let tz = module_time_zone();
    let (mut console, when) = bracket(|| {
        host.wait_until_nobody_logged_in();
        let console = host.console_login("alice", "alice-pw");
        // The summary is the last thing login prints before the shell's prompt.
        console.expect("hosthog: nobody else is logged in.\r\n");
        console
    });
    let expected = when.texts(|now| {
        format!(
            "{} login: alice\r\nPassword: \r\n\
             hosthog: now: reserved exclusively by you with carol until {} for \"{PAPER}\".\r\n\
             hosthog: nobody else is logged in.\r\n",
            hostname(),
            format_instant(alice.end, now, &tz)
        )
    });
    let transcript = console.transcript();
    let summary_end = transcript
        .find("nobody else is logged in.\r\n")
        .map(|i| i + "nobody else is logged in.\r\n".len())
        .unwrap();
    assert_one_of(
        &transcript[..summary_end],
        &expected,
        "console up to the summary",
    );
    console.send_line("echo MARK-$((6*7)); id -un; exit");
    console.expect("\r\nMARK-42\r\nalice\r\n");
    assert_eq!(console.wait_exit(), Some(0), "{}", console.transcript());
    assert!(console.transcript().ends_with("\r\nlogout\r\n"));
}

#[test]
fn co_user_and_root_get_in_at_the_console() {
    let host = hosthog_host();
    let t = now();
    let alice = alice_exclusive(t);
    host.write_table(std::slice::from_ref(&alice), t);
    let tz = module_time_zone();
    for (user, password, holders, relation) in [
        ("carol", "carol-pw", "alice with you", "; you are on it"),
        (
            "root",
            "root-pw",
            "alice with carol",
            "; you are exempt from it",
        ),
    ] {
        let (mut console, when) = bracket(|| {
            host.wait_until_nobody_logged_in();
            let console = host.console_login(user, password);
            console.expect("hosthog: nobody else is logged in.\r\n");
            console
        });
        let expected = when.texts(|now| {
            format!(
                "hosthog: now: reserved exclusively by {holders} until {} for \"{PAPER}\"{relation}.\r\n\
                 hosthog: nobody else is logged in.\r\n",
                format_instant(alice.end, now, &tz)
            )
        });
        let transcript = console.transcript();
        assert!(
            expected.iter().any(|e| transcript.contains(e.as_str())),
            "{user}: {transcript:?} shows none of {expected:#?}"
        );
        console.send_line("id -un; exit");
        console.expect(&format!("\r\n{user}\r\n"));
        assert_eq!(console.wait_exit(), Some(0), "{}", console.transcript());
    }
}

#[test]
fn without_a_reservation_bob_gets_in_at_the_console() {
    let host = hosthog_host();
    host.remove_table();
    let mut console = host.console_login("bob", "bob-pw");
    console.expect(&format!(
        "{} login: bob\r\nPassword: \r\nhosthog: no reservation now.\r\n\
         hosthog: nobody else is logged in.\r\n",
        hostname()
    ));
    console.send_line("id -un; exit");
    console.expect("\r\nbob\r\n");
    assert_eq!(console.wait_exit(), Some(0), "{}", console.transcript());
}
