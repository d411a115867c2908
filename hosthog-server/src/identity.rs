//! Who a person is, without passwords: secrets minted through a host
//! (which vouches for the user who asked its hosthogd), stored hashed.
//!
//! - API tokens (`hh_…`, scope `api`): bearer tokens for `/api/v1`,
//!   optionally expiring, listed and revoked by their owner.
//! - Feed tokens (scope `feed`): open only the iCal feeds.
//! - One-time web sign-in links: a secret valid for [`LINK_LIFETIME`]
//!   seconds, redeemed once for a browser session.
//! - Browser sessions: a random cookie, stored hashed, expiring after
//!   [`SESSION_LIFETIME`], each with its own CSRF token.
//!
//! Only SHA-256 digests of secrets are in the database; the secret itself
//! is shown once, to the user who asked.

use crate::calendar::BookError;
use crate::database::Database;

/// How long a web sign-in link stays valid, in seconds.
pub const LINK_LIFETIME: i64 = 600;
/// How long a browser session lasts, in seconds.
pub const SESSION_LIFETIME: i64 = 12 * 3600;
/// The longest a token may be made to last, in seconds (a year).
pub const MAX_TOKEN_LIFETIME: i64 = 366 * 86400;
/// Most characters in a token's label.
pub const MAX_LABEL: usize = 200;
/// Most live tokens one user may hold (api and feed together).
pub const MAX_TOKENS: i64 = 50;

/// What a token may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `/api/v1`, as its owner.
    Api,
    /// The iCal feeds only.
    Feed,
}

impl Scope {
    fn sql(self) -> &'static str {
        match self {
            Scope::Api => "api",
            Scope::Feed => "feed",
        }
    }
}

/// A token as its owner sees it in a list (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// The first 12 hex digits of the token's SHA-256.
    pub id: String,
    pub scope: String,
    pub label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// The host it was made through; none for `hosthog-server token add`.
    pub minted_by: Option<String>,
}

/// A browser session, found by its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// The token every form of this session must carry.
    pub csrf: String,
    pub expires_at: i64,
}

fn database(what: &str, e: &tokio_postgres::Error) -> BookError {
    BookError::Database(crate::database::DatabaseError(format!("{what}: {e}")))
}

/// 32 random bytes as 64 lowercase hex digits.
///
/// # Errors
/// The kernel gives no randomness.
pub fn secret() -> Result<String, BookError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| BookError::Invalid(format!("no randomness for a secret: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The digest under which a secret is stored.
pub fn digest(secret: &str) -> String {
    crate::tls::fingerprint(secret.as_bytes())
}

fn valid_user(user: &str) -> Result<(), BookError> {
    libhosthog::validate_user_name(user).map_err(|e| BookError::Invalid(e.to_string()))
}

/// Checks a token's label: short, one line, no control or bidi characters.
///
/// # Errors
/// [`BookError::Invalid`] saying what is wrong.
pub fn validate_label(label: &str) -> Result<(), BookError> {
    if label.chars().count() > MAX_LABEL {
        return Err(BookError::Invalid(format!(
            "the label is {} characters long; at most {MAX_LABEL} are allowed",
            label.chars().count()
        )));
    }
    if label
        .chars()
        .any(|c| c.is_control() || crate::web::text::is_bidi(c))
    {
        return Err(BookError::Invalid(
            "the label may not contain control characters or text-direction overrides".into(),
        ));
    }
    Ok(())
}

/// Makes a token for `user`; returns the token (shown once) and how it is
/// listed. `expires_in`: seconds from `now`, at most [`MAX_TOKEN_LIFETIME`].
///
/// # Errors
/// [`BookError::Invalid`] for a bad user, label or lifetime, or a user
/// with [`MAX_TOKENS`] live tokens already; [`BookError::Database`].
pub async fn mint_token(
    db: &Database,
    user: &str,
    scope: Scope,
    label: &str,
    expires_in: Option<i64>,
    minted_by: Option<&str>,
    now: i64,
) -> Result<(String, TokenInfo), BookError> {
    valid_user(user)?;
    validate_label(label)?;
    if let Some(seconds) = expires_in
        && !(60..=MAX_TOKEN_LIFETIME).contains(&seconds)
    {
        return Err(BookError::Invalid(format!(
            "a token lasts from 1 minute to {} days; {seconds} seconds is out of range",
            MAX_TOKEN_LIFETIME / 86400
        )));
    }
    let token = format!("hh_{}", secret()?);
    let sha = digest(&token);
    let expires_at = expires_in.map(|s| now + s);
    let client = db.connection().await?;
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM api_token WHERE user_name = $1 AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > to_timestamp($2::bigint))",
            &[&user, &now],
        )
        .await
        .map_err(|e| database("cannot count the tokens", &e))?
        .get(0);
    if live >= MAX_TOKENS {
        return Err(BookError::Invalid(format!(
            "{user} already has {live} tokens; revoke some first (hosthog token list, \
             hosthog token revoke ID)"
        )));
    }
    client
        .execute(
            "INSERT INTO api_token (sha256, user_name, created_at, scope, label, expires_at, minted_by)
             VALUES ($1, $2, to_timestamp($3::bigint), $4, $5, to_timestamp($6::bigint), $7)",
            &[
                &sha,
                &user,
                &now,
                &scope.sql(),
                &label,
                &expires_at,
                &minted_by,
            ],
        )
        .await
        .map_err(|e| database("cannot store the token", &e))?;
    Ok((
        token,
        TokenInfo {
            id: sha[..12].to_string(),
            scope: scope.sql().to_string(),
            label: label.to_string(),
            created_at: now,
            expires_at,
            minted_by: minted_by.map(String::from),
        },
    ))
}

/// `user`'s tokens that are neither revoked nor expired, oldest first.
///
/// # Errors
/// [`BookError::Database`].
pub async fn list_tokens(db: &Database, user: &str, now: i64) -> Result<Vec<TokenInfo>, BookError> {
    let client = db.connection().await?;
    let rows = client
        .query(
            "SELECT substr(sha256, 1, 12), scope, label,
                    extract(epoch FROM created_at)::bigint,
                    extract(epoch FROM expires_at)::bigint, minted_by
             FROM api_token
             WHERE user_name = $1 AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > to_timestamp($2::bigint))
             ORDER BY created_at, sha256",
            &[&user, &now],
        )
        .await
        .map_err(|e| database("cannot list the tokens", &e))?;
    Ok(rows
        .iter()
        .map(|r| TokenInfo {
            id: r.get(0),
            scope: r.get(1),
            label: r.get(2),
            created_at: r.get(3),
            expires_at: r.get(4),
            minted_by: r.get(5),
        })
        .collect())
}

/// Revokes `user`'s token whose id starts with `id` (at least 4 hex
/// digits); returns it.
///
/// # Errors
/// [`BookError::Invalid`] for an id that is not hex, [`BookError::NotFound`]
/// when none of the user's live tokens match (another user's never do),
/// [`BookError::Invalid`] when several do; [`BookError::Database`].
pub async fn revoke_token(
    db: &Database,
    user: &str,
    id: &str,
    now: i64,
) -> Result<TokenInfo, BookError> {
    let id = id.to_ascii_lowercase();
    if id.len() < 4 || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BookError::Invalid(format!(
            "{id:?} is not a token id (4 to 12 hex digits, as hosthog token list shows)"
        )));
    }
    let matching: Vec<TokenInfo> = list_tokens(db, user, now)
        .await?
        .into_iter()
        .filter(|t| t.id.starts_with(&id) || id.starts_with(&t.id))
        .collect();
    let token = match matching.as_slice() {
        [] => {
            return Err(BookError::NotFound(format!(
                "{user} has no live token {id} (hosthog token list shows them)"
            )));
        }
        [one] => one.clone(),
        _ => {
            return Err(BookError::Invalid(format!(
                "{id} names {} tokens; give more digits",
                matching.len()
            )));
        }
    };
    let client = db.connection().await?;
    client
        .execute(
            "UPDATE api_token SET revoked_at = to_timestamp($3::bigint)
             WHERE user_name = $1 AND substr(sha256, 1, 12) = $2 AND revoked_at IS NULL",
            &[&user, &token.id, &now],
        )
        .await
        .map_err(|e| database("cannot revoke the token", &e))?;
    Ok(token)
}

/// The user whose live token of `scope` `token` is, if any.
///
/// # Errors
/// [`BookError::Database`].
pub async fn token_user(
    db: &Database,
    token: &str,
    scope: Scope,
    now: i64,
) -> Result<Option<String>, BookError> {
    let client = db.connection().await?;
    let row = client
        .query_opt(
            "SELECT user_name FROM api_token
             WHERE sha256 = $1 AND scope = $2 AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > to_timestamp($3::bigint))",
            &[&digest(token), &scope.sql(), &now],
        )
        .await
        .map_err(|e| database("cannot check the token", &e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Makes a one-time sign-in link's secret for `user`, asked for through
/// host `minted_by`; valid for [`LINK_LIFETIME`] seconds.
///
/// # Errors
/// [`BookError::Invalid`] for a bad user; [`BookError::Database`].
pub async fn mint_link(
    db: &Database,
    user: &str,
    minted_by: &str,
    now: i64,
) -> Result<(String, i64), BookError> {
    valid_user(user)?;
    let secret = secret()?;
    let expires_at = now + LINK_LIFETIME;
    let client = db.connection().await?;
    // Links nobody used are forgotten after a day.
    client
        .execute(
            "DELETE FROM web_link WHERE expires_at < to_timestamp($1::bigint) - interval '1 day'",
            &[&now],
        )
        .await
        .map_err(|e| database("cannot clean up old links", &e))?;
    client
        .execute(
            "INSERT INTO web_link (sha256, user_name, minted_by, created_at, expires_at)
             VALUES ($1, $2, $3, to_timestamp($4::bigint), to_timestamp($5::bigint))",
            &[&digest(&secret), &user, &minted_by, &now, &expires_at],
        )
        .await
        .map_err(|e| database("cannot store the link", &e))?;
    Ok((secret, expires_at))
}

/// Why a sign-in link did not sign anyone in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefused {
    /// Never made (or mistyped).
    Unknown,
    /// Made, but used already.
    Used,
    /// Made, but older than [`LINK_LIFETIME`].
    Expired,
}

impl LinkRefused {
    pub fn message(self) -> &'static str {
        match self {
            LinkRefused::Unknown => {
                "This sign-in link is not valid. Run `hosthog web` on any host for a new one."
            }
            LinkRefused::Used => {
                "This sign-in link was used already; each link signs in once. Run `hosthog web` for a new one."
            }
            LinkRefused::Expired => {
                "This sign-in link has expired (links last 10 minutes). Run `hosthog web` for a new one."
            }
        }
    }
}

/// Redeems a sign-in link: marks it used (once, whoever races) and starts
/// a session. Returns the session cookie's value and the session.
///
/// # Errors
/// `Ok(Err(LinkRefused))` when the link is unknown, used or expired;
/// [`BookError::Database`].
pub async fn redeem_link(
    db: &Database,
    secret: &str,
    now: i64,
) -> Result<Result<(String, Session), LinkRefused>, BookError> {
    let sha = digest(secret);
    let mut client = db.connection().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| database("cannot start a transaction", &e))?;
    let row = tx
        .query_opt(
            "UPDATE web_link SET used_at = to_timestamp($2::bigint)
             WHERE sha256 = $1 AND used_at IS NULL AND expires_at > to_timestamp($2::bigint)
             RETURNING user_name",
            &[&sha, &now],
        )
        .await
        .map_err(|e| database("cannot redeem the link", &e))?;
    let Some(row) = row else {
        let why = tx
            .query_opt(
                "SELECT used_at IS NOT NULL FROM web_link WHERE sha256 = $1",
                &[&sha],
            )
            .await
            .map_err(|e| database("cannot read the link", &e))?;
        return Ok(Err(match why {
            None => LinkRefused::Unknown,
            Some(r) if r.get::<_, bool>(0) => LinkRefused::Used,
            Some(_) => LinkRefused::Expired,
        }));
    };
    let user: String = row.get(0);
    let cookie = self::secret()?;
    let csrf = self::secret()?;
    let expires_at = now + SESSION_LIFETIME;
    tx.execute(
        "DELETE FROM web_session WHERE expires_at < to_timestamp($1::bigint)",
        &[&now],
    )
    .await
    .map_err(|e| database("cannot clean up old sessions", &e))?;
    tx.execute(
        "INSERT INTO web_session (sha256, user_name, csrf, created_at, expires_at)
         VALUES ($1, $2, $3, to_timestamp($4::bigint), to_timestamp($5::bigint))",
        &[&digest(&cookie), &user, &csrf, &now, &expires_at],
    )
    .await
    .map_err(|e| database("cannot start the session", &e))?;
    tx.commit()
        .await
        .map_err(|e| database("cannot start the session", &e))?;
    Ok(Ok((
        cookie,
        Session {
            user,
            csrf,
            expires_at,
        },
    )))
}

/// The live session whose cookie is `cookie`, if any.
///
/// # Errors
/// [`BookError::Database`].
pub async fn session(db: &Database, cookie: &str, now: i64) -> Result<Option<Session>, BookError> {
    let client = db.connection().await?;
    let row = client
        .query_opt(
            "SELECT user_name, csrf, extract(epoch FROM expires_at)::bigint FROM web_session
             WHERE sha256 = $1 AND expires_at > to_timestamp($2::bigint)",
            &[&digest(cookie), &now],
        )
        .await
        .map_err(|e| database("cannot read the session", &e))?;
    Ok(row.map(|r| Session {
        user: r.get(0),
        csrf: r.get(1),
        expires_at: r.get(2),
    }))
}

/// Ends the session whose cookie is `cookie` (sign-out).
///
/// # Errors
/// [`BookError::Database`].
pub async fn end_session(db: &Database, cookie: &str) -> Result<(), BookError> {
    let client = db.connection().await?;
    client
        .execute(
            "DELETE FROM web_session WHERE sha256 = $1",
            &[&digest(cookie)],
        )
        .await
        .map_err(|e| database("cannot end the session", &e))?;
    Ok(())
}
