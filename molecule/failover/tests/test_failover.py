"""failover.yml, resync.yml and switchover.yml on a real three-node cluster.

The tests run in order and share the cluster: each step starts from the state the
previous one left. Writes come from a client on the controller that records every id
the database acknowledged; after each change of primary, every acknowledged id must be
on the new primary (synchronous mode, ANY 1).
"""

import json
import pathlib
import re
import sys
import threading
import time

import psycopg
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from hastack_testlib import password, playbook, psql, recap_changed, sh, wait_until

NODES = {"fo-db1": "198.18.3.11", "fo-db2": "198.18.3.12", "fo-db3": "198.18.3.13"}
DATA = "/var/lib/postgresql/15/main"
STATE = {}


def kill_postgres(node):
    sh(node, "pkill -KILL -x postgres")
    for _ in range(100):
        if sh(node, "pgrep -x postgres").returncode != 0:
            return
        time.sleep(0.05)
    pytest.fail(f"PostgreSQL on {node} survived SIGKILL")


def app_password():
    return password("app")


class Writer(threading.Thread):
    """Insert rows one by one through the network, as the application does, and keep
    the id of every insert whose COMMIT returned. Stops at the first error."""

    def __init__(self, node, limit_seconds=60):
        super().__init__(daemon=True)
        self.node, self.limit, self.acked, self.error = node, limit_seconds, [], None
        self.stopping = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.limit
        try:
            with psycopg.connect(host=NODES[self.node], dbname="hastack", user="hastack", password=app_password(),
                                 connect_timeout=3, autocommit=True) as conn:
                while not self.stopping.is_set() and time.monotonic() < deadline:
                    row = conn.execute("INSERT INTO acked (writer) VALUES (%s) RETURNING id", (self.node,)).fetchone()
                    self.acked.append(row[0])
        except psycopg.Error as exc:
            self.error = exc

    def wait_for(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.05)
        assert len(self.acked) >= count, f"writer acknowledged only {len(self.acked)} rows ({self.error})"



def stored_ids(node):
    return {int(x) for x in psql(node, "SELECT id FROM acked").split()}


def test_cluster_streams_in_synchronous_mode():
    assert psql("fo-db1", "SELECT pg_is_in_recovery()") == "f"
    states = psql("fo-db1", "SELECT application_name || ' ' || state || ' ' || sync_state "
                            "FROM pg_stat_replication ORDER BY 1").splitlines()
    assert states == ["fo_db2 streaming quorum", "fo_db3 streaming quorum"]
    assert psql("fo-db1", "SHOW synchronous_standby_names") == 'ANY 1 ("fo_db1", "fo_db2", "fo_db3")'
    psql("fo-db1", "SET ROLE hastack; CREATE TABLE acked (id bigserial PRIMARY KEY, writer text, "
                   "at timestamptz DEFAULT clock_timestamp())")


def test_check_mode_tells_the_truth_about_a_converged_cluster():
    """--check --diff on the converged cluster predicts no change; a file changed by hand
    shows up as a change with its diff and stays as it is; a host site.yml never finished
    is refused before anything runs."""
    sh("fo-db2", "echo '# by hand' >> /etc/postgresql/15/main/conf.d/50-hastack.conf")
    try:
        result = playbook("site.yml", "--check", "--diff")
        assert result.returncode == 0, result.stdout[-3000:]
        changed = recap_changed(result.stdout)
        assert changed["fo-db1"] == changed["fo-db3"] == 0 and changed["fo-db2"] >= 1, changed
        assert "-# by hand" in result.stdout
        assert "# by hand" in sh("fo-db2", "cat /etc/postgresql/15/main/conf.d/50-hastack.conf").stdout
    finally:
        sh("fo-db2", "sed -i '/^# by hand$/d' /etc/postgresql/15/main/conf.d/50-hastack.conf")
    sh("fo-db3", "mv /var/lib/hastack/converged /var/lib/hastack/converged.away")
    try:
        refused = playbook("site.yml", "--check")
    finally:
        sh("fo-db3", "mv /var/lib/hastack/converged.away /var/lib/hastack/converged")
    assert refused.returncode != 0 and "fo-db3 was never converged by site.yml" in refused.stdout
    assert "TASK [common" not in refused.stdout


def test_status_reports_the_cluster_and_fails_while_it_is_unhealthy(tmp_path):
    result = playbook("status.yml", "-e", "status_format=json", "-e", f"status_output={tmp_path}/status.json")
    assert result.returncode == 0, result.stdout[-3000:]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["healthy"] and status["primary"] == "fo-db1"
    rows = {r["node"]: r for r in status["nodes"]}
    assert rows["fo-db1"]["role"] == "primary" and rows["fo-db1"]["vips"] == []
    assert {rows[n]["sync_state"] for n in ("fo-db2", "fo-db3")} == {"quorum"}
    table = playbook("status.yml")
    assert table.returncode == 0 and "HEALTHY: primary fo-db1" in table.stdout
    sh("fo-db3", "systemctl stop postgresql@15-main")
    try:
        sick = playbook("status.yml", "-e", "status_format=json", "-e", f"status_output={tmp_path}/sick.json")
        assert sick.returncode != 0 and "UNHEALTHY" in sick.stdout
        problems = json.loads((tmp_path / "sick.json").read_text())["problems"]
        assert {"severity": "critical", "what": "fo-db3 is stopped",
                "do": "ansible-playbook resync.yml -e node=fo-db3"} in problems, problems
    finally:
        sh("fo-db3", "systemctl start postgresql@15-main")
    wait_until(lambda: psql("fo-db1", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "2",
               timeout=30, message="fo-db3 streaming again")


def test_failover_after_sigkill_keeps_every_acknowledged_write():
    writer = Writer("fo-db1")
    writer.start()
    writer.wait_for(200)
    kill_postgres("fo-db1")
    writer.join(timeout=30)
    assert writer.error is not None, "the writer should have lost its primary"

    result = playbook("failover.yml")
    assert result.returncode == 0
    match = re.search(r"FAILOVER DONE: (\S+) is the primary", result.stdout)
    assert match, "no failover summary"
    new = match.group(1)
    assert new in ("fo-db2", "fo-db3")
    STATE["primary"] = new
    assert psql(new, "SELECT pg_is_in_recovery()") == "f"
    missing = set(writer.acked) - stored_ids(new)
    assert not missing, f"{len(missing)} acknowledged rows lost: {sorted(missing)[:10]}"
    assert "Next: ansible-playbook resync.yml -e node=fo-db1" in result.stdout

    with psycopg.connect(host=NODES[new], dbname="hastack", user="hastack", password=app_password(),
                         autocommit=True) as conn:
        conn.execute("INSERT INTO acked (writer) VALUES ('after-failover')")
    # The third node follows the new primary, so commits still have a synchronous replica.
    other = ({"fo-db2", "fo-db3"} - {new}).pop()
    wait_until(lambda: psql(new, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "1",
               message=f"{other} streaming from {new}")
    assert psql(other, "SELECT sender_host FROM pg_stat_wal_receiver") == NODES[new]


def test_old_primary_is_fenced():
    assert sh("fo-db1", f"test -f {DATA}/standby.signal && test -f {DATA}/hastack.fenced").returncode == 0
    assert sh("fo-db1", "systemctl is-active postgresql@15-main").stdout.strip() != "active"
    for node in NODES:
        state = sh(node, "cat /var/lib/hastack/cluster.json").stdout
        assert f'"primary": "{STATE["primary"]}"' in state, (node, state)
        assert '"epoch": 2' in state, (node, state)


def test_second_failover_run_changes_nothing():
    result = playbook("failover.yml")
    assert result.returncode == 0
    assert "FAILOVER: nothing to do" in result.stdout
    assert set(recap_changed(result.stdout).values()) == {0}


def test_resync_rejoins_the_old_primary_as_a_streaming_replica():
    primary = STATE["primary"]
    result = playbook("resync.yml", "-e", "node=fo-db1")
    assert result.returncode == 0
    assert "RESYNC DONE: fo-db1" in result.stdout
    assert psql("fo-db1", "SELECT pg_is_in_recovery()") == "t"
    assert (psql("fo-db1", "SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver")
            == f"streaming {NODES[primary]}")
    marker = psql(primary, "SET ROLE hastack; INSERT INTO acked (writer) VALUES ('after-resync') RETURNING id")
    wait_until(lambda: psql("fo-db1", f"SELECT count(*) FROM acked WHERE id = {marker}") == "1",
               message="the new row on fo-db1")
    assert sh("fo-db1", f"test -e {DATA}/hastack.fenced").returncode != 0


def test_switchover_back_loses_nothing():
    old = STATE["primary"]
    writer = Writer(old)
    writer.start()
    writer.wait_for(100)
    result = playbook("switchover.yml", "-e", "new_primary=fo-db1")
    writer.stopping.set()
    writer.join(timeout=30)
    assert result.returncode == 0
    assert "SWITCHOVER DONE: fo-db1 is the primary" in result.stdout
    assert psql("fo-db1", "SELECT pg_is_in_recovery()") == "f"
    missing = set(writer.acked) - stored_ids("fo-db1")
    assert not missing, f"{len(missing)} acknowledged rows lost in the switchover"
    wait_until(lambda: psql("fo-db1", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "2",
               message="both replicas streaming from fo-db1")
    STATE["primary"] = "fo-db1"


def test_failover_is_refused_while_the_replicas_lag_and_allowed_once_they_catch_up():
    for node in ("fo-db2", "fo-db3"):
        psql(node, "SELECT pg_wal_replay_pause()")
    # About 4 MB of WAL that the replicas receive (commits stay synchronous) but do not replay.
    psql("fo-db1", "SET ROLE hastack; CREATE TABLE filler AS SELECT repeat('x', 1000) AS pad "
                   "FROM generate_series(1, 4000)")
    kill_postgres("fo-db1")
    result = playbook("failover.yml", "-e", "failover_max_lag_bytes=1048576")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "refusing to promote" in out
    assert "failover_max_lag_bytes=" in out and "failover_force=true" in out
    assert "paused" in out
    # Refused before any change: nobody promoted, the old primary not fenced.
    for node in ("fo-db2", "fo-db3"):
        assert psql(node, "SELECT pg_is_in_recovery()") == "t"
    assert sh("fo-db1", f"test -e {DATA}/hastack.fenced").returncode != 0

    for node in ("fo-db2", "fo-db3"):
        psql(node, "SELECT pg_wal_replay_resume()")
    result = playbook("failover.yml", "-e", "failover_max_lag_bytes=1048576")
    assert result.returncode == 0
    assert "FAILOVER DONE" in result.stdout
