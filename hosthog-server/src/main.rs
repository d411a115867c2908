//! hosthog-server: see the library (src/lib.rs) and docs/architecture.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hosthog_server::database::{self, DEFAULT_CONFIG};
use hosthog_server::{Calendar, Database};

/// The command line of hosthog-server.
#[derive(Debug, Parser)]
#[command(
    name = "hosthog-server",
    version,
    about = "One calendar for a fleet of hosts, on PostgreSQL"
)]
struct Args {
    /// The database, as a libpq-style connection string or URL (unix
    /// sockets included: "host=/run/postgresql dbname=hosthog").
    #[arg(long, global = true, value_name = "URL", env = database::DATABASE_ENV, hide_env_values = true)]
    database: Option<String>,
    /// Configuration file; its [database] url is used when neither
    /// --database nor HOSTHOG_DATABASE_URL is given.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or update the schema (versioned migrations; safe to repeat).
    Migrate,
    /// Hosts in the calendar.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
}

#[derive(Debug, Subcommand)]
enum HostCommand {
    /// Add a host to the calendar (safe to repeat).
    Add { name: String },
    /// List the hosts and their calendar versions.
    List,
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

async fn run(args: Args) -> Result<String, String> {
    // --database and HOSTHOG_DATABASE_URL arrive through clap as one value.
    let url =
        database::url(args.database.as_deref(), None, &args.config).map_err(|e| e.to_string())?;
    let db = Database::new(&url).map_err(|e| e.to_string())?;
    match args.command {
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
        Command::Host { command } => {
            let calendar = Calendar::new(db);
            match command {
                HostCommand::Add { name } => {
                    let version = calendar.add_host(&name).await.map_err(|e| e.to_string())?;
                    Ok(format!("{name} is in the calendar (version {version})\n"))
                }
                HostCommand::List => {
                    let hosts = calendar.hosts().await.map_err(|e| e.to_string())?;
                    Ok(hosts
                        .iter()
                        .map(|(name, version)| format!("{name}\tversion {version}\n"))
                        .collect())
                }
            }
        }
    }
}
