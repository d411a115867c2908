//! systemd socket activation: hosthogd serves the socket it is handed
//! (LISTEN_FDS/LISTEN_PID) instead of binding its own. Uses
//! systemd-socket-activate, which passes the socket the way systemd does.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serves_a_socket_passed_by_systemd() {
    assert!(
        std::path::Path::new(ACTIVATE).exists(),
        "this test needs {ACTIVATE} (Debian package systemd)"
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("activated.sock");
    let state = dir.path().join("state");
    // The own-socket path must not be used: point it somewhere unusable.
    let child = Command::new(ACTIVATE)
        .arg("-l")
        .arg(&socket)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_hosthogd"))
        .arg("--socket")
        .arg("/nonexistent/dir/never.sock")
        .arg("--state-dir")
        .arg(&state)
        .arg("--motd")
        .arg(dir.path().join("motd"))
        .arg("--presence")
        .arg(dir.path().join("presence.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Kill(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "no socket");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let hosthog =
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_hosthogd")).with_file_name("hosthog");
    assert!(
        hosthog.is_file(),
        "build hosthog first (cargo build -p hosthog-cli)"
    );
    let out = Command::new(hosthog)
        .args(["--json", "whoami"])
        .env("HOSTHOG_SOCKET", &socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // SAFETY: getuid has no preconditions.
    assert_eq!(id["uid"], unsafe { libc::getuid() });
    assert!(!std::path::Path::new("/nonexistent/dir/never.sock").exists());
}
