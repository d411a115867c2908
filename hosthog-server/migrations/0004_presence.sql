-- Who is on each host now, as its hosthogd last reported (the presence
-- snapshot of docs/presence-format.md), for "who is where".

CREATE TABLE presence (
    host        bigint PRIMARY KEY REFERENCES host (id) ON DELETE CASCADE,
    reported_at timestamptz NOT NULL,
    snapshot    jsonb NOT NULL
);
