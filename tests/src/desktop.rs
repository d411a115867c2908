//! A desktop session of a test user in a host box
//! ([`crate::daemon::host::HostBox`]): a real session bus (`dbus-daemon`)
//! at `/run/user/UID/bus` (the box's own /run, where hosthogd looks), a
//! headless X server (`Xvfb`) with a real notification server on it
//! (`dunst`, owning `org.freedesktop.Notifications`), and `dbus-monitor`
//! on that bus recording every `Notify` call and the server's answer, each
//! stamped with the time it passed the bus.
//!
//! The bus has no service directories: nothing is started on demand, so a
//! notification reaches dunst or nobody. Xvfb takes the first free display
//! (`-displayfd`), with its lock file and socket in the host's /tmp as
//! every X server has them; it is stopped with SIGTERM, which removes both.
//! Every process runs in a session of its own (no controlling terminal:
//! hosthogd would take the test runner's terminal for the user's) and is
//! stopped by pid on drop.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::daemon::host::HostBox;

/// What a desktop session needs, with the Debian package of each.
pub const TOOLS: [(&str, &str); 8] = [
    ("/usr/bin/dbus-daemon", "dbus-daemon"),
    ("/usr/bin/dbus-monitor", "dbus-bin"),
    ("/usr/bin/dbus-send", "dbus-bin"),
    ("/usr/bin/Xvfb", "xvfb"),
    ("/usr/bin/dunst", "dunst"),
    ("/usr/bin/dunstctl", "dunst"),
    ("/usr/bin/busctl", "systemd"),
    ("/usr/bin/notify-send", "libnotify-bin"),
];

/// How long each part may take to start.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Fails the test unless every tool of [`TOOLS`] is installed, naming the
/// package that is missing.
pub fn require_tools() {
    for (tool, package) in TOOLS {
        assert!(
            Path::new(tool).exists(),
            "this test needs {tool}: install the Debian package {package} (scripts/setup-dev does)"
        );
    }
}

/// Processes of a session, stopped in reverse order on drop: SIGTERM, and
/// SIGKILL for what is still there after 3 s.
#[derive(Default)]
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        while let Some(mut child) = self.0.pop() {
            let pid = child.id() as i32;
            // SAFETY: kill has no memory-safety preconditions; the child is
            // ours and not yet reaped, so the pid is still its.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `program` as `user` in the box, with `env` added, in a new session.
fn command(h: &HostBox, user: &str, program: &str, env: &[(&str, String)]) -> Command {
    let mut cmd = h.as_user(user, program);
    for (key, value) in env {
        cmd.env(key, value);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The first line `child` prints (how Xvfb and dbus-daemon say they are
/// ready); the rest is read and dropped so it never blocks on the pipe.
fn first_line(child: &mut Child, what: &str, log: &Path) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    match rx.recv_timeout(START_LIMIT) {
        Ok(line) if !line.trim().is_empty() => line.trim().to_string(),
        _ => panic!(
            "{what} did not start; it said:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

/// A log file in `user`'s home for what a process prints.
fn log_file(h: &HostBox, user: &str, name: &str) -> (PathBuf, fs::File) {
    let path = h.home(user).join(name);
    let file = fs::File::create(&path).unwrap();
    (path, file)
}

/// A headless X server of a test user: to hosthogd, an X session.
pub struct XServer {
    /// `:N`.
    pub display: String,
    /// Removed after Xvfb if it was killed before it could remove them.
    leftovers: Vec<PathBuf>,
    procs: Procs,
}

impl XServer {
    /// Starts `Xvfb` as `user` on the first free display and waits until
    /// it accepts clients.
    pub fn start(h: &HostBox, user: &str) -> XServer {
        require_tools();
        // Where every X server puts its socket; made as the system makes
        // it (root's, sticky, world-writable) if this host has none yet,
        // so a test user's Xvfb never makes it its own.
        let sockets = Path::new("/tmp/.X11-unix");
        if !sockets.exists() {
            fs::create_dir(sockets).unwrap();
            fs::set_permissions(sockets, fs::Permissions::from_mode(0o1777)).unwrap();
        }
        let (log, file) = log_file(h, user, "xvfb.log");
        let mut procs = Procs::default();
        let mut child = command(h, user, "/usr/bin/Xvfb", &[])
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "640x480x24",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .unwrap();
        let line = first_line(&mut child, "Xvfb", &log);
        procs.0.push(child);
        let n: u32 = line
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb gave the display {line:?}"));
        XServer {
            display: format!(":{n}"),
            leftovers: vec![
                PathBuf::from(format!("/tmp/.X{n}-lock")),
                PathBuf::from(format!("/tmp/.X11-unix/X{n}")),
            ],
            procs,
        }
    }
}

impl Drop for XServer {
    fn drop(&mut self) {
        let pid = self.procs.0.first().map(|c| c.id());
        drop(std::mem::take(&mut self.procs));
        // A lock file still naming our (now gone) Xvfb: it was killed.
        let ours = fs::read_to_string(&self.leftovers[0])
            .is_ok_and(|l| pid.is_some_and(|p| l.trim() == p.to_string()));
        if ours {
            for path in &self.leftovers {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// One `Notify` call seen on the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub app_name: String,
    pub summary: String,
    pub body: String,
    /// When the call passed the bus (Unix time, seconds).
    pub sent: f64,
    /// When the notification server's answer (the notification's id)
    /// passed the bus; `None` without an answer yet, or for an error.
    pub accepted: Option<f64>,
}

/// A desktop session of a test user (see the module documentation).
pub struct Desktop {
    pub user: String,
    /// The bus socket as hosthogd sees it (`/run/user/UID/bus`).
    pub bus: PathBuf,
    /// `DBUS_SESSION_BUS_ADDRESS`, `XDG_RUNTIME_DIR` and `DISPLAY` of the
    /// session.
    pub env: Vec<(&'static str, String)>,
    monitor_log: PathBuf,
    // Dropped first: dbus-monitor, dunst, the bus; then the X server.
    procs: Procs,
    pub x: XServer,
}

impl Desktop {
    /// Starts the session of `user` and waits until dunst owns
    /// `org.freedesktop.Notifications` and dbus-monitor is recording.
    pub fn start(h: &HostBox, user: &str) -> Desktop {
        require_tools();
        let uid = h.user(user).uid;
        let runtime = h.run.join(format!("user/{uid}"));
        fs::create_dir_all(&runtime).unwrap();
        std::os::unix::fs::chown(&runtime, Some(uid), Some(uid)).unwrap();
        fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
        let inside = PathBuf::from(format!("/run/user/{uid}"));
        let bus = inside.join("bus");
        let x = XServer::start(h, user);
        let mut procs = Procs::default();

        let config = h.home(user).join("session-bus.conf");
        fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig>\n  <type>session</type>\n  <listen>unix:path={}</listen>\n  \
                 <auth>EXTERNAL</auth>\n  <policy context=\"default\">\n    \
                 <allow send_destination=\"*\" eavesdrop=\"true\"/>\n    \
                 <allow eavesdrop=\"true\"/>\n    <allow own=\"*\"/>\n  </policy>\n</busconfig>\n",
                bus.display()
            ),
        )
        .unwrap();
        let (log, file) = log_file(h, user, "dbus-daemon.log");
        let mut child = command(h, user, "/usr/bin/dbus-daemon", &[])
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--nosyslog", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .unwrap();
        let address = first_line(&mut child, "dbus-daemon", &log);
        procs.0.push(child);
        let expected = format!("unix:path={},guid=", bus.display());
        assert!(address.starts_with(&expected), "the bus is at {address}");

        let env = vec![
            (
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", bus.display()),
            ),
            ("XDG_RUNTIME_DIR", inside.display().to_string()),
            ("DISPLAY", x.display.clone()),
        ];
        let (dunst_log, file) = log_file(h, user, "dunst.log");
        let dunst = command(h, user, "/usr/bin/dunst", &env)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        procs.0.push(dunst);
        let mut desktop = Desktop {
            user: user.to_string(),
            bus,
            env,
            monitor_log: h.home(user).join("dbus-monitor.log"),
            procs,
            x,
        };
        let deadline = Instant::now() + START_LIMIT;
        while !desktop.server_is_up(h) {
            assert!(
                Instant::now() < deadline,
                "dunst did not take org.freedesktop.Notifications; it said:\n{}",
                fs::read_to_string(&dunst_log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        let file = fs::File::create(&desktop.monitor_log).unwrap();
        let monitor = command(h, user, "/usr/bin/dbus-monitor", &desktop.env)
            .args([
                "--session",
                "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
                "type='method_return'",
                "type='error'",
            ])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        desktop.procs.0.push(monitor);
        // It becomes a monitor by giving up its name on the bus.
        let deadline = Instant::now() + START_LIMIT;
        while !fs::read_to_string(&desktop.monitor_log)
            .unwrap_or_default()
            .contains("member=NameLost")
        {
            assert!(Instant::now() < deadline, "dbus-monitor did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        desktop
    }

    /// A command running `program ARGS` in this session (as its user).
    pub fn command(&self, h: &HostBox, program: &str, args: &[&str]) -> Command {
        let mut cmd = command(h, &self.user, program, &self.env);
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// True if something owns `org.freedesktop.Notifications` on the bus.
    fn server_is_up(&self, h: &HostBox) -> bool {
        let out = self
            .command(
                h,
                "/usr/bin/dbus-send",
                &[
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.Notifications",
                ],
            )
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("boolean true")
    }

    /// Every `Notify` call seen on the bus so far, in order.
    pub fn notifications(&self) -> Vec<Notification> {
        parse_monitor(&fs::read_to_string(&self.monitor_log).unwrap_or_default())
    }

    /// The notifications dunst has closed, newest first, as (app name,
    /// summary, body) from its own record (`dunstctl history`); the ones
    /// on screen are closed first, so this is every one it accepted.
    pub fn history(&self, h: &HostBox) -> Vec<(String, String, String)> {
        let close = self
            .command(h, "/usr/bin/dunstctl", &["close-all"])
            .output()
            .unwrap();
        assert!(close.status.success(), "dunstctl close-all: {close:?}");
        let out = self
            .command(h, "/usr/bin/dunstctl", &["history"])
            .output()
            .unwrap();
        assert!(out.status.success(), "dunstctl history: {out:?}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("dunstctl history: {e}: {out:?}"));
        let field = |n: &serde_json::Value, key: &str| {
            n[key]["data"].as_str().unwrap_or_default().to_string()
        };
        json["data"][0]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|n| (field(n, "appname"), field(n, "summary"), field(n, "body")))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The `Notify` calls in what `dbus-monitor` printed, each with the time
/// of its answer from the server (a method return from the destination of
/// the call to its sender, for its serial). A call still being printed is
/// left out.
pub fn parse_monitor(log: &str) -> Vec<Notification> {
    let mut messages: Vec<Message<'_>> = Vec::new();
    for line in log.lines() {
        if let Some(kind) = ["method call ", "method return ", "error ", "signal "]
            .iter()
            .find(|k| line.starts_with(**k))
        {
            messages.push(Message {
                kind: kind.trim_end(),
                fields: line[kind.len()..]
                    .split_whitespace()
                    .filter_map(|f| f.trim_end_matches(';').split_once('='))
                    .collect(),
                args: Vec::new(),
            });
        } else if let Some(arg) = line.strip_prefix("   ")
            && !arg.starts_with(' ')
            && let Some(last) = messages.last_mut()
        {
            last.args.push(arg);
        }
    }
    let string = |arg: Option<&&str>| {
        arg.and_then(|a| a.strip_prefix("string \""))
            .and_then(|a| a.strip_suffix('"'))
            .map(str::to_string)
    };
    let mut out = Vec::new();
    for call in &messages {
        if call.kind != "method call" || call.get("member") != "Notify" {
            continue;
        }
        let args = &call.args;
        let (Some(app_name), Some(summary), Some(body)) = (
            string(args.first()),
            string(args.get(3)),
            string(args.get(4)),
        ) else {
            continue;
        };
        let accepted = messages
            .iter()
            .find(|m| {
                m.kind == "method return"
                    && m.get("reply_serial") == call.get("serial")
                    && m.get("sender") == call.get("destination")
                    && m.get("destination") == call.get("sender")
                    && m.args.first().is_some_and(|a| a.starts_with("uint32 "))
            })
            .and_then(|m| m.get("time").parse().ok());
        out.push(Notification {
            app_name,
            summary,
            body,
            sent: call.get("time").parse().unwrap_or_default(),
            accepted,
        });
    }
    out
}

/// One message as dbus-monitor printed it.
struct Message<'a> {
    /// `method call`, `method return`, `error` or `signal`.
    kind: &'a str,
    /// `time`, `sender`, `destination`, `serial`, `reply_serial`, `member`...
    fields: Vec<(&'a str, &'a str)>,
    /// Its arguments, one line each (nested values left out).
    args: Vec<&'a str>,
}

impl Message<'_> {
    fn get(&self, key: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What dbus-monitor 1.14 printed for one `notify-send` to dunst 1.9.
    const LOG: &str = r#"signal time=1796031992.413978 sender=org.freedesktop.DBus -> destination=:1.0 serial=4 path=/org/freedesktop/DBus; interface=org.freedesktop.DBus; member=NameLost
   string ":1.0"
method return time=1796031993.424623 sender=:1.1 -> destination=:1.2 serial=3 reply_serial=7
   string "dunst"
method call time=1796031993.425425 sender=:1.2 -> destination=:1.1 serial=9 path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; member=Notify
   string "hosthog"
   uint32 0
   string ""
   string "hosthog"
   string "a &amp; b "q" &lt;x&gt; end"
   array [
   ]
   array [
      dict entry(
         string "urgency"
         variant             byte 1
      )
   ]
   int32 -1
method return time=1796031993.426254 sender=org.freedesktop.DBus -> destination=:1.2 serial=8 reply_serial=9
method return time=1796031993.425925 sender=:1.1 -> destination=:1.2 serial=5 reply_serial=9
   uint32 2
method call time=1796031994.5 sender=:1.3 -> destination=:1.1 serial=9 path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; member=Notify
   string "hosthog"
   uint32 0
"#;

    #[test]
    fn notify_calls_are_paired_with_the_servers_answer() {
        assert_eq!(
            parse_monitor(LOG),
            vec![Notification {
                app_name: "hosthog".into(),
                summary: "hosthog".into(),
                body: "a &amp; b \"q\" &lt;x&gt; end".into(),
                sent: 1796031993.425425,
                accepted: Some(1796031993.425925),
            }]
        );
    }
}
