# -*- coding: utf-8 -*-
# What status.yml reports: one structure, read by a person as a table and by cron or
# monitoring as JSON. A pure function of what the playbook gathered (pg_node_facts on
# every database host, who holds each VIP, `hastack-backup check`, each app server's
# /health), unit tested without hosts (tests/unit/test_status.py).

from __future__ import annotations

from ansible.module_utils.hastack_lsn import lsn_to_int, slot_name
from ansible.module_utils.hastack_plan import reachable_nodes, writable_nodes

CRITICAL, WARNING = "critical", "warning"


def size_to_bytes(text):
    """PostgreSQL's size notation ('1GB', '512MB', '-1') in bytes; None for no limit."""
    text = str(text or "").strip()
    if not text or text == "-1":
        return None
    units = {"kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text) * 1024 ** 2  # bare number: PostgreSQL's unit for it is MB


def cluster_status(nodes, vips=None, backups=None, apps=None, max_lag_bytes=16 * 1024 * 1024,
                   slot_keep_bytes=None, slot_warn_ratio=0.8):
    """nodes: host -> pg_node_facts result (reachable=false when it did not answer);
    vips: [{name, address, group, holders: [host], db: bool}]; backups: host -> output lines
    of `hastack-backup check` (None: no answer); apps: host -> HTTP status of /health (None:
    no answer). Returns {"healthy", "primary", "nodes": [rows], "vips", "backups", "apps",
    "problems": [{"severity", "what", "do"}]}."""
    problems = []

    def problem(severity, what, do):
        problems.append({"severity": severity, "what": what, "do": do})

    reachable = reachable_nodes(nodes)
    writable = writable_nodes(nodes)
    newest = max([int(f.get("epoch") or 0) for f in reachable.values()] + [0])
    primary = writable[0] if len(writable) == 1 else None
    by_slot = {}
    if primary:
        for replica in nodes[primary].get("replicas") or []:
            by_slot[replica.get("application_name")] = replica
    slots = {s.get("slot_name"): s for s in (nodes[primary].get("slots") or [])} if primary else {}
    if not writable:
        problem(CRITICAL, "no writable primary", "ansible-playbook failover.yml (docs/RUNBOOK.md)")
    elif len(writable) > 1:
        problem(CRITICAL, "split brain: %s are all writable" % ", ".join(writable),
                "stop PostgreSQL on the one the DB VIP does not point at, then resync.yml -e node=<it>")
    current = lsn_to_int(nodes[primary].get("current_lsn")) if primary else None
    rows = []
    for host in sorted(nodes):
        facts = nodes[host]
        row = {"node": host, "role": "unreachable", "timeline": None, "epoch": None, "lsn": None,
               "lag_bytes": None, "lag_seconds": None, "sync_state": None, "slot_retained_bytes": None,
               "fenced": None, "quorum": None, "upstream": None, "vips": []}
        rows.append(row)
        if host not in reachable:
            problem(CRITICAL, "%s does not answer (host down, SSH, or pg_node_facts failed)" % host,
                    "check the host; if it was the primary: ansible-playbook failover.yml")
            continue
        role = facts.get("role")
        row.update(role=role, timeline=facts.get("timeline"), epoch=int(facts.get("epoch") or 0),
                   fenced=bool(facts.get("fenced")), quorum=facts.get("quorum"))
        if role == "primary":
            row["lsn"] = facts.get("current_lsn")
        elif role == "replica":
            row["lsn"] = facts.get("replay_lsn")
            receiver = facts.get("wal_receiver") or {}
            row["upstream"] = receiver.get("sender_host")
            stat = by_slot.get(slot_name(host)) or {}
            row["sync_state"] = stat.get("sync_state")
            row["lag_seconds"] = stat.get("replay_lag_seconds")
            replayed = lsn_to_int(facts.get("replay_lsn"))
            if current is not None and replayed is not None:
                row["lag_bytes"] = max(0, current - replayed)
            retained = (slots.get(slot_name(host)) or {}).get("retained_bytes")
            row["slot_retained_bytes"] = retained
            if primary and (receiver.get("status") != "streaming" or not stat):
                problem(CRITICAL, "%s is not streaming from %s (wal receiver: %s)"
                        % (host, primary, receiver.get("status") or "none"),
                        "ansible-playbook resync.yml -e node=%s" % host)
            elif row["lag_bytes"] is not None and row["lag_bytes"] > max_lag_bytes:
                problem(WARNING, "%s is %d bytes behind the primary" % (host, row["lag_bytes"]),
                        "look at its disk and network; a failover now would refuse it (failover_max_lag_bytes)")
            if facts.get("replay_paused"):
                problem(WARNING, "%s has WAL replay paused" % host, "SELECT pg_wal_replay_resume() on it")
            if retained and slot_keep_bytes and retained > slot_warn_ratio * slot_keep_bytes:
                problem(WARNING, "the primary keeps %d bytes of WAL for %s, near max_slot_wal_keep_size (%d)"
                        % (retained, host, slot_keep_bytes),
                        "past the limit %s needs resync.yml -e node=%s" % (host, host))
        else:
            # A database node that is not a streaming replica: one failure less to survive.
            problem(CRITICAL,
                    "%s is %s%s" % (host, role, " (fenced former primary)" if facts.get("fenced") else ""),
                    "ansible-playbook resync.yml -e node=%s" % host if writable
                    else "ansible-playbook failover.yml")
        if role == "replica" and facts.get("fenced"):
            problem(WARNING, "%s is fenced (a former primary)" % host, "ansible-playbook resync.yml -e node=%s" % host)
        if row["epoch"] < newest:
            problem(WARNING, "%s has epoch %d, older than %d: a failover replaced it" % (host, row["epoch"], newest),
                    "ansible-playbook resync.yml -e node=%s" % host)
        if facts.get("quorum") is False:
            problem(CRITICAL, "%s's sentinel does not hear a majority of the cluster" % host,
                    "check the network between the hosts (docs/RUNBOOK.md, One primary)")
        elif facts.get("quorum") is None:
            problem(WARNING, "%s's sentinel does not report" % host, "systemctl status hastack-sentinel on it")
    vip_rows, backup_rows, app_rows = _services(problem, rows, vips, backups, apps, primary)
    return {"healthy": not any(p["severity"] == CRITICAL for p in problems), "primary": primary,
            "epoch": newest, "nodes": rows, "vips": vip_rows, "backups": backup_rows, "apps": app_rows,
            "problems": problems}


def _services(problem, rows, vips, backups, apps, primary=None):
    """The VIPs, backup hosts and app servers, in both modes: (vip_rows, backup_rows,
    app_rows); marks each row (node or app server) with the VIPs it holds."""
    vip_rows = []
    for vip in vips or []:
        holders = sorted(vip.get("holders") or [])
        vip_rows.append({"name": vip["name"], "address": vip["address"], "holders": holders})
        for row in rows:
            if row["node"] in holders:
                row["vips"].append(vip["name"])
        if not holders:
            problem(CRITICAL, "VIP %s (%s) is held by no reachable host" % (vip["name"], vip["address"]),
                    "journalctl -t hastack-keepalived on its hosts; systemctl status keepalived")
        elif len(holders) > 1:
            problem(CRITICAL, "VIP %s is held by %s at once" % (vip["name"], ", ".join(holders)),
                    "check the network between them (VRRP)")
        elif vip.get("db") and primary and holders != [primary]:
            problem(CRITICAL, "the DB VIP is on %s, not on the primary %s" % (holders[0], primary),
                    "systemctl restart keepalived on %s; see docs/RUNBOOK.md" % holders[0])
    backup_rows = []
    for host, lines in sorted((backups or {}).items()):
        backup_rows.append({"host": host, "lines": lines})
        if lines is None:
            problem(CRITICAL, "backup host %s does not answer" % host, "check the host")
            continue
        for line in lines:
            if line.startswith("CRITICAL"):
                problem(CRITICAL, "backups on %s: %s" % (host, line), "docs/RUNBOOK.md, Backups")
            elif line.startswith("WARNING"):
                problem(WARNING, "backups on %s: %s" % (host, line), "docs/RUNBOOK.md, Backups")
    app_rows = [{"host": h, "health": code} for h, code in sorted((apps or {}).items())]
    healthy_apps = [r["host"] for r in app_rows if r["health"] == 200]
    for row in app_rows:
        if row["health"] != 200:
            problem(CRITICAL if not healthy_apps else WARNING,
                    "app on %s: /health %s" % (row["host"], row["health"] or "does not answer"),
                    "journalctl -u hastack-app on it")
    return vip_rows, backup_rows, app_rows


def sqlite_status(servers, vips=None, backups=None, apps=None, max_lag_seconds=10):
    """SQLite mode: servers: app host -> {"app": systemd state of hastack-app, "litestream":
    of litestream, "lag": hastack-litestream-lag's JSON or None} (None: no answer). One
    server may run the app and Litestream (the writer); the app VIP must be on it.
    Returns the shape of cluster_status() with "active" and "servers" rows instead of
    "primary" and "nodes"."""
    problems = []

    def problem(severity, what, do):
        problems.append({"severity": severity, "what": what, "do": do})

    rows = []
    for host in sorted(servers):
        state = servers[host]
        row = {"node": host, "role": "unreachable", "app": None, "litestream": None, "lag_seconds": None,
               "replica_newest": None, "vips": []}
        rows.append(row)
        if state is None:
            continue
        lag = state.get("lag") or {}
        row.update(app=state.get("app"), litestream=state.get("litestream"), lag_seconds=lag.get("lag_seconds"),
                   replica_newest=lag.get("replica_newest"),
                   role="active" if state.get("app") == "active" else "standby")
    active = [r["node"] for r in rows if r["role"] == "active"]
    writers = sorted(set(active) | {r["node"] for r in rows if r["litestream"] == "active"})
    unreachable = [r["node"] for r in rows if r["role"] == "unreachable"]
    if not active:
        problem(CRITICAL, "no app server runs the app%s" % (
            " (%s does not answer)" % ", ".join(unreachable) if unreachable else ""),
            "ansible-playbook failover.yml (docs/RUNBOOK.md, SQLite)")
    elif len(writers) > 1:
        problem(CRITICAL, "%s all run the app or Litestream: two writers of one database" % ", ".join(writers),
                "stop hastack-app and litestream on the one that does not hold the app VIP, then site.yml")
    for row in rows:
        if row["role"] == "unreachable":
            if active:
                problem(WARNING, "standby %s does not answer" % row["node"], "check the host: no failover target")
        elif row["role"] == "active" and row["litestream"] != "active":
            problem(CRITICAL, "%s runs the app but not Litestream: nothing is replicated" % row["node"],
                    "systemctl start litestream on %s; journalctl -u litestream" % row["node"])
        elif row["role"] == "active" and row["lag_seconds"] is None:
            problem(WARNING, "the replica lag of %s is unknown" % row["node"], "hastack-litestream-lag on it")
        elif row["role"] == "active" and row["lag_seconds"] > max_lag_seconds:
            problem(WARNING, "the replica is %.1f s behind %s" % (row["lag_seconds"], row["node"]),
                    "journalctl -u litestream on %s; a failover now would lose those writes" % row["node"])
    # A standby's app is stopped on purpose: only the writer's /health counts.
    vip_rows, backup_rows, app_rows = _services(problem, rows, vips, backups,
                                                {h: code for h, code in (apps or {}).items() if h in active})
    for vip in vips or []:
        holders = sorted(vip.get("holders") or [])
        if len(active) == 1 and len(holders) == 1 and holders != active and not vip.get("db"):
            problem(CRITICAL, "VIP %s is on %s, but the app runs on %s" % (vip["name"], holders[0], active[0]),
                    "systemctl restart keepalived on %s" % holders[0])
    return {"healthy": not any(p["severity"] == CRITICAL for p in problems), "mode": "sqlite",
            "active": active[0] if len(active) == 1 else None, "servers": rows, "vips": vip_rows,
            "backups": backup_rows, "apps": app_rows, "problems": problems}
