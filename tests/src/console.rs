//! A console login: shadow's `/bin/login` in the test host's mount namespace (PAM service
//! `login`), on a pseudo-terminal the test reads and types into.

use std::fs::File;
use std::io::{Read, Write};
use std::process::ExitStatus;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::host::TestHost;
use crate::prereq::tools;
use crate::process::{ProcessGuard, kill_with_parent};
use crate::pty::Pty;

/// How long to wait for any expected console text.
pub const CONSOLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything the console printed, and whether the terminal has closed.
#[derive(Debug, Default)]
struct Screen {
    bytes: Vec<u8>,
    closed: bool,
}

/// `/bin/login` on a pty; stopped (with the shell it started) when dropped.
#[derive(Debug)]
pub struct Console<'h> {
    /// Borrowed so the test directory outlives the console.
    _host: &'h TestHost,
    guard: ProcessGuard,
    master: File,
    screen: Arc<(Mutex<Screen>, Condvar)>,
}

impl TestHost {
    /// Starts `/bin/login` (PAM service `login`) on a fresh pty in the namespace.
    pub fn console(&self) -> Console<'_> {
        let pty = Pty::open().expect("allocate a pty");
        let mut cmd = self.namespace().command(tools::LOGIN);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("TERM", "dumb")
            .env("LANG", "C");
        pty.attach(&mut cmd).expect("attach the pty");
        kill_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start login");
        // The child has its own copies of the slave; ours must close, or reading the
        // master would never see the terminal hang up.
        drop(cmd);
        let Pty { master, slave, .. } = pty;
        drop(slave);

        let screen = Arc::new((Mutex::new(Screen::default()), Condvar::new()));
        let mut reader = master.try_clone().expect("clone the pty master");
        let shared = Arc::clone(&screen);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // EIO once every slave descriptor is closed.
                let n = reader.read(&mut buf).unwrap_or(0);
                let (lock, cond) = &*shared;
                let mut screen = lock.lock().unwrap_or_else(|e| e.into_inner());
                if n == 0 {
                    screen.closed = true;
                    cond.notify_all();
                    return;
                }
                screen.bytes.extend_from_slice(&buf[..n]);
                cond.notify_all();
            }
        });
        Console {
            _host: self,
            guard: ProcessGuard::new(child, "login"),
            master,
            screen,
        }
    }

    /// Logs `user` in with `password` on a new console: waits for the `login:` prompt,
    /// types the name, waits for `Password:`, types the password. What follows (refusal,
    /// session text, shell) is for the caller to [`Console::expect`].
    pub fn console_login(&self, user: &str, password: &str) -> Console<'_> {
        let mut console = self.console();
        console.expect("login: ");
        console.send_line(user);
        console.expect("Password: ");
        console.send_line(password);
        console
    }
}

impl Console<'_> {
    /// login's pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Everything the console printed so far (raw: `\r\n` line ends, escape sequences).
    pub fn transcript(&self) -> String {
        let (lock, _) = &*self.screen;
        let screen = lock.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&screen.bytes).into_owned()
    }

    /// Waits until the transcript contains `needle` (anywhere, including text seen by
    /// earlier calls); returns the transcript. Fails the test on timeout or if the
    /// terminal closes first.
    pub fn expect(&self, needle: &str) -> String {
        self.expect_within(needle, CONSOLE_TIMEOUT)
    }

    /// [`Console::expect`] with an explicit timeout.
    pub fn expect_within(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.screen;
        let mut screen = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let text = String::from_utf8_lossy(&screen.bytes).into_owned();
            if text.contains(needle) {
                return text;
            }
            let now = Instant::now();
            assert!(
                !screen.closed && now < deadline,
                "console: {needle:?} did not appear ({}); transcript:\n{text}",
                if screen.closed {
                    "terminal closed"
                } else {
                    "timed out"
                }
            );
            screen = cond
                .wait_timeout(screen, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Types `line` and Enter.
    pub fn send_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\r").as_bytes())
            .and_then(|()| self.master.flush())
            .expect("type into the console");
    }

    /// Waits for login to exit (after a refusal, or after the shell exits) and for the
    /// terminal to close; returns login's exit code. Fails the test on timeout.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let status: Option<ExitStatus> = self.guard.wait_timeout(CONSOLE_TIMEOUT);
        let Some(status) = status else {
            panic!(
                "login did not exit within {CONSOLE_TIMEOUT:?}; transcript:\n{}",
                self.transcript()
            );
        };
        // Let the reader drain what was written before the hang-up.
        let (lock, cond) = &*self.screen;
        let screen = lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = cond.wait_timeout_while(screen, Duration::from_secs(5), |s| !s.closed);
        status.code()
    }
}
