//! End-to-end test harness for hosthog: real libpam, a real sshd and shadow's `login`,
//! each in a private mount namespace where fake `/etc/passwd`, `/etc/group`, `/etc/shadow`
//! and `/etc/pam.d` are bind-mounted over the host's (which never change).
//!
//! ```no_run
//! use hosthog_tests::{Auth, TestHost};
//!
//! let host = TestHost::new(); // root, alice, bob, carol; client key in every authorized_keys
//! host.set_pam_service(
//!     "sshd",
//!     &format!(
//!         "auth    required pam_unix.so nodelay\n\
//!          account required /path/to/libpam_hosthog.so table={}\n\
//!          session optional pam_permit.so\n",
//!         host.table_path().display()
//!     ),
//! );
//! let sshd = host.start_sshd();
//! let out = sshd.ssh_publickey("alice", "true");
//! assert_eq!(out.code, Some(255));
//! let out = sshd.ssh_tty("bob", Auth::Password("bob-pw"), "echo hi");
//! assert!(out.stdout.contains("hi"));
//! ```
//!
//! Every process the harness starts is held by pid and stopped (with its descendants)
//! by a drop guard, also when a test panics. Missing root or tools fail the test.
//!
//! # How the PAM module gets built
//!
//! The tests load the real `libpam_hosthog.so` ([`pam_module_path`]). `cargo test
//! --workspace` (and `cargo test -p hosthog-tests`) builds it before any test runs because
//! `pam_hosthog` is a dev-dependency of this crate: cargo compiles every crate type of a
//! dependency's library, so the `cdylib` is linked in the same build as the test
//! binaries, into `target/<profile>/deps/libpam_hosthog.so` (a cdylib's file name carries
//! no hash). Cargo does not copy ("uplift") a dependency's cdylib to
//! `target/<profile>/libpam_hosthog.so`; that copy is refreshed only by `cargo build`, so
//! during `cargo test` it may be stale, and the tests never use it. No test runs cargo
//! itself: a nested cargo would contend for the build directory lock of the cargo that
//! runs the tests.

// Test-only harness code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod accounts;
pub mod console;
pub mod container;
pub mod daemon;
pub mod desktop;
pub mod fleet;
pub mod fleet_relay;
pub mod host;
pub mod https_client;
pub mod namespace;
pub mod pam_stacks;
pub mod pamtester;
pub mod postgres;
pub mod prereq;
pub mod process;
pub mod pty;
pub mod sshd;
pub mod table;

pub use accounts::{TestUser, UserSpec};
pub use console::Console;
pub use host::{TestHost, TestHostBuilder};
pub use namespace::MountNamespace;
pub use process::Captured;
pub use sshd::{Auth, SshOutput, Sshd, SshdConfig};

use std::path::PathBuf;

/// The cargo profile directory the test binary was built into (e.g. `target/debug`).
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("test binary lives in target/<profile>/deps")
}

/// The PAM module built by the same cargo run as the test binary,
/// `target/<profile>/deps/libpam_hosthog.so` (see "How the PAM module gets built" above);
/// fails the test with a hint if it is not there.
///
/// `HOSTHOG_TEST_PAM_MODULE=/usr/lib/x86_64-linux-gnu/security/pam_hosthog.so` runs the
/// same tests against an installed module instead (how an install is checked end to end).
pub fn pam_module_path() -> PathBuf {
    if let Some(installed) = std::env::var_os("HOSTHOG_TEST_PAM_MODULE") {
        let path = PathBuf::from(installed);
        assert!(
            path.is_file(),
            "HOSTHOG_TEST_PAM_MODULE={} does not exist",
            path.display()
        );
        return path;
    }
    let path = target_profile_dir().join("deps").join("libpam_hosthog.so");
    assert!(
        path.is_file(),
        "{} does not exist: it is built by `cargo test` through hosthog-tests' \
         dev-dependency on pam_hosthog (run the tests with cargo test)",
        path.display()
    );
    path
}
