//! Shared by the integration tests: build the module, write tables, and run
//! pamtester through the real libpam inside bubblewrap, with a private
//! /etc/pam.d, /run (for utmp) and /dev/log bound over the host's. Nothing
//! on the host changes.
//!
//! Service files name the module by absolute path: a symlink
//! `<tempdir>/pam_hosthog.so` to the module of this build ([`module`]), so
//! libpam logs it under its installed name, `pam_hosthog`.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use libhosthog::{State, encode};

/// How long one pamtester run may take before the test fails: a login that
/// hangs (say, on a FIFO planted at the table's path) fails the test here
/// instead of stalling the run.
pub const PAMTESTER_TIMEOUT: Duration = Duration::from_secs(20);

/// Fails (never skips) unless the tests run as root: they chown files,
/// need root-owned tables and run bubblewrap mount namespaces.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "pam_hosthog's integration tests must run as root (they create root-owned tables, \
         chown files and bind a private /etc/pam.d with bubblewrap); run: sudo -E cargo test -p pam_hosthog"
    );
    for tool in ["pamtester", "bwrap", "nm"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
        assert!(found, "{tool} is not installed (see scripts/setup-dev)");
    }
}

/// The production module of this build, `target/<profile>/deps/libpam_hosthog.so`
/// (see "How the PAM module gets built" in lib.rs).
pub fn module() -> PathBuf {
    crate::pam_module_path()
}

/// A module whose hooks panic for the user "hosthog-panic": the crate
/// `pam_hosthog_panic` (tests/pam-panic), which runs pam_hosthog's own hooks
/// with a panic injected, built like the production module into
/// `target/<profile>/deps/libpam_hosthog_panic.so`.
pub fn panicking_module() -> PathBuf {
    let path = crate::target_profile_dir()
        .join("deps")
        .join("libpam_hosthog_panic.so");
    assert!(
        path.is_file(),
        "{} does not exist: it is built by `cargo test` through a dev-dependency \
         on pam_hosthog_panic (run the tests with cargo test)",
        path.display()
    );
    path
}

/// The current time, read once per test (the module reads its own).
#[allow(clippy::disallowed_methods)] // test entry point
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A root-owned 0700 scratch directory holding the state directory, the
/// private pam.d, utmp and the syslog socket of one test.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    module: PathBuf,
}

/// What pamtester did.
#[derive(Debug)]
pub struct Run {
    /// Exit status; `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The syslog lines, each from the program name on
    /// (`pamtester: pam_hosthog(...): ...`), with their `<priority>`.
    pub log: Vec<String>,
}

impl Default for Sandbox {
    fn default() -> Sandbox {
        Sandbox::new()
    }
}

impl Sandbox {
    /// A sandbox using the production module.
    pub fn new() -> Sandbox {
        Sandbox::with_module(&module())
    }

    /// A sandbox using the module at `so`.
    pub fn with_module(so: &Path) -> Sandbox {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("pam_hosthog-test.")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let sandbox = Sandbox {
            module: dir.path().join("pam_hosthog.so"),
            dir,
        };
        symlink(so, &sandbox.module).unwrap();
        for sub in ["state", "pam.d", "run"] {
            let path = sandbox.dir.path().join(sub);
            std::fs::create_dir(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Anything not configured falls to "other", which refuses.
        sandbox.service(
            "other",
            "auth required pam_deny.so\naccount required pam_deny.so\n\
             session required pam_deny.so\npassword required pam_deny.so\n",
        );
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The module as service files name it.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// `<sandbox>/state/table`.
    pub fn table(&self) -> PathBuf {
        self.path().join("state/table")
    }

    /// Writes `state` as the table, root-owned, mode 0644, like the Store.
    pub fn write_table(&self, state: &State) {
        self.write_table_bytes(&encode(state).expect("valid state"));
    }

    pub fn write_table_bytes(&self, bytes: &[u8]) {
        let path = self.table();
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Writes `/etc/pam.d/<name>` of the sandbox.
    pub fn service(&self, name: &str, text: &str) {
        std::fs::write(self.path().join("pam.d").join(name), text).unwrap();
    }

    /// A service `name` whose account and session stacks are pam_hosthog
    /// with `args` (table= already given), then pam_permit.
    pub fn hosthog_service(&self, name: &str, args: &str) {
        let module = self.module.display();
        let table = self.table();
        let table = table.display();
        self.service(
            name,
            &format!(
                "account requisite {module} table={table} {args}\n\
                 account required pam_permit.so\n\
                 session optional {module} table={table} {args}\n\
                 session required pam_permit.so\n"
            ),
        );
    }

    /// Writes the sandbox's utmp (seen by the module as /var/run/utmp).
    pub fn write_utmp(&self, records: &[u8]) {
        std::fs::write(self.path().join("run/utmp"), records).unwrap();
    }

    /// Runs `pamtester [pamtester_args...]` in a mount namespace where the
    /// sandbox's pam.d is /etc/pam.d, its run/ is /run (so /var/run/utmp
    /// is its utmp), /dev is private with /dev/log a socket this call
    /// reads, and TZ=UTC.
    pub fn pamtester(&self, pamtester_args: &[&str]) -> Run {
        let log_path = self.path().join("log.sock");
        let _ = std::fs::remove_file(&log_path);
        let log = UnixDatagram::bind(&log_path).expect("bind the syslog socket");
        log.set_nonblocking(true).unwrap();
        let p = |sub: &str| self.path().join(sub);
        let output = crate::process::run(
            Command::new("bwrap")
                .args(["--bind", "/", "/", "--dev", "/dev"])
                .arg("--bind")
                .arg(p("pam.d"))
                .arg("/etc/pam.d")
                .arg("--bind")
                .arg(p("run"))
                .arg("/run")
                .arg("--bind")
                .arg(&log_path)
                .arg("/dev/log")
                .args([
                    "--setenv",
                    "TZ",
                    "UTC",
                    "--die-with-parent",
                    "--",
                    "pamtester",
                ])
                .args(pamtester_args),
            None,
            PAMTESTER_TIMEOUT,
        );
        let mut lines = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = log.recv(&mut buf) {
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            // "<85>Nov 23 12:00:00 pamtester: pam_hosthog(...)": keep the
            // priority, drop the timestamp.
            let (priority, rest) = line.split_once('>').unwrap_or(("", &line));
            let message = rest.get(16..).unwrap_or(rest);
            lines.push(format!("{priority}> {message}"));
        }
        Run {
            code: output.code,
            stdout: output.stdout,
            stderr: output.stderr,
            log: lines,
        }
    }
}
