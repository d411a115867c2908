//! The `hosthog` command. Not yet built: the CLI issue adds its commands.
use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("hosthog: the command-line interface is not built yet");
    ExitCode::from(2)
}
