"""roles/backup/files/hastack-backup: retention, freshness and the choice of dump, on
backup folders made here. Dumps, restores and verification run for real in molecule/backup."""

import datetime
import importlib.machinery
import importlib.util
import json
import pathlib
import sys

sys.dont_write_bytecode = True

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "roles/backup/files/hastack-backup"
_loader = importlib.machinery.SourceFileLoader("hastack_backup", str(SCRIPT))
backup = importlib.util.module_from_spec(importlib.util.spec_from_loader("hastack_backup", _loader))
_loader.exec_module(backup)

NOW = datetime.datetime.now(datetime.timezone.utc)


def make(root, days_ago, ok=True, verified=None):
    taken = NOW - datetime.timedelta(days=days_ago)
    name = taken.strftime(backup.STAMP)
    folder = root / name
    folder.mkdir()
    manifest = {"started": taken.isoformat(), "ended": taken.isoformat(), "ok": ok, "source": {"node": "db1"},
                "parts": [{"name": "database app", "database": "app", "ok": ok, "file": "app.dump", "size": 1,
                           "sha256": "x", "row_counts": {"public.t": 3}}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if verified is not None:
        (folder / "verify.json").write_text(json.dumps({"ok": verified}))
    return name


def cfg(root, **kw):
    return {"dump_root": str(root), "keep_count": 3, "keep_days": 0, "max_age_hours": 26, "databases": ["app"], **kw}


def test_retention_keeps_exactly_the_newest_n(tmp_path):
    names = [make(tmp_path, days) for days in (9, 8, 7, 6, 5)]
    removed = backup.prune(cfg(tmp_path))
    assert sorted(removed) == sorted(names[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


def test_retention_keeps_everything_younger_than_keep_days(tmp_path):
    names = [make(tmp_path, days) for days in (9, 4, 3, 2, 1)]
    assert backup.prune(cfg(tmp_path, keep_count=1, keep_days=6)) == [names[0]]


def test_retention_never_removes_the_newest_successful_backup(tmp_path):
    good = make(tmp_path, 10)
    for days in (3, 2, 1):
        make(tmp_path, days, ok=False)
    backup.prune(cfg(tmp_path, keep_count=1))
    assert good in {p.name for p in tmp_path.iterdir()}


def test_freshness_check(tmp_path, capsys):
    assert backup.cmd_check(cfg(tmp_path)) == 2
    assert "no successful backup" in capsys.readouterr().out
    make(tmp_path, 2)
    assert backup.cmd_check(cfg(tmp_path)) == 2
    assert "48." in capsys.readouterr().out
    make(tmp_path, 0, ok=False)
    assert backup.cmd_check(cfg(tmp_path)) == 2  # a newer failed backup does not count
    make(tmp_path, 0.5)
    assert backup.cmd_check(cfg(tmp_path)) == 0


def test_locate_prefers_the_newest_verified_dump(tmp_path, capsys):
    older = make(tmp_path, 3, verified=True)
    make(tmp_path, 2, verified=False)
    make(tmp_path, 1)
    assert backup.cmd_locate(cfg(tmp_path)) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["backup"], found["verified"], found["row_counts"]) == (older, True, {"public.t": 3})
    assert backup.cmd_locate(cfg(tmp_path), "19990101T000000Z") == 1


def test_offsite_copies_are_skipped_when_not_configured(tmp_path, monkeypatch):
    def no_command(*args, **kwargs):
        raise AssertionError("nothing may run: %s" % (args,))
    monkeypatch.setattr(backup.subprocess, "run", no_command)
    backup.offsite(cfg(tmp_path, offsite_rsync_target="", webdav_url=""), "20261127T000000Z")
