//! hosthog-server: see the library (src/lib.rs) and docs/fleet-api.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hosthog_server::database::{self, DEFAULT_CONFIG};
use hosthog_server::{Calendar, Database, tls};

/// Where `serve` listens unless told otherwise.
const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// The CA directory unless told otherwise.
const DEFAULT_CA_DIR: &str = "/etc/hosthog/ca";

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
struct Args {
    /// The database, as a libpq-style connection string or URL (unix
    /// sockets included: "host=/run/postgresql dbname=hosthog").
    #[arg(long, global = true, value_name = "URL", env = database::DATABASE_ENV, hide_env_values = true)]
    database: Option<String>,
    /// Configuration file.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The CA directory [default: ca_dir of the configuration, else /etc/hosthog/ca].
    #[arg(long, global = true, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    /// API tokens for people and scripts.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Make the CA and the server's certificate.
    Init {
        /// A name the hosts use to reach the server (DNS name or IP
        /// address; repeat for several).
        #[arg(long = "name", value_name = "NAME", required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum HostCommand {
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
enum TokenCommand {
    /// Make an API token for USER (printed once).
    Add { user: String },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hosthog-server: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("hosthog-server: {message}");
            ExitCode::from(2)
        }
    }
}

#[allow(clippy::disallowed_methods)] // the command's entry point reads the clock once
fn today() -> jiff::civil::Date {
    jiff::Zoned::now().date()
}

async fn run(args: Args) -> Result<String, String> {
    let config = database::load_config(&args.config).map_err(|e| e.to_string())?;
    let ca_dir = args
        .ca_dir
        .clone()
        .or_else(|| config.ca_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CA_DIR));
    if let Command::Ca {
        command: CaCommand::Init { names },
    } = &args.command
    {
        let files = tls::ca_init(&ca_dir, names, today()).map_err(|e| e.to_string())?;
        return Ok(files
            .iter()
            .map(|f| format!("wrote {}\n", f.display()))
            .collect());
    }
    let url = database::url(args.database.as_deref(), &config, &args.config)
        .map_err(|e| e.to_string())?;
    let db = Database::new(&url).map_err(|e| e.to_string())?;
    let calendar = Calendar::new(db.clone());
    match args.command {
        Command::Ca { .. } => Ok(String::new()),
        Command::Migrate => {
            let applied = hosthog_server::migrate::migrate(&db)
                .await
                .map_err(|e| e.to_string())?;
            Ok(if applied.is_empty() {
                "the schema is up to date\n".to_string()
            } else {
                let list: Vec<String> = applied.iter().map(i32::to_string).collect();
                format!("applied migrations {}\n", list.join(", "))
            })
        }
        Command::Serve { listen } => {
            let listen = listen.or(config.listen).unwrap_or_else(|| {
                DEFAULT_LISTEN
                    .parse()
                    .unwrap_or(([0, 0, 0, 0], 8443).into())
            });
            serve(&ca_dir, listen, calendar).await
        }
        Command::Host { command } => host(&ca_dir, &calendar, command).await,
        Command::Token {
            command: TokenCommand::Add { user },
        } => {
            let token = calendar.add_token(&user).await.map_err(|e| e.to_string())?;
            Ok(format!("{token}\n"))
        }
    }
}

async fn serve(ca_dir: &Path, listen: SocketAddr, calendar: Calendar) -> Result<String, String> {
    let tls = tls::server_config(ca_dir).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("hosthog-server: listening on https://{bound}");
    let app = hosthog_server::http::router(calendar);
    tokio::select! {
        () = hosthog_server::http::serve(listener, tls, app) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(String::new())
}

async fn host(ca_dir: &Path, calendar: &Calendar, command: HostCommand) -> Result<String, String> {
    match command {
        HostCommand::Add { name, bundle } => {
            let version = calendar.add_host(&name).await.map_err(|e| e.to_string())?;
            let issued = tls::issue_host(ca_dir, &name, today()).map_err(|e| e.to_string())?;
            let path = bundle.unwrap_or_else(|| PathBuf::from(format!("{name}.bundle.pem")));
            tls::write_bundle(&path, &issued).map_err(|e| e.to_string())?;
            calendar
                .set_host_certificate(&name, &issued.fingerprint)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "{name} is in the calendar (version {version}); its bundle is {} \
                 (copy it to the host, then remove it here)\n",
                path.display()
            ))
        }
        HostCommand::List => {
            let hosts = calendar.hosts().await.map_err(|e| e.to_string())?;
            Ok(hosts
                .iter()
                .map(|(name, version)| format!("{name}\tversion {version}\n"))
                .collect())
        }
        HostCommand::Revoke { name } => {
            calendar
                .revoke_host(&name)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "{name} is revoked: its certificate no longer works\n"
            ))
        }
    }
}
