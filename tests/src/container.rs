//! A real systemd: a Debian 12 root booted with `systemd-nspawn --boot`, for the tests
//! that need systemd as PID 1 (socket activation, restarts, reboots, logind, the unit's
//! sandbox). This machine does not boot systemd itself.
//!
//! The root is built once with `debootstrap --variant=minbase` ([`cached_root`], about a
//! minute and 270 MB) into a temporary directory beside the cache and renamed into place,
//! so a half-built root is never used; concurrent tests wait on a lock file. Each
//! [`Container`] boots an overlay of it (its own upper directory, so tests never change
//! the cache and may reboot and keep their changes), is held by the pid of its
//! `systemd-nspawn`, and is shut down (SIGTERM to nspawn, which halts the container)
//! and then killed with everything under it by a drop guard. Commands run inside with
//! `nsenter` into the container's init (`systemd-run --machine` would need systemd on
//! the host).
//!
//! The container shares the host's network namespace (no `--private-network`), so
//! services in it must listen on loopback on a free port ([`free_port`]).
//!
//! Missing tools or a root that cannot be built fail the test loudly.

use std::fs::{self, File};
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::process::{Captured, ProcessGuard, kill_with_parent, run, wait_until};

/// Where the booted root is cached, outside the repository.
pub const CACHE_DIR: &str = "/var/cache/hosthog-tests";
/// The cached root itself.
pub const ROOT_CACHE: &str = "/var/cache/hosthog-tests/bookworm-root";
/// The Debian mirror debootstrap fetches from.
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// What the root has besides minbase: systemd as init with logind and dbus, sshd, and the
/// tools the tests drive inside (pamtester, sshpass, tmux, ps, notify-send).
pub const PACKAGES: &str = "systemd,systemd-sysv,dbus,dbus-user-session,libpam-runtime,\
    libpam-modules,openssh-server,openssh-client,pamtester,sshpass,tmux,procps,libnotify-bin";
/// Written last into a finished root; a root without this exact content is rebuilt.
const STAMP: &str = ".hosthog-test-root";
/// Bump when the root's recipe changes.
const RECIPE: u32 = 3;

/// The test users of the root: name, uid, password (`NAME-pw`, as in the other tests).
pub const USERS: [(&str, u32); 3] = [("alice", 2001), ("bob", 2002), ("carol", 2003)];

/// PATH inside the container.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long booting until `systemctl is-system-running` answers may take.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

fn stamp_text() -> String {
    format!("recipe {RECIPE}\nbookworm minbase {PACKAGES}\n")
}

fn require_tools() {
    let mut problems = Vec::new();
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        problems.push("the systemd container tests must run as root".to_owned());
    }
    for (tool, package) in [
        ("/usr/sbin/debootstrap", "debootstrap"),
        ("/usr/bin/systemd-nspawn", "systemd-container"),
        ("/usr/bin/nsenter", "util-linux"),
        ("/usr/sbin/chroot", "coreutils"),
    ] {
        if !Path::new(tool).is_file() {
            problems.push(format!("{tool} is missing (apt-get install {package})"));
        }
    }
    assert!(
        problems.is_empty(),
        "systemd container prerequisites are not met:\n  - {}",
        problems.join("\n  - ")
    );
}

/// The cached Debian 12 root, built first if it is missing or from an older recipe.
/// Fails the test if it cannot be built (no network, no debootstrap).
pub fn cached_root() -> PathBuf {
    require_tools();
    let root = PathBuf::from(ROOT_CACHE);
    let ready = || fs::read_to_string(root.join(STAMP)).is_ok_and(|s| s == stamp_text());
    if ready() {
        return root;
    }
    fs::create_dir_all(CACHE_DIR).unwrap();
    let lock = File::create(Path::new(CACHE_DIR).join(".lock")).unwrap();
    lock.lock().unwrap();
    if ready() {
        return root;
    }
    let started = Instant::now();
    let tmp = PathBuf::from(format!("{ROOT_CACHE}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).unwrap();
    }
    let out = run(
        Command::new("/usr/sbin/debootstrap")
            .args(["--variant=minbase", &format!("--include={PACKAGES}")])
            .arg("bookworm")
            .arg(&tmp)
            .arg(MIRROR),
        None,
        Duration::from_secs(900),
    );
    if out.code != Some(0) {
        let _ = fs::remove_dir_all(&tmp);
        panic!(
            "debootstrap of the test root failed (network to {MIRROR}?)\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.stdout, out.stderr
        );
    }
    configure_root(&tmp);
    fs::write(tmp.join(STAMP), stamp_text()).unwrap();
    if root.exists() {
        let old = PathBuf::from(format!("{ROOT_CACHE}.old-{}", std::process::id()));
        fs::rename(&root, &old).unwrap();
        fs::remove_dir_all(&old).unwrap();
    }
    fs::rename(&tmp, &root).unwrap();
    eprintln!(
        "built the test root {ROOT_CACHE} in {:.0?}",
        started.elapsed()
    );
    root
}

/// What every test container starts from: a host name, sshd not started at boot (it
/// would take port 22 of the host's network; tests configure a port and start it), no
/// systemd-remount-fs, and the test users with passwords and home directories.
fn configure_root(root: &Path) {
    fs::write(root.join("etc/hostname"), "hosthog-test\n").unwrap();
    let wants = root.join("etc/systemd/system/multi-user.target.wants/ssh.service");
    if wants.exists() || wants.is_symlink() {
        fs::remove_file(&wants).unwrap();
    }
    // nspawn sets up the container's mounts; remounting / (an overlay here) by fstab is
    // not needed, and fails now and then while other containers boot, which leaves the
    // system "degraded".
    std::os::unix::fs::symlink(
        "/dev/null",
        root.join("etc/systemd/system/systemd-remount-fs.service"),
    )
    .unwrap();
    let mut script = String::from("set -e\n");
    for (user, uid) in USERS {
        script.push_str(&format!(
            "useradd --create-home --shell /bin/bash --uid {uid} {user}\n\
             echo '{user}:{user}-pw' | chpasswd\n"
        ));
    }
    script.push_str("apt-get clean\n");
    run(
        Command::new("/usr/sbin/chroot")
            .arg(root)
            .args(["/bin/sh", "-c", &script])
            .env_clear()
            .env("PATH", PATH),
        None,
        Duration::from_secs(120),
    )
    .assert_success("configuring the test root");
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A free TCP port on 127.0.0.1 (the container shares the host's network).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A bind mount from the host into the container.
#[derive(Debug, Clone)]
struct Bind {
    host: PathBuf,
    inside: PathBuf,
    read_only: bool,
}

/// Options for [`Container`]: extra bind mounts.
#[derive(Debug, Default)]
pub struct ContainerBuilder {
    binds: Vec<Bind>,
}

impl ContainerBuilder {
    /// Binds host directory `host` at `inside`, writable.
    pub fn bind(mut self, host: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> Self {
        self.binds.push(Bind {
            host: host.into(),
            inside: inside.into(),
            read_only: false,
        });
        self
    }

    /// Binds host directory `host` at `inside`, read-only.
    pub fn bind_ro(mut self, host: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> Self {
        self.binds.push(Bind {
            host: host.into(),
            inside: inside.into(),
            read_only: true,
        });
        self
    }

    /// Builds the cached root if needed, mounts an overlay of it and boots it.
    pub fn boot(self) -> Container {
        let lower = cached_root();
        let dir = tempfile::Builder::new()
            .prefix("hosthog-container-")
            .tempdir()
            .unwrap();
        let upper = dir.path().join("upper");
        let work = dir.path().join("work");
        let merged = dir.path().join("root");
        for d in [&upper, &work, &merged] {
            fs::create_dir(d).unwrap();
        }
        run(
            Command::new("/usr/bin/mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.display(),
                    upper.display(),
                    work.display()
                ))
                .arg(&merged),
            None,
            Duration::from_secs(30),
        )
        .assert_success("mounting the container's overlay");
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "hosthog-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut container = Container {
            name,
            binds: self.binds,
            merged,
            nspawn: None,
            leader: 0,
            boots: 0,
            dir,
        };
        container.start();
        container
    }
}

/// A booted Debian 12 container with systemd as its init. Dropping it shuts it down,
/// kills whatever is left by pid and unmounts its overlay.
#[derive(Debug)]
pub struct Container {
    name: String,
    binds: Vec<Bind>,
    merged: PathBuf,
    nspawn: Option<ProcessGuard>,
    leader: u32,
    boots: u32,
    // Last: removed after the overlay is unmounted in Drop.
    dir: tempfile::TempDir,
}

impl Container {
    /// Options (bind mounts) before booting.
    pub fn builder() -> ContainerBuilder {
        ContainerBuilder::default()
    }

    /// Boots a fresh container from the cached root.
    pub fn boot() -> Self {
        Self::builder().boot()
    }

    /// The machine name (also its host name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pid (on the host) of the container's init.
    pub fn leader(&self) -> u32 {
        self.leader
    }

    /// Where the container's `/` is on the host: files written under it appear inside.
    pub fn root(&self) -> &Path {
        &self.merged
    }

    /// The host path of `inside`, a path inside the container.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.merged.join(inside.trim_start_matches('/'))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("console-{}.log", self.boots))
    }

    /// The console output of the current boot (for failure messages).
    pub fn console_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn start(&mut self) {
        self.boots += 1;
        let log = File::create(self.log_path()).unwrap();
        let mut cmd = Command::new("/usr/bin/systemd-nspawn");
        cmd.arg("--quiet")
            .arg("--directory")
            .arg(&self.merged)
            .args(["--boot", "--machine", &self.name])
            // No systemd on the host: no machined to register with, no scope to allocate.
            .args(["--register=no", "--keep-unit", "--console=read-only"]);
        for bind in &self.binds {
            cmd.arg(format!(
                "--{}={}:{}",
                if bind.read_only { "bind-ro" } else { "bind" },
                bind.host.display(),
                bind.inside.display()
            ));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        kill_with_parent(&mut cmd);
        let child = cmd.spawn().expect("cannot start systemd-nspawn");
        let guard = ProcessGuard::new(child, format!("systemd-nspawn {}", self.name));
        let nspawn = guard.pid();
        self.nspawn = Some(guard);
        // The container's init is the child of nspawn in another pid namespace.
        let own_ns = fs::read_link("/proc/self/ns/pid").unwrap();
        let mut leader = None;
        wait_until(Duration::from_secs(30), || {
            leader = crate::process::descendants(nspawn).into_iter().find(|pid| {
                parent_of(*pid) == Some(nspawn)
                    && fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|ns| ns != own_ns)
            });
            leader.is_some()
        });
        self.leader = leader.unwrap_or_else(|| {
            panic!(
                "systemd-nspawn (pid {nspawn}) started no container init\n{}",
                self.console_log()
            )
        });
        self.wait_running();
    }

    /// Waits until `systemctl is-system-running` inside answers "running"; fails the test
    /// with the failed units and the console log otherwise.
    fn wait_running(&mut self) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            let out = self.sh_timeout("systemctl is-system-running --wait", BOOT_TIMEOUT);
            let state = out.stdout.trim().to_owned();
            if state == "running" {
                return;
            }
            if state == "degraded" || Instant::now() >= deadline {
                let failed = self.sh("systemctl --failed --no-pager; journalctl -b --no-pager -p warning | tail -n 40");
                panic!(
                    "container {} did not boot to \"running\" (state {state:?}, {})\n{}\n--- console ---\n{}",
                    self.name,
                    out.stderr,
                    failed.stdout,
                    self.console_log()
                );
            }
            // Too early: systemd's bus is not up yet.
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The command that runs `script` with `sh -c` inside the container as root, with a
    /// clean environment.
    pub fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("/usr/bin/nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(["/usr/bin/env", "-i"])
            .arg(format!("PATH={PATH}"))
            .args([
                "HOME=/root",
                "LANG=C.UTF-8",
                "TERM=dumb",
                "USER=root",
                "LOGNAME=root",
            ])
            .args(["/bin/sh", "-c", script]);
        cmd
    }

    /// Runs `script` with `sh -c` inside the container as root (at most 60 s).
    pub fn sh(&self, script: &str) -> Captured {
        self.sh_timeout(script, Duration::from_secs(60))
    }

    /// Like [`Container::sh`] with another deadline.
    pub fn sh_timeout(&self, script: &str, timeout: Duration) -> Captured {
        run(&mut self.command(script), None, timeout)
    }

    /// Runs `script` inside, fails the test unless it succeeds, returns its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        out.assert_success(&format!("in container {}: {script}", self.name));
        out.stdout
    }

    /// Writes `contents` to `inside` (a path in the container), creating parent
    /// directories.
    pub fn write(&self, inside: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(inside);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut file = File::create(&path).unwrap();
        file.write_all(contents.as_ref()).unwrap();
    }

    /// Waits for the nspawn process to exit by itself (after `systemctl poweroff` or
    /// `reboot` inside) and returns its exit code (133 for a reboot).
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut guard = self.nspawn.take().expect("container is running");
        let status = guard.wait_timeout(timeout).unwrap_or_else(|| {
            panic!(
                "container {} did not stop within {timeout:?}\n{}",
                self.name,
                self.console_log()
            )
        });
        status.code()
    }

    /// `systemctl reboot` inside, then boots the same root again (nspawn ends on a
    /// reboot with code 133; a supervisor would start it again, as this does).
    pub fn reboot(&mut self) {
        // Returns before the container is down; its exit is what we wait for.
        let _ = self.sh("systemctl reboot");
        let code = self.wait_exit(Duration::from_secs(60));
        assert_eq!(code, Some(133), "nspawn's exit code after a reboot");
        self.start();
    }

    /// `systemctl poweroff` inside, then boots the same root again.
    pub fn poweroff_and_boot(&mut self) {
        let _ = self.sh("systemctl poweroff");
        let code = self.wait_exit(Duration::from_secs(60));
        assert_eq!(code, Some(0), "nspawn's exit code after a poweroff");
        self.start();
    }

    /// Shuts the container down: SIGTERM makes nspawn halt it in order; after 30 s, or if
    /// that fails, the guard kills nspawn and everything under it.
    fn shutdown(&mut self) {
        if let Some(mut guard) = self.nspawn.take() {
            if guard.try_wait().is_none() {
                if let Ok(pid) = libc::pid_t::try_from(guard.pid()) {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
                guard.wait_timeout(Duration::from_secs(30));
            }
            drop(guard);
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.shutdown();
        let mut umounted = false;
        for _ in 0..50 {
            let status = Command::new("/usr/bin/umount")
                .arg(&self.merged)
                .stderr(Stdio::null())
                .status();
            if status.is_ok_and(|s| s.success()) {
                umounted = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !umounted {
            // Never let TempDir delete through a mounted overlay into the cache.
            let _ = Command::new("/usr/bin/umount")
                .arg("--lazy")
                .arg(&self.merged)
                .status();
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The repository's top directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Debian package, built with `scripts/build-deb --from` out of the binaries this
/// cargo run built (`hosthog` and `hosthogd` in the profile directory, as
/// `cargo test --workspace` or `cargo build -p hosthog-cli -p hosthogd` leave them, and
/// the PAM module of [`crate::pam_module_path`]) into a temporary directory, which goes
/// when the returned guard is dropped. No test runs cargo itself.
pub fn package() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("hosthog-deb-")
        .tempdir()
        .unwrap();
    let from = dir.path().join("bin");
    let out = dir.path().join("out");
    fs::create_dir(&from).unwrap();
    for bin in ["hosthog", "hosthogd"] {
        let built = crate::target_profile_dir().join(bin);
        assert!(
            built.is_file(),
            "{} is missing: build it first (cargo build -p hosthog-cli -p hosthogd; \
                 cargo test --workspace does)",
            built.display()
        );
        fs::copy(&built, from.join(bin)).unwrap();
    }
    fs::copy(crate::pam_module_path(), from.join("libpam_hosthog.so")).unwrap();
    run(
        Command::new(repo().join("scripts/build-deb"))
            .arg("--out")
            .arg(&out)
            .arg("--from")
            .arg(&from),
        None,
        Duration::from_secs(180),
    )
    .assert_success("scripts/build-deb");
    let deb = fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("scripts/build-deb wrote no .deb");
    (dir, deb)
}

impl Container {
    /// `systemd-analyze security`'s overall exposure score of `unit` (printed,
    /// with the whole report on failure).
    pub fn exposure(&self, unit: &str) -> f64 {
        let report = self.sh_ok(&format!("systemd-analyze security --no-pager {unit}"));
        let overall = report
            .lines()
            .find(|l| l.contains(&format!("Overall exposure level for {unit}")))
            .unwrap_or_else(|| panic!("no overall exposure in:\n{report}"));
        eprintln!("{overall}");
        overall
            .split(": ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no score in {overall:?}"))
    }

    /// Copies the package into the container and installs it with
    /// `apt-get install ./hosthog_*.deb`; returns what apt printed.
    pub fn install_package(&self) -> Captured {
        let out = self.try_install_package();
        out.assert_success("apt-get install ./hosthog_*.deb");
        out
    }

    /// Like [`Container::install_package`], but returns apt's result whatever it is.
    pub fn try_install_package(&self) -> Captured {
        let (_dir, deb) = package();
        let name = deb.file_name().unwrap().to_str().unwrap().to_owned();
        fs::copy(&deb, self.path(&format!("/root/{name}"))).unwrap();
        self.sh_timeout(
            &format!("DEBIAN_FRONTEND=noninteractive apt-get install -y /root/{name} 2>&1"),
            Duration::from_secs(180),
        )
    }

    /// Starts the container's sshd (by systemd, ssh.service) on 127.0.0.1:`port`, and
    /// writes `/root/known_hosts` for it, so clients print nothing but what the server
    /// sends.
    pub fn start_sshd(&self, port: u16) {
        self.write(
            "/etc/ssh/sshd_config.d/hosthog-test.conf",
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nPasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\nPrintMotd no\n"
            ),
        );
        self.sh_ok(&format!(
            "systemctl start ssh.service && \
             echo \"[127.0.0.1]:{port} $(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)\" \
             >/root/known_hosts"
        ));
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "sshd in the container does not listen on 127.0.0.1:{port}"
        );
    }

    /// The shell command that logs `user` in over ssh with a password and runs `command`
    /// (`tty`: with a pseudo-terminal, as an interactive login has).
    pub fn ssh_command(&self, port: u16, user: &str, tty: bool, command: &str) -> String {
        format!(
            "sshpass -p {user}-pw ssh {} -p {port} -o UserKnownHostsFile=/root/known_hosts \
             -o StrictHostKeyChecking=yes -o PubkeyAuthentication=no \
             -o PreferredAuthentications=password {user}@127.0.0.1 {}",
            if tty { "-tt" } else { "-T" },
            shell_quote(command)
        )
    }
}

/// `text` as one single-quoted shell word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}
