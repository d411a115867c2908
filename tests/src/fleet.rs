//! A fleet for tests: a real PostgreSQL ([`Postgres`]), hosthog-server's
//! subcommands and `serve` on 127.0.0.1 (one port for the whole test, so
//! the server can be stopped and started again), curl as the people's
//! client, and hosthogd agents with state directories of their own. Every
//! process is held by pid and stopped on drop.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::postgres::Postgres;

const CURL: &str = "/usr/bin/curl";

/// A binary of this build (`target/<profile>/NAME`).
pub fn binary(name: &str) -> PathBuf {
    let path = crate::target_profile_dir().join(name);
    assert!(
        path.is_file(),
        "{} does not exist: build it first (cargo build --workspace)",
        path.display()
    );
    path
}

/// The test's own clock, in UTC seconds (a test is an entry point: it
/// reads the clock itself).
pub use crate::table::now;

/// Waits until `done` holds, looking every 20 ms, up to `limit`; returns
/// how long it took.
///
/// # Panics
/// Once `limit` passed: "`what` did not happen within `limit`".
pub fn within(limit: Duration, what: &str, done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    assert!(
        crate::process::wait_until(limit, done),
        "{what} did not happen within {limit:?}"
    );
    started.elapsed()
}

/// A free port on 127.0.0.1 (bound and released; the test uses it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The calendar: a database, the CA, and (when started) `serve`.
pub struct FleetServer {
    pub pg: Postgres,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub port: u16,
    serving: Option<Child>,
}

impl FleetServer {
    /// A migrated database and a CA whose server certificate names
    /// localhost and 127.0.0.1; not serving yet. Its server.toml is absent
    /// (the defaults) until [`FleetServer::configure`].
    pub fn start() -> FleetServer {
        assert!(Path::new(CURL).is_file(), "{CURL} is missing: install curl");
        let pg = Postgres::start();
        pg.create_database("fleet");
        let url = pg.url("fleet");
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = FleetServer {
            pg,
            dir,
            url,
            port: free_port(),
            serving: None,
        };
        server.run(&["migrate"]);
        server.run(&["ca", "init", "--name", "localhost", "--name", "127.0.0.1"]);
        server
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// `https://127.0.0.1:PORT`
    pub fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Runs a hosthog-server subcommand against this database and CA;
    /// returns stdout, failing the test on an error.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self
            .command()
            .args(args)
            .output()
            .expect("run hosthog-server");
        assert!(
            out.status.success(),
            "hosthog-server {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a hosthog-server subcommand against this database and CA, as
    /// it goes: its exit status, stdout and stderr.
    pub fn output(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self
            .command()
            .args(args)
            .output()
            .expect("run hosthog-server");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn command(&self) -> Command {
        let mut command = Command::new(binary("hosthog-server"));
        command
            .arg("--config")
            .arg(self.dir.path().join("server.toml"))
            .args(["--database", &self.url])
            .arg("--ca-dir")
            .arg(self.ca_dir());
        command
    }

    /// Writes the server's server.toml (`[limits]`, say); `serve` reads
    /// it when it starts.
    pub fn configure(&self, toml: &str) {
        std::fs::write(self.dir.path().join("server.toml"), toml).expect("write server.toml");
    }

    /// Adds host `name`; returns the path of its bundle.
    pub fn add_host(&self, name: &str) -> PathBuf {
        let bundle = self.dir.path().join(format!("{name}.{}.pem", free_port()));
        self.run(&[
            "host",
            "add",
            name,
            "--bundle",
            bundle.to_str().expect("utf-8 path"),
        ]);
        bundle
    }

    /// A bearer token for `user`.
    pub fn token(&self, user: &str) -> String {
        self.run(&["token", "add", user]).trim().to_string()
    }

    /// Starts `serve` on this server's port; returns once it listens.
    pub fn serve(&mut self) {
        assert!(self.serving.is_none(), "already serving");
        let mut child = self
            .command()
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hosthog-server serve");
        let mut line = String::new();
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        stderr
            .read_line(&mut line)
            .expect("read serve's first line");
        assert_eq!(
            line.trim(),
            format!(
                "hosthog-server: listening on https://127.0.0.1:{}",
                self.port
            ),
            "serve did not start"
        );
        // Keep draining its log so it never blocks on a full pipe; keep
        // it in serve.log for the test to read.
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.log"))
            .expect("serve.log");
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
            }
        });
        self.serving = Some(child);
    }

    /// What `serve` logged so far (all its runs).
    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// The pid of `serve`, while it runs.
    pub fn serve_pid(&self) -> Option<u32> {
        self.serving.as_ref().map(Child::id)
    }

    /// `serve` is still running (it has not exited or panicked out).
    pub fn serving(&mut self) -> bool {
        self.serving
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops `serve` with SIGKILL, as `kill -9` does (the database keeps
    /// running).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.serving.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One HTTPS request with curl: the status and the JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.try_request(method, path, auth, body)
            .unwrap_or_else(|e| panic!("curl failed: {e}"))
    }

    /// [`FleetServer::request`], or why curl got no answer (the server is
    /// down) instead of failing the test.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        self.client().try_request(method, path, auth, body)
    }

    /// A client of this server that other threads may use while the test
    /// stops and starts it.
    pub fn client(&self) -> Client {
        Client {
            ca: self.ca_dir().join("ca.pem"),
            port: self.port,
        }
    }
}

/// curl, speaking to the server on its port, trusting its CA.
#[derive(Debug, Clone)]
pub struct Client {
    ca: PathBuf,
    port: u16,
}

impl Client {
    /// One HTTPS request: the status and the JSON body, or why curl got
    /// no answer.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let mut cmd = Command::new(CURL);
        cmd.args([
            "-sS",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(&self.ca)
        // The certificate names localhost; resolve it without /etc/hosts.
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", self.port));
        match auth {
            Auth::None => {}
            Auth::Token(token) => {
                cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
            }
            Auth::Host(bundle) => {
                cmd.arg("--cert").arg(bundle);
            }
        }
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(body.to_string());
        }
        let out = cmd
            .arg(format!("https://localhost:{}{path}", self.port))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!("{}{text}", String::from_utf8_lossy(&out.stderr)));
        }
        let (body, status) = text.rsplit_once('\n').expect("curl's status line");
        let json = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
        Ok((status.parse().expect("an HTTP status"), json))
    }
}

impl Drop for FleetServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a request proves who sends it.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Token(&'a str),
    Host(&'a Path),
}

/// The people of every fleet host, with uids of their own (the same on
/// every host, as a lab's directory gives): alice, bob, carol, dave.
pub const PEOPLE: [(&str, u32); 4] = [
    ("alice", 2001),
    ("bob", 2002),
    ("carol", 2003),
    ("dave", 2004),
];

const UNSHARE: &str = "/usr/bin/unshare";
const NSENTER: &str = "/usr/bin/nsenter";
const SETPRIV: &str = "/usr/bin/setpriv";
const IP: &str = "/usr/sbin/ip";
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// How a fleet host is started.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// In a network namespace of its own, reaching the server through a
    /// relay ([`FleetHost::cut`] takes its link down).
    pub netns: bool,
    /// The host's clock differs by this (libfaketime's `FAKETIME`, e.g.
    /// "+10m" or "-10m").
    pub clock: Option<String>,
    /// `stale_after` in its hosthog.toml.
    pub stale_after: String,
    /// Its `server`, if not the fleet server's own address.
    pub server: Option<String>,
    /// A plain host, not (yet) in the fleet: no `[fleet]` ([`FleetHost::join`]).
    pub plain: bool,
}

impl Default for HostOptions {
    fn default() -> HostOptions {
        HostOptions {
            netns: false,
            clock: None,
            // 3 s rather than 5 min, so a test sees it.
            stale_after: "3s".into(),
            server: None,
            plain: false,
        }
    }
}

/// A host of the fleet: hosthogd with a state directory of its own, in a
/// mount namespace where /etc/passwd and /etc/group name [`PEOPLE`] (the
/// host's /etc is untouched), following the calendar; every process is
/// stopped by pid on drop.
pub struct FleetHost {
    pub name: String,
    pub dir: tempfile::TempDir,
    /// `sleep` holding the namespaces open.
    holder: Child,
    child: Option<Child>,
    relay: Option<crate::fleet_relay::Relay>,
    options: HostOptions,
}

impl FleetHost {
    /// Starts hosthogd as host `name` of `server`, with `bundle`.
    pub fn start(server: &FleetServer, name: &str, bundle: &Path) -> FleetHost {
        FleetHost::start_with(server, name, bundle, &HostOptions::default())
    }

    /// As [`FleetHost::start`], as `options` say.
    pub fn start_with(
        server: &FleetServer,
        name: &str,
        bundle: &Path,
        options: &HostOptions,
    ) -> FleetHost {
        for tool in [UNSHARE, NSENTER, SETPRIV, IP] {
            assert!(
                Path::new(tool).is_file(),
                "{tool} is missing: install util-linux and iproute2"
            );
        }
        if options.clock.is_some() {
            assert!(
                Path::new(LIBFAKETIME).is_file(),
                "{LIBFAKETIME} is missing: install Debian's faketime package"
            );
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
        let mut group = String::from("root:x:0:\n");
        for (user, uid) in PEOPLE {
            passwd += &format!("{user}:x:{uid}:{uid}::/nonexistent:/bin/sh\n");
            group += &format!("{user}:x:{uid}:\n");
        }
        std::fs::write(dir.path().join("passwd"), passwd).expect("write passwd");
        std::fs::write(dir.path().join("group"), group).expect("write group");
        let ready = dir.path().join("ready");
        let mut unshare = Command::new(UNSHARE);
        unshare.args(["--mount", "--propagation", "private"]);
        if options.netns {
            unshare.arg("--net");
        }
        let holder = unshare
            .args([
                "--",
                "/bin/sh",
                "-c",
                "set -e; mount --bind \"$1\" /etc/passwd; mount --bind \"$2\" /etc/group; \
                 if [ \"$4\" = net ]; then ip link set lo up; fi; touch \"$3\"; \
                 exec sleep infinity",
                "sh",
            ])
            .arg(dir.path().join("passwd"))
            .arg(dir.path().join("group"))
            .arg(&ready)
            .arg(if options.netns { "net" } else { "" })
            .stdin(Stdio::null())
            .spawn()
            .expect("start the namespace holder");
        let mut host = FleetHost {
            name: name.to_string(),
            dir,
            holder,
            child: None,
            relay: None,
            options: options.clone(),
        };
        within(
            Duration::from_secs(10),
            &format!("making the namespaces of {name}"),
            || ready.exists(),
        );
        if options.netns {
            // The host's own 127.0.0.1:PORT leads to the server's, through
            // a relay whose inner end is in the host's namespace.
            host.relay = Some(crate::fleet_relay::Relay::start(
                host.holder.id(),
                server.port,
            ));
        }
        host.write_config(server, bundle);
        host.launch();
        host
    }

    fn write_config(&self, server: &FleetServer, bundle: &Path) {
        let text = if self.options.plain {
            String::new()
        } else {
            format!(
                "[fleet]\nserver = \"{}\"\nhost = \"{}\"\nbundle = \"{}\"\n\
                 stale_after = \"{}\"\n",
                self.options
                    .server
                    .clone()
                    .unwrap_or_else(|| server.address()),
                self.name,
                bundle.display(),
                self.options.stale_after,
            )
        };
        std::fs::write(self.dir.path().join("hosthog.toml"), text).expect("write hosthog.toml");
    }

    /// A plain host joins the fleet: `[fleet]` in its hosthog.toml, and
    /// hosthogd restarted (as `scripts/install --join` does).
    pub fn join(&mut self, server: &FleetServer, bundle: &Path) {
        self.options.plain = false;
        self.write_config(server, bundle);
        self.restart();
    }

    /// Stops hosthogd (SIGKILL, by pid) and starts it again on the same
    /// files.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
        self.launch();
    }

    fn launch(&mut self) {
        let options = self.options.clone();
        let mut command = Command::new(NSENTER);
        command
            .arg(format!("--target={}", self.holder.id()))
            .arg("--mount");
        if options.netns {
            command.arg("--net");
        }
        command
            .arg("--")
            .arg(binary("hosthogd"))
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--socket")
            .arg(self.socket())
            .arg("--config")
            .arg(self.dir.path().join("hosthog.toml"))
            .arg("--motd")
            .arg(self.motd())
            .args(["--tick", "1", "--presence"])
            .arg(self.dir.path().join("presence.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("hosthogd.log"))
                    .expect("log"),
            ));
        if let Some(offset) = &options.clock {
            // libfaketime moves the wall clock only (monotonic timers and
            // timeouts stay true).
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        }
        let child = command.spawn().expect("start hosthogd");
        self.child = Some(child);
        let limit = Duration::from_secs(10);
        assert!(
            crate::process::wait_until(limit, || {
                std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
            }),
            "hosthogd of {} did not start within {limit:?}: {}",
            self.name,
            self.log()
        );
    }

    /// Waits (up to 10 s) for hosthogd's first sync with the calendar:
    /// its `fleet.json` is written once it holds a window.
    ///
    /// # Panics
    /// When it does not come, with hosthogd's log.
    pub fn wait_synced(&self) {
        let limit = Duration::from_secs(10);
        let fleet_json = self.state_dir().join("fleet.json");
        assert!(
            crate::process::wait_until(limit, || fleet_json.exists()),
            "{} did not sync with the calendar within {limit:?}: {}",
            self.name,
            self.log()
        );
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("hosthogd.sock")
    }

    /// Where hosthogd writes its MOTD fragment.
    pub fn motd(&self) -> PathBuf {
        self.dir.path().join("motd")
    }

    pub fn table_path(&self) -> PathBuf {
        self.state_dir().join("table")
    }

    /// What hosthogd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hosthogd.log")).unwrap_or_default()
    }

    /// The local table as the PAM module reads it (with its change file),
    /// or an empty one while there is none.
    pub fn state(&self) -> libhosthog::State {
        match libhosthog::TableFile::open(&self.table_path(), 0) {
            Ok(file) => file.table().expect("a valid table").to_state(),
            Err(_) => libhosthog::State::default(),
        }
    }

    /// The owners of the reservations in the local table, by start (empty
    /// while there is no table).
    pub fn owners(&self) -> Vec<String> {
        match libhosthog::TableFile::open(&self.table_path(), 0) {
            Ok(file) => file
                .table()
                .expect("a valid table")
                .reservations()
                .map(|r| r.owner().to_string())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The texts of the notices in the local table.
    pub fn notices(&self) -> Vec<String> {
        self.state().notices.into_iter().map(|n| n.text).collect()
    }

    /// Stops hosthogd where it is (SIGSTOP, by pid: nsenter execs it in
    /// place); [`FleetHost::restart`] kills and starts it again.
    pub fn pause(&self) {
        let pid = self
            .child
            .as_ref()
            .and_then(|c| libc::pid_t::try_from(c.id()).ok())
            .expect("hosthogd running");
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    }

    /// hosthogd is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Runs `hosthog ARGS` on this host as `user` (one of [`PEOPLE`], or
    /// root), through its hosthogd: exit code, stdout, stderr.
    pub fn hosthog(&self, user: &str, args: &[&str]) -> (Option<i32>, String, String) {
        let mut command = if user == "root" {
            Command::new(binary("hosthog"))
        } else {
            let uid = PEOPLE
                .iter()
                .find(|(name, _)| *name == user)
                .map(|(_, uid)| *uid)
                .unwrap_or_else(|| panic!("{user} is not one of the fleet's people"));
            let mut c = Command::new(SETPRIV);
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(binary("hosthog"));
            c
        };
        let out = command
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .output()
            .expect("run hosthog");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Takes the host's network link down (its loopback, in its own
    /// namespace: packets are dropped, connecting fails) or up again.
    pub fn set_link(&self, up: bool) {
        assert!(
            self.relay.is_some(),
            "{} has no network of its own",
            self.name
        );
        let status = Command::new(NSENTER)
            .arg(format!("--target={}", self.holder.id()))
            .args(["--net", "--", IP, "link", "set", "lo"])
            .arg(if up { "up" } else { "down" })
            .status()
            .expect("run ip");
        assert!(status.success(), "ip link set lo failed");
    }
}

impl Drop for FleetHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

impl FleetServer {
    /// The server's window for host `name` now, asked with its `bundle`
    /// (what the host's table must hold).
    pub fn window(&self, bundle: &Path) -> Value {
        let (status, body) =
            self.request("GET", "/agent/v1/window?wait=0", Auth::Host(bundle), None);
        assert_eq!(status, 200, "the window: {body}");
        body
    }
}

/// Whether `host`'s table holds exactly `window`'s reservations (the
/// server's answer for it), compared as the Store writes them: the window's
/// reservations, decoded from JSON into libhosthog's own type, are put in
/// the table's place and both states are encoded with the table format's
/// own encoder; the bytes must be equal. Everything else in the table
/// (exemptions, notices such as the stale-calendar one) is the host's own
/// and taken from the table itself, so only the calendar part is compared.
/// Reservations that ended by `now` are left out of both (the Store drops
/// them).
pub fn table_matches(host: &FleetHost, window: &Value, now: i64) -> Result<(), String> {
    let mut held = host.state();
    let mut wanted: Vec<libhosthog::Reservation> =
        serde_json::from_value(window["reservations"].clone())
            .map_err(|e| format!("the window is not understood: {e}"))?;
    wanted.retain(|r| r.end > now);
    wanted.sort_by_key(|r| (r.start, r.id));
    held.reservations.retain(|r| r.end > now);
    held.reservations.sort_by_key(|r| (r.start, r.id));
    let expected = libhosthog::State {
        reservations: wanted,
        ..held.clone()
    };
    let (a, b) = (
        libhosthog::encode(&held).map_err(|e| format!("the table: {e}"))?,
        libhosthog::encode(&expected).map_err(|e| format!("the window: {e}"))?,
    );
    if a == b {
        Ok(())
    } else {
        let ids = |s: &libhosthog::State| -> Vec<String> {
            s.reservations
                .iter()
                .map(|r| format!("{} {}", r.id.short(), r.owner))
                .collect()
        };
        Err(format!(
            "{}'s table differs from the server's window:\n table  ({}): {:?}\n window ({}): {:?}",
            host.name,
            held.reservations.len(),
            ids(&held),
            expected.reservations.len(),
            ids(&expected)
        ))
    }
}
