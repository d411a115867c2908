//! The FFI boundary: turning libpam's raw call into a safe one, and making
//! sure no panic ever unwinds into sshd, login or xrdp.
//!
//! A panic inside a hook is caught here, logged through `pam_syslog` (never
//! to stderr: the default panic hook is replaced, in this module's own copy
//! of std, by one that only records the message), and answered the way
//! `on_error=` says.

use std::cell::Cell;
use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, Once};

use libc::{c_char, c_int};
use pam::constants::PamResultCode;
use pam::module::PamHandle;

use crate::handle::{Handle, LibPam, Priority, one_line};

// Unwinding is how a panic is caught; with panic=abort a bug would kill the
// login daemon instead of being answered per on_error.
#[cfg(panic = "abort")]
compile_error!("pam_hosthog must be built with panic=unwind (see boundary.rs)");

/// The last panic's message and location, recorded by the panic hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
static INSTALL_HOOK: Once = Once::new();

/// The answer a hook gives if it panics; set by the hook as soon as it
/// knows its `on_error=` setting.
pub struct Fallback(Cell<c_int>);

impl Fallback {
    pub fn set(&self, code: PamResultCode) {
        self.0.set(code as c_int);
    }
}

/// Runs `hook` for a `pam_sm_*` entry point: checks the raw arguments,
/// collects argv, and catches any panic.
///
/// # Safety
/// `pamh` must be null or the live handle libpam passed to the entry point;
/// if `argc > 0`, `argv` must point to `argc` pointers, each null or a
/// NUL-terminated string, all valid for the duration of the call.
pub unsafe fn run(
    pamh: *mut PamHandle,
    argc: c_int,
    argv: *const *const c_char,
    hook: impl FnOnce(&mut LibPam<'_>, &[&CStr], &Fallback) -> PamResultCode,
) -> c_int {
    INSTALL_HOOK.call_once(|| {
        // This cdylib links its own std, so this hook only sees panics of
        // this module, whatever the host process is.
        std::panic::set_hook(Box::new(|info| {
            if let Ok(mut slot) = LAST_PANIC.try_lock() {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(no message)");
                *slot = Some(match info.location() {
                    Some(at) => format!("panic at {}:{}: {message}", at.file(), at.line()),
                    None => format!("panic: {message}"),
                });
            }
        }));
    });
    let fallback = Fallback(Cell::new(PamResultCode::PAM_IGNORE as c_int));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per this function's contract, `pamh` is null or live and
        // exclusively ours for this call.
        let Some(handle) = (unsafe { pamh.as_mut() }) else {
            return PamResultCode::PAM_SYSTEM_ERR;
        };
        let mut pam = LibPam::new(handle);
        let count = usize::try_from(argc).unwrap_or(0);
        let raw: &[*const c_char] = if count == 0 || argv.is_null() {
            &[]
        } else {
            // SAFETY: per the contract, argv points to argc pointers.
            unsafe { std::slice::from_raw_parts(argv, count) }
        };
        let args: Vec<&CStr> = raw
            .iter()
            .filter(|p| !p.is_null())
            // SAFETY: non-null entries are NUL-terminated strings valid for
            // the call (the contract).
            .map(|&p| unsafe { CStr::from_ptr(p) })
            .collect();
        hook(&mut pam, &args, &fallback)
    }));
    match outcome {
        Ok(code) => code as c_int,
        Err(payload) => {
            // Dropping a panic payload can itself panic; leak it instead.
            std::mem::forget(payload);
            let answer = fallback.0.get();
            let _ = catch_unwind(AssertUnwindSafe(|| log_panic(pamh, answer)));
            answer
        }
    }
}

fn log_panic(pamh: *mut PamHandle, answer: c_int) {
    // SAFETY: as in `run`; the hook's borrow of the handle has ended.
    let Some(handle) = (unsafe { pamh.as_mut() }) else {
        return;
    };
    let what = LAST_PANIC
        .try_lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .unwrap_or_else(|| "panic".to_string());
    let answer = if answer == PamResultCode::PAM_IGNORE as c_int {
        "allowing (on_error=allow)"
    } else {
        "refusing (on_error=deny)"
    };
    LibPam::new(handle).log(
        Priority::Err,
        &format!("internal error: {}; {answer}", one_line(&what)),
    );
}
