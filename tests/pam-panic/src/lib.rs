//! A test-only PAM module: pam_hosthog itself (its `pam_sm_*` hooks are
//! linked in from the pam_hosthog crate and exported from this cdylib), with
//! one difference armed when the module is loaded: the hooks panic for the
//! user "hosthog-panic". tests/tests/pam_panic.rs loads it through libpam to
//! prove the panic is caught at the FFI boundary and answered per
//! `on_error=`. Never installed.

// Runs when libpam dlopen()s this module, before any hook.
#[used]
#[unsafe(link_section = ".init_array")]
static ARM: extern "C" fn() = arm;

extern "C" fn arm() {
    pam_hosthog::inject_panic_for("hosthog-panic");
}
