//! The protocol between `hosthog` and `hosthogd`: request and response
//! types and their framing. docs/protocol.md is the specification.
//!
//! One frame is one JSON object on one line (JSON escapes newlines inside
//! strings, so a raw `\n` always ends a frame), at most [`MAX_FRAME`] bytes
//! including the newline. Every request and response carries `version`.
//! The daemon answers each request with one response; a frame that is not a
//! valid request gets an error response and the connection is closed.
//!
//! Nothing in a request says who the caller is: the daemon asks the kernel
//! (`SO_PEERCRED`). Unknown fields are refused, so a client cannot smuggle
//! in a `uid` or `user` in the hope that some version reads it.

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use libhosthog::Presence;
use libhosthog::{Mode, Notice, Reservation};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest frame accepted, in bytes, including the final newline.
pub const MAX_FRAME: usize = 64 * 1024;

/// Where hosthogd listens, and the `hosthog` command connects, unless told
/// otherwise.
pub const DEFAULT_SOCKET: &str = "/run/hosthog/hosthogd.sock";

/// Longest `hosthog post` message, in bytes.
pub const MAX_POST: usize = 500;

/// One request: a version and an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub version: u32,
    pub op: Op,
    /// The caller's time zone (their `TZ`, see
    /// [`parse_time_zone`](crate::parse_time_zone)), for the times in the
    /// daemon's messages; absent: the host's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
}

impl Request {
    /// A request of the current version.
    pub fn new(op: Op) -> Request {
        Request {
            version: PROTOCOL_VERSION,
            op,
            tz: None,
        }
    }

    /// The same request, with the caller's time zone.
    pub fn in_zone(mut self, tz: Option<String>) -> Request {
        self.tz = tz;
        self
    }

    /// True if the operation changes the table or the exemption list.
    pub fn is_write(&self) -> bool {
        self.op.is_write()
    }
}

/// What the client asks for. Serialized as `{"reserve": {...}}`, or a bare
/// string for operations without arguments (`"whoami"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Who the daemon thinks the caller is.
    Whoami,
    Reserve(ReserveArgs),
    /// Extend, shorten, move, re-comment or change the mode of a reservation.
    Change(ChangeArgs),
    Share(ShareArgs),
    Unshare(ShareArgs),
    /// End one's own reservation now (or drop it if it has not started).
    Release(IdArgs),
    /// Remove any reservation (admins).
    Cancel(IdArgs),
    List(ListArgs),
    Show(IdArgs),
    /// What the PAM module would decide for a user, and why.
    Check(CheckArgs),
    NoticeAdd(NoticeArgs),
    NoticeList,
    NoticeRemove(NoticeIdArgs),
    ExemptAdd(ExemptArgs),
    ExemptList,
    ExemptRemove(ExemptArgs),
    /// Who is on the host and how (a fresh presence scan).
    Who,
    /// The MOTD fragment as of now.
    Motd,
    /// Write a message to everyone on the host (reservation holders and
    /// admins).
    Post(PostArgs),
    /// Past reservations and hours reserved, from the audit log.
    History(HistoryArgs),
    /// Every host of the fleet: who holds it, who is on it (fleet hosts).
    Hosts,
    /// Make an API token for the caller (fleet hosts; shown once).
    TokenCreate(TokenArgs),
    /// The caller's live tokens (fleet hosts).
    TokenList,
    /// Revoke one of the caller's tokens (fleet hosts).
    TokenRevoke(TokenIdArgs),
    /// A one-time sign-in link to the web calendar (fleet hosts).
    WebLink,
    /// A secret iCal feed address of the caller's reservations (fleet hosts).
    Feed,
    /// The caller's reservations on the whole fleet calendar, with their
    /// hosts (fleet hosts: `hosthog list --fleet`).
    FleetList(FleetListArgs),
    /// Book the earliest free slot of a length on one of a set of hosts
    /// (fleet hosts: `hosthog reserve --next-free`).
    NextFree(NextFreeArgs),
}

/// Arguments of [`Op::FleetList`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetListArgs {
    /// Also those ended or cancelled in the last 30 days.
    #[serde(default)]
    pub all: bool,
}

impl Op {
    /// True if the operation changes state.
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Op::Whoami
                | Op::List(_)
                | Op::Show(_)
                | Op::Check(_)
                | Op::NoticeList
                | Op::ExemptList
                | Op::Who
                | Op::Motd
                | Op::Post(_)
                | Op::History(_)
                | Op::Hosts
                // Identity on the fleet server: nothing of the local table.
                | Op::TokenCreate(_)
                | Op::TokenList
                | Op::TokenRevoke(_)
                | Op::WebLink
                | Op::Feed
                | Op::FleetList(_)
        )
    }

    /// A short name for the audit log and messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Whoami => "whoami",
            Op::Hosts => "hosts",
            Op::FleetList(_) => "fleet_list",
            Op::NextFree(_) => "next_free",
            Op::Reserve(_) => "reserve",
            Op::Change(_) => "change",
            Op::Share(_) => "share",
            Op::Unshare(_) => "unshare",
            Op::Release(_) => "release",
            Op::Cancel(_) => "cancel",
            Op::List(_) => "list",
            Op::Show(_) => "show",
            Op::Check(_) => "check",
            Op::NoticeAdd(_) => "notice_add",
            Op::NoticeList => "notice_list",
            Op::NoticeRemove(_) => "notice_remove",
            Op::ExemptAdd(_) => "exempt_add",
            Op::ExemptList => "exempt_list",
            Op::ExemptRemove(_) => "exempt_remove",
            Op::Who => "who",
            Op::Motd => "motd",
            Op::Post(_) => "post",
            Op::History(_) => "history",
            Op::TokenCreate(_) => "token_create",
            Op::TokenList => "token_list",
            Op::TokenRevoke(_) => "token_revoke",
            Op::WebLink => "web_link",
            Op::Feed => "feed",
        }
    }
}

/// A new reservation. Times are UTC seconds, already read from human input
/// by the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveArgs {
    pub mode: Mode,
    pub start: i64,
    pub end: i64,
    #[serde(default)]
    pub with: Vec<String>,
    #[serde(default)]
    pub comment: String,
    /// Reserve for this user instead of the caller (admins only).
    #[serde(default)]
    pub owner: Option<String>,
    /// Override conflicts and limits (admins only; audited).
    #[serde(default)]
    pub force: bool,
    /// Book these hosts of the fleet, all or nothing (fleet hosts only;
    /// empty: this host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// Changes to an existing reservation; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeArgs {
    /// Full id or a unique prefix of its hex digits.
    pub id: String,
    #[serde(default)]
    pub start: Option<i64>,
    #[serde(default)]
    pub end: Option<i64>,
    /// Move the end by this many seconds (negative shortens); applied
    /// after `end`.
    #[serde(default)]
    pub extend_by: Option<i64>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub force: bool,
}

/// A new API token: how long it lasts (seconds; none: until revoked) and
/// a label to tell it apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenArgs {
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub label: String,
}

/// A token's id (a prefix of at least 4 hex digits, as `token list` shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenIdArgs {
    pub id: String,
}

/// A token as the fleet server lists it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The first 12 hex digits of the token's SHA-256.
    pub id: String,
    /// `api` (a bearer token for /api/v1) or `feed` (iCal feeds only).
    pub scope: String,
    #[serde(default)]
    pub label: String,
    pub created_at: i64,
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// The host it was made through.
    #[serde(default)]
    pub minted_by: Option<String>,
}

/// A token just made: the secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// A secret address on the fleet server: a one-time sign-in link or a
/// feed; `expires_at` none: until revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretLink {
    pub url: String,
    #[serde(default)]
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareArgs {
    pub id: String,
    pub users: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdArgs {
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Also reservations that have ended but are still in the table.
    #[serde(default)]
    pub all: bool,
    /// Continue after this point: the `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Most bytes of reservations in one `list` reply: the rest of a frame is
/// ample for the envelope.
pub const LIST_PAGE_BYTES: usize = MAX_FRAME - 4096;

/// One page of a list sorted by (start, id): the reservations after the
/// cursor `after` that fit in `budget` bytes of JSON, and the cursor of the
/// next page if there are more (`START:ID` of the last one given).
///
/// # Errors
/// [`FailureKind::Invalid`] for a cursor that is not `START:ID`.
pub fn page(
    list: Vec<Reservation>,
    after: Option<&str>,
    budget: usize,
) -> Result<(Vec<Reservation>, Option<String>), Failure> {
    let after = match after {
        None => None,
        Some(cursor) => {
            let parsed = cursor.split_once(':').and_then(|(start, id)| {
                Some((
                    start.parse::<i64>().ok()?,
                    u64::from_str_radix(id, 16).ok()?,
                ))
            });
            Some(parsed.ok_or_else(|| {
                Failure::new(
                    FailureKind::Invalid,
                    format!("{cursor:?} is not a list cursor"),
                )
            })?)
        }
    };
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut rest = list
        .into_iter()
        .filter(|r| after.is_none_or(|a| (r.start, r.id.0) > a))
        .peekable();
    while let Some(r) = rest.peek() {
        let size = serde_json::to_vec(r).map_or(usize::MAX, |v| v.len() + 1);
        if bytes + size > budget && !out.is_empty() {
            break;
        }
        bytes += size;
        out.extend(rest.next());
    }
    let next = match (rest.peek(), out.last()) {
        (Some(_), Some(last)) => Some(format!("{}:{:016x}", last.start, last.id.0)),
        _ => None,
    };
    Ok((out, next))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckArgs {
    pub user: String,
    #[serde(default = "default_service")]
    pub service: String,
    /// When to decide for (UTC seconds); now if absent.
    #[serde(default)]
    pub at: Option<i64>,
}

fn default_service() -> String {
    "sshd".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeArgs {
    pub text: String,
    #[serde(default)]
    pub start: Option<i64>,
    /// Absent: until removed.
    #[serde(default)]
    pub end: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeIdArgs {
    pub id: u64,
}

/// Which history: from when, and whose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryArgs {
    /// From this instant (UTC seconds); default 30 days before now.
    #[serde(default)]
    pub since: Option<i64>,
    /// Everyone's (admins); otherwise the caller's own: reservations they
    /// owned or were a co-user of, and their own hours.
    #[serde(default)]
    pub all: bool,
}

/// A message for everyone on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostArgs {
    /// At most [`MAX_POST`] bytes; sanitized before anyone sees it.
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExemptArgs {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One response: the version and either `ok` or `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Reply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// For a `list` that did not fit in one frame: ask again with this as
    /// `after` for the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl Response {
    pub fn ok(reply: Reply) -> Response {
        Response {
            version: PROTOCOL_VERSION,
            ok: Some(reply),
            error: None,
            next: None,
        }
    }

    pub fn error(failure: Failure) -> Response {
        Response {
            version: PROTOCOL_VERSION,
            ok: None,
            error: Some(failure),
            next: None,
        }
    }

    /// The reply, or the failure (a response with neither is a protocol
    /// error).
    ///
    /// # Errors
    /// The failure the daemon sent.
    pub fn into_result(self) -> Result<Reply, Failure> {
        match (self.ok, self.error) {
            (_, Some(failure)) => Err(failure),
            (Some(reply), None) => Ok(reply),
            (None, None) => Err(Failure::new(
                FailureKind::Protocol,
                "the daemon sent a response with neither a result nor an error",
            )),
        }
    }
}

impl From<Result<Reply, Failure>> for Response {
    fn from(result: Result<Reply, Failure>) -> Response {
        match result {
            Ok(reply) => Response::ok(reply),
            Err(failure) => Response::error(failure),
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Whoami(Identity),
    Reservation(Reservation),
    /// A reservation an admin made or changed with `force` over conflicts
    /// or limits, and what was overridden.
    Forced(Forced),
    Reservations(Vec<Reservation>),
    /// The reservation is gone (released before its start, or cancelled).
    Removed(Reservation),
    Check(CheckReport),
    Notice(Notice),
    Notices(Vec<Notice>),
    Exempt(ExemptList),
    Presence(Presence),
    Motd(Motd),
    Posted(PostReport),
    History(History),
    Hosts(Vec<HostStatus>),
    /// A token just made (`token create`).
    Token(MintedToken),
    /// The caller's tokens (`token list`), or the one revoked.
    Tokens(Vec<TokenInfo>),
    /// A sign-in link (`web`) or a feed address (`feed`).
    Link(SecretLink),
    /// [`Op::FleetList`]: reservations of the fleet calendar, by start.
    FleetReservations(Vec<FleetReservation>),
    /// [`Op::NextFree`]: what was booked, and on which host.
    Booked(FleetReservation),
}

/// Book the earliest free slot of a length on one of a set of hosts (the
/// fleet's `hosthog reserve --next-free`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextFreeArgs {
    /// Host names or patterns (`gpu*`, `node-?`).
    pub hosts: Vec<String>,
    /// Seconds.
    pub duration: i64,
    pub mode: Mode,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub with: Vec<String>,
    /// Not before this instant (UTC seconds); absent: now.
    #[serde(default)]
    pub not_before: Option<i64>,
}

/// A reservation of the fleet calendar, with the hosts it claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReservation {
    #[serde(flatten)]
    pub reservation: Reservation,
    /// Its hosts, by name.
    pub hosts: Vec<String>,
    /// Bumped by every change (iCal's SEQUENCE).
    pub sequence: i64,
    /// When it was cancelled (or released before its start), if it was.
    #[serde(default)]
    pub cancelled_at: Option<i64>,
}

/// A host of the fleet, as `hosthog hosts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub name: String,
    /// The calendar's version of the host.
    pub version: i64,
    /// The reservations in force on it now.
    pub holders: Vec<HostHolder>,
    /// Who is on it, by its last presence report.
    pub present: Vec<String>,
    /// When it last reported (UTC seconds), if ever.
    pub seen: Option<i64>,
    /// When it last asked for its window from the calendar's current
    /// version (UTC seconds), if ever: its last sync of the calendar.
    #[serde(default)]
    pub synced: Option<i64>,
}

/// A reservation in force on a host of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHolder {
    pub owner: String,
    pub mode: Mode,
    pub end: i64,
}

/// Reservations in force at some time in `since..until`, from the audit
/// log, and the hours each owner reserved in that period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub since: i64,
    pub until: i64,
    /// Only the caller's (`user`), or everyone's (`None`).
    pub user: Option<String>,
    /// Most recent first, at most [`MAX_HISTORY`].
    pub reservations: Vec<PastReservation>,
    /// How many more there were (older ones left out to keep the reply
    /// small); the totals count them.
    pub more: usize,
    /// Per owner, by name.
    pub totals: Vec<UsageTotal>,
}

/// Most reservations one `history` reply lists.
pub const MAX_HISTORY: usize = 100;

/// One reservation as it last was, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastReservation {
    pub reservation: Reservation,
    /// `ended` (at its end), `released`, `cancelled`, or `in_force` (not
    /// ended yet).
    pub ending: String,
    /// When it ended or was removed (UTC seconds); its end if in force.
    pub ended_at: i64,
    /// Who released or cancelled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
}

/// Time reserved by one owner in the period (exclusive and shared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotal {
    pub user: String,
    pub reservations: usize,
    /// Seconds reserved inside the period, up to now.
    pub seconds: i64,
    pub exclusive_seconds: i64,
}

/// The MOTD fragment and what it is made of, plus the notices the session
/// summary shows at login (the fragment leaves them to it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Motd {
    /// The fragment's text, as in /run/motd.d/hosthog.
    pub text: String,
    /// The reservations it lists (not ended; by start).
    pub reservations: Vec<Reservation>,
    /// The admin notices in force, shown by the login summary.
    pub notices: Vec<Notice>,
}

/// A reservation made or changed with `force`, and what that overrode.
/// In JSON the reservation's fields come first, then `overridden` and
/// `limits_overridden`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forced {
    #[serde(flatten)]
    pub reservation: Reservation,
    /// The reservations it overlaps.
    pub overridden: Vec<Reservation>,
    /// The limits it breaks, as sentences.
    pub limits_overridden: Vec<String>,
}

/// Whom a `post` reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostReport {
    /// Users who got it on at least one terminal, tmux client or desktop.
    pub users: Vec<String>,
    /// Terminals, tmux clients and desktops written to.
    pub deliveries: usize,
    /// Terminals skipped because their user ran `mesg n`.
    pub refused: usize,
}

/// The caller as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub user: String,
    pub admin: bool,
}

/// The exemption list: what admins configured and what the table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExemptList {
    /// Users exempted with `hosthog exempt add`.
    pub users: Vec<String>,
    /// Groups exempted with `hosthog exempt add --group`.
    pub groups: Vec<String>,
    /// Users and groups from the configuration file.
    pub config_users: Vec<String>,
    pub config_groups: Vec<String>,
    /// Everything above expanded to user names: what the table holds.
    pub effective: Vec<String>,
}

/// What the PAM module would decide, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub user: String,
    pub service: String,
    pub at: i64,
    pub allowed: bool,
    pub reason: CheckReason,
    /// The reservation behind the reason, if one is.
    pub reservation: Option<Reservation>,
    /// The explanation in the host's time zone; for a refusal, the text the
    /// module shows at login.
    pub explanation: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckReason {
    Root,
    Exempt,
    NoReservation,
    Holder,
    CoUser,
    Shared,
    Denied,
}

/// A refusal or error, with a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// For [`FailureKind::Conflict`]: the reservations in the way; for
    /// [`FailureKind::Ambiguous`]: the reservations the prefix names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Reservation>,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            conflicts: Vec::new(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<libhosthog::Error> for Failure {
    fn from(e: libhosthog::Error) -> Failure {
        let kind = match e.kind() {
            libhosthog::ErrorKind::Invalid => FailureKind::Invalid,
            _ => FailureKind::Internal,
        };
        Failure::new(kind, e.to_string())
    }
}

/// What kind of failure; clients may match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The caller may not do this.
    Denied,
    /// A value breaks a rule (times, names, text).
    Invalid,
    /// A configured limit (duration, how far ahead, open reservations).
    Limit,
    /// The reservation overlaps another one and one of them is exclusive.
    Conflict,
    /// No reservation or notice with that id.
    NotFound,
    /// The id prefix names more than one reservation.
    Ambiguous,
    /// The frame was not a valid request of a known version.
    Protocol,
    /// The daemon failed (I/O, a corrupt table).
    Internal,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// Longer than [`MAX_FRAME`].
    TooLong,
    /// The peer closed the connection in the middle of a frame.
    Truncated,
    Io(io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLong => write!(f, "frame longer than {MAX_FRAME} bytes"),
            FrameError::Truncated => f.write_str("connection closed in the middle of a frame"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads one frame (without its newline). `Ok(None)` at a clean end of
/// stream. Never buffers more than [`MAX_FRAME`] bytes.
///
/// # Errors
/// [`FrameError`] for an overlong or truncated frame or an I/O error
/// (including a read timeout).
pub fn read_frame(reader: &mut impl BufRead) -> Result<Option<Vec<u8>>, FrameError> {
    let mut frame = Vec::new();
    let mut limited = std::io::Read::take(reader, MAX_FRAME as u64);
    let n = limited
        .read_until(b'\n', &mut frame)
        .map_err(FrameError::Io)?;
    if n == 0 {
        return Ok(None);
    }
    if frame.last() != Some(&b'\n') {
        return Err(if n >= MAX_FRAME {
            FrameError::TooLong
        } else {
            FrameError::Truncated
        });
    }
    frame.pop();
    Ok(Some(frame))
}

/// Writes `value` as one frame.
///
/// # Errors
/// An I/O error, or `InvalidData` if the encoded value is longer than
/// [`MAX_FRAME`].
pub fn write_frame(writer: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    if bytes.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message longer than {MAX_FRAME} bytes"),
        ));
    }
    writer.write_all(&bytes)?;
    writer.flush()
}

/// Decodes a request frame, checking its version.
///
/// # Errors
/// A [`FailureKind::Protocol`] failure saying what is wrong.
pub fn parse_request(frame: &[u8]) -> Result<Request, Failure> {
    let text = std::str::from_utf8(frame)
        .map_err(|_| Failure::new(FailureKind::Protocol, "the request is not UTF-8"))?;
    // Check the version first, so a future client gets "unsupported
    // version" rather than an error about a field it added.
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Failure::new(
            FailureKind::Protocol,
            format!("the request is not valid JSON: {e}"),
        )
    })?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(Failure::new(
                FailureKind::Protocol,
                format!(
                    "protocol version {v} is not supported; this hosthogd speaks version {PROTOCOL_VERSION}"
                ),
            ));
        }
        None => {
            return Err(Failure::new(
                FailureKind::Protocol,
                "the request has no numeric \"version\" field",
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| {
        Failure::new(
            FailureKind::Protocol,
            format!("the request is not a valid hosthog request: {e}"),
        )
    })
}

#[cfg(test)]
mod page_tests {
    use super::*;
    use libhosthog::{Mode, ReservationId};

    #[test]
    fn pages_fit_a_frame_and_cover_the_list_once() {
        let list: Vec<Reservation> = (0..130u64)
            .map(|i| Reservation {
                id: ReservationId(i * 7919),
                owner: "alice".into(),
                with: vec![],
                start: 1000 + (i as i64 % 10),
                end: 5000,
                mode: Mode::Shared,
                comment: "\"".repeat(500),
                created: 0,
                updated: 0,
            })
            .collect();
        let mut sorted = list.clone();
        sorted.sort_by_key(|r| (r.start, r.id));
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let (got, next) = page(sorted.clone(), after.as_deref(), LIST_PAGE_BYTES).unwrap();
            let frame = serde_json::to_vec(&Response {
                next: next.clone(),
                ..Response::ok(Reply::Reservations(got.clone()))
            })
            .unwrap();
            assert!(frame.len() < MAX_FRAME, "{} bytes", frame.len());
            seen.extend(got);
            pages += 1;
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert!(pages > 1);
        assert_eq!(seen, sorted);
        assert!(page(sorted, Some("x"), 10).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_refuse_unknown_fields() {
        let req = Request::new(Op::Reserve(ReserveArgs {
            mode: Mode::Exclusive,
            start: 10,
            end: 20,
            with: vec!["bob".into()],
            comment: "x".into(),
            owner: None,
            force: false,
            hosts: vec![],
        }));
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(parse_request(text.as_bytes()).unwrap(), req);
        let whoami = serde_json::to_string(&Request::new(Op::Whoami)).unwrap();
        assert_eq!(whoami, r#"{"version":1,"op":"whoami"}"#);

        for bad in [
            r#"{"version":1,"op":"whoami","uid":0}"#,
            r#"{"version":1,"op":{"release":{"id":"ab","user":"alice"}}}"#,
            r#"{"version":1,"op":{"reserve":{"mode":"exclusive","start":1,"end":2,"uid":0}}}"#,
            r#"{"version":2,"op":"whoami"}"#,
            r#"{"op":"whoami"}"#,
            r#"{"version":1,"op":"fly"}"#,
            "not json",
            "\u{0}\u{1}",
        ] {
            let err = parse_request(bad.as_bytes()).unwrap_err();
            assert_eq!(err.kind, FailureKind::Protocol, "{bad}");
        }
    }

    #[test]
    fn the_fleet_ops_are_spelled_as_documented() {
        let list = r#"{"version":1,"op":{"fleet_list":{"all":true}}}"#;
        assert_eq!(
            parse_request(list.as_bytes()).unwrap(),
            Request::new(Op::FleetList(FleetListArgs { all: true }))
        );
        let next = r#"{"version":1,"op":{"next_free":{"hosts":["gpu*"],"duration":14400,"mode":"exclusive"}}}"#;
        let Op::NextFree(args) = parse_request(next.as_bytes()).unwrap().op else {
            panic!("next_free");
        };
        assert_eq!(
            (args.hosts, args.duration, args.not_before, args.comment),
            (vec!["gpu*".to_string()], 14_400, None, String::new())
        );
        assert!(
            Op::NextFree(NextFreeArgs {
                hosts: vec![],
                duration: 1,
                mode: Mode::Shared,
                comment: String::new(),
                with: vec![],
                not_before: None,
            })
            .is_write()
        );
        assert!(!Op::FleetList(FleetListArgs::default()).is_write());
        let bad = r#"{"version":1,"op":{"fleet_list":{"all":true,"user":"bob"}}}"#;
        assert_eq!(
            parse_request(bad.as_bytes()).unwrap_err().kind,
            FailureKind::Protocol
        );
    }

    #[test]
    fn frames() {
        let mut input: &[u8] = b"{\"a\":1}\n{\"b\":2}\npartial";
        assert_eq!(read_frame(&mut input).unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(read_frame(&mut input).unwrap().unwrap(), b"{\"b\":2}");
        assert!(matches!(read_frame(&mut input), Err(FrameError::Truncated)));
        let long = vec![b'x'; MAX_FRAME + 10];
        assert!(matches!(
            read_frame(&mut long.as_slice()),
            Err(FrameError::TooLong)
        ));
        let mut empty: &[u8] = b"";
        assert!(read_frame(&mut empty).unwrap().is_none());
    }
}
