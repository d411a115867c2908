-- The fleet calendar: hosts, reservations, and each reservation's claim on
-- each of its hosts. Double booking is impossible in the schema itself:
-- the two exclusion constraints on claim refuse an exclusive claim that
-- overlaps any other claim on the same host, whatever client writes.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE host (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE
               CHECK (name ~ '^[a-z0-9][a-z0-9.-]{0,62}$'),
    -- Bumped by every change that touches the host; agents long-poll on it.
    version    bigint NOT NULL DEFAULT 0,
    tags       text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE reservation (
    -- 64-bit random, as on a single host (ReservationId), stored as bigint.
    id         bigint PRIMARY KEY,
    owner      text NOT NULL,
    co_users   text[] NOT NULL DEFAULT '{}',
    exclusive  boolean NOT NULL,
    comment    text NOT NULL DEFAULT '',
    start_at   timestamptz NOT NULL,
    end_at     timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CHECK (start_at < end_at)
);

CREATE TABLE claim (
    reservation bigint NOT NULL REFERENCES reservation (id) ON DELETE CASCADE,
    host        bigint NOT NULL REFERENCES host (id),
    start_at    timestamptz NOT NULL,
    end_at      timestamptz NOT NULL,
    exclusive   boolean NOT NULL,
    PRIMARY KEY (reservation, host),
    CHECK (start_at < end_at),
    -- Two exclusive claims on one host never overlap ...
    CONSTRAINT claim_exclusive_alone
        EXCLUDE USING gist (host WITH =, tstzrange(start_at, end_at) WITH &&)
        WHERE (exclusive),
    -- ... nor an exclusive and a shared one (the first constraint alone
    -- would let an exclusive claim overlap a shared one).
    CONSTRAINT claim_exclusive_not_shared
        EXCLUDE USING gist (host WITH =, tstzrange(start_at, end_at) WITH &&,
                            exclusive WITH <>)
);

CREATE INDEX claim_by_host_and_end ON claim (host, end_at);

-- Every change, in the transaction that makes it.
CREATE TABLE audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    reservation bigint,
    hosts       text[] NOT NULL,
    detail      jsonb NOT NULL
);
