//! Test harness: test users in a private mount namespace (fake /etc/passwd
//! and /etc/group bind-mounted; the host's /etc is untouched), a hosthogd
//! started inside it, and clients run as those users with setpriv.
//!
//! Every process started here is held by pid and killed on drop. The tests
//! need root (mount namespaces, setpriv): without it they fail, saying so.

pub mod host;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use crate::table::now;

/// Now in UTC seconds, with the fraction (to pick an instant just after a
/// second begins).
#[allow(clippy::disallowed_methods)] // tests read the clock to pick instants
pub fn clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// `at` (UTC seconds) as the CLI's `--start` and `--until` take it.
pub fn stamp(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .expect("an instant in jiff's range")
        .to_string()
}

pub const UNSHARE: &str = "/usr/bin/unshare";
pub const SETPRIV: &str = "/usr/bin/setpriv";

/// Fails the test unless it runs as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (mount namespaces, setpriv to test uids); run it as root"
    );
    for tool in [UNSHARE, SETPRIV, "/usr/bin/mount"] {
        assert!(Path::new(tool).exists(), "this test needs {tool}");
    }
}

/// The hosthogd binary of this build (`target/<profile>/hosthogd`; the
/// hosthogd tests that use it are in hosthogd's package, so cargo builds it
/// before they run).
pub fn hosthogd_bin() -> PathBuf {
    let path = crate::target_profile_dir().join("hosthogd");
    assert!(
        path.is_file(),
        "{} does not exist: build it first (cargo build -p hosthogd)",
        path.display()
    );
    path
}

/// The `hosthog` binary next to hosthogd in the target directory.
pub fn hosthog_bin() -> PathBuf {
    let path = hosthogd_bin().with_file_name("hosthog");
    assert!(
        path.is_file(),
        "{} does not exist: build it first (cargo build -p hosthog-cli)",
        path.display()
    );
    path
}

/// A test account.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
}

/// The fixed accounts: alice, bob, carol, dave (admin, in group hhadmin),
/// erin (in group ops), plus `extra` numbered users u01.. from uid 2100.
pub fn users(extra: usize) -> Vec<User> {
    let mut v: Vec<User> = [
        ("alice", 2001),
        ("bob", 2002),
        ("carol", 2003),
        ("dave", 2004),
        ("erin", 2005),
    ]
    .iter()
    .map(|(n, u)| User {
        name: (*n).into(),
        uid: *u,
    })
    .collect();
    for i in 1..=extra {
        v.push(User {
            name: format!("u{i:02}"),
            uid: 2100 + i as u32,
        });
    }
    v
}

/// A running hosthogd in its own mount namespace, with its files.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
    pub users: Vec<User>,
    child: Option<Child>,
}

pub const DEFAULT_CONFIG: &str = "admin_group = \"hhadmin\"\nexempt_groups = [\"ops\"]\n\
max_duration = \"2d\"\nmax_ahead = \"30d\"\nmax_open_per_user = 0\n";

impl Daemon {
    /// Starts hosthogd with `config` and `extra` numbered users.
    pub fn start(config: &str, extra: usize) -> Daemon {
        Daemon::start_with_accounts(config, extra, "")
    }

    /// As [`Daemon::start`], with `more_passwd` (whole lines) appended to
    /// the namespace's /etc/passwd: system accounts, a second uid-0 one.
    pub fn start_with_accounts(config: &str, extra: usize, more_passwd: &str) -> Daemon {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("hosthogd-test.")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let users = users(extra);
        let mut passwd = String::from(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        );
        let mut group = String::from("root:x:0:\nnogroup:x:65534:\n");
        for u in &users {
            passwd += &format!("{}:x:{}:{}::/nonexistent:/bin/sh\n", u.name, u.uid, u.uid);
            group += &format!("{}:x:{}:\n", u.name, u.uid);
        }
        passwd += more_passwd;
        group += "hhadmin:x:3000:dave\nops:x:3001:erin\n";
        fs::write(dir.path().join("passwd"), passwd).unwrap();
        fs::write(dir.path().join("group"), group).unwrap();
        let config_path = dir.path().join("hosthog.toml");
        fs::write(&config_path, config).unwrap();
        let mut daemon = Daemon {
            socket: dir.path().join("hosthogd.sock"),
            state: dir.path().join("state"),
            config: config_path,
            users,
            dir,
            child: None,
        };
        daemon.restart();
        daemon
    }

    /// (Re)starts the daemon process on the same files.
    pub fn restart(&mut self) {
        self.kill();
        let script = "set -e; mount --bind \"$1\" /etc/passwd; mount --bind \"$2\" /etc/group; \
                      shift 2; exec \"$@\"";
        let child = Command::new(UNSHARE)
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                script,
                "sh",
            ])
            .arg(self.dir.path().join("passwd"))
            .arg(self.dir.path().join("group"))
            .arg(hosthogd_bin())
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--config")
            .arg(&self.config)
            // Keep the MOTD fragment and the presence snapshot in the test's
            // directory, not in the host's /run.
            .arg("--motd")
            .arg(self.dir.path().join("motd"))
            .arg("--presence")
            .arg(self.dir.path().join("presence.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("hosthogd exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "hosthogd did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the daemon (by pid) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn user(&self, name: &str) -> &User {
        self.users.iter().find(|u| u.name == name).unwrap()
    }

    /// Runs `hosthog ARGS` as `user` (root: no setpriv).
    pub fn run_as(&self, user: &str, args: &[&str]) -> Run {
        let uid = (user != "root").then(|| self.user(user).uid);
        hosthog_as(uid, &self.socket, args)
    }

    /// Runs `hosthog ARGS` as `user` with `TZ` set to `tz`.
    pub fn run_in_zone(&self, user: &str, tz: &str, args: &[&str]) -> Run {
        let uid = (user != "root").then(|| self.user(user).uid);
        hosthog_in_zone(uid, &self.socket, tz, args)
    }

    pub fn table_path(&self) -> PathBuf {
        self.state.join("table")
    }

    /// The bytes of the table file followed by those of its change file
    /// (empty if there is none yet): what "byte-identical" compares.
    pub fn table_bytes(&self) -> Vec<u8> {
        let mut bytes = fs::read(self.table_path()).unwrap_or_default();
        bytes.extend(fs::read(libhosthog::delta_path(&self.table_path())).unwrap_or_default());
        bytes
    }

    /// The table with its change file, opened, parsed and validated as the
    /// PAM module does.
    pub fn state(&self) -> libhosthog::State {
        // SAFETY: geteuid has no preconditions.
        let owner = unsafe { libc::geteuid() };
        let file = match libhosthog::TableFile::open(&self.table_path(), owner) {
            Ok(file) => file,
            Err(e) if e.kind() == libhosthog::ErrorKind::Missing => {
                return libhosthog::State::default();
            }
            Err(e) => panic!("{e}"),
        };
        let state = file.table().unwrap().to_state();
        state.validate().unwrap();
        state
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.state.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn ok(&self) -> &Run {
        assert_eq!(self.code, Some(0), "expected success: {self:?}");
        self
    }

    /// Non-zero exit and exactly one line `hosthog: ...` on stderr
    /// containing `needle`.
    pub fn refused(&self, needle: &str) -> &Run {
        assert_ne!(self.code, Some(0), "expected failure: {self:?}");
        assert!(self.code.is_some(), "killed by a signal: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:?}");
        assert!(lines[0].starts_with("hosthog: "), "{self:?}");
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in stderr: {self:?}"
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Sends raw bytes to the socket as the test process (root) and returns
/// what came back until the daemon closed the connection (or 10 s passed).
pub fn raw_exchange(socket: &Path, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Environment variables that turn a test binary into a raw socket client
/// (see [`raw_as`]).
pub const RAW_SOCKET_ENV: &str = "HOSTHOG_TEST_RAW_SOCKET";
pub const RAW_PAYLOAD_ENV: &str = "HOSTHOG_TEST_RAW_PAYLOAD";

/// Called by an ignored `#[test] fn raw_client()` in each test binary,
/// which [`raw_as`] re-executes with `--ignored`: sends the payload and
/// prints the answer. Run without that environment it fails.
pub fn raw_client_helper() {
    let (Ok(socket), Ok(payload)) = (
        std::env::var(RAW_SOCKET_ENV),
        std::env::var(RAW_PAYLOAD_ENV),
    ) else {
        panic!("raw_client is run by raw_as, which sets {RAW_SOCKET_ENV} and {RAW_PAYLOAD_ENV}");
    };
    let answer = raw_exchange(Path::new(&socket), payload.as_bytes());
    // In hex, so that the parent gets the answer's exact bytes back.
    let hex: String = answer.bytes().map(|b| format!("{b:02x}")).collect();
    println!("RESPONSE:{hex}");
}

/// Sends `payload` to the daemon's socket from a process running as `user`
/// (this test binary, re-executed under setpriv), returning the answer.
pub fn raw_as(daemon: &Daemon, user: &str, payload: &str) -> String {
    let u = daemon.user(user);
    let out = Command::new(SETPRIV)
        .arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.uid))
        .arg("--clear-groups")
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "--ignored",
            "raw_client",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RAW_SOCKET_ENV, &daemon.socket)
        .env(RAW_PAYLOAD_ENV, format!("{payload}\n"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("RESPONSE:").map(|(_, r)| r))
        .unwrap_or_else(|| {
            panic!(
                "no response from the raw client: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let bytes: Vec<u8> = (0..line.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex from raw_client"))
        .collect();
    String::from_utf8(bytes).expect("raw_exchange returned a String")
}

/// Runs `hosthog ARGS` against `socket`, as `uid` (through setpriv, with no
/// supplementary groups) or as root for `None`, in UTC.
pub fn hosthog_as(uid: Option<u32>, socket: &Path, args: &[&str]) -> Run {
    hosthog_in_zone(uid, socket, "UTC", args)
}

/// [`hosthog_as`] with `TZ` set to `tz`.
pub fn hosthog_in_zone(uid: Option<u32>, socket: &Path, tz: &str, args: &[&str]) -> Run {
    let mut cmd = match uid {
        None => Command::new(hosthog_bin()),
        Some(uid) => {
            let mut c = Command::new(SETPRIV);
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(hosthog_bin());
            c
        }
    };
    cmd.args(args)
        .env("HOSTHOG_SOCKET", socket)
        .env("TZ", tz)
        .stdin(Stdio::null());
    Run::from(cmd.output().unwrap())
}
