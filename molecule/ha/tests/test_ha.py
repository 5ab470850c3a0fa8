"""The app survives: failover through the VIPs, a returning old primary, a dead app server.

A client host writes through the app VIP all along and records every entry the app
acknowledged (bench/writer.py). The tests run in order and share the hosts.
"""

import json
import pathlib
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from hastack_testlib import ROOT, holds, playbook, psql, sh, wait_until

DB_VIP, APP_VIP = "198.18.4.100", "198.18.4.101"
APP_SERVERS = ("ha-app1", "ha-app2")
APP = f"http://{APP_VIP}:8000"
DATA = "/var/lib/postgresql/15/main"
LOG = "/tmp/acked"


def health():
    try:
        with urllib.request.urlopen(APP + "/health", timeout=2) as response:
            return response.status, json.load(response)
    except OSError as exc:
        return getattr(exc, "code", None), {}


def post_entry():
    request = urllib.request.Request(APP + "/api/entries", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"machine": "lathe", "member": "test", "minutes": 5}).encode())
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201
        answer = json.load(response)
        assert answer["node"] == "ha-db2"  # every write after the failover lands on the new primary
        return answer["id"]


def writer_lines():
    return [line.split(" ", 2) for line in sh("ha-client", f"cat {LOG} 2>/dev/null").stdout.splitlines()]


def acked():
    """(time, id, node) of every acknowledged entry."""
    return [(float(at), int(rest.split()[0]), rest.split()[1]) for kind, at, rest in writer_lines() if kind == "ok"]


def start_writer(seconds=240):
    subprocess.run(["podman", "cp", str(ROOT / "bench" / "writer.py"), "ha-client:/tmp/writer.py"], check=True)
    sh("ha-client", f"rm -f {LOG} {LOG}.stop")
    subprocess.run(["podman", "exec", "-d", "ha-client", "python3", "/tmp/writer.py", APP, LOG, str(seconds)],
                   check=True)


def stop_writer():
    sh("ha-client", f"touch {LOG}.stop")
    time.sleep(2.5)


def stored_ids(node):
    return {int(x) for x in psql(node, "SELECT id FROM usage_entries").split()}


def app_vip_holders():
    return [node for node in APP_SERVERS if holds(node, APP_VIP)]


def app_health(node):
    """/health of one app server, asked on the server itself (not through the VIP)."""
    return sh(node, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/health").stdout.strip()


def test_vips_sit_on_the_primary_and_on_exactly_one_answering_app_server():
    assert holds("ha-db1", DB_VIP) and not holds("ha-db2", DB_VIP)
    # Both app servers start together and keepalived runs with nopreempt: either may win.
    holders = app_vip_holders()
    assert len(holders) == 1, f"the app VIP must sit on exactly one app server, not {holders}"
    assert app_health(holders[0]) == "200"
    status, body = health()
    assert status == 200
    assert body == {"status": "ok", "database": "reachable", "role": "primary", "node": "ha-db1", "maintenance": False}
    for node in APP_SERVERS:
        assert sh(node, "stat -c '%a %U' /etc/hastack-app/app.env").stdout.split() == ["600", "root"]
    # The migration ran once, on the primary; the replica has the table by replication.
    assert psql("ha-db2", "SELECT name FROM schema_migrations") == "001_usage_entries.sql"


def test_failover_through_the_vips_keeps_every_acknowledged_entry():
    start_writer()
    wait_until(lambda: len(acked()) >= 100, timeout=30, message="100 entries through the app VIP")
    killed_at = time.time()
    subprocess.run(["podman", "kill", "ha-db1"], check=True)
    result = playbook("failover.yml")
    assert result.returncode == 0
    assert "FAILOVER DONE: ha-db2 is the primary" in result.stdout
    assert "first write via the DB VIP 198.18.4.100 committed on ha-db2" in result.stdout
    wait_until(lambda: any(node == "ha-db2" for _, _, node in acked()), timeout=30,
               message="writes through the app VIP committed on ha-db2")
    stop_writer()
    after = [at for at, _, node in acked() if node == "ha-db2"]
    print(f"first entry on ha-db2 {after[0] - killed_at:.2f} s after the kill; failover.yml {result.seconds:.2f} s")
    assert not [node for at, _, node in acked() if at > after[0] and node != "ha-db2"]
    ids = [value for _, value, _ in acked()]
    missing = set(ids) - stored_ids("ha-db2")
    assert not missing, f"{len(missing)} acknowledged entries lost: {sorted(missing)[:10]}"
    assert holds("ha-db2", DB_VIP)
    status, body = health()
    assert (status, body.get("node")) == (200, "ha-db2")


def test_returning_old_primary_takes_neither_the_vip_nor_writes():
    subprocess.run(["podman", "start", "ha-db1"], check=True)
    wait_until(lambda: sh("ha-db1", "pg_isready -q").returncode == 0, timeout=60, message="PostgreSQL on ha-db1")
    # The start guard saw a writable ha-db2 and started ha-db1 read-only, fenced.
    assert psql("ha-db1", "SELECT pg_is_in_recovery()") == "t"
    assert sh("ha-db1", f"test -f {DATA}/hastack.fenced").returncode == 0
    # Whoever it heard first told it of the newer epoch: ha-db2, or an app server (a witness
    # passes on the newest epoch it heard of).
    journal = sh("ha-db1", "journalctl -u postgresql@15-main --no-pager").stdout
    assert "newer than this node's 1" in journal and "ha-db1 starts read-only (fenced)" in journal
    wait_until(lambda: sh("ha-db1", "systemctl is-active keepalived").stdout.strip() == "active",
               message="keepalived on ha-db1")
    time.sleep(3)  # several VRRP rounds
    assert holds("ha-db2", DB_VIP) and not holds("ha-db1", DB_VIP)
    entry = post_entry()
    assert psql("ha-db2", f"SELECT count(*) FROM usage_entries WHERE id = {entry}") == "1"
    assert health()[1].get("node") == "ha-db2"


def test_app_vip_moves_to_the_other_app_server_when_its_holder_dies():
    [holder] = app_vip_holders()
    [other] = [node for node in APP_SERVERS if node != holder]
    subprocess.run(["podman", "kill", holder], check=True)
    killed_at = time.monotonic()
    wait_until(lambda: holds(other, APP_VIP), timeout=10, message=f"the app VIP on {other}")
    wait_until(lambda: health()[0] == 200, timeout=10, message="/health 200 through the app VIP")
    print(f"app VIP answered again {time.monotonic() - killed_at:.2f} s after the kill")
    post_entry()


def test_resync_brings_the_old_primary_back_as_a_replica():
    result = playbook("resync.yml", "-e", "node=ha-db1")
    assert result.returncode == 0
    assert "RESYNC DONE: ha-db1" in result.stdout
    assert psql("ha-db1", "SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver") == "streaming 198.18.4.12"
    assert sh("ha-db1", f"test -e {DATA}/hastack.fenced").returncode != 0
    entry = post_entry()
    wait_until(lambda: psql("ha-db1", f"SELECT count(*) FROM usage_entries WHERE id = {entry}") == "1",
               message="the new entry on ha-db1")
    time.sleep(2)
    assert holds("ha-db2", DB_VIP) and not holds("ha-db1", DB_VIP)
