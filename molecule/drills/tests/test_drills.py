"""Drills: the failures that make HA hard, on one converge, in order.

Every drill runs with a writer on the controller committing through the DB VIP and ends
with: no acknowledged write lost, exactly one writable node and it alone holds the DB
VIP, the WAL archiver streaming. The next drill starts from a healthy cluster. Faults are
made the way they happen: a partition is nftables inside the host, interface up
(docs/LAB.md); the controller reaches the hosts over SSH, so cutting a host cuts the
controller off too.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import psycopg
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from hastack_testlib import ROOT, password, playbook, playbook_command, psql, sh, wait_until

NODES = {"dr-db1": "198.18.6.11", "dr-db2": "198.18.6.12", "dr-db3": "198.18.6.13"}
WITNESS = "dr-backup1"
CONTROLLER = "198.18.6.1"
VIP = "198.18.6.100"
DATA = "/var/lib/postgresql/15/main"
# sentinel_lease; then the next evaluation (sentinel_interval) + sentinel_fence_seconds.
LEASE, HOLD = 1.0, 0.2 + 0.3
CUT = """table inet cut {
  chain in { type filter hook input priority -10; policy drop; iif lo accept; }
  chain out { type filter hook output priority -10; policy drop; oif lo accept; }
}"""


def run(name, *extra):
    return playbook(name, *extra)


# ------------------------------------------------------------------ faults
def cut(node, only=None):
    """Drop everything in and out of node but loopback, or only what goes to/from `only`."""
    rules = CUT if only is None else (
        "table inet cut {\n"
        f"  chain in {{ type filter hook input priority -10; ip saddr {only} drop; }}\n"
        f"  chain out {{ type filter hook output priority -10; ip daddr {only} drop; }}\n}}")
    subprocess.run(["podman", "exec", "-i", node, "nft", "-f", "-"], input=rules, text=True, check=True)


def start(*nodes, restart=False):
    """Start (or restart) hosts and wait until the controller reaches them over SSH: a host
    that comes back has a new MAC address, and the bridge's neighbour entry must follow."""
    subprocess.run(["podman", "restart", "-t", "0", *nodes] if restart else ["podman", "start", *nodes], check=True)
    for node in nodes:
        subprocess.run(["ip", "neigh", "flush", "to", NODES[node]], check=False)

        def ssh(address=NODES[node]):
            try:
                with socket.create_connection((address, 22), timeout=1):
                    return True
            except OSError:
                return False
        wait_until(ssh, timeout=60, message=f"SSH on {node}", interval=0.3)


def heal(node):
    sh(node, "nft delete table inet cut 2>/dev/null; true")


# ------------------------------------------------------------------ state
def is_writable(node):
    return sh(node, "psql -h /var/run/postgresql -U postgres -XAtqc 'SELECT pg_is_in_recovery()'",
              timeout=10).stdout.strip() == "f"


def holds_vip(node):
    return f" {VIP}/" in sh(node, "ip -o -4 addr show", timeout=10).stdout


def writable_nodes():
    return [n for n in NODES if is_writable(n)]


def vip_holders():
    return [n for n in NODES if holds_vip(n)]


def streams_from(node, primary):
    return psql(node, "SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver") == f"streaming {NODES[primary]}"


def fenced(node):
    return sh(node, f"test -e {DATA}/hastack.fenced").returncode == 0


def epoch(node):
    return int(sh(node, "python3 -c 'import json; print(json.load(open(\"/var/lib/hastack/cluster.json\"))"
                        "[\"epoch\"])'").stdout.strip() or 0)


def one_writable_vip_holder(timeout=10):
    """Exactly one writable node, and it alone holds the DB VIP."""
    def ok():
        writable, holders = writable_nodes(), vip_holders()
        return len(writable) == 1 and holders == writable
    wait_until(ok, timeout=timeout, message="exactly one writable node holding the DB VIP", interval=0.3)
    return writable_nodes()[0]


def archiver_streams():
    """The WAL archive follows the newest-epoch primary, with no gap (hastack-backup check)."""
    def ok():
        out = sh(WITNESS, "hastack-backup check", timeout=30).stdout
        return "WAL archive: archiver streaming" in out and "CRITICAL: WAL archive" not in out
    wait_until(ok, timeout=45, message="the WAL archive streaming with no gap", interval=1)


# ------------------------------------------------------------------ the writer
class Writer(threading.Thread):
    """Commits one row at a time through the DB VIP and records each acknowledged id."""

    def __init__(self):
        super().__init__(daemon=True)
        self.acked, self.errors, self.halt = [], 0, threading.Event()
        self.params = {"host": VIP, "dbname": "hastack", "user": "hastack", "password": password("app"),
                       "connect_timeout": 1, "application_name": "drill"}

    def run(self):
        conn = None
        while not self.halt.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(autocommit=True, **self.params)
                row = conn.execute("INSERT INTO drill (at) VALUES (now()) RETURNING id, "
                                   "current_setting('hastack.node')").fetchone()
                self.acked.append((time.monotonic(), row[0], row[1]))
            except psycopg.Error:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def stop(self):
        self.halt.set()
        self.join(10)

    def lost_on(self, primary):
        ids = {i for _, i, _ in self.acked}
        stored = {int(x) for x in psql(primary, "SELECT id FROM drill").split()}
        return sorted(ids - stored)

    def first_on(self, node, after):
        return next((t for t, _, n in self.acked if n == node and t > after), None)


@pytest.fixture()
def writer():
    primary = one_writable_vip_holder()
    psql(primary, "CREATE TABLE IF NOT EXISTS drill (id bigserial PRIMARY KEY, at timestamptz NOT NULL); "
                  "GRANT ALL ON drill, drill_id_seq TO hastack")
    client = Writer()
    client.start()
    wait_until(lambda: len(client.acked) >= 20, timeout=20, message="20 writes through the DB VIP")
    yield client
    client.stop()


def rejoin(node):
    result = run("resync.yml", "-e", f"node={node}")
    assert result.returncode == 0, result.stdout[-3000:]
    primary = one_writable_vip_holder()
    wait_until(lambda: streams_from(node, primary), timeout=20, message=f"{node} streaming from {primary}")


def finish(client, primary):
    """The end of every drill: nothing acknowledged lost, one writable VIP holder."""
    time.sleep(0.5)
    client.stop()
    assert one_writable_vip_holder() == primary
    lost = client.lost_on(primary)
    assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:10]}"
    archiver_streams()


# ------------------------------------------------------------------ drills
def test_the_cluster_starts_healthy():
    primary = one_writable_vip_holder()
    for node in NODES:
        assert sh(node, "cat /var/lib/hastack/quorum.track").stdout.strip() == "0"
        if node != primary:
            assert streams_from(node, primary)
    archiver_streams()


def test_partitioned_primary_fences_itself_failover_promotes_and_the_heal_changes_nothing(writer):
    old = one_writable_vip_holder()
    cut_at = time.monotonic()
    cut(old)
    # The isolated primary gives up the VIP and stops taking writes within lease + hold.
    wait_until(lambda: not holds_vip(old), timeout=LEASE + HOLD + 1, message="the VIP leaving the cut-off primary")
    wait_until(lambda: not is_writable(old), timeout=LEASE + HOLD + 1, message="the cut-off primary refusing writes")
    print(f"isolated primary lost the VIP and refused writes {time.monotonic() - cut_at:.2f} s after the cut")
    result = run("failover.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "it fenced itself: its lease ran out" in result.stdout
    new = one_writable_vip_holder()
    assert new != old
    wait_until(lambda: writer.first_on(new, cut_at) is not None, timeout=10, message=f"writes on {new}")
    print(f"first write on {new} {writer.first_on(new, cut_at) - cut_at:.2f} s after the cut")
    heal(old)
    time.sleep(3)  # many heartbeats and VRRP rounds: the heal must not move anything
    assert not is_writable(old) and fenced(old) and not holds_vip(old)
    assert sh(old, "cat /var/lib/hastack/quorum.track").stdout.strip() == "1"  # older epoch
    # keepalived restarted everywhere at once, the stale former primary up: the VIP goes
    # back to the newest-epoch primary only.
    for node in NODES:
        sh(node, "systemctl restart --no-block keepalived")
    time.sleep(2)
    assert one_writable_vip_holder() == new
    finish(writer, new)
    rejoin(old)


LOCAL_WRITER = """
import sys, time, psycopg
with psycopg.connect(host="/var/run/postgresql", dbname="hastack", user="postgres", autocommit=True) as conn, \\
        open("/tmp/local-acked", "w") as log:
    while True:
        try:
            i = conn.execute("INSERT INTO drill (at) VALUES (now()) RETURNING id").fetchone()[0]
        except psycopg.Error:
            break
        log.write("%.3f %d\\n" % (time.monotonic(), i))
        log.flush()
"""


def test_asynchronous_mode_bounds_what_an_isolated_primary_acknowledges(writer):
    """A client on the primary's own side of the partition keeps writing: the primary
    acknowledges until it fences itself, within lease + interval + fence time."""
    old = one_writable_vip_holder()
    psql(old, "ALTER SYSTEM SET synchronous_standby_names = ''")
    psql(old, "SELECT pg_reload_conf()")
    subprocess.run(["podman", "exec", "-i", old, "sh", "-c", "cat > /tmp/local_writer.py"], input=LOCAL_WRITER,
                   text=True, check=True)
    subprocess.run(["podman", "exec", "-d", old, "python3", "/tmp/local_writer.py"], check=True)
    wait_until(lambda: len(sh(old, "cat /tmp/local-acked").stdout.splitlines()) > 50, timeout=10,
               message="the local writer")
    cut_at = time.monotonic()
    cut(old)
    wait_until(lambda: not is_writable(old), timeout=LEASE + HOLD + 2, message="the isolated primary fencing itself")
    lines = [line.split() for line in sh(old, "cat /tmp/local-acked").stdout.splitlines()]
    after = [(float(t) - cut_at, int(i)) for t, i in lines if float(t) > cut_at]
    bound = LEASE + HOLD
    print(f"asynchronous mode: the isolated primary acknowledged {len(after)} writes after the cut, the last "
          f"{after[-1][0] if after else 0:.2f} s after it (bound {bound:.1f} s)")
    assert after and after[-1][0] <= bound + 0.3
    result = run("failover.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    heal(old)
    new = one_writable_vip_holder()
    assert new != old
    finish(writer, new)
    rejoin(old)


def test_primary_unreachable_from_the_controller_only_is_not_failed_over(writer):
    primary = one_writable_vip_holder()
    epochs = {n: epoch(n) for n in NODES}
    cut(primary, only=CONTROLLER)
    try:
        result = run("failover.yml")
    finally:
        heal(primary)
    assert result.returncode != 0
    assert "NOT PROMOTED" in result.stdout and "may still accept writes" in result.stdout
    assert writable_nodes() == [primary] and {n: epoch(n) for n in NODES} == epochs
    finish(writer, primary)


def test_failover_interrupted_after_the_promotion_is_finished_by_the_next_run(writer):
    old = one_writable_vip_holder()
    subprocess.run(["podman", "kill", old], check=True)
    killed_at = time.monotonic()
    argv, env = playbook_command("failover.yml")
    controller = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    others = [n for n in NODES if n != old]
    wait_until(lambda: any(is_writable(n) for n in others), timeout=30, message="a promotion")
    # The controller dies here, with its forks (its own process group, never ours).
    assert os.getpgid(controller.pid) == controller.pid != os.getpgid(0)
    os.killpg(controller.pid, signal.SIGKILL)
    controller.wait()
    new = next(n for n in others if is_writable(n))
    print(f"promoted {new} {time.monotonic() - killed_at:.2f} s after the kill; controller killed")
    result = run("failover.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    third = next(n for n in others if n != new)
    wait_until(lambda: streams_from(third, new), timeout=20, message=f"{third} streaming from {new}")
    assert epoch(third) == epoch(new)
    finish(writer, new)
    # The old primary's host comes back: a newer epoch exists, so it starts read-only.
    start(old)
    wait_until(lambda: sh(old, "pg_isready -q").returncode == 0, timeout=60, message=f"PostgreSQL on {old}")
    assert not is_writable(old) and fenced(old)
    rejoin(old)


def interrupted(name, until, *extra):
    """Run a playbook and kill the controller once until() holds: the playbook, its forks
    and the module each of them runs on a host (pipelined: a bare python3)."""
    argv, env = playbook_command(name, *extra)
    controller = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(until, timeout=60, message=f"{name} to get there", interval=0.05)
    finally:
        assert os.getpgid(controller.pid) == controller.pid != os.getpgid(0)
        os.killpg(controller.pid, signal.SIGKILL)
        controller.wait()
        for node in NODES:
            sh(node, "pkill -KILL -f '^/usr/bin/python3$'; true")


def cluster_follows(primary):
    for node in NODES:
        if node != primary:
            wait_until(lambda n=node: streams_from(n, primary), timeout=20, message=f"{node} streaming from {primary}")
        assert epoch(node) == epoch(primary)


def test_switchover_interrupted_before_the_promotion_is_resumed_by_the_next_run(writer):
    old = one_writable_vip_holder()
    candidate = sorted(n for n in NODES if n != old)[0]
    # The candidate holds its replay: the controller then waits in the promotion step for
    # the old primary's final checkpoint, and dies there.
    psql(candidate, "SELECT pg_wal_replay_pause()")
    try:
        interrupted("switchover.yml", lambda: sh(old, "pg_isready -q").returncode != 0,
                    "-e", f"new_primary={candidate}")
        time.sleep(0.5)
    finally:
        psql(candidate, "SELECT pg_wal_replay_resume()")
    assert writable_nodes() == [] and fenced(old)
    result = run("switchover.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Resumed an interrupted switchover" in result.stdout
    assert one_writable_vip_holder() == candidate
    cluster_follows(candidate)
    finish(writer, candidate)


def test_switchover_interrupted_after_the_promotion_is_finished_by_the_next_run(writer):
    old = one_writable_vip_holder()
    candidate = sorted(n for n in NODES if n != old)[0]
    interrupted("switchover.yml", lambda: is_writable(candidate), "-e", f"new_primary={candidate}")
    # Without new_primary: a re-run must finish this move, not start another one. (Killed
    # a little later than the promotion, e.g. on a loaded machine, the run may have
    # finished everything: then there is nothing to finish, and still no new move.)
    result = run("switchover.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "SWITCHOVER FINISHED" in result.stdout or "no interrupted switchover to finish" in result.stdout
    assert one_writable_vip_holder() == candidate
    cluster_follows(candidate)
    finish(writer, candidate)


def test_a_clone_cut_short_is_cloned_again_by_the_next_resync(writer):
    primary = one_writable_vip_holder()
    node = sorted(n for n in NODES if n != primary)[0]
    sh(node, f"systemctl stop postgresql@15-main && rm -rf {DATA}")  # a replaced disk
    # pg_basebackup dies half-way (the host's power, an OOM kill): pg_control, which it
    # copies last, is missing, so the copy looks like no cluster at all.
    subprocess.run(["podman", "exec", "-d", node, "sh", "-c",
                    f"until [ -e {DATA}/PG_VERSION ]; do sleep 0.005; done; pkill -KILL -x pg_basebackup"], check=True)
    result = run("resync.yml", "-e", f"node={node}")
    assert result.returncode != 0 and "it clones again" in result.stdout
    assert sh(node, f"test -e {DATA}.hastack-cloning && test ! -e {DATA}/global/pg_control").returncode == 0
    rejoin(node)
    assert sh(node, f"ls -d {DATA}.hastack-* 2>/dev/null").stdout.strip() == ""  # nothing moved aside
    finish(writer, primary)


def test_synchronous_failover_refuses_while_a_replica_is_unreachable_unless_told(writer):
    old = one_writable_vip_holder()
    missing = [n for n in NODES if n != old][1]
    cut(missing, only=CONTROLLER)  # still in the cluster, only the controller cannot ask it
    try:
        subprocess.run(["podman", "kill", old], check=True)
        refused = run("failover.yml")
        assert refused.returncode != 0
        assert f"{missing} did not report" in refused.stdout and "failover_accept_loss" in refused.stdout
        assert not any(is_writable(n) for n in NODES if n != old)
        forced = run("failover.yml", "-e", "failover_accept_loss=true")
        assert forced.returncode == 0, forced.stdout[-3000:]
    finally:
        heal(missing)
    new = one_writable_vip_holder()
    # The replica that was left out may have received WAL the new primary never had (it
    # was a synchronous standby): it is rejoined on purpose, with pg_rewind.
    rejoin(missing)
    finish(writer, new)
    start(old)
    wait_until(lambda: sh(old, "pg_isready -q").returncode == 0, timeout=60, message=f"PostgreSQL on {old}")
    assert not is_writable(old)
    rejoin(old)


def test_a_stop_while_postgresql_is_still_starting_is_a_fast_shutdown():
    # An operator runs resync.yml on a host that has just booted: its PostgreSQL answers
    # (pg_isready) while systemd still runs the start, and the stop skips ExecStop. With
    # SIGTERM that was a smart shutdown that could hang for Debian's hour-long stop timeout.
    primary = one_writable_vip_holder()
    node = sorted(n for n in NODES if n != primary)[0]
    log = "/var/log/postgresql/postgresql-15-main.log"
    for _ in range(2):  # not more: systemd refuses a 6th start within 10 s
        sh(node, "systemctl restart --no-block postgresql@15-main")
        wait_until(lambda: sh(node, "pg_isready -q && systemctl is-active postgresql@15-main").stdout.strip()
                   == "activating", timeout=30, message=f"{node} answering while its start still runs")
        fast_before = sh(node, f"grep -c 'received fast shutdown request' {log}").stdout.strip()
        assert sh(node, "systemctl stop postgresql@15-main", timeout=60).returncode == 0
        assert sh(node, "systemctl is-active postgresql@15-main").stdout.strip() == "inactive"
        assert sh(node, f"grep -c 'received fast shutdown request' {log}").stdout.strip() != fast_before
    sh(node, "systemctl start postgresql@15-main")
    wait_until(lambda: streams_from(node, primary), timeout=30, message=f"{node} streaming from {primary}")


def test_every_database_host_restarted_at_once_comes_back_with_the_recorded_primary(writer):
    primary = one_writable_vip_holder()
    restarted_at = time.monotonic()
    start(*NODES, restart=True)
    assert one_writable_vip_holder(timeout=60) == primary
    print(f"{primary} writable behind the VIP {time.monotonic() - restarted_at:.2f} s after the restart")
    for node in NODES:
        if node != primary:
            wait_until(lambda n=node: streams_from(n, primary), timeout=30, message=f"{node} streaming")
    finish(writer, primary)


def test_old_primary_restarted_while_its_peers_are_unreachable_comes_up_read_only(writer):
    primary = one_writable_vip_holder()
    subprocess.run(["podman", "stop", "-t", "5", primary], check=True)
    for node in [n for n in NODES if n != primary] + [WITNESS]:
        cut(node, only=NODES[primary])
    try:
        start(primary)
        wait_until(lambda: sh(primary, "pg_isready -q").returncode == 0, timeout=60,
                   message=f"PostgreSQL on {primary}")
        assert not is_writable(primary) and fenced(primary)
        assert "no majority" in sh(primary, "journalctl -u postgresql@15-main --no-pager").stdout
    finally:
        for node in [n for n in NODES if n != primary] + [WITNESS]:
            heal(node)
    # No primary now: failover.yml promotes a replica (the fenced node is never chosen by
    # itself) and the old primary rejoins.
    result = run("failover.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    new = one_writable_vip_holder()
    assert new != primary
    finish(writer, new)
    rejoin(primary)
