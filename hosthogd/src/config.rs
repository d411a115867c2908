//! `/etc/hosthog/hosthog.toml`: admin group, exemptions and limits.
//! docs/config.md describes every key.

use std::path::{Path, PathBuf};

use hosthog_booking::policy::Limits;
use serde::Deserialize;
use toml::Spanned;

/// Where the configuration lives unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/hosthog/hosthog.toml";

/// The configuration, checked and with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Members of this group are admins (root always is).
    pub admin_group: Option<String>,
    /// Always allowed to log in (besides root).
    pub exempt_users: Vec<String>,
    /// Their members are always allowed to log in; expanded to user names
    /// when the daemon writes the table.
    pub exempt_groups: Vec<String>,
    pub limits: Limits,
    /// Notifications and clearing the host (docs/admin-guide.md).
    pub host: HostConfig,
    /// The fleet calendar this host follows (`[fleet]`); none: a host of
    /// its own, as before.
    pub fleet: Option<FleetConfig>,
    /// How fast one user may change the table (`[limits]`).
    pub writes: WriteRate,
    /// Bounds of the audit log (`[audit]`).
    pub audit: AuditConfig,
}

/// A token bucket per uid for requests that change the table: `burst`
/// changes at once, refilled at `per_minute`. Admins are not limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRate {
    /// `writes_per_minute`; `None` (0 in the file) means unlimited.
    pub per_minute: Option<u32>,
    /// `write_burst`.
    pub burst: u32,
}

impl Default for WriteRate {
    fn default() -> WriteRate {
        WriteRate {
            per_minute: Some(30),
            burst: 20,
        }
    }
}

/// The audit log's size cap and how many rotated files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    pub max_size: u64,
    pub keep: u32,
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig {
            max_size: crate::audit::DEFAULT_MAX_SIZE,
            keep: crate::audit::DEFAULT_KEEP,
        }
    }
}

/// `[fleet]`: the hosthog-server this host follows, and who it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `https://HOST:PORT` of hosthog-server.
    pub server: String,
    /// This host's name in the calendar.
    pub host: String,
    /// The certificate bundle from `hosthog-server host add`.
    pub bundle: PathBuf,
    /// After this many seconds without hearing from the server, every
    /// login is told how old the host's copy of the calendar is
    /// (`stale_after`, default 5 min).
    pub stale_after: i64,
}

/// What hosthogd does on the host at the instants of reservations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Seconds before an exclusive slot starts at which the people it
    /// concerns are told (`notify_lead`, default 15 and 1 minutes).
    pub notify_lead: Vec<i64>,
    /// Seconds before a reservation ends at which its owner and co-users
    /// are told how to extend it (`notify_end_lead`, default 15 minutes).
    pub notify_end_lead: Vec<i64>,
    /// End the sessions of people not allowed during an exclusive slot
    /// (`clear_host`, default off).
    pub clear_host: bool,
    /// How long after the start they have to leave (`clear_grace`, 5 min).
    pub clear_grace: i64,
    /// Stop systemd timers for an exclusive slot and start them again
    /// after it, where systemd runs (`pause_timers`, default off; only with
    /// `clear_host`).
    pub pause_timers: bool,
}

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            notify_lead: vec![15 * 60, 60],
            notify_end_lead: vec![15 * 60],
            clear_host: false,
            clear_grace: 5 * 60,
            pause_timers: false,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            admin_group: None,
            exempt_users: Vec::new(),
            exempt_groups: Vec::new(),
            limits: Limits {
                max_duration: Some(7 * 86_400),
                max_ahead: Some(90 * 86_400),
                max_open_per_user: Some(20),
                max_exclusive: Some(7 * 86_400),
            },
            host: HostConfig::default(),
            fleet: None,
            writes: WriteRate::default(),
            audit: AuditConfig::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    admin_group: Option<Spanned<String>>,
    #[serde(default)]
    exempt_users: Vec<Spanned<String>>,
    #[serde(default)]
    exempt_groups: Vec<Spanned<String>>,
    max_duration: Option<Spanned<String>>,
    max_ahead: Option<Spanned<String>>,
    max_open_per_user: Option<Spanned<u32>>,
    notify_lead: Option<Vec<Spanned<String>>>,
    notify_end_lead: Option<Vec<Spanned<String>>>,
    clear_host: Option<bool>,
    clear_grace: Option<Spanned<String>>,
    pause_timers: Option<bool>,
    fleet: Option<RawFleet>,
    limits: Option<RawLimits>,
    audit: Option<RawAudit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_exclusive: Option<Spanned<String>>,
    writes_per_minute: Option<u32>,
    write_burst: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    max_size: Option<Spanned<String>>,
    keep: Option<Spanned<u32>>,
}

/// A size such as "16M", "512K", "1G" or a number of bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let unit = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    server: Spanned<String>,
    host: Spanned<String>,
    bundle: PathBuf,
    stale_after: Option<Spanned<String>>,
}

/// A configuration file that cannot be used: one line naming the file, the
/// line and the problem.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Reads the configuration at `path`. With `path` `None` the default file is
/// read if it exists (defaults otherwise); a path given explicitly must
/// exist.
///
/// # Errors
/// [`ConfigError`] naming the file, the line and what is wrong.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Config::default()),
        Err(e) => Err(ConfigError(format!("{}: {e}", path.display()))),
    }
}

/// Parses configuration text; `path` is only used in messages.
///
/// # Errors
/// [`ConfigError`] naming the file, the line and what is wrong.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let at = |span: std::ops::Range<usize>, message: &str| {
        let line = text
            .get(..span.start)
            .map_or(0, |before| before.bytes().filter(|b| *b == b'\n').count())
            + 1;
        ConfigError(format!(
            "{} line {line}: {}",
            path.display(),
            message.trim().replace('\n', " ")
        ))
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => at(span, e.message()),
        None => ConfigError(format!(
            "{}: {}",
            path.display(),
            e.message().trim().replace('\n', " ")
        )),
    })?;
    let mut config = Config::default();
    let name = |s: &Spanned<String>| -> Result<String, ConfigError> {
        libhosthog::validate_user_name(s.get_ref())
            .map(|()| s.get_ref().clone())
            .map_err(|e| at(s.span(), &e.to_string()))
    };
    if let Some(group) = &raw.admin_group {
        config.admin_group = Some(name(group)?);
    }
    config.exempt_users = raw
        .exempt_users
        .iter()
        .map(name)
        .collect::<Result<_, _>>()?;
    config.exempt_groups = raw
        .exempt_groups
        .iter()
        .map(name)
        .collect::<Result<_, _>>()?;
    let duration = |s: &Spanned<String>| -> Result<Option<i64>, ConfigError> {
        let text = s.get_ref().trim();
        if text == "unlimited" {
            return Ok(None);
        }
        hosthog_booking::parse_duration(text)
            .map(Some)
            .map_err(|e| at(s.span(), &e.to_string()))
    };
    let lead_times = |leads: &[Spanned<String>]| -> Result<Vec<i64>, ConfigError> {
        let mut seconds = Vec::new();
        for lead in leads {
            match duration(lead)? {
                Some(s) => seconds.push(s),
                None => return Err(at(lead.span(), "a lead time cannot be unlimited")),
            }
        }
        seconds.sort_unstable_by(|a, b| b.cmp(a));
        seconds.dedup();
        Ok(seconds)
    };
    if let Some(d) = &raw.max_duration {
        config.limits.max_duration = duration(d)?;
    }
    if let Some(d) = &raw.max_ahead {
        config.limits.max_ahead = duration(d)?;
    }
    if let Some(n) = &raw.max_open_per_user {
        config.limits.max_open_per_user = match *n.get_ref() {
            0 => None,
            n => Some(n as usize),
        };
    }
    if let Some(leads) = &raw.notify_lead {
        config.host.notify_lead = lead_times(leads)?;
    }
    if let Some(leads) = &raw.notify_end_lead {
        config.host.notify_end_lead = lead_times(leads)?;
    }
    if let Some(on) = raw.clear_host {
        config.host.clear_host = on;
    }
    if let Some(grace) = &raw.clear_grace {
        config.host.clear_grace =
            duration(grace)?.ok_or_else(|| at(grace.span(), "clear_grace cannot be unlimited"))?;
    }
    if let Some(on) = raw.pause_timers {
        config.host.pause_timers = on;
    }
    if let Some(limits) = &raw.limits {
        if let Some(d) = &limits.max_exclusive {
            config.limits.max_exclusive = duration(d)?;
        }
        if let Some(n) = limits.writes_per_minute {
            config.writes.per_minute = (n > 0).then_some(n);
        }
        if let Some(n) = &limits.write_burst {
            if *n.get_ref() == 0 {
                return Err(at(n.span(), "write_burst must be at least 1"));
            }
            config.writes.burst = *n.get_ref();
        }
    }
    if let Some(audit) = &raw.audit {
        if let Some(size) = &audit.max_size {
            config.audit.max_size = parse_size(size.get_ref())
                .filter(|n| *n >= 4096)
                .ok_or_else(|| {
                    at(
                        size.span(),
                        "max_size is a size of at least 4K, e.g. \"16M\", \"512K\"",
                    )
                })?;
        }
        if let Some(keep) = &audit.keep {
            if *keep.get_ref() == 0 {
                return Err(at(keep.span(), "keep must be at least 1"));
            }
            config.audit.keep = *keep.get_ref();
        }
    }
    if let Some(fleet) = &raw.fleet {
        let server = fleet.server.get_ref().trim_end_matches('/');
        let rest = server.strip_prefix("https://").ok_or_else(|| {
            at(
                fleet.server.span(),
                "server must be an https:// address (hosthog-server speaks HTTPS only)",
            )
        })?;
        if rest.is_empty() || rest.contains('/') {
            return Err(at(
                fleet.server.span(),
                "server is https://HOST:PORT, without a path",
            ));
        }
        let host = fleet.host.get_ref();
        let valid = !host.is_empty()
            && host.len() <= 63
            && host
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid {
            return Err(at(
                fleet.host.span(),
                "host is this host's name in the calendar (lowercase letters, digits, '.', '-')",
            ));
        }
        let stale_after = match &fleet.stale_after {
            Some(d) => {
                duration(d)?.ok_or_else(|| at(d.span(), "stale_after cannot be unlimited"))?
            }
            None => 5 * 60,
        };
        config.fleet = Some(FleetConfig {
            server: server.to_string(),
            host: host.clone(),
            bundle: fleet.bundle.clone(),
            stale_after,
        });
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_the_line_of_an_error() {
        let path = Path::new("hosthog.toml");
        let config = parse(
            "admin_group = \"lab-admins\"\nexempt_users = [\"nagios\"]\nexempt_groups = [\"ops\"]\n\
             max_duration = \"2d\"\nmax_ahead = \"unlimited\"\nmax_open_per_user = 3\n",
            path,
        )
        .unwrap();
        assert_eq!(config.admin_group.as_deref(), Some("lab-admins"));
        assert_eq!(config.limits.max_duration, Some(2 * 86_400));
        assert_eq!(config.limits.max_ahead, None);
        assert_eq!(config.limits.max_open_per_user, Some(3));
        assert_eq!(config.host, HostConfig::default());
        assert_eq!(config.writes, WriteRate::default());
        assert_eq!(config.limits.max_exclusive, Some(7 * 86_400));
        assert_eq!(
            parse("[limits]\nmax_exclusive = \"unlimited\"\n", path)
                .unwrap()
                .limits
                .max_exclusive,
            None
        );

        let bounded = parse(
            "[limits]\nwrites_per_minute = 6\nwrite_burst = 3\n[audit]\nmax_size = \"64K\"\nkeep = 2\n",
            path,
        )
        .unwrap();
        assert_eq!(
            bounded.writes,
            WriteRate {
                per_minute: Some(6),
                burst: 3
            }
        );
        assert_eq!(
            bounded.audit,
            AuditConfig {
                max_size: 65_536,
                keep: 2
            }
        );
        assert_eq!(
            parse("[limits]\nwrites_per_minute = 0\n", path)
                .unwrap()
                .writes
                .per_minute,
            None
        );

        let host = parse(
            "notify_lead = [\"1m\", \"15m\", \"10s\"]\nnotify_end_lead = [\"5m\", \"30m\"]\nclear_host = true\nclear_grace = \"2m\"\n",
            path,
        )
        .unwrap()
        .host;
        assert_eq!(host.notify_lead, [900, 60, 10]);
        assert_eq!(host.notify_end_lead, [1800, 300]);
        assert!(host.clear_host);
        assert_eq!(host.clear_grace, 120);
        assert!(
            parse("notify_lead = []\n", path)
                .unwrap()
                .host
                .notify_lead
                .is_empty()
        );

        for (text, expect) in [
            (
                "admin_group = \"a\"\nfoo = 1\n",
                "hosthog.toml line 2: unknown field `foo`",
            ),
            (
                "\n\nmax_duration = \"soon\"\n",
                "hosthog.toml line 3: \"soon\" is not a duration",
            ),
            (
                "exempt_users = [\"ok\", \"bad name\"]\n",
                "hosthog.toml line 1: bad name is not a valid user name",
            ),
            ("max_open_per_user = -1\n", "hosthog.toml line 1:"),
            ("admin_group = \n", "hosthog.toml line 1:"),
            (
                "\nnotify_lead = [\"15m\", \"soon\"]\n",
                "hosthog.toml line 2: \"soon\" is not a duration",
            ),
            ("clear_grace = \"unlimited\"\n", "hosthog.toml line 1:"),
            (
                "notify_lead = [\"unlimited\"]\n",
                "hosthog.toml line 1: a lead time cannot be unlimited",
            ),
            ("clear_host = \"yes\"\n", "hosthog.toml line 1:"),
            (
                "[limits]\nwrite_burst = 0\n",
                "hosthog.toml line 2: write_burst must be at least 1",
            ),
            (
                "[audit]\nmax_size = \"lots\"\n",
                "hosthog.toml line 2: max_size is a size of at least 4K",
            ),
            (
                "[limits]\nwrites = 1\n",
                "hosthog.toml line 2: unknown field",
            ),
        ] {
            let err = parse(text, path).unwrap_err().to_string();
            assert!(err.starts_with(expect), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
