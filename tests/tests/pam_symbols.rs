//! The built module's dynamic symbols: it must not resolve users or groups
//! (no NSS: a login must never wait on LDAP or sssd, and a broken NSS setup
//! must not break hosthog), must log only through libpam (no openlog/syslog
//! of its own inside sshd), and must export exactly the hooks it implements.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::pamtester as harness;

use std::process::Command;

fn dynamic_symbols(flag: &str) -> Vec<String> {
    let module = harness::module();
    let out = Command::new("nm")
        .args(["-D", flag])
        .arg(&module)
        .output()
        .expect("run nm (binutils)");
    assert!(out.status.success(), "nm failed on {}", module.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .map(|sym| sym.split('@').next().unwrap_or(sym).to_string())
        .collect()
}

#[test]
fn no_nss_and_no_syslog_of_its_own() {
    harness::require_root();
    let imports = dynamic_symbols("--undefined-only");
    assert!(imports.iter().any(|s| s == "pam_syslog"), "{imports:?}");
    let forbidden = [
        "getpwnam",
        "getpwnam_r",
        "getpwuid",
        "getpwuid_r",
        "getgrnam",
        "getgrnam_r",
        "getgrgid",
        "getgrgid_r",
        "getgrouplist",
        "initgroups",
        "getpwent",
        "getpwent_r",
        "getgrent",
        "getgrent_r",
        "getspnam",
        "getspnam_r",
        "openlog",
        "syslog",
        "vsyslog",
        "closelog",
        "getutxent",
        "getutent",
        "setutxent",
        "utmpname",
    ];
    let found: Vec<&String> = imports
        .iter()
        .filter(|s| forbidden.contains(&s.as_str()))
        .collect();
    assert!(
        found.is_empty(),
        "{} imports {found:?}",
        harness::module().display()
    );
}

#[test]
fn exports_exactly_the_hooks_it_implements() {
    harness::require_root();
    let mut exports: Vec<String> = dynamic_symbols("--defined-only")
        .into_iter()
        .filter(|s| s.starts_with("pam_"))
        .collect();
    exports.sort();
    // No auth, setcred or chauthtok: libpam then logs "unable to resolve
    // symbol" and answers PAM_MODULE_UNKNOWN if someone stacks the module
    // there by mistake, which is loud, as a misconfiguration should be.
    assert_eq!(
        exports,
        [
            "pam_sm_acct_mgmt",
            "pam_sm_close_session",
            "pam_sm_open_session"
        ]
    );
}
