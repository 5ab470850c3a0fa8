"""roles/postgresql/files/hastack-pg-start-guard: starts writable only with a majority's
consent, read-only otherwise (fails closed). The cluster-wide behaviour runs for real in
molecule/drills (cold start of every host, old primary restarted alone)."""

import json
import pathlib
import sys
import time

import pytest

from script_loader import load_script

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.dont_write_bytecode = True
sys.path.insert(0, str(ROOT / "module_utils"))
import hastack_quorum  # noqa: E402

SCRIPT = ROOT / "roles/postgresql/files/hastack-pg-start-guard"
guard = load_script("start_guard", SCRIPT)


@pytest.fixture()
def node(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setattr(hastack_quorum, "SENTINEL_STATE_FILE", str(tmp_path / "sentinel.json"))
    monkeypatch.setattr(guard, "CLUSTER_STATE_FILE", str(tmp_path / "cluster.json"))

    def setup(record=None, peers=None):
        if record:
            (tmp_path / "cluster.json").write_text(json.dumps(record))
        if peers is not None:
            (tmp_path / "sentinel.json").write_text(json.dumps({
                "now": time.monotonic(), "interval": 0.2, "lease": 1.0, "members": ["db1", "db2", "db3"],
                "peers": {m: dict({"age": 0.1, "e": 5, "w": False}, **p) for m, p in peers.items()}}))
        return data
    return setup


def read_only(data):
    return (data / "standby.signal").exists() and (data / guard.MARKER).exists()


def test_a_standby_starts_without_waiting(node):
    data = node()
    (data / "standby.signal").write_text("")
    started = time.monotonic()
    assert guard.main(["guard", str(data), "db1", "30"]) == 0
    assert time.monotonic() - started < 1 and not (data / guard.MARKER).exists()


def test_the_recorded_primary_starts_writable_when_a_majority_agrees(node):
    data = node({"epoch": 5, "primary": "db1"}, {"db2": {}})
    assert guard.main(["guard", str(data), "db1", "5"]) == 0
    assert not (data / "standby.signal").exists()


def test_no_majority_in_time_starts_read_only(node, capsys):
    data = node({"epoch": 5, "primary": "db1"}, {})
    assert guard.main(["guard", str(data), "db1", "0.5"]) == 0
    assert read_only(data)
    assert "no majority within" in capsys.readouterr().err


def test_a_newer_epoch_or_a_writable_member_starts_it_read_only(node):
    data = node({"epoch": 5, "primary": "db1"}, {"db2": {"e": 6}})
    guard.main(["guard", str(data), "db1", "5"])
    assert read_only(data)


def test_a_fenced_node_stays_read_only_whatever_the_cluster_says(node):
    data = node({"epoch": 5, "primary": "db1"}, {"db2": {}, "db3": {}})
    (data / guard.MARKER).write_text("{}")
    guard.main(["guard", str(data), "db1", "5"])
    assert (data / "standby.signal").exists()


def test_an_error_fails_closed(node, monkeypatch):
    data = node({"epoch": 5, "primary": "db1"}, {"db2": {}})
    monkeypatch.setattr(hastack_quorum, "start_decision", lambda *a: 1 / 0)
    guard.main(["guard", str(data), "db1", "5"])
    assert read_only(data)
