//! Talking to hosthogd, or (root, `--state-dir`) to the state directory
//! directly through the same [`hosthogd::Service`].

use std::io::{BufReader, ErrorKind};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hosthog::protocol::{MAX_FRAME, Reply, Request, Response, read_frame, write_frame};
use hosthogd::Service;

use crate::CliError;

/// How long to wait for hosthogd's answer (it may wait for the table lock).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where requests go.
pub enum Backend {
    Daemon(PathBuf),
    Direct(Box<Service>),
}

impl Backend {
    /// Sends one request and returns the reply.
    ///
    /// # Errors
    /// [`CliError`] with one line: the daemon's refusal, or why it could not
    /// be reached.
    pub fn call(&self, request: &Request, now: i64) -> Result<Reply, CliError> {
        let response = match self {
            Backend::Daemon(socket) => ask_daemon(socket, request)?,
            Backend::Direct(service) => {
                // SAFETY: getuid has no preconditions and cannot fail.
                let uid = unsafe { libc::getuid() };
                let caller = service.caller(uid).map_err(CliError::Refused)?;
                service.handle(&caller, request, now, &mut |path: &Path| {
                    eprintln!("hosthog: waiting for lock on {}", path.display());
                })
            }
        };
        response.into_result().map_err(CliError::Refused)
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

fn ask_daemon(socket: &Path, request: &Request) -> Result<Response, CliError> {
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => not_running(socket, &e),
        _ => CliError::Message(format!("cannot connect to {}: {e}", socket.display())),
    })?;
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let mut writer = stream
        .try_clone()
        .map_err(|e| CliError::Message(format!("{}: {e}", socket.display())))?;
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
