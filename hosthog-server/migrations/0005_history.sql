-- Reservations keep their history for calendars: every change bumps
-- `sequence` (iCal's SEQUENCE), `hosts` names the hosts a reservation
-- claims (kept after its claims are gone), and a reservation cancelled by
-- an admin, or released before it started, is marked `cancelled_at` and
-- loses its claims, so it blocks nothing and windows leave it out, while
-- calendar feeds can still show it as cancelled.

ALTER TABLE reservation
    ADD COLUMN sequence     integer NOT NULL DEFAULT 0,
    ADD COLUMN hosts        text[] NOT NULL DEFAULT '{}',
    ADD COLUMN cancelled_at timestamptz;

UPDATE reservation r SET hosts = ARRAY(
    SELECT h.name FROM claim c JOIN host h ON h.id = c.host
    WHERE c.reservation = r.id ORDER BY h.name);

CREATE INDEX reservation_by_owner ON reservation (owner, end_at);
CREATE INDEX reservation_by_end ON reservation (end_at);
