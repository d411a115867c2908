//! hosthogd: see the crate documentation in lib.rs and docs/protocol.md.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hosthogd::events::Timing;
use hosthogd::schedule::{self, Wakeup};
use hosthogd::{Args, Service, clear, config, notify, server};

/// How often the account files are looked at for changes.
const ACCOUNT_POLL: Duration = Duration::from_secs(1);

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
    if args.stdio {
        let connection = server::stdio_connection()?;
        let service = Service::new(&args.state_dir, config)?;
        server::serve_connection(connection, &service, &mut |path| {
            eprintln!("hosthog: waiting for lock on {}", path.display());
        });
        return Ok(ExitCode::SUCCESS);
    }
    let wakeup = Wakeup::new().map_err(|e| format!("cannot create the timers' eventfd: {e}"))?;
    let host = config.host.clone();
    let fleet = match &config.fleet {
        Some(fleet) => Some((fleet.clone(), hosthogd::fleet::Agent::new(fleet)?)),
        None => None,
    };
    let mut service = Service::new(&args.state_dir, config)?
        .with_observer(Arc::clone(&wakeup) as Arc<dyn hosthogd::service::ChangeObserver>);
    if let Some((_, agent)) = &fleet {
        service = service.with_fleet(agent.clone());
    }
    let tz = service.time_zone().clone();
    let service = Arc::new(service);
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
    // Also at once when an account file changes: a system account made
    // now (a package's postinst, then `su` to it) must not wait for the
    // next periodic refresh to be let in. A stat of two files every
    // second costs nothing.
    std::thread::Builder::new()
        .name("hosthogd-refresh".into())
        .spawn(move || {
            let mut seen = hosthogd::accounts::stamps();
            let mut last = std::time::Instant::now();
            loop {
                std::thread::sleep(ACCOUNT_POLL.min(interval));
                let stamps = hosthogd::accounts::stamps();
                if stamps == seen && last.elapsed() < interval {
                    continue;
                }
                seen = stamps;
                last = std::time::Instant::now();
                if let Err(e) = refresher.refresh(server::now()) {
                    eprintln!("hosthogd: refreshing the table: {e}");
                }
            }
        })
        .map_err(|e| format!("cannot start the refresh thread: {e}"))?;
    start_timers(&args, &host, &tz, &service, wakeup)?;
    if let Some((fleet, agent)) = fleet {
        if let Some(presence) = optional(&args.presence) {
            hosthogd::fleet::spawn_presence(agent.clone(), presence)
                .map_err(|e| format!("cannot start the fleet presence reports: {e}"))?;
        }
        hosthogd::fleet::spawn(Arc::clone(&service), agent, args.state_dir.clone())
            .map_err(|e| format!("cannot start the fleet agent: {e}"))?;
        eprintln!(
            "hosthogd: following the fleet calendar at {} as {}",
            fleet.server, fleet.host
        );
    }
    eprintln!(
        "hosthogd: serving {} on {}",
        args.state_dir.display(),
        listening_on
    );
    server::serve(&listener, service, args.max_connections);
    Ok(ExitCode::SUCCESS)
}

/// `none` (or an empty path) turns a file off.
fn optional(path: &std::path::Path) -> Option<std::path::PathBuf> {
    (!path.as_os_str().is_empty() && path != std::path::Path::new("none"))
        .then(|| path.to_path_buf())
}

/// Starts the notifier, the clearing thread (if clearing is on) and the
/// scheduler.
fn start_timers(
    args: &Args,
    host: &config::HostConfig,
    tz: &jiff::tz::TimeZone,
    service: &Arc<Service>,
    wakeup: Arc<Wakeup>,
) -> Result<(), String> {
    let utmp = std::path::PathBuf::from(libhosthog::UTMP_PATH);
    let presence = optional(&args.presence);
    let clear_grace = host.clear_host.then_some(host.clear_grace);
    let notify = notify::spawn(notify::Settings {
        utmp: utmp.clone(),
        presence: presence.clone(),
        clear_grace,
        tz: tz.clone(),
    })
    .map_err(|e| format!("cannot start the notifier thread: {e}"))?;
    let clear = match clear_grace {
        Some(grace) => {
            let paused = presence
                .as_deref()
                .and_then(std::path::Path::parent)
                .unwrap_or(std::path::Path::new("/run/hosthog"))
                .join("paused-timers.json");
            Some(
                clear::spawn(clear::Settings {
                    utmp,
                    tz: tz.clone(),
                    clear_grace: grace,
                    paused,
                })
                .map_err(|e| format!("cannot start the clearing thread: {e}"))?,
            )
        }
        None => None,
    };
    schedule::spawn(
        Arc::clone(service),
        wakeup,
        schedule::Settings {
            motd: optional(&args.motd),
            event_log: args.event_log.clone(),
            tick: Duration::from_secs(args.tick.max(1)),
            timing: Timing {
                leads: host.notify_lead.clone(),
                clear_grace,
            },
            pause_timers: host.pause_timers && host.clear_host,
            tz: tz.clone(),
        },
        schedule::Workers { notify, clear },
    )
    .map_err(|e| format!("cannot start the timers: {e}"))
}
