//! The accounts hosthog never stands in the way of: every uid-0 account
//! (root by any name, such as "toor"), every system account (uid below
//! `UID_MIN` or above `UID_MAX` of /etc/login.defs: daemons, cron jobs of
//! system users, `su postgres`, `nobody`) and the admins. Clearing never
//! touches them ([`crate::clear::ordinary`]), and hosthogd writes their
//! names into the table's exemption list at every refresh, so the PAM
//! module — which resolves no names (no NSS in the login path) and reads
//! only the table — lets in exactly whom clearing would leave alone.
//!
//! /etc/passwd is read directly: the point is the local system accounts,
//! and a slow directory service must not delay the refresh.

use std::path::Path;
use std::sync::OnceLock;

/// Where the user-id range is configured.
pub const LOGIN_DEFS: &str = "/etc/login.defs";
/// The accounts file read for system accounts.
pub const PASSWD: &str = "/etc/passwd";

/// The files whose change means the exemption list may have changed:
/// a new system account (a package's postinst runs `useradd --system` and
/// then `su` to it), a new member of an exempt group.
pub const ACCOUNT_FILES: [&str; 2] = [PASSWD, "/etc/group"];

/// What tells two versions of a file apart without reading it: its inode
/// (tools replace /etc/passwd by renaming), size and modification time.
pub type Stamp = Option<(u64, u64, i64, i64)>;

/// The stamps of [`ACCOUNT_FILES`]; a missing file is `None`.
pub fn stamps() -> Vec<Stamp> {
    use std::os::unix::fs::MetadataExt;
    ACCOUNT_FILES
        .iter()
        .map(|path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

/// `UID_MIN` and `UID_MAX` when login.defs does not set them (Debian's).
pub const DEFAULT_UID_RANGE: (u32, u32) = (1000, 60000);

/// `UID_MIN` and `UID_MAX` from login.defs text (defaults for what is
/// missing or not a number).
pub fn parse_login_defs(text: &str) -> (u32, u32) {
    let mut range = DEFAULT_UID_RANGE;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u32>() else {
            continue;
        };
        match key {
            "UID_MIN" => range.0 = value,
            "UID_MAX" => range.1 = value,
            _ => {}
        }
    }
    if range.0 > range.1 {
        return DEFAULT_UID_RANGE;
    }
    range
}

/// The user-id range of people on this host, read once from
/// [`LOGIN_DEFS`].
pub fn uid_range() -> (u32, u32) {
    static RANGE: OnceLock<(u32, u32)> = OnceLock::new();
    *RANGE.get_or_init(|| {
        std::fs::read_to_string(LOGIN_DEFS)
            .map(|t| parse_login_defs(&t))
            .unwrap_or(DEFAULT_UID_RANGE)
    })
}

/// The names in passwd text whose uid is 0 or outside `range`.
pub fn parse_untouchable(passwd: &str, range: (u32, u32)) -> Vec<String> {
    let mut names: Vec<String> = passwd
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|l| {
            let mut fields = l.split(':');
            let name = fields.next()?;
            let uid: u32 = fields.nth(1)?.trim().parse().ok()?;
            (uid == 0 || uid < range.0 || uid > range.1).then(|| name.to_string())
        })
        .filter(|name| libhosthog::validate_user_name(name).is_ok())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Every uid-0 and system account in `passwd` (empty if it cannot be
/// read), by [`uid_range`].
pub fn untouchable(passwd: &Path) -> Vec<String> {
    std::fs::read_to_string(passwd)
        .map(|t| parse_untouchable(&t, uid_range()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_zero_and_system_accounts_by_the_login_defs_range() {
        assert_eq!(
            parse_login_defs("# c\nUID_MIN\t\t 500\nUID_MAX 30000\nGID_MIN 7\n"),
            (500, 30000)
        );
        assert_eq!(parse_login_defs("UID_MIN x\n"), DEFAULT_UID_RANGE);
        assert_eq!(
            parse_login_defs("UID_MIN 9\nUID_MAX 8\n"),
            DEFAULT_UID_RANGE
        );
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      toor:x:0:0::/root:/bin/sh\n\
                      daemon:x:1:1::/:/usr/sbin/nologin\n\
                      postgres:x:120:127::/var/lib/postgresql:/bin/bash\n\
                      alice:x:1000:1000::/home/alice:/bin/bash\n\
                      bob:x:60000:60000::/home/bob:/bin/bash\n\
                      nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n\
                      +nisuser::::::\n\
                      broken line\n\
                      bad name:x:5:5::/:/bin/sh\n";
        assert_eq!(
            parse_untouchable(passwd, (1000, 60000)),
            ["daemon", "nobody", "postgres", "root", "toor"]
        );
        assert_eq!(
            parse_untouchable(passwd, (100, 60000)),
            ["daemon", "nobody", "root", "toor"]
        );
    }
}
