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
    // Every login loads the module into a fresh process (sshd and login
    // fork per login) that has not loaded libgcc_s, Rust's unwinder on
    // glibc: linked as a shared library, loading it is a second dlopen per
    // login. Its static part (libgcc_eh.a, from the same GCC) comes first
    // on the link line, so the unwinder is linked in and, as the linker
    // links libraries only as needed, libgcc_s is not. Panics are still
    // caught at the FFI boundary (tests/tests/pam_panic.rs).
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
}
