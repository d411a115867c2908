//! The module's arguments, parsed Linux-PAM style: `table=`, `on_error=`,
//! `services=`, `exempt=`, `quiet`, `debug`. Unknown or invalid arguments
//! are logged at LOG_ERR and ignored, never fatal.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use libhosthog::{PRESENCE_PATH, UTMP_PATH};

use crate::handle::{Handle, Priority, one_line};

/// Where the table is unless `table=` says otherwise.
pub const DEFAULT_TABLE: &str = "/var/lib/hosthog/table";

/// What to answer when the table cannot be used (`on_error=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Allow,
    Deny,
}

/// The module's arguments, parsed Linux-PAM style.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// `table=PATH` (absolute).
    pub table: &'a Path,
    /// `on_error=allow|deny`: for a corrupt or insecure table, or a missing
    /// state directory, and for a caught panic.
    pub on_error: OnError,
    /// `services=a,b`: act only for these PAM services.
    pub services: Option<Vec<&'a str>>,
    /// `exempt=u1,u2`: always allowed, like the table's exemption list.
    pub exempt: Vec<&'a str>,
    /// `quiet`: no session summary.
    pub quiet: bool,
    /// `debug`: log every decision at LOG_DEBUG.
    pub debug: bool,
    /// Not an argument: the uid that must own the table (root).
    pub table_owner: u32,
    /// Not an argument: the utmp file.
    pub utmp: &'a Path,
    /// Not an argument: hosthogd's presence snapshot.
    pub presence: &'a Path,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            table: Path::new(DEFAULT_TABLE),
            on_error: OnError::Allow,
            services: None,
            exempt: Vec::new(),
            quiet: false,
            debug: false,
            table_owner: 0,
            utmp: Path::new(UTMP_PATH),
            presence: Path::new(PRESENCE_PATH),
        }
    }
}

/// Parses the module arguments. Unknown or malformed ones are logged at
/// LOG_ERR and ignored, never fatal.
pub fn parse_args<'a>(args: &[&'a CStr], h: &mut impl Handle) -> Options<'a> {
    let mut opts = Options::default();
    let list = |v: &'a str| v.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>();
    for arg in args {
        let Ok(text) = arg.to_str() else {
            let shown = String::from_utf8_lossy(arg.to_bytes());
            h.log(
                Priority::Err,
                &format!("unknown option: {}; ignored", one_line(&shown)),
            );
            continue;
        };
        match text.split_once('=') {
            Some(("table", path)) if path.starts_with('/') => {
                opts.table = Path::new(OsStr::from_bytes(path.as_bytes()));
            }
            Some(("on_error", "allow")) => opts.on_error = OnError::Allow,
            Some(("on_error", "deny")) => opts.on_error = OnError::Deny,
            Some(("services", v)) => opts.services = Some(list(v)),
            Some(("exempt", v)) => opts.exempt = list(v),
            None if text == "quiet" => opts.quiet = true,
            None if text == "debug" => opts.debug = true,
            Some(("table" | "on_error", _)) => h.log(
                Priority::Err,
                &format!(
                    "invalid option: {} (table= takes an absolute path, on_error= allow or deny); ignored",
                    one_line(text)
                ),
            ),
            _ => h.log(
                Priority::Err,
                &format!("unknown option: {}; ignored", one_line(text)),
            ),
        }
    }
    opts
}

impl Options<'_> {
    pub(crate) fn applies_to(&self, service: &str) -> bool {
        self.services
            .as_ref()
            .is_none_or(|list| list.contains(&service))
    }
}
