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
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use libhosthog::{Mode, Reservation, ReservationId};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::calendar::{BookError, Calendar, HostStatus, InTheWay, NewReservation};
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
    changes: tokio::sync::watch::Receiver<u64>,
}

/// The SHA-256 of the client certificate the connection presented, if any.
#[derive(Debug, Clone)]
struct Peer(Option<String>);

/// An error answer: `{"error": KIND, "message": TEXT, ...}`.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    in_the_way: Vec<Blocker>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unknown_hosts: Vec<String>,
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
            BookError::Conflict(list) => {
                let mut error = ApiError::new(StatusCode::CONFLICT, "conflict", message);
                error.1.in_the_way = list.iter().map(Blocker::from).collect();
                error
            }
            BookError::NotFound(why) => ApiError::new(StatusCode::NOT_FOUND, "not_found", why),
            BookError::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", why),
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
pub fn router(calendar: Calendar, changes: tokio::sync::watch::Receiver<u64>) -> Router {
    Router::new()
        .route("/agent/v1/window", get(window))
        .route("/agent/v1/reservations", post(agent_reserve))
        .route("/agent/v1/reservations/{id}", delete(agent_release))
        .route("/agent/v1/presence", put(report_presence))
        .route("/agent/v1/hosts", get(agent_hosts))
        .route("/api/v1/presence", get(presence))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/reservations", post(reserve))
        .route("/api/v1/reservations/{id}", delete(release))
        .with_state(Arc::new(App { calendar, changes }))
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
            "the token is not valid (revoked, or never made)",
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
        // Marked seen before the read: a change committed after it wakes
        // the wait below at once.
        changes.borrow_and_update();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // While the version is the agent's, look at nothing else
        // (crate::longpoll); versions only grow, so once it differs the
        // window read next differs too.
        let waiting = query.since.is_some()
            && !left.is_zero()
            && app.calendar.version(&host).await? == query.since;
        if !waiting {
            let (version, state) = app.calendar.window(&host, now()).await?;
            return Ok(Json(WindowBody {
                host,
                version,
                reservations: state.reservations,
            }));
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(left.min(POLL)) => {}
        }
    }
}

#[derive(Debug, Serialize)]
struct HostBody {
    name: String,
    version: i64,
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

/// What is booked, wherever the request comes from.
#[derive(Debug)]
struct Booking {
    mode: Mode,
    /// UTC seconds, `[start, end)`.
    start: i64,
    end: i64,
    comment: String,
    with: Vec<String>,
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
}

#[derive(Debug, Serialize)]
struct ReservedBody {
    id: String,
    owner: String,
    hosts: Vec<HostBody>,
}

fn random_id() -> Result<ReservationId, ApiError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("no randomness for an id: {e}"),
        )
    })?;
    Ok(ReservationId(u64::from_le_bytes(bytes)))
}

async fn reserve(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(body): Json<ReserveBody>,
) -> Result<(StatusCode, Json<ReservedBody>), ApiError> {
    let user = person(&app.calendar, &headers).await?;
    let booking = Booking {
        mode: body.mode,
        start: body.start,
        end: body.end,
        comment: body.comment,
        with: body.with,
    };
    book_as(&app.calendar, user, body.hosts, booking).await
}

/// A booking of `hosts` for `user` (who is its owner and the actor).
async fn book_as(
    calendar: &Calendar,
    user: String,
    hosts: Vec<String>,
    booking: Booking,
) -> Result<(StatusCode, Json<ReservedBody>), ApiError> {
    let request = NewReservation {
        id: random_id()?,
        owner: user.clone(),
        co_users: booking.with,
        mode: booking.mode,
        comment: booking.comment,
        start: booking.start,
        end: booking.end,
    };
    let booked = calendar.book(&user, &hosts, &request, now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(ReservedBody {
            id: booked.id.to_string(),
            owner: user,
            hosts: booked
                .hosts
                .into_iter()
                .map(|(name, version)| HostBody { name, version })
                .collect(),
        }),
    ))
}

/// A user's booking made on a host and forwarded by its hosthogd: the
/// host vouches for the user (its hosthogd identified them by
/// SO_PEERCRED). Without `hosts`, the booking is of that host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentReserveBody {
    user: String,
    #[serde(default)]
    hosts: Option<Vec<String>>,
    mode: Mode,
    start: i64,
    end: i64,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    with: Vec<String>,
}

async fn agent_reserve(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    Json(body): Json<AgentReserveBody>,
) -> Result<(StatusCode, Json<ReservedBody>), ApiError> {
    let host = agent(&app.calendar, &peer).await?;
    let hosts = body.hosts.unwrap_or_else(|| vec![host]);
    let booking = Booking {
        mode: body.mode,
        start: body.start,
        end: body.end,
        comment: body.comment,
        with: body.with,
    };
    book_as(&app.calendar, body.user, hosts, booking).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserQuery {
    user: String,
}

async fn agent_release(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
    Query(query): Query<UserQuery>,
) -> Result<Json<ReleasedBody>, ApiError> {
    agent(&app.calendar, &peer).await?;
    release_as(&app.calendar, &query.user, &id).await
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

#[derive(Debug, Serialize)]
struct ReleasedBody {
    id: String,
    hosts: Vec<HostBody>,
}

/// Ends a reservation now: removes it if it has not started, cuts it
/// short if it has. Its owner and co-users may; admins may end anyone's.
async fn release(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ReleasedBody>, ApiError> {
    let user = person(&app.calendar, &headers).await?;
    release_as(&app.calendar, &user, &id).await
}

async fn release_as(
    calendar: &Calendar,
    user: &str,
    id: &str,
) -> Result<Json<ReleasedBody>, ApiError> {
    let id: ReservationId = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("{id:?} is not a reservation id (16 hex digits)"),
        )
    })?;
    let hosts = calendar.release(user, id, now()).await?;
    Ok(Json(ReleasedBody {
        id: id.to_string(),
        hosts: hosts
            .into_iter()
            .map(|(name, version)| HostBody { name, version })
            .collect(),
    }))
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
        // Answers are small and go out at once, not after the client's
        // delayed ACK.
        let _ = tcp.set_nodelay(true);
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
