//! Small files hosthogd keeps under /run (the presence snapshot, the MOTD
//! fragment, paused timers): always replaced whole, by renaming a complete
//! temporary file over the old one, so readers see the old or the new
//! file and never a torn one.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replaces `path` with `bytes` (mode 0644), creating its directory (mode
/// 0755) if needed.
///
/// # Errors
/// The I/O error.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    }
    let mut temp = tempfile::Builder::new()
        .prefix(".hosthog.new.")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
