//! Link flags for the PAM module.

fn main() {
    // Never unload the module. libpam dlopen()s it at pam_start and
    // dlclose()s it at pam_end; without this, every pam_start in a
    // long-lived process (a display manager, xrdp-sesman, a benchmark)
    // would map and relocate the whole Rust module again, and Rust's std
    // does not promise to survive being unloaded (thread-local destructors,
    // the panic hook). sshd and login fork per login, so they load it once
    // either way.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
