//! A panic inside the module is caught at the FFI boundary: the host
//! process (pamtester) survives, nothing reaches its stderr but its own
//! line, one syslog line says what happened, and the answer follows
//! on_error=. Uses the test module tests/pam-panic (pam_hosthog with a
//! panic armed at load), whose hooks panic for the user "hosthog-panic".

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::pamtester as harness;

use harness::{Sandbox, panicking_module};

const SERVICE: &str = "hosthog-test";

#[test]
fn a_panic_is_answered_per_on_error_and_the_host_process_survives() {
    let sandbox = Sandbox::with_module(&panicking_module());
    sandbox.write_table(&libhosthog::State::default());
    let cases = [
        (
            "allow",
            "acct_mgmt",
            Some(0),
            "pamtester: account management done.\n",
            "",
            "account",
            "allowing (on_error=allow)",
        ),
        (
            "deny",
            "acct_mgmt",
            Some(1),
            "",
            "pamtester: Permission denied\n",
            "account",
            "refusing (on_error=deny)",
        ),
        (
            "allow",
            "open_session",
            Some(0),
            "pamtester: successfully opened a session\n",
            "",
            "session",
            "allowing (on_error=allow)",
        ),
        (
            "deny",
            "open_session",
            Some(1),
            "",
            "pamtester: Cannot make/remove an entry for the specified session\n",
            "session",
            "refusing (on_error=deny)",
        ),
    ];
    for (on_error, operation, code, stdout, stderr, phase, verdict) in cases {
        // session "required" here, so that the session answer counts.
        let module = sandbox.module().display().to_string();
        let table = sandbox.table().display().to_string();
        sandbox.service(
            SERVICE,
            &format!(
                "account requisite {module} table={table} on_error={on_error}\n\
                 account required pam_permit.so\n\
                 session required {module} table={table} on_error={on_error}\n\
                 session required pam_permit.so\n"
            ),
        );
        let run = sandbox.pamtester(&[SERVICE, "hosthog-panic", operation]);
        let what = format!("{operation} with on_error={on_error}");
        // Exited normally (not killed by SIGABRT), with its own messages only.
        assert_eq!(run.code, code, "{what}: {run:#?}");
        assert_eq!(run.stdout, stdout, "{what}");
        assert_eq!(run.stderr, stderr, "{what}");
        assert_eq!(run.log.len(), 1, "{what}: {:#?}", run.log);
        let line = &run.log[0];
        let prefix = format!(
            "<83> pamtester: pam_hosthog({SERVICE}:{phase}): internal error: panic at pam_hosthog/src/lib.rs:"
        );
        assert!(line.starts_with(&prefix), "{what}: {line}");
        assert!(
            line.ends_with(&format!(
                ": injected panic for user hosthog-panic (test module); {verdict}"
            )),
            "{what}: {line}"
        );
    }
    // The same build still answers everyone else normally.
    sandbox.hosthog_service(SERVICE, "on_error=deny");
    let run = sandbox.pamtester(&[SERVICE, "bob", "acct_mgmt"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.log.is_empty());
}
