//! hosthogd's timers: one thread that wakes at the next instant anything is
//! due (a lead time, a start, the end of a clearing grace period, an end),
//! at every change of the table, and at least every `tick`.
//!
//! The instants are wall-clock (UTC) seconds, so the thread sleeps on a
//! `CLOCK_REALTIME` timerfd armed at an absolute time, with
//! `TFD_TIMER_CANCEL_ON_SET`: a changed system clock wakes it at once, and
//! after a suspend the kernel fires the timer as soon as the machine
//! resumes if its time has passed. Each wake reads the clock and handles
//! everything whose instant lies in `(last wake, now]`, so an instant that
//! passed while the thread slept is never skipped; [`Sent`] keeps a window
//! looked at twice (clock set back) from sending anything twice.
//!
//! Each wake: read the table; prune ended reservations through the
//! [`Service`]; ask [`crate::events::plan`] what happened; rewrite the
//! MOTD fragment if its text changed; log the events; hand them to the
//! notifier and the clearing threads (which do the slow work). Then arm the
//! timer at [`crate::events::next_instant`].
//!
//! Events are remembered in memory only. After a restart the thread looks
//! back [`CATCH_UP`] seconds, so an instant that passed while the daemon
//! was restarting is still handled — and one handled by the previous
//! daemon in that last minute may be sent again. Nothing older is resent.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::events::{Event, EventKind, Sent, Timing, next_instant, plan};
use hosthog_booking::policy::{Caller, Change, Record};
use libhosthog::{Mode, Reservation, ReservationId, State};

use crate::motd::render_motd;
use jiff::tz::TimeZone;

use crate::service::{ChangeObserver, Service};
use crate::{clear, notify, runfile};

/// How far back the first wake after a start looks, in seconds.
pub const CATCH_UP: i64 = 60;
/// How long handled events are remembered, in seconds.
const REMEMBER: i64 = 2 * 86_400;
/// How long the name of who made a change waits for the scheduler to see
/// the change.
const NOTE_LIFETIME: Duration = Duration::from_secs(60);

/// The wall clock, in seconds with a fraction: the scheduler's one clock
/// read per wake.
#[allow(clippy::disallowed_methods)] // entry point: the scheduler reads the clock once per wake
pub fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Wakes the scheduler when the table changes, and remembers who changed
/// which reservation (so they are not told about their own change).
#[derive(Debug)]
pub struct Wakeup {
    eventfd: OwnedFd,
    notes: Mutex<HashMap<ReservationId, (String, Instant)>>,
}

impl Wakeup {
    /// # Errors
    /// The eventfd cannot be created.
    pub fn new() -> std::io::Result<Arc<Wakeup>> {
        // SAFETY: eventfd takes an initial value and flags only.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Arc::new(Wakeup {
            // SAFETY: fd was just created and is owned by nobody else.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
            notes: Mutex::new(HashMap::new()),
        }))
    }

    /// Makes the scheduler wake now.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from our non-blocking
        // eventfd.
        unsafe {
            libc::read(
                self.eventfd.as_raw_fd(),
                (&mut value as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    fn notes(&self) -> std::sync::MutexGuard<'_, HashMap<ReservationId, (String, Instant)>> {
        self.notes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The actors of the changes among `events` (their notes are used up;
    /// notes too old to match anything are dropped).
    fn actors(&self, events: &[Event]) -> HashMap<ReservationId, String> {
        let mut notes = self.notes();
        notes.retain(|_, (_, at)| at.elapsed() < NOTE_LIFETIME);
        events
            .iter()
            .filter(|e| !e.kind.is_timed())
            .filter_map(|e| {
                let id = e.reservation.id;
                notes.remove(&id).map(|(actor, _)| (id, actor))
            })
            .collect()
    }
}

impl ChangeObserver for Wakeup {
    fn changing(&self, caller: &Caller, change: &Change) {
        let mut notes = self.notes();
        for record in [&change.before, &change.after].into_iter().flatten() {
            if let Record::Reservation(r) = record {
                notes.insert(r.id, (caller.name.clone(), Instant::now()));
            }
        }
    }

    fn written(&self) {
        self.wake();
    }
}

/// What the scheduler does besides timing.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The MOTD fragment to keep current (none: do not write one).
    pub motd: Option<PathBuf>,
    /// Where to append one JSON line per event (none: do not).
    pub event_log: Option<PathBuf>,
    /// The longest sleep.
    pub tick: Duration,
    pub timing: Timing,
    /// Pause systemd timers for exclusive slots (with clearing on).
    pub pause_timers: bool,
    pub tz: TimeZone,
}

/// The threads the scheduler hands work to.
#[derive(Debug, Clone)]
pub struct Workers {
    pub notify: mpsc::Sender<notify::Job>,
    /// Present when clearing the host is on.
    pub clear: Option<mpsc::Sender<clear::Job>>,
}

/// Starts the scheduler thread.
///
/// # Errors
/// The timerfd or the thread cannot be created.
pub fn spawn(
    service: Arc<Service>,
    wakeup: Arc<Wakeup>,
    settings: Settings,
    workers: Workers,
) -> std::io::Result<()> {
    let timer = Timer::new()?;
    let watch = TableWatch::new(service.store().dir());
    std::thread::Builder::new()
        .name("hosthogd-timers".into())
        .spawn(move || {
            let mut scheduler = Scheduler {
                service,
                wakeup,
                settings,
                workers,
                timer,
                watch,
                prev: None,
                since: 0,
                sent: Sent::default(),
                motd: None,
                last_refresh: i64::MIN,
                complained: false,
            };
            scheduler.run();
        })?;
    Ok(())
}

struct Scheduler {
    service: Arc<Service>,
    wakeup: Arc<Wakeup>,
    settings: Settings,
    workers: Workers,
    timer: Timer,
    watch: Option<TableWatch>,
    /// The reservations as of the last wake (`None` before the first).
    prev: Option<Vec<Reservation>>,
    /// The last wake's time: instants after it are due.
    since: i64,
    sent: Sent,
    /// The MOTD text last written.
    motd: Option<String>,
    last_refresh: i64,
    /// A table read error was logged (log it once, not every wake).
    complained: bool,
}

impl Scheduler {
    fn run(&mut self) -> ! {
        let tick = self.settings.tick.as_secs().max(1) as i64;
        loop {
            let now = wall_clock().floor() as i64;
            let next = self.wake(now);
            let until = next.unwrap_or(i64::MAX).min(now.saturating_add(tick));
            self.timer.arm(until);
            self.wait(self.settings.tick + Duration::from_millis(500));
        }
    }

    /// Handles everything due at `now`; returns the next instant.
    fn wake(&mut self, now: i64) -> Option<i64> {
        if self.prev.is_none() {
            self.since = now - CATCH_UP;
            if let Some(clear) = &self.workers.clear
                && let Ok(state) = self.service.store().read()
            {
                let _ = clear.send(clear::Job::ResumeStale {
                    state: Arc::new(state),
                    now,
                });
            }
        }
        let mut state = match self.service.store().read() {
            Ok(state) => {
                self.complained = false;
                state
            }
            Err(e) => {
                if !self.complained {
                    eprintln!("hosthogd: timers: cannot read the table: {e}");
                    self.complained = true;
                }
                return None;
            }
        };
        let ended = state.reservations.iter().any(|r| r.end <= now)
            || state.notices.iter().any(|n| n.end <= now);
        if ended {
            if let Err(e) = self.service.prune(now) {
                eprintln!("hosthogd: timers: cannot prune ended reservations: {e}");
            }
            state.prune(now);
        }
        let mut events = plan(
            self.prev.as_deref(),
            &state.reservations,
            self.since,
            now,
            &self.settings.timing,
        );
        events.retain(|e| self.sent.first_time(e));
        if let Some(path) = &self.settings.motd {
            let text = render_motd(&state, now, &self.settings.tz);
            if self.motd.as_deref() != Some(text.as_str()) {
                match runfile::replace(path, text.as_bytes()) {
                    Ok(()) => self.motd = Some(text),
                    Err(e) => eprintln!("hosthogd: cannot write {}: {e}", path.display()),
                }
            }
        }
        let fired = wall_clock();
        self.log(&events, fired);
        self.dispatch(events, &state, now);
        let tick = self.settings.tick.as_secs().max(1) as i64;
        if now.saturating_sub(self.last_refresh) >= tick || now < self.last_refresh {
            let _ = self.workers.notify.send(notify::Job::Refresh { now });
            self.last_refresh = now;
        }
        let next = next_instant(&state.reservations, now, &self.settings.timing);
        self.prev = Some(state.reservations);
        self.since = now;
        self.sent.forget_before(now - REMEMBER);
        next
    }

    fn dispatch(&mut self, events: Vec<Event>, state: &State, now: i64) {
        if events.is_empty() {
            return;
        }
        let actors = self.wakeup.actors(&events);
        if let Some(clear) = &self.workers.clear {
            let shared = Arc::new(state.clone());
            for e in events
                .iter()
                .filter(|e| e.reservation.mode == Mode::Exclusive)
            {
                let job = match e.kind {
                    EventKind::Clear => clear::Job::Clear {
                        state: Arc::clone(&shared),
                        event: Box::new(e.clone()),
                        now,
                    },
                    EventKind::Start if self.settings.pause_timers => clear::Job::PauseTimers {
                        id: e.reservation.id,
                    },
                    kind if self.settings.pause_timers && clear::ends_slot(kind) => {
                        clear::Job::ResumeTimers {
                            id: e.reservation.id,
                        }
                    }
                    _ => continue,
                };
                let _ = clear.send(job);
            }
        }
        self.last_refresh = now;
        let _ = self.workers.notify.send(notify::Job::Events {
            events,
            exempt: state.exempt.clone(),
            actors,
            now,
        });
    }

    /// One line per event on stderr, and one JSON line in the event log.
    fn log(&self, events: &[Event], fired: f64) {
        if events.is_empty() {
            return;
        }
        let mut lines = String::new();
        for e in events {
            let r = &e.reservation;
            eprintln!(
                "hosthogd: event {}: {}'s {} reservation {} (instant {}, handled {:+.3} s)",
                e.kind.name(),
                libhosthog::sanitize(&r.owner),
                r.mode,
                r.id.short(),
                e.at,
                fired - e.at as f64
            );
            let line = serde_json::json!({
                "event": e.kind.name(),
                "id": r.id.to_string(),
                "owner": r.owner,
                "mode": r.mode,
                "instant": e.at,
                "fired": fired,
            });
            lines += &line.to_string();
            lines.push('\n');
        }
        if let Some(path) = &self.settings.event_log {
            let written = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
                .and_then(|mut f| f.write_all(lines.as_bytes()));
            if let Err(e) = written {
                eprintln!("hosthogd: cannot append to {}: {e}", path.display());
            }
        }
    }

    /// Sleeps until the timer fires, the clock is set, the table changes,
    /// or `longest` passes.
    fn wait(&self, longest: Duration) {
        let mut fds = vec![
            libc::pollfd {
                fd: self.timer.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wakeup.eventfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if let Some(watch) = &self.watch {
            fds.push(libc::pollfd {
                fd: watch.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ms = longest.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: fds is a valid array of pollfd of the length passed.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        // Clear whatever woke us (all non-blocking).
        self.timer.drain();
        self.wakeup.drain();
        if let Some(watch) = &self.watch {
            watch.drain();
        }
    }
}

/// A `CLOCK_REALTIME` timerfd armed at absolute instants.
struct Timer {
    fd: OwnedFd,
}

impl Timer {
    fn new() -> std::io::Result<Timer> {
        // SAFETY: timerfd_create takes a clock id and flags only.
        let fd = unsafe {
            libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK)
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Timer {
            // SAFETY: fd was just created and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Fires at `at` (UTC seconds) or when the clock is set.
    fn arm(&self, at: i64) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: at.max(1) as libc::time_t,
                tv_nsec: 0,
            },
        };
        // SAFETY: spec is a valid itimerspec; the old value is not asked for.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            eprintln!(
                "hosthogd: timers: cannot arm the timer: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    fn drain(&self) {
        let mut expirations: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from our non-blocking
        // timerfd (ECANCELED after a clock change is fine: we re-arm).
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut expirations as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// inotify on the state directory: wakes the scheduler when anyone
/// (`hosthog --state-dir` too) renames a new table into place.
struct TableWatch {
    fd: OwnedFd,
}

impl TableWatch {
    fn new(dir: &Path) -> Option<TableWatch> {
        // SAFETY: inotify_init1 takes flags only.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c_dir =
            std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str())).ok()?;
        // SAFETY: c_dir is a valid NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(
                fd.as_raw_fd(),
                c_dir.as_ptr(),
                libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE,
            )
        };
        if wd < 0 {
            eprintln!(
                "hosthogd: timers: cannot watch {} ({}); changes by others are seen within the tick",
                dir.display(),
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(TableWatch { fd })
    }

    fn drain(&self) {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads into a valid buffer of the length passed.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
        }
    }
}
