//! hosthog-server: see the library (src/lib.rs) and docs/fleet-api.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use hosthog_server::cli::{
    AdminCommand, Args, CaCommand, Command, DEFAULT_CA_DIR, DEFAULT_LISTEN, HostCommand,
    TokenCommand,
};
use hosthog_server::database;
use hosthog_server::{Calendar, Database, tls};

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
    let limits = config.limits.limits().map_err(|e| e.to_string())?;
    let calendar = Calendar::new(db.clone()).with_limits(limits);
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
        Command::Admin { command } => {
            let (user, admin) = match command {
                AdminCommand::Add { user } => (user, true),
                AdminCommand::Remove { user } => (user, false),
            };
            let changed = calendar
                .set_admin(&user, admin)
                .await
                .map_err(|e| e.to_string())?;
            Ok(match (admin, changed) {
                (true, true) => format!("{user} is now an admin\n"),
                (true, false) => format!("{user} was already an admin\n"),
                (false, true) => format!("{user} is no longer an admin\n"),
                (false, false) => format!("{user} was not an admin\n"),
            })
        }
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
    // A schema older than this binary would fail requests one by one, each
    // with its own missing table: refuse at once, saying what to run. A
    // database that cannot be reached now is waited for, as always.
    match hosthog_server::migrate::missing(calendar.database()).await {
        Ok(missing) if !missing.is_empty() => {
            let list: Vec<String> = missing.iter().map(i32::to_string).collect();
            return Err(format!(
                "the database {} lacks migrations {} of this hosthog-server: \
                 run `hosthog-server migrate` first (scripts/install --server does)",
                calendar.database().name(),
                list.join(", ")
            ));
        }
        Ok(_) => {}
        Err(e) => eprintln!(
            "hosthog-server: cannot check the database's schema now ({e}); serving, \
             and answering 503 until the database can be reached"
        ),
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("hosthog-server: listening on https://{bound}");
    let changes = hosthog_server::notify::listen(calendar.database().config().clone());
    let app = hosthog_server::http::router(calendar, changes);
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
