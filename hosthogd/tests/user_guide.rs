//! docs/user-guide.md's example session is the real output of hosthog:
//! `scripts/user-guide --check` regenerates it with this build's binaries
//! and fails if the document differs (run `scripts/user-guide` to update
//! it). Needs root (`hosthog --state-dir`).

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hosthog_tests::daemon as common;

#[test]
fn the_user_guide_shows_what_hosthog_prints_now() {
    common::require_root();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(root.join("scripts/user-guide"))
        .arg("--check")
        .arg(common::hosthog_bin())
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docs/user-guide.md is stale: run scripts/user-guide\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
