//! The installer against a staging root: the expected tree with the expected
//! owners and modes, a second run that changes nothing, and an uninstall
//! that leaves no file of hosthog behind and the PAM files byte-identical.
//!
//! The staging root carries copies of the host's /etc/pam.d,
//! /usr/share/pam-configs and /var/lib/pam, so pam-auth-update (with
//! `--root`) really edits a stack; the host's own files are never touched. If this host
//! has hosthog installed itself, its profile is taken out of the copies first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hosthog_tests::process::run;
use hosthog_tests::{pam_module_path, target_profile_dir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every file, directory and symlink under `root`: path → (kind, mode, uid, gid, bytes).
type Tree = BTreeMap<PathBuf, (char, u32, u32, u32, Vec<u8>)>;

fn snapshot(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let (kind, bytes) = if meta.file_type().is_symlink() {
                (
                    'l',
                    std::fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else if meta.is_dir() {
                ('d', Vec::new())
            } else {
                ('f', std::fs::read(&path).unwrap())
            };
            out.insert(
                rel,
                (kind, meta.mode() & 0o7777, meta.uid(), meta.gid(), bytes),
            );
            if kind == 'd' {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

fn copy_tree(from: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {from}");
}

/// Makes the staged PAM files those of a host without hosthog, whether or not this host
/// has it installed (`scripts/install` before `scripts/test`, as the README has it): the
/// profile is taken out of the staged stacks, then its file is removed.
fn without_hosthog(root: &Path) {
    let profile = root.join("usr/share/pam-configs/hosthog");
    if !profile.exists() {
        return;
    }
    let out = run(
        Command::new("pam-auth-update")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .arg("--root")
            .arg(root)
            .args(["--package", "--remove", "hosthog"]),
        None,
        Duration::from_secs(60),
    );
    out.assert_success("pam-auth-update --remove hosthog in the staging root");
    std::fs::remove_file(&profile).unwrap();
    let account = std::fs::read_to_string(root.join("etc/pam.d/common-account")).unwrap();
    assert!(
        !account.contains("pam_hosthog"),
        "the staged common-account still has pam_hosthog:\n{account}"
    );
}

fn install(args: &[&str]) -> (i32, String, String) {
    let out = run(
        Command::new(repo().join("scripts/install")).args(args),
        None,
        Duration::from_secs(120),
    );
    (out.code.unwrap_or(-1), out.stdout, out.stderr)
}

fn pam_module_dir() -> &'static str {
    [
        "/usr/lib/x86_64-linux-gnu/security",
        "/usr/lib/aarch64-linux-gnu/security",
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib64/security",
        "/usr/lib/security",
    ]
    .into_iter()
    .find(|d| Path::new(d).join("pam_unix.so").exists())
    .expect("a PAM module directory with pam_unix.so")
}

#[test]
fn staging_install_is_exact_idempotent_and_fully_undone() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the installer test must run as root"
    );
    for tool in ["pam-auth-update", "cp"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .status()
                .unwrap()
                .success(),
            "{tool} is missing (apt-get install libpam-runtime coreutils)"
        );
    }

    // The prebuilt files, as `cargo test --workspace` leaves them.
    let from = tempfile::tempdir().unwrap();
    for bin in ["hosthog", "hosthogd"] {
        let built = target_profile_dir().join(bin);
        assert!(
            built.is_file(),
            "{} is missing: run `cargo test --workspace` (it builds the binaries)",
            built.display()
        );
        std::fs::copy(&built, from.path().join(bin)).unwrap();
    }
    std::fs::copy(pam_module_path(), from.path().join("libpam_hosthog.so")).unwrap();

    let stage = tempfile::tempdir().unwrap();
    let root = stage.path();
    copy_tree("/etc/pam.d", &root.join("etc/pam.d"));
    copy_tree(
        "/usr/share/pam-configs",
        &root.join("usr/share/pam-configs"),
    );
    copy_tree("/var/lib/pam", &root.join("var/lib/pam"));
    without_hosthog(root);
    let before = snapshot(root);
    let root_arg = root.to_str().unwrap();
    let from_arg = from.path().to_str().unwrap();

    // First run: everything installed, the stack enabled.
    let (code, stdout, stderr) = install(&["--root", root_arg, "--from", from_arg]);
    assert_eq!(code, 0, "install failed:\n{stdout}\n{stderr}");
    let pam_dir = pam_module_dir();
    let expected: Vec<(String, u32)> = vec![
        ("usr/bin/hosthog".into(), 0o755),
        ("usr/sbin/hosthogd".into(), 0o755),
        (format!("{}/pam_hosthog.so", &pam_dir[1..]), 0o644),
        ("usr/share/pam-configs/hosthog".into(), 0o644),
        ("usr/lib/systemd/system/hosthogd.socket".into(), 0o644),
        ("usr/lib/systemd/system/hosthogd.service".into(), 0o644),
        ("usr/share/man/man1/hosthog.1".into(), 0o644),
        ("usr/share/man/man8/hosthogd.8".into(), 0o644),
        ("usr/share/man/man8/pam_hosthog.8".into(), 0o644),
        ("usr/share/man/man5/hosthog.toml.5".into(), 0o644),
        (
            "usr/share/bash-completion/completions/hosthog".into(),
            0o644,
        ),
        ("usr/share/zsh/vendor-completions/_hosthog".into(), 0o644),
        (
            "usr/share/fish/vendor_completions.d/hosthog.fish".into(),
            0o644,
        ),
        ("etc/hosthog/hosthog.toml".into(), 0o644),
    ];
    let after = snapshot(root);
    for (path, mode) in &expected {
        let (kind, got_mode, uid, gid, _) = after
            .get(Path::new(path))
            .unwrap_or_else(|| panic!("{path} was not installed; installer said:\n{stdout}"));
        assert_eq!((*kind, *got_mode, *uid, *gid), ('f', *mode, 0, 0), "{path}");
        assert!(
            stdout.contains(&format!("install: installed /{path}\n")),
            "{path} not reported:\n{stdout}"
        );
    }
    assert_eq!(after[Path::new("var/lib/hosthog")].0, 'd');
    assert_eq!(after[Path::new("var/lib/hosthog")].1, 0o755);
    assert_eq!(
        std::fs::read(root.join("usr/bin/hosthog")).unwrap(),
        std::fs::read(from.path().join("hosthog")).unwrap()
    );
    let account = std::fs::read_to_string(root.join("etc/pam.d/common-account")).unwrap();
    let first_rule = account.lines().find(|l| l.starts_with("account")).unwrap();
    assert_eq!(
        first_rule.split_whitespace().collect::<Vec<_>>(),
        ["account", "requisite", "pam_hosthog.so"]
    );
    assert!(
        stdout.contains(
            "install: enabled the PAM profile (pam_hosthog in /etc/pam.d/common-account)\n"
        )
    );
    // Nothing outside the expected set appeared, besides what pam-auth-update rewrote.
    for path in after.keys() {
        let known = before.contains_key(path)
            || expected
                .iter()
                .any(|(p, _)| Path::new(p) == path || Path::new(p).starts_with(path))
            || path.starts_with("var/lib/hosthog")
            || Path::new("var/lib/hosthog").starts_with(path);
        assert!(known, "unexpected file installed: {}", path.display());
    }

    // Second run: changes nothing and says nothing was installed.
    let (code, stdout2, stderr2) = install(&["--root", root_arg, "--from", from_arg]);
    assert_eq!(code, 0, "second install failed:\n{stdout2}\n{stderr2}");
    assert!(
        !stdout2.contains("installed"),
        "second run changed something:\n{stdout2}"
    );
    assert!(
        !stdout2.contains("enabled"),
        "second run changed something:\n{stdout2}"
    );
    assert!(snapshot(root) == after, "second run changed the tree");

    // Uninstall: the tree is exactly what it was, PAM files byte for byte.
    let (code, stdout3, stderr3) = install(&["--root", root_arg, "--uninstall"]);
    assert_eq!(code, 0, "uninstall failed:\n{stdout3}\n{stderr3}");
    assert!(
        stdout3.contains("install: removed the PAM profile from the stacks\n"),
        "{stdout3}"
    );
    let gone = snapshot(root);
    let extra: Vec<_> = gone.keys().filter(|p| !before.contains_key(*p)).collect();
    assert!(extra.is_empty(), "left behind: {extra:?}");
    for (path, entry) in &before {
        assert!(
            gone.get(path) == Some(entry),
            "{} differs after uninstall",
            path.display()
        );
    }
}

/// `--join` against a staging root: [fleet] written once (the rest of the
/// configuration kept), the bundle as /etc/hosthog/fleet.pem mode 0600,
/// the host name from the certificate's CN; again: nothing changes;
/// another name replaces the section; a bad URL changes nothing;
/// `--uninstall --purge` takes both away.
#[test]
fn staging_join_writes_the_fleet_section_once() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "must run as root");
    assert!(
        Path::new("/usr/bin/openssl").is_file(),
        "openssl is missing (apt-get install openssl)"
    );
    let from = tempfile::tempdir().unwrap();
    for bin in ["hosthog", "hosthogd"] {
        let built = target_profile_dir().join(bin);
        assert!(
            built.is_file(),
            "{} is missing: run cargo test --workspace",
            built.display()
        );
        std::fs::copy(&built, from.path().join(bin)).unwrap();
    }
    std::fs::copy(pam_module_path(), from.path().join("libpam_hosthog.so")).unwrap();
    let stage = tempfile::tempdir().unwrap();
    let root = stage.path();
    // A certificate and key as a host bundle has them (CN = the host).
    let keys = tempfile::tempdir().unwrap();
    let out = run(
        Command::new("/usr/bin/openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=gpu7", "-keyout"])
            .arg(keys.path().join("key.pem"))
            .arg("-out")
            .arg(keys.path().join("cert.pem")),
        None,
        Duration::from_secs(30),
    );
    out.assert_success("openssl req");
    let cert = std::fs::read(keys.path().join("cert.pem")).unwrap();
    let key = std::fs::read(keys.path().join("key.pem")).unwrap();
    let bundle = keys.path().join("gpu7.bundle.pem");
    std::fs::write(&bundle, [&cert[..], &key[..], &cert[..]].concat()).unwrap();
    let (root_arg, from_arg, bundle_arg) = (
        root.to_str().unwrap(),
        from.path().to_str().unwrap(),
        bundle.to_str().unwrap(),
    );
    let join = |extra: &[&str]| {
        let mut args = vec!["--root", root_arg, "--from", from_arg, "--join"];
        args.extend_from_slice(extra);
        install(&args)
    };
    let (code, stdout, stderr) = join(&["https://cal.example:8443/", "--bundle", bundle_arg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "install: installed the host bundle as /etc/hosthog/fleet.pem (mode 0600)\n\
             install: this host follows the fleet calendar at https://cal.example:8443 as gpu7 \
             ([fleet] in /etc/hosthog/hosthog.toml)\n\
             install: staging root: hosthogd is not restarted; it follows https://cal.example:8443 once started\n"
        ),
        "{stdout}"
    );
    let shipped = std::fs::read_to_string(repo().join("hosthogd/hosthog.toml")).unwrap();
    let config = std::fs::read_to_string(root.join("etc/hosthog/hosthog.toml")).unwrap();
    let section = "[fleet]\nserver = \"https://cal.example:8443\"\nhost = \"gpu7\"\n\
                   bundle = \"/etc/hosthog/fleet.pem\"\n";
    assert_eq!(
        config,
        format!(
            "{}\n{section}",
            shipped.trim_end_matches('\n').to_string() + "\n"
        )
    );
    let pem = root.join("etc/hosthog/fleet.pem");
    let meta = std::fs::metadata(&pem).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o600, 0, 0)
    );
    assert_eq!(
        std::fs::read(&pem).unwrap(),
        std::fs::read(&bundle).unwrap()
    );
    // hosthogd reads it.
    let check = Command::new(target_profile_dir().join("hosthogd"))
        .arg("--config")
        .arg(root.join("etc/hosthog/hosthog.toml"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(check.status.success());

    // Again: nothing changes.
    let tree = snapshot(root);
    let (code, stdout, stderr) = join(&["https://cal.example:8443", "--bundle", bundle_arg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        !stdout.contains("install: installed") && !stdout.contains("follows the fleet calendar at"),
        "{stdout}"
    );
    assert!(snapshot(root) == tree, "a second --join changed the tree");

    // Another name: the section is replaced, not added.
    let (code, stdout, stderr) = join(&[
        "https://cal.example:8443",
        "--bundle",
        bundle_arg,
        "--host",
        "gpu9",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let config = std::fs::read_to_string(root.join("etc/hosthog/hosthog.toml")).unwrap();
    assert_eq!(config.matches("\n[fleet]\n").count(), 1, "{config}");
    assert!(
        config.ends_with("host = \"gpu9\"\nbundle = \"/etc/hosthog/fleet.pem\"\n"),
        "{config}"
    );

    // Bad input: a clear error, nothing changed.
    let tree = snapshot(root);
    for (args, says) in [
        (
            vec!["http://cal.example", "--bundle", bundle_arg],
            "begins with https://",
        ),
        (vec!["https://cal.example"], "go together"),
        (
            vec!["https://cal.example", "--bundle", "/nonexistent"],
            "no such readable file",
        ),
        (
            vec![
                "https://cal.example",
                "--bundle",
                bundle_arg,
                "--host",
                "Bad Name",
            ],
            "a host name is",
        ),
    ] {
        let (code, stdout, stderr) = join(&args);
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.starts_with("install: --") && stderr.contains(says),
            "{stderr}"
        );
        assert!(snapshot(root) == tree, "{args:?} changed the tree");
    }

    let (code, stdout, stderr) = install(&["--root", root_arg, "--uninstall", "--purge"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!root.join("etc/hosthog").exists(), "{stdout}");
}
