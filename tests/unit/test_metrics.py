"""hastack-metrics (roles/monitoring_agent): what a node's facts, the backup folders and the
VIP addresses become as Prometheus samples; hastack-event's alerts; the lab sinks."""

import datetime
import json
import os
import pathlib
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from script_loader import load_script

ROOT = pathlib.Path(__file__).resolve().parents[2]


metrics = load_script("hastack_metrics", ROOT / "roles/monitoring_agent/files/hastack_metrics.py")
event = load_script("hastack_event", ROOT / "roles/monitoring_agent/files/hastack-event")
sink = load_script("hastack_lab_sink", ROOT / "roles/lab_sinks/files/hastack_lab_sink.py")


def as_dict(samples):
    return {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}


PRIMARY = {"running": True, "role": "primary", "timeline": 3, "epoch": 4, "fenced": False, "recorded_primary": "db1",
           "quorum": True, "replay_backlog_bytes": 0, "replay_delay_seconds": 900.0,
           "replicas": [{"application_name": "db2", "state": "streaming", "replay_lag_bytes": 120},
                        {"application_name": "db3", "state": "catchup", "replay_lag_bytes": 9000}],
           "slots": [{"slot_name": "db2", "active": True, "retained_bytes": 4096},
                     {"slot_name": "hastack_backup", "active": False, "retained_bytes": 10}]}


def test_primary_is_writable_and_reports_its_replicas_and_slots():
    got = as_dict(metrics.db_samples(PRIMARY, 1 << 30))
    assert got[("hastack_pg_writable", ())] is True and got[("hastack_pg_in_recovery", ())] is False
    assert got[("hastack_pg_timeline", ())] == 3 and got[("hastack_pg_epoch", ())] == 4
    assert got[("hastack_pg_replicas_streaming", ())] == 1
    assert got[("hastack_pg_replica_replay_lag_bytes", (("replica", "db3"),))] == 9000
    assert got[("hastack_pg_slot_active", (("slot", "hastack_backup"),))] is False
    assert got[("hastack_pg_slot_retained_bytes", (("slot", "db2"),))] == 4096
    assert got[("hastack_pg_max_slot_wal_keep_size_bytes", ())] == 1 << 30
    # An idle primary: the age of the last replayed commit means nothing.
    assert got[("hastack_pg_replay_lag_seconds", ())] == 0
    assert got[("hastack_pg_recorded_primary", (("primary", "db1"),))] == 1


def test_streaming_replica_lags_only_while_wal_waits_for_replay():
    replica = {"running": True, "role": "replica", "timeline": 3, "epoch": 4, "wal_receiver": {"status": "streaming"},
               "replay_backlog_bytes": 0, "replay_delay_seconds": 600.0}
    idle = as_dict(metrics.db_samples(replica))
    assert idle[("hastack_pg_replica_streaming", ())] is True and idle[("hastack_pg_writable", ())] is False
    assert idle[("hastack_pg_replay_lag_seconds", ())] == 0
    busy = as_dict(metrics.db_samples(dict(replica, replay_backlog_bytes=5000, replay_delay_seconds=12.5)))
    assert busy[("hastack_pg_replay_lag_seconds", ())] == 12.5 and busy[("hastack_pg_replay_lag_bytes", ())] == 5000


def test_stopped_fenced_node_is_neither_writable_nor_streaming():
    node = {"running": False, "role": "stopped", "fenced": True, "epoch": 3, "timeline": 2}
    got = as_dict(metrics.db_samples(node))
    assert got[("hastack_pg_up", ())] is False and got[("hastack_pg_writable", ())] is False
    assert got[("hastack_pg_replica_streaming", ())] is False and got[("hastack_pg_fenced", ())] is True
    assert ("hastack_pg_replicas_streaming", ()) not in got


def test_render_writes_one_help_per_metric_and_escapes_labels():
    text = metrics.render([("m", {"a": 'x"y'}, True), ("m", {"a": "z"}, 2.5), ("n", {}, None), ("k", {}, 1 << 40)],
                          {"m": "help of m"})
    assert text.splitlines() == ["# HELP m help of m", "# TYPE m gauge", 'm{a="x\\"y"} 1', 'm{a="z"} 2.5',
                                 "# HELP k k", "# TYPE k gauge", "k 1099511627776"]


def test_held_addresses_from_ip_output():
    out = ("2: eth0    inet 198.18.8.11/24 brd 198.18.8.255 scope global eth0\\       valid_lft forever\n"
           "2: eth0    inet 198.18.8.100/24 scope global secondary eth0\\       valid_lft forever\n")
    assert metrics.held_addresses(out) == {"198.18.8.11", "198.18.8.100"}


def write_run(root, name, manifest, verify=None):
    folder = root / name
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if verify is not None:
        (folder / "verify.json").write_text(json.dumps(verify))


def test_backups_newest_success_failed_run_and_verification(tmp_path):
    write_run(tmp_path, "20261127T021500Z", {"ok": True, "ended": "2026-11-27T02:16:00+00:00"},
              {"verified": "2026-11-27T03:45:00+00:00", "ok": False})
    write_run(tmp_path, "20261128T021500Z", {"ok": False, "ended": "2026-11-28T02:16:00+00:00"})
    got = as_dict(metrics.dump_samples(str(tmp_path)))
    ended = datetime.datetime(2026, 11, 27, 2, 16, tzinfo=datetime.timezone.utc).timestamp()
    assert got[("hastack_backup_last_success_timestamp_seconds", ())] == ended
    assert got[("hastack_backup_last_run_ok", ())] is False and got[("hastack_backup_runs", ())] == 2
    assert got[("hastack_backup_verify_ok", ())] is False


def test_no_backup_yet_is_due_from_when_the_folder_was_made(tmp_path):
    os.utime(tmp_path, (1_000_000, 1_000_000))
    got = as_dict(metrics.dump_samples(str(tmp_path)))
    assert got[("hastack_backup_last_success_timestamp_seconds", ())] == 1_000_000
    assert ("hastack_backup_verify_ok", ()) not in got and ("hastack_backup_last_run_ok", ()) not in got


def test_archive_gaps_from_the_backup_roles_analysis(tmp_path):
    wal, base = tmp_path / "wal", tmp_path / "base"
    wal.mkdir()
    base.mkdir()
    for name in ("000000010000000000000001", "000000010000000000000002", "000000010000000000000004"):
        (wal / name).write_bytes(b"")
    got = as_dict(metrics.archive_samples(str(wal), str(base), str(ROOT / "roles/backup/files")))
    assert got[("hastack_wal_archive_gaps", ())] >= 1
    assert got[("hastack_wal_archive_newest_timestamp_seconds", ())] > 0


def test_a_failing_section_is_reported_and_the_others_still_written(monkeypatch):
    def broken(cfg):
        raise RuntimeError("no socket")

    monkeypatch.setitem(metrics.SECTIONS, "db", broken)
    got = as_dict(metrics.collect({"db": {"x": 1}, "litestream": {"litestream_lag_command": "no-such-command-here"}}))
    assert got[("hastack_metrics_section_ok", (("section", "db"),))] is False
    assert got[("hastack_metrics_section_ok", (("section", "litestream"),))] is True
    assert ("hastack_metrics_last_run_timestamp_seconds", ()) in got


def test_litestream_lag_and_an_unreadable_replica():
    out = "\n".join([json.dumps({"database": "/srv/a.db", "lag_seconds": 0}),
                     json.dumps({"database": "/srv/b.db", "error": "sftp: connection refused"}),
                     json.dumps({"database": "/srv/c.db", "lag_seconds": None}), "not json"])
    got = as_dict(metrics.litestream_samples(out))
    assert got[("hastack_litestream_lag_seconds", (("database", "/srv/a.db"),))] == 0
    assert got[("hastack_litestream_replica_ok", (("database", "/srv/a.db"),))] is True
    assert got[("hastack_litestream_replica_ok", (("database", "/srv/b.db"),))] is False
    assert got[("hastack_litestream_replica_ok", (("database", "/srv/c.db"),))] is False
    assert got[("hastack_litestream_lag_seconds", (("database", "/srv/b.db"),))] is None  # render() leaves it out


def test_vip_event_is_a_short_info_alert_and_records_the_state(tmp_path):
    now = datetime.datetime(2026, 11, 28, 10, 0, tzinfo=datetime.timezone.utc)
    alert = event.vip_event("hastack_db", "MASTER", "100", now, 300)
    assert alert["labels"]["alertname"] == "HastackVipTransition" and alert["labels"]["vip"] == "db"
    assert alert["labels"]["severity"] == "info" and alert["labels"]["state"] == "MASTER"
    assert alert["endsAt"] == "2026-11-28T10:05:00+00:00"
    event.record_state(str(tmp_path / "state"), "hastack_db", "BACKUP")
    assert (tmp_path / "state" / "hastack_db.state").read_text() == "BACKUP\n"


def test_event_is_posted_to_alertmanager_and_a_dead_one_is_skipped(tmp_path):
    sink_dir = tmp_path / "hooks"
    sink_dir.mkdir()
    server = sink.http.server.ThreadingHTTPServer(("127.0.0.1", 0), sink.webhook_handler(str(sink_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        alive = "http://127.0.0.1:%d" % server.server_address[1]
        alerts = [event.alert("HastackFailover", "done", {"primary": "db2"}, datetime.datetime.now(datetime.UTC), 60)]
        assert event.post(["http://127.0.0.1:9", "ftp://x", alive], alerts, 2) == 1
        [stored] = list(sink_dir.iterdir())
        assert json.loads(stored.read_text())[0]["labels"]["primary"] == "db2"
        assert event.post([alive + "/"], alerts, 2) == 1
        assert len(list(sink_dir.iterdir())) == 2
    finally:
        server.shutdown()


def test_certificate_ends_are_exported_and_missing_files_skipped(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db1")])
    not_after = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
            .not_valid_after(not_after).sign(key, hashes.SHA256()))
    pem = tmp_path / "server.crt"
    # HAProxy's file: the certificate, then its key.
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    got = as_dict(metrics.collect_certificates({"paths": [str(pem), str(tmp_path / "missing.crt")]}))
    assert got == {("hastack_tls_certificate_not_after_timestamp_seconds", (("path", str(pem)),)):
                   not_after.timestamp()}
