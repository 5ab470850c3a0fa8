#!/usr/bin/env python3
"""`make bench`: hastack's failover, switchover and rejoin on the lab, against a bare
pg_promote behind keepalived measured in the same run.

A writer on the controller commits rows straight through the DB VIP (a new connection
attempt every 50 ms while none writes, so the first acknowledged write after a failover
is seen within ~50 ms of being possible) and records every acknowledged id. Each round:

  baseline   the primary's host is killed (podman kill); at that moment, with no Ansible
             and no SSH (podman exec), the most advanced replica records itself as the
             primary (cluster epoch + 1, keepalived's track file) and runs pg_promote(),
             and the third node is pointed at it (primary_conninfo + reload). The same
             keepalived and sentinels as hastack: the VIP follows the same rules.
  cold       the primary's host is killed and failover.yml started at that moment with an
             empty SSH control directory (an operator at 3 a.m. has no control master).
  warm       the same, a minute after status.yml opened control masters to every host.

After each: the old host is started again and `resync.yml -e node=<it>` rejoins it (the
module's own rejoin time is the "rejoin on the node" figure); every acknowledged id is
looked up on the new primary (synchronous mode: 0 lost). Then `switchover.yml` rounds:
the longest pause between two acknowledged writes. Optional parts (flags): pgbench
replication lag, rewind vs pg_basebackup at a larger scale, site.yml's second run, and
bench/backup.py's throughput.

Usage: .venv/bin/python bench/bench.py [--rounds N] [--modes baseline,cold,warm]
       [--switchovers N] [--lag SECONDS] [--rewind-scale S] [--site] [--backup-scale S]
(after `make demo` or `make converge`; `make bench` runs it with every part).
"""

import argparse
import json
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

from benchlib import ENV, ROOT, AckedWrites, AppClient, app_password, sh

DB_VIP = "198.18.1.100"
APP_URL = "http://198.18.1.101:8000"
NODES = {"db1": "198.18.1.11", "db2": "198.18.1.12", "db3": "198.18.1.13"}
DATA = "/var/lib/postgresql/15/main"
CLONE = DATA + ".bench-clone"  # beside the data directory: same disk, postgres's folder


def load():
    return "%.2f %.2f %.2f" % os.getloadavg()


def machine():
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")),
                   platform.processor())
    return "%s, %d CPUs (%s), Python %s" % (platform.platform(), os.cpu_count(), cpu, platform.python_version())


def on(node, *args, timeout=120, stdin=None):
    return sh(["podman", "exec", "-i", "hastack-lab-" + node, *args], timeout=timeout, input=stdin)


def psql(node, sql, db="hastack"):
    out = on(node, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", db, "-c", sql)
    if out.returncode:
        raise RuntimeError("%s: %s" % (node, out.stderr.strip()))
    return out.stdout.strip()


def roles():
    found = {}
    for node in NODES:
        try:
            found[node] = "primary" if psql(node, "SELECT pg_is_in_recovery()", "postgres") == "f" else "replica"
        except (RuntimeError, subprocess.TimeoutExpired):
            found[node] = "down"
    return found


def primary():
    writable = [n for n, r in roles().items() if r == "primary"]
    if len(writable) != 1:
        sys.exit("expected exactly one writable node, found %s: converge the lab first (make demo)" % writable)
    return writable[0]


class VipWriter(AckedWrites):
    """Commits rows through the DB VIP. While no connection has written for 0.2 s, a new
    connection attempt starts every 50 ms in its own thread (a SYN sent while the VIP had
    no holder is only retried after 1 s: one attempt at a time would measure TCP's retry,
    not the failover). Each acknowledged row: (monotonic time, id, node that committed)."""

    def __init__(self, password, max_attempts=30):
        super().__init__()
        self.password, self.max_attempts = password, max_attempts
        self.last_ack, self.lock, self.attempts, self.connected = 0.0, threading.Lock(), 0, 0

    def attempt(self):
        try:
            with psycopg.connect(host=DB_VIP, dbname="hastack", user="hastack", password=self.password,
                                 connect_timeout=2, autocommit=True, tcp_user_timeout=1000,
                                 application_name="hastack-bench") as conn:
                with self.lock:
                    # Connected ones wait for their commit (synchronous: until a replica
                    # streams from the new primary); more of them would only use up
                    # max_connections, the replicas' walsenders' too.
                    if time.monotonic() - self.last_ack < 0.2 or self.connected >= 2:
                        return
                    self.connected += 1
                try:
                    while not self.stop.is_set():
                        row = conn.execute("INSERT INTO bench_writes DEFAULT VALUES "
                                           "RETURNING id, current_setting('hastack.node', true)").fetchone()
                        now = time.monotonic()
                        self.last_ack = now
                        self.acked.append((now, row[0], row[1]))
                        time.sleep(0.005)
                finally:
                    with self.lock:
                        self.connected -= 1
        except (psycopg.Error, OSError):
            pass
        finally:
            with self.lock:
                self.attempts -= 1

    def run(self):
        while not self.stop.is_set():
            if time.monotonic() - self.last_ack > 0.2:
                with self.lock:
                    spawn = self.attempts < self.max_attempts
                    if spawn:
                        self.attempts += 1
                if spawn:
                    threading.Thread(target=self.attempt, daemon=True).start()
            time.sleep(0.05)


def playbook(name, *extra, env=None):
    start = time.monotonic()
    out = sh([str(ROOT / ".venv/bin/ansible-playbook"), "-i", "inventories/lab", name, *extra], cwd=ROOT,
             env=env or ENV)
    return time.monotonic() - start, out


def must(name, result):
    seconds, out = result
    if out.returncode:
        sys.exit("%s failed:\n%s\n%s" % (name, out.stdout[-4000:], out.stderr[-2000:]))
    return seconds, out.stdout


def close_masters(directory):
    for sock in pathlib.Path(directory).glob("*"):
        sh(["ssh", "-O", "exit", "-o", "ControlPath=%s" % sock, "x"], timeout=10)
    shutil.rmtree(directory, ignore_errors=True)


def wait_back(node, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (on(node, "systemctl", "is-active", "ssh", timeout=10).stdout.strip() == "active"
                and on(node, "pg_isready", "-q", timeout=10).returncode == 0):
            return
        time.sleep(0.5)
    sys.exit("%s did not come back within %d s" % (node, timeout))


def stored_ids(node):
    return {int(x) for x in psql(node, "SELECT id FROM bench_writes").split()}


def replica_order(old):
    """The replicas, most advanced first (what both failovers promote)."""
    rows = []
    for node in NODES:
        if node == old:
            continue
        lsn = psql(node, "SELECT pg_last_wal_receive_lsn() - '0/0'::pg_lsn", "postgres")
        rows.append((-float(lsn or 0), node))
    return [n for _, n in sorted(rows)]


def _record_epoch(extra_files):
    """Shell lines that record a new cluster epoch with $1 as the primary in
    /var/lib/hastack/cluster.json (what hastack's modules write), plus extra_files
    [(path, text)], each replaced atomically."""
    return r"""python3 - "$1" <<'PY'
import json, os, sys
path = "/var/lib/hastack/cluster.json"
state = json.load(open(path))
state.update(epoch=int(state.get("epoch") or 0) + 1, primary=sys.argv[1])
for name, text in [(path, json.dumps(state, sort_keys=True) + "\n")] + %r:
    with open(name + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(name + ".tmp", name)
PY
""" % (extra_files,)


BASELINE_PROMOTE = "set -e\n" + _record_epoch([("/var/lib/hastack/primary.track", "0\n")]) + r"""
runuser -u postgres -- psql -XAtq -c 'SELECT pg_promote(true, 60)'
"""

BASELINE_REPOINT = "set -e\n" + _record_epoch([]) + r"""
conf=/etc/postgresql/15/main/conf.d/90-hastack-replication.conf
sed -i -e "s/host=[0-9.]*/host=$2/" -e "s/^primary_slot_name.*/primary_slot_name = ''/" $conf
systemctl reload postgresql@15-main
"""


def failover_round(writer, app, mode, round_no, args):
    old = primary()
    order = replica_order(old)
    env = dict(ENV)
    cp_dir = None
    if mode == "cold":
        cp_dir = tempfile.mkdtemp(prefix="bench-cp-", dir="/tmp")
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = cp_dir
    elif mode == "warm":
        must("status.yml", playbook("status.yml"))
        time.sleep(args.warm_wait)
    time.sleep(1)
    row = {"mode": mode, "round": round_no, "killed": old, "load": load()}
    sh(["podman", "kill", "hastack-lab-" + old])
    kill_at = time.monotonic()
    if mode == "baseline":
        new, third = order[0], order[1:]
        jobs = [subprocess.Popen(["podman", "exec", "-i", "hastack-lab-" + new, "sh", "-s", new],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
        for node in third:
            jobs.append(subprocess.Popen(["podman", "exec", "-i", "hastack-lab-" + node, "sh", "-s", new,
                                          NODES[new]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True))
        outs = [job.communicate(script, timeout=120) for job, script in
                zip(jobs, [BASELINE_PROMOTE] + [BASELINE_REPOINT] * len(third), strict=True)]
        row["tool_s"] = round(time.monotonic() - kill_at, 2)
        if any(job.returncode for job in jobs):
            sys.exit("baseline failed: %s" % outs)
    else:
        seconds, out = playbook("failover.yml", env=env)
        (ROOT / ".cache").mkdir(exist_ok=True)
        (ROOT / ".cache" / ("bench-failover-%s-%d.log" % (mode, round_no))).write_text(out.stdout, encoding="utf-8")
        if out.returncode:
            sys.exit("failover.yml failed:\n%s" % out.stdout[-4000:])
        row["tool_s"] = round(seconds, 2)
        new = re.search(r"FAILOVER DONE: (\S+) is the primary", out.stdout).group(1)
        flat = " ".join(out.stdout.split())
        for key, pattern in (("probe_s", r"committed on \S+ ([0-9.]+) s after start"),
                             ("decided_s", r"Timings: decide ([0-9.]+) s"),
                             ("writable_s", r"to writable ([0-9.]+) s after start")):
            match = re.search(pattern, flat)
            row[key] = float(match.group(1)) if match else None
    deadline = time.monotonic() + 30
    while writer.first_after(kill_at, new) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first = writer.first_after(kill_at, new)
    while app and app.first_after(kill_at, new) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    app_first = app.first_after(kill_at, new) if app else None
    row.update(promoted=new, kill_to_first_write_s=round(first - kill_at, 3) if first else None,
               app_after_db_s=round(app_first - first, 3) if app_first and first else None,
               lost=writer.lost(lambda: stored_ids(new)))
    if cp_dir:
        close_masters(cp_dir)
    sh(["podman", "start", "hastack-lab-" + old])
    wait_back(old)
    seconds, out = must("resync.yml", playbook("resync.yml", "-e", "node=" + old))
    rejoin = re.search(r"rejoined in ([0-9.]+) s", out)
    steps = re.search(r"Steps: ([^.]*(?:\.\d+[^.]*)*)\.", " ".join(out.split()))
    row.update(resync_yml_s=round(seconds, 2), rejoin_s=float(rejoin.group(1)) if rejoin else None,
               rejoin_steps=steps.group(1) if steps else None)
    print(json.dumps(row), flush=True)
    return row


def switchover_round(writer, round_no):
    target = replica_order(primary())[0]
    time.sleep(1)
    start = time.monotonic()
    row = {"round": round_no, "to": target, "load": load()}
    seconds, _ = must("switchover.yml", playbook("switchover.yml", "-e", "new_primary=" + target))
    time.sleep(1)
    gap = writer.longest_gap(start, time.monotonic())
    row.update(switchover_yml_s=round(seconds, 2), write_gap_s=round(gap, 3) if gap else None,
               lost=writer.lost(lambda: stored_ids(target)))
    print(json.dumps(row), flush=True)
    return row


def lag_under_load(seconds):
    """Replication lag p50/p99 while pgbench writes on the primary (scale 10, 4 clients)."""
    node = primary()
    psql(node, "SELECT 1", "postgres")
    on(node, "runuser", "-u", "postgres", "--", "dropdb", "--if-exists", "bench_lag")
    on(node, "runuser", "-u", "postgres", "--", "createdb", "bench_lag")
    on(node, "runuser", "-u", "postgres", "--", "pgbench", "-q", "-i", "-s", "10", "bench_lag", timeout=600)
    job = subprocess.Popen(["podman", "exec", "hastack-lab-" + node, "runuser", "-u", "postgres", "--", "pgbench",
                            "-c", "4", "-j", "2", "-T", str(seconds), "bench_lag"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = {}
    while job.poll() is None:
        out = psql(node, "SELECT application_name, COALESCE(extract(epoch FROM replay_lag), 0), "
                         "pg_current_wal_lsn() - replay_lsn FROM pg_stat_replication WHERE state = 'streaming'",
                   "postgres")
        for line in out.splitlines():
            name, secs, lag_bytes = line.split("|")
            samples.setdefault(name, []).append((float(secs), float(lag_bytes or 0)))
        time.sleep(0.2)
    tps = re.search(r"tps = ([0-9.]+)", job.stdout.read())
    on(node, "runuser", "-u", "postgres", "--", "dropdb", "bench_lag")
    result = {"primary": node, "tps": float(tps.group(1)) if tps else None, "load": load()}
    for name, rows in samples.items():
        secs = sorted(s for s, _ in rows)
        lag_bytes = sorted(b for _, b in rows)
        result[name] = {"p50_s": pct(secs, 50), "p99_s": pct(secs, 99), "p50_bytes": pct(lag_bytes, 50),
                        "p99_bytes": pct(lag_bytes, 99), "samples": len(rows)}
    print(json.dumps({"replication_lag": result}), flush=True)
    return result


def pct(values, p):
    return round(values[min(len(values) - 1, int(len(values) * p / 100))], 4) if values else None


def rewind_vs_basebackup(scale):
    """pgbench -i -s SCALE on the primary, a small divergence (the old primary's host killed
    while it writes), failover.yml, then the old primary rejoined by resync.yml (pg_rewind)
    against a pg_basebackup of the new primary on the same node into a scratch folder."""
    old = primary()
    on(old, "runuser", "-u", "postgres", "--", "dropdb", "--if-exists", "bench_big")
    on(old, "runuser", "-u", "postgres", "--", "createdb", "bench_big")
    start = time.monotonic()
    on(old, "runuser", "-u", "postgres", "--", "pgbench", "-q", "-i", "-s", str(scale), "bench_big", timeout=3600)
    size = psql(old, "SELECT pg_database_size('bench_big')", "postgres")
    print("pgbench -i -s %d: %s bytes in %.1f s" % (scale, size, time.monotonic() - start), flush=True)
    psql(old, "CHECKPOINT", "postgres")
    job = subprocess.Popen(["podman", "exec", "hastack-lab-" + old, "runuser", "-u", "postgres", "--", "pgbench",
                            "-c", "2", "-T", "30", "bench_big"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    sh(["podman", "kill", "hastack-lab-" + old])
    job.wait()
    must("failover.yml", playbook("failover.yml"))
    new = primary()
    sh(["podman", "start", "hastack-lab-" + old])
    wait_back(old)
    seconds, out = must("resync.yml", playbook("resync.yml", "-e", "node=" + old))
    rejoin = re.search(r"rejoined in ([0-9.]+) s", out)
    method = re.search(r"RESYNC DONE: \S+ \(was [^)]*\) ([a-z >-]+):", out)
    # pg_rewind's own step, beside the whole rejoin (stop, rewind, start with recovery).
    rewind = re.search(r"pg_rewind ([0-9.]+) s", " ".join(out.split()))
    start = time.monotonic()
    clone = on(old, "runuser", "-u", "postgres", "--", "pg_basebackup", "-D", CLONE, "-X", "stream",
               "-c", "fast", "-h", NODES[new], "-U", "replicator", "-w", timeout=3600)
    clone_s = time.monotonic() - start
    on(old, "rm", "-rf", CLONE)
    psql(new, "DROP DATABASE bench_big", "postgres")
    result = {"scale": scale, "database_bytes": int(size), "resync_yml_s": round(seconds, 2),
              "rejoin_s": float(rejoin.group(1)) if rejoin else None, "method": method.group(1) if method else None,
              "pg_rewind_s": float(rewind.group(1)) if rewind else None,
              "basebackup_s": round(clone_s, 2) if clone.returncode == 0 else None,
              "basebackup_error": clone.stderr.strip()[-300:] if clone.returncode else None, "load": load()}
    if result["rejoin_s"] and result["basebackup_s"]:
        result["rewind_over_basebackup"] = round(result["rejoin_s"] / result["basebackup_s"], 3)
    if result["pg_rewind_s"] is not None and result["basebackup_s"]:
        result["pg_rewind_over_basebackup"] = round(result["pg_rewind_s"] / result["basebackup_s"], 3)
    print(json.dumps({"rewind_vs_basebackup": result}), flush=True)
    return result


def site_second_run():
    seconds, out = playbook("site.yml")
    changed = [int(x) for x in re.findall(r"changed=(\d+)", out.stdout)]
    result = {"site_yml_s": round(seconds, 1), "changed": sum(changed), "rc": out.returncode, "load": load()}
    print(json.dumps({"site_second_run": result}), flush=True)
    return result


def summary(rows, key, label):
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return None
    med = statistics.median(values)
    print("%-58s median %6.2f  min %6.2f  max %6.2f  (n=%d)" % (label, med, min(values), max(values), len(values)))
    return med


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="baseline,cold,warm")
    parser.add_argument("--switchovers", type=int, default=3)
    parser.add_argument("--warm-wait", type=float, default=60.0,
                        help="seconds between status.yml and the kill in warm rounds")
    parser.add_argument("--no-app", dest="app", action="store_false",
                        help="no client through the app VIP (the app's first write after the DB VIP's)")
    parser.add_argument("--lag", type=int, default=0, help="seconds of pgbench for the replication lag (0: skip)")
    parser.add_argument("--rewind-scale", type=int, default=0, help="pgbench scale for rewind vs basebackup "
                        "(70 is ~1 GB; 0: skip)")
    parser.add_argument("--site", action="store_true", help="time site.yml's second run")
    parser.add_argument("--backup-scale", type=int, default=0, help="run bench/backup.py --scale S (0: skip)")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    print("command: %s" % " ".join([sys.executable, *sys.argv]))
    print("machine: %s" % machine())
    print("load at start: %s" % load(), flush=True)
    node = primary()
    psql(node, "SET ROLE hastack; CREATE TABLE IF NOT EXISTS bench_writes "
               "(id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
    writer = VipWriter(app_password())
    writer.start()
    app = AppClient(APP_URL, 0.02) if args.app else None
    if app:
        app.start()
    time.sleep(2)
    if not writer.acked:
        sys.exit("no write acknowledged through the DB VIP %s: converge the lab first (make demo)" % DB_VIP)
    rows = []
    for round_no in range(1, args.rounds + 1):
        for mode in modes:
            rows.append(failover_round(writer, app, mode, round_no, args))
    switch = [switchover_round(writer, n) for n in range(1, args.switchovers + 1)]
    extra = {}
    if args.lag:
        extra["lag"] = lag_under_load(args.lag)
    if args.rewind_scale:
        extra["rewind"] = rewind_vs_basebackup(args.rewind_scale)
    writer.stop.set()
    if app:
        app.stop.set()
    lost = writer.lost(lambda: stored_ids(primary()))
    if args.site:
        extra["site"] = site_second_run()
    if args.backup_scale:
        out = sh([sys.executable, str(ROOT / "bench" / "backup.py"), "--scale", str(args.backup_scale)], cwd=ROOT)
        print(out.stdout + out.stderr, flush=True)
    print()
    print("== %s; load at the end: %s; acknowledged writes: %d, lost: %d" % (
        machine(), load(), len(writer.acked), lost))
    medians = {}
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        print("-- %s (%s)" % (mode, ", ".join("load " + r["load"] for r in mine)))
        medians[mode] = summary(mine, "kill_to_first_write_s", "host killed -> first write through the DB VIP (s)")
        summary(mine, "app_after_db_s", "the app's first write after the DB VIP's (s)")
        summary(mine, "tool_s", "failover tool wall time (s)")
        summary(mine, "decided_s", "failover.yml start -> decision (s)")
        summary(mine, "writable_s", "failover.yml start -> new primary writable (s)")
        summary(mine, "probe_s", "failover.yml start -> its vip_probe write (s)")
        summary(mine, "resync_yml_s", "resync.yml wall time (s)")
        summary(mine, "rejoin_s", "rejoin on the node (pg_resync) (s)")
    if medians.get("baseline"):
        for mode in modes:
            if mode != "baseline" and medians.get(mode):
                ratios = []
                for r in (r for r in rows if r["mode"] == mode):
                    base = next((b for b in rows if b["mode"] == "baseline" and b["round"] == r["round"]), None)
                    if base and base["kill_to_first_write_s"] and r["kill_to_first_write_s"]:
                        ratios.append(r["kill_to_first_write_s"] / base["kill_to_first_write_s"])
                print("ratio %s / baseline: %.2f (medians); per round %s" % (
                    mode, medians[mode] / medians["baseline"], ", ".join("%.2f" % x for x in ratios)))
    print("-- switchover (%s)" % ", ".join("load " + r["load"] for r in switch))
    summary(switch, "write_gap_s", "switchover: longest pause between two acknowledged writes (s)")
    summary(switch, "switchover_yml_s", "switchover.yml wall time (s)")
    print("acknowledged writes lost: %d (failover rounds %s, switchovers %s)" % (
        lost, [r["lost"] for r in rows], [r["lost"] for r in switch]))
    return 1 if lost or any(r["lost"] for r in rows + switch) else 0


if __name__ == "__main__":
    sys.exit(main())
