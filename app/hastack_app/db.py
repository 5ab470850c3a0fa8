"""PostgreSQL access for the reference app (psycopg 3 with a connection pool)."""

import pathlib

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


class Store:
    def __init__(self, url, pool_size=4):
        if url.startswith("sqlite:"):
            raise NotImplementedError("DATABASE_URL=sqlite:... is served by the SQLite (Litestream) setup, "
                                      "not by this build; use a postgresql:// URL")
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("DATABASE_URL must be a postgresql:// URL")
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
        return {"role": "replica" if in_recovery else "primary", "node": node}

    def add_entry(self, machine, member, minutes):
        """(id, node that committed it); pool.connection() commits when the block ends and
        raises if COMMIT fails."""
        return tuple(self._run("INSERT INTO usage_entries (machine, member, minutes) VALUES (%s, %s, %s) "
                               "RETURNING id, current_setting('hastack.node', true)", (machine, member, minutes)))

    def count_entries(self):
        return self._run("SELECT count(*) FROM usage_entries")[0]


def migrate(url):
    """Apply migrations/NNN_*.sql once each, in order; returns the names applied."""
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
