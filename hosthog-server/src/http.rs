//! HTTPS: the agent API (`/agent/v1`, hosts by client certificate) and the
//! people's API (`/api/v1`, bearer tokens), one JSON error shape for both.
//! docs/fleet-api.md is the reference, with curl examples.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use hosthog_booking::protocol::{
    ChangeArgs, FailureKind, FleetReservation, IdArgs, NextFreeArgs, Op, Reply, ReserveArgs,
    ShareArgs,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jiff::tz::TimeZone;
use libhosthog::{Mode, Reservation};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::calendar::{BookError, Calendar, Filter, HostStatus, InTheWay, Outcome};
use crate::notify::Changes;
use crate::syncs::Syncs;
use crate::tls::fingerprint;

/// The longest an agent's long-poll waits for a change, in seconds.
pub const MAX_WAIT: u64 = 60;
/// How often a waiting long-poll looks at the host's version without
/// being woken (the backstop while the LISTEN connection is down).
const POLL: Duration = Duration::from_secs(1);

/// What every handler shares.
struct App {
    calendar: Calendar,
    /// Changes with every change committed to any host (crate::notify).
    changes: Changes,
    /// When each host last synced (crate::syncs).
    syncs: Syncs,
}

/// The SHA-256 of the client certificate the connection presented, if any.
#[derive(Debug, Clone)]
pub(crate) struct Peer(pub(crate) Option<String>);

/// An error answer: `{"error": KIND, "message": TEXT, ...}`.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    in_the_way: Vec<Blocker>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unknown_hosts: Vec<String>,
    /// The reservations in the way (or that an ambiguous id names), as
    /// records.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    conflicts: Vec<Reservation>,
}

/// A reservation in the way of a booking, as the API shows it.
#[derive(Debug, Serialize)]
struct Blocker {
    host: String,
    id: String,
    owner: String,
    mode: Mode,
    start: i64,
    end: i64,
}

impl From<&InTheWay> for Blocker {
    fn from(r: &InTheWay) -> Blocker {
        Blocker {
            host: r.host.clone(),
            id: r.reservation.to_string(),
            owner: r.owner.clone(),
            mode: r.mode,
            start: r.start,
            end: r.end,
        }
    }
}

struct ApiError(StatusCode, ErrorBody);

impl ApiError {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> ApiError {
        ApiError(
            status,
            ErrorBody {
                error,
                message: message.into(),
                in_the_way: Vec::new(),
                unknown_hosts: Vec::new(),
                conflicts: Vec::new(),
            },
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<BookError> for ApiError {
    fn from(e: BookError) -> ApiError {
        let message = e.to_string();
        match e {
            BookError::Invalid(why) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", why),
            BookError::UnknownHosts(hosts) => {
                let mut error = ApiError::new(StatusCode::NOT_FOUND, "unknown_hosts", message);
                error.1.unknown_hosts = hosts;
                error
            }
            BookError::NotFound(why) => ApiError::new(StatusCode::NOT_FOUND, "not_found", why),
            BookError::Refused(failure, in_the_way) => {
                let (status, error) = match failure.kind {
                    FailureKind::Denied => (StatusCode::FORBIDDEN, "denied"),
                    FailureKind::Invalid => (StatusCode::BAD_REQUEST, "invalid"),
                    FailureKind::Limit => (StatusCode::UNPROCESSABLE_ENTITY, "limit"),
                    FailureKind::Conflict => (StatusCode::CONFLICT, "conflict"),
                    FailureKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                    FailureKind::Ambiguous => (StatusCode::BAD_REQUEST, "ambiguous"),
                    FailureKind::Protocol => (StatusCode::BAD_REQUEST, "invalid"),
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                };
                let mut error = ApiError::new(status, error, failure.message);
                error.1.in_the_way = in_the_way.iter().map(Blocker::from).collect();
                error.1.conflicts = failure.conflicts;
                error
            }
            BookError::Database(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "the calendar's database (PostgreSQL) cannot be used now: {e}; \
                     try again in a moment"
                ),
            ),
        }
    }
}

/// The whole application: routes over one calendar; `changes` wakes the
/// agents' long-polls (crate::notify::listen).
pub fn router(calendar: Calendar, changes: Changes) -> Router {
    let web = crate::web::routes(calendar.clone());
    Router::new()
        .route("/agent/v1/window", get(window))
        .route("/agent/v1/request", post(agent_request))
        .route("/agent/v1/reservations", get(agent_list))
        .route("/agent/v1/next-free", post(agent_next_free))
        .route("/agent/v1/presence", put(report_presence))
        .route("/agent/v1/hosts", get(agent_hosts))
        .route("/api/v1/presence", get(presence))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/reservations", get(list).post(reserve))
        .route("/api/v1/reservations/next-free", post(reserve_next_free))
        .route(
            "/api/v1/reservations/{id}",
            get(show).patch(change).delete(release),
        )
        .route(
            "/api/v1/reservations/{id}/share",
            post(co_users).layer(Extension(Op::Share as CoUsers)),
        )
        .route(
            "/api/v1/reservations/{id}/unshare",
            post(co_users).layer(Extension(Op::Unshare as CoUsers)),
        )
        .with_state(Arc::new(App {
            syncs: Syncs::new(calendar.database().clone()),
            calendar,
            changes,
        }))
        .merge(web)
        // Body size and time limits; every refusal as JSON (crate::limits).
        .layer(axum::middleware::from_fn(crate::limits::guard))
}

/// Marks `request` as coming over a connection that presented the client
/// certificate whose SHA-256 is `certificate` (what [`serve`] does for
/// every request; the fuzz target calls the router the same way).
pub fn from_peer<B>(request: &mut hyper::Request<B>, certificate: Option<String>) {
    request.extensions_mut().insert(Peer(certificate));
}

/// The host a request comes from, by its certificate.
async fn agent(calendar: &Calendar, peer: &Peer) -> Result<String, ApiError> {
    let Some(fp) = &peer.0 else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the agent API needs the host's certificate (the bundle from hosthog-server host add)",
        ));
    };
    calendar.host_by_certificate(fp).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "this certificate is not (or no longer) any host's: the host was revoked or given a new bundle",
        )
    })
}

/// The user a request comes from, by its bearer token.
async fn person(calendar: &Calendar, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send Authorization: Bearer TOKEN (hosthog-server token add USER makes one)",
            )
        })?;
    calendar.token_user(token.trim()).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the token is not valid (revoked, expired, a feed token, or never made): hosthog token create makes one",
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowQuery {
    /// The version the agent holds; the answer waits until the host's
    /// version differs (or `wait` seconds pass).
    #[serde(default)]
    since: Option<i64>,
    /// Seconds to wait for a change (at most [`MAX_WAIT`]); 0 answers at once.
    #[serde(default)]
    wait: u64,
}

/// The host's window: everything on it that has not ended.
#[derive(Debug, Serialize)]
struct WindowBody {
    host: String,
    version: i64,
    reservations: Vec<Reservation>,
}

#[allow(clippy::disallowed_methods)] // a request's entry point: the clock is read here
fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

async fn window(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    Query(query): Query<WindowQuery>,
) -> Result<Json<WindowBody>, ApiError> {
    let host = agent(&app.calendar, &peer).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(query.wait.min(MAX_WAIT));
    let mut changes = app.changes.clone();
    loop {
        // Marked before the read: a change committed after the read's
        // snapshot is heard after the mark, and makes us read again.
        changes.seen();
        let mark = changes.mark(&host);
        let (version, state) = app.calendar.window(&host, now()).await?;
        if query.since == Some(version) {
            // The host asked from the current version: it holds it.
            app.syncs.current(&host, now());
        }
        if query.since != Some(version)
            || deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .is_zero()
        {
            return Ok(Json(WindowBody {
                host,
                version,
                reservations: state.reservations,
            }));
        }
        // Wait for a change of this host; changes of other hosts, and the
        // one-second backstop while notifications are heard, cost nothing.
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                () = changes.changed() => {}
                () = tokio::time::sleep(left.min(POLL)) => {}
            }
            if changes.may_have_changed(&host, mark) {
                break;
            }
        }
    }
}

async fn hosts(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Vec<HostStatus>>, ApiError> {
    person(&app.calendar, &headers).await?;
    Ok(Json(app.calendar.host_status(now()).await?))
}

/// The same, for a host's users (`hosthog hosts` on any host).
async fn agent_hosts(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
) -> Result<Json<Vec<HostStatus>>, ApiError> {
    agent(&app.calendar, &peer).await?;
    Ok(Json(app.calendar.host_status(now()).await?))
}

#[derive(Debug, Serialize)]
struct HostVersion {
    name: String,
    version: i64,
}

fn versions(hosts: Vec<(String, i64)>) -> Vec<HostVersion> {
    hosts
        .into_iter()
        .map(|(name, version)| HostVersion { name, version })
        .collect()
}

/// The reservation a reply carries, if any.
fn reservation_of(reply: &Reply) -> Option<&Reservation> {
    match reply {
        Reply::Reservation(r) | Reply::Removed(r) => Some(r),
        Reply::Forced(f) => Some(&f.reservation),
        _ => None,
    }
}

/// A change that committed, as the people's API answers it.
#[derive(Debug, Serialize)]
struct ChangedBody {
    id: String,
    owner: String,
    /// The record as it is now, or as it was when it went.
    reservation: Reservation,
    /// It went: released (cut short now, or dropped before its start) or
    /// cancelled.
    removed: bool,
    /// The reservation's sequence as the change committed it (0 when
    /// booked, bumped by every change), as lists and feeds give it.
    sequence: i64,
    hosts: Vec<HostVersion>,
}

fn changed(outcome: Outcome) -> Result<ChangedBody, ApiError> {
    let r = reservation_of(&outcome.reply).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the change answered without its reservation",
        )
    })?;
    let removed = matches!(outcome.reply, Reply::Removed(_));
    Ok(ChangedBody {
        id: r.id.to_string(),
        owner: r.owner.clone(),
        removed,
        reservation: r,
        sequence: outcome.sequence,
        hosts: versions(outcome.hosts),
    })
}

/// A request's time zone for messages: `tz` if given and known, else UTC.
fn zone(tz: Option<&str>) -> Result<TimeZone, ApiError> {
    match tz {
        None => Ok(TimeZone::UTC),
        Some(name) => hosthog_booking::parse_time_zone(name)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string())),
    }
}

/// A user's request made on a host and forwarded by its hosthogd: the
/// host vouches for the user (its hosthogd identified them by
/// SO_PEERCRED). A reservation without hosts is of that host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentRequest {
    user: String,
    op: Op,
    #[serde(default)]
    tz: Option<String>,
}

/// A forwarded request's answer: the protocol's reply, the hosts the
/// change touched, and the reservation's sequence as it committed.
#[derive(Debug, Serialize)]
struct AgentReply {
    reply: Reply,
    hosts: Vec<String>,
    sequence: i64,
}

impl From<Outcome> for AgentReply {
    fn from(outcome: Outcome) -> AgentReply {
        AgentReply {
            reply: outcome.reply,
            hosts: outcome.hosts.into_iter().map(|(name, _)| name).collect(),
            sequence: outcome.sequence,
        }
    }
}

async fn agent_request(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    Json(body): Json<AgentRequest>,
) -> Result<Json<AgentReply>, ApiError> {
    let host = agent(&app.calendar, &peer).await?;
    let tz = zone(body.tz.as_deref())?;
    let outcome = app
        .calendar
        .request(&body.user, &body.op, Some(&host), &tz, now())
        .await?;
    Ok(Json(AgentReply::from(outcome)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentNextFree {
    user: String,
    #[serde(flatten)]
    args: NextFreeArgs,
    #[serde(default)]
    tz: Option<String>,
}

async fn agent_next_free(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    Json(body): Json<serde_json::Value>,
) -> Result<Json<AgentReply>, ApiError> {
    agent(&app.calendar, &peer).await?;
    let body: AgentNextFree = from_value(body)?;
    let tz = zone(body.tz.as_deref())?;
    let outcome = app
        .calendar
        .next_free(&body.user, &body.args, &tz, now())
        .await?;
    Ok(Json(AgentReply::from(outcome)))
}

/// `deny_unknown_fields` does not work with `flatten`: the body is read as
/// JSON first and checked here.
fn from_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("the request body does not fit: {e}"),
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentListQuery {
    user: String,
    /// Also those ended or cancelled in the last 30 days.
    #[serde(default)]
    all: bool,
}

#[derive(Debug, Serialize)]
struct ListBody {
    reservations: Vec<FleetReservation>,
}

/// A user's reservations across the fleet (`hosthog list --fleet`).
async fn agent_list(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    Query(query): Query<AgentListQuery>,
) -> Result<Json<ListBody>, ApiError> {
    agent(&app.calendar, &peer).await?;
    libhosthog::validate_user_name(&query.user)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    let t = now();
    let filter = Filter {
        user: Some(query.user),
        from: query.all.then_some(t - 30 * 86_400),
        cancelled: query.all,
        ..Filter::default()
    };
    Ok(Json(ListBody {
        reservations: app.calendar.reservations(&filter, t).await?,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveBody {
    hosts: Vec<String>,
    mode: Mode,
    start: i64,
    end: i64,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    with: Vec<String>,
    /// Reserve for this user (admins).
    #[serde(default)]
    owner: Option<String>,
    /// Override limits (admins; never conflicts).
    #[serde(default)]
    force: bool,
    #[serde(default)]
    tz: Option<String>,
}

async fn reserve(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(body): Json<ReserveBody>,
) -> Result<(StatusCode, Json<ChangedBody>), ApiError> {
    let user = person(&app.calendar, &headers).await?;
    let tz = zone(body.tz.as_deref())?;
    let op = Op::Reserve(ReserveArgs {
        mode: body.mode,
        start: body.start,
        end: body.end,
        with: body.with,
        comment: body.comment,
        owner: body.owner,
        force: body.force,
        hosts: body.hosts,
    });
    let outcome = app.calendar.request(&user, &op, None, &tz, now()).await?;
    Ok((StatusCode::CREATED, Json(changed(outcome)?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NextFreeBody {
    #[serde(flatten)]
    args: NextFreeArgs,
    #[serde(default)]
    tz: Option<String>,
}

async fn reserve_next_free(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Result<(StatusCode, Json<ChangedBody>), ApiError> {
    let user = person(&app.calendar, &headers).await?;
    let body: NextFreeBody = from_value(body)?;
    let tz = zone(body.tz.as_deref())?;
    let outcome = app
        .calendar
        .next_free(&user, &body.args, &tz, now())
        .await?;
    Ok((StatusCode::CREATED, Json(changed(outcome)?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    from: Option<i64>,
    #[serde(default)]
    to: Option<i64>,
    /// Also cancelled reservations.
    #[serde(default)]
    all: bool,
    #[serde(default)]
    limit: Option<i64>,
}

async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<ListBody>, ApiError> {
    person(&app.calendar, &headers).await?;
    if let Some(user) = &query.user {
        libhosthog::validate_user_name(user)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    }
    let filter = Filter {
        user: query.user,
        host: query.host,
        from: query.from,
        to: query.to,
        cancelled: query.all,
        limit: query.limit,
    };
    Ok(Json(ListBody {
        reservations: app.calendar.reservations(&filter, now()).await?,
    }))
}

async fn show(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<FleetReservation>, ApiError> {
    person(&app.calendar, &headers).await?;
    Ok(Json(app.calendar.reservation(&id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    #[serde(default)]
    start: Option<i64>,
    #[serde(default)]
    end: Option<i64>,
    #[serde(default)]
    extend_by: Option<i64>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    tz: Option<String>,
}

/// Extend, shorten, move, re-comment or change the mode of a reservation.
async fn change(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<ChangeBody>,
) -> Result<Json<ChangedBody>, ApiError> {
    let user = person(&app.calendar, &headers).await?;
    let tz = zone(body.tz.as_deref())?;
    let op = Op::Change(ChangeArgs {
        id,
        start: body.start,
        end: body.end,
        extend_by: body.extend_by,
        mode: body.mode,
        comment: body.comment,
        force: body.force,
    });
    let outcome = app.calendar.request(&user, &op, None, &tz, now()).await?;
    Ok(Json(changed(outcome)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersBody {
    users: Vec<String>,
}

/// Which change of co-users a route makes: [`Op::Share`] or
/// [`Op::Unshare`], given to [`co_users`] by its route.
type CoUsers = fn(ShareArgs) -> Op;

/// Adds co-users to a reservation (`/share`) or takes them off
/// (`/unshare`), as the route's [`CoUsers`] says.
async fn co_users(
    State(app): State<Arc<App>>,
    Extension(operation): Extension<CoUsers>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<UsersBody>,
) -> Result<Json<ChangedBody>, ApiError> {
    let user = person(&app.calendar, &headers).await?;
    let op = operation(ShareArgs {
        id,
        users: body.users,
    });
    let outcome = app
        .calendar
        .request(&user, &op, None, &TimeZone::UTC, now())
        .await?;
    Ok(Json(changed(outcome)?))
}

/// Ends a reservation now: its owner and co-users release it (removed if
/// it has not started, cut short if it has); an admin who is neither
/// cancels it.
async fn release(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ChangedBody>, ApiError> {
    let user = person(&app.calendar, &headers).await?;
    let t = now();
    let tz = TimeZone::UTC;
    let released = app
        .calendar
        .request(&user, &Op::Release(IdArgs { id: id.clone() }), None, &tz, t)
        .await;
    let outcome = match released {
        Err(BookError::Refused(f, _))
            if f.kind == FailureKind::Denied && app.calendar.is_admin(&user).await? =>
        {
            app.calendar
                .request(&user, &Op::Cancel(IdArgs { id }), None, &tz, t)
                .await?
        }
        other => other?,
    };
    Ok(Json(changed(outcome)?))
}

/// A host's report of who is on it: its presence snapshot
/// (docs/presence-format.md), validated like the PAM module validates it.
async fn report_presence(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let host = agent(&app.calendar, &peer).await?;
    let snapshot = libhosthog::Presence::parse(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    let value = serde_json::to_value(&snapshot)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    app.calendar.report_presence(&host, &value, now()).await?;
    crate::web::usage::record(app.calendar.database(), &host, &value, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
struct PresenceBody {
    host: String,
    reported_at: i64,
    snapshot: serde_json::Value,
}

/// Who is where: every host's last presence report.
async fn presence(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Vec<PresenceBody>>, ApiError> {
    person(&app.calendar, &headers).await?;
    Ok(Json(
        app.calendar
            .presence()
            .await?
            .into_iter()
            .map(|(host, reported_at, snapshot)| PresenceBody {
                host,
                reported_at,
                snapshot,
            })
            .collect(),
    ))
}

/// Serves `app` over TLS on `listener` until the process ends: every
/// connection's client certificate (if any) reaches the handlers as its
/// SHA-256.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: Router) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("hosthog-server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            connection(acceptor, tcp, remote, app).await;
        });
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    app: Router,
) {
    let handshake =
        tokio::time::timeout(crate::limits::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            eprintln!("hosthog-server: TLS with {remote}: {e}");
            return;
        }
        Err(_) => return,
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| fingerprint(cert.as_ref()));
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            from_peer(&mut request, peer.clone());
            let mut app = app.clone();
            async move { app.call(request).await }
        });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that trickles its headers (or idles on a kept-alive
    // connection) is cut off; bodies are timed by crate::limits::guard.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(crate::limits::HEADER_TIMEOUT);
    if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
        eprintln!("hosthog-server: connection from {remote}: {e}");
    }
}
