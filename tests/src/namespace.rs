//! A private mount namespace in which the fake `/etc` files are bind-mounted over the real
//! ones, so sshd, login and pamtester see the test accounts and PAM stacks while the host's
//! files never change.
//!
//! The command line is
//! `unshare --mount --propagation private -- /bin/sh -c SCRIPT hosthog-ns SRC DST ... -- PROG ARGS`:
//! `unshare` without `--fork` execs `sh`, which does the bind mounts and execs `PROG`, so the
//! pid returned by `spawn` is the pid of `PROG` itself (sshd, login).

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::prereq::tools;

/// Runs inside the new namespace: bind every SRC over its DST, then exec the program.
const SCRIPT: &str = r#"set -eu
while [ "$1" != "--" ]; do
    /usr/bin/mount --bind "$1" "$2"
    shift 2
done
shift
exec "$@"
"#;

/// A set of bind mounts to apply in a fresh private mount namespace.
#[derive(Debug, Clone, Default)]
pub struct MountNamespace {
    binds: Vec<(PathBuf, PathBuf)>,
}

impl MountNamespace {
    /// No bind mounts yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bind-mounts `source` over `target` (both must exist and be of the same kind).
    pub fn bind(&mut self, source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> &mut Self {
        self.binds.push((source.into(), target.into()));
        self
    }

    /// Bind-mounts `source` over `target` only if `target` exists on this host (for log
    /// files such as `/var/log/wtmp` that sshd and login write to when they exist).
    pub fn bind_if_present(
        &mut self,
        source: impl Into<PathBuf>,
        target: impl AsRef<Path>,
    ) -> &mut Self {
        let target = target.as_ref();
        if fs::symlink_metadata(target).is_ok() {
            self.binds.push((source.into(), target.to_path_buf()));
        }
        self
    }

    /// The bind mounts, in the order they are applied.
    pub fn binds(&self) -> &[(PathBuf, PathBuf)] {
        &self.binds
    }

    /// A command that runs `program` inside the namespace. Append its arguments with
    /// [`Command::arg`]; the spawned pid is `program`'s own.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(tools::UNSHARE);
        cmd.args(["--mount", "--propagation", "private", "--", tools::SH, "-c"])
            .arg(SCRIPT)
            .arg("hosthog-ns");
        for (source, target) in &self.binds {
            cmd.arg(source).arg(target);
        }
        cmd.arg("--").arg(program);
        cmd
    }
}
