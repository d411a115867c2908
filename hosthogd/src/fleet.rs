//! Following the fleet calendar: this host's hosthogd as an agent of
//! hosthog-server (docs/fleet-api.md).
//!
//! With `[fleet]` in hosthog.toml, a thread long-polls the server for this
//! host's window (`/agent/v1/window?since=VERSION&wait=50`, mutual TLS with
//! the host's bundle) and writes every new window into the local table
//! through the Store: one atomic replace, exemptions and notices kept. The
//! PAM module still reads only the local table, so a login never waits on
//! the network, and when the server or its database is gone the host keeps
//! enforcing what it last heard, reconnecting with jittered backoff and
//! converging by itself when the server is back. Each answer is recorded
//! in `fleet.json` in the state directory: the version held and when it
//! was last confirmed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use hosthog_booking::protocol::{
    Failure, FailureKind, FleetReservation, HostStatus, MintedToken, NextFreeArgs, Op, Reply,
    SecretLink, TokenArgs, TokenInfo,
};
use libhosthog::Reservation;
use serde::{Deserialize, Serialize};

use crate::config::FleetConfig;
use crate::service::Service;

/// How long one long-poll asks the server to wait for a change (at most:
/// a third of `stale_after`, so a healthy agent confirms its copy well
/// before it would be called stale).
const WAIT: u64 = 50;
/// A long-poll that has not answered this long after its wait is given up
/// (a cut link drops packets without a word).
const POLL_GRACE: u64 = 5;
/// Connecting longer than this counts as unreachable: writes fail at once
/// rather than after a TCP timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Backoff after a failure: from the first to the last, doubling, jittered
/// (to half of it). The last is short so a host converges within seconds
/// of the server coming back; a failed attempt is one cheap request.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_LAST: Duration = Duration::from_secs(3);
/// What the agent records in the state directory.
pub const STATUS_NAME: &str = "fleet.json";

/// The host's window, as the server sends it.
#[derive(Debug, Deserialize)]
pub struct Window {
    pub host: String,
    pub version: i64,
    pub reservations: Vec<Reservation>,
}

/// `fleet.json`: what this host last heard from the calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub server: String,
    pub host: String,
    /// The calendar version of this host's window the table holds.
    pub version: i64,
    /// When the server last confirmed it (UTC seconds).
    pub confirmed_at: i64,
}

/// A client of hosthog-server, speaking as this host.
#[derive(Clone)]
pub struct Agent {
    http: ureq::Agent,
    config: FleetConfig,
    /// When the server last confirmed this host's window (UTC seconds; 0:
    /// never), shared by every clone.
    synced: Arc<AtomicI64>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("server", &self.config.server)
            .field("host", &self.config.host)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// A client with the host's certificate and key, trusting only the
    /// lab CA, all from the bundle.
    ///
    /// # Errors
    /// The bundle is unreadable or lacks a certificate, its key or the CA.
    pub fn new(config: &FleetConfig) -> Result<Agent, String> {
        use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
        let pem = std::fs::read(&config.bundle).map_err(|e| {
            format!(
                "cannot read the fleet bundle {}: {e}",
                config.bundle.display()
            )
        })?;
        let mut certs: Vec<Certificate<'static>> = Vec::new();
        let mut key: Option<PrivateKey<'static>> = None;
        for item in ureq::tls::parse_pem(&pem) {
            match item.map_err(|e| format!("{}: {e}", config.bundle.display()))? {
                PemItem::Certificate(cert) => certs.push(cert),
                PemItem::PrivateKey(k) => key = Some(k),
                _ => {}
            }
        }
        let (Some(key), true) = (key, certs.len() >= 2) else {
            return Err(format!(
                "{} is not a host bundle (its certificate, its key and the CA, from \
                 hosthog-server host add)",
                config.bundle.display()
            ));
        };
        let host_cert = certs.remove(0);
        let tls = TlsConfig::builder()
            .client_cert(Some(ClientCert::new_with_certs(&[host_cert], key)))
            .root_certs(RootCerts::new_with_certs(&certs))
            .build();
        let http = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(Duration::from_secs(30)))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(Agent {
            http,
            config: config.clone(),
            synced: Arc::new(AtomicI64::new(0)),
        })
    }

    /// How long one long-poll waits for a change: [`WAIT`], or a third of
    /// `stale_after` if that is shorter.
    fn wait(&self) -> u64 {
        WAIT.min(
            u64::try_from(self.config.stale_after / 3)
                .unwrap_or(0)
                .max(1),
        )
    }

    /// When the server last confirmed this host's window (UTC seconds),
    /// if ever.
    pub fn last_synced(&self) -> Option<i64> {
        match self.synced.load(Ordering::Relaxed) {
            0 => None,
            at => Some(at),
        }
    }

    fn confirmed(&self, at: i64) {
        self.synced.store(at, Ordering::Relaxed);
    }

    /// This host's window: at once if `since` is not the server's version,
    /// else when it changes or after `wait` seconds.
    ///
    /// # Errors
    /// The server cannot be reached or refuses (one line saying which).
    pub fn window(&self, since: Option<i64>, wait: u64) -> Result<Window, String> {
        let mut url = format!("{}/agent/v1/window?wait={wait}", self.config.server);
        if let Some(v) = since {
            url.push_str(&format!("&since={v}"));
        }
        // A poll that outlives its wait by POLL_GRACE is lost (a cut link
        // drops packets without a word): give it up and poll again.
        let mut response = self
            .http
            .get(&url)
            .config()
            .timeout_global(Some(Duration::from_secs(wait + POLL_GRACE)))
            .build()
            .call()
            .map_err(|e| format!("cannot reach {}: {e}", self.config.server))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            return Err(format!(
                "{} answered {status}: {}",
                self.config.server,
                text.trim()
            ));
        }
        let window: Window = response
            .body_mut()
            .read_json()
            .map_err(|e| format!("{}'s answer is not understood: {e}", self.config.server))?;
        if window.host != self.config.host {
            return Err(format!(
                "{} knows this host's certificate as {}, but hosthog.toml says host = {}",
                self.config.server, window.host, self.config.host
            ));
        }
        Ok(window)
    }
}

/// The server's answer to a forwarded write that committed.
#[derive(Debug, Deserialize)]
struct Answered {
    reply: Reply,
}

/// The server's refusal of a forwarded write.
#[derive(Debug, Deserialize)]
struct Refusal {
    error: String,
    message: String,
    #[serde(default)]
    conflicts: Vec<Reservation>,
}

impl Agent {
    /// The answer when the server cannot be reached (`then`: what follows,
    /// e.g. that nothing was changed).
    fn unreachable(&self, e: &dyn std::fmt::Display, then: &str) -> Failure {
        Failure::new(
            FailureKind::Internal,
            format!(
                "the fleet calendar at {} cannot be reached ({e}){then}; {}",
                self.config.server,
                synced_ago(self.last_synced().map(|at| now() - at))
            ),
        )
    }

    /// The server's address, for messages.
    pub fn server(&self) -> &str {
        &self.config.server
    }

    /// Sends a user's write (made on this host, identified by
    /// SO_PEERCRED) to the server, which decides it with the booking rules
    /// and commits it before answering; `tz` names the user's zone for
    /// the times in its messages.
    ///
    /// # Errors
    /// The server refuses (the same sentence a single host would give) or
    /// cannot be reached (nothing was changed).
    pub fn request(&self, user: &str, op: &Op, tz: Option<&str>) -> Result<Reply, Failure> {
        let url = format!("{}/agent/v1/request", self.config.server);
        let body = serde_json::json!({ "user": user, "op": op, "tz": tz });
        let unreachable = |e: &dyn std::fmt::Display| self.unreachable(e, "; nothing was changed");
        let mut response = self
            .http
            .post(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .send_json(&body)
            .map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            let answer: Answered = response
                .body_mut()
                .read_json()
                .map_err(|e| unreachable(&e))?;
            return Ok(answer.reply);
        }
        let answer: Refusal = response
            .body_mut()
            .read_json()
            .map_err(|e| unreachable(&format!("status {status}, {e}")))?;
        Err(self.refused(answer))
    }

    /// The user's answer when the server refused a forwarded request.
    fn refused(&self, answer: Refusal) -> Failure {
        let kind = match answer.error.as_str() {
            "denied" => FailureKind::Denied,
            "limit" => FailureKind::Limit,
            "conflict" => FailureKind::Conflict,
            "not_found" => FailureKind::NotFound,
            "ambiguous" => FailureKind::Ambiguous,
            "invalid" | "unknown_hosts" => FailureKind::Invalid,
            _ => FailureKind::Internal,
        };
        let message = match answer.error.as_str() {
            "unauthenticated" => format!(
                "{} does not accept this host's certificate (revoked or replaced): {}",
                self.config.server, answer.message
            ),
            "unavailable" => format!(
                "the fleet calendar at {} is unavailable ({}); nothing was changed",
                self.config.server, answer.message
            ),
            _ => answer.message,
        };
        let mut failure = Failure::new(kind, message);
        failure.conflicts = answer.conflicts;
        failure
    }

    /// `user`'s reservations on the fleet calendar (with `all`: also those
    /// ended or cancelled in the last 30 days), by start.
    ///
    /// # Errors
    /// The server refuses or cannot be reached.
    pub fn list(&self, user: &str, all: bool) -> Result<Vec<FleetReservation>, Failure> {
        #[derive(Deserialize)]
        struct Listed {
            reservations: Vec<FleetReservation>,
        }
        // User names are checked by the booking rules before they get
        // here; encode them anyway.
        let mut url = format!(
            "{}/agent/v1/reservations?user={}",
            self.config.server,
            percent(user)
        );
        if all {
            url.push_str("&all=true");
        }
        let unreachable = |e: &dyn std::fmt::Display| self.unreachable(e, "");
        let mut response = self.http.get(&url).call().map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            let listed: Listed = response
                .body_mut()
                .read_json()
                .map_err(|e| unreachable(&e))?;
            return Ok(listed.reservations);
        }
        let answer: Refusal = response
            .body_mut()
            .read_json()
            .map_err(|e| unreachable(&format!("status {status}, {e}")))?;
        Err(self.refused(answer))
    }

    /// Books for `user` the earliest free slot `args` asks for, on one of
    /// its hosts; what was booked and where.
    ///
    /// # Errors
    /// The server refuses (no such host, limits, no slot) or cannot be
    /// reached (nothing was changed).
    pub fn next_free(
        &self,
        user: &str,
        args: &NextFreeArgs,
        tz: Option<&str>,
    ) -> Result<FleetReservation, Failure> {
        #[derive(Deserialize)]
        struct Booked {
            reply: Reply,
            hosts: Vec<String>,
            /// The new reservation's sequence, as the calendar committed
            /// it (a server that does not send it is older: its new
            /// reservations start at 0 too).
            #[serde(default)]
            sequence: i64,
        }
        let url = format!("{}/agent/v1/next-free", self.config.server);
        let mut body = serde_json::to_value(args).map_err(|e| self.unreachable(&e, ""))?;
        body["user"] = serde_json::json!(user);
        body["tz"] = serde_json::json!(tz);
        let unreachable = |e: &dyn std::fmt::Display| self.unreachable(e, "; nothing was changed");
        let mut response = self
            .http
            .post(&url)
            .send_json(&body)
            .map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            let booked: Booked = response
                .body_mut()
                .read_json()
                .map_err(|e| unreachable(&e))?;
            let Reply::Reservation(reservation) = booked.reply else {
                return Err(unreachable(&"the answer names no reservation"));
            };
            return Ok(FleetReservation {
                reservation,
                hosts: booked.hosts,
                sequence: booked.sequence,
                // Just booked.
                cancelled_at: None,
            });
        }
        let answer: Refusal = response
            .body_mut()
            .read_json()
            .map_err(|e| unreachable(&format!("status {status}, {e}")))?;
        Err(self.refused(answer))
    }

    /// Every host of the fleet, as the server sees it now.
    ///
    /// # Errors
    /// The server refuses or cannot be reached.
    pub fn hosts(&self) -> Result<Vec<HostStatus>, Failure> {
        let url = format!("{}/agent/v1/hosts", self.config.server);
        let unreachable = |e: &dyn std::fmt::Display| self.unreachable(e, "");
        let mut response = self.http.get(&url).call().map_err(|e| unreachable(&e))?;
        if !response.status().is_success() {
            return Err(unreachable(&format!("status {}", response.status())));
        }
        response.body_mut().read_json().map_err(|e| unreachable(&e))
    }

    /// Reports who is on this host (the presence snapshot's bytes).
    ///
    /// # Errors
    /// The server refuses or cannot be reached.
    pub fn report_presence(&self, snapshot: &[u8]) -> Result<(), String> {
        let url = format!("{}/agent/v1/presence", self.config.server);
        let response = self
            .http
            .put(&url)
            .header("Content-Type", "application/json")
            .send(snapshot)
            .map_err(|e| format!("cannot reach {}: {e}", self.config.server))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "{} answered {status} to the presence report",
                self.config.server
            ))
        }
    }
}

/// Identity minted through this host (docs/fleet-api.md, "Tokens,
/// sign-in links, feeds"): the host vouches for `user`, whom hosthogd
/// identified by SO_PEERCRED.
impl Agent {
    /// One JSON request to the identity endpoints; the answer's body, or
    /// the server's refusal as a [`Failure`] with its message.
    fn identity(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Failure> {
        let url = format!("{}{path}", self.config.server);
        let unreachable = |e: &dyn std::fmt::Display| self.unreachable(e, "");
        let response = match (method, body) {
            ("POST", Some(body)) => self.http.post(&url).send_json(&body),
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            _ => return Err(Failure::new(FailureKind::Internal, "unknown request")),
        };
        let mut response = response.map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        let value: serde_json::Value = response
            .body_mut()
            .read_json()
            .map_err(|e| unreachable(&e))?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let kind = match status {
            403 => FailureKind::Denied,
            404 => FailureKind::NotFound,
            400 => FailureKind::Invalid,
            _ => FailureKind::Internal,
        };
        let message = value["message"]
            .as_str()
            .map_or_else(|| format!("status {status}"), String::from);
        Err(Failure::new(
            kind,
            if status == 401 {
                format!(
                    "{} does not accept this host's certificate (revoked or replaced): {message}",
                    self.config.server
                )
            } else {
                message
            },
        ))
    }

    fn understood<T: serde::de::DeserializeOwned>(
        &self,
        value: serde_json::Value,
    ) -> Result<T, Failure> {
        serde_json::from_value(value).map_err(|e| {
            Failure::new(
                FailureKind::Internal,
                format!("{}'s answer is not understood: {e}", self.config.server),
            )
        })
    }

    /// A secret path on the server as a full address (this host's address
    /// of the server in front).
    fn link(&self, value: serde_json::Value) -> Result<SecretLink, Failure> {
        #[derive(Deserialize)]
        struct Path {
            path: String,
            #[serde(default)]
            expires_at: Option<i64>,
        }
        let path: Path = self.understood(value)?;
        Ok(SecretLink {
            url: format!("{}{}", self.config.server, path.path),
            expires_at: path.expires_at,
        })
    }

    /// Makes an API token for `user`.
    ///
    /// # Errors
    /// The server refuses or cannot be reached.
    pub fn token_create(&self, user: &str, args: &TokenArgs) -> Result<MintedToken, Failure> {
        let body = serde_json::json!({
            "user": user, "expires_in": args.expires_in, "label": args.label,
        });
        let value = self.identity("POST", "/agent/v1/tokens", Some(body))?;
        self.understood(value)
    }

    /// `user`'s live tokens.
    ///
    /// # Errors
    /// The server refuses or cannot be reached.
    pub fn token_list(&self, user: &str) -> Result<Vec<TokenInfo>, Failure> {
        let value = self.identity("GET", &format!("/agent/v1/tokens?user={user}"), None)?;
        self.understood(value["tokens"].clone())
    }

    /// Revokes `user`'s token `id` (a prefix of its id).
    ///
    /// # Errors
    /// The server refuses (no such token of this user) or cannot be reached.
    pub fn token_revoke(&self, user: &str, id: &str) -> Result<TokenInfo, Failure> {
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.is_empty() {
            return Err(Failure::new(
                FailureKind::Invalid,
                format!("{id:?} is not a token id (hex digits, as hosthog token list shows)"),
            ));
        }
        let value = self.identity(
            "DELETE",
            &format!("/agent/v1/tokens/{id}?user={user}"),
            None,
        )?;
        self.understood(value)
    }

    /// A one-time web sign-in link for `user`.
    ///
    /// # Errors
    /// The server refuses or cannot be reached.
    pub fn web_link(&self, user: &str) -> Result<SecretLink, Failure> {
        let value = self.identity(
            "POST",
            "/agent/v1/web-link",
            Some(serde_json::json!({ "user": user })),
        )?;
        self.link(value)
    }

    /// A new iCal feed address for `user`.
    ///
    /// # Errors
    /// The server refuses or cannot be reached.
    pub fn feed(&self, user: &str) -> Result<SecretLink, Failure> {
        let value = self.identity(
            "POST",
            "/agent/v1/feed",
            Some(serde_json::json!({ "user": user })),
        )?;
        self.link(value)
    }
}

#[allow(clippy::disallowed_methods)] // the agent's loop reads the clock once per answer
fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// `text` for a URL's query: unreserved characters as they are, every
/// other byte as %XX.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// How long ago this host last heard from the calendar, for messages:
/// "this host last synced the calendar 7 min ago".
pub fn synced_ago(age: Option<i64>) -> String {
    match age {
        Some(age) => format!(
            "this host last synced the calendar {} min ago",
            age.max(0) / 60
        ),
        None => "this host has never synced the calendar".to_string(),
    }
}

/// The notice every login sees once this host's copy of the calendar is
/// older than `stale_after` (`age`: seconds since the server last
/// confirmed it; `None`: never), or `None` while it is fresh. The session
/// summary, the MOTD and `hosthog check` all show it.
///
/// # Example
/// ```
/// use hosthogd::fleet::stale_text;
/// assert_eq!(stale_text(Some(299), 300, "https://cal:8443"), None);
/// assert_eq!(
///     stale_text(Some(7 * 60 + 5), 300, "https://cal:8443").unwrap(),
///     "calendar last synced 7 min ago: https://cal:8443 cannot be reached; \
///      reservations made since then may be missing here"
/// );
/// ```
pub fn stale_text(age: Option<i64>, stale_after: i64, server: &str) -> Option<String> {
    match age {
        Some(age) if age <= stale_after => None,
        Some(age) => Some(format!(
            "calendar last synced {} min ago: {server} cannot be reached; \
             reservations made since then may be missing here",
            age / 60
        )),
        None => Some(format!(
            "calendar never synced: {server} cannot be reached; this host enforces \
             only what it held before it joined the fleet"
        )),
    }
}

/// Puts up, updates or takes down the stale-calendar notice.
fn stale_notice(service: &Service, agent: &Agent) {
    let at = now();
    let text = stale_text(
        agent.last_synced().map(|s| at - s),
        agent.config.stale_after,
        &agent.config.server,
    );
    if let Err(e) = service.set_fleet_notice(text, at) {
        eprintln!("hosthogd: fleet: cannot update the notice: {}", e.message);
    }
}

/// Reads `fleet.json` from `state_dir`, if there is one.
pub fn read_status(state_dir: &Path) -> Option<Status> {
    let text = std::fs::read(state_dir.join(STATUS_NAME)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn write_status(state_dir: &Path, status: &Status) -> std::io::Result<()> {
    let path = state_dir.join(STATUS_NAME);
    let temp: PathBuf = state_dir.join(format!(".{STATUS_NAME}.new"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&serde_json::to_vec(status).unwrap_or_default())?;
    file.sync_all()?;
    std::fs::rename(&temp, &path)
}

/// A fraction in [0.5, 1.0) that differs from host to host and from try
/// to try, so a fleet that lost its server does not reconnect in step.
fn jitter(attempt: u32) -> f64 {
    let mix = u64::from(std::process::id())
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(attempt).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    0.5 + (mix >> 11) as f64 / (1u64 << 53) as f64 / 2.0
}

/// Starts the agent thread: follows the calendar into the table forever.
///
/// # Errors
/// The thread cannot be started.
pub fn spawn(service: Arc<Service>, agent: Agent, state_dir: PathBuf) -> std::io::Result<()> {
    if let Some(status) = read_status(&state_dir)
        .filter(|s| s.server == agent.config.server && s.host == agent.config.host)
    {
        agent.confirmed(status.confirmed_at);
    }
    // The notice is watched apart from the long-poll: a cut link can hold
    // a poll for its whole wait without a word.
    let (watcher, watched) = (Arc::clone(&service), agent.clone());
    let every = Duration::from_secs(u64::try_from(agent.config.stale_after / 3).unwrap_or(1))
        .clamp(Duration::from_secs(1), Duration::from_secs(10));
    std::thread::Builder::new()
        .name("hosthogd-fleet-stale".into())
        .spawn(move || {
            loop {
                stale_notice(&watcher, &watched);
                std::thread::sleep(every);
            }
        })?;
    std::thread::Builder::new()
        .name("hosthogd-fleet".into())
        .spawn(move || follow(&service, &agent, &state_dir))
        .map(|_| ())
}

/// How often the presence snapshot is looked at, and the longest the
/// server goes without a report (it is sent at once when it changed).
const PRESENCE_EVERY: Duration = Duration::from_secs(10);
const PRESENCE_AT_LEAST: Duration = Duration::from_secs(60);

/// Starts the thread that reports the presence snapshot at `path` (written
/// by hosthogd's presence scanner) to the server: on change, and at least
/// every minute.
///
/// # Errors
/// The thread cannot be started.
pub fn spawn_presence(agent: Agent, path: PathBuf) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("hosthogd-fleet-presence".into())
        .spawn(move || {
            let mut last: Option<(Vec<u8>, std::time::Instant)> = None;
            loop {
                if let Ok(bytes) = std::fs::read(&path) {
                    // The snapshot's sessions, without the time it was taken:
                    // what changed is who is here, not when we looked.
                    let due = match &last {
                        Some((sent, at)) => {
                            sessions_of(sent) != sessions_of(&bytes)
                                || at.elapsed() >= PRESENCE_AT_LEAST
                        }
                        None => true,
                    };
                    if due {
                        match agent.report_presence(&bytes) {
                            Ok(()) => last = Some((bytes, std::time::Instant::now())),
                            Err(e) => eprintln!("hosthogd: fleet: {e}"),
                        }
                    }
                }
                std::thread::sleep(PRESENCE_EVERY);
            }
        })
        .map(|_| ())
}

fn sessions_of(snapshot: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(snapshot)
        .ok()
        .map(|v| v["sessions"].clone())
}

fn follow(service: &Service, agent: &Agent, state_dir: &Path) {
    let mut since = read_status(state_dir)
        .filter(|s| s.server == agent.config.server && s.host == agent.config.host)
        .map(|s| s.version);
    // Joining: what the host held alone is offered to the calendar before
    // the first window replaces it (crate::join).
    // A host that followed any calendar before holds that calendar's
    // window, not reservations of its own: nothing to upload.
    let mut joining = crate::join::start(
        crate::join::read_join(state_dir),
        read_status(state_dir).is_some(),
        &agent.config.server,
        &agent.config.host,
        service.reservations().unwrap_or_default(),
        now(),
    );
    // The first answer always comes at once: the table may be behind.
    let mut first = true;
    let mut backoff = BACKOFF_FIRST;
    let mut attempt: u32 = 0;
    loop {
        if let Some(join) = &mut joining {
            match crate::join::upload(
                state_dir,
                join,
                now(),
                |user, args| match agent.request(user, &Op::Reserve(args.clone()), None)? {
                    Reply::Reservation(r) => Ok(r.id),
                    other => Err(Failure::new(
                        FailureKind::Internal,
                        format!("the server answered a booking with {other:?}"),
                    )),
                },
                |user| agent.list(user, false),
            ) {
                Ok(()) => joining = None,
                Err(e) => {
                    eprintln!(
                        "hosthogd: fleet: cannot upload this host's reservations yet \
                         (the table is kept as it is): {e}"
                    );
                    stale_notice(service, agent);
                    attempt = attempt.wrapping_add(1);
                    std::thread::sleep(backoff.mul_f64(jitter(attempt)));
                    backoff = (backoff * 2).min(BACKOFF_LAST);
                    continue;
                }
            }
        }
        let wait = if first { 0 } else { agent.wait() };
        match agent.window(if first { None } else { since }, wait) {
            Ok(window) => {
                first = false;
                backoff = BACKOFF_FIRST;
                let at = now();
                match service.follow(window.reservations, at) {
                    Ok(changed) => {
                        if changed {
                            eprintln!(
                                "hosthogd: fleet: the table follows calendar version {}",
                                window.version
                            );
                        }
                        since = Some(window.version);
                        let status = Status {
                            server: agent.config.server.clone(),
                            host: agent.config.host.clone(),
                            version: window.version,
                            confirmed_at: at,
                        };
                        if let Err(e) = write_status(state_dir, &status) {
                            eprintln!("hosthogd: fleet: cannot record the sync: {e}");
                        }
                        agent.confirmed(at);
                        stale_notice(service, agent);
                    }
                    Err(e) => {
                        eprintln!("hosthogd: fleet: cannot write the table: {}", e.message);
                        std::thread::sleep(backoff);
                    }
                }
            }
            Err(e) => {
                eprintln!("hosthogd: fleet: {e}");
                first = true;
                stale_notice(service, agent);
                attempt = attempt.wrapping_add(1);
                std::thread::sleep(backoff.mul_f64(jitter(attempt)));
                backoff = (backoff * 2).min(BACKOFF_LAST);
            }
        }
    }
}
