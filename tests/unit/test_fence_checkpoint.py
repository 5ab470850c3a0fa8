"""pg_fence's CHECKPOINT before a switchover's stop: a speed-up only, never a reason to
leave the old primary running."""

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
