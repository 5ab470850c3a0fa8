"""The SQLite path on real hosts: only the active app server runs the app and Litestream,
rows written through the app reach the sftp replica on the backup host and restore
elsewhere intact, and the lag probe tells a current replica from a stalled one. The tests
run in order on one converge."""

import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from hastack_testlib import holds, playbook, recap_changed, sh, wait_until

ACTIVE, STANDBY, BACKUP = "sq-app1", "sq-app2", "sq-backup1"
ACTIVE_URL = "http://198.18.7.21:8000"
STANDBY_URL = "http://198.18.7.22:8000"
APP_VIP = "198.18.7.101"
DB = "/var/lib/hastack-app/app.db"
RESTORED = "/tmp/restored.db"


def flat(result):
    return " ".join(result.stdout.split())


def http(method, path, body=None, base=ACTIVE_URL):
    request = urllib.request.Request(base + path, method=method, data=body and json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status, json.loads(response.read())


def post_entries(count):
    for i in range(count):
        status, reply = http("POST", "/api/entries", {"machine": "lathe", "member": f"m{i}", "minutes": 3})
        assert status == 201, reply
    return http("GET", "/api/entries/count")[1]["count"]


def restore_on(node):
    """(rows, integrity) of the newest replica restored on node, or None if the restore failed."""
    result = sh(node, f"rm -f {RESTORED}* && litestream restore -config /etc/litestream.yml -no-expand-env "
                      f"-o {RESTORED} {DB}", timeout=120)
    if result.returncode != 0:
        print(result.stdout, result.stderr)
        return None
    query = sh(node, f"python3 -c \"import sqlite3; c = sqlite3.connect('{RESTORED}'); "
                     "print(c.execute('SELECT count(*) FROM usage_entries').fetchone()[0], "
                     "c.execute('PRAGMA integrity_check').fetchone()[0])\"")
    rows, integrity = query.stdout.split()
    return int(rows), integrity


def lag(node=ACTIVE):
    result = sh(node, "hastack-litestream-lag", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.splitlines()[0])


def unit(node, name, prop):
    return sh(node, f"systemctl show -p {prop} --value {name}").stdout.strip()


def test_only_the_active_app_server_runs_the_app_and_litestream():
    for name in ("hastack-app", "litestream"):
        assert unit(ACTIVE, name, "ActiveState") == "active", name
        assert unit(STANDBY, name, "ActiveState") == "inactive", name
        # Neither starts at boot: a returning active server may have been replaced.
        assert unit(ACTIVE, name, "UnitFileState") == "disabled", name
        assert unit(STANDBY, name, "UnitFileState") == "disabled", name
    wait_until(lambda: holds(ACTIVE, APP_VIP), timeout=20, message=f"the app VIP on {ACTIVE}")
    assert not holds(STANDBY, APP_VIP)
    # Installed and ready on the standby, but no database of its own: it never wrote one.
    installed = "test -x /opt/hastack-app/current/venv/bin/gunicorn && test -x /usr/local/bin/litestream"
    assert sh(STANDBY, installed).returncode == 0
    assert sh(STANDBY, f"test -e {DB}").returncode != 0


def test_health_reports_sqlite_in_wal_mode():
    status, health = http("GET", "/health")
    assert status == 200
    assert health["database"] == "sqlite" and health["journal_mode"] == "wal" and health["node"] == "app1"


def test_rows_written_on_the_active_server_restore_on_the_standby():
    count = post_entries(25)
    assert count >= 25
    # Restored on the standby from the replica on the backup host: what a failover does.
    wait_until(lambda: restore_on(STANDBY) == (count, "ok"), timeout=30,
               message=f"a restore on {STANDBY} with {count} rows passing integrity_check")
    assert sh(BACKUP, "ls /srv/litestream/app/ltx/0 | grep -c '[.]ltx$'").stdout.strip() not in ("", "0")


def test_the_replica_key_gives_sftp_only():
    result = sh(ACTIVE, "ssh -i /etc/litestream/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=no "
                        "-o UserKnownHostsFile=/dev/null litestream@198.18.7.31 echo shell-reached", timeout=30)
    assert "shell-reached" not in result.stdout


def test_the_lag_probe_tells_a_stalled_replica_from_a_current_one():
    post_entries(1)
    wait_until(lambda: lag()["lag_seconds"] == 0, timeout=30, message="the replica caught up", interval=1)
    assert sh(ACTIVE, "systemctl stop litestream").returncode == 0
    try:
        time.sleep(2)
        post_entries(1)
        stalled = lag()
        assert stalled["lag_seconds"] is not None and stalled["lag_seconds"] >= 2, stalled
    finally:
        assert sh(ACTIVE, "systemctl start litestream").returncode == 0
    wait_until(lambda: lag()["lag_seconds"] == 0, timeout=30, message="the replica caught up again", interval=1)
    table = playbook("status.yml")
    assert table.returncode == 0 and "HEALTHY: writer sq-app1" in flat(table), flat(table)[-2000:]


def status_json(tmp_path):
    """(exit code, status.yml's JSON) on the SQLite inventory."""
    out = tmp_path / "status.json"
    result = playbook("status.yml", "-e", "status_format=json", "-e", f"status_output={out}")
    return result.returncode, json.loads(out.read_text())


def test_status_judges_the_writer_and_its_replica(tmp_path):
    code, status = status_json(tmp_path)
    assert code == 0 and status["healthy"] and status["mode"] == "sqlite", status
    rows = {row["node"]: row for row in status["servers"]}
    assert status["active"] == ACTIVE and rows[ACTIVE]["vips"] == ["app"] and rows[ACTIVE]["lag_seconds"] == 0
    assert rows[STANDBY]["role"] == "standby" and rows[STANDBY]["app"] == "inactive"


def sync(node):
    """One run of roles/file_sync's timer job: the active server pushes, a passive one
    applies the newest snapshot to its live uploads folder."""
    result = sh(node, "flock /run/lock/hastack-file-sync.lock /usr/local/sbin/hastack-file-sync run", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def put_file(name, body, base):
    request = urllib.request.Request(f"{base}/api/files/{name}", data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def get_file(name, base):
    with urllib.request.urlopen(f"{base}/api/files/{name}", timeout=10) as response:
        return response.read()


def test_a_backup_holds_the_replicated_database_and_the_uploads():
    """roles/backup in SQLite mode: the backup host restores its Litestream replica into a
    checked copy and pulls the uploads, in one manifest; verify proves the copy."""
    put_file("invoice-7.pdf", b"%PDF-1.4 seven", ACTIVE_URL)
    written = post_entries(3)
    wait_until(lambda: lag()["lag_seconds"] == 0, timeout=30, message="the replica caught up", interval=1)
    taken = sh(BACKUP, "hastack-backup dump", timeout=180)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    name = taken.stdout.split()[-1]
    manifest = json.loads(sh(BACKUP, f"cat /var/backups/hastack/dumps/{name}/manifest.json").stdout)
    parts = {part["name"]: part for part in manifest["parts"]}
    database = parts["database app (SQLite)"]
    assert database["ok"] and database["row_counts"]["usage_entries"] == written, database
    uploads = parts["files sq-app1:/var/lib/hastack-app/uploads"]
    assert uploads["ok"] and uploads["file_count"] >= 1, uploads
    listing = sh(BACKUP, f"tar -tzf /var/backups/hastack/dumps/{name}/{uploads['file']}").stdout
    assert "invoice-7.pdf" in listing
    assert not any(part.startswith("globals") for part in parts)
    verified = sh(BACKUP, "hastack-backup verify", timeout=180)
    assert verified.returncode == 0 and json.loads(verified.stdout)[0]["ok"], verified.stdout + verified.stderr
    assert sh(BACKUP, "hastack-backup check").returncode == 0
    # PostgreSQL's point-in-time tools refuse and name Litestream's instead.
    base = sh(BACKUP, "hastack-backup base")
    assert base.returncode == 2 and "litestream restore -timestamp" in base.stdout


def test_failover_to_the_standby_keeps_what_was_replicated(tmp_path):
    written = post_entries(10)
    uploads = {f"scan-{i}.pdf": os.urandom(4096 * (i + 1)) for i in range(5)}
    for name, body in uploads.items():
        put_file(name, body, ACTIVE_URL)
    sync(ACTIVE)
    sync(STANDBY)
    # More than the sync interval (1 s) before the kill: these rows must survive.
    time.sleep(3)

    healthy = playbook("failover.yml")
    assert healthy.returncode == 0 and "answers /health" in flat(healthy)
    assert set(recap_changed(healthy.stdout).values()) <= {0}

    assert subprocess.run(["podman", "kill", ACTIVE], capture_output=True, check=False).returncode == 0
    refused = playbook("failover.yml")
    assert refused.returncode != 0 and "unreachable is not dead" in flat(refused)
    code, sick = status_json(tmp_path)
    assert code != 0 and not sick["healthy"]
    assert {"severity": "critical", "what": f"no app server runs the app ({ACTIVE} does not answer)",
            "do": "ansible-playbook failover.yml (docs/RUNBOOK.md, SQLite)"} in sick["problems"]
    assert unit(STANDBY, "hastack-app", "ActiveState") == "inactive"

    # The replica's newest file is older than 1 s: refused before any change.
    stale = playbook("failover.yml", "-e", f"failover_confirm_dead={ACTIVE}", "-e", "failover_max_replica_age=1")
    assert stale.returncode != 0 and "s old (limit failover_max_replica_age=1 s)" in flat(stale), flat(stale)[-2000:]
    assert unit(STANDBY, "hastack-app", "ActiveState") == "inactive"

    # The provider's power-off, here a stand-in that records what it was asked to fence.
    marker = pathlib.Path(f"/tmp/hastack-sqlite-fenced-{os.getpid()}")
    fence = json.dumps({"failover_fence_command": f"touch {marker}-{{host}}-{{address}}"})
    done = playbook("failover.yml", "-e", fence)
    assert done.returncode == 0, flat(done)[-3000:]
    assert pathlib.Path(f"{marker}-{ACTIVE}-198.18.7.21").exists()
    assert "may be missing" in flat(done)
    assert http("GET", "/api/entries/count", base=STANDBY_URL)[1]["count"] == written
    assert http("GET", "/health", base=STANDBY_URL)[1]["node"] == "app2"
    # Every synced upload is served by the new active server.
    assert {name: get_file(name, STANDBY_URL) for name in uploads} == uploads
    assert unit(STANDBY, "litestream", "ActiveState") == "active"
    wait_until(lambda: holds(STANDBY, APP_VIP), timeout=20, message=f"the app VIP on {STANDBY}")

    again = playbook("failover.yml")
    assert again.returncode == 0 and set(recap_changed(again.stdout).values()) <= {0}
    code, after = status_json(tmp_path)
    assert code == 0 and after["active"] == STANDBY and after["vips"][0]["holders"] == [STANDBY], after

    # Replication now runs from the new active server: a fresh restore has its new row.
    assert http("POST", "/api/entries", {"machine": "drill", "member": "ana"}, STANDBY_URL)[0] == 201
    wait_until(lambda: restore_on(STANDBY) == (written + 1, "ok"), timeout=40,
               message=f"a restore with the row written on {STANDBY}", interval=2)

    # The old active server comes back: it must not start writing.
    assert subprocess.run(["podman", "start", ACTIVE], capture_output=True, check=False).returncode == 0
    wait_until(lambda: sh(ACTIVE, "systemctl is-system-running").stdout.strip() in ("running", "degraded"),
               timeout=60, message=f"{ACTIVE} booted", interval=1)
    assert unit(ACTIVE, "hastack-app", "ActiveState") == "inactive"
    assert unit(ACTIVE, "litestream", "ActiveState") == "inactive"
