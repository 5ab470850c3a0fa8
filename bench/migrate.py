#!/usr/bin/env python3
"""SQLite → PostgreSQL: load rate and write pause of migrate_sqlite_to_postgres.yml for a
~100 MB SQLite database, on the hosts of the Molecule scenario `migrate`, converged and not
yet migrated:

    molecule converge -s migrate            # or: /tmp/mol.sh . migrate converge
    .venv/bin/python bench/migrate.py [--mb 100]

Fills the app's usage_entries table on the active app server (mg-app1) to about --mb MB,
then runs the playbook while a client writes through the app every 20 ms, and prints the
playbook's figures (rows, MiB, load seconds and rows/s, the write pause it measured) and
the client's: the longest time between two acknowledged writes. It migrates the scenario's
app: run `molecule destroy -s migrate` (or converge a fresh one) before running it again.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP, APP_URL, SQLITE = "mg-app1", "http://198.18.9.21:8000", "/var/lib/hastack-app/app.db"

FILL = r"""
import sqlite3, sys
path, target = sys.argv[1], int(sys.argv[2]) * 1024 * 1024
conn = sqlite3.connect(path, timeout=30)
def size():
    return conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
n = 0
while size() < target:
    with conn:
        conn.executemany("INSERT INTO usage_entries (machine, member, minutes, created_at) VALUES (?, ?, ?, ?)",
                         [("machine-%03d" % (i % 500), "member %07d · %s" % (n + i, "ü" * 60), (n + i) % 1440 + 1,
                           "2026-%02d-%02dT%02d:%02d:%02d.%03dZ" % ((n + i) % 12 + 1, (n + i) % 28 + 1, i % 24,
                                                                   i % 60, i % 60, i % 1000)) for i in range(50000)])
    n += 50000
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(n, size())
"""


def inventory():
    found = sorted(glob.glob(os.path.expanduser("~/.ansible/tmp/molecule.*.migrate/inventory")), key=os.path.getmtime)
    if not found:
        sys.exit("no converged `migrate` scenario: run `molecule converge -s migrate` first")
    return found[-1]


class Writer(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.results, self.stop = [], threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            body = json.dumps({"machine": "bench", "member": f"bench-{n}"}).encode()
            # APP_URL is a fixed http:// address of the scenario.
            request = urllib.request.Request(APP_URL + "/api/entries", data=body, method="POST",  # noqa: S310
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = None
            self.results.append((time.monotonic(), status))
            n += 1
            time.sleep(0.02)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    start = time.monotonic()
    # Filled with the app and Litestream stopped (a bulk insert is not what is measured);
    # Litestream then replicates the whole file once before the playbook's preflight.
    subprocess.run(["podman", "exec", APP, "systemctl", "stop", "hastack-app", "litestream"], check=True)
    filled = subprocess.run(["podman", "exec", "-i", APP, "runuser", "-u", "hastack-app", "--", "python3", "-",
                             SQLITE, str(args.mb)], input=FILL, capture_output=True, text=True, check=False)
    subprocess.run(["podman", "exec", APP, "systemctl", "start", "litestream", "hastack-app"], check=True)
    if filled.returncode:
        sys.exit(filled.stderr)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(APP_URL + "/health", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    rows, size = map(int, filled.stdout.split())
    print(f"filled: {rows} rows added, the file is {size / 1048576:.1f} MiB ({time.monotonic() - start:.1f} s)")

    writer = Writer()
    writer.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    # The scenario's inventory reads its passwords from Molecule's ephemeral folder.
    env.update(ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               MOLECULE_EPHEMERAL_DIRECTORY=os.path.dirname(inventory()), MOLECULE_PROJECT_DIRECTORY=ROOT)
    started = time.monotonic()
    run = subprocess.run([os.path.join(ROOT, ".venv/bin/ansible-playbook"), "-i", inventory(),
                          "migrate_sqlite_to_postgres.yml"], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=False)
    wall = time.monotonic() - started
    time.sleep(2)
    writer.stop.set()
    writer.join()
    out = " ".join(run.stdout.split())
    if run.returncode:
        sys.exit(run.stdout[-5000:])
    print("\n".join(run.stdout.splitlines()[-28:]))
    load = re.search(r"(\d+) rows in (\d+) tables, loaded and verified .*? in ([\d.]+) s "
                     r"\((\d+) rows/s, ([\d.]+) MiB\)", out)
    pause = re.search(r"Write pause \(maintenance start to the first write on PostgreSQL\): ([\d.]+) s", out)
    acked = [t for t, status in writer.results if status == 201]
    gap = max((b - a for a, b in zip(acked, acked[1:], strict=False)), default=None)
    refused = sum(1 for _, status in writer.results if status == 503)
    other = sorted({str(status) for _, status in writer.results if status not in (201, 503)})
    print(f"playbook: {wall:.1f} s wall")
    print(f"load: {load.group(1)} rows, {load.group(5)} MiB, {load.group(3)} s, {load.group(4)} rows/s "
          f"({float(load.group(5)) / float(load.group(3)):.1f} MiB/s), indexes, foreign keys and checksums included")
    print(f"write pause (playbook: maintenance on -> first write committed on PostgreSQL): {pause.group(1)} s")
    print(f"client: longest gap between acknowledged writes {gap:.2f} s; {refused} writes refused with 503; "
          f"other answers: {other or 'none'}")


if __name__ == "__main__":
    main()
