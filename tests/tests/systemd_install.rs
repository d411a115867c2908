//! The README's first command on a fresh Debian 12 that boots systemd: the cached root
//! (tests/src/container.rs) with this machine's Rust toolchain bind-mounted (`~/.cargo`
//! writable for its registry, `~/.rustup` read-only) and a copy of this working tree.
//! `scripts/install` must install every Debian package it needs (the C toolchain cargo
//! links with among them) before it builds, find the PAM module directory without
//! dpkg-dev or gcc, start hosthogd by socket activation and enable the PAM profile; the
//! binaries it built then work, the README's second command `scripts/test` passes after
//! it (all but the container tests, which do not nest), and `scripts/install
//! --uninstall` gives the PAM stacks back byte for byte.
//!
//! This builds hosthog in release mode and the whole workspace in debug mode inside the
//! container, and runs the test suite there: about ten minutes on two cores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use hosthog_tests::container::{Container, repo};
use hosthog_tests::process::run;

fn home_dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

#[test]
fn in_container_readme_install_works_on_a_fresh_debian_with_systemd() {
    let cargo_home = home_dir("CARGO_HOME", "/root/.cargo");
    let rustup_home = home_dir("RUSTUP_HOME", "/root/.rustup");
    for (dir, what) in [(&cargo_home, "CARGO_HOME"), (&rustup_home, "RUSTUP_HOME")] {
        assert!(
            dir.join(if what == "CARGO_HOME" {
                "bin/cargo"
            } else {
                "toolchains"
            })
            .exists(),
            "no Rust toolchain in {} ({what}); install Rust with rustup as root",
            dir.display()
        );
    }
    let c = Container::builder()
        .bind(&cargo_home, "/root/.cargo")
        .bind_ro(&rustup_home, "/root/.rustup")
        .boot();
    for tool in ["gcc", "cc", "dpkg-architecture"] {
        c.sh_ok(&format!("! command -v {tool}"));
    }
    let pam_before = c.sh_ok("cat /etc/pam.d/common-*");

    // A copy of the working tree: what a clone has (tracked and new files, not target/).
    let tree = c.path("/root/hosthog");
    std::fs::create_dir_all(&tree).unwrap();
    run(
        Command::new("sh").arg("-c").arg(format!(
            "git -C {} ls-files -z --cached --others --exclude-standard \
             | (cd {} && tar --null -T - -cf -) | tar -C {} -xf -",
            repo().display(),
            repo().display(),
            tree.display()
        )),
        None,
        Duration::from_secs(60),
    )
    .assert_success("copying the working tree into the container");

    // As the README has it: as root, from the clone, `scripts/install`. The shell is not
    // a login shell, so ~/.cargo/bin is not on PATH: the installer finds cargo itself.
    let started = Instant::now();
    let out = c.sh_timeout(
        "cd /root/hosthog && scripts/install 2>&1",
        Duration::from_secs(1800),
    );
    eprintln!(
        "scripts/install in the container took {:.0?}:\n{}",
        started.elapsed(),
        out.stdout
    );
    out.assert_success("scripts/install in a fresh Debian 12 container");
    let said = &out.stdout;
    for line in [
        "install: installing Debian packages needed to build and check: gcc libc6-dev libpam0g-dev\n",
        "install: building (cargo build --release)\n",
        "install: installed /usr/lib/x86_64-linux-gnu/security/pam_hosthog.so\n",
        "install: running debian/postinst configure (as the package does)\n",
        "hosthog: enabled and started hosthogd.socket\n",
        "hosthog: enabled the PAM profile (pam_hosthog in /etc/pam.d/common-account)\n",
        "hosthog: checked: root passes the account phase of the login, sshd and su stacks\n",
    ] {
        assert!(said.contains(line), "{line:?} missing from:\n{said}");
    }

    // The binaries it built work: socket activation, a reservation, the module.
    assert_eq!(
        c.sh_ok("runuser -u bob -- hosthog list"),
        "No reservations.\n"
    );
    assert_eq!(
        c.sh_ok("systemctl is-active hosthogd.service").trim(),
        "active"
    );
    c.sh_ok("runuser -u alice -- hosthog reserve --exclusive --for 1h install check");
    let bob = c.sh("pamtester sshd bob acct_mgmt 2>&1");
    assert!(
        bob.code != Some(0) && bob.stdout.contains("Permission denied"),
        "bob during alice's reservation: {bob:?}"
    );
    for service in ["login", "sshd", "su"] {
        c.sh_ok(&format!("pamtester {service} root acct_mgmt"));
    }
    c.sh_ok("pamtester sshd alice acct_mgmt");

    // A second run changes nothing.
    let again = c.sh_timeout(
        "cd /root/hosthog && scripts/install 2>&1",
        Duration::from_secs(600),
    );
    again.assert_success("second scripts/install");
    assert!(
        !again.stdout.contains("installed") && !again.stdout.contains("enabled"),
        "second run changed something:\n{}",
        again.stdout
    );

    // The README's second command, right after the first on the same host (hosthog is
    // now installed there): scripts/test installs the test dependencies, builds the
    // workspace and runs every test, the installer's among them, which must not trip
    // over the installed profile. Not the container tests themselves (`in_container_*`,
    // this file and its siblings): they run here, one level up, and a container does not
    // nest in this one (nspawn needs a cgroup of its own, which a process entered with
    // nsenter does not have). alice's exclusive reservation above is still in force:
    // the tests must pass on a host someone holds alone (the host box's `su` runs on a
    // copy of the PAM stacks without pam_hosthog, tests/src/daemon/host.rs).
    let started = Instant::now();
    let out = c.sh_timeout(
        "cd /root/hosthog && scripts/test -- --skip in_container_ 2>&1",
        Duration::from_secs(3000),
    );
    let summary: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("Running") || l.starts_with("test result"))
        .collect();
    eprintln!(
        "scripts/test -- --skip in_container_ in the container took {:.0?}:\n{}",
        started.elapsed(),
        summary.join("\n")
    );
    out.assert_success("scripts/test in the container after scripts/install");

    // Uninstall: the stacks are back byte for byte, the daemon is gone.
    let out = c.sh_timeout(
        "cd /root/hosthog && scripts/install --uninstall --purge 2>&1",
        Duration::from_secs(120),
    );
    out.assert_success("scripts/install --uninstall --purge");
    assert_eq!(c.sh_ok("cat /etc/pam.d/common-*"), pam_before);
    assert_eq!(
        c.sh("systemctl is-active hosthogd.socket hosthogd.service")
            .stdout,
        "inactive\ninactive\n"
    );
    c.sh_ok("! test -e /usr/bin/hosthog && ! test -e /var/lib/hosthog");
}
