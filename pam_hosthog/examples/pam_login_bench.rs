//! The login-path benchmark harness behind bench/pam-login.sh.
//!
//! `pam_login_bench table DIR COUNT USER`: writes a table of COUNT
//! reservations into DIR/table (one of them, active now, exclusive and
//! held by USER; the rest spread over the next weeks).
//!
//! `pam_login_bench run CONFDIR USER ROUNDS CALLS SERVICE:CODE[:CALLS] ...`:
//! times `pam_start_confdir` + `pam_acct_mgmt` + `pam_end` through the real
//! libpam, with the services' files read from CONFDIR (nothing under /etc
//! is used). Services take turns, ROUNDS times, CALLS calls each per round
//! (or the CALLS after the colon), so drift in machine speed hits every
//! service alike. Prints one markdown row per service: median and p90 per
//! call, and the median's ratio to the first service. Every module stays
//! loaded after the warm-up call: this is the cost of a login inside a
//! long-lived process (a display manager), not of an sshd login. Every
//! answer, the warm-up's included, must be CODE (0 allowed, 6 refused) or
//! the run fails, as in `cold`.
//!
//! `pam_login_bench cold CONFDIR LOGINS LABEL:SERVICE:USER:CODE ...`: the
//! cost of a real login, where sshd and login fork a fresh process for
//! every login, so every module is loaded, relocated and initialised once
//! per login. Each login is a fresh process (`once`, below) that times its
//! own `pam_start_confdir` + `pam_acct_mgmt` + `pam_end` (process start-up
//! is not counted, module loading is). The stacks take turns login by
//! login, LOGINS each, and every answer must be CODE (0 allowed, 6
//! PAM_PERM_DENIED) or the run fails: a stack that answers wrongly (a
//! module that did not load, a table it could not read) is never timed as
//! if it worked. Prints one markdown row per stack, with the median's
//! difference to the first stack (the baseline).
//!
//! `pam_login_bench once CONFDIR SERVICE USER`: one login; prints
//! "MICROSECONDS CODE". With `PAM_LOGIN_BENCH_ONCE=PROGRAM` set, `cold`
//! runs `PROGRAM CONFDIR SERVICE USER` for each login instead: the C
//! program bench/pam-once.c, which, like sshd and login, has not loaded
//! libgcc_s before the modules do.

use std::ffi::{CString, c_void};
use std::process::ExitCode;
use std::ptr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libc::{c_char, c_int};
use libhosthog::{Mode, Reservation, ReservationId, State, encode};

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn =
    extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_acct_mgmt(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
}

/// Answers every message with an empty response, as a terminal-less client
/// would; the messages are discarded.
extern "C" fn conversation(
    n: c_int,
    _msgs: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    _appdata: *mut c_void,
) -> c_int {
    let n = usize::try_from(n).unwrap_or(0);
    // SAFETY: calloc returns zeroed memory (null responses) or null; libpam
    // or the module frees it with free().
    let array = unsafe { libc::calloc(n.max(1), size_of::<PamResponse>()) };
    if array.is_null() {
        return 5; // PAM_BUF_ERR
    }
    // SAFETY: `resp` is the out-pointer libpam handed us.
    unsafe { *resp = array.cast() };
    0
}

fn one_call(service: &CString, user: &CString, confdir: &CString) -> c_int {
    let conv = PamConv {
        conv: conversation,
        appdata_ptr: ptr::null_mut(),
    };
    let mut pamh: *mut c_void = ptr::null_mut();
    // SAFETY: all strings are NUL-terminated and outlive the calls; `conv`
    // outlives the handle (pam_end is called before it goes out of scope).
    unsafe {
        let rc = pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        );
        if rc != 0 {
            return 1000 + rc;
        }
        let rc = pam_acct_mgmt(pamh, 0);
        pam_end(pamh, rc);
        rc
    }
}

fn write_table(dir: &str, count: usize, user: &str) -> Result<(), String> {
    #[allow(clippy::disallowed_methods)] // a harness entry point: the clock is read once here
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let owners = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
    let mut state = State::default();
    for i in 0..count {
        let (owner, start, end) = if i == 0 {
            (user.to_string(), now - 600, now + 3 * 3600)
        } else {
            let start = now + 3 * 3600 + (i as i64) * 1800;
            (owners[i % owners.len()].to_string(), start, start + 1800)
        };
        state.reservations.push(Reservation {
            id: ReservationId(0x1000_0000_0000_0000 + i as u64),
            owner,
            with: vec![owners[(i + 1) % owners.len()].to_string()],
            start,
            end,
            mode: if i % 3 == 0 {
                Mode::Exclusive
            } else {
                Mode::Shared
            },
            comment: format!("benchmark reservation {i}"),
            created: now,
            updated: now,
        });
    }
    state.exempt = vec!["nagios".into(), "backup".into()];
    let bytes = encode(&state).map_err(|e| e.to_string())?;
    let path = std::path::Path::new(dir).join("table");
    std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "wrote {} ({} bytes, {count} reservations)",
        path.display(),
        bytes.len()
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn run(
    confdir: &str,
    user: &str,
    rounds: usize,
    calls: usize,
    specs: &[String],
) -> Result<(), String> {
    let cstr = |s: &str| CString::new(s).map_err(|e| e.to_string());
    let confdir = cstr(confdir)?;
    let user = cstr(user)?;
    let mut services = Vec::new();
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        let (name, expect, n) = match parts[..] {
            [name, code] => (name, code, calls),
            [name, code, n] => (
                name,
                code,
                n.parse().map_err(|_| format!("bad count in {spec}"))?,
            ),
            _ => return Err(format!("{spec}: expected SERVICE:CODE[:CALLS]")),
        };
        let expect: c_int = expect.parse().map_err(|_| format!("bad code in {spec}"))?;
        services.push((
            name.to_string(),
            cstr(name)?,
            n,
            Vec::<Duration>::new(),
            expect,
        ));
    }
    // Warm-up: load every module once; each must answer as expected.
    for (name, service, _, _, expect) in &mut services {
        let code = one_call(service, &user, &confdir);
        eprintln!("{name}: pam_acct_mgmt returns {code}");
        if code != *expect {
            return Err(format!(
                "{name}: pam_acct_mgmt answered {code}, expected {expect}"
            ));
        }
    }
    for _ in 0..rounds {
        for (name, service, n, times, expect) in &mut services {
            for _ in 0..*n {
                let start = Instant::now();
                let code = one_call(service, &user, &confdir);
                times.push(start.elapsed());
                if code != *expect {
                    return Err(format!(
                        "{name}: pam_acct_mgmt answered {code}, expected {expect}"
                    ));
                }
            }
        }
    }
    println!("| stack (account) | calls | median per call | p90 | median vs first |");
    println!("|---|---:|---:|---:|---:|");
    let mut baseline = None;
    for (name, _, _, times, _) in &mut services {
        times.sort();
        let median = percentile(times, 0.5);
        let base = *baseline.get_or_insert(median);
        println!(
            "| {name} | {} | {:.1} µs | {:.1} µs | {:.2}× |",
            times.len(),
            median.as_secs_f64() * 1e6,
            percentile(times, 0.9).as_secs_f64() * 1e6,
            median.as_secs_f64() / base.as_secs_f64(),
        );
    }
    Ok(())
}

/// One login in this process: `MICROSECONDS CODE` on stdout.
fn once(confdir: &str, service: &str, user: &str) -> Result<(), String> {
    let cstr = |s: &str| CString::new(s).map_err(|e| e.to_string());
    let (confdir, service, user) = (cstr(confdir)?, cstr(service)?, cstr(user)?);
    let start = Instant::now();
    let code = one_call(&service, &user, &confdir);
    let took = start.elapsed();
    println!("{} {code}", took.as_nanos() / 1000);
    Ok(())
}

/// A stack of the cold run: its label, service, user and expected answer.
struct Stack {
    label: String,
    service: String,
    user: String,
    expect: c_int,
    times: Vec<Duration>,
}

fn cold(confdir: &str, logins: usize, specs: &[String]) -> Result<(), String> {
    let mut stacks = Vec::new();
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        let [label, service, user, code] = parts.as_slice() else {
            return Err(format!("{spec}: expected LABEL:SERVICE:USER:CODE"));
        };
        stacks.push(Stack {
            label: label.to_string(),
            service: service.to_string(),
            user: user.to_string(),
            expect: code.parse().map_err(|_| format!("bad code in {spec}"))?,
            times: Vec::with_capacity(logins),
        });
    }
    // A C program doing the same (bench/pam-once.c) models sshd better:
    // this Rust process has libgcc_s loaded already, sshd has not.
    let (exe, first) = match std::env::var_os("PAM_LOGIN_BENCH_ONCE") {
        Some(once) => (std::path::PathBuf::from(once), None),
        None => (
            std::env::current_exe().map_err(|e| e.to_string())?,
            Some("once"),
        ),
    };
    for _ in 0..logins {
        for stack in &mut stacks {
            let out = std::process::Command::new(&exe)
                .args(first)
                .args([confdir, &stack.service, &stack.user])
                .output()
                .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut fields = text.split_whitespace();
            let (Some(micros), Some(code)) = (fields.next(), fields.next()) else {
                return Err(format!("{}: no answer ({text:?})", stack.label));
            };
            let micros: u64 = micros.parse().map_err(|_| format!("bad output {text:?}"))?;
            let code: c_int = code.parse().map_err(|_| format!("bad output {text:?}"))?;
            if code != stack.expect {
                return Err(format!(
                    "{}: pam_acct_mgmt answered {code}, expected {}",
                    stack.label, stack.expect
                ));
            }
            stack.times.push(Duration::from_micros(micros));
        }
    }
    println!(
        "| stack (account), one fresh process per login | logins | answer | median | p90 | added over {} |",
        stacks.first().map_or("", |s| s.label.as_str())
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut baseline = None;
    for stack in &mut stacks {
        stack.times.sort();
        let median = percentile(&stack.times, 0.5).as_secs_f64() * 1e6;
        let base = *baseline.get_or_insert(median);
        println!(
            "| {} | {} | {} | {:.0} µs | {:.0} µs | {:+.0} µs |",
            stack.label,
            stack.times.len(),
            stack.expect,
            median,
            percentile(&stack.times, 0.9).as_secs_f64() * 1e6,
            median - base,
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [cmd, dir, count, user] if cmd == "table" => count
            .parse()
            .map_err(|_| format!("bad count {count}"))
            .and_then(|n| write_table(dir, n, user)),
        [cmd, confdir, user, rounds, calls, specs @ ..] if cmd == "run" && !specs.is_empty() => {
            match (rounds.parse(), calls.parse()) {
                (Ok(r), Ok(c)) => run(confdir, user, r, c, specs),
                _ => Err("ROUNDS and CALLS are numbers".into()),
            }
        }
        [cmd, confdir, service, user] if cmd == "once" => once(confdir, service, user),
        [cmd, confdir, logins, specs @ ..] if cmd == "cold" && !specs.is_empty() => logins
            .parse()
            .map_err(|_| format!("bad login count {logins}"))
            .and_then(|n| cold(confdir, n, specs)),
        _ => Err("usage: pam_login_bench table DIR COUNT USER | \
                  run CONFDIR USER ROUNDS CALLS SERVICE:CODE[:CALLS]... | \
                  cold CONFDIR LOGINS LABEL:SERVICE:USER:CODE... | once CONFDIR SERVICE USER"
            .into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pam_login_bench: {e}");
            ExitCode::from(2)
        }
    }
}
