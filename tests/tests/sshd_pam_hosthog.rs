//! The real pam_hosthog module through a real OpenSSH sshd (issue 3, acceptance 2).
//!
//! sshd runs on 127.0.0.1 in the test host's mount namespace with a private
//! `/etc/pam.d/sshd` that places the module built by this `cargo test`
//! (`target/<profile>/deps/libpam_hosthog.so`) the way an admin would: `account required`
//! after pam_unix, `session optional`. The table is written with libhosthog's Store.
//!
//! What OpenSSH does with the module's text is pinned down by `sshd_harness.rs`: the
//! account-phase PAM_ERROR_MSG reaches the client's stderr as a banner (publickey,
//! password) or as a keyboard-interactive instruction, and the session-phase
//! PAM_TEXT_INFO (the summary) reaches the pty of an interactive login shell.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::pam_stacks::{
    debian_common_account_primary_first, hosthog_line, hosthog_stack, including_common_account,
};
use hosthog_tests::table::{Bracket, assert_one_of, bracket, module_time_zone, now, reservation};
use hosthog_tests::{Auth, SshOutput, Sshd, TestHost, pam_module_path};
use libhosthog::{Mode, Reservation, format_instant};

const PAPER: &str = "paper benchmarks";
/// alice's exclusive reservation; the refusal names its short id in the `hosthog share`
/// command the refused user should ask alice to run.
const ALICE_ID: u64 = 0x5eed_a11c_0000_0001;
const ALICE_SHORT_ID: &str = "5eeda11c";
/// Typed into interactive shells; the shell prints `MARK-42`, which the echo of the typed
/// line does not contain.
const INPUT: &str = "echo MARK-$((6*7)); exit\n";
const MARK: &str = "MARK-42";
/// What the client prints on stderr after an interactive session that showed no
/// account-phase text.
const CLOSED: &str = "Connection to 127.0.0.1 closed.\r\n";

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

/// A host whose `sshd` service is [`hosthog_stack`] with the real module.
fn hosthog_host() -> TestHost {
    let host = TestHost::new();
    host.set_pam_service(
        "sshd",
        &hosthog_stack(&pam_module_path(), &host.table_path()),
    );
    host
}

fn all_methods(password: &str) -> [Auth<'_>; 3] {
    [
        Auth::PublicKey,
        Auth::Password(password),
        Auth::KbdInteractive(password),
    ]
}

fn password(user: &str) -> String {
    format!("{user}-pw")
}

/// Exactly what the client prints on stderr when the account phase refuses `user` with
/// `message` (see sshd_harness.rs).
fn refused_stderr(sshd: &Sshd<'_>, user: &str, auth: Auth<'_>, message: &str) -> String {
    match auth {
        Auth::PublicKey | Auth::Password(_) => format!(
            "{message}\nConnection closed by 127.0.0.1 port {}\r\n",
            sshd.port()
        ),
        Auth::KbdInteractive(_) => format!(
            "{message}\n\r\n{user}@127.0.0.1: Permission denied \
             (publickey,password,keyboard-interactive).\r\n"
        ),
    }
}

/// `user` logs in with every method, with and without a pty, and is refused each time
/// with exactly the module's message; nothing runs. Returns the number of attempts.
fn assert_refused_every_way(host: &TestHost, sshd: &Sshd<'_>, user: &str) -> usize {
    let pw = password(user);
    let mut attempts = 0;
    for tty in [false, true] {
        for auth in all_methods(&pw) {
            let (out, when) = bracket(|| sshd.ssh(user, auth, tty, "echo should-not-run"));
            let what = format!("{user} by {auth:?}, tty {tty}: {out:?}");
            assert_eq!(out.code, Some(255), "{what}");
            assert_eq!(out.stdout, "", "{what}");
            let expected = when.texts(|t| {
                refused_stderr(sshd, user, auth, &host.refusal_message(user, "sshd", t))
            });
            assert_one_of(&out.stderr, &expected, &what);
            attempts += 1;
        }
    }
    attempts
}

/// The sshd log shows `attempts` refusals of `user` by the PAM account phase (half of
/// them keyboard-interactive) and no login at all.
fn assert_log_shows_refusals(sshd: &Sshd<'_>, user: &str, attempts: usize) {
    let log = sshd.log();
    let denied = format!("Access denied for user {user} by PAM account configuration [preauth]");
    // publickey and password.
    assert_eq!(log.matches(&denied).count(), attempts * 2 / 3, "{log}");
    // keyboard-interactive: PAM's account phase runs inside the PAM conversation.
    let kbdint = format!("Failed keyboard-interactive/pam for {user} from 127.0.0.1");
    assert_eq!(log.matches(&kbdint).count(), attempts / 3, "{log}");
    for success in [
        "Accepted publickey",
        "Accepted password",
        "Accepted keyboard-interactive",
        "Starting session",
    ] {
        assert!(!log.contains(success), "nobody may log in:\n{log}");
    }
}

/// `user` runs a command by every method and gets in: exact output, nothing on stderr
/// (the module sends no account-phase text when it lets someone in).
fn assert_admitted_every_way(sshd: &Sshd<'_>, user: &str) {
    let pw = password(user);
    for auth in all_methods(&pw) {
        let out = sshd.ssh(user, auth, false, "id -un; echo MARK-$((6*7))");
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (Some(0), format!("{user}\n{MARK}\n").as_str(), ""),
            "{user} by {auth:?}"
        );
    }
}

/// The lines of a pty transcript.
fn pty_lines(text: &str) -> Vec<&str> {
    text.split("\r\n").collect()
}

/// An interactive login of `user` (a login shell on a pty): it gets in, shows exactly
/// the summary `summary(now)` (one text per line, in order, and no other hosthog line),
/// then the command output.
fn assert_interactive_summary(
    host: &TestHost,
    sshd: &Sshd<'_>,
    user: &str,
    auth: Auth<'_>,
    summary: impl Fn(i64) -> Vec<String>,
) -> SshOutput {
    host.wait_until_nobody_logged_in();
    let (out, when): (SshOutput, Bracket) = bracket(|| sshd.ssh_interactive(user, auth, INPUT));
    let what = format!("{user} by {auth:?}: {out:?}");
    assert_eq!(out.code, Some(0), "{what}");
    assert_eq!(out.stderr, CLOSED, "{what}");
    let lines = pty_lines(&out.stdout);
    let shown: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("hosthog:"))
        .map(|l| (*l).to_owned())
        .collect();
    assert_one_of(
        &shown.join("\n"),
        &when.texts(|t| summary(t).join("\n")),
        &what,
    );
    // The summary comes before the shell's prompt, and the command's output after it.
    let last_summary = lines.iter().rposition(|l| l.starts_with("hosthog:"));
    let typed = [
        format!("$ {}", INPUT.trim_end()),
        format!("# {}", INPUT.trim_end()),
    ];
    let prompt = lines
        .iter()
        .position(|l| typed.iter().any(|t| l.ends_with(t.as_str())));
    let mark = lines.iter().position(|l| *l == MARK);
    assert!(
        last_summary.is_some() && prompt.is_some() && mark.is_some(),
        "summary, prompt and command output: {what}"
    );
    assert!(
        last_summary < prompt && prompt < mark,
        "summary, then the prompt, then command output: {what}"
    );
    assert!(out.stdout.ends_with("\r\nlogout\r\n"), "{what}");
    out
}

/// The module's message, spelled out once: who holds the host, until when, why, and what
/// to do.
#[test]
fn refusal_message_names_holder_end_comment_and_remedy() {
    let host = hosthog_host();
    let t = now();
    host.write_table(&[alice_exclusive(t)], t);
    let until = format_instant(t + 2 * 3600, t, &module_time_zone());
    assert_eq!(
        host.refusal_message("bob", "sshd", t),
        format!(
            "hosthog: this host is reserved exclusively by alice until {until} for \"{PAPER}\".\n\
             bob is not on that reservation, so this login is refused.\n\
             To get in, ask alice to run: hosthog share {ALICE_SHORT_ID} bob\n\
             If it is urgent and alice cannot be reached, ask an admin of this host."
        )
    );
}

#[test]
fn other_user_is_refused_with_the_message_by_every_method() {
    let host = hosthog_host();
    let t = now();
    host.write_table(&[alice_exclusive(t)], t);
    let sshd = host.start_sshd();
    let attempts = assert_refused_every_way(&host, &sshd, "bob");
    assert_eq!(attempts, 6);
    assert_log_shows_refusals(&sshd, "bob", attempts);
}

#[test]
fn holder_gets_in_and_sees_the_session_summary() {
    let host = hosthog_host();
    let t = now();
    let alice = alice_exclusive(t);
    host.write_table(std::slice::from_ref(&alice), t);
    let sshd = host.start_sshd();
    let tz = module_time_zone();
    for auth in all_methods("alice-pw") {
        assert_interactive_summary(&host, &sshd, "alice", auth, |now| {
            vec![
                format!(
                    "hosthog: now: reserved exclusively by you with carol until {} for \"{PAPER}\".",
                    format_instant(alice.end, now, &tz)
                ),
                "hosthog: nobody else is logged in.".to_owned(),
            ]
        });
    }
    assert_admitted_every_way(&sshd, "alice");
}

#[test]
fn co_user_gets_in_and_sees_she_is_on_the_reservation() {
    let host = hosthog_host();
    let t = now();
    let alice = alice_exclusive(t);
    host.write_table(std::slice::from_ref(&alice), t);
    let sshd = host.start_sshd();
    let tz = module_time_zone();
    assert_admitted_every_way(&sshd, "carol");
    assert_interactive_summary(&host, &sshd, "carol", Auth::PublicKey, |now| {
        vec![
            format!(
                "hosthog: now: reserved exclusively by alice with you until {} for \"{PAPER}\"; \
                 you are on it.",
                format_instant(alice.end, now, &tz)
            ),
            "hosthog: nobody else is logged in.".to_owned(),
        ]
    });
}

#[test]
fn root_gets_in_by_key_during_an_exclusive_reservation() {
    let host = hosthog_host();
    let t = now();
    let alice = alice_exclusive(t);
    host.write_table(std::slice::from_ref(&alice), t);
    let sshd = host.start_sshd();
    let out = sshd.ssh_publickey("root", "id -u; echo $HOME");
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            Some(0),
            format!("0\n{}\n", host.user("root").home.display()).as_str(),
            ""
        ),
        "{out:?}"
    );
    let tz = module_time_zone();
    assert_interactive_summary(&host, &sshd, "root", Auth::PublicKey, |now| {
        vec![
            format!(
                "hosthog: now: reserved exclusively by alice with carol until {} for \"{PAPER}\"; \
                 you are exempt from it.",
                format_instant(alice.end, now, &tz)
            ),
            "hosthog: nobody else is logged in.".to_owned(),
        ]
    });
    assert!(
        sshd.log()
            .contains("Accepted publickey for root from 127.0.0.1")
    );
    // The same table still keeps bob out.
    let out = sshd.ssh_publickey("bob", "true");
    assert_eq!(out.code, Some(255), "{out:?}");
}

#[test]
fn without_a_current_reservation_bob_gets_in() {
    let host = hosthog_host();
    let sshd = host.start_sshd();
    let no_reservation = |_now: i64| {
        vec![
            "hosthog: no reservation now.".to_owned(),
            "hosthog: nobody else is logged in.".to_owned(),
        ]
    };

    // No table file (in an existing state directory): nobody has reserved the host.
    host.remove_table();
    assert_admitted_every_way(&sshd, "bob");
    assert_interactive_summary(&host, &sshd, "bob", Auth::PublicKey, no_reservation);

    // An empty table.
    let t = now();
    host.write_table(&[], t);
    assert_admitted_every_way(&sshd, "bob");
    assert_interactive_summary(
        &host,
        &sshd,
        "bob",
        Auth::Password("bob-pw"),
        no_reservation,
    );

    // alice's exclusive reservation, but the day after tomorrow.
    let t = now();
    let later = (t + 2 * 86_400, t + 2 * 86_400 + 3600);
    host.write_table(
        &[reservation(
            ALICE_ID,
            "alice",
            &[],
            Mode::Exclusive,
            later,
            PAPER,
        )],
        t,
    );
    assert_admitted_every_way(&sshd, "bob");
    assert_interactive_summary(
        &host,
        &sshd,
        "bob",
        Auth::KbdInteractive("bob-pw"),
        no_reservation,
    );
}

#[test]
fn during_a_shared_reservation_bob_gets_in() {
    let host = hosthog_host();
    let t = now();
    let shared = reservation(
        ALICE_ID,
        "alice",
        &[],
        Mode::Shared,
        (t - 600, t + 3600),
        "profiling runs",
    );
    host.write_table(std::slice::from_ref(&shared), t);
    let sshd = host.start_sshd();
    let tz = module_time_zone();
    assert_admitted_every_way(&sshd, "bob");
    for auth in all_methods("bob-pw") {
        assert_interactive_summary(&host, &sshd, "bob", auth, |now| {
            vec![
                format!(
                    "hosthog: now: reserved shared by alice until {} for \"profiling runs\".",
                    format_instant(shared.end, now, &tz)
                ),
                "hosthog: nobody else is logged in.".to_owned(),
            ]
        });
    }
}

/// `exempt=bob` on both module lines: bob gets in during alice's exclusive reservation
/// and the summary says he is exempt from it.
#[test]
fn exempt_argument_lets_bob_in() {
    let host = TestHost::builder().user("dave", 2004, "dave-pw").build();
    let module = pam_module_path();
    let table = host.table_path();
    host.set_pam_service(
        "sshd",
        &hosthog_stack(&module, &table).replace(
            &format!("table={}\n", table.display()),
            &format!("table={} exempt=bob\n", table.display()),
        ),
    );
    let t = now();
    let alice = alice_exclusive(t);
    host.write_table(std::slice::from_ref(&alice), t);
    let sshd = host.start_sshd();
    assert_admitted_every_way(&sshd, "bob");
    let tz = module_time_zone();
    assert_interactive_summary(&host, &sshd, "bob", Auth::PublicKey, |now| {
        vec![
            format!(
                "hosthog: now: reserved exclusively by alice with carol until {} for \"{PAPER}\"; \
                 you are exempt from it.",
                format_instant(alice.end, now, &tz)
            ),
            "hosthog: nobody else is logged in.".to_owned(),
        ]
    });
    // The argument names bob only: dave is still kept out.
    let (out, when) = bracket(|| sshd.ssh_publickey("dave", "true"));
    assert_eq!(out.code, Some(255), "{out:?}");
    let expected = when.texts(|t| {
        refused_stderr(
            &sshd,
            "dave",
            Auth::PublicKey,
            &host.refusal_message("dave", "sshd", t),
        )
    });
    assert_one_of(&out.stderr, &expected, "dave");
}

/// The account line of the shipped pam-auth-update profile (`pam.d/pam-configs/hosthog`):
/// its control, after checking that the profile puts the module in the Primary block.
fn shipped_profile_account_control() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../pam.d/pam-configs/hosthog");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.lines().any(|l| l.trim() == "Account-Type: Primary"),
        "{path}: the profile is no longer Account-Type: Primary; update this test"
    );
    let line = text
        .lines()
        .skip_while(|l| l.trim() != "Account:")
        .nth(1)
        .unwrap_or_else(|| panic!("{path}: no line after Account:"));
    // The control is one word, or a bracketed list that may hold spaces.
    let line = line.trim();
    let (control, rest) = match line.strip_prefix('[') {
        Some(inner) => {
            let end = inner
                .find(']')
                .unwrap_or_else(|| panic!("{path}: {line:?}"));
            (&line[..end + 2], &inner[end + 1..])
        }
        None => line.split_once(char::is_whitespace).unwrap_or((line, "")),
    };
    assert_eq!(rest.trim(), "pam_hosthog.so", "{path}: {line:?}");
    control.to_string()
}

/// The placement the project ships, through a real sshd: Debian's `common-account` as
/// pam-auth-update generates it from `pam.d/pam-configs/hosthog` (Primary block,
/// priority 1024, so first, with the profile's own control; see pam.d/README.md and
/// `pam_pam_auth_update.rs`, which runs the real pam-auth-update), and a table that has
/// a change file beside it: 300 reservations written whole, then alice's exclusive one
/// added, so the refusal comes from the change file. bob is refused by every method,
/// alice and carol get in, root gets in by key. The control at the end swaps in a
/// `default=ignore` Primary line that pam_unix's `success=N` jumps over, and bob gets in:
/// the test would notice a profile that does not refuse.
#[test]
fn the_shipped_profile_placement_refuses_through_sshd_with_a_change_file() {
    let host = TestHost::new();
    let module = pam_module_path();
    let table = host.table_path();
    host.set_pam_service("sshd", &including_common_account(&module, &table));
    let control = shipped_profile_account_control();
    host.set_pam_service(
        "common-account",
        &debian_common_account_primary_first(&hosthog_line(
            "account", &control, &module, &table, "",
        )),
    );
    let t = now();
    let later: Vec<Reservation> = (0..300u64)
        .map(|i| {
            let start = t + 86_400 + i as i64 * 3600;
            reservation(
                0x1a7e_0000_0000_0000 + i,
                "dave",
                &[],
                Mode::Shared,
                (start, start + 3600),
                "later",
            )
        })
        .collect();
    host.write_table(&later, t);
    host.store()
        .edit(
            t,
            |_| {},
            |state| {
                state.reservations.push(alice_exclusive(t));
                Ok(())
            },
        )
        .unwrap();
    let delta = libhosthog::delta_path(&table);
    assert!(delta.is_file(), "no change file at {}", delta.display());
    let sshd = host.start_sshd();
    let attempts = assert_refused_every_way(&host, &sshd, "bob");
    assert_log_shows_refusals(&sshd, "bob", attempts);
    for user in ["alice", "carol"] {
        assert_admitted_every_way(&sshd, user);
    }
    let out = sshd.ssh_publickey("root", "id -u");
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "0\n"), "{out:?}");

    // Control: a Primary line with `default=ignore` (which pam_unix's `success=N`
    // jumps over) lets bob in, so this test would fail for such a profile.
    host.set_pam_service(
        "common-account",
        &format!(
            "account\t[success=2 new_authtok_reqd=done default=ignore]\tpam_unix.so\n\
             account\t[success=1 new_authtok_reqd=done default=ignore]\t{} table={}\n\
             account\trequisite\t\t\tpam_deny.so\n\
             account\trequired\t\t\tpam_permit.so\n",
            module.display(),
            table.display()
        ),
    );
    let out = sshd.ssh_publickey("bob", "id -un");
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "bob\n", ""),
        "{out:?}"
    );
}
