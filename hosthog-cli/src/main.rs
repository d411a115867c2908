//! The `hosthog` command; see the library (src/lib.rs) and docs/user-guide.md.

fn main() -> std::process::ExitCode {
    hosthog_cli::main()
}
