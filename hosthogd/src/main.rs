//! hosthogd: see the crate documentation in lib.rs and docs/protocol.md.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hosthogd::{Args, Service, config, server};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(message) => {
            eprintln!("hosthogd: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, String> {
    // Take the activated socket first, before any thread starts.
    let activated = server::systemd_listener();
    let args = Args::parse();
    let config = config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    let service = Arc::new(Service::new(&args.state_dir, config)?);
    let (listener, listening_on) = match activated {
        Some(listener) => (listener, "the systemd socket".to_string()),
        None => (
            server::bind(&args.socket)?,
            args.socket.display().to_string(),
        ),
    };
    // Prune ended reservations and pick up group changes at startup and then
    // periodically.
    if let Err(e) = service.refresh(server::now()) {
        eprintln!("hosthogd: refreshing the table: {e}");
    }
    let refresher = Arc::clone(&service);
    let interval = Duration::from_secs(args.refresh_interval.max(1));
    std::thread::Builder::new()
        .name("hosthogd-refresh".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                if let Err(e) = refresher.refresh(server::now()) {
                    eprintln!("hosthogd: refreshing the table: {e}");
                }
            }
        })
        .map_err(|e| format!("cannot start the refresh thread: {e}"))?;
    eprintln!(
        "hosthogd: serving {} on {}",
        args.state_dir.display(),
        listening_on
    );
    server::serve(&listener, service, args.max_connections);
    Ok(ExitCode::SUCCESS)
}
