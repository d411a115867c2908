//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Reserve this shared host, see who has it, and find out why a login is refused.
#[derive(Debug, Parser)]
#[command(
    name = "hosthog",
    version,
    after_help = "Times are read and shown in your TZ if set, else the host's time zone: \"2h\", \"90m\", \"18:00\" (a past time \
of day means tomorrow), \"tomorrow 9:00\", \"next monday 9am\", \"2026-12-01 14:00\".\n\
Reservation ids may be shortened to any unique prefix (hosthog list shows 8 hex digits).\n\
Exit status: 0 success; 1 `check` found the user would be refused; 2 any error or refusal."
)]
pub struct Cli {
    /// hosthogd's socket.
    #[arg(long, global = true, value_name = "PATH", env = "HOSTHOG_SOCKET",
          default_value = hosthog_booking::protocol::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Work on this state directory directly, without hosthogd (root only).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Configuration for --state-dir [default: /etc/hosthog/hosthog.toml if present].
    #[arg(long, global = true, value_name = "FILE", requires = "state_dir")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reserve the host (exclusive unless --shared).
    Reserve(Reserve),
    /// List current and future reservations.
    List {
        /// Also list reservations that have ended but are still in the table
        /// (with --fleet: those ended or cancelled in the last 30 days).
        #[arg(long)]
        all: bool,
        /// Your reservations on the whole fleet calendar, with their hosts
        /// (on a host that follows a fleet calendar).
        #[arg(long)]
        fleet: bool,
    },
    /// Show one reservation.
    Show { id: String },
    /// Make a reservation last longer (or shorter).
    Extend(Extend),
    /// Change a reservation's start, end, mode or comment.
    Edit(Edit),
    /// Let users in during your reservation (co-users may also change it).
    Share {
        id: String,
        #[arg(required = true, value_name = "USER")]
        users: Vec<String>,
    },
    /// Take users off a reservation.
    Unshare {
        id: String,
        #[arg(required = true, value_name = "USER")]
        users: Vec<String>,
    },
    /// End your reservation now (or drop it if it has not started).
    Release { id: String },
    /// Remove anyone's reservation (admins).
    Cancel { id: String },
    /// Explain whether USER may log in (now or --at WHEN) and why.
    Check {
        user: String,
        /// The PAM service of the login.
        #[arg(long, default_value = "sshd")]
        service: String,
        /// Decide for this time instead of now.
        #[arg(long, value_name = "WHEN")]
        at: Option<String>,
    },
    /// Admin notices shown at every login.
    #[command(subcommand)]
    Notice(NoticeCommand),
    /// Users and groups always allowed to log in.
    #[command(subcommand)]
    Exempt(ExemptCommand),
    /// Show who hosthogd thinks you are, and whether you are an admin.
    Whoami,
    /// Show who is on the host and how, by person: logins (su and ssh
    /// too, with or without utmp), tmux and screen servers, VS Code
    /// servers, X sessions, GPU processes, and everyone's processes (what
    /// clearing the host would end).
    Who,
    /// Print the login message (MOTD) fragment hosthogd keeps in /run/motd.d/hosthog.
    Motd,
    /// Write a message to everyone on the host (reservation holders and admins).
    Post {
        /// The message (the words are joined with spaces).
        #[arg(required = true, value_name = "MESSAGE", trailing_var_arg = true)]
        message: Vec<String>,
    },
    /// Every host of the fleet: who holds it now, who is on it, when it
    /// last synced the calendar and last reported who is on it (on a host
    /// that follows a fleet calendar).
    Hosts,
    /// Your tokens for the fleet's API (on a host that follows a fleet
    /// calendar): make one, list them, revoke one.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a one-time link that signs you in to the fleet's web calendar
    /// (valid for 10 minutes, once).
    Web,
    /// Print a new secret address of an iCal feed of your reservations (and
    /// of those you are on), for a calendar app.
    Feed,
    /// Your past reservations and the hours you reserved (admins: --all).
    History {
        /// From when: a duration back from now (30d, 1w is 7d) or a time
        /// ("2026-11-01", "2026-11-01 09:00") [default: 30d].
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Everyone's reservations and hours (admins).
        #[arg(long)]
        all: bool,
    },
    /// Print the reservation ids (`ids`) or user names (`users`) in the
    /// table, one a line, for the bash completion script.
    #[command(name = "__complete", hide = true)]
    Complete {
        #[arg(value_parser = ["ids", "users"])]
        what: String,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct Reserve {
    /// Keep everyone else out (the default).
    #[arg(long, conflicts_with = "shared")]
    pub exclusive: bool,
    /// Others may still log in; the reservation tells them the host is busy.
    #[arg(long)]
    pub shared: bool,
    /// When it starts [default: now].
    #[arg(long, value_name = "WHEN")]
    pub start: Option<String>,
    /// How long, e.g. 3h, 90m, 1h30m.
    #[arg(
        long = "for",
        value_name = "DURATION",
        conflicts_with = "until",
        required_unless_present = "until"
    )]
    pub duration: Option<String>,
    /// When it ends, e.g. 18:00, "tomorrow 9:00".
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Co-users who may log in and change it (repeat or separate with commas).
    #[arg(long = "with", value_name = "USER", value_delimiter = ',')]
    pub with: Vec<String>,
    /// Reserve for this user (admins).
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,
    /// Override conflicts and limits (admins; recorded in the audit log).
    #[arg(long)]
    pub force: bool,
    /// Book these hosts of the fleet, all or nothing (a host that follows
    /// a fleet calendar; repeat or separate with commas) [default: this host].
    /// With --next-free: the hosts to choose from, names or patterns
    /// ('gpu*', 'node-?').
    #[arg(long = "hosts", value_name = "HOST", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Book the earliest free slot of --for on one of --hosts (ties go to
    /// the first by name), not before --start [default: now].
    #[arg(
        long,
        requires_all = ["hosts", "duration"],
        conflicts_with_all = ["until", "owner", "force"]
    )]
    pub next_free: bool,
    /// Why, shown to people refused at login.
    #[arg(value_name = "COMMENT", trailing_var_arg = true)]
    pub comment: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Extend {
    pub id: String,
    /// Add this much time to the end.
    #[arg(
        long = "for",
        value_name = "DURATION",
        conflicts_with = "until",
        required_unless_present = "until"
    )]
    pub duration: Option<String>,
    /// The new end.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Override conflicts and limits (admins).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct Edit {
    pub id: String,
    /// New start (only before it has started).
    #[arg(long, value_name = "WHEN")]
    pub start: Option<String>,
    /// New end.
    #[arg(long, value_name = "WHEN", conflicts_with = "duration")]
    pub until: Option<String>,
    /// New length, counted from the (new) start.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Make it exclusive.
    #[arg(long, conflicts_with = "shared")]
    pub exclusive: bool,
    /// Make it shared.
    #[arg(long)]
    pub shared: bool,
    /// New comment.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Override conflicts and limits (admins).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum NoticeCommand {
    /// Post a notice (admins).
    Add {
        text: String,
        /// When it starts being shown [default: now].
        #[arg(long, value_name = "WHEN")]
        start: Option<String>,
        /// When it stops being shown [default: until removed].
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
    },
    /// List notices.
    List,
    /// Remove a notice (admins).
    Remove { id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a bearer token for the fleet's API (/api/v1), shown once.
    Create {
        /// How long it lasts ("30d", "12h") [default: until revoked].
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// A note to tell it apart in `token list`.
        #[arg(long, value_name = "TEXT", default_value = "")]
        label: String,
    },
    /// List your live tokens (API and feed tokens), never their secrets.
    List,
    /// Revoke one of your tokens by its id (or a prefix of at least 4 digits).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ExemptCommand {
    /// Exempt users and groups (admins).
    Add(ExemptNames),
    /// List the exemption list.
    List,
    /// Remove users and groups from the exemption list (admins).
    Remove(ExemptNames),
}

#[derive(Debug, Args)]
pub struct ExemptNames {
    /// Users.
    #[arg(value_name = "USER")]
    pub users: Vec<String>,
    /// Groups (expanded to their members when the table is written).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
}
