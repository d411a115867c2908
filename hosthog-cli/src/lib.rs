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
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid command line")
                .trim_start_matches("error: ");
            eprintln!("hosthog: {first} (see hosthog --help)");
            Err(ExitCode::from(2))
        }
    }
}

/// Runs the command with this process's arguments.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
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
        Err(e) => {
            eprintln!("hosthog: {e}");
            ExitCode::from(2)
        }
    }
}
