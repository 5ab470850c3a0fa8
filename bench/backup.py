#!/usr/bin/env python3
"""Backup and restore throughput on the lab for a ~1 GB database (pgbench -i).

Creates the database `pgbench` on the primary (pgbench -i -s SCALE, default 64: about
1 GB), then times on the backup host, with hastack-backup itself and a configuration
that names only that database (the lab's real backups are left alone):
  dump     pg_dump -Fc through the DB VIP, manifest with sha256 and exact row counts;
  verify   sha256 check, restore into the scratch cluster, row counts compared;
  base     pg_basebackup of the whole cluster through the DB VIP, then pg_verifybackup;
  pitr     base backup copied into the scratch cluster and the archive replayed to now.
Prints MB/s against the database size (pg_database_size) and the cluster size. Drops
the database and the benchmark's files afterwards.

Usage: .venv/bin/python bench/backup.py [--scale 64]   (after `make converge`)
"""

import argparse
import json
import subprocess
import sys
import time

NODES = ("db1", "db2", "db3")
DB_VIP = "198.18.1.100"
CONFIG = "/etc/hastack/bench-backup.json"


def on(host, *args, check=True, timeout=3600):
    result = subprocess.run(["podman", "exec", "hastack-lab-" + host, *args], capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        sys.exit(f"{host}: {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def psql(host, sql, db="postgres"):
    return on(host, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", db, "-c", sql).stdout.strip()


def timed(host, *args):
    start = time.monotonic()
    result = on(host, *args)
    return time.monotonic() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=64)
    args = parser.parse_args()
    primary = next((n for n in NODES if f" {DB_VIP}/" in on(n, "ip", "-o", "-4", "addr", "show").stdout), None)
    if not primary:
        sys.exit("nobody holds the DB VIP: converge the lab first (make converge)")
    psql(primary, "DROP DATABASE IF EXISTS pgbench")
    psql(primary, "CREATE DATABASE pgbench")
    start = time.monotonic()
    # Synchronous commit is local here: loading the test data is not what is measured.
    on(primary, "runuser", "-u", "postgres", "--", "env", "PGOPTIONS=-c synchronous_commit=local",
       "/usr/lib/postgresql/15/bin/pgbench", "-i", "-q", "-s", str(args.scale), "pgbench")
    load_s = time.monotonic() - start
    db_bytes = int(psql(primary, "SELECT pg_database_size('pgbench')"))
    cluster_bytes = int(psql(primary, "SELECT sum(pg_database_size(oid)) FROM pg_database"))

    cfg = json.loads(on("backup1", "cat", "/etc/hastack/backup.json").stdout)
    cfg.update(databases=["pgbench"], dump_root="/var/backups/hastack/bench-dumps",
               base_root="/var/backups/hastack/bench-base", keep_count=1, keep_days=0, base_keep_count=1,
               lock_file="/run/hastack-bench-backup.lock", failure_command="")
    on("backup1", "sh", "-c", f"umask 077; mkdir -p {cfg['dump_root']} {cfg['base_root']}; "
                              f"cat > {CONFIG} <<'EOF'\n{json.dumps(cfg)}\nEOF")
    env = ["env", f"HASTACK_BACKUP_CONFIG={CONFIG}", "/usr/local/sbin/hastack-backup"]
    mb = 1024 * 1024
    print(f"pgbench -i -s {args.scale}: database {db_bytes / mb:.0f} MB, cluster {cluster_bytes / mb:.0f} MB, "
          f"loaded in {load_s:.1f} s", flush=True)
    try:
        dump_s, _ = timed("backup1", *env, "dump")
        dump_bytes = int(on("backup1", "sh", "-c", f"du -sb {cfg['dump_root']} | cut -f1").stdout)
        print(f"dump   (pg_dump -Fc via DB VIP + manifest): {dump_s:6.1f} s  {db_bytes / mb / dump_s:6.1f} MB/s "
              f"of database, dump file {dump_bytes / mb:.0f} MB", flush=True)
        verify_s, out = timed("backup1", *env, "verify")
        if '"ok": true' not in out.stdout:
            sys.exit("verification failed: " + out.stdout)
        print(f"verify (sha256 + restore + row counts):     {verify_s:6.1f} s  {db_bytes / mb / verify_s:6.1f} MB/s "
              "of database", flush=True)
        base_s, _ = timed("backup1", *env, "base")
        print(f"base   (pg_basebackup + pg_verifybackup):   {base_s:6.1f} s  {cluster_bytes / mb / base_s:6.1f} MB/s "
              "of cluster", flush=True)
        time.sleep(1)
        pitr_target = psql(primary, "SELECT now()")
        time.sleep(1)
        psql(primary, "CREATE TABLE bench_after_target ()")  # a commit after the target, so recovery stops
        time.sleep(3)
        pitr_s, out = timed("backup1", *env, "pitr", pitr_target)
        if '"ok": true' not in out.stdout:
            sys.exit("PITR failed: " + out.stdout)
        print(f"pitr   (copy base + replay to a time):      {pitr_s:6.1f} s  {cluster_bytes / mb / pitr_s:6.1f} MB/s "
              "of cluster", flush=True)
    finally:
        on("backup1", "sh", "-c", f"rm -rf {cfg['dump_root']} {cfg['base_root']} {CONFIG}; "
                                  "pg_ctlcluster 15 scratch stop", check=False)
        psql(primary, "DROP TABLE IF EXISTS bench_after_target")
        psql(primary, "DROP DATABASE IF EXISTS pgbench")


if __name__ == "__main__":
    main()
