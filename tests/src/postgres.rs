//! A real PostgreSQL for the fleet tests: a cluster made by `initdb` in a
//! temporary directory, served on a Unix socket in that directory only (no
//! TCP at all), run as the `postgres` user through `setpriv` (not `su`,
//! which goes through PAM), held by pid and stopped on drop.
//!
//! Needs root, Debian's postgresql-15 (with btree_gist, in its contrib
//! modules) and setpriv; without them the test fails, saying what to install.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's PostgreSQL 15 server programs.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";
const SETPRIV: &str = "/usr/bin/setpriv";
const USER: &str = "postgres";

/// A running PostgreSQL server of the test's own.
pub struct Postgres {
    dir: tempfile::TempDir,
    server: Option<Child>,
}

fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new(SETPRIV);
    command
        .args([
            "--reuid",
            USER,
            "--regid",
            USER,
            "--init-groups",
            "--reset-env",
        ])
        .arg(program);
    command
}

impl Postgres {
    /// Makes a cluster and starts a server on it; returns once it accepts
    /// connections.
    pub fn start() -> Postgres {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the fleet tests need root: they run PostgreSQL as the postgres user with setpriv"
        );
        for program in [
            Path::new(BIN).join("initdb"),
            Path::new(BIN).join("postgres"),
        ] {
            assert!(
                program.is_file(),
                "{} is missing: install postgresql-15 and postgresql-contrib",
                program.display()
            );
        }
        assert!(
            Path::new(SETPRIV).is_file(),
            "{SETPRIV} is missing: install util-linux"
        );
        let dir = tempfile::Builder::new()
            .prefix("hosthog-pg.")
            .tempdir()
            .expect("temporary directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the temporary directory");
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown to postgres");
        let data = dir.path().join("data");
        let out = as_postgres(&Path::new(BIN).join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                USER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server = spawn_server(dir.path());
        let mut pg = Postgres {
            dir,
            server: Some(server),
        };
        pg.wait_ready();
        pg
    }

    /// Stops the server (fast shutdown, clients disconnected); the cluster
    /// stays, for [`Postgres::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            if let Ok(pid) = i32::try_from(server.id()) {
                // SAFETY: kill has no memory-safety preconditions; the pid is
                // our own child's, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            server.wait().expect("wait for postgres to stop");
        }
    }

    /// Starts the stopped server again on the same cluster and socket.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "postgres is running");
        self.server = Some(spawn_server(self.dir.path()));
        self.wait_ready();
    }

    /// As [`Postgres::start_again`]: starts the stopped server again on the
    /// same cluster; returns once it accepts connections.
    pub fn restart(&mut self) {
        self.start_again();
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(Path::new(BIN).join("pg_isready"))
                .arg("-h")
                .arg(self.dir.path())
                .args(["-U", USER, "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(server) = self.server.as_mut()
                && let Ok(Some(status)) = server.try_wait()
            {
                panic!("postgres exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A libpq-style connection string for `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!(
            "host={} user={USER} dbname={database}",
            self.dir.path().display()
        )
    }

    /// Runs SQL through psql as the postgres user; panics with psql's error
    /// unless it succeeds. Returns what psql printed (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = self.psql_result(database, sql);
        match out {
            Ok(text) => text,
            Err(e) => panic!("psql failed on {sql:?}: {e}"),
        }
    }

    /// psql on `database` of this server as the postgres user, without
    /// ~/.psqlrc, stopping at the first error.
    fn psql_command(&self, database: &str) -> Command {
        let mut command = Command::new("/usr/bin/psql");
        command.arg("-h").arg(self.dir.path()).args([
            "-U",
            USER,
            "-d",
            database,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
        ]);
        command
    }

    /// Runs SQL through psql; `Err` with psql's stderr if it fails.
    pub fn psql_result(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = self
            .psql_command(database)
            .args(["-A", "-t", "-c", sql])
            .output()
            .expect("run psql (postgresql-client)");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// An open psql session on `database`, to hold a transaction (and its
    /// locks) across steps of a test: [`Session::send`] gives it SQL; it
    /// is stopped by pid on drop.
    pub fn session(&self, database: &str) -> Session {
        let child = self
            .psql_command(database)
            .arg("-q")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("run psql (postgresql-client)");
        Session { child }
    }

    /// A client program of postgresql-client (`pg_dump`, `pg_restore`,
    /// `createdb`, ...) pointed at this server as the postgres user.
    pub fn client(&self, program: &str) -> Command {
        let mut command = Command::new(Path::new("/usr/bin").join(program));
        command.arg("-h").arg(self.dir.path()).args(["-U", USER]);
        command
    }

    /// Makes an empty database.
    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown (disconnect clients, stop).
        self.stop();
    }
}

/// Starts postgres on the cluster in `dir`/data, its socket in `dir`,
/// appending to `dir`/server.log.
fn spawn_server(dir: &Path) -> Child {
    as_postgres(&Path::new(BIN).join("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("server.log"))
                .expect("server log"),
        ))
        .spawn()
        .expect("start postgres")
}

/// The postgres account's uid and gid, from /etc/passwd.
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&USER)).then(|| {
                (
                    fields[2].parse().expect("uid"),
                    fields[3].parse().expect("gid"),
                )
            })
        })
        .expect("there is no postgres account: install postgresql-15")
}

/// A psql process reading SQL from the test ([`Postgres::session`]).
pub struct Session {
    child: Child,
}

impl Session {
    /// Sends `sql` (whole statements, each ending in `;`).
    pub fn send(&mut self, sql: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("psql's stdin");
        stdin
            .write_all(format!("{sql}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("write to psql");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
