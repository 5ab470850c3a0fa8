"""The speed-ups in the modules that move the primary: pg_fence's CHECKPOINT before a
switchover's stop (only a speed-up, never a reason to leave the old primary running) and
pg_promote's replication slots created before the promotion."""

import contextlib

from script_loader import load_script

fence = load_script("pg_fence_module", "library/pg_fence.py")


class FakeModule:
    def __init__(self):
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)


PARAMS = {"socket_dir": "/var/run/postgresql", "port": 5432}


def test_checkpoint_runs_over_the_local_socket(monkeypatch):
    seen = []

    class Conn:
        def execute(self, sql):
            seen.append(sql)

    @contextlib.contextmanager
    def connect(conninfo, connect_timeout=3):
        seen.append(dict(conninfo))
        yield Conn()

    monkeypatch.setattr(fence, "connect", connect)
    module = FakeModule()
    seconds = fence.checkpoint(module, PARAMS)
    assert isinstance(seconds, float) and seconds >= 0
    assert seen[0]["host"] == "/var/run/postgresql" and seen[-1] == "CHECKPOINT"
    assert not module.warnings


def test_failed_checkpoint_only_warns(monkeypatch):
    def connect(conninfo, connect_timeout=3):
        raise OSError("connection refused")

    monkeypatch.setattr(fence, "connect", connect)
    module = FakeModule()
    assert fence.checkpoint(module, PARAMS) is None
    assert "connection refused" in module.warnings[0]


promote = load_script("pg_promote_module", "library/pg_promote.py")


def test_promote_creates_only_missing_replica_slots(monkeypatch):
    executed = []

    class Conn:
        def execute(self, sql, params=None):
            executed.append((sql, params))

    existing = {"db3"}
    monkeypatch.setattr(promote, "query_one", lambda conn, sql, params: {"n": int(params[0] in existing)})
    assert promote.create_slots(Conn(), ["db3", "db-2", "db-2"]) == ["db_2"]
    assert executed == [("SELECT pg_create_physical_replication_slot(%s, true)", ("db_2",))]


def test_a_slot_the_replica_created_meanwhile_is_no_failure(monkeypatch):
    class Duplicate(Exception):
        sqlstate = "42710"

    class Conn:
        def execute(self, sql, params=None):
            if params == ("db3",):
                raise Duplicate('replication slot "db3" already exists')
            raise RuntimeError("disk full")

    monkeypatch.setattr(promote, "query_one", lambda conn, sql, params: {"n": 0})
    assert promote.create_slots(Conn(), ["db3"]) == []
    try:
        promote.create_slots(Conn(), ["db4"])
        raise AssertionError("another error was swallowed")
    except RuntimeError as exc:
        assert "disk full" in str(exc)
