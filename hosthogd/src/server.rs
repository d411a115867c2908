//! The socket: systemd socket activation or a socket of our own, one thread
//! per connection up to a cap (and a smaller cap per uid, so one user cannot
//! take every slot), a deadline per request, SO_PEERCRED.

use std::collections::HashMap;
use std::fs;
use std::io::{BufReader, ErrorKind, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hosthog_booking::protocol::{
    Failure, FailureKind, FrameError, Response, parse_request, read_frame, write_frame,
};

use crate::rate::Buckets;
use crate::service::Service;

/// How long a client may take to send a whole request (from the moment the
/// daemon starts waiting for it) or to read a response: a slow or stuck
/// client, even one that trickles a byte at a time, cannot hold a worker
/// longer than this per request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The share of `--max-connections` one uid may hold at once (root is not
/// limited): with the default 64, 16 per user, so one user flooding the
/// socket leaves the other 48 slots to everyone else.
pub const PER_UID_DIVISOR: usize = 4;

/// Most connections one (non-root) uid may have in service at once, for a
/// daemon serving at most `max_connections`.
pub fn per_uid_limit(max_connections: usize) -> usize {
    (max_connections / PER_UID_DIVISOR).max(1)
}

/// How fast one uid other than root is served, after a burst: requests
/// beyond the rate wait (their thread sleeps) instead of taking a CPU, so
/// one user flooding the socket with cheap requests on all their
/// connections gets their share and no more.
pub const REQUESTS_PER_MINUTE: u32 = 1800;
pub const REQUEST_BURST: u32 = 60;

/// A connection waiting this long for its next request may be closed to
/// make room for a new one when every slot is taken.
pub const EVICTABLE_AFTER: Duration = Duration::from_millis(200);

/// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The listening socket systemd passed, if this process was socket
/// activated (`LISTEN_PID` is our pid and `LISTEN_FDS` ≥ 1).
pub fn systemd_listener() -> Option<UnixListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: i32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    // SAFETY: called before any thread is started (from main), so nothing
    // reads the environment concurrently.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    // SAFETY: fcntl on an fd number has no memory-safety preconditions.
    unsafe { libc::fcntl(LISTEN_FDS_START, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: systemd hands us fd 3 as an open listening socket we own.
    Some(unsafe { UnixListener::from_raw_fd(LISTEN_FDS_START) })
}

/// Binds `path`: creates its directory (0755) if missing, replaces a stale
/// socket, refuses if a daemon already answers there, and makes the socket
/// connectable by everyone (0666): the daemon decides who may do what.
///
/// The directory must be one only root (or this user) can change, or a
/// sticky one like /tmp where others cannot remove or replace our socket:
/// otherwise another user could swap the path for a symlink between the
/// checks and the bind.
///
/// # Errors
/// A sentence naming the path and what failed.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        if !dir.exists() {
            fs::create_dir_all(dir)
                .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o755)))
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        check_socket_dir(dir)?;
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another hosthogd is already listening on {}",
                path.display()
            ));
        }
        fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale {}: {e}", path.display()))?;
    }
    // The mode comes from the umask at bind time rather than a chmod after
    // it: chmod follows symlinks, and the name could be swapped in between.
    // SAFETY: umask has no preconditions; this runs before any thread that
    // creates files is started.
    let old_mask = unsafe { libc::umask(0o111) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old_mask) };
    bound.map_err(|e| format!("cannot listen on {}: {e}", path.display()))
}

/// Refuses a socket directory that someone other than root or us could
/// change (unless it is sticky: then they cannot touch our entry).
fn check_socket_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir).map_err(|e| format!("cannot stat {}: {e}", dir.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(format!(
            "{} is owned by uid {}; refusing to put the socket there",
            dir.display(),
            meta.uid()
        ));
    }
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        return Err(format!(
            "{} has mode {:04o}: others could replace the socket; refusing to put it there",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The uid of the process at the other end, from the kernel.
///
/// # Errors
/// The `getsockopt` error.
pub fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writes of the sizes passed.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Counts connections in service; `acquire` blocks at the cap.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Slots {
    /// A slot for a connection just accepted. When all are taken, the
    /// connection that has waited longest for a request, of the uid that
    /// holds the most, is closed to make room: idle connections cannot keep
    /// a new one out, however many uids collude to hold them.
    fn acquire(self: &Arc<Self>, conns: &Conns) -> SlotGuard {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= self.max {
            drop(used);
            conns.evict();
            used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            if *used >= self.max {
                used = self
                    .freed
                    .wait_timeout(used, Duration::from_millis(50))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        *used += 1;
        SlotGuard(Arc::clone(self))
    }
}

/// The connections in service, and which of them wait for a request.
#[derive(Default)]
struct Conns {
    map: Mutex<HashMap<u64, Conn>>,
    next: std::sync::atomic::AtomicU64,
}

struct Conn {
    uid: u32,
    stream: UnixStream,
    idle_since: Option<Instant>,
}

impl Conns {
    fn register(&self, uid: u32, stream: &UnixStream) -> Option<u64> {
        let stream = stream.try_clone().ok()?;
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(
            id,
            Conn {
                uid,
                stream,
                idle_since: Some(Instant::now()),
            },
        );
        Some(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Conn>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_idle(&self, id: u64, idle: bool) {
        if let Some(c) = self.lock().get_mut(&id) {
            c.idle_since = idle.then(Instant::now);
        }
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes the longest-idle connection (idle at least
    /// [`EVICTABLE_AFTER`]) of the uid with the most connections.
    fn evict(&self) -> bool {
        let map = self.lock();
        let mut per_uid: HashMap<u32, usize> = HashMap::new();
        for c in map.values() {
            *per_uid.entry(c.uid).or_default() += 1;
        }
        let victim = map
            .values()
            .filter_map(|c| Some((c, c.idle_since?)))
            .filter(|(_, since)| since.elapsed() >= EVICTABLE_AFTER)
            .max_by_key(|(c, since)| (per_uid.get(&c.uid).copied(), std::cmp::Reverse(*since)));
        match victim {
            Some((c, _)) => {
                // Never block the accept loop on a client that does not
                // read: the connection is being closed anyway.
                let _ = c.stream.set_nonblocking(true);
                let _ = write_frame(
                    &mut &c.stream,
                    &Response::error(Failure::new(
                        FailureKind::Protocol,
                        "closing an idle connection: hosthogd is busy; connect again when you have a request",
                    )),
                );
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
                true
            }
            None => false,
        }
    }
}

/// What the server does between requests of one connection: pace its uid,
/// and mark it idle while it waits.
struct Pacing {
    conns: Arc<Conns>,
    id: u64,
    requests: Arc<Buckets>,
    uid: u32,
}

impl Pacing {
    fn waiting(&self, idle: bool) {
        self.conns.set_idle(self.id, idle);
    }

    /// Sleeps until the uid may be served again (root is not paced).
    fn pace(&self) {
        if self.uid == 0 {
            return;
        }
        if let Err(wait) = self.requests.check(self.uid, Instant::now()) {
            std::thread::sleep(wait.min(IO_TIMEOUT));
        }
        self.requests.charge(self.uid);
    }
}

impl Drop for Pacing {
    fn drop(&mut self) {
        self.conns.remove(self.id);
    }
}

struct SlotGuard(Arc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        self.0.freed.notify_one();
    }
}

/// Connections in service per uid; `try_acquire` refuses at the cap.
struct UidSlots {
    used: Mutex<HashMap<u32, usize>>,
    max: usize,
}

impl UidSlots {
    fn try_acquire(self: &Arc<Self>, uid: u32) -> Option<UidGuard> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let n = used.entry(uid).or_insert(0);
        if uid != 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(UidGuard(Arc::clone(self), uid))
    }
}

struct UidGuard(Arc<UidSlots>, u32);

impl Drop for UidGuard {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = used.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                used.remove(&self.1);
            }
        }
    }
}

/// Answers a connection over its uid's limit with one error frame and
/// closes it, without blocking the accept loop.
fn refuse_busy(stream: &UnixStream, limit: usize) {
    let failure = Failure::new(
        FailureKind::Protocol,
        format!(
            "too many connections from your user at once (at most {limit}); \
             close some and try again"
        ),
    );
    let _ = stream.set_nonblocking(true);
    let mut writer = stream;
    let _ = write_frame(&mut writer, &Response::error(failure));
}

/// Accepts connections forever, each served on its own thread, at most
/// `max_connections` at once and at most [`per_uid_limit`] of them for any
/// one uid other than root.
pub fn serve(listener: &UnixListener, service: Arc<Service>, max_connections: usize) {
    let slots = Arc::new(Slots {
        used: Mutex::new(0),
        freed: Condvar::new(),
        max: max_connections.max(1),
    });
    let uid_slots = Arc::new(UidSlots {
        used: Mutex::new(HashMap::new()),
        max: per_uid_limit(max_connections.max(1)),
    });
    let conns = Arc::new(Conns::default());
    let requests = Arc::new(Buckets::new(REQUESTS_PER_MINUTE, REQUEST_BURST));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("hosthogd: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        // A uid we cannot read is served (and refused in serve_connection)
        // under root's key: it holds no other uid's slots.
        let uid = peer_uid(&stream).unwrap_or(0);
        let Some(uid_slot) = uid_slots.try_acquire(uid) else {
            refuse_busy(&stream, uid_slots.max);
            continue;
        };
        let slot = slots.acquire(&conns);
        let Some(id) = conns.register(uid, &stream) else {
            continue;
        };
        let pacing = Pacing {
            conns: Arc::clone(&conns),
            id,
            requests: Arc::clone(&requests),
            uid,
        };
        let service = Arc::clone(&service);
        let spawned = std::thread::Builder::new()
            .name("hosthogd-conn".into())
            .spawn(move || {
                let _slot = slot;
                let _uid_slot = uid_slot;
                serve_paced(stream, &service, &mut |_| {}, Some(&pacing));
            });
        if let Err(e) = spawned {
            eprintln!("hosthogd: cannot start a connection thread: {e}");
        }
    }
}

/// The time of a request: the one clock read per request.
#[allow(clippy::disallowed_methods)] // entry point: read the clock once per request
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A socket read with one deadline for a whole request: each `read` waits
/// at most until the deadline, so trickling bytes does not extend it.
struct DeadlineReader {
    stream: UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// Standard input as the one connection of `hosthogd --stdio`.
///
/// # Errors
/// Standard input is not a Unix socket.
pub fn stdio_connection() -> Result<UnixStream, String> {
    // SAFETY: fstat on fd 0 writes only into the zeroed struct we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; fd 0 may be closed, which fstat reports.
    let is_socket =
        unsafe { libc::fstat(0, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK;
    if !is_socket {
        return Err(
            "--stdio serves a Unix socket on standard input (hosthog --state-dir starts it so)"
                .into(),
        );
    }
    // SAFETY: fd 0 is an open socket, and nothing else in this process
    // uses standard input.
    Ok(unsafe { UnixStream::from_raw_fd(0) })
}

/// Serves requests on one connection until the client closes it, sends
/// something that is not a request, or takes longer than [`IO_TIMEOUT`] to
/// send one.
pub fn serve_connection(stream: UnixStream, service: &Service, on_wait: &mut dyn FnMut(&Path)) {
    serve_paced(stream, service, on_wait, None);
}

fn serve_paced(
    stream: UnixStream,
    service: &Service,
    on_wait: &mut dyn FnMut(&Path),
    pacing: Option<&Pacing>,
) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let caller = match peer_uid(&stream) {
        Ok(uid) => service.caller(uid),
        Err(e) => Err(Failure::new(
            FailureKind::Internal,
            format!("cannot identify the caller: {e}"),
        )),
    };
    let mut reader = BufReader::new(DeadlineReader {
        stream,
        deadline: Instant::now() + IO_TIMEOUT,
    });
    loop {
        reader.get_mut().deadline = Instant::now() + IO_TIMEOUT;
        if let Some(p) = pacing {
            p.waiting(true);
        }
        let frame = read_frame(&mut reader);
        if let Some(p) = pacing {
            p.waiting(false);
            if matches!(frame, Ok(Some(_))) {
                p.pace();
            }
        }
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(FrameError::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                let failure = Failure::new(
                    FailureKind::Protocol,
                    format!(
                        "no complete request within {} seconds; closing",
                        IO_TIMEOUT.as_secs()
                    ),
                );
                let _ = write_frame(&mut writer, &Response::error(failure));
                return;
            }
            Err(FrameError::Io(_)) => return,
            Err(e) => {
                let failure = Failure::new(FailureKind::Protocol, format!("bad frame: {e}"));
                let _ = write_frame(&mut writer, &Response::error(failure));
                return;
            }
        };
        let response = match parse_request(&frame) {
            Err(failure) => {
                let _ = write_frame(&mut writer, &Response::error(failure));
                return;
            }
            Ok(request) => match &caller {
                Err(failure) => Response::error(failure.clone()),
                Ok(caller) => service.handle(caller, &request, now(), on_wait),
            },
        };
        if write_frame(&mut writer, &response).is_err() {
            return;
        }
    }
}
