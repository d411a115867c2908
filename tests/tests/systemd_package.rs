//! The Debian package under a real systemd: a fresh Debian 12 root booted with
//! `systemd-nspawn --boot` (tests/src/container.rs). `apt install ./hosthog_*.deb`
//! enables the socket, the first `hosthog` call activates hosthogd, the PAM profile is
//! in the stacks and root still passes them; `apt purge` gives the stacks back byte for
//! byte; a reservation refuses bob over the container's own sshd; the daemon survives
//! `kill -9` and a reboot with its reservations.
//!
//! Needs the debug binaries (`cargo build -p hosthog-cli -p hosthogd`, which
//! `cargo test --workspace` does) and the cached root (built on first use; network to
//! deb.debian.org).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hosthog_tests::container::{Container, free_port};
use hosthog_tests::process::wait_until;
use hosthog_tests::table::now;

const PAPER: &str = "paper benchmarks";

/// The account phase of `service` for `user`, through pamtester inside the container:
/// (exit code, output).
fn account(c: &Container, service: &str, user: &str) -> (Option<i32>, String) {
    let out = c.sh(&format!("pamtester {service} {user} acct_mgmt 2>&1"));
    (out.code, out.stdout)
}

fn assert_refused(c: &Container, user: &str) {
    let (code, out) = account(c, "sshd", user);
    assert!(
        code != Some(0) && out.contains("Permission denied"),
        "{user} is not refused: {code:?} {out}"
    );
}

/// root passes the account phase of every service in the container's /etc/pam.d (login,
/// sshd, su, su-l, runuser, passwd, chsh, other, ...).
fn assert_root_passes(c: &Container) {
    let mut services: Vec<String> = std::fs::read_dir(c.path("/etc/pam.d"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("common-"))
        .collect();
    services.sort();
    assert!(services.len() >= 10, "PAM services: {services:?}");
    for service in &services {
        let (code, out) = account(c, service, "root");
        assert_eq!(
            code,
            Some(0),
            "root fails the {service} account stack: {out}"
        );
    }
}

fn common_pam_files(c: &Container) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(c.path("/etc/pam.d"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("common-"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "common-* PAM files: {files:?}");
    files
}

fn unit_state(c: &Container, unit: &str) -> String {
    c.sh(&format!("systemctl is-active {unit}"))
        .stdout
        .trim()
        .to_owned()
}

/// alice reserves the host exclusively for two hours; returns (id, end).
fn alice_reserves(c: &Container) -> (String, i64) {
    let json = c.sh_ok(&format!(
        "runuser -u alice -- hosthog reserve --exclusive --for 2h --json {PAPER}"
    ));
    let field = |name: &str| -> String {
        let at = json
            .find(&format!("\"{name}\": "))
            .unwrap_or_else(|| panic!("no {name} in {json}"));
        json[at + name.len() + 4..]
            .split([',', '\n'])
            .next()
            .unwrap()
            .trim_matches('"')
            .to_owned()
    };
    (field("id"), field("end").parse().unwrap())
}

fn main_pid(c: &Container) -> u32 {
    c.sh_ok("systemctl show --value -p MainPID hosthogd.service")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn in_container_package_installs_activates_and_purges_exactly() {
    let c = Container::boot();
    let before = common_pam_files(&c);
    assert_root_passes(&c);

    let apt = c.install_package();
    for line in [
        "hosthog: enabled and started hosthogd.socket",
        "hosthog: enabled the PAM profile (pam_hosthog in /etc/pam.d/common-account)",
        "hosthog: checked: root passes the account phase of the login, sshd and su stacks",
    ] {
        assert!(
            apt.stdout.contains(line),
            "{line:?} missing:\n{}",
            apt.stdout
        );
    }
    // The socket listens; nothing has started the daemon yet.
    assert_eq!(unit_state(&c, "hosthogd.socket"), "active");
    assert_eq!(
        c.sh_ok("systemctl is-enabled hosthogd.socket").trim(),
        "enabled"
    );
    assert_eq!(unit_state(&c, "hosthogd.service"), "inactive");
    c.sh_ok("test -S /run/hosthog/hosthogd.sock");
    // The first call activates it.
    assert_eq!(
        c.sh_ok("runuser -u bob -- hosthog list"),
        "No reservations.\n"
    );
    assert_eq!(unit_state(&c, "hosthogd.service"), "active");
    // The profile is enabled, first in the account stack, and root passes every stack.
    let account_stack = std::fs::read_to_string(c.path("/etc/pam.d/common-account")).unwrap();
    assert!(
        account_stack.contains("account\trequisite\tpam_hosthog.so"),
        "{account_stack}"
    );
    assert!(
        std::fs::read_to_string(c.path("/var/lib/pam/seen"))
            .unwrap()
            .lines()
            .any(|l| l == "hosthog")
    );
    assert_root_passes(&c);
    assert_eq!(account(&c, "sshd", "bob").0, Some(0));

    let out = c.sh_timeout(
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y hosthog 2>&1",
        Duration::from_secs(120),
    );
    out.assert_success("apt-get purge hosthog");
    assert!(
        out.stdout
            .contains("hosthog: removed the PAM profile from the stacks"),
        "{}",
        out.stdout
    );
    assert_eq!(common_pam_files(&c), before, "PAM stacks after the purge");
    assert_root_passes(&c);
    assert_eq!(unit_state(&c, "hosthogd.socket"), "inactive");
    assert_eq!(unit_state(&c, "hosthogd.service"), "inactive");
    c.sh_ok("! test -e /run/hosthog");
    for gone in [
        "/var/lib/hosthog",
        "/etc/hosthog",
        "/usr/lib/systemd/system/hosthogd.service",
        "/etc/systemd/system/sockets.target.wants/hosthogd.socket",
    ] {
        assert!(!c.path(gone).exists(), "{gone} is left after the purge");
    }
}

#[test]
fn in_container_reservation_refuses_bob_over_the_containers_sshd() {
    let c = Container::boot();
    c.install_package();
    let port = free_port();
    c.start_sshd(port);
    let (id, end) = alice_reserves(&c);

    // What the module says, in the container's time zone (UTC), for a refusal at `t`.
    let message = |t: i64| {
        format!(
            "hosthog: this host is reserved exclusively by alice until {} for \"{PAPER}\".\n\
             bob is not on that reservation, so this login is refused.\n\
             To get in, ask alice to run: hosthog share {} bob\n\
             If it is urgent and alice cannot be reached, ask an admin of this host.",
            libhosthog::format_instant(end, t, &jiff::tz::TimeZone::UTC),
            &id[..8]
        )
    };
    for tty in [false, true] {
        let t0 = now();
        let out = c.sh(&c.ssh_command(port, "bob", tty, "echo should-not-run"));
        let t1 = now();
        let expected: Vec<String> = [t0, t1]
            .iter()
            .map(|t| {
                format!(
                    "{}\nConnection closed by 127.0.0.1 port {port}\r\n",
                    message(*t)
                )
            })
            .collect();
        assert_eq!(out.code, Some(255), "bob, tty {tty}: {out:?}");
        assert_eq!(out.stdout, "", "bob, tty {tty}");
        assert!(
            expected.contains(&out.stderr),
            "bob, tty {tty}: stderr {:?}\nexpected {:?}",
            out.stderr,
            expected[0]
        );
    }
    // The holder gets in; so does root, and bob's refusal is in the journal.
    let out = c.sh(&c.ssh_command(port, "alice", false, "echo alice-in"));
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "alice-in\n"),
        "{out:?}"
    );
    let journal = c.sh_ok("journalctl --no-pager -b -t sshd | grep -c 'pam_hosthog' || true");
    assert!(
        journal.trim().parse::<u32>().unwrap_or(0) >= 2,
        "pam_hosthog lines of sshd in the journal: {journal}"
    );
}

#[test]
fn in_container_killed_daemon_comes_back_with_its_reservations() {
    let c = Container::boot();
    c.install_package();
    let (id, _) = alice_reserves(&c);
    let first = main_pid(&c);
    assert_ne!(first, 0, "hosthogd runs after the reservation");
    c.sh_ok(&format!("kill -9 {first}"));
    // Restart=on-failure starts it again (the socket would too, on the next call).
    let restarted = wait_until(Duration::from_secs(20), || {
        let pid = main_pid(&c);
        pid != 0 && pid != first
    });
    assert!(
        restarted,
        "hosthogd was not restarted after kill -9:\n{}",
        c.sh("systemctl status --no-pager hosthogd.service").stdout
    );
    assert_eq!(
        c.sh_ok("systemctl show --value -p NRestarts hosthogd.service")
            .trim(),
        "1"
    );
    let list = c.sh_ok("runuser -u bob -- hosthog list");
    assert!(
        list.contains(&id[..8]) && list.contains(PAPER),
        "after kill -9: {list}"
    );
    assert_refused(&c, "bob");
    assert_eq!(account(&c, "sshd", "alice").0, Some(0));
}

#[test]
fn in_container_reboot_keeps_reservations_and_the_socket_activates_the_daemon() {
    let mut c = Container::boot();
    c.install_package();
    let (id, _) = alice_reserves(&c);
    c.reboot();
    assert_eq!(unit_state(&c, "hosthogd.socket"), "active");
    // Nothing asked for it yet: the daemon comes back on the first call.
    let before_call = unit_state(&c, "hosthogd.service");
    let list = c.sh_ok("runuser -u carol -- hosthog list");
    assert!(
        list.contains(&id[..8]) && list.contains(PAPER),
        "after a reboot: {list}"
    );
    assert_eq!(unit_state(&c, "hosthogd.service"), "active");
    eprintln!("hosthogd.service right after the reboot: {before_call}");
    assert_refused(&c, "bob");
    assert_root_passes(&c);
    // And once more with a full poweroff.
    c.poweroff_and_boot();
    let list = c.sh_ok("runuser -u carol -- hosthog list");
    assert!(list.contains(&id[..8]), "after a poweroff: {list}");
}

/// The package's own root-lockout check: if root would fail an account stack once the
/// profile is in, postinst takes the profile out again and fails the installation.
/// (root is always exempt from pam_hosthog, so a stack that refuses root anyway stands
/// in for a broken PAM change here.)
#[test]
fn in_container_package_takes_the_profile_out_again_if_root_would_be_locked_out() {
    let c = Container::boot();
    let login = std::fs::read_to_string(c.path("/etc/pam.d/login")).unwrap();
    c.write(
        "/etc/pam.d/login",
        format!("account requisite pam_deny.so\n{login}"),
    );
    let before = common_pam_files(&c);
    let out = c.try_install_package();
    assert_ne!(
        out.code,
        Some(0),
        "apt-get install succeeded:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "hosthog: root would fail the account phase of: login; the hosthog PAM profile \
             was taken out again."
        ),
        "{}",
        out.stdout
    );
    assert_eq!(
        common_pam_files(&c),
        before,
        "PAM stacks after the failed check"
    );
    // Fixed, the configuration finishes and the profile goes in.
    c.write("/etc/pam.d/login", login);
    let out = c.sh_timeout(
        "DEBIAN_FRONTEND=noninteractive dpkg --configure -a 2>&1",
        Duration::from_secs(120),
    );
    out.assert_success("dpkg --configure -a");
    assert!(
        out.stdout.contains(
            "hosthog: checked: root passes the account phase of the login, sshd and su stacks"
        ),
        "{}",
        out.stdout
    );
    assert_root_passes(&c);
}

/// Removing the package while an admin's own PAM line still loads the module
/// (pam.d/README.md tells admins how to add one, e.g. for xrdp-sesman) would lock
/// everyone out of that service, root included, once the module is gone. The removal
/// stops instead, naming the lines; once they are out, it goes through and proves root
/// passes every stack. root and bob pass sshd, login, su and xrdp-sesman throughout.
#[test]
fn in_container_removal_stops_while_a_hand_added_line_loads_the_module() {
    let c = Container::boot();
    c.install_package();
    // xrdp-sesman as pam.d/xrdp-sesman ships it (hosthog's lines added by hand), and a
    // hand-added line in sshd; a comment that names the module is not a line.
    let xrdp = std::fs::read_to_string(hosthog_tests::container::repo().join("pam.d/xrdp-sesman"))
        .unwrap();
    c.write("/etc/pam.d/xrdp-sesman", &xrdp);
    let sshd = std::fs::read_to_string(c.path("/etc/pam.d/sshd")).unwrap();
    c.write(
        "/etc/pam.d/sshd",
        format!("# pam_hosthog.so is not loaded by this comment\naccount requisite pam_hosthog.so\n{sshd}"),
    );
    let pass_everywhere = |when: &str| {
        for service in ["sshd", "login", "su", "xrdp-sesman"] {
            for user in ["root", "bob"] {
                let (code, out) = account(&c, service, user);
                assert_eq!(
                    code,
                    Some(0),
                    "{when}: {user} fails the {service} account stack: {out}"
                );
            }
        }
    };
    pass_everywhere("installed");
    let out = c.sh_timeout(
        "DEBIAN_FRONTEND=noninteractive apt-get remove -y hosthog 2>&1",
        Duration::from_secs(120),
    );
    assert_ne!(
        out.code,
        Some(0),
        "the removal went through:\n{}",
        out.stdout
    );
    for needle in [
        "hosthog: these PAM lines still load pam_hosthog; without the module every login",
        "hosthog:   /etc/pam.d/sshd:2:account requisite pam_hosthog.so",
        "hosthog:   /etc/pam.d/xrdp-sesman:",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} missing:\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stdout.contains("/etc/pam.d/sshd:1:"),
        "a comment was taken for a line:\n{}",
        out.stdout
    );
    // Nothing was taken away: the module is there and every stack still works.
    c.sh_ok("test -f /usr/lib/x86_64-linux-gnu/security/pam_hosthog.so");
    pass_everywhere("after the refused removal");
    // With the hand-added lines out, the removal goes through and checks root.
    c.write("/etc/pam.d/sshd", &sshd);
    c.sh_ok("grep -v pam_hosthog /etc/pam.d/xrdp-sesman > /tmp/x && cat /tmp/x > /etc/pam.d/xrdp-sesman");
    let out = c.sh_timeout(
        "DEBIAN_FRONTEND=noninteractive apt-get remove -y hosthog 2>&1",
        Duration::from_secs(120),
    );
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("hosthog: checked: root passes the account phase of every PAM service"),
        "{}",
        out.stdout
    );
    c.sh_ok("test ! -e /usr/lib/x86_64-linux-gnu/security/pam_hosthog.so");
    pass_everywhere("removed");
    assert_root_passes(&c);
}

/// A comment in common-account that names the module is not the module: the package
/// still enables the profile (it used to see `pam_hosthog` anywhere, skip pam-auth-update
/// and say "done" with nothing enforced).
#[test]
fn in_container_a_comment_naming_the_module_does_not_pass_for_the_profile() {
    let c = Container::boot();
    let common = std::fs::read_to_string(c.path("/etc/pam.d/common-account")).unwrap();
    c.write(
        "/etc/pam.d/common-account",
        format!("# pam_hosthog: see the lab wiki before changing this file\n{common}"),
    );
    let apt = c.install_package();
    assert!(
        apt.stdout.contains(
            "hosthog: enabled the PAM profile (pam_hosthog in /etc/pam.d/common-account)"
        ),
        "{}",
        apt.stdout
    );
    c.sh_ok(r"grep -Eq '^account[[:space:]].*pam_hosthog\.so' /etc/pam.d/common-account");
    let (id, _) = alice_reserves(&c);
    assert!(!id.is_empty());
    assert_refused(&c, "bob");
}
