"""Database access for the reference app: PostgreSQL (psycopg 3 with a connection pool)
through the DB VIP, or one local SQLite file replicated by Litestream (the SQLite path)."""

import pathlib
import socket
import sqlite3
import urllib.parse

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

MIGRATIONS = pathlib.Path(__file__).with_name("migrations")
# Every connection gives up quickly: during a failover a connection to the dead primary
# must fail within a second or two (tcp_user_timeout) so the request answers 503 and the next
# one reconnects through the VIP, which by then points at the new primary.
CONNECT_OPTIONS = {
    "connect_timeout": 1,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 1500,
    "application_name": "hastack-app",
}


class Unavailable(Exception):
    """The database could not serve the request; nothing was committed."""


class Maintenance(Unavailable):
    """Writes are paused (maintenance file); nothing was committed."""


def _never():
    return False


class Store:
    def __init__(self, url, pool_size=4, maintenance=_never):
        self.maintenance = maintenance
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("DATABASE_URL must be a postgresql:// or sqlite:/// URL")
        # The pool opens in the background: the app starts, and /health answers 503,
        # even while the database is down.
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, kwargs=CONNECT_OPTIONS, open=False,
                                   check=ConnectionPool.check_connection, timeout=1.5, reconnect_timeout=0)
        self.pool.open(wait=False)

    def _run(self, sql, params=None):
        try:
            with self.pool.connection() as conn:
                return conn.execute(sql, params).fetchone()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise Unavailable(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from exc
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            raise Unavailable("the database is read-only (a replica answered)") from exc

    def health(self):
        in_recovery, node = self._run("SELECT pg_is_in_recovery(), current_setting('hastack.node', true)")
        return {"database": "reachable", "role": "replica" if in_recovery else "primary", "node": node}

    def add_entry(self, machine, member, minutes):
        """(id, node that committed it); pool.connection() commits when the block ends and
        raises if COMMIT fails."""
        return tuple(self._run("INSERT INTO usage_entries (machine, member, minutes) VALUES (%s, %s, %s) "
                               "RETURNING id, current_setting('hastack.node', true)", (machine, member, minutes)))

    def count_entries(self):
        return self._run("SELECT count(*) FROM usage_entries")[0]


def open_store(url, maintenance=_never):
    """The store for DATABASE_URL: sqlite:///PATH (sqlite:////var/lib/app/app.db is
    absolute) or postgresql://. maintenance() is true while writes are paused."""
    if url.startswith("sqlite:"):
        return SqliteStore(url, maintenance)
    return Store(url, maintenance=maintenance)


def migrate(url):
    """Apply migrations/NNN_*.sql (SQLite: migrations/sqlite/NNN_*.sql) once each, in
    order; returns the names applied."""
    if url.startswith("sqlite:"):
        return sqlite_migrate(url)
    applied = []
    with psycopg.connect(url, **CONNECT_OPTIONS) as conn:
        # One migrating app server at a time, even if two run at once.
        conn.execute("SELECT pg_advisory_lock(872349)")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                     "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        conn.commit()
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name in done:
                continue
            with conn.transaction():
                conn.execute(path.read_text(encoding="utf-8"))
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
            applied.append(path.name)
        conn.execute("SELECT pg_advisory_unlock(872349)")
        conn.commit()
    return applied


# SQLite: one file on the active app server, WAL mode so that Litestream can copy the
# log while the app writes; a writer waits up to BUSY_TIMEOUT_MS for the lock (Litestream
# holds it briefly at each checkpoint) instead of failing at once.
SQLITE_MIGRATIONS = MIGRATIONS / "sqlite"
BUSY_TIMEOUT_MS = 5000


def sqlite_path(url):
    """sqlite:///relative.db or sqlite:////absolute/path.db (SQLAlchemy's spelling)."""
    if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
        raise ValueError("a SQLite DATABASE_URL is sqlite:///PATH, e.g. sqlite:////var/lib/hastack-app/app.db")
    return url[len("sqlite:///"):]


def sqlite_connect(path, create=False):
    # mode=rw: the app never creates an empty database where the real one is missing (a
    # standby, or a failed restore); only migrate creates it.
    uri = "file:%s?mode=%s" % (urllib.parse.quote(path), "rwc" if create else "rw")
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = %d" % BUSY_TIMEOUT_MS)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SqliteStore:
    def __init__(self, url, maintenance=_never):
        self.path = sqlite_path(url)
        self.node = socket.gethostname()
        self.maintenance = maintenance

    def _run(self, sql, params=(), write=False):
        try:
            conn = sqlite_connect(self.path)
        except sqlite3.Error as exc:
            raise Unavailable("cannot open %s: %s" % (self.path, exc)) from exc
        try:
            # An explicit transaction: the entry is acknowledged only after COMMIT returned.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            # Checked again under the write lock: a write that got past the request's
            # check commits before the migration's copy takes the lock, or not at all.
            if write and self.maintenance():
                raise Maintenance("writes are paused (maintenance)")
            cursor = conn.execute(sql, params)
            row = cursor.fetchone()
            last = cursor.lastrowid
            conn.execute("COMMIT")
            return row, last
        except Maintenance:
            conn.execute("ROLLBACK")
            raise
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise Unavailable("%s: %s" % (self.path, exc)) from exc
        finally:
            conn.close()

    def health(self):
        (mode,), _ = self._run("PRAGMA journal_mode")
        return {"database": "sqlite", "role": "primary", "node": self.node, "journal_mode": mode}

    def add_entry(self, machine, member, minutes):
        _, entry_id = self._run("INSERT INTO usage_entries (machine, member, minutes) VALUES (?, ?, ?)",
                                (machine, member, minutes), write=True)
        return entry_id, self.node

    def count_entries(self):
        return self._run("SELECT count(*) FROM usage_entries")[0][0]


def sqlite_migrate(url):
    path = sqlite_path(url)
    applied = []
    conn = sqlite_connect(path, create=True)
    try:
        # Persistent in the file: every later connection, and Litestream, sees WAL mode.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                     "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
        for migration in sorted(SQLITE_MIGRATIONS.glob("*.sql")):
            # BEGIN IMMEDIATE takes the write lock: two migrating processes apply each once.
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (migration.name,)).fetchone():
                    conn.execute("ROLLBACK")
                    continue
                for statement in _statements(migration.read_text(encoding="utf-8")):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (name) VALUES (?)", (migration.name,))
                conn.execute("COMMIT")
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise
            applied.append(migration.name)
    finally:
        conn.close()
    return applied


def _statements(script):
    """The statements of a migration file, one at a time (sqlite3's execute runs one;
    executescript would commit on its own). complete_statement keeps a ';' inside a
    string or trigger body where it belongs."""
    statement = ""
    for line in script.splitlines(keepends=True):
        if not statement and line.strip().startswith("--"):
            continue
        statement += line
        if sqlite3.complete_statement(statement):
            if statement.strip().rstrip(";").strip():
                yield statement
            statement = ""
    if statement.strip():
        yield statement
