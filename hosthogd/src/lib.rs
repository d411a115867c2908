//! hosthogd as a library: the daemon's configuration, its NSS lookups, the
//! audit log, the request [`Service`], the socket server, and the timers
//! (events, MOTD, notification, clearing, presence scanning). Only the
//! hosthogd binary and its tests and benchmarks link it; `hosthog
//! --state-dir` runs `hosthogd --stdio` instead.

pub mod accounts;
pub mod audit;
pub mod clear;
pub mod commit;
pub mod config;
pub mod events;
pub mod fleet;
pub mod history;
pub mod host;
pub mod join;
pub mod motd;
pub mod notify;
pub mod nss;
pub mod presence;
pub mod rate;
pub mod runfile;
pub mod schedule;
pub mod server;
pub mod service;
pub mod subprocess;

pub use config::Config;
pub use service::Service;

pub use hosthog_booking::protocol::DEFAULT_SOCKET;
/// The state directory (table, lock, audit log) unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hosthog";

/// The command line of hosthogd.
#[derive(Debug, clap::Parser)]
#[command(
    name = "hosthogd",
    version,
    about = "The hosthog daemon: the only writer of the reservation table for ordinary users",
    long_about = "hosthogd listens on a Unix socket for requests from the hosthog command, \
identifies each caller by SO_PEERCRED, checks what they may do, writes the reservation \
table through the store and appends every change to the audit log. Under systemd it is \
socket-activated (hosthogd.socket); otherwise start it with --socket and --state-dir."
)]
pub struct Args {
    /// Serve one connection on standard input, which must be a Unix socket,
    /// and exit when it closes: how `hosthog --state-dir` (root) works on a
    /// state directory without a running daemon.
    #[arg(long, conflicts_with = "socket")]
    pub stdio: bool,
    /// Socket to listen on (ignored under systemd socket activation).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: std::path::PathBuf,
    /// State directory: table, lock file, audit log, exemptions.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: std::path::PathBuf,
    /// Configuration file [default: /etc/hosthog/hosthog.toml if it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Most connections served at once; more wait to be accepted. One user
    /// other than root may hold at most a quarter of them (so one user
    /// cannot starve the others); each request must arrive within 5 s.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_connections: usize,
    /// Seconds between re-expansions of exempt groups (and pruning).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub refresh_interval: u64,
    /// The MOTD fragment to keep current ("none": do not write one).
    #[arg(long, value_name = "PATH", default_value = crate::motd::MOTD_PATH)]
    pub motd: std::path::PathBuf,
    /// Where to keep the presence snapshot ("none": do not write one).
    #[arg(long, value_name = "PATH", default_value = libhosthog::PRESENCE_PATH)]
    pub presence: std::path::PathBuf,
    /// Append one JSON line per event (start, end, lead, ...) to this file.
    #[arg(long, value_name = "FILE")]
    pub event_log: Option<std::path::PathBuf>,
    /// The longest the timers sleep, in seconds; the presence snapshot is
    /// refreshed this often.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub tick: u64,
}
