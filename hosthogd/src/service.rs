//! One request against one state directory: identify, decide, write, audit.
//! hosthogd calls this for every request it receives, and
//! `hosthog --state-dir` calls the same code for root without a daemon.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hosthog_booking::parse_time_zone;
use hosthog_booking::policy::{self, Caller, Change, Context, Record};
use hosthog_booking::protocol::{
    self, ExemptArgs, ExemptList, Failure, FailureKind, Identity, Op, Reply, Request, Response,
};
use jiff::tz::TimeZone;
use libhosthog::{ErrorKind, State, Store, TableFile, validate_user_name};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditLog, Entry};
use crate::commit::{Pending, Queue};
use crate::config::Config;
use crate::nss;
use crate::rate::Buckets;
use std::time::{Duration, Instant};

/// File in the state directory holding the exemptions admins added with
/// `hosthog exempt add` (users and unexpanded groups).
pub const EXEMPT_NAME: &str = "exempt.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExemptFile {
    users: Vec<String>,
    groups: Vec<String>,
}

/// Told about every change to the table (hosthogd's scheduler).
pub trait ChangeObserver: std::fmt::Debug + Send + Sync {
    /// `caller` is about to write `change`.
    fn changing(&self, caller: &Caller, change: &Change);
    /// The table was written.
    fn written(&self);
}

/// Requests served against one state directory.
#[derive(Debug)]
pub struct Service {
    store: Store,
    config: Config,
    tz: TimeZone,
    audit: AuditLog,
    exempt_path: PathBuf,
    /// The exemption list expanded to user names, as of the last refresh.
    effective_exempt: Mutex<Vec<String>>,
    /// The state as this process last wrote it (see [`Service::load`]).
    state_cache: Mutex<Option<State>>,
    /// Write requests waiting to share the next table write.
    queue: Queue,
    observer: Option<std::sync::Arc<dyn ChangeObserver>>,
    host: crate::host::Host,
    /// The time zones of the write requests waiting in the queue.
    zones: Mutex<Vec<ZoneNote>>,
    /// With `[fleet]`: the server this host follows; its users' bookings
    /// and releases go there (crate::fleet).
    fleet: Option<crate::fleet::Agent>,
    /// How fast each non-admin may change the table (`[limits]`).
    writes: Option<Buckets>,
    /// Where the table and the fleet's files are (crate::join).
    state_dir: PathBuf,
}

/// The time zone a queued write request asked for its messages in. The
/// queue's [`Pending`] carries the caller, the operation and the time; the
/// zone is noted here under those, for the batch writer to find.
#[derive(Debug, Clone, PartialEq)]
struct ZoneNote {
    uid: u32,
    now: i64,
    op: Op,
    tz: TimeZone,
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::new(FailureKind::Internal, e.to_string())
}

impl Service {
    /// A service on `state_dir` (created root-only-writable if missing).
    ///
    /// # Errors
    /// The directory cannot be created, or the exemption file is unreadable.
    pub fn new(state_dir: &Path, config: Config) -> Result<Service, String> {
        if !state_dir.exists() {
            fs::create_dir_all(state_dir)
                .and_then(|()| fs::set_permissions(state_dir, fs::Permissions::from_mode(0o755)))
                .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
        }
        let writes = config
            .writes
            .per_minute
            .map(|n| Buckets::new(n, config.writes.burst));
        let service = Service {
            store: Store::new(state_dir),
            tz: TimeZone::system(),
            audit: AuditLog::new(state_dir).with_bounds(config.audit.max_size, config.audit.keep),
            config,
            writes,
            exempt_path: state_dir.join(EXEMPT_NAME),
            effective_exempt: Mutex::new(Vec::new()),
            state_cache: Mutex::new(None),
            queue: Queue::default(),
            observer: None,
            host: crate::host::Host::default(),
            fleet: None,
            zones: Mutex::new(Vec::new()),
            state_dir: state_dir.to_path_buf(),
        };
        let file = service.read_exempt().map_err(|f| f.message)?;
        let effective = service.expand(&file);
        *service.cache() = effective;
        Ok(service)
    }

    /// Uses `tz` for messages instead of the host's zone.
    pub fn with_time_zone(mut self, tz: TimeZone) -> Service {
        self.tz = tz;
        self
    }

    /// Tells `observer` about every change.
    pub fn with_observer(mut self, observer: std::sync::Arc<dyn ChangeObserver>) -> Service {
        self.observer = Some(observer);
        self
    }

    /// Sends this host's users' bookings and releases to the fleet calendar.
    pub fn with_fleet(mut self, agent: crate::fleet::Agent) -> Service {
        self.fleet = Some(agent);
        self
    }

    /// Serves `who`, `motd` and `post` with `host` (another utmp file).
    pub fn with_host(mut self, host: crate::host::Host) -> Service {
        self.host = host;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The time zone messages are written in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    pub fn audit_path(&self) -> &Path {
        self.audit.path()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.effective_exempt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Who `uid` is and whether they are an admin, through NSS.
    ///
    /// # Errors
    /// [`FailureKind::Denied`] for a uid without a user name.
    pub fn caller(&self, uid: u32) -> Result<Caller, Failure> {
        let account = nss::user_by_uid(uid).ok_or_else(|| {
            Failure::new(
                FailureKind::Denied,
                format!("uid {uid} has no user name on this host"),
            )
        })?;
        let admin = uid == 0
            || self
                .config
                .admin_group
                .as_deref()
                .is_some_and(|g| nss::in_group(&account, g));
        Ok(Caller {
            uid,
            name: account.name,
            admin,
        })
    }

    /// Serves one request for `caller` at `now` (UTC seconds, read once by
    /// the caller of this function). `on_wait` is called before blocking on
    /// the table lock.
    pub fn handle(
        &self,
        caller: &Caller,
        request: &Request,
        now: i64,
        on_wait: &mut dyn FnMut(&Path),
    ) -> Response {
        // The caller's zone (their TZ) for this request's messages, else the
        // host's: one rule for every message, the CLI's own included.
        let tz = match request.tz.as_deref().map(parse_time_zone).transpose() {
            Ok(tz) => tz.unwrap_or_else(|| self.tz.clone()),
            Err(e) => return Response::error(e.into()),
        };
        match (
            &request.op,
            self.run(caller, &request.op, now, &tz, on_wait),
        ) {
            // A list longer than a frame holds goes out in pages.
            (Op::List(args), Ok(Reply::Reservations(list))) => {
                match protocol::page(list, args.after.as_deref(), protocol::LIST_PAGE_BYTES) {
                    Ok((page, next)) => Response {
                        next,
                        ..Response::ok(Reply::Reservations(page))
                    },
                    Err(failure) => Response::error(failure),
                }
            }
            (_, result) => result.into(),
        }
    }

    fn run(
        &self,
        caller: &Caller,
        op: &Op,
        now: i64,
        tz: &TimeZone,
        on_wait: &mut dyn FnMut(&Path),
    ) -> Result<Reply, Failure> {
        match op {
            Op::Whoami => Ok(Reply::Whoami(Identity {
                uid: caller.uid,
                user: caller.name.clone(),
                admin: caller.admin,
            })),
            Op::Check(args)
                if validate_user_name(&args.user).is_ok() && !user_exists(&args.user) =>
            {
                Err(Failure::new(
                    FailureKind::NotFound,
                    format!("there is no user {} on this host", args.user),
                ))
            }
            Op::Check(args) => {
                let (mut report, stale) = match self.open_table()? {
                    Some(file) => {
                        let table = file.table().map_err(Failure::from)?;
                        let stale = table
                            .notices()
                            .find(|n| n.id() == FLEET_NOTICE_ID)
                            .map(|n| libhosthog::sanitize(n.text()).into_owned());
                        (policy::check(&table, args, now, tz)?, stale)
                    }
                    None => (policy::check(&State::default(), args, now, tz)?, None),
                };
                // Decided from this host's copy of the fleet calendar: say
                // how old it is once it is stale, and what it could not
                // take when the host joined.
                if let Some(stale) = stale {
                    report.explanation.push_str(&format!("\nhosthog: {stale}"));
                }
                let unsynced = crate::join::read_unsynced(&self.state_dir);
                if !unsynced.is_empty() {
                    let path = self.state_dir.join(crate::join::UNSYNCED_NAME);
                    report.explanation.push_str(&format!(
                        "\nhosthog: {}",
                        crate::join::describe(&unsynced, &path)
                    ));
                }
                Ok(Reply::Check(report))
            }
            Op::ExemptList => {
                let file = self.read_exempt()?;
                Ok(Reply::Exempt(self.exempt_list(&file)))
            }
            Op::Who | Op::Motd | Op::Post(_) => {
                let state = self.store.read().map_err(Failure::from)?;
                self.host.handle(caller, op, &state, now, tz)
            }
            Op::History(args) => {
                crate::history::history(self.audit.path(), caller, args, now).map(Reply::History)
            }
            op if op.is_write() && !caller.admin && self.over_write_rate(caller) => {
                let buckets = self
                    .writes
                    .as_ref()
                    .map_or((0, 0), |b| (b.per_minute(), b.burst()));
                Err(Failure::new(
                    FailureKind::Limit,
                    format!(
                        "too many changes: each user may make {} a minute (up to {} at once); \
                         nothing was changed, try again in a few seconds",
                        buckets.0, buckets.1
                    ),
                ))
            }
            Op::ExemptAdd(args) => self.exempt_edit(caller, args, true, now, on_wait),
            Op::ExemptRemove(args) => self.exempt_edit(caller, args, false, now, on_wait),
            Op::FleetList(args) => match &self.fleet {
                Some(agent) => agent
                    .list(&caller.name, args.all)
                    .map(Reply::FleetReservations),
                None => Err(not_in_a_fleet()),
            },
            Op::NextFree(args) => match &self.fleet {
                Some(agent) => {
                    let booked = agent.next_free(&caller.name, args, tz.iana_name())?;
                    // Read-after-write, when it is this host that was booked.
                    self.catch_up(agent, now);
                    Ok(Reply::Booked(booked))
                }
                None => Err(not_in_a_fleet()),
            },
            Op::Hosts => match &self.fleet {
                Some(agent) => agent.hosts().map(Reply::Hosts),
                None => Err(not_in_a_fleet()),
            },
            Op::Reserve(args) if !args.hosts.is_empty() && self.fleet.is_none() => {
                Err(not_in_a_fleet())
            }
            op @ (Op::Reserve(_)
            | Op::Change(_)
            | Op::Share(_)
            | Op::Unshare(_)
            | Op::Release(_)
            | Op::Cancel(_))
                if self.fleet.is_some() =>
            {
                self.forward(caller, op, now, tz)
            }
            op if !op.is_write() => {
                let mut state = self.store.read().map_err(Failure::from)?;
                policy::apply(&mut state, caller, op, &self.context(now, tz, &user_exists))
                    .map(|(reply, _)| reply)
            }
            op => {
                let zone = ZoneNote {
                    uid: caller.uid,
                    now,
                    op: op.clone(),
                    tz: tz.clone(),
                };
                self.zones().push(zone.clone());
                let answer = self
                    .queue
                    .submit(caller, op, now, |batch| self.write_batch(batch, on_wait));
                let mut zones = self.zones();
                if let Some(at) = zones.iter().position(|z| *z == zone) {
                    zones.remove(at);
                }
                answer
            }
        }
    }

    fn zones(&self) -> std::sync::MutexGuard<'_, Vec<ZoneNote>> {
        self.zones.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The time zone `pending` asked for (see [`ZoneNote`]).
    fn zone_of(&self, pending: &Pending) -> TimeZone {
        self.zones()
            .iter()
            .find(|z| z.uid == pending.caller.uid && z.now == pending.now && z.op == pending.op)
            .map_or_else(|| self.tz.clone(), |z| z.tz.clone())
    }

    /// Whether `caller` has used up their changes for now. A caller over the
    /// rate is held for up to a second before the answer, so a client
    /// retrying in a loop costs the daemon a sleeping thread, not a CPU.
    fn over_write_rate(&self, caller: &Caller) -> bool {
        let Some(buckets) = &self.writes else {
            return false;
        };
        match buckets.check(caller.uid, Instant::now()) {
            Ok(()) => false,
            Err(wait) => {
                std::thread::sleep(wait.min(Duration::from_secs(1)));
                true
            }
        }
    }

    /// Applies a batch of write requests in order to one state and writes
    /// it once (see [`crate::commit`]). Every request gets its own answer:
    /// a refusal leaves the state as it was for the next one; changes are
    /// answered only once the table holding them is on disk and audited.
    fn write_batch(&self, batch: &[Arc<Pending>], on_wait: &mut dyn FnMut(&Path)) {
        let fail_all = |failure: Failure| batch.iter().for_each(|p| p.finish(Err(failure.clone())));
        let lock = match self.store.lock(|p| on_wait(p)) {
            Ok(lock) => lock,
            Err(e) => return fail_all(e.into()),
        };
        let mut state = match self.load(&lock) {
            Ok(state) => state,
            Err(failure) => return fail_all(failure),
        };
        let mut changes = Vec::new();
        for pending in batch {
            let tz = self.zone_of(pending);
            let context = self.context(pending.now, &tz, &user_exists);
            match policy::apply(&mut state, &pending.caller, &pending.op, &context) {
                Ok((reply, Some(change))) => {
                    if let (Some(buckets), false) = (&self.writes, pending.caller.admin) {
                        buckets.charge(pending.caller.uid);
                    }
                    changes.push((pending, reply, change));
                }
                Ok((reply, None)) => pending.finish(Ok(reply)),
                Err(failure) => pending.finish(Err(failure)),
            }
        }
        if changes.is_empty() {
            self.keep(state);
            return;
        }
        // Open the audit log first: if it cannot be written, nothing is.
        let mut audit = match self.audit.open() {
            Ok(file) => file,
            Err(e) => {
                let failure = internal(format!(
                    "nothing was changed: the audit log {} cannot be written: {e}",
                    self.audit.path().display()
                ));
                for (pending, _, _) in &changes {
                    pending.finish(Err(failure.clone()));
                }
                return;
            }
        };
        state.exempt = self.cache().clone();
        // The audit lines go to disk before the table, and are cut back if
        // the table cannot be written: a change is answered only with its
        // line on disk, and no line stays for a change that is not.
        let generation = lock.next_generation(&state);
        let mut lines = Vec::new();
        for (pending, _, change) in &changes {
            match self.entry_line(&pending.caller, change, generation, pending.now) {
                Ok(line) => lines.extend(line),
                Err(failure) => {
                    for (pending, _, _) in &changes {
                        pending.finish(Err(failure.clone()));
                    }
                    return;
                }
            }
        }
        let appended = match audit.append_lines(&lines) {
            Ok(appended) => appended,
            Err(e) => {
                let failure = self.audit_failure(&e);
                for (pending, _, _) in &changes {
                    pending.finish(Err(failure.clone()));
                }
                return;
            }
        };
        if let Some(observer) = &self.observer {
            for (pending, _, change) in &changes {
                observer.changing(&pending.caller, change);
            }
        }
        let now = batch.iter().map(|p| p.now).max().unwrap_or_default();
        if let Err(e) = lock.write(&mut state, now) {
            // Not kept: the next batch reads the table as it is on disk.
            let _ = audit.undo(appended);
            let failure = Failure::from(e);
            for (pending, _, _) in &changes {
                pending.finish(Err(failure.clone()));
            }
            return;
        }
        debug_assert_eq!(state.generation, generation);
        if let Some(observer) = &self.observer {
            observer.written();
        }
        self.keep(state);
        for (pending, reply, _) in changes {
            pending.finish(Ok(reply));
        }
    }

    /// The current state, under the write lock. Reading a 10,000-entry
    /// table into owned values costs milliseconds, so the state this
    /// process last wrote is kept and reused while the table's generation
    /// is still the one it wrote. Every writer bumps the generation under
    /// the lock, so an equal generation means nobody else (such as
    /// `hosthog --state-dir`) wrote in between.
    fn load(&self, lock: &libhosthog::Locked<'_>) -> Result<State, Failure> {
        let cached = self
            .state_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(cached) = cached
            && self.store.peek_generation() == Some(cached.generation)
        {
            return Ok(cached);
        }
        lock.read().map_err(Failure::from)
    }

    /// Keeps `state` (as now on disk) for the next write.
    fn keep(&self, state: State) {
        *self.state_cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
    }

    fn context<'a>(
        &'a self,
        now: i64,
        tz: &'a TimeZone,
        exists: &'a dyn Fn(&str) -> bool,
    ) -> Context<'a> {
        Context {
            now,
            tz,
            limits: &self.config.limits,
            new_id: random_id(),
            user_exists: exists,
            admins: hosthog_booking::policy::HOST_ADMINS,
        }
    }

    /// The table as the PAM module opens it; `None` if there is none yet.
    fn open_table(&self) -> Result<Option<TableFile>, Failure> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let owner = unsafe { libc::geteuid() };
        match TableFile::open(&self.store.table_path(), owner) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == ErrorKind::Missing => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The audit line of one change.
    fn entry_line(
        &self,
        caller: &Caller,
        change: &Change,
        generation: u64,
        now: i64,
    ) -> Result<Vec<u8>, Failure> {
        Entry {
            time: now,
            time_utc: jiff::Timestamp::from_second(now)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            uid: caller.uid,
            user: &caller.name,
            generation,
            change,
        }
        .line()
        .map_err(internal)
    }

    fn audit_failure(&self, e: &std::io::Error) -> Failure {
        internal(format!(
            "nothing was changed: the audit log {} cannot be written: {e}",
            self.audit.path().display()
        ))
    }

    fn read_exempt(&self) -> Result<ExemptFile, Failure> {
        match fs::read(&self.exempt_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| internal(format!("{}: {e}", self.exempt_path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ExemptFile::default()),
            Err(e) => Err(internal(format!("{}: {e}", self.exempt_path.display()))),
        }
    }

    fn write_exempt(&self, file: &ExemptFile) -> Result<(), Failure> {
        let dir = self.store.dir();
        let bytes = serde_json::to_vec_pretty(file).map_err(internal)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".exempt.new.")
            .tempfile_in(dir)
            .map_err(internal)?;
        temp.write_all(&bytes)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(internal)?;
        temp.persist(&self.exempt_path)
            .map_err(|e| internal(e.error))?;
        Ok(())
    }

    /// Users and groups from the configuration and the exemption file,
    /// expanded to user names (groups through NSS), with every uid-0 and
    /// system account from /etc/passwd and the admin group's members: the
    /// accounts clearing never touches ([`crate::accounts`]). Sorted.
    fn expand(&self, file: &ExemptFile) -> Vec<String> {
        let mut users: Vec<String> = self
            .config
            .exempt_users
            .iter()
            .chain(&file.users)
            .cloned()
            .collect();
        for group in self
            .config
            .exempt_groups
            .iter()
            .chain(&file.groups)
            .chain(&self.config.admin_group)
        {
            users.extend(nss::group_users(group).unwrap_or_default());
        }
        users.extend(crate::accounts::untouchable(Path::new(
            crate::accounts::PASSWD,
        )));
        users.retain(|u| validate_user_name(u).is_ok());
        users.sort();
        users.dedup();
        users
    }

    fn exempt_list(&self, file: &ExemptFile) -> ExemptList {
        ExemptList {
            users: file.users.clone(),
            groups: file.groups.clone(),
            config_users: self.config.exempt_users.clone(),
            config_groups: self.config.exempt_groups.clone(),
            effective: self.expand(file),
        }
    }

    fn exempt_edit(
        &self,
        caller: &Caller,
        args: &ExemptArgs,
        add: bool,
        now: i64,
        on_wait: &mut dyn FnMut(&Path),
    ) -> Result<Reply, Failure> {
        policy::require_admin(caller, "change the exemption list")?;
        if args.users.is_empty() && args.groups.is_empty() {
            return Err(Failure::new(
                FailureKind::Invalid,
                "name at least one user or group",
            ));
        }
        for name in args.users.iter().chain(&args.groups) {
            validate_user_name(name).map_err(Failure::from)?;
        }
        let lock = self.store.lock(|p| on_wait(p)).map_err(Failure::from)?;
        let before = self.read_exempt()?;
        let mut after = before.clone();
        for (names, list, kind) in [
            (&args.users, &mut after.users, "user"),
            (&args.groups, &mut after.groups, "group"),
        ] {
            for name in names {
                let present = list.contains(name);
                if add {
                    let exists = if kind == "user" {
                        nss::user_by_name(name).is_some()
                    } else {
                        nss::group_by_name(name).is_some()
                    };
                    if !exists {
                        return Err(Failure::new(
                            FailureKind::Invalid,
                            format!("there is no {kind} {name} on this host"),
                        ));
                    }
                    if !present {
                        list.push(name.clone());
                    }
                } else if present {
                    list.retain(|n| n != name);
                } else {
                    return Err(Failure::new(
                        FailureKind::Invalid,
                        format!("{kind} {name} is not on the exemption list"),
                    ));
                }
            }
            list.sort();
        }
        let effective = self.expand(&after);
        let mut state = lock.read().map_err(Failure::from)?;
        state.exempt = effective.clone();
        state.validate().map_err(Failure::from)?;
        let change = Change {
            action: if add { "exempt_add" } else { "exempt_remove" }.into(),
            before: Some(Record::Exempt {
                users: before.users,
                groups: before.groups,
            }),
            after: Some(Record::Exempt {
                users: after.users.clone(),
                groups: after.groups.clone(),
            }),
            overridden: vec![],
            limits_overridden: vec![],
        };
        // As for reservations: the audit line first, cut back on failure.
        let mut audit = self.audit.open().map_err(|e| self.audit_failure(&e))?;
        let line = self.entry_line(caller, &change, lock.next_generation(&state), now)?;
        let appended = audit
            .append_lines(&line)
            .map_err(|e| self.audit_failure(&e))?;
        let written = self
            .write_exempt(&after)
            .and_then(|()| lock.write(&mut state, now).map_err(Failure::from));
        if let Err(failure) = written {
            let _ = audit.undo(appended);
            return Err(failure);
        }
        *self.cache() = effective;
        Ok(Reply::Exempt(self.exempt_list(&after)))
    }

    /// Drops reservations and notices that ended by `now` from the table,
    /// if there are any (hosthogd's timers, at each end). Returns whether
    /// it wrote.
    ///
    /// # Errors
    /// Reading or writing the table failed.
    pub fn prune(&self, now: i64) -> Result<bool, Failure> {
        let lock = self.store.lock(|_| {}).map_err(Failure::from)?;
        let mut state = self.load(&lock)?;
        let ended = state.reservations.iter().any(|r| r.end <= now)
            || state.notices.iter().any(|n| n.end <= now);
        if !ended {
            self.keep(state);
            return Ok(false);
        }
        lock.write(&mut state, now).map_err(Failure::from)?;
        self.keep(state);
        Ok(true)
    }

    /// Re-expands the exemption groups and rewrites the table if the list
    /// of users changed (group membership changes outside hosthog).
    /// Returns whether it wrote.
    ///
    /// # Errors
    /// Reading or writing the table failed.
    pub fn refresh(&self, now: i64) -> Result<bool, Failure> {
        let file = self.read_exempt()?;
        let effective = self.expand(&file);
        *self.cache() = effective.clone();
        let lock = self.store.lock(|_| {}).map_err(Failure::from)?;
        let mut state = lock.read().map_err(Failure::from)?;
        let ended = state.reservations.iter().any(|r| r.end <= now);
        if state.exempt == effective && !ended {
            return Ok(false);
        }
        state.exempt = effective;
        lock.write(&mut state, now).map_err(Failure::from)?;
        Ok(true)
    }
}

impl Service {
    /// The reservations the table holds now (none without a table).
    ///
    /// # Errors
    /// The table cannot be read.
    pub fn reservations(&self) -> Result<Vec<libhosthog::Reservation>, Failure> {
        Ok(self.store.read().map_err(Failure::from)?.reservations)
    }

    /// Makes the table's reservations the fleet calendar's window for this
    /// host (crate::fleet): one atomic replace through the Store, exemptions
    /// and notices kept; nothing is written when nothing differs. Returns
    /// whether the table changed.
    ///
    /// # Errors
    /// The table cannot be locked, read or written (it stays as it was).
    pub fn follow(
        &self,
        mut window: Vec<libhosthog::Reservation>,
        now: i64,
    ) -> Result<bool, Failure> {
        window.retain(|r| r.end > now);
        window.sort_by_key(|r| (r.start, r.id));
        let lock = self.store.lock(|_| {}).map_err(Failure::from)?;
        let mut state = self.load(&lock)?;
        let mut current = state.reservations.clone();
        current.retain(|r| r.end > now);
        current.sort_by_key(|r| (r.start, r.id));
        if current == window {
            self.keep(state);
            return Ok(false);
        }
        state.reservations = window;
        state.exempt = self.cache().clone();
        lock.write(&mut state, now).map_err(Failure::from)?;
        self.keep(state);
        if let Some(observer) = &self.observer {
            observer.written();
        }
        Ok(true)
    }
}

impl Service {
    /// Shows `text` as the fleet's notice in every session summary (or
    /// takes it away with `None`): how old this host's copy of the calendar
    /// is while the server cannot be reached. Notice id 0 is this one's
    /// (admins' notices are numbered from 1).
    ///
    /// # Errors
    /// The table cannot be locked, read or written.
    pub fn set_fleet_notice(&self, text: Option<String>, now: i64) -> Result<(), Failure> {
        let lock = self.store.lock(|_| {}).map_err(Failure::from)?;
        let mut state = self.load(&lock)?;
        let before = state.notices.clone();
        state.notices.retain(|n| n.id != FLEET_NOTICE_ID);
        if let Some(text) = text {
            state.notices.push(libhosthog::Notice {
                id: FLEET_NOTICE_ID,
                author: "hosthog".into(),
                text,
                start: now,
                end: i64::MAX,
                created: now,
            });
        }
        if state.notices == before {
            self.keep(state);
            return Ok(());
        }
        state.exempt = self.cache().clone();
        lock.write(&mut state, now).map_err(Failure::from)?;
        self.keep(state);
        // The MOTD says it too.
        if let Some(observer) = &self.observer {
            observer.written();
        }
        Ok(())
    }

    /// A change to the reservations on a host that follows the fleet
    /// calendar: the calendar is the server's, so the request goes there
    /// (as this user, vouched for by the host) and is decided there by the
    /// same rules, with the fleet's admins and limits; the table follows at
    /// once. Notices and exemptions stay this host's own.
    fn forward(&self, caller: &Caller, op: &Op, now: i64, tz: &TimeZone) -> Result<Reply, Failure> {
        let Some(agent) = &self.fleet else {
            return Err(Failure::new(FailureKind::Internal, "no fleet"));
        };
        let reply = agent.request(&caller.name, op, tz.iana_name())?;
        self.catch_up(agent, now);
        Ok(reply)
    }

    /// Read-after-write: the table follows the calendar before the
    /// caller's next command (the agent thread would within moments).
    fn catch_up(&self, agent: &crate::fleet::Agent, now: i64) {
        match agent.window(None, 0) {
            Ok(window) => {
                if let Err(e) = self.follow(window.reservations, now) {
                    eprintln!("hosthogd: fleet: cannot write the table: {}", e.message);
                }
            }
            Err(e) => eprintln!("hosthogd: fleet: {e}"),
        }
    }
}

fn not_in_a_fleet() -> Failure {
    Failure::new(
        FailureKind::Invalid,
        "this host is not part of a fleet ([fleet] in /etc/hosthog/hosthog.toml, \
         see docs/config.md); it has only its own calendar",
    )
}

/// The id of the fleet's own notice (see [`Service::set_fleet_notice`]).
pub const FLEET_NOTICE_ID: u64 = 0;

fn user_exists(name: &str) -> bool {
    nss::user_by_name(name).is_some()
}

/// 64 random bits from the kernel, for a reservation id.
fn random_id() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: bytes is a valid buffer of the length passed.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != 8 {
        // getrandom on an 8-byte buffer does not fail once the pool is
        // initialised; fall back to the address space layout and the pid
        // mixed, and let the caller's collision check do the rest.
        let mix = (&bytes as *const _ as u64) ^ u64::from(std::process::id()).rotate_left(32);
        return mix.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    u64::from_le_bytes(bytes)
}
