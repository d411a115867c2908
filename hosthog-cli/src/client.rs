//! Talking to hosthogd: over its socket, or (root, `--state-dir`) to a
//! `hosthogd --stdio` this command starts on a socket pair, so that the
//! same daemon code applies the same rules to a state directory directly.
//! This command links no daemon code either way.

use std::io::{BufRead, BufReader, ErrorKind};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hosthog_booking::protocol::{MAX_FRAME, Op, Reply, Request, Response, read_frame, write_frame};

use crate::CliError;

/// How long to wait for hosthogd's answer (it may wait for the table lock).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where requests go.
pub enum Backend {
    /// A running hosthogd, at this socket.
    Daemon(PathBuf),
    /// A state directory, served by `hosthogd --stdio` (root only).
    StateDir {
        dir: PathBuf,
        config: Option<PathBuf>,
    },
}

impl Backend {
    /// Sends one request and returns the reply.
    ///
    /// # Errors
    /// [`CliError`] with one line: the daemon's refusal, or why it could not
    /// be reached.
    pub fn call(&self, request: &Request) -> Result<Reply, CliError> {
        // A list too long for one frame comes in pages: fetch them all.
        if let Op::List(args) = &request.op {
            let mut all = Vec::new();
            let mut args = args.clone();
            loop {
                let page = Request {
                    version: request.version,
                    op: Op::List(args.clone()),
                    tz: request.tz.clone(),
                };
                let response = self.exchange(&page)?;
                let next = response.next.clone();
                match response.into_result().map_err(CliError::Refused)? {
                    Reply::Reservations(list) => all.extend(list),
                    other => return Ok(other),
                }
                match next {
                    Some(next) if args.after.as_ref() != Some(&next) => args.after = Some(next),
                    _ => return Ok(Reply::Reservations(all)),
                }
            }
        }
        self.exchange(request)?
            .into_result()
            .map_err(CliError::Refused)
    }

    /// One request, one response.
    fn exchange(&self, request: &Request) -> Result<Response, CliError> {
        Ok(match self {
            Backend::Daemon(socket) => {
                let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused => not_running(socket, &e),
                    _ => CliError::Message(format!("cannot connect to {}: {e}", socket.display())),
                })?;
                exchange(stream, request)?
            }
            Backend::StateDir { dir, config } => on_state_dir(dir, config.as_deref(), request)?,
        })
    }
}

fn not_running(socket: &Path, e: &std::io::Error) -> CliError {
    CliError::Message(format!(
        "hosthogd is not running ({}: {e}); start it with `systemctl start hosthogd.socket` \
         or `hosthogd --socket {}`",
        socket.display(),
        socket.display()
    ))
}

/// The hosthogd to start for `--state-dir`: `$HOSTHOGD` if set, else the
/// one beside this executable (a build tree), else the installed one.
fn daemon_path() -> PathBuf {
    if let Some(path) = std::env::var_os("HOSTHOGD") {
        return PathBuf::from(path);
    }
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("hosthogd"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/hosthogd"))
}

fn on_state_dir(
    dir: &Path,
    config: Option<&Path>,
    request: &Request,
) -> Result<Response, CliError> {
    let (ours, theirs) = UnixStream::pair()
        .map_err(|e| CliError::Message(format!("cannot create a socket pair: {e}")))?;
    let daemon = daemon_path();
    let mut command = Command::new(&daemon);
    command.arg("--stdio").arg("--state-dir").arg(dir);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::Message(format!("cannot start {}: {e}", daemon.display())))?;
    let complaint = forward_stderr(&mut child);
    let answer = exchange(ours, request);
    let status = child.wait();
    let complaint = complaint.and_then(|t| t.join().ok()).flatten();
    match (answer, complaint) {
        (Ok(response), _) => Ok(response),
        // hosthogd said why it stopped (a bad configuration, an unusable
        // state directory): that is the one line to show.
        (Err(_), Some(line)) => Err(CliError::Message(line)),
        (Err(e), None) => Err(match status {
            Ok(status) if !status.success() => {
                CliError::Message(format!("{} --stdio failed ({status})", daemon.display()))
            }
            _ => e,
        }),
    }
}

/// Passes hosthogd's "waiting for lock" lines on as they come, and keeps
/// its last other line (why it failed) for the caller.
fn forward_stderr(child: &mut Child) -> Option<std::thread::JoinHandle<Option<String>>> {
    let stderr = child.stderr.take()?;
    std::thread::Builder::new()
        .name("hosthogd-stderr".into())
        .spawn(move || {
            let mut last = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("hosthog: waiting for lock") {
                    eprintln!("{line}");
                } else {
                    last = Some(line.trim_start_matches("hosthogd: ").to_string());
                }
            }
            last
        })
        .ok()
}

/// One request, one response, on a connected stream.
fn exchange(stream: UnixStream, request: &Request) -> Result<Response, CliError> {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let mut writer = stream
        .try_clone()
        .map_err(|e| CliError::Message(format!("cannot use the connection to hosthogd: {e}")))?;
    write_frame(&mut writer, request).map_err(|e| {
        if e.kind() == ErrorKind::InvalidData {
            CliError::Message(format!(
                "the request is larger than {} KiB; shorten the comment or the lists",
                MAX_FRAME / 1024
            ))
        } else {
            CliError::Message(format!("sending to hosthogd failed: {e}"))
        }
    })?;
    let mut reader = BufReader::new(stream);
    let frame = match read_frame(&mut reader) {
        Ok(Some(frame)) => frame,
        Ok(None) => {
            return Err(CliError::Message(
                "hosthogd closed the connection without answering (did it stop?)".into(),
            ));
        }
        Err(e) => {
            return Err(CliError::Message(format!(
                "reading hosthogd's answer failed: {e}"
            )));
        }
    };
    serde_json::from_slice(&frame)
        .map_err(|e| CliError::Message(format!("hosthogd's answer is not understood: {e}")))
}
