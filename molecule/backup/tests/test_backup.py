"""Backups on a real cluster: dumps with manifests, retention, a corrupt dump caught by
verification, restore into a new database after an accident, the WAL archive checked
(stopped, gap, unreachable primary) and following a failover. The tests run in order."""

import base64
import hashlib
import json
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from hastack_testlib import playbook, psql, sh, wait_until

BACKUP = "bk-backup1"
DUMPS = "/var/backups/hastack/dumps"
WAL = "/var/backups/hastack/wal"
ARCHIVER = "hastack-pg-receivewal"
VIP = "198.18.5.100"
STATE = {}
APP = "bk-db2"  # plays the app server for the files parts (molecule.yml)
UPLOADS = "/srv/hastack-app/uploads"
CONFIG = "/etc/hastack-app-demo"
UPLOADS_PART = f"files {APP}:{UPLOADS}"
CONFIG_PART = f"files {APP}:{CONFIG}"
APP_ENV = ("DATABASE_URL=postgresql://hastack:Db-Pw-4711@198.18.5.100:5432/hastack\n"
           "SECRET_KEY=flask-secret-4711\nPORT=8000\n")


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


def check():
    """hastack-backup check: (exit code, its lines)."""
    result = sh(BACKUP, "hastack-backup check")
    return result.returncode, result.stdout.splitlines()


def archiver_streams(primary):
    return psql(primary, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'hastack_backup' "
                         "AND state = 'streaming'", db="postgres") == "1"


def archiver(prop):
    return sh(BACKUP, f"systemctl show -p {prop} --value {ARCHIVER}").stdout.strip()


def test_a_fresh_cluster_without_a_backup_is_a_warning_not_critical():
    result = playbook("status.yml")
    assert result.returncode == 0
    assert "Backups on bk-backup1: WARNING: dumps: no backup yet: the first runs at " in flat(result)
    assert "host time (schedule 15 2 * * *)" in flat(result)
    assert "no successful backup" not in flat(result)
    code, lines = check()
    assert code == 1, lines  # WARNING: no dump, no base backup yet; the archive itself streams
    assert any(line.startswith("OK: WAL archive: archiver streaming") for line in lines), lines
    assert any(line.startswith("WARNING: WAL archive: no base backup yet") for line in lines), lines


def test_the_archiver_has_no_start_limit():
    assert archiver("StartLimitIntervalUSec") in ("0", "infinity")
    assert archiver("Restart") == "always"


def test_the_backup_host_may_copy_offsite():
    # What an operator does once: authorise the backup host's key at the second location.
    key = sh(BACKUP, "cat /root/.ssh/hastack_backup.pub").stdout.strip()
    assert key.startswith("ssh-ed25519 ")
    sh("bk-db2", f"echo '{key}' >> /home/hastack/.ssh/authorized_keys")


def fill_app_folders():
    """25 uploads (one in a sub-folder, owned by a user the backup host does not have) and
    the app's configuration with secrets in it."""
    sh(APP, f"useradd --system --uid 990 demo-app 2>/dev/null; mkdir -p {UPLOADS}/2026/11 {CONFIG} && "
            f"for i in $(seq 1 24); do head -c $((i * 1000)) /dev/urandom > {UPLOADS}/upload-$i.bin; done && "
            f"echo 'a photo' > {UPLOADS}/2026/11/photo.jpg && chown -R 990:990 {UPLOADS} && "
            f"printf '{APP_ENV}' > {CONFIG}/app.env && chmod 700 {CONFIG} && chmod 600 {CONFIG}/app.env")


def test_a_dump_has_a_manifest_with_counts_checksums_and_its_source():
    fill_app_folders()
    psql("bk-db1", "SET ROLE hastack; CREATE TABLE machines (id serial PRIMARY KEY, name text); "
                   "INSERT INTO machines (name) SELECT 'm' || g FROM generate_series(1, 500) g")
    name = dump()
    STATE["first"] = name
    data = manifest(name)
    assert data["ok"] is True
    assert data["source"]["node"] == "bk-db1" and data["source"]["role"] == "primary"
    assert data["source"]["server_version"].startswith("15.")
    parts = {part["name"]: part for part in data["parts"]}
    assert set(parts) == {"database hastack", "globals", UPLOADS_PART, CONFIG_PART}
    assert all(p["ok"] for p in parts.values()), parts
    assert parts["database hastack"]["row_counts"] == {"public.machines": 500}
    content = subprocess_bytes(f"{DUMPS}/{name}/hastack.dump")
    assert hashlib.sha256(content).hexdigest() == parts["database hastack"]["sha256"]
    assert len(content) == parts["database hastack"]["size"]


def archive_listing(path):
    return sh(BACKUP, f"tar -tvzf {path} --numeric-owner").stdout.splitlines()


def test_the_files_and_configuration_are_in_the_same_backup_and_manifest():
    name = STATE["first"]
    parts = {part["name"]: part for part in manifest(name)["parts"]}
    uploads, config = parts[UPLOADS_PART], parts[CONFIG_PART]
    for part in (uploads, config):
        content = subprocess_bytes(f"{DUMPS}/{name}/{part['file']}")
        assert hashlib.sha256(content).hexdigest() == part["sha256"] and len(content) == part["size"]
    assert uploads["file_count"] == 25 and config["file_count"] == 1
    listing = archive_listing(f"{DUMPS}/{name}/{uploads['file']}")
    assert any(line.endswith(" 2026/11/photo.jpg") and " 990/990 " in line for line in listing), listing
    assert any(line.endswith(" upload-24.bin") and " 24000 " in line for line in listing), listing
    env = sh(BACKUP, f"tar -xzOf {DUMPS}/{name}/{config['file']} app.env").stdout
    assert env == ("DATABASE_URL=postgresql://hastack:REDACTED@198.18.5.100:5432/hastack\n"
                   "SECRET_KEY=REDACTED\nPORT=8000\n")
    assert config["redacted"] == ["app.env: DATABASE_URL (password in URL)", "app.env: SECRET_KEY"]
    # Nowhere on the backup host's disks, staging included.
    assert sh(BACKUP, "grep -rl -D skip -e Db-Pw-4711 -e flask-secret-4711 /var/backups /run /tmp /root").stdout == ""


def test_the_files_key_can_only_read_the_listed_folders():
    ssh = "ssh -o BatchMode=yes -i /root/.ssh/hastack_backup_files hastack-backup@198.18.5.12"
    for command in ("id", "cat /etc/shadow", "rsync --server --sender -logDtpre.iLsfxCIvu . /etc/shadow"):
        result = sh(BACKUP, f"{ssh} {command}")
        assert result.returncode != 0 and "refused" in result.stderr, (command, result)
    write = sh(BACKUP, f"rsync -a -e 'ssh -o BatchMode=yes -i /root/.ssh/hastack_backup_files' /etc/hostname "
                       f"hastack-backup@198.18.5.12:{UPLOADS}/")
    assert write.returncode != 0 and "refused" in write.stderr
    assert sh(APP, f"test -e {UPLOADS}/hostname").returncode != 0
    # The key is accepted from the backup host only.
    key = sh(BACKUP, "cat /root/.ssh/hastack_backup_files").stdout
    sh("bk-db1", f"umask 077; printf '%s' '{key}' > /root/k")
    elsewhere = sh("bk-db1", "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -i /root/k hastack-backup@198.18.5.12 "
                             f"rsync --server --sender -logDtpre.iLsfxCIvu . {UPLOADS}/")
    sh("bk-db1", "rm -f /root/k")
    assert elsewhere.returncode != 0 and "Permission denied" in elsewhere.stderr, elsewhere


def test_a_failing_files_part_is_reported_and_the_rest_is_kept():
    sh(APP, f"mv {UPLOADS} {UPLOADS}.away")
    try:
        result = sh(BACKUP, "hastack-backup dump", timeout=300)
    finally:
        sh(APP, f"mv {UPLOADS}.away {UPLOADS}")
    assert result.returncode == 1
    name = backups()[-1]
    data = manifest(name)
    parts = {part["name"]: part for part in data["parts"]}
    assert data["ok"] is False and parts[UPLOADS_PART]["ok"] is False
    assert "rsync from bk-db2:/srv/hastack-app/uploads failed" in parts[UPLOADS_PART]["error"]
    assert "No such file or directory" in parts[UPLOADS_PART]["error"]
    for kept in ("database hastack", "globals", CONFIG_PART):
        assert parts[kept]["ok"] is True
        assert sh(BACKUP, f"test -s {DUMPS}/{name}/{parts[kept]['file']}").returncode == 0
    assert f"backup {name} incomplete: {UPLOADS_PART}" in sh(
        BACKUP, "journalctl -t hastack-backup-alert --no-pager").stdout
    # Out of the way of the retention and verification tests below.
    sh(BACKUP, f"rm -rf {DUMPS}/{name}")


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


DAV = "/var/www/dav/hastack"  # where bk-db2's Apache (prepare.yml) keeps the WebDAV uploads


def test_the_webdav_copy_holds_the_kept_backups_and_retention_applies_there():
    remote = sorted(sh("bk-db2", f"ls {DAV}").stdout.split())
    assert remote == backups() and STATE["first"] not in remote
    newest = backups()[-1]
    data = manifest(newest)
    assert data["offsite"]["webdav"] == {"ok": True, "target": "http://198.18.5.12:8080/hastack",
                                         "removed": data["offsite"]["webdav"]["removed"]}
    for part in data["parts"]:
        assert sh("bk-db2", f"sha256sum {DAV}/{newest}/{part['file']}").stdout.split()[0] == part["sha256"]


def test_an_unreachable_or_refusing_webdav_server_is_reported_and_the_backup_kept():
    sh("bk-db2", "systemctl stop apache2")
    try:
        down = sh(BACKUP, "hastack-backup dump", timeout=300)
    finally:
        sh("bk-db2", "systemctl start apache2")
    netrc = "/etc/hastack/backup.netrc"
    sh(BACKUP, f"cp -p {netrc} /root/netrc && sed -i 's/^password .*/password wrong/' {netrc}")
    try:
        refused = sh(BACKUP, "hastack-backup dump", timeout=300)
    finally:
        sh(BACKUP, f"cp -p /root/netrc {netrc}")
    # A full server: Apache answers every upload with 507 Insufficient Storage.
    full_conf = "/etc/apache2/conf-enabled/hastack-full.conf"
    rule = base64.b64encode(b"<If \"%{REQUEST_METHOD} == 'PUT'\">\n  Redirect 507\n</If>\n").decode()
    assert sh("bk-db2", f"echo {rule} | base64 -d > {full_conf} && apachectl configtest && "
                        "systemctl reload apache2").returncode == 0
    try:
        full = sh(BACKUP, "hastack-backup dump", timeout=300)
    finally:
        sh("bk-db2", f"rm -f {full_conf} && systemctl reload apache2")
    assert down.returncode == 1 and refused.returncode == 1 and full.returncode == 1
    unreachable_run, refused_run, full_run = backups()[-3:]
    alerts = sh(BACKUP, "journalctl -t hastack-backup-alert --no-pager").stdout
    for name, expected in ((unreachable_run, "Failed to connect to 198.18.5.12 port 8080"),
                           (refused_run, "refused: HTTP 401 (check backup_webdav_user/backup_webdav_password)"),
                           (full_run, "refused: HTTP 507 (the WebDAV storage is full")):
        data = manifest(name)
        assert data["ok"] is True and data["offsite"]["rsync"]["ok"] is True, data  # kept, and copied by rsync
        assert data["offsite"]["webdav"]["ok"] is False and expected in data["offsite"]["webdav"]["error"], data
        assert f"backup {name} kept here, but WebDAV" in alerts
        assert sh("bk-db2", f"test -e {DAV}/{name}").returncode != 0
    # Nor half an upload under its hidden name.
    assert ".partial" not in sh("bk-db2", f"ls -a {DAV}").stdout


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


def test_verification_checks_the_files_archives_against_the_manifest():
    older = backups()[0]
    path = f"{DUMPS}/{older}/manifest.json"
    sh(BACKUP, f"cp -p {path} /root/manifest.json && sed -i 's/\"file_count\": 25/\"file_count\": 26/' {path}")
    try:
        result = playbook("verify_backups.yml", "-e", "verify_which=all")
    finally:
        sh(BACKUP, f"cp -p /root/manifest.json {path}")
    assert f"FAIL {older}" in flat(result)
    assert f"{UPLOADS_PART}: the archive holds 25 files, the manifest says 26" in flat(result)
    assert f"PASS {backups()[1]}" in flat(result)


def test_the_freshness_check_sees_a_recent_successful_backup():
    code, lines = check()
    assert any(line.startswith("OK: dumps: newest successful backup") for line in lines), lines
    assert code == 1 and lines[0].startswith("WARNING: WAL archive: no base backup yet"), lines


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


def uploads_tree(path):
    return sh(APP, f"cd {path} && find . -type f -printf '%P %s %U %m\\n' | sort").stdout


def test_restore_brings_back_the_files_into_a_new_folder():
    before = uploads_tree(UPLOADS)
    sh(APP, f"rm {UPLOADS}/upload-3.bin {UPLOADS}/2026/11/photo.jpg")  # the accident
    result = playbook("restore.yml", "-e", "restore_part=files", "-e", f"restore_backup={STATE['good']}")
    assert result.returncode == 0, result.stdout[-3000:]
    target = f"{UPLOADS}.restored-{STATE['good'].lower()}"
    assert f"{UPLOADS_PART} restored into {target}: 25 files (manifest: 25)" in flat(result)
    assert uploads_tree(target) == before
    assert sh(APP, f"test -e {UPLOADS}/upload-3.bin").returncode != 0  # the live folder is untouched
    assert "REDACTED" in sh(APP, f"cat {CONFIG}.restored-{STATE['good'].lower()}/app.env").stdout
    STATE["before_accident"] = before


def test_restoring_files_in_place_needs_the_confirmation_and_never_for_redacted_configuration():
    good = STATE["good"]
    result = playbook("restore.yml", "-e", "restore_part=files", "-e", f"restore_backup={good}",
                      "-e", f"restore_files_only={APP}:{UPLOADS}", "-e", "restore_files_in_place=true")
    assert result.returncode != 0 and f"restore_files_confirm={APP}:{UPLOADS}" in flat(result)
    result = playbook("restore.yml", "-e", "restore_part=files", "-e", f"restore_backup={good}",
                      "-e", f"restore_files_only={APP}:{CONFIG}", "-e", "restore_files_in_place=true",
                      "-e", f"restore_files_confirm={APP}:{CONFIG}")
    assert result.returncode != 0 and "REDACTED in place of its secrets" in flat(result)
    assert "flask-secret-4711" in sh(APP, f"cat {CONFIG}/app.env").stdout
    result = playbook("restore.yml", "-e", "restore_part=files", "-e", f"restore_backup={good}",
                      "-e", f"restore_files_only={APP}:{UPLOADS}", "-e", "restore_files_in_place=true",
                      "-e", f"restore_files_confirm={APP}:{UPLOADS}")
    assert result.returncode == 0, result.stdout[-3000:]
    assert uploads_tree(UPLOADS) == STATE["before_accident"]
    kept = sh(APP, f"ls -d {UPLOADS}.before-restore-*").stdout.split()
    assert len(kept) == 1 and sh(APP, f"test -e {kept[0]}/upload-3.bin").returncode != 0
    assert sh(APP, f"stat -c '%u %a' {UPLOADS}").stdout.strip() == "990 755"


def test_dumps_base_backups_and_verification_are_scheduled():
    cron = sh(BACKUP, "cat /etc/cron.d/hastack-backup").stdout
    for command in ("dump", "base", "verify"):
        assert f"/usr/local/sbin/hastack-backup {command}" in cron


def test_with_a_base_backup_and_a_streaming_archive_everything_is_ok():
    code, lines = check()
    assert code == 0, lines
    assert any(line.startswith("OK: WAL archive: archiver streaming, newest ") and "(timeline 1), no gap since "
               "base backup " in line for line in lines), lines


def test_a_stopped_archiver_is_critical_in_check_and_status():
    sh(BACKUP, f"systemctl stop {ARCHIVER}")
    try:
        code, lines = check()
        assert code == 2
        assert lines[0].startswith(f"CRITICAL: WAL archive: the archiver {ARCHIVER} is inactive"), lines
        assert f"systemctl restart {ARCHIVER}" in lines[0]
        result = playbook("status.yml")
        assert f"Backups on bk-backup1: CRITICAL: WAL archive: the archiver {ARCHIVER} is inactive" in flat(result)
    finally:
        sh(BACKUP, f"systemctl start {ARCHIVER}")
    wait_until(lambda: archiver_streams("bk-db1"), timeout=30, message="the archiver streaming again")
    assert check()[0] == 0


def complete_segments():
    return [n for n in sh(BACKUP, f"ls {WAL}").stdout.split() if len(n) == 24]


def test_a_segment_missing_in_the_middle_of_the_archive_is_a_critical_gap():
    before = len(complete_segments())
    for _ in range(3):
        psql("bk-db1", "CREATE TABLE IF NOT EXISTS wal_filler (x int); INSERT INTO wal_filler VALUES (1); "
                       "SELECT pg_switch_wal()", db="postgres")
    wait_until(lambda: len(complete_segments()) >= before + 3, timeout=30, message="three more archived segments")
    middle = complete_segments()[-2]
    sh(BACKUP, f"mv {WAL}/{middle} /root/{middle}")
    try:
        code, lines = check()
        assert code == 2
        assert lines[0].startswith(f"CRITICAL: WAL archive: gap: {middle} missing in {WAL}"), lines
        assert "hastack-backup base" in lines[0]
    finally:
        sh(BACKUP, f"mv /root/{middle} {WAL}/{middle}")
    assert check()[0] == 0


def test_the_archiver_comes_back_by_itself_after_many_failed_tries():
    # The VIP unreachable from the backup host for longer than systemd's default start
    # limit (5 starts in 10 s) allows: the open connection breaks (tcp_user_timeout), then
    # new ones fail at once, ten times and more.
    restarts = int(archiver("NRestarts"))
    sh(BACKUP, f"ip route add prohibit {VIP}/32")
    try:
        wait_until(lambda: int(archiver("NRestarts")) >= restarts + 10, timeout=120, interval=1,
                   message="ten failed starts of the archiver")
        code, lines = check()
        assert code == 2 and lines[0].startswith(f"CRITICAL: WAL archive: the archiver {ARCHIVER} is "), lines
        assert "not streaming from the primary" in lines[0], lines
        assert archiver("ActiveState") in ("active", "activating")  # retrying, not given up
    finally:
        sh(BACKUP, f"ip route del prohibit {VIP}/32")
    started = time.monotonic()
    wait_until(lambda: archiver_streams("bk-db1"), timeout=30, message="the archiver streaming again by itself")
    print(f"archiver back {time.monotonic() - started:.1f} s after the VIP was reachable again, "
          f"after {int(archiver('NRestarts')) - restarts} restarts")
    assert check()[0] == 0


def test_the_wal_archive_continues_on_the_new_timeline_after_a_failover():
    restarts = int(archiver("NRestarts"))
    subprocess.run(["podman", "kill", "bk-db1"], check=True)
    result = playbook("failover.yml")
    assert result.returncode == 0 and "FAILOVER DONE: bk-db2 is the primary" in flat(result)
    wait_until(lambda: sh(BACKUP, f"ls {WAL}").stdout.count("00000002") >= 2, timeout=60,
               message="timeline 2 history and WAL in the archive")
    wait_until(lambda: archiver_streams("bk-db2"), timeout=30, message="the archiver streaming from bk-db2")
    psql("bk-db2", "SET ROLE hastack; CREATE TABLE ticks (id serial PRIMARY KEY); "
                   "INSERT INTO ticks SELECT FROM generate_series(1, 7)")
    time.sleep(1)
    noted = psql("bk-db2", "SELECT now()")
    time.sleep(1)
    psql("bk-db2", "SET ROLE hastack; INSERT INTO ticks SELECT FROM generate_series(1, 5)")
    # New segments on timeline 2, and no gap across the switch from timeline 1.
    for _ in range(2):
        psql("bk-db2", "INSERT INTO wal_filler VALUES (2); SELECT pg_switch_wal()", db="postgres")
    wait_until(lambda: sum(n.startswith("00000002") for n in complete_segments()) >= 2, timeout=30,
               message="complete timeline 2 segments in the archive")
    code, lines = check()
    assert code == 0, lines
    assert any("(timeline 2), no gap since base backup" in line for line in lines), lines
    assert archiver("ActiveState") == "active" and int(archiver("NRestarts")) >= restarts
    # Recovery crosses from timeline 1 (the base backup) to timeline 2 (after the failover).
    result = playbook("pitr.yml", "-e", json.dumps({"target_time": noted}))
    assert result.returncode == 0
    assert "hastack public.ticks: 7 rows" in flat(result)
