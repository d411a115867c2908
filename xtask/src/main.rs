//! Build chores, run as `cargo xtask TASK` (an alias in .cargo/config.toml).
//!
//! - `cargo xtask man [DIR]`: writes hosthog.1, hosthogd.8 and
//!   hosthog-server.8, generated from the command lines, into DIR (default:
//!   docs).
//!
//! The chores live here so that no shipped binary carries them: the
//! `hosthog` command links no daemon code, yet hosthogd.8 is made from
//! hosthogd's arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["man"] => man(Path::new("docs")),
        ["man", dir] => man(Path::new(dir)),
        _ => Err("usage: cargo xtask man [DIR]".to_string()),
    };
    match result {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(2)
        }
    }
}

/// The man pages, by file name, as generated from the command lines.
fn pages() -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let render = |cmd: clap::Command, section: &str| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd)
            .section(section)
            .render(&mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    };
    Ok(vec![
        ("hosthog.1", render(hosthog_cli::args::Cli::command(), "1")?),
        ("hosthogd.8", render(hosthogd::Args::command(), "8")?),
        (
            "hosthog-server.8",
            render(hosthog_server::cli::Args::command(), "8")?,
        ),
    ])
}

fn man(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    for (name, page) in pages()? {
        let path = dir.join(name);
        std::fs::write(&path, page).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The committed pages are the generated ones: a changed option without
    /// `cargo xtask man` fails here.
    #[test]
    fn committed_man_pages_are_current() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        for (name, page) in pages().unwrap() {
            let committed = std::fs::read(docs.join(name)).unwrap();
            assert!(
                committed == page,
                "docs/{name} is out of date: run `cargo xtask man`"
            );
        }
    }

    #[test]
    fn pages_have_their_sections() {
        let pages = pages().unwrap();
        assert!(String::from_utf8_lossy(&pages[0].1).contains(".TH hosthog 1"));
        assert!(String::from_utf8_lossy(&pages[1].1).contains(".TH hosthogd 8"));
    }
}
