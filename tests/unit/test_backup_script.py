"""roles/backup/files/hastack-backup: retention, freshness and the choice of dump, on
backup folders made here. Dumps, restores and verification run for real in molecule/backup."""

import datetime
import json
import os
import sys

from script_loader import load_script

sys.dont_write_bytecode = True

backup = load_script("hastack_backup", "roles/backup/files/hastack-backup")

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


def test_freshness_check(tmp_path):
    make(tmp_path, 2)
    level, message = backup.check_dumps(cfg(tmp_path))
    assert level == backup.CRITICAL and "48." in message
    make(tmp_path, 0, ok=False)
    assert backup.check_dumps(cfg(tmp_path))[0] == backup.CRITICAL  # a newer failed backup does not count
    make(tmp_path, 0.5)
    assert backup.check_dumps(cfg(tmp_path))[0] == backup.OK


def test_a_fresh_cluster_without_a_backup_is_a_warning_with_the_first_run(tmp_path):
    level, message = backup.check_dumps(cfg(tmp_path, dump_schedule="15 2 * * *"))
    assert level == backup.WARNING
    assert message.startswith("no backup yet: the first runs at ")
    assert " 02:15 host time (schedule 15 2 * * *)" in message
    old = (NOW - datetime.timedelta(hours=30)).timestamp()
    os.utime(tmp_path, (old, old))  # the role made the folder 30 h ago: a run should have happened
    level, message = backup.check_dumps(cfg(tmp_path, dump_schedule="15 2 * * *"))
    assert level == backup.CRITICAL and "no successful backup" in message


def test_a_failed_first_run_is_critical_even_on_a_fresh_cluster(tmp_path):
    make(tmp_path, 0, ok=False)
    assert backup.check_dumps(cfg(tmp_path))[0] == backup.CRITICAL


def test_next_run_of_a_cron_schedule():
    monday = datetime.datetime(2026, 11, 30, 3, 0)
    assert backup.next_run("15 2 * * *", monday) == datetime.datetime(2026, 12, 1, 2, 15)
    assert backup.next_run("30 1 * * 0", monday) == datetime.datetime(2026, 12, 6, 1, 30)  # Sunday
    assert backup.next_run("*/20 * * * *", monday) == datetime.datetime(2026, 11, 30, 3, 20)
    assert backup.next_run("not cron", monday) is None
    assert backup.describe_schedule("0 3 * * mon", monday) == "? host time (schedule 0 3 * * mon)"


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


# ------------------------------------------------------------------ the WAL archive's gap detection
wal = backup.hastack_wal


def seg(tli, segno, partial=False):
    return wal.segment_name(tli, segno) + (".partial" if partial else "")


def history(*switches):
    """A <TLI>.history text: (parent tli, segment number the parent ended in)."""
    return "".join("%d\t0/%X\tno recovery target specified\n" % (tli, segno * wal.DEFAULT_SEGMENT_SIZE + 0x60)
                   for tli, segno in switches)


def test_segment_names_round_trip_across_the_xlogid_boundary():
    assert seg(1, 255) == "0000000100000000000000FF"
    assert seg(1, 256) == "000000010000000100000000"
    assert wal.parse_name("000000020000000100000003.partial") == ("partial", 2, 259)
    assert wal.parse_name("00000002.history") == ("history", 2, None)
    assert wal.parse_name("something.else") is None


def test_a_complete_archive_has_no_gap_and_the_partial_newest_is_fine():
    names = [seg(1, s) for s in range(2, 6)] + [seg(1, 6, partial=True)]
    report = wal.analyse(names, {})
    assert report["problems"] == []
    assert (report["newest"], report["newest_tli"], report["start_segno"]) == (seg(1, 6) + ".partial", 1, 2)


def test_a_deleted_segment_in_the_middle_is_a_gap():
    names = [seg(1, s) for s in (2, 3, 5, 6)]
    assert wal.analyse(names, {})["problems"] == ["gap: %s missing" % seg(1, 4)]
    names = [seg(1, s) for s in (2, 6, 7)]
    assert wal.analyse(names, {})["problems"] == ["gap: 3 segments %s .. %s missing" % (seg(1, 3), seg(1, 5))]


def test_a_partial_segment_in_the_middle_is_a_gap():
    names = [seg(1, 2), seg(1, 3, partial=True), seg(1, 4)]
    assert wal.analyse(names, {})["problems"] == [
        "gap: %s is only partial (the archiver stopped inside it and did not finish it)" % seg(1, 3)]


def test_the_archive_crosses_a_failover_without_a_gap():
    # Timeline 1 ended inside segment 5: its .partial stays, timeline 2 has 5 from its start.
    names = [seg(1, s) for s in range(2, 5)] + [seg(1, 5, partial=True), "00000002.history"]
    names += [seg(2, s) for s in range(5, 8)] + [seg(2, 8, partial=True)]
    report = wal.analyse(names, {2: history((1, 5))}, start=(1, 3))
    assert report["problems"] == []
    assert (report["newest"], report["newest_tli"]) == (seg(2, 8) + ".partial", 2)


def test_the_first_segment_of_the_new_timeline_is_needed_not_the_old_partial():
    names = [seg(1, s) for s in range(2, 5)] + [seg(1, 5, partial=True), "00000002.history", seg(2, 6)]
    assert wal.analyse(names, {2: history((1, 5))})["problems"] == ["gap: %s missing" % seg(2, 5)]


def test_wal_of_a_former_primary_after_the_fork_is_not_needed_and_not_counted():
    # The old primary wrote segments 6 and 7 on timeline 1 after timeline 2 forked in 5.
    names = [seg(1, s) for s in range(2, 8)] + ["00000002.history", seg(2, 5), seg(2, 6, partial=True)]
    report = wal.analyse(names, {2: history((1, 5))})
    assert report["problems"] == [] and report["newest"] == seg(2, 6) + ".partial"


def test_timelines_several_failovers_deep_with_a_gap_on_the_middle_one():
    histories = {3: history((1, 4), (2, 9))}
    names = ["00000002.history", "00000003.history"] + [seg(1, s) for s in range(2, 4)]
    names += [seg(2, s) for s in range(4, 9) if s != 7] + [seg(3, s) for s in range(9, 12)]
    assert wal.analyse(names, histories, start=(1, 2))["problems"] == ["gap: %s missing" % seg(2, 7)]


def test_a_missing_history_file_is_reported():
    names = [seg(1, 2), seg(2, 3)]
    assert wal.analyse(names, {})["problems"] == [
        "the history file 00000002.history of the newest timeline 2 is missing"]


def test_wal_the_newest_base_backup_needs_before_the_archive_starts_is_a_gap():
    names = [seg(1, s) for s in range(5, 8)]
    assert wal.analyse(names, {}, start=(1, 3))["problems"] == [
        "gap: 2 segments %s .. %s missing" % (seg(1, 3), seg(1, 4))]


def test_a_base_backup_from_a_diverged_timeline_is_reported():
    # Timeline 3 forked from 1 in segment 5; timeline 2 (and a base backup on it) diverged.
    names = ["00000003.history", seg(1, 4), seg(3, 5), seg(3, 6)]
    problems = wal.analyse(names, {3: history((1, 5))}, start=(2, 6))["problems"]
    assert problems == ["the newest base backup starts on timeline 2, which is not in the history of "
                        "timeline 3: it cannot be recovered with this archive"]
    assert wal.analyse(names, {3: history((1, 5))}, start=(1, 6))["problems"][0].startswith(
        "the newest base backup starts on timeline 1")


def test_an_empty_archive_is_reported():
    assert wal.analyse(["archive_status"], {})["problems"] == ["the archive is empty"]


def test_the_start_of_a_base_backup_comes_from_its_label():
    label = ("START WAL LOCATION: 0/3000028 (file 000000020000000000000003)\n"
             "CHECKPOINT LOCATION: 0/3000060\nSTART TIMELINE: 2\n")
    assert wal.base_backup_start(label) == (2, 3)
    assert wal.base_backup_start("nonsense") is None


def archive_cfg(tmp_path, names, state="active", primary=("000000010000000000000006", "streaming"), base=None):
    (tmp_path / "wal").mkdir()
    (tmp_path / "base").mkdir()
    for name in names:
        (tmp_path / "wal" / name).write_bytes(b"")
    if base:
        (tmp_path / "base" / "20261127T013000Z").mkdir()
        (tmp_path / "base" / "20261127T013000Z" / "backup_label").write_text(
            "START WAL LOCATION: 0/%X (file %s)\n" % (base[1] << 24, seg(*base)))
    return cfg(tmp_path, wal_root=str(tmp_path / "wal"), base_root=str(tmp_path / "base"), db_host="198.18.5.100",
               base_schedule="30 1 * * 0"), state, primary


def run_archive_check(monkeypatch, setup):
    config, state, primary = setup
    monkeypatch.setattr(backup, "archiver_state", lambda: {"ActiveState": state, "Result": "exit-code",
                                                           "NRestarts": "12"})
    monkeypatch.setattr(backup, "archiver_last_error", lambda: "pg_receivewal: error: could not connect")
    monkeypatch.setattr(backup, "primary_wal", lambda cfg: primary)
    monkeypatch.setattr(backup.time, "sleep", lambda seconds: None)
    return backup.check_archive(config)


def test_archive_check_healthy(tmp_path, monkeypatch):
    found = run_archive_check(monkeypatch, archive_cfg(tmp_path, [seg(1, 3), seg(1, 4, True)], base=(1, 3)))
    assert [level for level, _ in found] == [backup.OK]
    assert "newest %s.partial (timeline 1), no gap since base backup 20261127T013000Z" % seg(1, 4) in found[0][1]


def test_archive_check_a_stopped_archiver_is_critical(tmp_path, monkeypatch):
    found = run_archive_check(monkeypatch, archive_cfg(tmp_path, [seg(1, 3)], state="failed", base=(1, 3)))
    assert found[0][0] == backup.CRITICAL and "is failed" in found[0][1] and "systemctl restart" in found[0][1]


def test_archive_check_an_archiver_that_does_not_stream_is_critical(tmp_path, monkeypatch):
    found = run_archive_check(monkeypatch, archive_cfg(tmp_path, [seg(1, 3)], state="activating",
                                                       primary=("000000010000000000000003", None), base=(1, 3)))
    assert found[0][0] == backup.CRITICAL
    assert "not streaming" in found[0][1] and "restarted 12 times" in found[0][1] and "could not connect" in found[0][1]


def test_archive_check_a_gap_is_critical(tmp_path, monkeypatch):
    found = run_archive_check(monkeypatch, archive_cfg(tmp_path, [seg(1, 3), seg(1, 5)], base=(1, 3)))
    assert found[0][0] == backup.CRITICAL and found[0][1].startswith("gap: %s missing" % seg(1, 4))
    assert "hastack-backup base" in found[0][1]


def test_archive_check_a_stale_archive_while_the_primary_writes_is_critical(tmp_path, monkeypatch):
    setup = archive_cfg(tmp_path, [seg(1, 3), seg(1, 4, True)], base=(1, 3))
    old = (NOW - datetime.timedelta(minutes=40)).timestamp()
    for path in (tmp_path / "wal").iterdir():
        os.utime(path, (old, old))
    found = run_archive_check(monkeypatch, setup)
    assert [level for level, _ in found] == [backup.CRITICAL] and "40 min old while the primary writes" in found[0][1]
    # An idle primary (nothing newer to archive) is not stale.
    setup = (setup[0], "active", (seg(1, 4), "streaming"))
    assert [level for level, _ in run_archive_check(monkeypatch, setup)] == [backup.OK]


def test_archive_check_no_base_backup_yet_is_a_warning(tmp_path, monkeypatch):
    found = run_archive_check(monkeypatch, archive_cfg(tmp_path, [seg(1, 3), seg(1, 4, True)]))
    assert sorted(level for level, _ in found) == [backup.OK, backup.WARNING]
    assert any(m.startswith("no base backup yet") and "(schedule 30 1 * * 0)" in m for _, m in found)


# ------------------------------------------------------------------ WebDAV upload and retention there
MULTISTATUS = """<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:">
<D:response><D:href>/dav/hastack/</D:href></D:response>
<D:response><D:href>/dav/hastack/20261101T021500Z/</D:href></D:response>
<D:response><D:href>/dav/hastack/20261102T021500Z/</D:href></D:response>
<D:response><D:href>/dav/hastack/notes%20and%20such/</D:href></D:response>
</D:multistatus>"""


def test_the_backup_runs_a_propfind_lists_are_found():
    assert backup.stamped_collections(MULTISTATUS) == ["20261101T021500Z", "20261102T021500Z"]


def fake_dav(answers):
    calls = []

    def dav(cfg, method, url, upload=None, depth=None, destination=None):
        calls.append((method, url) if destination is None else (method, url, destination))
        answer = answers.get(method, 201)
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, tuple) else (answer, "")
    return dav, calls


def test_webdav_uploads_the_run_and_removes_there_what_retention_removed_here(tmp_path, monkeypatch):
    kept = make(tmp_path, 0)
    (tmp_path / kept / "app.dump").write_bytes(b"x")
    dav, calls = fake_dav({"PROPFIND": (207, MULTISTATUS.replace("20261102T021500Z", kept)), "DELETE": 204})
    monkeypatch.setattr(backup, "dav", dav)
    results = backup.offsite(cfg(tmp_path, webdav_url="http://dav.example/dav/hastack/"), kept)
    assert results == {"webdav": {"target": "http://dav.example/dav/hastack/", "ok": True,
                                  "removed": ["20261101T021500Z"]}}
    partial = f"http://dav.example/dav/hastack/.{kept}.partial/"
    assert calls == [("MKCOL", "http://dav.example/dav/hastack/"),
                     ("DELETE", partial),  # a crashed earlier upload of the same run
                     ("MKCOL", partial),
                     ("PUT", partial + "app.dump"),
                     ("PUT", partial + "manifest.json"),
                     ("MOVE", partial, f"http://dav.example/dav/hastack/{kept}/"),
                     ("PROPFIND", "http://dav.example/dav/hastack/"),
                     ("DELETE", "http://dav.example/dav/hastack/20261101T021500Z/")]


def offsite_to_webdav(tmp_path, monkeypatch, name, answers):
    """The WebDAV result of backup name's offsite copy against a server answering
    answers, and the requests made."""
    dav, calls = fake_dav(answers)
    monkeypatch.setattr(backup, "dav", dav)
    return backup.offsite(cfg(tmp_path, webdav_url="http://dav.example/h"), name)["webdav"], calls


def test_a_refusing_or_unreachable_webdav_server_is_reported_not_raised(tmp_path, monkeypatch):
    name = make(tmp_path, 0)
    result, calls = offsite_to_webdav(tmp_path, monkeypatch, name, {"MKCOL": 401})
    assert result["ok"] is False and "HTTP 401 (check backup_webdav_user/backup_webdav_password)" in result["error"]
    assert calls == [("MKCOL", "http://dav.example/h/")]  # nothing deleted after a refusal
    result, _ = offsite_to_webdav(tmp_path, monkeypatch, name, {
        "MKCOL": RuntimeError("WebDAV MKCOL http://dav.example/h/ failed: Failed to connect")})
    assert result["ok"] is False and "Failed to connect" in result["error"]


def test_a_failed_upload_removes_its_partial_collection(tmp_path, monkeypatch):
    name = make(tmp_path, 0)
    result, calls = offsite_to_webdav(tmp_path, monkeypatch, name, {"PUT": 507})
    assert result["ok"] is False and "HTTP 507 (the WebDAV storage is full" in result["error"]
    assert calls[-1] == ("DELETE", f"http://dav.example/h/.{name}.partial/")
    assert not any(call[0] == "MOVE" for call in calls)


def test_the_offsite_outcome_goes_into_the_runs_manifest(tmp_path):
    name = make(tmp_path, 0)
    manifest = json.loads((tmp_path / name / "manifest.json").read_text())
    backup.record_offsite(cfg(tmp_path), name, manifest, {"webdav": {"ok": False, "error": "HTTP 401"}})
    written = json.loads((tmp_path / name / "manifest.json").read_text())
    assert written["offsite"] == {"webdav": {"ok": False, "error": "HTTP 401"}} and written["ok"] is True


# ------------------------------------------------------------------ SQLite mode
def sqlite_setup(tmp_path, restore_exit=0):
    """A SQLite database, and a stand-in for `litestream restore -json -o OUT URL` that
    copies it (the real binary restores the real replica in molecule/sqlite)."""
    import sqlite3  # noqa: PLC0415

    source = tmp_path / "live.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO entries (body) VALUES (?)", [("é%d" % i,) for i in range(250)])
        conn.execute('CREATE TABLE "odd ""name""" (x)')
    stub = tmp_path / "litestream"
    stub.write_text("#!/bin/sh\n[ %d -eq 0 ] || { echo 'no snapshots available' >&2; exit %d; }\n"
                    'cp %s "$4"\necho \'{"txid": "00000000000000a1"}\'\n' % (restore_exit, restore_exit, source))
    stub.chmod(0o755)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    return {**cfg(dumps), "mode": "sqlite", "litestream_bin": str(stub), "files_sources": [],
            "sqlite_replicas": [{"name": "app", "replica": str(tmp_path / "replica")}]}


def test_sqlite_mode_copies_the_replica_with_its_row_counts_and_verifies_it(tmp_path):
    conf = sqlite_setup(tmp_path)
    name, manifest = backup.dump(conf)
    assert manifest["ok"], manifest
    assert [part["name"] for part in manifest["parts"]] == ["database app (SQLite)"]
    part = manifest["parts"][0]
    assert part["kind"] == "sqlite" and part["txid"] == "00000000000000a1"
    assert part["row_counts"] == {"entries": 250, 'odd "name"': 0}
    assert manifest["source"] == {"mode": "sqlite", "replicas": ["file://" + str(tmp_path / "replica")]}
    assert backup.verify_run(conf, name, manifest) == []


def test_sqlite_mode_verify_catches_a_copy_that_lost_rows(tmp_path):
    conf = sqlite_setup(tmp_path)
    name, manifest = backup.dump(conf)
    manifest["parts"][0]["row_counts"]["entries"] = 251
    assert backup.verify_run(conf, name, manifest) == [
        "database app (SQLite): table entries has 250 rows in the copy, the manifest says 251"]


def test_sqlite_mode_records_a_failed_restore_and_keeps_no_half_copy(tmp_path):
    conf = sqlite_setup(tmp_path, restore_exit=1)
    name, manifest = backup.dump(conf)
    assert not manifest["ok"]
    assert "no snapshots available" in manifest["parts"][0]["error"]
    assert sorted(p.name for p in (tmp_path / "dumps" / name).iterdir()) == ["manifest.json"]


def test_sqlite_mode_refuses_the_postgresql_commands(tmp_path, capsys):
    conf = sqlite_setup(tmp_path)
    assert backup.cmd_base(conf) == 2
    assert backup.cmd_pitr(conf, "2026-11-28T10:00:00Z") == 2
    assert "litestream restore -timestamp" in capsys.readouterr().out
