//! A host in a box, for the notification, presence, timer and clearing
//! tests: a private mount namespace (held open by a `sleep` of ours) in
//! which /etc/passwd, /etc/group and /etc/shadow are test files and /run is a directory
//! of the test, so hosthogd's default /run paths (socket, MOTD fragment,
//! presence snapshot) and /var/run/utmp are the test's own files. /etc/pam.d
//! is a copy of the host's without pam_hosthog ([`private_pam_d`]), so a real
//! `su` in the box never meets the host's installed module and its table (a
//! host where hosthog is installed and someone holds it alone must not fail
//! these tests). The host's utmp, /run and /etc are never touched.
//!
//! Test users get uids of their own (from 20000, chosen per process and
//! test), checked to be unused when the box is made: clearing the host
//! kills processes by uid, and must only ever meet ours.
//!
//! A real sshd can run in the box ([`HostBox::start_sshd`]): in a mount
//! namespace of its own made inside the box's, which adds a PAM directory
//! (the `sshd` stack with the pam_hosthog module this build made, reading
//! the box's table) and empty stand-ins for the host's wtmp, btmp, lastlog
//! and faillog; it shares the box's /etc files and /run, so it writes the
//! box's utmp when there is one.
//!
//! Everything started here (the namespace holder, hosthogd, `script`
//! sessions, tmux servers, sleepers, ssh clients) is stopped by pid on drop.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Run, SETPRIV, UNSHARE, hosthogd_bin, require_root};
use crate::accounts::{sha512_crypt, sshd_entry, sshd_gid};
use crate::namespace::MountNamespace;
use crate::pam_stacks::hosthog_stack;
use crate::prereq::require_e2e_environment;
use crate::process::{ProcessGuard, kill_with_parent};
use crate::sshd::{Auth, Sshd, SshdHost};

pub const NSENTER: &str = "/usr/bin/nsenter";
pub const SCRIPT: &str = "/usr/bin/script";
pub const TMUX: &str = "/usr/bin/tmux";

/// The test users: alice, bob, carol, dave (in hhadmin: an admin), erin (in
/// ops: exempt by the default config), frank.
pub const NAMES: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

/// The host's login records sshd writes when they exist; a box's sshd
/// writes empty stand-ins instead.
const LOGIN_RECORDS: [&str; 4] = [
    "/var/log/wtmp",
    "/var/log/btmp",
    "/var/log/lastlog",
    "/var/log/faillog",
];

/// How long an ssh login may take to reach its command.
const SSH_LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// hosthogd's configuration in these tests (with whatever the test adds).
pub const BASE_CONFIG: &str = "admin_group = \"hhadmin\"\nexempt_groups = [\"ops\"]\n\
max_duration = \"2d\"\nmax_ahead = \"30d\"\nmax_open_per_user = 0\n";

static NEXT_BOX: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
}

/// A terminal session of a test user: `script` running a shell command on
/// a pty, with everything the pty shows logged to `log`.
pub struct Pty {
    pub child: Child,
    /// `pts/N`.
    pub line: String,
    pub log: PathBuf,
}

impl Pty {
    /// Everything shown on the terminal so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

/// A login of a test user through the box's real sshd: `sshpass ssh -tt`
/// on 127.0.0.1, the command on a pty sshd allocated, everything that pty
/// shows (the client's stdout) logged to `log`. The client is stopped,
/// with its children, on drop; its stdin stays open until then.
pub struct SshLogin {
    pub client: ProcessGuard,
    _stdin: std::process::ChildStdin,
    /// The pty sshd gave the session: `pts/N`.
    pub line: String,
    /// The session's shell (which execs the command).
    pub shell: i32,
    /// The user's side of the connection, `sshd: USER@pts/N`.
    pub sshd: i32,
    /// Its parent, sshd's monitor for the connection (root's), `sshd:
    /// USER [priv]`: the pid OpenSSH 9.2 records in utmp.
    pub monitor: i32,
    pub log: PathBuf,
    pub stderr: PathBuf,
}

impl SshLogin {
    /// Everything the session's terminal showed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

/// A tmux server of a test user with one session `hh`, and (optionally) a
/// client attached through `script`.
pub struct Tmux {
    pub user: User,
    pub server_pid: i32,
    pub client: Option<Child>,
}

pub struct HostBox {
    pub dir: tempfile::TempDir,
    /// Bind-mounted over /run inside the namespace.
    pub run: PathBuf,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
    pub motd: PathBuf,
    pub presence: PathBuf,
    pub events: PathBuf,
    pub utmp: PathBuf,
    pub daemon_log: PathBuf,
    pub users: Vec<User>,
    holder: Child,
    daemon: Option<Child>,
    children: Vec<Child>,
    tmux: Vec<Tmux>,
    sshd_count: AtomicU32,
}

/// Real uids of every process now running.
fn uids_in_use() -> Vec<u32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(status) = fs::read_to_string(entry.path().join("status"))
            && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
            && let Some(uid) = line.split_whitespace().nth(1).and_then(|u| u.parse().ok())
        {
            out.push(uid);
        }
    }
    out
}

/// Fills `dir` with the host's PAM stacks (/etc/pam.d, symlinks followed)
/// less every line that names pam_hosthog.
fn private_pam_d(dir: &Path) {
    fs::create_dir(dir).unwrap();
    for entry in fs::read_dir("/etc/pam.d").unwrap().flatten() {
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let kept: String = text
            .lines()
            .filter(|l| !l.contains("pam_hosthog"))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(dir.join(entry.file_name()), kept).unwrap();
    }
}

impl HostBox {
    /// Makes the box and starts hosthogd in it with `extra_config` added
    /// to [`BASE_CONFIG`] and `args` added to its command line.
    pub fn start(extra_config: &str, args: &[&str]) -> HostBox {
        require_root();
        for tool in [NSENTER, SCRIPT, TMUX] {
            assert!(Path::new(tool).exists(), "this test needs {tool}");
        }
        let dir = tempfile::Builder::new()
            .prefix("hosthog-host.")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let n = NEXT_BOX.fetch_add(1, Ordering::SeqCst);
        let base = 20_000 + (std::process::id() % 900) * 40 + n * 8;
        let users: Vec<User> = NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| User {
                name: (*name).to_string(),
                uid: base + i as u32,
            })
            .collect();
        let busy = uids_in_use();
        for u in &users {
            assert!(
                !busy.contains(&u.uid),
                "uid {} is in use by a process on this host; rerun the test",
                u.uid
            );
        }
        let sshd_entry = sshd_entry();
        let mut passwd = format!(
            "root:x:0:0:root:/root:/bin/sh\n{sshd_entry}\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        );
        let mut group = String::from("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n");
        let gid = sshd_gid(&sshd_entry);
        if gid != "65534" && gid != "0" {
            group += &format!("sshd:x:{gid}:\n");
        }
        for u in &users {
            passwd += &format!("{}:x:{}:{}::/tmp:/bin/sh\n", u.name, u.uid, u.uid);
            group += &format!("{}:x:{}:\n", u.name, u.uid);
        }
        group += &format!("hhadmin:x:{}:dave\nops:x:{}:erin\n", base + 6, base + 7);
        // shadow entries (no password), so `su - USER` as root passes
        // pam_unix's account phase.
        let mut shadow = String::from("root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n");
        for u in &users {
            shadow += &format!("{}:*:19000:0:99999:7:::\n", u.name);
        }
        fs::write(dir.path().join("shadow"), shadow).unwrap();
        fs::set_permissions(dir.path().join("shadow"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(dir.path().join("passwd"), passwd).unwrap();
        fs::write(dir.path().join("group"), group).unwrap();
        let run = dir.path().join("run");
        fs::create_dir(&run).unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
        let utmp = run.join("utmp");
        fs::write(&utmp, b"").unwrap();
        fs::set_permissions(&utmp, fs::Permissions::from_mode(0o644)).unwrap();
        let home = dir.path().join("home");
        fs::create_dir(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        for u in &users {
            let h = home.join(&u.name);
            fs::create_dir(&h).unwrap();
            std::os::unix::fs::chown(&h, Some(u.uid), Some(u.uid)).unwrap();
        }
        let config = dir.path().join("hosthog.toml");
        fs::write(&config, format!("{BASE_CONFIG}{extra_config}")).unwrap();
        let pam_d = dir.path().join("host-pam.d");
        private_pam_d(&pam_d);
        let ready = dir.path().join("ready");
        let script = "set -e; mount --bind \"$1\" /etc/passwd; mount --bind \"$2\" /etc/group; \
                      mount --bind \"$3\" /run; mount --bind \"$5\" /etc/shadow; \
                      mount --bind \"$6\" /etc/pam.d; touch \"$4\"; exec sleep 3600";
        let holder = Command::new(UNSHARE)
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
            .arg(dir.path().join("passwd"))
            .arg(dir.path().join("group"))
            .arg(&run)
            .arg(&ready)
            .arg(dir.path().join("shadow"))
            .arg(&pam_d)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut host = HostBox {
            socket: run.join("hosthog/hosthogd.sock"),
            state: dir.path().join("state"),
            motd: run.join("motd.d/hosthog"),
            presence: run.join("hosthog/presence.json"),
            events: dir.path().join("events.log"),
            daemon_log: dir.path().join("hosthogd.log"),
            utmp,
            config,
            run,
            users,
            holder,
            daemon: None,
            children: Vec::new(),
            tmux: Vec::new(),
            sshd_count: AtomicU32::new(0),
            dir,
        };
        host.wait_for("the namespace", Duration::from_secs(10), || ready.exists());
        host.start_daemon(args);
        host
    }

    fn start_daemon(&mut self, args: &[&str]) {
        let log = fs::File::create(&self.daemon_log).unwrap();
        let child = self
            .in_namespace()
            .arg(hosthogd_bin())
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--config")
            .arg(&self.config)
            .arg("--event-log")
            .arg(&self.events)
            .args(args)
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(d) = &mut self.daemon
                && let Ok(Some(status)) = d.try_wait()
            {
                panic!(
                    "hosthogd exited at start: {status}: {}",
                    self.daemon_output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "hosthogd did not start listening: {}",
                self.daemon_output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What hosthogd wrote to stderr so far.
    pub fn daemon_output(&self) -> String {
        fs::read_to_string(&self.daemon_log).unwrap_or_default()
    }

    /// A command entering the box's mount namespace (as root).
    pub fn in_namespace(&self) -> Command {
        let mut c = Command::new(NSENTER);
        c.arg(format!("--target={}", self.holder.id()))
            .arg("--mount")
            .arg("--");
        c
    }

    pub fn user(&self, name: &str) -> &User {
        self.users.iter().find(|u| u.name == name).unwrap()
    }

    /// A command running `program` as `user` inside the namespace.
    pub fn as_user(&self, user: &str, program: &str) -> Command {
        let u = self.user(user).clone();
        let mut c = self.in_namespace();
        c.arg(SETPRIV)
            .arg(format!("--reuid={}", u.uid))
            .arg(format!("--regid={}", u.uid))
            .arg("--clear-groups")
            .arg("--")
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.dir.path().join("home").join(&u.name))
            .env("TERM", "xterm")
            .env("TZ", "UTC")
            .env("USER", &u.name)
            .current_dir("/");
        c
    }

    /// Runs `hosthog ARGS` as `user` ("root": as root), outside the
    /// namespace, through the daemon's socket.
    pub fn hosthog(&self, user: &str, args: &[&str]) -> Run {
        let uid = (user != "root").then(|| self.user(user).uid);
        super::hosthog_as(uid, &self.socket, args)
    }

    /// Polls `done` every 20 ms until it holds, failing after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; hosthogd said:\n{}",
                self.daemon_output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A directory `user` owns, for their files.
    pub fn home(&self, user: &str) -> PathBuf {
        self.dir.path().join("home").join(user)
    }

    /// Starts a terminal session of `user`: `script` on a new pty running
    /// `sh -c COMMAND` after `mesg y` (unless `mesg` is false). Waits until
    /// the pty is known.
    pub fn pty(&mut self, user: &str, mesg: bool, command: &str) -> Pty {
        let home = self.home(user);
        let n = fs::read_dir(&home).unwrap().count();
        let log = home.join(format!("pty{n}.log"));
        let tty_file = home.join(format!("pty{n}.tty"));
        let inner = format!(
            "tty > {}; {} {}",
            tty_file.display(),
            if mesg { "mesg y;" } else { "mesg n;" },
            command
        );
        let child = self
            .as_user(user, SCRIPT)
            .args(["-q", "-f", "-c", &inner])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.wait_for("a pty", Duration::from_secs(10), || {
            fs::read_to_string(&tty_file).is_ok_and(|t| t.trim().starts_with("/dev/pts/"))
        });
        let line = fs::read_to_string(&tty_file)
            .unwrap()
            .trim()
            .trim_start_matches("/dev/")
            .to_string();
        // `mesg` runs right after `tty`: wait for its mode change.
        let dev = PathBuf::from(format!("/dev/{line}"));
        self.wait_for("mesg", Duration::from_secs(10), || {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(&dev).is_ok_and(|m| (m.mode() & 0o020 != 0) == mesg)
        });
        Pty { child, line, log }
    }

    /// Adds a utmp login record for `user` (as login/sshd would).
    pub fn add_login(&self, user: &str, pid: i32, line: &str, host: &str) {
        let record = libhosthog::utmp_record(libc::USER_PROCESS, pid, line, user, host);
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&self.utmp)
            .unwrap();
        file.write_all(&record).unwrap();
    }

    /// A pty session of `user` that is also a login in utmp.
    pub fn login(&mut self, user: &str, mesg: bool, from: &str) -> Pty {
        let pty = self.pty(user, mesg, "exec sleep 600");
        self.add_login(user, pty.pid(), &pty.line, from);
        pty
    }

    /// Starts a tmux server of `user` (default socket, session `hh`, its
    /// pane running `mesg y` and a sleep), with a client attached through
    /// `script` if `attach`.
    pub fn tmux(&mut self, user: &str, attach: bool) -> usize {
        self.tmux_mesg(user, attach, true)
    }

    /// [`HostBox::tmux`] with the pane running `mesg y` or, if not `mesg`,
    /// `mesg n` (its tty 0600, as tmux makes panes by default).
    pub fn tmux_mesg(&mut self, user: &str, attach: bool, mesg: bool) -> usize {
        let pane = format!(
            "sh -c 'mesg {}; exec sleep 600'",
            if mesg { "y" } else { "n" }
        );
        let out = self
            .as_user(user, TMUX)
            .args([
                "new-session",
                "-d",
                "-s",
                "hh",
                "-x",
                "160",
                "-y",
                "40",
                &pane,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux: {out:?}");
        let pid = self.tmux_cmd(user, &["display-message", "-p", "#{pid}"]);
        let server_pid: i32 = pid.trim().parse().unwrap();
        let client = attach.then(|| {
            self.as_user(user, SCRIPT)
                .args(["-q", "-f", "-c", "tmux attach -t hh", "/dev/null"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        });
        let u = self.user(user).clone();
        self.tmux.push(Tmux {
            user: u,
            server_pid,
            client,
        });
        if attach {
            self.wait_for("a tmux client", Duration::from_secs(10), || {
                !self.tmux_cmd(user, &["list-clients"]).trim().is_empty()
            });
        }
        self.tmux.len() - 1
    }

    /// Runs a tmux command as `user` against their default server.
    pub fn tmux_cmd(&self, user: &str, args: &[&str]) -> String {
        let out = self
            .as_user(user, TMUX)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the pane of `user`'s tmux session shows (wrapped lines joined).
    pub fn tmux_pane(&self, user: &str) -> String {
        self.tmux_cmd(user, &["capture-pane", "-p", "-J", "-t", "hh"])
    }

    /// Starts `program ARGS` as `user` (or root), kept until drop.
    pub fn spawn(&mut self, user: &str, program: &str, args: &[&str]) -> i32 {
        let mut cmd = if user == "root" {
            let mut c = self.in_namespace();
            c.arg(program);
            c
        } else {
            self.as_user(user, program)
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        self.children.push(child);
        pid
    }

    /// A fake VS Code server of `user`: a copy of `sleep` run from
    /// `~/.vscode-server/bin/COMMIT/node`.
    pub fn fake_vscode(&mut self, user: &str) -> i32 {
        let bin = self.home(user).join(".vscode-server/bin/0123abcd");
        fs::create_dir_all(&bin).unwrap();
        let node = bin.join("node");
        fs::copy("/bin/sleep", &node).unwrap();
        fs::set_permissions(&node, fs::Permissions::from_mode(0o755)).unwrap();
        let mut dir = bin.clone();
        while dir != self.home(user) {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
            dir.pop();
        }
        let node = node.to_str().unwrap().to_string();
        self.spawn(user, &node, &["600"])
    }

    /// Gives `user` the password `password` (a SHA-512 crypt hash in the
    /// box's /etc/shadow), for password logins through sshd.
    pub fn set_password(&self, user: &str, password: &str) {
        let path = self.dir.path().join("shadow");
        let hash = sha512_crypt(password);
        let text: String = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|line| match line.split_once(':') {
                Some((name, rest)) if name == user => {
                    let (_, tail) = rest.split_once(':').unwrap();
                    format!("{name}:{hash}:{tail}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect();
        // Written in place: the file is bind-mounted over /etc/shadow.
        fs::write(&path, text).unwrap();
    }

    /// Starts a real sshd on 127.0.0.1 in the box (see the module docs),
    /// with the harness's default configuration: PAM, passwords, no MOTD.
    pub fn start_sshd(&self) -> Sshd<'_> {
        require_e2e_environment();
        let pam = self.dir.path().join("pam.d");
        if !pam.is_dir() {
            fs::create_dir(&pam).unwrap();
            fs::write(
                pam.join("other"),
                "auth required pam_deny.so\naccount required pam_deny.so\n\
                 password required pam_deny.so\nsession required pam_deny.so\n",
            )
            .unwrap();
            let table = self.state.join(libhosthog::TABLE_NAME);
            fs::write(
                pam.join("sshd"),
                hosthog_stack(&crate::pam_module_path(), &table),
            )
            .unwrap();
            let logs = self.dir.path().join("logs");
            fs::create_dir(&logs).unwrap();
            for record in LOGIN_RECORDS {
                stand_in(&logs, record);
            }
        }
        Sshd::start(self, &crate::sshd::SshdConfig::default())
    }

    /// Logs `user` in through `sshd` with `password` (`sshpass ssh -tt`)
    /// and runs `command` there after noting the pty and the shell's pid;
    /// waits until it runs.
    pub fn ssh_login(
        &self,
        sshd: &Sshd<'_>,
        user: &str,
        password: &str,
        command: &str,
    ) -> SshLogin {
        let home = self.home(user);
        let n = fs::read_dir(&home).unwrap().count();
        let note = home.join(format!("ssh{n}.session"));
        let log = home.join(format!("ssh{n}.log"));
        let stderr = home.join(format!("ssh{n}.stderr"));
        let remote = format!("echo \"$$ $(tty)\" > {}; {command}", note.display());
        let (mut cmd, pw) = sshd.client_command(user, Auth::Password(password), true);
        cmd.arg("--").arg(remote);
        if let Some(pw) = pw {
            cmd.env("SSHPASS", pw);
        }
        cmd.stdin(Stdio::piped())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(&stderr).unwrap());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        kill_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut client = ProcessGuard::new(child, format!("ssh {user}@127.0.0.1"));
        let deadline = Instant::now() + SSH_LOGIN_TIMEOUT;
        let (shell, line) = loop {
            let text = fs::read_to_string(&note).unwrap_or_default();
            if let Some((pid, tty)) = text.trim_end().split_once(' ')
                && let Some(line) = tty.strip_prefix("/dev/")
                && text.ends_with('\n')
            {
                break (pid.parse::<i32>().unwrap(), line.to_string());
            }
            let exited = client.try_wait();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "{user}'s ssh login did not reach its command (client {}):\n\
                 client stderr: {}\nterminal: {}\nsshd log:\n{}",
                exited.map_or("still running".to_string(), |s| s.to_string()),
                fs::read_to_string(&stderr).unwrap_or_default(),
                fs::read_to_string(&log).unwrap_or_default(),
                sshd.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The user's side of the connection, once it has its title: the
        // shell's parent.
        let title = format!("sshd: {user}@{line}");
        let find = || {
            crate::process::descendants(sshd.pid())
                .into_iter()
                .map(|p| p as i32)
                .find(|p| {
                    fs::read(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|c| c.starts_with(title.as_bytes()))
                })
        };
        self.wait_for(&format!("`{title}`"), SSH_LOGIN_TIMEOUT, || {
            find().is_some()
        });
        let sshd_pid = find().unwrap();
        assert_eq!(parent(shell), sshd_pid, "the parent of {user}'s shell");
        let monitor = parent(sshd_pid);
        let title = fs::read(format!("/proc/{monitor}/cmdline")).unwrap_or_default();
        assert!(
            title.starts_with(format!("sshd: {user} [priv]").as_bytes()),
            "the parent of `sshd: {user}@{line}` is {}",
            String::from_utf8_lossy(&title)
        );
        SshLogin {
            client,
            _stdin: stdin,
            line,
            shell,
            sshd: sshd_pid,
            monitor,
            log,
            stderr,
        }
    }

    /// The events hosthogd logged so far, as JSON values.
    pub fn events(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl SshdHost for HostBox {
    /// sshd in a namespace made inside the box's: the box's /etc files
    /// and /run, its own PAM directory and login record stand-ins.
    fn sshd_command(&self, program: &str) -> Command {
        let mut ns = MountNamespace::new();
        ns.bind(self.dir.path().join("pam.d"), "/etc/pam.d");
        for record in LOGIN_RECORDS {
            let name = Path::new(record).file_name().unwrap();
            ns.bind_if_present(self.dir.path().join("logs").join(name), record);
        }
        let inner = ns.command(program);
        // nsenter execs (it forks only to enter a pid namespace), as do
        // unshare and sh: the pid spawned is sshd's.
        let mut cmd = self.in_namespace();
        cmd.arg(inner.get_program()).args(inner.get_args());
        cmd
    }

    fn privsep_dir(&self) -> PathBuf {
        self.run.join("sshd")
    }

    fn next_sshd_dir(&self) -> PathBuf {
        let n = self.sshd_count.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.path().join(format!("sshd-{n}"));
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    /// None: the box's users log in with passwords ([`HostBox::set_password`]).
    fn client_key(&self) -> Option<&Path> {
        None
    }
}

/// An empty stand-in in `dir` for the host's login record `record`, with
/// its mode and owner (sshd refuses a btmp others may read).
fn stand_in(dir: &Path, record: &str) {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(Path::new(record).file_name().unwrap());
    fs::write(&path, b"").unwrap();
    match fs::metadata(record) {
        Ok(meta) => {
            fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode() & 0o7777)).unwrap();
            std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid())).unwrap();
        }
        Err(_) => fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap(),
    }
}

/// The parent of a live process.
fn parent(pid: i32) -> i32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// True if a process with this pid exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn kill_pid(pid: i32) {
    if pid > 0 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

impl Drop for HostBox {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for t in self.tmux.drain(..) {
            if let Some(mut c) = t.client {
                let _ = c.kill();
                let _ = c.wait();
            }
            kill_pid(t.server_pid);
            let _ = fs::remove_dir_all(format!("/tmp/tmux-{}", t.user.uid));
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
