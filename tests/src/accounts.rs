//! Test accounts and the fake `passwd`, `group` and `shadow` files that describe them.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::prereq::tools;
use crate::process::{COMMAND_TIMEOUT, run};

/// The privilege-separation account of Debian 12's OpenSSH 9.2, used when the host has no
/// `sshd` line in `/etc/passwd` to copy.
const DEBIAN_SSHD_ENTRY: &str = "sshd:x:102:65534::/run/sshd:/usr/sbin/nologin";

/// Days since 1970 for the "last password change" shadow field (0 would force a change).
const LAST_CHANGE_DAYS: u32 = 19_000;

/// An account to create in the fake `/etc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// Login name.
    pub name: String,
    /// User id; the primary group has the same name and id.
    pub uid: u32,
    /// Clear-text password, hashed with SHA-512 crypt into the fake shadow file.
    pub password: String,
}

impl UserSpec {
    /// A user whose primary group shares its name and id.
    pub fn new(name: &str, uid: u32, password: &str) -> Self {
        Self {
            name: name.to_owned(),
            uid,
            password: password.to_owned(),
        }
    }
}

/// A created account: home directory inside the test directory, with
/// `~/.ssh/authorized_keys` holding the test client key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Clear-text password.
    pub password: String,
    /// Home directory (inside the test directory).
    pub home: PathBuf,
}

/// A supplementary group for the fake `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Member user names.
    pub members: Vec<String>,
}

/// The default test accounts: root (with a home inside the test directory, so its
/// `authorized_keys` never touches `/root`), alice 2001, bob 2002 and carol 2003.
pub fn default_users() -> Vec<UserSpec> {
    vec![
        UserSpec::new("root", 0, "root-pw"),
        UserSpec::new("alice", 2001, "alice-pw"),
        UserSpec::new("bob", 2002, "bob-pw"),
        UserSpec::new("carol", 2003, "carol-pw"),
    ]
}

/// A SHA-512 crypt hash (`$6$...`) of `password` with a random salt, from `openssl passwd`.
pub fn sha512_crypt(password: &str) -> String {
    let out = run(
        Command::new(tools::OPENSSL).args(["passwd", "-6", "-stdin"]),
        Some(format!("{password}\n").as_bytes()),
        COMMAND_TIMEOUT,
    );
    out.assert_success("openssl passwd -6");
    let hash = out.stdout.trim().to_owned();
    assert!(hash.starts_with("$6$"), "unexpected crypt hash {hash:?}");
    hash
}

/// The host's own `sshd` privilege-separation line, so the fake file matches what the
/// installed sshd expects.
pub fn sshd_entry() -> String {
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("sshd:"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| DEBIAN_SSHD_ENTRY.to_owned())
}

/// The primary group id of the `sshd` account line.
pub fn sshd_gid(entry: &str) -> String {
    entry.split(':').nth(3).unwrap_or("65534").to_owned()
}

/// Contents of the fake `/etc/passwd`.
pub fn passwd_file(users: &[TestUser]) -> String {
    let mut text = String::new();
    for user in users.iter().filter(|u| u.uid == 0) {
        text += &format!("root:x:0:0:root:{}:{}\n", user.home.display(), tools::BASH);
    }
    text += &sshd_entry();
    text += "\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    for user in users.iter().filter(|u| u.uid != 0) {
        text += &format!(
            "{}:x:{}:{}:{} (hosthog test):{}:{}\n",
            user.name,
            user.uid,
            user.gid,
            user.name,
            user.home.display(),
            tools::BASH
        );
    }
    text
}

/// Contents of the fake `/etc/group`.
pub fn group_file(users: &[TestUser], groups: &[GroupSpec]) -> String {
    let sshd_gid = sshd_gid(&sshd_entry());
    let mut text = String::from("root:x:0:\n");
    if sshd_gid != "65534" && sshd_gid != "0" {
        text += &format!("sshd:x:{sshd_gid}:\n");
    }
    text += "nogroup:x:65534:\n";
    for user in users.iter().filter(|u| u.uid != 0) {
        text += &format!("{}:x:{}:\n", user.name, user.gid);
    }
    for group in groups {
        text += &format!(
            "{}:x:{}:{}\n",
            group.name,
            group.gid,
            group.members.join(",")
        );
    }
    text
}

/// Contents of the fake `/etc/shadow`, with real SHA-512 crypt hashes.
pub fn shadow_file(users: &[TestUser]) -> String {
    let line = |name: &str, hash: &str| format!("{name}:{hash}:{LAST_CHANGE_DAYS}:0:99999:7:::\n");
    let mut text = String::new();
    for user in users.iter().filter(|u| u.uid == 0) {
        text += &line("root", &sha512_crypt(&user.password));
    }
    text += &line("sshd", "*");
    text += &line("nobody", "*");
    for user in users.iter().filter(|u| u.uid != 0) {
        text += &line(&user.name, &sha512_crypt(&user.password));
    }
    text
}
