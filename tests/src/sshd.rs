//! A real `/usr/sbin/sshd` on 127.0.0.1, running in the test host's mount namespace with its
//! own configuration, host key, pid file and log, and ssh clients for it.
//!
//! Where OpenSSH 9.2 shows account-phase PAM text (details and the exact strings are pinned
//! by `tests/sshd_harness.rs`): publickey and password logins get it as a userauth banner,
//! keyboard-interactive as the instruction of an info request; the client prints both on
//! stderr (not with `-q`). A refusal ends in exit code 255. Session-phase text appears only
//! on the pty of an interactive login shell ([`Sshd::ssh_interactive`]).
//!
//! It runs wherever an [`SshdHost`] says: a [`TestHost`] (its namespace with the fake `/etc`
//! and PAM stacks), or hosthogd's host box (`daemon::host::HostBox`), whose users, `/run` and
//! utmp the daemon under test watches.
//!
//! The client pins this sshd's host key in a `known_hosts` of its own
//! (`StrictHostKeyChecking=yes`) instead of `UserKnownHostsFile=/dev/null` with
//! `StrictHostKeyChecking=no`: stderr carries no "Permanently added" warning, so tests can
//! compare it exactly, and a client can never end up talking to another server that took
//! the port.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::host::{TestHost, mkdir, ssh_keygen, write};
use crate::prereq::tools;
use crate::process::{
    COMMAND_TIMEOUT, ProcessGuard, kill_with_parent, run, run_when_ready, wait_until,
};

/// How long sshd may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// sshd's privilege-separation directory (Debian: created by systemd's RuntimeDirectory).
const PRIVSEP_DIR: &str = "/run/sshd";

/// `sshd_config` settings. The listener, host key and pid file are always set by the
/// harness; everything else has a default here that [`SshdConfig::set`] replaces.
#[derive(Debug, Clone)]
pub struct SshdConfig {
    settings: Vec<(String, String)>,
    trailing: Vec<String>,
}

impl Default for SshdConfig {
    fn default() -> Self {
        let settings = [
            ("UsePAM", "yes"),
            ("PasswordAuthentication", "yes"),
            ("KbdInteractiveAuthentication", "yes"),
            ("PubkeyAuthentication", "yes"),
            ("AuthorizedKeysFile", ".ssh/authorized_keys"),
            ("PermitRootLogin", "yes"),
            ("StrictModes", "yes"),
            ("LogLevel", "VERBOSE"),
            ("UseDNS", "no"),
            ("PrintMotd", "no"),
            ("PrintLastLog", "no"),
            ("Banner", "none"),
            ("X11Forwarding", "no"),
            ("MaxStartups", "100:30:200"),
            ("MaxAuthTries", "6"),
            ("LoginGraceTime", "30"),
        ];
        Self {
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            trailing: Vec::new(),
        }
    }
}

impl SshdConfig {
    /// Sets `keyword value`, replacing an earlier value of the same keyword
    /// (e.g. `set("AuthenticationMethods", "publickey,password")`).
    pub fn set(mut self, keyword: &str, value: &str) -> Self {
        match self
            .settings
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(keyword))
        {
            Some(entry) => entry.1 = value.to_owned(),
            None => self.settings.push((keyword.to_owned(), value.to_owned())),
        }
        self
    }

    /// Appends a raw line after all settings (for `Match` blocks).
    pub fn append(mut self, line: &str) -> Self {
        self.trailing.push(line.to_owned());
        self
    }

    fn render(&self, port: u16, dir: &Path) -> String {
        let mut text = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nAddressFamily inet\n\
             HostKey {}\nPidFile {}\n",
            dir.join("ssh_host_ed25519_key").display(),
            dir.join("sshd.pid").display(),
        );
        for (keyword, value) in &self.settings {
            text += &format!("{keyword} {value}\n");
        }
        for line in &self.trailing {
            text += line;
            text += "\n";
        }
        text
    }
}

/// How the client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth<'a> {
    /// The test client key (`-i`, `BatchMode=yes`).
    PublicKey,
    /// `PreferredAuthentications=password`, password typed by sshpass.
    Password(&'a str),
    /// `PreferredAuthentications=keyboard-interactive` (PAM conversation), password typed
    /// by sshpass at the `Password:` prompt.
    KbdInteractive(&'a str),
}

/// Result of one ssh client run: exit code (255 when the connection or login failed),
/// stdout and stderr (banners, including PAM account messages, go to stderr).
pub type SshOutput = crate::process::Captured;

/// Where an sshd runs: a mount namespace of the test's, with its accounts (the `sshd`
/// privilege-separation account among them) and PAM stacks.
pub trait SshdHost {
    /// A command that runs `program` in the host's mount namespace; the pid it spawns must
    /// be `program`'s own (every wrapper execs).
    fn sshd_command(&self, program: &str) -> Command;

    /// Where the directory sshd sees as `/run/sshd` (its privilege-separation directory) is,
    /// as seen from the test; created if missing.
    fn privsep_dir(&self) -> PathBuf;

    /// A fresh directory, root's and private, for the next sshd instance.
    fn next_sshd_dir(&self) -> PathBuf;

    /// The client key in every user's `authorized_keys`, if the host has one
    /// ([`Auth::PublicKey`] needs it).
    fn client_key(&self) -> Option<&Path>;
}

impl SshdHost for TestHost {
    fn sshd_command(&self, program: &str) -> Command {
        self.namespace().command(program)
    }

    fn privsep_dir(&self) -> PathBuf {
        PathBuf::from(PRIVSEP_DIR)
    }

    fn next_sshd_dir(&self) -> PathBuf {
        TestHost::next_sshd_dir(self)
    }

    fn client_key(&self) -> Option<&Path> {
        Some(TestHost::client_key(self))
    }
}

/// A running sshd; stopped (with all its per-connection children) when dropped.
pub struct Sshd<'h> {
    /// Borrowed so the test directory outlives this sshd.
    host: &'h dyn SshdHost,
    guard: ProcessGuard,
    port: u16,
    dir: PathBuf,
}

impl std::fmt::Debug for Sshd<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sshd")
            .field("guard", &self.guard)
            .field("port", &self.port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl TestHost {
    /// Starts sshd with the default configuration.
    pub fn start_sshd(&self) -> Sshd<'_> {
        self.start_sshd_with(&SshdConfig::default())
    }

    /// Starts sshd with `config` (see [`Sshd::start`]).
    pub fn start_sshd_with(&self, config: &SshdConfig) -> Sshd<'_> {
        Sshd::start(self, config)
    }
}

impl<'h> Sshd<'h> {
    /// Starts sshd on `host` with `config`, waits until it listens, and checks that the pid
    /// held is sshd itself, running in a mount namespace other than ours.
    pub fn start(host: &'h dyn SshdHost, config: &SshdConfig) -> Sshd<'h> {
        let privsep = host.privsep_dir();
        if !privsep.is_dir() {
            mkdir(&privsep, 0o755);
        }
        let dir = host.next_sshd_dir();
        ssh_keygen(&dir.join("ssh_host_ed25519_key"), "hosthog-test-host");
        let config_path = dir.join("sshd_config");

        // Validate once, inside the namespace (sshd -t looks up the privsep user).
        write(&config_path, &config.render(free_port(), &dir), 0o600);
        let check = run(
            host.sshd_command(tools::SSHD)
                .arg("-t")
                .arg("-f")
                .arg(&config_path),
            None,
            COMMAND_TIMEOUT,
        );
        assert_eq!(
            check.code,
            Some(0),
            "sshd -t rejected the configuration:\n{}{}",
            check.stdout,
            check.stderr
        );

        // A port that was free a moment ago may be taken by a parallel test: retry.
        let mut failures = String::new();
        for attempt in 0..5 {
            let port = free_port();
            write(&config_path, &config.render(port, &dir), 0o600);
            let log = dir.join(format!("sshd-{attempt}.log"));
            let stderr = dir.join(format!("sshd-{attempt}.stderr"));
            let mut cmd = host.sshd_command(tools::SSHD);
            cmd.arg("-D")
                .arg("-f")
                .arg(&config_path)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&stderr).expect("create the sshd stderr file"))
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("LANG", "C");
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            kill_with_parent(&mut cmd);
            let child = cmd.spawn().expect("start sshd");
            let mut guard = ProcessGuard::new(child, "sshd");

            let listening = format!("Server listening on 127.0.0.1 port {port}.");
            let pid_line = format!("{}\n", guard.pid());
            let pid_file = dir.join("sshd.pid");
            let mut exited = false;
            // "Server listening" is logged right after listen(2): the port accepts from
            // then on. The pid file is written a little later; sshd writing our pid into it
            // proves the pid we hold is sshd's own.
            let ready = wait_until(START_TIMEOUT, || {
                exited = guard.try_wait().is_some();
                exited || (read(&log).contains(&listening) && read(&pid_file) == pid_line)
            }) && !exited;
            if ready {
                let sshd = Sshd {
                    host,
                    guard,
                    port,
                    dir: dir.clone(),
                };
                sshd.assert_is_sshd_in_private_namespace();
                sshd.write_known_hosts();
                return sshd;
            }
            drop(guard);
            let log_text = read(&log);
            let stderr_text = read(&stderr);
            failures += &format!(
                "attempt {attempt}, port {port}:\n--- log ---\n{log_text}\n--- stderr ---\n{stderr_text}\n"
            );
            if !log_text.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd did not start listening:\n{failures}");
    }
}

impl Sshd<'_> {
    /// The port sshd listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// sshd's pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// This instance's directory (config, host key, pid file, log, known_hosts).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything sshd logged so far (all attempts, all connections).
    pub fn log(&self) -> String {
        let mut logs: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        logs.iter().map(|p| read(p)).collect()
    }

    /// `ssh USER@127.0.0.1 CMD` with the test client key.
    pub fn ssh_publickey(&self, user: &str, cmd: &str) -> SshOutput {
        self.ssh(user, Auth::PublicKey, false, cmd)
    }

    /// `ssh USER@127.0.0.1 CMD` with password authentication (sshpass).
    pub fn ssh_password(&self, user: &str, password: &str, cmd: &str) -> SshOutput {
        self.ssh(user, Auth::Password(password), false, cmd)
    }

    /// `ssh USER@127.0.0.1 CMD` with keyboard-interactive authentication (sshpass).
    pub fn ssh_kbdint(&self, user: &str, password: &str, cmd: &str) -> SshOutput {
        self.ssh(user, Auth::KbdInteractive(password), false, cmd)
    }

    /// `ssh -tt USER@127.0.0.1 CMD`: the command runs on a pty (which merges the remote
    /// stdout and stderr and turns `\n` into `\r\n`). sshd does not show PAM session
    /// text when a command is given; see [`Sshd::ssh_interactive`].
    pub fn ssh_tty(&self, user: &str, auth: Auth<'_>, cmd: &str) -> SshOutput {
        self.ssh(user, auth, true, cmd)
    }

    /// An interactive login: `ssh -tt` without a remote command, so sshd starts the user's
    /// login shell on a pty and `input` (e.g. `"echo hi; exit\n"`) is typed into it.
    ///
    /// Only this form shows the text PAM modules print in the session phase (and the
    /// account-phase text a second time): sshd prints its collected login messages on the
    /// pty only for a login shell, never when a command is given (OpenSSH's
    /// `check_quietlogin`), nor with `~/.hushlogin`. stdout is the pty's output: login
    /// messages, the prompt, the echoed input and command output, with `\r\n` line ends.
    /// `input` is typed once the shell's first prompt (ending in `$ ` or `# `) has shown, so its
    /// echo never lands among the login messages.
    pub fn ssh_interactive(&self, user: &str, auth: Auth<'_>, input: &str) -> SshOutput {
        let (mut command, password) = self.client_command(user, auth, true);
        if let Some(password) = password {
            command.env("SSHPASS", password);
        }
        run_when_ready(&mut command, &["$ ", "# "], input, COMMAND_TIMEOUT)
    }

    /// The general form behind the helpers above: `ssh [-tt|-T] USER@127.0.0.1 -- CMD`.
    pub fn ssh(&self, user: &str, auth: Auth<'_>, tty: bool, cmd: &str) -> SshOutput {
        let (mut command, password) = self.client_command(user, auth, tty);
        command.arg("--").arg(cmd);
        if let Some(password) = password {
            command.env("SSHPASS", password);
        }
        run(&mut command, None, COMMAND_TIMEOUT)
    }

    /// The client command line (without the remote command), and the password sshpass
    /// must type (passed in the `SSHPASS` environment variable).
    pub fn client_command<'a>(
        &self,
        user: &str,
        auth: Auth<'a>,
        tty: bool,
    ) -> (Command, Option<&'a str>) {
        let (mut cmd, password) = match auth {
            Auth::PublicKey => (Command::new(tools::SSH), None),
            Auth::Password(pw) | Auth::KbdInteractive(pw) => {
                let mut cmd = Command::new(tools::SSHPASS);
                cmd.arg("-e").arg(tools::SSH);
                (cmd, Some(pw))
            }
        };
        cmd.env_remove("SSH_AUTH_SOCK")
            .env_remove("SSHPASS")
            .env("LANG", "C")
            // Sent to the remote pty: no colour, no bracketed-paste escapes.
            .env("TERM", "dumb")
            .args(["-F", "/dev/null", "-p", &self.port.to_string()])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir.join("known_hosts").display()
            ))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ServerAliveInterval=10",
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
                "-o",
                "IdentityAgent=none",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=INFO",
                "-l",
                user,
                if tty { "-tt" } else { "-T" },
            ]);
        match auth {
            Auth::PublicKey => {
                let key = self
                    .host
                    .client_key()
                    .expect("this host has no client key: log in with a password");
                cmd.arg("-i").arg(key).args([
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "PreferredAuthentications=publickey",
                ]);
            }
            Auth::Password(_) => {
                cmd.args([
                    "-o",
                    "PubkeyAuthentication=no",
                    "-o",
                    "KbdInteractiveAuthentication=no",
                    "-o",
                    "PreferredAuthentications=password",
                    "-o",
                    "NumberOfPasswordPrompts=1",
                ]);
            }
            Auth::KbdInteractive(_) => {
                cmd.args([
                    "-o",
                    "PubkeyAuthentication=no",
                    "-o",
                    "PasswordAuthentication=no",
                    "-o",
                    "PreferredAuthentications=keyboard-interactive",
                    "-o",
                    "NumberOfPasswordPrompts=1",
                ]);
            }
        }
        cmd.arg("127.0.0.1");
        (cmd, password)
    }

    /// Stops sshd and its per-connection children now.
    pub fn stop(mut self) {
        self.guard.stop(Duration::from_secs(3));
    }

    /// The host key pinned in this instance's `known_hosts`, so the client only ever talks
    /// to this sshd (not to whatever else might hold the port).
    fn write_known_hosts(&self) {
        let key = read(&self.dir.join("ssh_host_ed25519_key.pub"));
        let mut fields = key.split_whitespace();
        let (kind, blob) = (
            fields.next().expect("host key type"),
            fields.next().expect("host key"),
        );
        write(
            &self.dir.join("known_hosts"),
            &format!("[127.0.0.1]:{} {kind} {blob}\n", self.port),
            0o644,
        );
    }

    fn assert_is_sshd_in_private_namespace(&self) {
        let proc_dir = PathBuf::from(format!("/proc/{}", self.pid()));
        let exe = fs::read_link(proc_dir.join("exe")).expect("read sshd's /proc/PID/exe");
        assert_eq!(
            exe,
            Path::new(tools::SSHD),
            "pid {} is not sshd (unshare and sh should have exec'd it)",
            self.pid()
        );
        let theirs = fs::read_link(proc_dir.join("ns/mnt")).expect("sshd's mount namespace");
        let ours = fs::read_link("/proc/self/ns/mnt").expect("our mount namespace");
        assert_ne!(theirs, ours, "sshd runs in the host's mount namespace");
    }
}

/// A port on 127.0.0.1 that was free when asked.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port on 127.0.0.1")
}

fn read(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
