//! A fleet for tests: a real PostgreSQL ([`Postgres`]), hosthog-server's
//! subcommands and `serve` on 127.0.0.1 (one port for the whole test, so
//! the server can be stopped and started again), curl as the people's
//! client, and hosthogd agents with state directories of their own. Every
//! process is held by pid and stopped on drop.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
    /// localhost and 127.0.0.1; not serving yet.
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

    fn command(&self) -> Command {
        let mut command = Command::new(binary("hosthog-server"));
        command
            .args([
                "--config",
                "/nonexistent/server.toml",
                "--database",
                &self.url,
            ])
            .arg("--ca-dir")
            .arg(self.ca_dir());
        command
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
        let mut cmd = Command::new(CURL);
        cmd.args(["-sS", "-X", method, "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(self.ca_dir().join("ca.pem"))
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
        assert!(
            out.status.success(),
            "curl failed: {}{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, status) = text.rsplit_once('\n').expect("curl's status line");
        let json = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
        (status.parse().expect("an HTTP status"), json)
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

/// A host of the fleet: hosthogd with a state directory of its own,
/// following the calendar; stopped by pid on drop.
pub struct FleetHost {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl FleetHost {
    /// Starts hosthogd as host `name` of `server`, with `bundle`.
    pub fn start(server: &FleetServer, name: &str, bundle: &Path) -> FleetHost {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let config = dir.path().join("hosthog.toml");
        std::fs::write(
            &config,
            format!(
                // Stale after 3 s rather than 5 min, so a test sees it.
                "[fleet]\nserver = \"{}\"\nhost = \"{name}\"\nbundle = \"{}\"\n\
                 stale_after = \"3s\"\n",
                server.address(),
                bundle.display()
            ),
        )
        .expect("write hosthog.toml");
        let child = Command::new(binary("hosthogd"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(dir.path().join("hosthogd.sock"))
            .arg("--config")
            .arg(&config)
            .args(["--motd", "none", "--tick", "1", "--presence"])
            .arg(dir.path().join("presence.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("hosthogd.log")).expect("log"),
            ))
            .spawn()
            .expect("start hosthogd");
        FleetHost {
            dir,
            child: Some(child),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// What hosthogd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hosthogd.log")).unwrap_or_default()
    }

    /// The owners of the reservations in the local table, by start (empty
    /// while there is no table).
    pub fn owners(&self) -> Vec<String> {
        match libhosthog::TableFile::open(&self.state_dir().join("table"), 0) {
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
        match libhosthog::TableFile::open(&self.state_dir().join("table"), 0) {
            Ok(file) => file
                .table()
                .expect("a valid table")
                .notices()
                .map(|n| n.text().to_string())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// hosthogd is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for FleetHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
