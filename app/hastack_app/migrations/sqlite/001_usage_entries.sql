-- Who used which machine, for how long (SQLite variant of ../001_usage_entries.sql).
CREATE TABLE usage_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    machine TEXT NOT NULL,
    member TEXT NOT NULL,
    minutes INTEGER NOT NULL CHECK (minutes BETWEEN 1 AND 1440),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX usage_entries_machine_created ON usage_entries (machine, created_at);
