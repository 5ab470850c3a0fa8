"""Backups on a real cluster: dumps with manifests, retention, a corrupt dump caught by
verification, restore into a new database after an accident. The tests run in order."""

import hashlib
import json
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from hastack_testlib import playbook, psql, sh, wait_until  # noqa: E402

BACKUP = "bk-backup1"
DUMPS = "/var/backups/hastack/dumps"
STATE = {}


def flat(result):
    """The playbook's output with the YAML callback's line wrapping undone."""
    return " ".join(result.stdout.split())


def dump():
    result = sh(BACKUP, "hastack-backup dump", timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def backups():
    return sorted(sh(BACKUP, f"ls {DUMPS}").stdout.split())


def manifest(name):
    return json.loads(sh(BACKUP, f"cat {DUMPS}/{name}/manifest.json").stdout)


def test_the_backup_host_may_copy_offsite():
    # What an operator does once: authorise the backup host's key at the second location.
    key = sh(BACKUP, "cat /root/.ssh/hastack_backup.pub").stdout.strip()
    assert key.startswith("ssh-ed25519 ")
    sh("bk-db2", f"echo '{key}' >> /home/hastack/.ssh/authorized_keys")


def test_a_dump_has_a_manifest_with_counts_checksums_and_its_source():
    psql("bk-db1", "SET ROLE hastack; CREATE TABLE machines (id serial PRIMARY KEY, name text); "
                   "INSERT INTO machines (name) SELECT 'm' || g FROM generate_series(1, 500) g")
    name = dump()
    STATE["first"] = name
    data = manifest(name)
    assert data["ok"] is True
    assert data["source"]["node"] == "bk-db1" and data["source"]["role"] == "primary"
    assert data["source"]["server_version"].startswith("15.")
    parts = {part["name"]: part for part in data["parts"]}
    assert set(parts) == {"database hastack", "globals"} and all(p["ok"] for p in parts.values())
    assert parts["database hastack"]["row_counts"] == {"public.machines": 500}
    content = subprocess_bytes(f"{DUMPS}/{name}/hastack.dump")
    assert hashlib.sha256(content).hexdigest() == parts["database hastack"]["sha256"]
    assert len(content) == parts["database hastack"]["size"]


def subprocess_bytes(path):
    return subprocess.run(["podman", "exec", BACKUP, "cat", path], capture_output=True, check=True).stdout


def test_backups_are_readable_only_by_their_owner():
    listing = sh(BACKUP, f"stat -c '%a %U %n' {DUMPS} {DUMPS}/*/ {DUMPS}/*/*").stdout.splitlines()
    for line in listing:
        mode, owner, path = line.split(" ", 2)
        assert owner == "root" and mode == ("700" if path.endswith("/") or path == DUMPS else "600"), line


def test_retention_keeps_exactly_the_newest_three():
    for _ in range(4):
        dump()
    kept = backups()
    assert len(kept) == 3
    assert STATE["first"] not in kept


def test_the_offsite_copy_mirrors_the_kept_backups():
    copied = sorted(sh("bk-db2", "ls /home/hastack/offsite").stdout.split())
    assert copied == backups()
    newest = backups()[-1]
    assert sh("bk-db2", f"sha256sum /home/hastack/offsite/{newest}/hastack.dump").stdout.split()[0] == \
        manifest(newest)["parts"][0]["sha256"]


def test_verification_restores_good_dumps_and_reports_a_corrupt_one():
    newest = backups()[-1]
    sh(BACKUP, f"printf 'garbage' >> {DUMPS}/{newest}/hastack.dump")
    result = playbook("verify_backups.yml", "-e", "verify_which=all")
    assert result.returncode != 0
    assert f"FAIL {newest}" in flat(result)
    assert "does not match its sha256" in flat(result)
    for older in backups()[:-1]:
        assert f"PASS {older}" in flat(result)
    assert "verification failed for " + newest in sh(BACKUP, "journalctl -t hastack-backup-alert --no-pager").stdout
    STATE["good"] = backups()[-2]


def test_the_freshness_check_sees_a_recent_successful_backup():
    result = sh(BACKUP, "hastack-backup check")
    assert result.returncode == 0 and result.stdout.startswith("OK: newest successful backup")


def test_point_in_time_recovery_brings_back_what_an_accident_deleted():
    result = sh(BACKUP, "hastack-backup base", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "taken and verified" in result.stderr
    psql("bk-db1", "SET ROLE hastack; CREATE TABLE events (id serial PRIMARY KEY, at timestamptz DEFAULT now()); "
                   "INSERT INTO events SELECT FROM generate_series(1, 1000)")
    time.sleep(1)
    noted = psql("bk-db1", "SELECT now()")  # "14:29:59, before the accidental delete"
    time.sleep(1)
    psql("bk-db1", "SET ROLE hastack; DELETE FROM events")
    wait_until(lambda: "streaming" in psql("bk-db1", "SELECT state FROM pg_stat_replication "
                                                     "WHERE application_name = 'hastack_backup'", db="postgres"),
               message="pg_receivewal streaming")
    time.sleep(2)  # the DELETE's commit record reaches the archive (pg_receivewal --synchronous)
    result = playbook("pitr.yml", "-e", json.dumps({"target_time": noted}))
    assert result.returncode == 0
    assert "PITR DONE" in flat(result) and "hastack public.events: 1000 rows" in flat(result)
    out = sh(BACKUP, "runuser -u postgres -- psql -p 5433 -d hastack -XAtq -c 'SELECT count(*) FROM events'")
    assert out.stdout.strip() == "1000"
    assert psql("bk-db1", "SELECT count(*) FROM events") == "0"  # production untouched


def test_restore_brings_back_deleted_rows_into_a_new_database():
    psql("bk-db1", "SET ROLE hastack; DELETE FROM machines WHERE id > 100")  # the accident
    result = playbook("restore.yml", "-e", f"restore_backup={STATE['good']}")
    assert result.returncode == 0
    target = f"hastack_restored_{STATE['good'].lower()}"
    assert f"restored into database {target} on bk-db1" in flat(result)
    assert psql("bk-db1", "SELECT count(*) FROM machines", db=target) == "500"
    assert psql("bk-db1", "SELECT count(*) FROM machines") == "100"  # the live database is untouched


def test_replacing_the_live_database_needs_the_confirmation():
    result = playbook("restore.yml", "-e", f"restore_backup={STATE['good']}", "-e", "restore_replace=true")
    assert result.returncode != 0
    assert "restore_confirm=hastack" in flat(result)
    assert psql("bk-db1", "SELECT count(*) FROM machines") == "100"
    result = playbook("restore.yml", "-e", f"restore_backup={STATE['good']}", "-e", "restore_replace=true",
                      "-e", "restore_confirm=hastack")
    assert result.returncode == 0
    assert psql("bk-db1", "SELECT count(*) FROM machines") == "500"
    assert "hastack_before_restore_" in psql("bk-db1", "SELECT string_agg(datname, ' ') FROM pg_database")


def test_dumps_base_backups_and_verification_are_scheduled():
    cron = sh(BACKUP, "cat /etc/cron.d/hastack-backup").stdout
    for command in ("dump", "base", "verify"):
        assert f"/usr/local/sbin/hastack-backup {command}" in cron


def test_the_wal_archive_continues_on_the_new_timeline_after_a_failover():
    subprocess.run(["podman", "kill", "bk-db1"], check=True)
    result = playbook("failover.yml")
    assert result.returncode == 0 and "FAILOVER DONE: bk-db2 is the primary" in flat(result)
    wait_until(lambda: sh(BACKUP, "ls /var/backups/hastack/wal").stdout.count("00000002") >= 2, timeout=60,
               message="timeline 2 history and WAL in the archive")
    psql("bk-db2", "SET ROLE hastack; CREATE TABLE ticks (id serial PRIMARY KEY); "
                   "INSERT INTO ticks SELECT FROM generate_series(1, 7)")
    time.sleep(1)
    noted = psql("bk-db2", "SELECT now()")
    time.sleep(1)
    psql("bk-db2", "SET ROLE hastack; INSERT INTO ticks SELECT FROM generate_series(1, 5)")
    time.sleep(2)
    # Recovery crosses from timeline 1 (the base backup) to timeline 2 (after the failover).
    result = playbook("pitr.yml", "-e", json.dumps({"target_time": noted}))
    assert result.returncode == 0
    assert "hastack public.ticks: 7 rows" in flat(result)
