"""roles/postgresql/files/hastack-pg-start-guard: the paths that need no peer database.
Fencing against a writable peer runs for real in molecule/ha."""

import importlib.machinery
import importlib.util
import pathlib
import sys

sys.dont_write_bytecode = True

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "roles/postgresql/files/hastack-pg-start-guard"
_loader = importlib.machinery.SourceFileLoader("start_guard", str(SCRIPT))
_spec = importlib.util.spec_from_loader("start_guard", _loader)
guard = importlib.util.module_from_spec(_spec)
_loader.exec_module(guard)


def test_a_standby_starts_without_asking_anyone(tmp_path):
    (tmp_path / "standby.signal").write_text("")
    # An address that would fail is never contacted.
    assert guard.main(["guard", str(tmp_path), "db1", "/nonexistent", "rewind", "db2=192.0.2.1:5432"]) == 0
    assert not (tmp_path / guard.MARKER).exists()


def test_a_primary_starts_as_primary_when_no_peer_answers(tmp_path, capsys):
    # Nothing listens on port 1: the peer is down, as after a whole-cluster power cut.
    assert guard.main(["guard", str(tmp_path), "db1", "/nonexistent", "rewind", "db2=127.0.0.1:1"]) == 0
    assert not (tmp_path / "standby.signal").exists()
    assert not (tmp_path / guard.MARKER).exists()
    assert "no answer from db2; starting db1 as primary" in capsys.readouterr().err
