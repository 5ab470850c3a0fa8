-- Who used which machine, for how long.
CREATE TABLE usage_entries (
    id bigserial PRIMARY KEY,
    machine text NOT NULL,
    member text NOT NULL,
    minutes integer NOT NULL CHECK (minutes BETWEEN 1 AND 1440),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_entries_machine_created ON usage_entries (machine, created_at);
