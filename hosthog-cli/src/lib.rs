//! The `hosthog` command: reserve a shared host, see who has it, and find
//! out why a login is refused. See docs/user-guide.md.
//!
//! A library only so that the man page can be generated from [`args::Cli`]
//! (`cargo xtask man`); the binary is `src/main.rs`.

pub mod args;
mod client;
mod commands;
mod show;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use hosthog_booking::protocol::Failure;

/// Why a command failed; printed as one line `hosthog: ...`, exit status 2.
#[derive(Debug)]
pub enum CliError {
    /// hosthogd (or the rules, with --state-dir) refused.
    Refused(Failure),
    /// Anything else: bad input, no daemon, I/O.
    Message(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            CliError::Refused(failure) => failure.message.as_str(),
            CliError::Message(message) => message.as_str(),
        };
        // One line, whatever the message holds.
        f.write_str(&libhosthog::sanitize(&text.replace('\n', " ")))
    }
}

impl From<libhosthog::Error> for CliError {
    fn from(e: libhosthog::Error) -> CliError {
        CliError::Message(e.to_string())
    }
}

/// Parses the command line. Help and version go to stdout as clap prints
/// them; a usage error becomes one line, like every other error.
fn parse() -> Result<args::Cli, ExitCode> {
    match args::Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let message = usage_error(&e);
            if std::env::args_os().any(|a| a == "--json") {
                eprintln!("{}", json_error("usage", &message, &[]));
            } else {
                eprintln!("hosthog: {message}");
            }
            Err(ExitCode::from(2))
        }
    }
}

/// A usage error as one line that says what is wrong and how to fix it:
/// which argument is missing (and the command's usage), or which values
/// are valid.
fn usage_error(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let strings = |kind| match e.get(kind) {
        Some(ContextValue::Strings(v)) => v.clone(),
        Some(ContextValue::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    let usage = e
        .get(ContextKind::Usage)
        .map(|u| u.to_string())
        .unwrap_or_default();
    // Global options given on the command line (or by HOSTHOG_SOCKET) are
    // not what is missing; leave them out of the usage.
    let mut usage = usage
        .trim()
        .trim_start_matches("Usage: ")
        .trim()
        .to_string();
    for global in [
        " --socket <PATH>",
        " --state-dir <DIR>",
        " --config <FILE>",
        " --json",
    ] {
        usage = usage.replace(global, "");
    }
    match e.kind() {
        ErrorKind::MissingRequiredArgument if !usage.is_empty() => {
            // "hosthog notice remove <ID>" -> "notice remove"
            let command: Vec<&str> = usage
                .split_whitespace()
                .skip(1)
                .take_while(|w| !w.starts_with(['<', '[', '-']))
                .collect();
            let command = command.join(" ");
            let missing: Vec<String> = strings(ContextKind::InvalidArg)
                .iter()
                .map(|arg| missing_argument(&command, arg))
                .collect();
            format!(
                "{} needs {}; usage: {usage}",
                if command.is_empty() {
                    "hosthog"
                } else {
                    &command
                },
                missing.join(" and ")
            )
        }
        _ => {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid command line")
                .trim_start_matches("error: ")
                .to_string();
            let valid = strings(ContextKind::ValidValue);
            if e.kind() == ErrorKind::InvalidValue && !valid.is_empty() {
                format!("{first}; valid values: {}", valid.join(", "))
            } else {
                format!("{first} (see hosthog --help)")
            }
        }
    }
}

/// What a missing argument is, in words: `<ID>` of `release` is "a
/// reservation id (see hosthog list)".
fn missing_argument(command: &str, arg: &str) -> String {
    match arg.trim_end_matches("...") {
        "<ID>" if command.starts_with("notice") => "a notice id (see hosthog notice list)".into(),
        "<ID>" => "a reservation id (see hosthog list)".into(),
        "<USER>" if command == "check" => "a user name".into(),
        "<USER>" => "at least one user name".into(),
        "<MESSAGE>" => "a message".into(),
        "<TEXT>" => "the notice's text".into(),
        "<SHELL>" => "a shell (bash, elvish, fish, powershell or zsh)".into(),
        "--for <DURATION>" => "--for DURATION or --until WHEN".into(),
        other => other.to_string(),
    }
}

/// Runs the command with this process's arguments.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let json = cli.json;
    match commands::run(cli) {
        Ok((output, code)) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(output.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => code,
                // A closed pipe (`hosthog list | head`) is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
                Err(e) => {
                    eprintln!("hosthog: writing output: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Err(e) if json => {
            let line = match &e {
                CliError::Refused(f) => {
                    let kind = serde_json::to_value(f.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    json_error(&kind, &f.message, &f.conflicts)
                }
                CliError::Message(m) => json_error("client", m, &[]),
            };
            eprintln!("{line}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("hosthog: {e}");
            ExitCode::from(2)
        }
    }
}

/// An error under `--json`: one line on stderr,
/// `{"error":{"kind":...,"message":...}}` (docs/user-guide.md). `kind` is
/// hosthogd's failure kind (docs/protocol.md), or `usage` for a bad command
/// line and `client` for what failed on this side (no daemon, bad input).
fn json_error(kind: &str, message: &str, reservations: &[libhosthog::Reservation]) -> String {
    let mut error = serde_json::json!({ "kind": kind, "message": message });
    if !reservations.is_empty() {
        error["reservations"] = serde_json::json!(reservations);
    }
    serde_json::json!({ "error": error }).to_string()
}
