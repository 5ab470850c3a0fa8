#!/usr/bin/env python3
"""Measure failover.yml, resync.yml and switchover.yml on the lab, with a real client.

A client on the controller inserts rows one at a time, each in its own transaction, and
records the id and time of every acknowledged commit. When its connection breaks it
reconnects to whichever database node accepts writes (there is no VIP yet), retrying
every 50 ms. Each round:
  1. SIGKILL PostgreSQL on the primary and start failover.yml at the same moment;
     time from the kill to the first acknowledged write on the new primary;
  2. resync.yml -e node=<old primary>: wall time and the module's own rejoin time;
  3. switchover.yml back to the old primary: the longest pause between two
     acknowledged writes (the write gap);
and after each step every acknowledged id must be on the current primary.

Usage: .venv/bin/python bench/failover.py [--rounds N]   (after `make converge`)
"""

import argparse
import re
import statistics
import time

import psycopg

from benchlib import AckedWrites, app_password, playbook, sh

NODES = {"db1": "198.18.1.11", "db2": "198.18.1.12", "db3": "198.18.1.13"}


def psql(node, sql):
    out = sh(["podman", "exec", "hastack-lab-" + node, "runuser", "-u", "postgres", "--", "psql", "-XAtq",
              "-d", "hastack", "-c", sql], timeout=60)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return out.stdout.strip()


def primary():
    for node in NODES:
        try:
            if psql(node, "SELECT pg_is_in_recovery()") == "f":
                return node
        except RuntimeError:
            pass
    raise RuntimeError("no primary")


class Client(AckedWrites):
    """Inserts rows straight into whichever node accepts them (no VIP)."""

    def __init__(self, password):
        super().__init__()
        self.password = password

    def run(self):
        while not self.stop.is_set():
            for node, address in NODES.items():
                try:
                    with psycopg.connect(host=address, dbname="hastack", user="hastack", password=self.password,
                                         connect_timeout=1, autocommit=True) as conn:
                        while not self.stop.is_set():
                            row = conn.execute("INSERT INTO bench (node) VALUES (%s) RETURNING id", (node,)).fetchone()
                            self.acked.append((time.monotonic(), row[0], node))
                except psycopg.Error:
                    continue
            time.sleep(0.05)


def lost(client, node):
    return client.lost(lambda: {int(x) for x in psql(node, "SELECT id FROM bench").split()})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    old = primary()
    psql(old, "SET ROLE hastack; CREATE TABLE IF NOT EXISTS bench (id bigserial PRIMARY KEY, node text, "
              "at timestamptz DEFAULT clock_timestamp())")
    client = Client(app_password())
    client.start()
    time.sleep(1)
    rows = []
    for round_no in range(1, args.rounds + 1):
        old = primary()
        kill_at = time.monotonic()
        sh(["podman", "exec", "hastack-lab-" + old, "pkill", "-KILL", "-x", "postgres"])
        failover_s, out = playbook("failover.yml")
        new = re.search(r"FAILOVER DONE: (\S+) is the primary", out).group(1)
        promote_s = float(re.search(r"promote ([0-9.]+) s", out).group(1))
        time.sleep(0.5)
        first = client.first_after(kill_at, new)
        lost_failover = lost(client, new)
        resync_s, out = playbook("resync.yml", "-e", f"node={old}")
        rejoin_s = float(re.search(r"rejoined in ([0-9.]+) s", out).group(1))
        sw_start = time.monotonic()
        switchover_s, out = playbook("switchover.yml", "-e", f"new_primary={old}")
        time.sleep(0.5)
        gap = client.longest_gap(sw_start, time.monotonic())
        lost_switchover = lost(client, old)
        row = {"round": round_no, "killed": old, "promoted": new,
               "kill_to_first_write_s": round(first - kill_at, 2) if first else None,
               "failover_yml_s": round(failover_s, 2), "pg_promote_s": promote_s,
               "lost_failover": lost_failover, "resync_yml_s": round(resync_s, 2),
               "rejoin_module_s": round(rejoin_s, 2),
               "switchover_yml_s": round(switchover_s, 2), "switchover_write_gap_s": round(gap, 2) if gap else None,
               "lost_switchover": lost_switchover}
        rows.append(row)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    client.stop.set()
    print(f"acknowledged writes: {len(client.acked)}")
    for key in ("kill_to_first_write_s", "failover_yml_s", "pg_promote_s", "resync_yml_s", "rejoin_module_s",
                "switchover_yml_s", "switchover_write_gap_s"):
        values = [r[key] for r in rows if r[key] is not None]
        print(f"median {key}: {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})")
    print(f"acknowledged writes lost: {sum(r['lost_failover'] + r['lost_switchover'] for r in rows)}")


if __name__ == "__main__":
    main()
