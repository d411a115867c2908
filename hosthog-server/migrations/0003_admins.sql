-- The fleet's admins: they may cancel anyone's reservation. A server-side
-- list, kept with `hosthog-server admin add|remove USER`.

CREATE TABLE admin (
    user_name  text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
