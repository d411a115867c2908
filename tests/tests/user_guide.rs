//! docs/user-guide.md's examples are the real output of hosthog, made here:
//! each block between `<!-- user-guide: NAME begin ... -->` and
//! `<!-- user-guide: NAME end -->` is regenerated from real runs and the
//! test fails if the committed document differs. `scripts/user-guide`
//! builds the binaries and runs this test with `HOSTHOG_WRITE_GUIDE=1`,
//! which writes the document instead.
//!
//! Three generators, each cutting its transcript into named blocks:
//! - [`session`] (reserve, change, admin, help): `hosthog --state-dir`
//!   (hosthogd --stdio) on a fresh state directory, dates in 2031.
//! - [`host`] (who, tell, check, history, exempt): a hosthogd in a host
//!   box (tests/src/daemon/host.rs) whose users have real pty logins and a
//!   real tmux server, so `who`, `post` and `check` answer about them.
//! - [`fleet`] (fleet, tokens): a real hosthog-server on a real PostgreSQL
//!   with two hosthogd agents (tests/src/fleet.rs).
//!
//! What differs from run to run is replaced by stand-ins (see
//! [`StandIns`]): reservation ids, token ids and secrets, pids, ttys,
//! uids, the server's port, and instants near now, which are re-rendered as
//! if now were Mon 30 Nov 2026 10:00 UTC (tables are re-aligned after).
//! Run as root.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hosthog_tests::daemon::host::HostBox;
use hosthog_tests::daemon::now;
use hosthog_tests::daemon::{self, Run};
use hosthog_tests::fleet::{FleetHost, FleetServer};
use jiff::tz::TimeZone;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/user-guide.md");

/// The "now" the host and fleet blocks are shown at.
const SHOWN_NOW: i64 = 1_796_032_800; // 2026-11-30 10:00 UTC

#[test]
fn the_user_guide_shows_what_hosthog_prints_now() {
    daemon::require_root();
    // Without a controlling terminal, as under CI: the box's sessions and
    // processes then show the same ttys whether or not the generator was
    // started from a terminal. (Fails harmlessly when already a leader.)
    // SAFETY: setsid has no memory-safety preconditions.
    unsafe { libc::setsid() };
    let doc = std::fs::read_to_string(DOC).unwrap();
    let mut fresh = doc.clone();
    for text in [session(), host(), fleet()] {
        for (name, console) in blocks(&text) {
            fresh = replace_block(&fresh, &name, &console);
        }
    }
    every_command_is_shown(&fresh);
    if std::env::var_os("HOSTHOG_WRITE_GUIDE").is_some_and(|v| v == "1") {
        std::fs::write(DOC, &fresh).unwrap();
        println!("user-guide: wrote docs/user-guide.md");
        return;
    }
    if fresh != doc {
        let fresh_path = hosthog_tests::target_profile_dir().join("user-guide.fresh.md");
        std::fs::write(&fresh_path, &fresh).unwrap();
        let first = doc
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(doc.lines().count().min(fresh.lines().count()));
        panic!(
            "docs/user-guide.md is stale: run scripts/user-guide (as root).\n\
             First difference at line {}:\n  committed: {:?}\n  now:       {:?}\n\
             The fresh document is {}; diff -u docs/user-guide.md {0} shows all.",
            first + 1,
            doc.lines().nth(first),
            fresh.lines().nth(first),
            fresh_path.display()
        );
    }
}

/// Fails unless each command `hosthog --help` lists is run in some block.
fn every_command_is_shown(doc: &str) {
    let help = Command::new(daemon::hosthog_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        commands.len() > 20,
        "hosthog --help lists no commands: {help}"
    );
    let missing: Vec<&&str> = commands
        .iter()
        .filter(|c| {
            !doc.contains(&format!("$ hosthog {c} ")) && !doc.contains(&format!("$ hosthog {c}\n"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/user-guide.md shows no run of: {missing:?}; add them to tests/tests/user_guide.rs"
    );
}

/// Marks the start of the block NAME in a generator's transcript.
fn block(name: &str) -> String {
    format!("@@block {name}\n")
}

/// A transcript cut at its [`block`] marks: (name, text) in order.
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("@@block ") {
            out.push((name.to_string(), String::new()));
        } else {
            let last = out
                .last_mut()
                .expect("a transcript starts with a block mark");
            last.1 += line;
            last.1 += "\n";
        }
    }
    out
}

/// `doc` with the block NAME replaced by `console` (a ```console block).
fn replace_block(doc: &str, name: &str, console: &str) -> String {
    let begin = format!("<!-- user-guide: {name} begin");
    let end = format!("<!-- user-guide: {name} end -->");
    let (Some(b), Some(e)) = (doc.find(&begin), doc.find(&end)) else {
        panic!("docs/user-guide.md has no {begin} ... {end} block");
    };
    format!(
        "{}{begin} (generated by tests/tests/user_guide.rs; do not edit) -->\n```console\n{console}```\n{}",
        &doc[..b],
        &doc[e..]
    )
}

/// The command line as a reader would type it.
fn shown(args: &[&str]) -> String {
    let mut out = String::from("$ hosthog");
    for a in args {
        if a.contains([' ', '"', '*']) {
            out += &format!(" \"{a}\"");
        } else {
            out += &format!(" {a}");
        }
    }
    out + "\n"
}

/// Ids, secrets and numbers that change from run to run, each with its
/// stand-in, in the order they were met.
#[derive(Default)]
struct StandIns {
    pairs: Vec<(String, String)>,
    ids: usize,
}

impl StandIns {
    /// A reservation or token id: the first becomes 1111aaaa..., the second
    /// 2222bbbb... (the full 16 digits and the 8-digit short form).
    fn id(&mut self, full: &str) {
        if self.pairs.iter().any(|(real, _)| real == full) {
            return;
        }
        const LETTERS: [char; 6] = ['a', 'b', 'c', 'd', 'e', 'f'];
        let n = self.ids % 9 + 1;
        let l = LETTERS[self.ids % 6];
        self.ids += 1;
        let short: String = std::iter::repeat_n(char::from(b'0' + n as u8), 4)
            .chain(std::iter::repeat_n(l, 4))
            .collect();
        let long = format!("{short}{}", "0".repeat(full.len().saturating_sub(8)));
        self.pairs.push((full.to_string(), long));
        if full.len() > 8 {
            self.pairs.push((full[..8].to_string(), short));
        }
    }

    fn add(&mut self, real: impl Into<String>, stand_in: impl Into<String>) {
        self.pairs.push((real.into(), stand_in.into()));
    }

    /// Learns the 16-hex-digit ids in `text`.
    fn learn_ids(&mut self, text: &str) {
        for word in text.split(|c: char| !c.is_ascii_hexdigit()) {
            if word.len() == 16
                && word
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
            {
                self.id(word);
            }
        }
    }

    fn apply(&self, text: &str) -> String {
        // Longest first, so a full id is replaced before its prefix.
        let mut pairs: Vec<&(String, String)> = self.pairs.iter().collect();
        pairs.sort_by_key(|(real, _)| std::cmp::Reverse(real.len()));
        let mut out = text.to_string();
        for (real, stand_in) in pairs {
            out = out.replace(real.as_str(), stand_in);
        }
        out
    }
}

/// Rewrites every instant shown in UTC within 200 days of `real_now` as
/// if now were [`SHOWN_NOW`]: the same distance from now (to the nearest
/// 10 minutes, which absorbs the seconds a run takes), formatted the way
/// hosthog formats it at that now. Tables are re-aligned after.
fn shift_times(text: &str, real_now: i64) -> String {
    let base = real_now - real_now % 60;
    let tz = TimeZone::UTC;
    let year = jiff::Timestamp::from_second(base)
        .unwrap()
        .to_zoned(tz.clone())
        .year();
    let today = jiff::Timestamp::from_second(base)
        .unwrap()
        .to_zoned(tz.clone())
        .date();
    let parse = |candidate: &str| -> Option<i64> {
        let candidate = candidate.trim_end();
        let datetime = if candidate.len() == 8 {
            let t = jiff::civil::Time::strptime("%H:%M:%S", candidate).ok()?;
            today.to_datetime(t)
        } else if candidate.len() == 16 && candidate.as_bytes()[4] == b'-' {
            jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M", candidate).ok()?
        } else if candidate.len() == 5 {
            let t = jiff::civil::Time::strptime("%H:%M", candidate).ok()?;
            today.to_datetime(t)
        } else {
            jiff::civil::DateTime::strptime("%Y %a %d %b %H:%M", format!("{year} {candidate}"))
                .ok()?
        };
        Some(datetime.to_zoned(tz.clone()).ok()?.timestamp().as_second())
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(" UTC") {
        let before = &rest[..at];
        let mut replaced = false;
        for len in [16, 15, 14, 8, 5] {
            if before.len() < len {
                continue;
            }
            let start = before.len() - len;
            if !before.is_char_boundary(start) {
                continue;
            }
            let bounded = start == 0 || !before.as_bytes()[start - 1].is_ascii_alphanumeric();
            if let (true, Some(instant)) = (bounded, parse(&before[start..])) {
                if (instant - base).abs() > 200 * 86_400 {
                    break;
                }
                let off = ((instant - base) as f64 / 600.0).round() as i64 * 600;
                out += &before[..start];
                if len == 8 {
                    let at = jiff::Timestamp::from_second(SHOWN_NOW + off).unwrap();
                    out += &at.to_zoned(tz.clone()).strftime("%H:%M:%S %Z").to_string();
                } else {
                    out += &libhosthog::format_instant(SHOWN_NOW + off, SHOWN_NOW, &tz);
                }
                replaced = true;
                break;
            }
        }
        if !replaced {
            out += before;
            out += " UTC";
        }
        rest = &rest[at + 4..];
    }
    out += rest;
    realign(&out)
}

/// Lays tables (a header line of capital words followed by rows) out again
/// as hosthog's `columns` does: cells split at runs of two or more spaces,
/// each column padded to its widest cell and two spaces. `hosts` keeps its
/// fixed widths (40, 24 and 12).
fn realign(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    while i < lines.len() {
        let line = lines[i];
        let is_header = line.starts_with("ID  ") || line.starts_with("HOST  ");
        if !is_header {
            out.push(line.to_string());
            i += 1;
            continue;
        }
        let header = cells(line);
        let n = header.len();
        let mut rows = vec![header];
        i += 1;
        while i < lines.len() && cells(lines[i]).len() == n && !lines[i].starts_with('$') {
            rows.push(cells(lines[i]));
            i += 1;
        }
        let mut widths: Vec<usize> = vec![0; n];
        if line.starts_with("HOST  ") {
            widths = vec![4, 40, 24, 12, 0];
        }
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        for row in rows {
            let mut l = String::new();
            for (c, w) in row.iter().zip(&widths) {
                l += c;
                l += &" ".repeat(w - c.chars().count() + 2);
            }
            out.push(l.trim_end().to_string());
        }
    }
    let mut joined = out.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    joined
}

/// What a run printed: stdout then stderr (as a terminal shows them).
fn printed(run: &Run) -> String {
    format!("{}{}", run.stdout, run.stderr)
}

/// The block `session`: `hosthog --state-dir` on a fresh state directory.
fn session() -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hosthog.toml");
    std::fs::write(
        &config,
        "max_ahead = \"unlimited\"\nmax_duration = \"unlimited\"\nmax_open_per_user = 0\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mut out = String::new();
    let mut ids = StandIns::default();
    let mut run = |args: &[&str]| -> String {
        if let ["@@block", name] = args {
            out += &block(name);
            return String::new();
        }
        let o = Command::new(daemon::hosthog_bin())
            .arg("--state-dir")
            .arg(&state)
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let listed = Command::new(daemon::hosthog_bin())
            .arg("--state-dir")
            .arg(&state)
            .arg("--config")
            .arg(&config)
            .args(["--json", "list"])
            .output()
            .unwrap();
        ids.learn_ids(&String::from_utf8_lossy(&listed.stdout));
        out += &format!("root{}", shown(args));
        out += &String::from_utf8_lossy(&o.stdout);
        out += &String::from_utf8_lossy(&o.stderr);
        ids.pairs
            .iter()
            .filter(|(real, _)| real.len() == 8)
            .map(|(real, _)| real.clone())
            .collect::<Vec<_>>()
            .join(" ")
    };
    run(&["@@block", "reserve"]);
    run(&[
        "reserve",
        "--exclusive",
        "--start",
        "2031-03-03 09:00",
        "--for",
        "2h",
        "paper benchmarks",
    ]);
    run(&[
        "reserve",
        "--shared",
        "--start",
        "2031-03-03 14:00",
        "--for",
        "1h",
        "--with",
        "nobody",
        "demo",
    ]);
    let known = run(&[
        "reserve",
        "--exclusive",
        "--start",
        "2031-03-03 10:00",
        "--for",
        "1h",
    ]);
    let short: Vec<String> = known.split(' ').map(String::from).collect();
    let (first, second) = (short[0].as_str(), short[1].as_str());
    run(&["list"]);
    run(&["show", first]);
    run(&["@@block", "change"]);
    run(&["extend", first, "--for", "30m"]);
    run(&["edit", first, "--comment", "final runs"]);
    run(&["share", first, "nobody"]);
    run(&["unshare", first, "nobody"]);
    run(&["release", second]);
    run(&["--json", "show", first]);
    run(&["list"]);
    run(&["@@block", "admin"]);
    run(&["whoami"]);
    run(&[
        "notice",
        "add",
        "--start",
        "2031-03-03 08:00",
        "--until",
        "2031-03-03 18:00",
        "disk swap at 12:00, expect a short outage",
    ]);
    run(&["notice", "list"]);
    run(&["notice", "remove", "1"]);
    let known = run(&[
        "reserve",
        "--shared",
        "--start",
        "2031-03-04 09:00",
        "--for",
        "1h",
        "to be cancelled",
    ]);
    let third = known.split(' ').nth(2).unwrap().to_string();
    run(&["cancel", &third]);
    run(&["motd"]);
    run(&["@@block", "help"]);
    run(&["help", "release"]);
    // The completion script is long: its first lines, as `| head` shows.
    let script = Command::new(daemon::hosthog_bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(script.status.success());
    out += "root$ hosthog completions bash | head -3\n";
    for line in String::from_utf8_lossy(&script.stdout).lines().take(3) {
        out += line;
        out += "\n";
    }
    let text = ids.apply(&out);
    // show's creation and change times: when the generator ran.
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.starts_with("created:") || line.starts_with("updated:") {
            lines.push(format!("{}  (when the generator ran)", &line[..8]));
        } else if let Some(p) = line.find("\"created\": ").or(line.find("\"updated\": ")) {
            let comma = if line.ends_with(',') { "," } else { "" };
            lines.push(format!("{}1930291200{comma}", &line[..p + 11]));
        } else {
            lines.push(line.to_string());
        }
    }
    lines.join("\n") + "\n"
}

/// The block `host`: a hosthogd in a host box, with alice logged in on a
/// pty from 10.1.2.3 and bob logged in from 10.1.2.4 with a tmux server.
fn host() -> String {
    let mut h = HostBox::start("", &[]);
    let real_now = now();
    let mut stand = StandIns::default();
    for (i, u) in h.users.iter().enumerate() {
        // The box's uids are picked per run; show them as a lab's would be.
        stand.add(format!("uid {}", u.uid), format!("uid {}", 2001 + i));
        stand.add(format!("tmux-{}/", u.uid), format!("tmux-{}/", 2001 + i));
    }
    let alice = h.login("alice", true, "10.1.2.3");
    let bob = h.login("bob", true, "10.1.2.4");
    h.tmux("bob", false);
    // The first presence scan sees them all.
    h.wait_for("bob's tmux in who", Duration::from_secs(15), || {
        let who = h.hosthog("alice", &["who"]).stdout;
        who.contains("tmux") && who.contains("10.1.2.3")
    });
    let mut out = String::new();
    let run = |h: &HostBox, out: &mut String, user: &str, args: &[&str]| {
        let r = h.hosthog(user, args);
        *out += &format!("{user}{}", shown(args));
        *out += &printed(&r);
        r
    };
    let who = h.hosthog("alice", &["who"]);
    assert_eq!(who.code, Some(0), "{who:?}");
    out += &block("who");
    out += &format!("alice{}", shown(&["who"]));
    let mut ttys = Vec::new();
    out += &who_table(&people_of_the_box(&who.stdout, &h), &stand, &mut ttys);
    let who_len = out.len();
    out += &block("tell");
    run(
        &h,
        &mut out,
        "alice",
        &["reserve", "--for", "2h", "paper benchmarks"],
    );
    stand.learn_ids(&h.hosthog("alice", &["--json", "list"]).stdout);
    // bob is told of the reservation first; the post comes after.
    h.wait_for(
        "bob to be told of the reservation",
        Duration::from_secs(10),
        || bob.output().contains("was made"),
    );
    let bob_before = bob.output().len();
    run(
        &h,
        &mut out,
        "alice",
        &["post", "benchmarks start at 14:00, please log out by then"],
    );
    let mut told = String::new();
    h.wait_for("bob to be told", Duration::from_secs(10), || {
        told = bob.output()[bob_before..].to_string();
        told.contains("please log out by then")
    });
    out += "(on bob's terminal:)\n";
    for line in told.lines() {
        let line = line.trim_end_matches('\r').trim_end();
        // `script`'s own header is not on the terminal.
        if !line.trim().is_empty() && !line.starts_with("Script started") {
            out += line;
            out += "\n";
        }
    }
    out += &block("check");
    run(&h, &mut out, "alice", &["check", "bob"]);
    let id = stand.pairs[stand.pairs.len() - 1].0.clone();
    // In force for a moment, so that history counts it.
    std::thread::sleep(Duration::from_secs(2));
    out += &block("history");
    run(&h, &mut out, "alice", &["release", &id]);
    run(&h, &mut out, "alice", &["history"]);
    run(&h, &mut out, "dave", &["history", "--all", "--since", "7d"]);
    out += &block("exempt");
    run(&h, &mut out, "dave", &["exempt", "add", "frank"]);
    run(&h, &mut out, "dave", &["exempt", "remove", "frank"]);
    run(&h, &mut out, "alice", &["exempt", "list"]);
    drop((alice, bob));
    let text = out[..who_len].to_string() + &number_ttys(&stand.apply(&out[who_len..]), &mut ttys);
    let text = text.replace(&format!("/tmp/{}", h.dir.path().display()), "");
    drop(h);
    shift_times(&text, real_now)
}

/// `pts/N` numbered in order of appearance from 1, as on a fresh host.
fn number_ttys(text: &str, map: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("pts/") {
        out += &rest[..at + 4];
        rest = &rest[at + 4..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n = &rest[..digits];
        let i = match map.iter().position(|m| m == n) {
            Some(i) => i,
            None => {
                map.push(n.to_string());
                map.len() - 1
            }
        };
        out += &(i + 1).to_string();
        rest = &rest[digits..];
    }
    out + rest
}

/// `who`'s text with its session tables cut into cells at the header's
/// columns, stand-ins put in (uids, `pts/N` numbered in order of
/// appearance, pids numbered from 4101) and the tables laid out again.
fn who_table(who: &str, stand: &StandIns, ttys: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut columns: Vec<usize> = Vec::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut pids: Vec<String> = Vec::new();
    let flush = |rows: &mut Vec<Vec<String>>, out: &mut String| {
        if rows.is_empty() {
            return;
        }
        let n = rows[0].len();
        let mut widths = vec![0; n];
        for row in rows.iter() {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        for row in rows.drain(..) {
            let mut l = String::from("  ");
            for (c, w) in row.iter().zip(&widths) {
                l += c;
                l += &" ".repeat(w - c.chars().count() + 2);
            }
            *out += l.trim_end();
            *out += "\n";
        }
    };
    for line in who.lines() {
        if line.starts_with("  HOW ") {
            columns = ["HOW", "PID", "WHERE", "DETAIL"]
                .iter()
                .map(|h| line.find(h).unwrap())
                .collect();
            rows.push(line.split_whitespace().map(String::from).collect());
            continue;
        }
        let is_row = !columns.is_empty()
            && line.len() > columns[1]
            && line[columns[1]..]
                .trim_start()
                .starts_with(|c: char| c.is_ascii_digit());
        if is_row {
            let mut cells: Vec<String> = Vec::new();
            for (i, &at) in columns.iter().enumerate() {
                let end = columns
                    .get(i + 1)
                    .copied()
                    .unwrap_or(line.len())
                    .min(line.len());
                let cell = line.get(at.min(line.len())..end).unwrap_or("").trim();
                cells.push(cell.to_string());
            }
            let pid = cells[1].clone();
            let i = pids.iter().position(|p| *p == pid).unwrap_or_else(|| {
                pids.push(pid.clone());
                pids.len() - 1
            });
            cells[1] = (4101 + i).to_string();
            for c in cells.iter_mut().skip(2) {
                *c = number_ttys(&stand.apply(c), ttys);
            }
            rows.push(cells);
            continue;
        }
        flush(&mut rows, &mut out);
        columns.clear();
        out += &sorted_ttys(&number_ttys(&stand.apply(line), ttys));
        out += "\n";
    }
    flush(&mut rows, &mut out);
    out
}

/// `on pts/9, pts/10` (sorted as text) in the order the stand-ins give.
fn sorted_ttys(line: &str) -> String {
    let Some(at) = line.find(", on ") else {
        return line.to_string();
    };
    let start = at + 5;
    let end = line[start..].find(';').map_or(line.len(), |e| start + e);
    let mut ttys: Vec<&str> = line[start..end].split(", ").collect();
    if !ttys.iter().all(|t| t.starts_with("pts/")) {
        return line.to_string();
    }
    ttys.sort_by_key(|t| t[4..].parse::<u32>().unwrap_or(0));
    format!("{}{}{}", &line[..start], ttys.join(", "), &line[end..])
}

/// `who`'s output restricted to the box's own people: the box shares the
/// machine's processes, so other accounts of the machine that ran the
/// generator (root's tmux, someone's VS Code) are left out.
fn people_of_the_box(who: &str, h: &HostBox) -> String {
    let names: Vec<&str> = h.users.iter().map(|u| u.name.as_str()).collect();
    let mut out = String::new();
    let mut keep = false;
    for line in who.lines() {
        if !line.starts_with(' ') {
            keep = names
                .iter()
                .any(|n| line.starts_with(&format!("{n} (uid ")));
        }
        if keep {
            out += line;
            out += "\n";
        }
    }
    out
}

/// The block `fleet`: hosthog-server on PostgreSQL, hosts gpu1 and gpu2.
fn fleet() -> String {
    let mut server = FleetServer::start();
    let bundles: Vec<PathBuf> = ["gpu1", "gpu2"]
        .iter()
        .map(|h| server.add_host(h))
        .collect();
    server.serve();
    let hosts: Vec<FleetHost> = ["gpu1", "gpu2"]
        .iter()
        .zip(&bundles)
        .map(|(n, b)| FleetHost::start(&server, n, b))
        .collect();
    for host in &hosts {
        wait_for_file(&host.state_dir().join("fleet.json"), &host.log());
    }
    let gpu1 = &hosts[0];
    // Until the server has both hosts' first sync and presence report, so
    // `hosthog hosts` shows the same ages ("0m ago") on every run.
    let started = Instant::now();
    loop {
        let (_, listed, _) = gpu1.hosthog("root", &["--json", "hosts"]);
        let known = serde_json::from_str::<serde_json::Value>(&listed).is_ok_and(|v| {
            v.as_array().is_some_and(|hosts| {
                hosts.len() == 2
                    && hosts
                        .iter()
                        .all(|h| h["synced"].is_i64() && h["seen"].is_i64())
            })
        });
        if known {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no first sync and report of both hosts within 30 s: {listed}\n{}",
            gpu1.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let real_now = now();
    let mut out = String::new();
    let mut stand = StandIns::default();
    stand.add(server.address(), "https://hosthog.lab.example:8443");
    let run = |out: &mut String, user: &str, args: &[&str]| -> String {
        let (code, stdout, stderr) = gpu1.hosthog(user, args);
        assert!(code.is_some(), "{stderr}");
        *out += &format!("{user}@gpu1{}", shown(args));
        *out += &stdout;
        *out += &stderr;
        stdout
    };
    out += &block("fleet");
    run(&mut out, "alice", &["hosts"]);
    run(
        &mut out,
        "alice",
        &["reserve", "--hosts", "gpu1,gpu2", "--for", "3h", "sweep"],
    );
    run(
        &mut out,
        "bob",
        &[
            "reserve",
            "--next-free",
            "--for",
            "4h",
            "--hosts",
            "gpu*",
            "training",
        ],
    );
    // The ids, in the order they were made.
    let (_, listed, _) = gpu1.hosthog("root", &["--json", "list"]);
    let mut by_start: Vec<(i64, String)> = serde_json::from_str::<serde_json::Value>(&listed)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["start"].as_i64().unwrap(),
                r["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    by_start.sort();
    for (_, id) in &by_start {
        stand.id(id);
    }
    // The table follows the calendar within a second; hosts shows holders.
    let started = Instant::now();
    while gpu1.owners().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "{}", gpu1.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    run(&mut out, "alice", &["list", "--fleet"]);
    run(&mut out, "alice", &["hosts"]);
    out += &block("tokens");
    run(
        &mut out,
        "alice",
        &[
            "token",
            "create",
            "--label",
            "laptop",
            "--expires-in",
            "30d",
        ],
    );
    run(&mut out, "alice", &["web"]);
    // Tokens are listed by when they were made, to the second.
    std::thread::sleep(Duration::from_millis(1100));
    run(&mut out, "alice", &["feed"]);
    let listed = run(&mut out, "alice", &["token", "list"]);
    let token = listed
        .lines()
        .find(|l| l.ends_with("laptop"))
        .and_then(|l| l.split(' ').next())
        .unwrap();
    run(&mut out, "alice", &["token", "revoke", token]);
    run(&mut out, "alice", &["token", "list"]);
    drop(hosts);
    drop(server);
    // Token ids (12 hex digits) and secrets (64), in order of appearance.
    let mut ids = 0;
    let mut secrets = 0;
    for word in out.split(|c: char| !c.is_ascii_hexdigit()) {
        let hex = word
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        if !hex || stand.pairs.iter().any(|(real, _)| real == word) {
            continue;
        }
        if word.len() == 12 {
            const TOKEN_IDS: [&str; 3] = ["a41c07d2e9b3", "5f30c8e1a6d4", "c29e6b04f1a7"];
            stand.add(word, TOKEN_IDS[ids % 3]);
            ids += 1;
        } else if word.len() == 64 {
            let pattern = [
                "0123456789abcdef",
                "fedcba9876543210",
                "00112233445566778899aabbccddeeff",
            ];
            stand.add(word, pattern[secrets % 3].repeat(8)[..64].to_string());
            secrets += 1;
        }
    }
    let text = stand.apply(&out);
    shift_times(&text, real_now)
}

fn wait_for_file(path: &Path, log: &str) {
    let started = Instant::now();
    while !path.exists() {
        assert!(started.elapsed() < Duration::from_secs(10), "{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
