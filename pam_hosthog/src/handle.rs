//! What the module asks of libpam, behind a small trait.
//!
//! The hooks in `lib.rs` are written against [`Handle`], so unit tests can
//! run them with a scripted handle that records every message and log line
//! ([`Script`]), while the real module uses [`LibPam`].

use std::borrow::Cow;
use std::ffi::{CStr, CString};

use libc::{c_char, c_int};
use pam::constants::{PAM_ERROR_MSG, PAM_TEXT_INFO};
use pam::conv::Conv;
use pam::items::{RHost, Service, Tty, User};
use pam::module::PamHandle;

/// A syslog priority, as `pam_syslog` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Err,
    Warning,
    Notice,
    Debug,
}

impl Priority {
    fn level(self) -> c_int {
        match self {
            Priority::Err => libc::LOG_ERR,
            Priority::Warning => libc::LOG_WARNING,
            Priority::Notice => libc::LOG_NOTICE,
            Priority::Debug => libc::LOG_DEBUG,
        }
    }
}

/// The PAM items the module reads, copied out of libpam's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Items {
    /// PAM_USER; `None` if the application has not set it.
    pub user: Option<String>,
    /// PAM_SERVICE (libpam always sets it).
    pub service: String,
    /// PAM_TTY.
    pub tty: Option<String>,
    /// PAM_RHOST.
    pub rhost: Option<String>,
}

/// The module's view of the application: items in, conversation and log
/// lines out.
pub trait Handle {
    /// Reads PAM_USER, PAM_SERVICE, PAM_TTY and PAM_RHOST.
    fn items(&self) -> Items;
    /// Sends one PAM_ERROR_MSG. A conversation failure is not the module's
    /// problem to report to the user; it is ignored.
    fn error(&mut self, text: &str);
    /// Sends one PAM_TEXT_INFO.
    fn info(&mut self, text: &str);
    /// Writes one line to the system log through `pam_syslog`.
    fn log(&mut self, priority: Priority, text: &str);
}

#[link(name = "pam")]
unsafe extern "C" {
    // Linux-PAM's own logging (pam_ext.h): prefixes the module and service
    // name and logs to LOG_AUTHPRIV without touching the application's
    // openlog() settings. pam-bindings 0.4.0 does not wrap it.
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
}

/// The real handle libpam passed to a hook.
pub struct LibPam<'a> {
    pamh: &'a mut PamHandle,
}

impl<'a> LibPam<'a> {
    pub fn new(pamh: &'a mut PamHandle) -> LibPam<'a> {
        LibPam { pamh }
    }

    fn send(&mut self, style: c_int, text: &str) {
        if let Ok(Some(conv)) = self.pamh.get_item::<Conv>() {
            let _ = conv.send(style, text);
        }
    }
}

fn lossy(s: &CStr) -> String {
    String::from_utf8_lossy(s.to_bytes()).into_owned()
}

impl Handle for LibPam<'_> {
    fn items(&self) -> Items {
        Items {
            user: self
                .pamh
                .get_item::<User>()
                .ok()
                .flatten()
                .map(|u| lossy(u.0)),
            service: self
                .pamh
                .get_item::<Service>()
                .ok()
                .flatten()
                .map(|s| lossy(s.0))
                .unwrap_or_default(),
            tty: self
                .pamh
                .get_item::<Tty>()
                .ok()
                .flatten()
                .map(|t| lossy(t.0)),
            rhost: self
                .pamh
                .get_item::<RHost>()
                .ok()
                .flatten()
                .map(|r| lossy(r.0)),
        }
    }

    fn error(&mut self, text: &str) {
        self.send(PAM_ERROR_MSG, text);
    }

    fn info(&mut self, text: &str) {
        self.send(PAM_TEXT_INFO, text);
    }

    fn log(&mut self, priority: Priority, text: &str) {
        let text = CString::new(text.replace('\0', "?"))
            .unwrap_or_else(|_| CString::from(c"(unprintable message)"));
        // SAFETY: `pamh` is the live handle libpam passed to this hook; the
        // format is a literal "%s" consuming exactly one argument, a valid
        // NUL-terminated string that outlives the call.
        unsafe {
            pam_syslog(
                &raw const *self.pamh,
                priority.level(),
                c"%s".as_ptr(),
                text.as_ptr(),
            );
        }
    }
}

/// A scripted handle for unit tests: fixed items, and a record of every
/// message and log line in the order they happened.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct Script {
    pub items: Items,
    /// `("error" | "info", text)` for each conversation message.
    pub messages: Vec<(&'static str, String)>,
    pub log: Vec<(Priority, String)>,
}

#[cfg(test)]
impl Script {
    /// A handle whose PAM_USER is `user` and PAM_SERVICE `service`.
    pub fn new(user: &str, service: &str) -> Script {
        Script {
            items: Items {
                user: Some(user.to_string()),
                service: service.to_string(),
                ..Items::default()
            },
            ..Script::default()
        }
    }
}

#[cfg(test)]
impl Handle for Script {
    fn items(&self) -> Items {
        self.items.clone()
    }
    fn error(&mut self, text: &str) {
        self.messages.push(("error", text.to_string()));
    }
    fn info(&mut self, text: &str) {
        self.messages.push(("info", text.to_string()));
    }
    fn log(&mut self, priority: Priority, text: &str) {
        self.log.push((priority, text.to_string()));
    }
}

/// Makes any text safe for one syslog line: no control characters, no
/// terminal escapes.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if text.contains('\n') {
        Cow::Owned(libhosthog::sanitize(&text.replace('\n', "; ")).into_owned())
    } else {
        libhosthog::sanitize(text)
    }
}
