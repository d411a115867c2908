//! Each subcommand: read the human input, build one request, render the
//! reply.

use std::process::ExitCode;

use clap::CommandFactory;
use hosthog_booking::protocol::{
    ChangeArgs, CheckArgs, ExemptArgs, FleetListArgs, HistoryArgs, IdArgs, ListArgs, MAX_POST,
    NextFreeArgs, NoticeArgs, NoticeIdArgs, Op, PostArgs, Reply, Request, ReserveArgs, ShareArgs,
};
use hosthog_booking::{parse_duration, parse_instant, parse_time_zone};
use jiff::tz::TimeZone;
use libhosthog::{Mode, limits};

use crate::CliError;
use crate::args::{Cli, Command, ExemptCommand, NoticeCommand};
use crate::client::Backend;
use crate::show;

/// The time of this command: the one clock read.
#[allow(clippy::disallowed_methods)] // entry point: read the clock once per command
fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Appended to the bash script: reservation ids and user names, asked of
/// hosthogd with the hidden `hosthog __complete ids|users`, where a command
/// takes them; the generated completion everywhere else.
const BASH_DYNAMIC: &str = r#"
# Reservation ids and user names from hosthogd (hosthog __complete).
_hosthog_dynamic() {
    local i sub="" pos=0 cur="${COMP_WORDS[COMP_CWORD]}"
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            --socket|--state-dir|--config) ((i++)) ;;
            -*) ;;
            *) if [[ -z "$sub" ]]; then sub="${COMP_WORDS[i]}"; else ((pos++)); fi ;;
        esac
    done
    if [[ "$cur" != -* ]]; then
        local what=""
        case "$sub" in
            show|extend|edit|release|cancel) [[ $pos -eq 0 ]] && what=ids ;;
            share|unshare) if [[ $pos -eq 0 ]]; then what=ids; else what=users; fi ;;
            check) [[ $pos -eq 0 ]] && what=users ;;
        esac
        if [[ -n "$what" ]]; then
            COMPREPLY=($(compgen -W "$(hosthog __complete "$what" 2>/dev/null)" -- "$cur"))
            return 0
        fi
    fi
    _hosthog "$@"
}
complete -F _hosthog_dynamic -o bashdefault -o default hosthog
"#;

/// What one command prints and its exit status.
pub type Outcome = (String, ExitCode);

/// Runs the command line.
///
/// # Errors
/// [`CliError`], printed by `main` as one line.
pub fn run(cli: Cli) -> Result<Outcome, CliError> {
    let now = now();
    let (tz, tz_name) = user_time_zone()?;
    let json = cli.json;
    let backend = backend(&cli);
    let op = match cli.command {
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hosthog", &mut out);
            if shell == clap_complete::Shell::Bash {
                out.extend_from_slice(BASH_DYNAMIC.as_bytes());
            }
            return Ok((
                String::from_utf8_lossy(&out).into_owned(),
                ExitCode::SUCCESS,
            ));
        }
        Command::Complete { what } => {
            // Quietly nothing when hosthogd cannot be asked: a completion
            // must not print errors into the command line being typed.
            let Ok(Reply::Reservations(list)) = backend?.call(&Request::new(Op::List(ListArgs {
                all: false,
                after: None,
            }))) else {
                return Ok((String::new(), ExitCode::SUCCESS));
            };
            let mut words: Vec<String> = if what == "ids" {
                list.iter().map(|r| r.id.short()).collect()
            } else {
                list.iter()
                    .flat_map(|r| std::iter::once(&r.owner).chain(&r.with))
                    .filter(|u| libhosthog::validate_user_name(u).is_ok())
                    .cloned()
                    .collect()
            };
            words.sort();
            words.dedup();
            let text = words.iter().map(|w| format!("{w}\n")).collect();
            return Ok((text, ExitCode::SUCCESS));
        }
        command => build(command, now, &tz)?,
    };
    let backend = backend?;
    let request = Request::new(op).in_zone(tz_name);
    let reply = backend.call(&request)?;
    Ok(render(&request.op, &reply, json, now, &tz))
}

/// Where requests go: hosthogd's socket, or (root) a state directory.
fn backend(cli: &Cli) -> Result<Backend, CliError> {
    Ok(match &cli.state_dir {
        Some(dir) => {
            // SAFETY: geteuid has no preconditions and cannot fail.
            if unsafe { libc::geteuid() } != 0 {
                return Err(CliError::Message(
                    "only root may use --state-dir; everyone else goes through hosthogd".into(),
                ));
            }
            Backend::StateDir {
                dir: dir.clone(),
                config: cli.config.clone(),
            }
        }
        None => Backend::Daemon(cli.socket.clone()),
    })
}

/// The zone for every time this command reads and shows, and the name to
/// send so that hosthogd's messages use it too: the user's `TZ` if set,
/// else the host's (/etc/localtime, sent as nothing). A `TZ` that is a
/// file (`:/etc/localtime`) is read here and sent by its name, if it has
/// one.
fn user_time_zone() -> Result<(TimeZone, Option<String>), CliError> {
    match std::env::var("TZ") {
        Ok(name) if name.trim_start_matches(':').starts_with('/') => {
            let tz = TimeZone::system();
            let name = tz.iana_name().map(str::to_string);
            Ok((tz, name))
        }
        Ok(name) if !name.is_empty() => Ok((parse_time_zone(&name)?, Some(name))),
        _ => Ok((TimeZone::system(), None)),
    }
}

/// `--since`: a duration back from now (`30d`), or a time (`2026-11-01`,
/// read as its midnight).
fn since_instant(input: &str, now: i64, tz: &TimeZone) -> Result<i64, CliError> {
    if let Ok(back) = parse_duration(input) {
        return Ok(now.saturating_sub(back));
    }
    let input = input.trim();
    let is_date = input.len() == 10 && input.as_bytes()[4] == b'-' && input.as_bytes()[7] == b'-';
    if is_date {
        return instant(&format!("{input} 00:00"), now, tz);
    }
    instant(input, now, tz)
}

fn instant(input: &str, now: i64, tz: &TimeZone) -> Result<i64, CliError> {
    Ok(parse_instant(input, now, tz)?)
}

fn duration(input: &str) -> Result<i64, CliError> {
    Ok(parse_duration(input)?)
}

fn check_comment(comment: &str) -> Result<(), CliError> {
    if comment.len() > limits::MAX_COMMENT {
        return Err(CliError::Message(format!(
            "the comment is {} bytes long; at most {} are allowed",
            comment.len(),
            limits::MAX_COMMENT
        )));
    }
    Ok(())
}

fn build(command: Command, now: i64, tz: &TimeZone) -> Result<Op, CliError> {
    Ok(match command {
        Command::Reserve(r) if r.next_free => {
            let length = duration(r.duration.as_deref().unwrap_or_default())?;
            let comment = r.comment.join(" ");
            check_comment(&comment)?;
            Op::NextFree(NextFreeArgs {
                hosts: r.hosts,
                duration: length,
                mode: if r.shared {
                    Mode::Shared
                } else {
                    Mode::Exclusive
                },
                comment,
                with: r.with,
                not_before: r
                    .start
                    .as_deref()
                    .map(|s| instant(s, now, tz))
                    .transpose()?,
            })
        }
        Command::Reserve(r) => {
            let start = match &r.start {
                Some(s) => instant(s, now, tz)?,
                None => now,
            };
            let end = match (&r.duration, &r.until) {
                (Some(d), _) => start.saturating_add(duration(d)?),
                (None, Some(u)) => instant(u, now, tz)?,
                (None, None) => {
                    return Err(CliError::Message(
                        "say how long: --for 2h or --until 18:00".into(),
                    ));
                }
            };
            let comment = r.comment.join(" ");
            check_comment(&comment)?;
            Op::Reserve(ReserveArgs {
                mode: if r.shared {
                    Mode::Shared
                } else {
                    Mode::Exclusive
                },
                start,
                end,
                with: r.with,
                comment,
                owner: r.owner,
                force: r.force,
                hosts: r.hosts,
            })
        }
        Command::List { all, fleet: true } => Op::FleetList(FleetListArgs { all }),
        Command::List { all, fleet: false } => Op::List(ListArgs { all, after: None }),
        Command::Show { id } => Op::Show(IdArgs { id }),
        Command::Extend(e) => {
            let (end, extend_by) = match (&e.duration, &e.until) {
                (Some(d), _) => (None, Some(duration(d)?)),
                (None, Some(u)) => (Some(instant(u, now, tz)?), None),
                (None, None) => {
                    return Err(CliError::Message(
                        "say by how much: --for 1h or --until 20:00".into(),
                    ));
                }
            };
            Op::Change(ChangeArgs {
                id: e.id,
                end,
                extend_by,
                force: e.force,
                ..ChangeArgs::default()
            })
        }
        Command::Edit(e) => {
            let start = e
                .start
                .as_deref()
                .map(|s| instant(s, now, tz))
                .transpose()?;
            let end = match (&e.until, &e.duration) {
                (Some(u), _) => Some(instant(u, now, tz)?),
                (None, Some(d)) => {
                    let Some(start) = start else {
                        return Err(CliError::Message(
                            "--for needs --start in edit; use extend ID --for to lengthen".into(),
                        ));
                    };
                    Some(start.saturating_add(duration(d)?))
                }
                (None, None) => None,
            };
            if let Some(c) = &e.comment {
                check_comment(c)?;
            }
            let mode = if e.shared {
                Some(Mode::Shared)
            } else if e.exclusive {
                Some(Mode::Exclusive)
            } else {
                None
            };
            if start.is_none() && end.is_none() && mode.is_none() && e.comment.is_none() {
                return Err(CliError::Message(
                    "nothing to change: give --start, --until, --for, --exclusive, --shared or --comment"
                        .into(),
                ));
            }
            Op::Change(ChangeArgs {
                id: e.id,
                start,
                end,
                extend_by: None,
                mode,
                comment: e.comment,
                force: e.force,
            })
        }
        Command::Share { id, users } => Op::Share(ShareArgs { id, users }),
        Command::Unshare { id, users } => Op::Unshare(ShareArgs { id, users }),
        Command::Release { id } => Op::Release(IdArgs { id }),
        Command::Cancel { id } => Op::Cancel(IdArgs { id }),
        Command::Check { user, service, at } => Op::Check(CheckArgs {
            user,
            service,
            at: at.as_deref().map(|a| instant(a, now, tz)).transpose()?,
        }),
        Command::Notice(NoticeCommand::Add { text, start, until }) => Op::NoticeAdd(NoticeArgs {
            text,
            start: start.as_deref().map(|s| instant(s, now, tz)).transpose()?,
            end: until.as_deref().map(|s| instant(s, now, tz)).transpose()?,
        }),
        Command::Notice(NoticeCommand::List) => Op::NoticeList,
        Command::Notice(NoticeCommand::Remove { id }) => Op::NoticeRemove(NoticeIdArgs { id }),
        Command::Exempt(ExemptCommand::Add(n)) => Op::ExemptAdd(ExemptArgs {
            users: n.users,
            groups: n.groups,
        }),
        Command::Exempt(ExemptCommand::List) => Op::ExemptList,
        Command::Exempt(ExemptCommand::Remove(n)) => Op::ExemptRemove(ExemptArgs {
            users: n.users,
            groups: n.groups,
        }),
        Command::Whoami => Op::Whoami,
        Command::Who => Op::Who,
        Command::Motd => Op::Motd,
        Command::Post { message } => {
            let text = message.join(" ");
            if text.len() > MAX_POST {
                return Err(CliError::Message(format!(
                    "the message is {} bytes long; at most {MAX_POST} are allowed",
                    text.len()
                )));
            }
            Op::Post(PostArgs { text })
        }
        Command::Hosts => Op::Hosts,
        Command::History { since, all } => Op::History(HistoryArgs {
            since: since
                .as_deref()
                .map(|s| since_instant(s, now, tz))
                .transpose()?,
            all,
        }),
        Command::Completions { .. } | Command::Complete { .. } => {
            return Err(CliError::Message("not a request".into()));
        }
    })
}

fn render(op: &Op, reply: &Reply, json: bool, now: i64, tz: &TimeZone) -> Outcome {
    let code = match reply {
        Reply::Check(report) if !report.allowed => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    };
    if json {
        let mut text = match reply {
            Reply::Whoami(x) => serde_json::to_string_pretty(x),
            Reply::Reservation(x) | Reply::Removed(x) => serde_json::to_string_pretty(x),
            Reply::Forced(x) => serde_json::to_string_pretty(x),
            Reply::Reservations(x) => serde_json::to_string_pretty(x),
            Reply::Check(x) => serde_json::to_string_pretty(x),
            Reply::Notice(x) => serde_json::to_string_pretty(x),
            Reply::Notices(x) => serde_json::to_string_pretty(x),
            Reply::Exempt(x) => serde_json::to_string_pretty(x),
            Reply::Presence(x) => serde_json::to_string_pretty(x),
            Reply::Motd(x) => serde_json::to_string_pretty(x),
            Reply::Posted(x) => serde_json::to_string_pretty(x),
            Reply::History(x) => serde_json::to_string_pretty(x),
            Reply::Hosts(x) => serde_json::to_string_pretty(x),
            Reply::FleetReservations(x) => serde_json::to_string_pretty(x),
            Reply::Booked(x) => serde_json::to_string_pretty(x),
        }
        .unwrap_or_default();
        text.push('\n');
        return (text, code);
    }
    (show::text(op, reply, now, tz), code)
}
