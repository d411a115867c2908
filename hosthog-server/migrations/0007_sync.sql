-- When each host last synced the calendar: when the server last answered
-- its window request (a change, or a long-poll that ran out with none;
-- both confirm the host's table). A table of its own, so recording a sync
-- never waits on the row locks bookings take on `host`.

CREATE TABLE host_sync (
    host      bigint PRIMARY KEY REFERENCES host (id) ON DELETE CASCADE,
    synced_at timestamptz NOT NULL
);
