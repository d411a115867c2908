//! What the end-to-end tests need from the machine. Missing pieces fail the test with a
//! message saying what to install; nothing is skipped silently.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Programs the harness runs, by absolute path (Debian 12 locations).
pub mod tools {
    /// OpenSSH server (package openssh-server).
    pub const SSHD: &str = "/usr/sbin/sshd";
    /// OpenSSH client (package openssh-client).
    pub const SSH: &str = "/usr/bin/ssh";
    /// Key generation (package openssh-client).
    pub const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
    /// Non-interactive password entry for ssh (package sshpass).
    pub const SSHPASS: &str = "/usr/bin/sshpass";
    /// Mount namespaces (package util-linux).
    pub const UNSHARE: &str = "/usr/bin/unshare";
    /// Bind mounts inside the namespace (package mount).
    pub const MOUNT: &str = "/usr/bin/mount";
    /// Runs the bind mounts, then execs the target.
    pub const SH: &str = "/bin/sh";
    /// The console login program (package login, from shadow).
    pub const LOGIN: &str = "/usr/bin/login";
    /// SHA-512 crypt hashes for the fake shadow file (package openssl).
    pub const OPENSSL: &str = "/usr/bin/openssl";
    /// Drives a PAM service directly (package pamtester).
    pub const PAMTESTER: &str = "/usr/bin/pamtester";
    /// Shell of the test users.
    pub const BASH: &str = "/bin/bash";
}

/// Directory of the stock Linux-PAM modules (package libpam-modules).
pub const PAM_MODULE_DIR: &str = "/lib/x86_64-linux-gnu/security";

/// Fails the test unless it runs as root with every tool and stock PAM module the harness
/// uses installed.
pub fn require_e2e_environment() {
    let mut problems = Vec::new();
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        problems.push(
            "the end-to-end tests must run as root (mount namespaces, sshd, login)".to_owned(),
        );
    }
    let programs = [
        (tools::SSHD, "openssh-server"),
        (tools::SSH, "openssh-client"),
        (tools::SSH_KEYGEN, "openssh-client"),
        (tools::SSHPASS, "sshpass"),
        (tools::UNSHARE, "util-linux"),
        (tools::MOUNT, "mount"),
        (tools::SH, "dash"),
        (tools::LOGIN, "login"),
        (tools::OPENSSL, "openssl"),
        (tools::PAMTESTER, "pamtester"),
        (tools::BASH, "bash"),
    ];
    for (path, package) in programs {
        if !is_executable(Path::new(path)) {
            problems.push(format!("{path} is missing (apt-get install {package})"));
        }
    }
    for module in [
        "pam_unix.so",
        "pam_echo.so",
        "pam_deny.so",
        "pam_permit.so",
        "pam_warn.so",
    ] {
        let path = Path::new(PAM_MODULE_DIR).join(module);
        if !path.is_file() {
            problems.push(format!(
                "{} is missing (apt-get install libpam-modules)",
                path.display()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "end-to-end test prerequisites are not met:\n  - {}",
        problems.join("\n  - ")
    );
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
