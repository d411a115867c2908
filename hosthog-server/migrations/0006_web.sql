-- Identity minted through a host, and the web calendar's sign-in.
--
-- api_token gains what a person needs to manage their own tokens: a label,
-- an expiry, and a scope. An `api` token is a bearer token for /api/v1; a
-- `feed` token opens only that user's iCal feeds (and the per-host feeds),
-- so a calendar app that leaks its URL leaks no write access. A token's
-- public id is the first 12 hex digits of its SHA-256 (what `hosthog token
-- list` shows and `revoke` takes); the token itself is never stored.

ALTER TABLE api_token
    ADD COLUMN label      text NOT NULL DEFAULT ''
               CHECK (length(label) <= 200),
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN scope      text NOT NULL DEFAULT 'api'
               CHECK (scope IN ('api', 'feed')),
    -- The host it was minted through (none: by hosthog-server token add).
    ADD COLUMN minted_by  text;

CREATE INDEX api_token_by_user ON api_token (user_name);

-- One-time web sign-in links (`hosthog web`): the SHA-256 of the secret,
-- valid for minutes, used at most once.
CREATE TABLE web_link (
    sha256     text PRIMARY KEY,
    user_name  text NOT NULL,
    minted_by  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

-- Browser sessions: the SHA-256 of the cookie's value, and the CSRF token
-- every form of that session carries.
CREATE TABLE web_session (
    sha256     text PRIMARY KEY,
    user_name  text NOT NULL,
    csrf       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX web_session_by_expiry ON web_session (expires_at);

-- Hours present, for the usage page: each presence report extends the
-- interval of every user on the host (however they are on it) when that
-- interval ended at most 180 s before (hosts report at least every 60 s);
-- otherwise a new interval starts at the report. A user seen in a single
-- report counts for no time; time between reports counts when both saw
-- the user.
CREATE TABLE presence_interval (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host       bigint NOT NULL REFERENCES host (id) ON DELETE CASCADE,
    user_name  text NOT NULL,
    start_at   timestamptz NOT NULL,
    end_at     timestamptz NOT NULL,
    CHECK (start_at <= end_at)
);

CREATE INDEX presence_interval_open ON presence_interval (host, user_name, end_at);
CREATE INDEX presence_interval_by_time ON presence_interval (end_at, start_at);
