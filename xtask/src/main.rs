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
        (
            "hosthog.1",
            one_page(hosthog_cli::args::Cli::command(), "1")?,
        ),
        ("hosthogd.8", render(hosthogd::Args::command(), "8")?),
        (
            "hosthog-server.8",
            render(hosthog_server::cli::Args::command(), "8")?,
        ),
    ])
}

/// A page for a command with subcommands that describes them all in it:
/// clap_mangen's own SUBCOMMANDS section names a page per subcommand
/// (hosthog-reserve(1)), which nobody installs. Here each subcommand gets a
/// subsection under COMMANDS with its usage, its description and its
/// options.
fn one_page(cmd: clap::Command, section: &str) -> Result<Vec<u8>, String> {
    let io = |e: std::io::Error| e.to_string();
    let unbuilt = cmd.disable_help_subcommand(true);
    let mut cmd = unbuilt.clone();
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone()).section(section);
    let mut out = Vec::new();
    man.render_title(&mut out).map_err(io)?;
    man.render_name_section(&mut out).map_err(io)?;
    man.render_synopsis_section(&mut out).map_err(io)?;
    man.render_description_section(&mut out).map_err(io)?;
    man.render_options_section(&mut out).map_err(io)?;
    out.extend_from_slice(b".SH COMMANDS\n");
    // From the command as written, before build() copies the global
    // options into every subcommand: they are under OPTIONS once.
    let mut leaves = Vec::new();
    collect_leaves(&unbuilt, "hosthog", &mut leaves);
    for (name, sub) in leaves {
        let sub = sub.bin_name(&name).disable_help_flag(true);
        let page = clap_mangen::Man::new(sub);
        let mut synopsis = Vec::new();
        page.render_synopsis_section(&mut synopsis).map_err(io)?;
        let mut description = Vec::new();
        page.render_description_section(&mut description)
            .map_err(io)?;
        let mut options = Vec::new();
        page.render_options_section(&mut options).map_err(io)?;
        out.extend_from_slice(format!(".SS \"{name}\"\n").as_bytes());
        for part in [&synopsis, &description, &options] {
            // The parts as subsection text: their .SH headings dropped.
            let text = String::from_utf8_lossy(part);
            for line in text.lines().filter(|l| !l.starts_with(".SH ")) {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
            out.extend_from_slice(b".PP\n");
        }
    }
    man.render_extra_section(&mut out).map_err(io)?;
    man.render_version_section(&mut out).map_err(io)?;
    Ok(out)
}

/// The subcommands that take no subcommand themselves (`notice add`, not
/// `notice`), with their full names, in the order `--help` lists them,
/// hidden ones left out.
fn collect_leaves(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{prefix} {}", sub.get_name());
        if sub.has_subcommands() {
            collect_leaves(sub, &name, out);
        } else {
            out.push((name, sub.clone()));
        }
    }
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

    /// hosthog.1 describes every subcommand itself and names no page that
    /// does not exist (such as hosthog-reserve(1)).
    #[test]
    fn hosthog_page_names_no_missing_pages() {
        let pages = pages().unwrap();
        let page = String::from_utf8_lossy(&pages[0].1);
        assert!(!page.contains("hosthog-"), "{page}");
        assert!(page.contains(".SH COMMANDS"), "{page}");
        for sub in [
            "hosthog reserve",
            "hosthog notice add",
            "hosthog exempt list",
        ] {
            assert!(page.contains(&format!(".SS \"{sub}\"")), "{sub}: {page}");
        }
        assert!(
            page.contains("Reserve the host (exclusive unless \\-\\-shared)"),
            "{page}"
        );
    }
}
