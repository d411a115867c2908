//! The one error type of libhosthog.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, in a form a front end can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The table file does not exist (a host nobody has reserved yet).
    Missing,
    /// Reading or writing failed at the operating-system level.
    Io,
    /// The table file's bytes are not a valid table (truncated, bit flip,
    /// unknown version, bad offset, ...).
    Corrupt,
    /// The table file, or its directory, could be changed by someone other
    /// than its trusted owner: wrong owner, group/world writable, a symlink,
    /// or not a regular file.
    Insecure,
    /// A value the caller supplied breaks a rule of the model (bad user name,
    /// start not before end, a comment with control characters, a limit).
    Invalid,
}

/// An error from libhosthog: a kind, a sentence for people, and where known
/// the path involved and the operating-system error underneath.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    path: Option<PathBuf>,
    source: Option<io::Error>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            path: None,
            source: None,
        }
    }

    pub(crate) fn io(message: impl Into<String>, path: &Path, source: io::Error) -> Error {
        let kind = if source.kind() == io::ErrorKind::NotFound {
            ErrorKind::Missing
        } else {
            ErrorKind::Io
        };
        Error {
            kind,
            message: message.into(),
            path: Some(path.to_path_buf()),
            source: Some(source),
        }
    }

    /// An [`ErrorKind::Invalid`] error: input that breaks a rule, said in
    /// one sentence. For the crates that read input on the model's terms.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Invalid, message)
    }

    /// Prefixes the message with what it is about.
    pub(crate) fn context(mut self, what: &str) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub(crate) fn at(mut self, path: &Path) -> Error {
        self.path = Some(path.to_path_buf());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The path involved, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}: ", path.display())?;
        }
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
