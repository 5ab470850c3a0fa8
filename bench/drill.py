#!/usr/bin/env python3
"""Failover drill on the lab, through the VIPs, the way users see it.

A client on the controller posts entries to the app through the app VIP, one after
another, and records every entry the app acknowledged (201 with its id). Each round:
  1. kills the primary's whole host (podman kill) and starts failover.yml at that moment;
     reports the time from the kill to the first acknowledged entry, failover.yml's own
     time to its first write through the DB VIP, and the acknowledged entries missing on
     the new primary (expected 0 in synchronous mode);
  2. starts the old host again (its PostgreSQL comes up fenced, read-only) and rejoins it
     with resync.yml;
  3. switches back with switchover.yml and reports the longest pause between two
     acknowledged entries (the write gap) and again the entries missing.

Usage: .venv/bin/python bench/drill.py [--rounds N]   (after `make converge`)
"""

import argparse
import re
import statistics
import sys
import time

from benchlib import ROOT, AppClient, playbook, sh

DB_VIP, APP_URL = "198.18.1.100", "http://198.18.1.101:8000"
NODES = ("db1", "db2", "db3")

def on(node, *args):
    return sh(["podman", "exec", "hastack-lab-" + node, *args], timeout=60)


def vip_holder():
    return next((n for n in NODES if f" {DB_VIP}/" in on(n, "ip", "-o", "-4", "addr", "show").stdout), None)


def stored_ids(node):
    out = on(node, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", "hastack", "-c",
             "SELECT id FROM usage_entries")
    if out.returncode:
        raise RuntimeError(out.stderr)
    return {int(x) for x in out.stdout.split()}


def wait_for_ssh(node, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if on(node, "systemctl", "is-active", "ssh").stdout.strip() == "active":
            return
        time.sleep(0.5)
    sys.exit(f"{node} did not come back")


def drill(client, round_no):
    old = vip_holder()
    if not old:
        sys.exit("nobody holds the DB VIP: converge the lab first (make converge)")
    time.sleep(1)
    sh(["podman", "kill", "hastack-lab-" + old])
    kill_at = time.monotonic()
    failover_s, out = playbook("failover.yml")
    (ROOT / ".cache").mkdir(exist_ok=True)
    (ROOT / ".cache" / "drill-failover.log").write_text(out, encoding="utf-8")
    new = re.search(r"FAILOVER DONE: (\S+) is the primary", out).group(1)
    probe = re.search(r"committed on \S+\s+([0-9.]+)\s+s after start", out)
    flat = " ".join(out.split())
    decided = re.search(r"Timings: decide ([0-9.]+) s", flat)
    writable = re.search(r"to writable ([0-9.]+) s after start", flat)
    proof = re.search(r"waited ([0-9.]+) s for the proof", flat)
    deadline = time.monotonic() + 30
    while client.first_after(kill_at, new) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first = client.first_after(kill_at, new)
    lost_failover = client.lost(lambda: stored_ids(new))

    sh(["podman", "start", "hastack-lab-" + old])
    wait_for_ssh(old)
    deadline = time.monotonic() + 60
    while on(old, "pg_isready", "-q").returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    fenced = on(old, "test", "-f", "/var/lib/postgresql/15/main/hastack.fenced").returncode == 0
    resync_s, out = playbook("resync.yml", "-e", f"node={old}")
    rejoin = re.search(r"rejoined in ([0-9.]+) s", out)

    sw_start = time.monotonic()
    switchover_s, _ = playbook("switchover.yml", "-e", f"new_primary={old}")
    time.sleep(1)
    gap = client.longest_gap(sw_start, time.monotonic())
    row = {"round": round_no, "killed": old, "promoted": new,
           "kill_to_first_write_s": round(first - kill_at, 2) if first else None,
           "failover_yml_s": round(failover_s, 2),
           "failover_first_vip_write_s": float(probe.group(1)) if probe else None,
           "failover_decided_s": float(decided.group(1)) if decided else None,
           "failover_writable_s": float(writable.group(1)) if writable else None,
           "failover_proof_wait_s": float(proof.group(1)) if proof else None,
           "lost_failover": lost_failover, "old_primary_fenced_on_start": fenced,
           "resync_yml_s": round(resync_s, 2), "rejoin_module_s": float(rejoin.group(1)) if rejoin else None,
           "switchover_yml_s": round(switchover_s, 2), "switchover_write_gap_s": round(gap, 2) if gap else None,
           "lost_switchover": client.lost(lambda: stored_ids(old))}
    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = AppClient(APP_URL, 0.05)
    client.start()
    time.sleep(1)
    if not client.acked:
        sys.exit(f"no entry acknowledged through {APP_URL}: converge the lab first (make converge)")
    rows = [drill(client, n) for n in range(1, args.rounds + 1)]
    client.stop.set()
    print(f"acknowledged writes: {len(client.acked)}")
    for key in ("kill_to_first_write_s", "failover_first_vip_write_s", "failover_decided_s", "failover_proof_wait_s",
                "failover_writable_s", "failover_yml_s", "resync_yml_s",
                "rejoin_module_s", "switchover_yml_s", "switchover_write_gap_s"):
        values = [r[key] for r in rows if r[key] is not None]
        if values:
            print(f"median {key}: {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})")
    print(f"acknowledged writes lost: {sum(r['lost_failover'] + r['lost_switchover'] for r in rows)}")


if __name__ == "__main__":
    main()
