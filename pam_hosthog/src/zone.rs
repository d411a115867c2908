//! The host's time zone, read the way a login can afford.
//!
//! `jiff::tz::TimeZone::system()` also finds the zone's IANA name, and to
//! find it walks every directory of /usr/share/zoneinfo: over a millisecond
//! of a refused login, spent on a name the messages never show (they show
//! the abbreviation, `CET`). This reads only the one file that holds the
//! rules, as libc does: `$TZ` if set, else /etc/localtime.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;

const LOCALTIME: &str = "/etc/localtime";
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// The local time zone of this process; UTC when it cannot be read.
pub fn local() -> TimeZone {
    from(std::env::var_os("TZ").as_deref(), &|path: &Path| {
        std::fs::read(path).ok()
    })
}

/// The zone `tz` (the value of `$TZ`, if set) names, reading files with
/// `read`: unset means /etc/localtime; `:NAME` or `NAME` a file under
/// /usr/share/zoneinfo (or an absolute path); anything else a POSIX rule
/// such as `CET-1CEST,M3.5.0,M10.5.0/3`. UTC when nothing fits.
pub fn from(tz: Option<&OsStr>, read: &dyn Fn(&Path) -> Option<Vec<u8>>) -> TimeZone {
    let tzif = |path: &Path| read(path).and_then(|data| TimeZone::tzif("local", &data).ok());
    let Some(value) = tz else {
        return tzif(Path::new(LOCALTIME)).unwrap_or(TimeZone::UTC);
    };
    let value = value.as_bytes();
    let name = value.strip_prefix(b":").unwrap_or(value);
    if name.is_empty() {
        return TimeZone::UTC;
    }
    let path = if name.starts_with(b"/") {
        Some(PathBuf::from(OsStr::from_bytes(name)))
    } else if name
        .split(|b| *b == b'/')
        .all(|part| !part.is_empty() && part != b"..")
    {
        Some(Path::new(ZONEINFO).join(OsStr::from_bytes(name)))
    } else {
        None
    };
    if let Some(zone) = path.as_deref().and_then(tzif) {
        return zone;
    }
    std::str::from_utf8(name)
        .ok()
        .and_then(|rule| TimeZone::posix(rule).ok())
        .unwrap_or(TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use jiff::Timestamp;

    /// The abbreviation `zone` shows at 2027-01-15 08:00 UTC (winter) and
    /// 2027-07-15 08:00 UTC (summer).
    fn abbreviations(zone: &TimeZone) -> (String, String) {
        let at = |s: i64| {
            Timestamp::from_second(s)
                .unwrap()
                .to_zoned(zone.clone())
                .strftime("%Z %H:%M")
                .to_string()
        };
        (at(1_800_000_000), at(1_815_724_800))
    }

    fn system_file(path: &Path) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }

    #[test]
    fn names_rules_and_files() {
        let berlin = Path::new(ZONEINFO).join("Europe/Berlin");
        assert!(
            berlin.is_file(),
            "{} is missing: install tzdata",
            berlin.display()
        );
        let cet = ("CET 09:00".to_string(), "CEST 10:00".to_string());
        for tz in [
            ":Europe/Berlin",
            "Europe/Berlin",
            "CET-1CEST,M3.5.0,M10.5.0/3",
        ] {
            let zone = from(Some(OsStr::new(tz)), &system_file);
            assert_eq!(abbreviations(&zone), cet, "TZ={tz}");
        }
        let zone = from(Some(berlin.as_os_str()), &system_file);
        assert_eq!(abbreviations(&zone), cet);
        // Unset: /etc/localtime, whatever it holds; here a Berlin file.
        let data = std::fs::read(&berlin).unwrap();
        let only_localtime = |p: &Path| (p == Path::new(LOCALTIME)).then(|| data.clone());
        assert_eq!(abbreviations(&from(None, &only_localtime)), cet);
    }

    #[test]
    fn what_cannot_be_read_is_utc() {
        let nothing = |_: &Path| None;
        let utc = ("UTC 08:00".to_string(), "UTC 08:00".to_string());
        assert_eq!(abbreviations(&from(None, &nothing)), utc);
        for tz in [
            "",
            ":",
            "../../etc/shadow",
            "Europe/../../x",
            "No/Such/Zone",
            "!!",
        ] {
            assert_eq!(
                abbreviations(&from(Some(OsStr::new(tz)), &system_file)),
                utc,
                "TZ={tz:?}"
            );
        }
        // A file that is not TZif is not a zone.
        let garbage = |_: &Path| Some(b"not a zone".to_vec());
        assert_eq!(abbreviations(&from(None, &garbage)), utc);
    }
}
