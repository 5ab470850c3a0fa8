"""The speed-ups in the modules that move the primary: pg_fence's CHECKPOINT before a
switchover's stop (only a speed-up, never a reason to leave the old primary running) and
pg_promote's replication slots created before the promotion."""

import contextlib

import pytest

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


# switchover.yml promotes at the same time as the stop: pg_promote waits for the old
# primary's shutdown checkpoint to be the last record it received and replayed.
WALDUMP_TAIL = """\
rmgr: Heap        len (rec/tot):     71/    71, tx:      59443, lsn: 0/070A8778, prev 0/070A8750, desc: INSERT off 181
rmgr: Standby     len (rec/tot):     50/    50, tx:          0, lsn: 0/070A87C0, prev 0/070A8778, desc: RUNNING_XACTS
rmgr: XLOG        len (rec/tot):    114/   114, tx:          0, lsn: 0/070A8800, prev 0/070A87C0, desc: \
CHECKPOINT_SHUTDOWN redo 0/70A8800; tli 5; prev tli 5; fpw true; xid 0:59444; oid 24586; shutdown
"""


def test_last_wal_record_is_the_last_line_pg_waldump_printed():
    assert promote.last_wal_record(WALDUMP_TAIL) == ("0/070A8800", "CHECKPOINT_SHUTDOWN")
    assert promote.last_wal_record("pg_waldump: error: could not find a valid record after 0/7000000\n") == (None, None)


def test_the_newest_timeline_holding_a_position(tmp_path):
    for name in ("000000050000000000000007", "000000060000000000000007", "000000060000000000000008",
                 "000000060000000000000007.partial", "archive_status"):
        (tmp_path / name).touch()
    size = 16 * 1024 ** 2
    assert promote.newest_timeline_of_segment(str(tmp_path), 0x070A8828, size) == 6
    assert promote.newest_timeline_of_segment(str(tmp_path), 0x0600_0000, size) is None


class StandbyModule:
    """A standby whose stream ends after `streaming` polls; pg_waldump prints `tail`."""

    def __init__(self, tmp_path, tail, streaming=2, replay="0/70A8878"):
        (tmp_path / "pg_wal").mkdir()
        (tmp_path / "pg_wal" / "000000050000000000000007").touch()
        self.params = {"data_directory": str(tmp_path), "bin_dir": "/usr/lib/postgresql/15/bin"}
        self.tail, self.streaming, self.replay, self.commands = tail, streaming, replay, []

    def query(self, conn, sql):
        if "wal_segment_size" in sql:
            return {"bytes": 16 * 1024 ** 2}
        self.streaming -= 1
        return {"replay": self.replay, "receive": self.replay,
                "receiver": "streaming" if self.streaming >= 0 else None}

    def run_command(self, argv):
        self.commands.append(argv)
        return 0, self.tail, ""


def test_promotion_waits_for_the_stream_to_end_on_a_new_shutdown_checkpoint(tmp_path, monkeypatch):
    module = StandbyModule(tmp_path, WALDUMP_TAIL)
    monkeypatch.setattr(promote, "query_one", module.query)
    monkeypatch.setattr(promote.time, "sleep", lambda seconds: None)
    assert promote.wait_shutdown_checkpoint(module, None, "0/70A0000", float("inf")) == "0/70A8800"
    assert module.streaming < 0, "promoted while the primary still streamed"
    # pg_waldump only once the stream ended, on the timeline of the newest segment file.
    assert len(module.commands) == 1 and module.commands[0][-4:] == ["-s", "0/70A4000", "-e", "0/70A8878"]
    assert module.commands[0][3:5] == ["-t", "5"]


def test_no_promotion_on_an_old_shutdown_checkpoint_or_after_a_crash(tmp_path, monkeypatch):
    clock = iter(range(1000))
    monkeypatch.setattr(promote.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(promote.time, "sleep", lambda seconds: None)
    # The checkpoint is older than the primary's position before the stop (a restart long ago).
    module = StandbyModule(tmp_path, WALDUMP_TAIL, streaming=0)
    monkeypatch.setattr(promote, "query_one", module.query)
    with pytest.raises(TimeoutError) as old_checkpoint:
        promote.wait_shutdown_checkpoint(module, None, "0/70A8850", 5)
    assert "CHECKPOINT_SHUTDOWN at 0/070A8800" in old_checkpoint.value.args[0]
    # The stream ended without one (the primary was killed): never promoted.
    crashed = WALDUMP_TAIL.rsplit("rmgr: XLOG", 1)[0]
    other = tmp_path / "crash"
    other.mkdir()
    module = StandbyModule(other, crashed, streaming=0)
    monkeypatch.setattr(promote, "query_one", module.query)
    with pytest.raises(TimeoutError) as crash:
        promote.wait_shutdown_checkpoint(module, None, "0/70A0000", 10)
    assert "RUNNING_XACTS" in crash.value.args[0]


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
    with pytest.raises(RuntimeError, match="disk full"):
        promote.create_slots(Conn(), ["db4"])


# pg_resync returns once the node streams, not when systemd's start of PostgreSQL returns
# (Debian's pg_ctlcluster probes a running server for ~2 s more), and a start that fails
# ends the wait at once.
resync = load_script("pg_resync_module", "library/pg_resync.py")


class Starting:
    def __init__(self, rc=None, stderr=""):
        self.rc, self.stderr = rc, stderr

    def poll(self):
        return self.rc

    def communicate(self):
        return "", self.stderr


def resync_with(rows):
    job = object.__new__(resync.Resync)
    job.p = {"primary_host": "198.18.0.11", "service": "postgresql@15-main"}
    answers = iter(rows)
    job.streaming = lambda: next(answers, rows[-1])
    return job


def test_resync_returns_when_it_streams_while_the_start_still_runs():
    job = resync_with([None, {"status": "streaming", "sender_host": "198.18.0.11"}])
    ok, row = job.wait_streaming(5, Starting(rc=None))
    assert ok and row["sender_host"] == "198.18.0.11"


def test_resync_stops_waiting_when_the_start_failed():
    job = resync_with([None])
    polls = []
    job.streaming = lambda: polls.append(1)
    with pytest.raises(resync.ResyncError, match="Job for postgresql@15-main.service failed"):
        job.wait_streaming(30, Starting(rc=1, stderr="Job for postgresql@15-main.service failed.\n"))
    assert len(polls) == 1  # not polled on until the timeout


def test_resync_streaming_from_another_host_is_not_enough():
    job = resync_with([{"status": "streaming", "sender_host": "198.18.0.12"}])
    ok, _ = job.wait_streaming(0.2, Starting(rc=0))
    assert not ok
