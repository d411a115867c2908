//! hosthogd. Not yet built: the daemon issue adds it.
use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("hosthogd: the daemon is not built yet");
    ExitCode::from(2)
}
