"""The database part of a backup in SQLite mode (hastack-backup; roles/backup).

The backup host holds the app's Litestream replica (roles/litestream's sftp replica), so a
dated copy is a local `litestream restore` of it: a consistent database as of the newest
transaction the active app server shipped, without touching the app server. The copy is
checked (PRAGMA integrity_check) and its row counts go to the manifest, so verify can
prove later that the file still is that database.
"""

import json
import os
import sqlite3
import subprocess


def replica_url(replica):
    """A replica from the configuration: a local folder (file://) or any Litestream URL."""
    location = replica["replica"]
    return location if "://" in location else "file://" + location


def newest_change(replica):
    """mtime of the newest LTX file of a local replica (when the active server last shipped
    a transaction), or None for a remote replica or an empty one."""
    location = replica["replica"]
    if "://" in location and not location.startswith("file://"):
        return None
    root = location[len("file://"):] if location.startswith("file://") else location
    newest = None
    for folder, _, names in os.walk(os.path.join(root, "ltx")):
        for name in names:
            if name.endswith(".ltx"):
                newest = max(newest or 0, os.path.getmtime(os.path.join(folder, name)))
    return newest


def inspect(path):
    """(integrity_check result, {table: rows}) of a SQLite file, opened read-only: verify
    must not change the file whose sha256 it just compared."""
    conn = sqlite3.connect("file:%s?mode=ro&immutable=1" % path, uri=True)
    try:
        integrity = "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        # The names come from sqlite_master, quoted as identifiers.
        counts = {table: conn.execute('SELECT count(*) FROM "%s"' % table.replace('"', '""')).fetchone()[0]  # noqa: S608
                  for table in tables}
    finally:
        conn.close()
    return integrity, counts


def backup_replica(cfg, replica, folder, part):
    """Restore replica into folder/<name>.db and describe it in part (raises on failure)."""
    target = os.path.join(folder, replica["name"] + ".db")
    tmp = target + ".tmp"
    # The binary and the replica come from the root-owned configuration roles/backup writes.
    result = subprocess.run([cfg["litestream_bin"], "restore", "-json", "-o", tmp, replica_url(replica)],  # noqa: S603
                            capture_output=True, text=True, check=False, timeout=cfg.get("sqlite_timeout", 3600))
    if result.returncode != 0:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        raise RuntimeError("litestream restore of %s failed: %s" % (
            replica_url(replica), (result.stderr or result.stdout).strip()[-500:]))
    # -json prints one object (the restored TXID); older output or log lines before it
    # only cost the TXID in the manifest.
    try:
        summary = json.loads(result.stdout[result.stdout.index("{"):])
    except ValueError:
        summary = {}
    integrity, counts = inspect(tmp)
    if integrity != "ok":
        raise RuntimeError("the copy restored from %s fails PRAGMA integrity_check: %s" % (
            replica_url(replica), integrity[:500]))
    os.rename(tmp, target)
    changed = newest_change(replica)
    part.update(file=os.path.basename(target), kind="sqlite", row_counts=counts, replica=replica_url(replica),
                txid=summary.get("txid"), replica_changed=changed)


def check_copy(path, part):
    """Problems of a SQLite part that still matches its sha256: integrity and row counts."""
    integrity, counts = inspect(path)
    problems = [] if integrity == "ok" else ["PRAGMA integrity_check: " + integrity[:500]]
    for table, expected in sorted(part.get("row_counts", {}).items()):
        if counts.get(table) != expected:
            problems.append("table %s has %s rows in the copy, the manifest says %d"
                            % (table, counts.get(table), expected))
    return problems
