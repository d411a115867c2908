//! The agent API's identity endpoints: a host mints, for a user who asked
//! its hosthogd (identified there by SO_PEERCRED), an API token, a
//! one-time web sign-in link or an iCal feed URL; and lists or revokes
//! that user's tokens. docs/fleet-api.md, "Tokens, sign-in links, feeds".

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use crate::calendar::{BookError, Calendar};
use crate::http::Peer;
use crate::identity::{self, Scope, TokenInfo};

/// An error answer, in the API's one shape: `{"error": KIND, "message": TEXT}`.
pub struct Refusal(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(serde_json::json!({ "error": self.1, "message": self.2 })),
        )
            .into_response()
    }
}

impl From<BookError> for Refusal {
    fn from(e: BookError) -> Refusal {
        let message = e.to_string();
        match e {
            BookError::Invalid(_) | BookError::UnknownHosts(_) => {
                Refusal(StatusCode::BAD_REQUEST, "invalid", message)
            }
            BookError::NotFound(_) => Refusal(StatusCode::NOT_FOUND, "not_found", message),
            BookError::Refused(..) => Refusal(StatusCode::CONFLICT, "conflict", message),
            BookError::Database(_) => {
                Refusal(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

#[allow(clippy::disallowed_methods)] // a request's entry point: the clock is read here
pub(crate) fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The host a request comes from, by its client certificate.
///
/// # Errors
/// 401 without a certificate or with one that is no (longer any) host's.
pub(crate) async fn host_of(calendar: &Calendar, peer: &Peer) -> Result<String, Refusal> {
    let Some(fp) = &peer.0 else {
        return Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the agent API needs the host's certificate (the bundle from hosthog-server host add)"
                .into(),
        ));
    };
    calendar.host_by_certificate(fp).await?.ok_or_else(|| {
        Refusal(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "this certificate is not (or no longer) any host's: the host was revoked or given a new bundle"
                .into(),
        )
    })
}

pub fn routes() -> Router<Calendar> {
    Router::new()
        .route("/agent/v1/tokens", post(create_token).get(list_tokens))
        .route("/agent/v1/tokens/{id}", delete(revoke_token))
        .route("/agent/v1/web-link", post(web_link))
        .route("/agent/v1/feed", post(feed))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    user: String,
    /// Seconds; none: until revoked.
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    label: String,
}

/// A token, shown this once.
#[derive(Debug, Serialize)]
struct Minted {
    token: String,
    #[serde(flatten)]
    info: TokenInfo,
}

async fn create_token(
    State(calendar): State<Calendar>,
    Extension(peer): Extension<Peer>,
    Json(body): Json<CreateToken>,
) -> Result<(StatusCode, Json<Minted>), Refusal> {
    let host = host_of(&calendar, &peer).await?;
    let (token, info) = identity::mint_token(
        calendar.database(),
        &body.user,
        Scope::Api,
        &body.label,
        body.expires_in,
        Some(&host),
        now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Minted { token, info })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserQuery {
    user: String,
}

#[derive(Debug, Serialize)]
struct TokenList {
    tokens: Vec<TokenInfo>,
}

async fn list_tokens(
    State(calendar): State<Calendar>,
    Extension(peer): Extension<Peer>,
    Query(query): Query<UserQuery>,
) -> Result<Json<TokenList>, Refusal> {
    host_of(&calendar, &peer).await?;
    libhosthog::validate_user_name(&query.user)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    let tokens = identity::list_tokens(calendar.database(), &query.user, now()).await?;
    Ok(Json(TokenList { tokens }))
}

async fn revoke_token(
    State(calendar): State<Calendar>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
    Query(query): Query<UserQuery>,
) -> Result<Json<TokenInfo>, Refusal> {
    host_of(&calendar, &peer).await?;
    libhosthog::validate_user_name(&query.user)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
    let token = identity::revoke_token(calendar.database(), &query.user, &id, now()).await?;
    Ok(Json(token))
}

/// A secret path on this server, and until when it works (none: until
/// revoked). hosthogd puts its server address in front.
#[derive(Debug, Serialize)]
struct Link {
    path: String,
    expires_at: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    user: String,
}

async fn web_link(
    State(calendar): State<Calendar>,
    Extension(peer): Extension<Peer>,
    Json(body): Json<UserBody>,
) -> Result<(StatusCode, Json<Link>), Refusal> {
    let host = host_of(&calendar, &peer).await?;
    let (secret, expires_at) =
        identity::mint_link(calendar.database(), &body.user, &host, now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(Link {
            path: format!("/web/signin/{secret}"),
            expires_at: Some(expires_at),
        }),
    ))
}

/// A feed token for the user: the path of their own feed. The same token
/// opens every host's feed (`/feed/TOKEN/host/NAME.ics`).
async fn feed(
    State(calendar): State<Calendar>,
    Extension(peer): Extension<Peer>,
    Json(body): Json<UserBody>,
) -> Result<(StatusCode, Json<Link>), Refusal> {
    let host = host_of(&calendar, &peer).await?;
    let (token, _) = identity::mint_token(
        calendar.database(),
        &body.user,
        Scope::Feed,
        "iCal feed",
        None,
        Some(&host),
        now(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Link {
            path: crate::web::feed_path(&token),
            expires_at: None,
        }),
    ))
}
