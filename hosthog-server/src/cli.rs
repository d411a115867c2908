//! The command line of hosthog-server (a module of the library so that
//! `cargo xtask man` can render hosthog-server(8) from it).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::database::{self, DEFAULT_CONFIG};

/// Where `serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// The CA directory unless told otherwise.
pub const DEFAULT_CA_DIR: &str = "/etc/hosthog/ca";

/// The command line of hosthog-server.
#[derive(Debug, Parser)]
#[command(
    name = "hosthog-server",
    version,
    about = "One calendar for a fleet of hosts, on PostgreSQL",
    long_about = "hosthog-server keeps the fleet's calendar in PostgreSQL and serves it over \
HTTPS: hosts follow it with their certificates (/agent/v1), people and scripts book with \
bearer tokens (/api/v1). Every subcommand finds the database in --database, \
HOSTHOG_DATABASE_URL or [database] url of the configuration file."
)]
pub struct Args {
    /// The database, as a libpq-style connection string or URL (unix
    /// sockets included: "host=/run/postgresql dbname=hosthog").
    #[arg(long, global = true, value_name = "URL", env = database::DATABASE_ENV, hide_env_values = true)]
    pub database: Option<String>,
    /// Configuration file.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The CA directory [default: ca_dir of the configuration, else /etc/hosthog/ca].
    #[arg(long, global = true, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the calendar over HTTPS.
    Serve {
        /// Address to listen on [default: listen of the configuration, else 0.0.0.0:8443].
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Create or update the schema (versioned migrations; safe to repeat).
    Migrate,
    /// The lab's certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Hosts in the calendar.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// The fleet's admins (they may cancel anyone's reservation).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// API tokens for people and scripts.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make the CA and the server's certificate.
    Init {
        /// A name the hosts use to reach the server (DNS name or IP
        /// address; repeat for several).
        #[arg(long = "name", value_name = "NAME", required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Add a host and write its certificate bundle (a new bundle replaces
    /// the host's old certificate).
    Add {
        name: String,
        /// Where to write the bundle [default: NAME.bundle.pem].
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
    },
    /// List the hosts and their calendar versions.
    List,
    /// Revoke a host: its certificate stops working at once.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Make USER an admin.
    Add { user: String },
    /// Take USER off the admins.
    Remove { user: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an API token for USER (printed once).
    Add { user: String },
}
