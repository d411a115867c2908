-- Who may talk to the server: each host by its client certificate (the
-- SHA-256 of the one certificate issued to it last; revoking a host or
-- issuing it a new bundle makes the old certificate worthless), people and
-- scripts by bearer tokens, stored hashed.

ALTER TABLE host ADD COLUMN cert_sha256 text UNIQUE;

CREATE TABLE api_token (
    sha256     text PRIMARY KEY,
    user_name  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
