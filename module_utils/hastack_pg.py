# -*- coding: utf-8 -*-
# Shared code for hastack's PostgreSQL modules: LSN arithmetic, local and replication
# connections (psycopg 3), node facts, and the pure decision functions that choose a
# primary, a failover candidate or a resync method. The decisions take plain dicts
# and raise PlanError with an operator-readable message, so they are unit tested
# without a database (tests/unit/test_hastack_pg.py).

from __future__ import annotations

import json
import os
import pwd
import re
import time

from ansible.module_utils.hastack_quorum import SENTINEL_STATE_FILE

try:
    import psycopg
    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the target host
    psycopg = None
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = exc

LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")

# Where failover/switchover record which node is the primary and the cluster epoch.
# keepalived's check script and the facts module read it; it is not replicated, so a
# node that was unreachable during a failover keeps its older epoch.
CLUSTER_STATE_FILE = "/var/lib/hastack/cluster.json"
# keepalived's track file for the DB VIP (weight 0: any value but 0 puts the instance
# in FAULT). Written together with the cluster state, so the VIP reacts to a promotion
# or a fence at once (inotify) instead of at the next run of the check script.
PRIMARY_TRACK_FILE = "/var/lib/hastack/primary.track"


class PlanError(Exception):
    """A decision that must stop the playbook before any change."""


# --------------------------------------------------------------------------- LSNs
def lsn_to_int(lsn):
    """'16/B374D848' -> integer byte position; None stays None."""
    if lsn is None or lsn == "":
        return None
    if isinstance(lsn, int):
        return lsn
    match = LSN_RE.match(str(lsn).strip())
    if not match:
        raise ValueError("not an LSN: %r" % (lsn,))
    return (int(match.group(1), 16) << 32) + int(match.group(2), 16)


def int_to_lsn(value):
    if value is None:
        return None
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def slot_name(host):
    """Replication slot (and application_name) for an inventory host name."""
    name = re.sub(r"[^a-z0-9_]", "_", host.lower())
    return name[:63]


def timeline_from_walfile(walfile):
    """'000000020000000000000003' -> 2."""
    if not walfile or len(walfile) < 8:
        return None
    return int(walfile[:8], 16)


# ---------------------------------------------------------------- cluster state
def read_cluster_state(path=CLUSTER_STATE_FILE):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cluster_state(state, path=CLUSTER_STATE_FILE):
    """Atomically replace the cluster state file."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(state, handle, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def record_primary(epoch, primary, dry=False, path=CLUSTER_STATE_FILE, local=None, track_path=PRIMARY_TRACK_FILE):
    """Record the cluster epoch and its primary on this node; True when that is a change.

    epoch None records nothing; primary None keeps the recorded one. dry=True only
    tells whether it would change (check mode). local is this node's name ("" for a
    node that is never the primary, e.g. a fenced one): when given, the DB VIP's track
    file says whether this node is the recorded primary.
    """
    if epoch is None:
        return False
    state = read_cluster_state(path)
    primary = primary if primary is not None else state.get("primary")
    changed = False
    if (state.get("epoch"), state.get("primary")) != (epoch, primary):
        changed = True
        if not dry:
            state.update(epoch=epoch, primary=primary, updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            write_cluster_state(state, path)
    if local is not None:
        changed = write_track(bool(local) and primary == local, dry, track_path) or changed
    return changed


def write_track(is_primary, dry=False, path=PRIMARY_TRACK_FILE):
    """Write keepalived's track file: 0 lets this node hold the DB VIP, 1 does not."""
    # Replaced by a rename, never rewritten in place: keepalived must not read an empty file.
    return write_owned(path, "0\n" if is_primary else "1\n", mode=0o644, owner="root", dry=dry)


def write_owned(path, content, mode=0o640, owner="postgres", dry=False):
    """Atomically write a file owned by `owner`; False when it already has this content.
    dry=True only tells whether it would change."""
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == content:
                return False
    except OSError:
        pass
    if dry:
        return True
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    user = pwd.getpwnam(owner)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chown(tmp, user.pw_uid, user.pw_gid)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


# ---------------------------------------------------------------- connections
def local_conninfo(socket_dir="/var/run/postgresql", port=5432, dbname="postgres", user="postgres"):
    return {"host": socket_dir, "port": port, "dbname": dbname, "user": user}


def connect(conninfo, connect_timeout=3, autocommit=True):
    params = dict(conninfo)
    params.setdefault("connect_timeout", connect_timeout)
    params.setdefault("application_name", "hastack")
    return psycopg.connect(autocommit=autocommit, **params)


def query_one(conn, sql, params=None):
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def query_all(conn, sql, params=None):
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def replication_command(conn, command):
    """Run a walsender command (simple query protocol) and return rows as dicts."""
    result = conn.pgconn.exec_(command.encode())
    status = result.status
    if status not in (psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK):
        message = (result.error_message or b"").decode(errors="replace").strip()
        raise RuntimeError("%s failed: %s" % (command.split()[0], message))
    names = [result.fname(i).decode() for i in range(result.nfields)]
    rows = []
    for row in range(result.ntuples):
        values = []
        for col in range(result.nfields):
            value = result.get_value(row, col)
            values.append(None if value is None else value.decode())
        rows.append(dict(zip(names, values)))
    return rows


def classify_connect_error(message):
    """Map a libpq connection error to a node state."""
    text = (message or "").lower()
    if "starting up" in text or "not yet accepting connections" in text or "in recovery mode" in text:
        return "starting"
    if "shutting down" in text:
        return "stopping"
    if "timeout expired" in text:
        return "unresponsive"
    return "stopped"


# ------------------------------------------------------------------ node facts
NODE_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
       current_setting('server_version') AS server_version,
       current_setting('data_directory') AS data_directory,
       current_setting('synchronous_standby_names') AS synchronous_standby_names,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_walfile_name(pg_current_wal_lsn()) END AS current_walfile,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float AS replay_delay_seconds,
       CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE NULL END AS replay_pause_state,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_timeline
"""

RECEIVER_SQL = """
SELECT status, sender_host, sender_port, slot_name, received_tli,
       flushed_lsn::text AS flushed_lsn, latest_end_lsn::text AS latest_end_lsn
FROM pg_stat_wal_receiver
"""

SLOTS_SQL = """
SELECT slot_name, slot_type, active, restart_lsn::text AS restart_lsn, wal_status,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                            ELSE pg_current_wal_lsn() END, restart_lsn)::bigint AS retained_bytes
FROM pg_replication_slots ORDER BY slot_name
"""

REPLICAS_SQL = """
SELECT application_name, host(client_addr) AS client_addr, state, sync_state, sync_priority,
       sent_lsn::text AS sent_lsn, flush_lsn::text AS flush_lsn, replay_lsn::text AS replay_lsn,
       extract(epoch FROM replay_lag)::float AS replay_lag_seconds,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END AS replay_lag_bytes
FROM pg_stat_replication ORDER BY application_name
"""


def running_facts(conn):
    """Facts of a node whose PostgreSQL answers on the local socket."""
    node = query_one(conn, NODE_SQL)
    facts = {
        "running": True,
        "role": "replica" if node["in_recovery"] else "primary",
        "system_identifier": node["system_identifier"],
        "server_version": node["server_version"],
        "data_directory": node["data_directory"],
        "synchronous_standby_names": node["synchronous_standby_names"],
        "current_lsn": node["current_lsn"],
        "receive_lsn": node["receive_lsn"],
        "replay_lsn": node["replay_lsn"],
        "replay_paused": node["replay_pause_state"] in ("paused", "pause requested"),
        "replay_delay_seconds": node["replay_delay_seconds"],
        "upstream": None,
        "wal_receiver": None,
    }
    if node["in_recovery"]:
        receiver = query_one(conn, RECEIVER_SQL)
        facts["wal_receiver"] = receiver
        if receiver:
            facts["upstream"] = receiver["sender_host"]
            facts["timeline"] = receiver["received_tli"]
        else:
            facts["timeline"] = node["checkpoint_timeline"]
        facts["position_lsn"] = max_lsn(node["receive_lsn"], node["replay_lsn"])
        receive, replay = lsn_to_int(node["receive_lsn"]), lsn_to_int(node["replay_lsn"])
        facts["replay_backlog_bytes"] = (receive - replay) if receive is not None and replay is not None else 0
    else:
        facts["timeline"] = timeline_from_walfile(node["current_walfile"])
        facts["position_lsn"] = node["current_lsn"]
        facts["replay_backlog_bytes"] = 0
    facts["slots"] = query_all(conn, SLOTS_SQL)
    facts["replicas"] = query_all(conn, REPLICAS_SQL)
    return facts


CONTROLDATA_KEYS = {
    "Database system identifier": "system_identifier",
    "Database cluster state": "cluster_state",
    "Latest checkpoint location": "checkpoint_lsn",
    "Latest checkpoint's TimeLineID": "timeline",
    "Minimum recovery ending location": "min_recovery_lsn",
}


def parse_controldata(text):
    facts = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in CONTROLDATA_KEYS:
            facts[CONTROLDATA_KEYS[key.strip()]] = value.strip()
    if "timeline" in facts:
        facts["timeline"] = int(facts["timeline"])
    return facts


FENCE_MARKER = "hastack.fenced"


def gather_node(run_command, data_directory, bin_dir, socket_dir="/var/run/postgresql", port=5432,
                login_user="postgres", connect_timeout=3):
    """Facts of the local node, whether or not PostgreSQL runs.

    run_command is AnsibleModule.run_command (pg_controldata when the server is down).
    """
    node = {
        "has_data": os.path.exists(os.path.join(data_directory, "PG_VERSION")),
        "standby_signal": os.path.exists(os.path.join(data_directory, "standby.signal")),
        "fenced": os.path.exists(os.path.join(data_directory, FENCE_MARKER)),
        "data_directory": data_directory,
    }
    state = read_cluster_state()
    node["epoch"] = int(state.get("epoch", 0) or 0)
    node["recorded_primary"] = state.get("primary")
    node.update(sentinel_facts())
    if not node["has_data"]:
        node.update(role="absent", running=False)
        return node
    if not HAS_PSYCOPG:
        raise RuntimeError("psycopg is not installed (Debian: apt install python3-psycopg)")
    try:
        with connect(local_conninfo(socket_dir, port, user=login_user), connect_timeout=connect_timeout) as conn:
            node.update(running_facts(conn))
    except psycopg.Error as exc:
        node["running"] = False
        rc, out, err = run_command([os.path.join(bin_dir, "pg_controldata"), "-D", data_directory],
                                   environ_update={"LC_ALL": "C"})
        if rc == 0:
            node.update(parse_controldata(out))
        else:
            node["controldata_error"] = err.strip()
        node["role"] = classify_connect_error(str(exc))
        lines = str(exc).strip().splitlines()
        node["connect_error"] = lines[-1] if lines else ""
        min_recovery = node.get("min_recovery_lsn")
        node["position_lsn"] = min_recovery if min_recovery not in (None, "0/0") else node.get("checkpoint_lsn")
    return node


def sentinel_facts(path=SENTINEL_STATE_FILE):
    """What this node's sentinel says: whether a majority hears it (quorum: None when the
    sentinel does not report) and why it fenced itself, if it did."""
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        fresh = time.monotonic() - float(state["now"]) < 1.0 + 2 * float(state["interval"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"quorum": None, "sentinel_fence_reason": None}
    return {"quorum": bool(state.get("lease_ok")) if fresh else None,
            "sentinel_fence_reason": state.get("fence_reason")}


def max_lsn(*lsns):
    values = [lsn_to_int(x) for x in lsns if x not in (None, "")]
    return int_to_lsn(max(values)) if values else None


# --------------------------------------------------------------- decisions
def _reachable(nodes):
    return {h: f for h, f in nodes.items() if f.get("reachable", True) and not f.get("failed")}


def writable_nodes(nodes):
    return sorted(h for h, f in _reachable(nodes).items() if f.get("role") == "primary")


def _standby(facts):
    """A replica, or a stopped node that will start as one (but not a fenced ex-primary)."""
    if facts.get("fenced"):
        return False
    return facts.get("role") == "replica" or bool(facts.get("standby_signal"))


def converge_primary(nodes, inventory_primary, recorded_primary=None):
    """The node site.yml builds around.

    Returns (primary, reason). Raises PlanError when the cluster is in a state that a
    converge must not touch (two writable nodes, or no writable node while replicas
    hold data, which is failover.yml's job).
    """
    unreachable = sorted(h for h, f in nodes.items() if not f.get("reachable", True) or f.get("failed"))
    if unreachable:
        raise PlanError(
            "database host(s) %s did not report (unreachable, or pg_node_facts failed there: see that "
            "task's output): site.yml needs every database host to decide "
            "which one is the primary. Bring them back, or limit the run with "
            "--limit '!%s' if they are gone for good (then remove them from the inventory)."
            % (", ".join(unreachable), ",".join(unreachable)))
    writable = writable_nodes(nodes)
    if len(writable) > 1:
        raise PlanError(
            "more than one writable PostgreSQL node: %s. Refusing to touch the cluster. Find the "
            "one the application writes to (DB VIP, cluster epoch in %s), stop PostgreSQL on the "
            "other(s) and run: ansible-playbook resync.yml -e node=<the other>"
            % (", ".join(writable), CLUSTER_STATE_FILE))
    if writable:
        reason = "detected: %s is not in recovery" % writable[0]
        if writable[0] != inventory_primary:
            reason += " (the inventory names %s; a failover or switchover moved it)" % inventory_primary
        return writable[0], reason
    with_data = {h: f for h, f in nodes.items() if f.get("has_data")}
    if not with_data:
        if inventory_primary not in nodes:
            raise PlanError("postgresql_primary=%s is not one of the database hosts (%s)"
                            % (inventory_primary, ", ".join(sorted(nodes))))
        return inventory_primary, "new cluster: %s (postgresql_primary) is initialised" % inventory_primary
    # A fenced node was a primary that a failover replaced: never start it as one.
    not_standby = sorted(h for h, f in with_data.items() if not _standby(f) and not f.get("fenced"))
    if len(not_standby) == 1:
        host = not_standby[0]
        if recorded_primary and recorded_primary != host:
            raise PlanError(
                "%s holds a stopped primary, but the last failover/switchover recorded %s as the "
                "primary. Start PostgreSQL on %s, or run failover.yml to promote a replica."
                % (host, recorded_primary, recorded_primary))
        return host, "%s holds the stopped primary; it is started" % host
    if len(not_standby) > 1:
        raise PlanError(
            "no node is writable and %s all hold non-replica data directories: cannot tell which "
            "is the primary. Start the right one by hand (systemctl start postgresql@<ver>-main) "
            "and rerun site.yml." % ", ".join(not_standby))
    raise PlanError(
        "no writable PostgreSQL node; replicas %s are up but the primary is down. This is an "
        "incident: run ansible-playbook failover.yml (site.yml never promotes)."
        % ", ".join(sorted(with_data)))


def next_epoch(nodes):
    return max([int(f.get("epoch") or 0) for f in nodes.values()] + [0]) + 1


def recorded_primary(nodes):
    """The primary recorded with the highest epoch among the nodes that answered."""
    best = max(((int(f.get("epoch") or 0), f.get("recorded_primary")) for f in nodes.values()
                if f.get("epoch")), default=(0, None))
    return best[1]


def resync_plan(nodes, node):
    """resync.yml: the primary `node` must follow. `node` itself may be writable (a stale
    primary that came back): the operator named it, so it is not counted."""
    if node not in nodes:
        raise PlanError("node=%s is not a database host (%s)" % (node, ", ".join(sorted(nodes))))
    if not nodes[node].get("reachable", True) or nodes[node].get("failed"):
        raise PlanError("%s is unreachable; bring the host back first" % node)
    others = {h: f for h, f in nodes.items() if h != node}
    writable = writable_nodes(others)
    if len(writable) != 1:
        raise PlanError(
            "%s needs exactly one writable primary among the other nodes to follow; found %s. %s"
            % (node, ", ".join(writable) or "none",
               "Run failover.yml first." if not writable else "Resolve the split brain first."))
    epochs = [int(f.get("epoch") or 0) for f in nodes.values()]
    return {"action": "resync", "primary": writable[0], "node": node, "epoch": max(epochs + [1]),
            "node_role": nodes[node].get("role")}


def _position(facts):
    return lsn_to_int(facts.get("position_lsn")) or lsn_to_int(facts.get("replay_lsn")) or 0


def _rank(facts):
    """Most advanced first: a later timeline wins over a higher LSN on an older one."""
    return (int(facts.get("timeline") or 0), _position(facts))


# How failover.yml makes sure the old primary takes no more writes before promoting.
FENCE_SSH = "ssh"            # reachable: pg_fence stops it and guards its start
FENCE_COMMAND = "command"    # unreachable: failover_fence_command powers it off
FENCE_OPERATOR = "operator"  # unreachable: the operator attested it is off
FENCE_SELF = "self"          # unreachable: its lease ran out (proven by the sentinels)
FENCE_NONE = "none"          # no old primary to fence


def failover_plan(nodes, old_primary=None, requested=None, max_lag_bytes=16 * 1024 * 1024, force=False,
                  synchronous=False, accept_loss=False, fence_command=False, confirm_dead=None, addresses=None):
    """Choose what failover.yml does.

    nodes: inventory host -> facts (with 'reachable'). Returns a dict with 'action'
    ('none' or 'promote'), 'candidate', 'fence' (reachable nodes to stop before the
    promotion), 'fence_method' (how the old primary is kept from writing, FENCE_*),
    'repoint' and figures for the summary; raises PlanError (before any change) when it
    must refuse. addresses (host -> address) lets a re-run find replicas that do not
    stream from the primary yet (an interrupted failover).
    """
    reachable = _reachable(nodes)
    writable = writable_nodes(nodes)
    if len(writable) > 1:
        raise PlanError(
            "the cluster already has %d writable nodes (%s): split brain. failover.yml will not "
            "promote a third. Decide which holds the application's writes, stop PostgreSQL on the "
            "other(s) and rejoin them with resync.yml -e node=<host>."
            % (len(writable), ", ".join(writable)))
    if writable:
        primary = writable[0]
        if requested and requested != primary:
            raise PlanError(
                "%s is up and writable: a failover would create a second primary. For a planned "
                "move to %s run: ansible-playbook switchover.yml -e new_primary=%s"
                % (primary, requested, requested))
        # A failover interrupted after the promotion: finish it (replicas still pointed
        # at the old primary are repointed), nothing else.
        address = (addresses or {}).get(primary)
        behind = sorted(h for h, f in reachable.items() if h != primary and f.get("role") == "replica"
                        and not f.get("fenced") and address
                        and ((f.get("wal_receiver") or {}).get("sender_host") != address
                             or (f.get("wal_receiver") or {}).get("status") != "streaming"))
        return {"action": "none", "candidate": primary, "primary": primary, "fence": [], "repoint": behind,
                "fence_method": FENCE_NONE, "epoch": max([int(f.get("epoch") or 0) for f in nodes.values()] + [1]),
                "reason": "%s is already the writable primary%s" % (
                    primary, "; repointing %s, which still follow(s) another node" % ", ".join(behind)
                    if behind else "; nothing to do")}
    replicas = {h: f for h, f in reachable.items() if f.get("role") == "replica"}
    if not replicas:
        down = sorted(set(nodes) - set(reachable))
        raise PlanError(
            "no replica is reachable and running (unreachable: %s; reachable: %s), so there is "
            "nothing to promote. Bring a replica's host or PostgreSQL back, then rerun failover.yml."
            % (", ".join(down) or "none",
               ", ".join("%s=%s" % (h, f.get("role")) for h, f in sorted(reachable.items())) or "none"))
    old = old_primary
    # Never chosen by itself: the old primary (even fenced and read-only, it is what the
    # failover replaces), a fenced former primary, a node whose sentinel has no majority
    # (it would fence itself at once).
    eligible = {h: f for h, f in replicas.items() if h != old and not f.get("fenced") and f.get("quorum") is not False}

    def order(h):
        return (tuple(-x for x in _rank(replicas[h])), -(lsn_to_int(replicas[h].get("replay_lsn")) or 0), h)
    if requested:
        if requested not in nodes:
            raise PlanError("new_primary=%s is not a database host (%s)" % (requested, ", ".join(sorted(nodes))))
        if requested not in replicas:
            state = "unreachable" if requested not in reachable else reachable[requested].get("role")
            raise PlanError("new_primary=%s cannot be promoted: it is %s. Choose one of: %s"
                            % (requested, state, ", ".join(sorted(replicas))))
        if replicas[requested].get("quorum") is False:
            raise PlanError("new_primary=%s cannot be promoted: its sentinel does not hear a majority of the "
                            "cluster, so it would fence itself at once. Fix its network first." % requested)
        candidate = requested
    elif eligible:
        candidate = sorted(eligible, key=order)[0]
    else:
        raise PlanError(
            "no replica may be promoted: %s. Name one with -e new_primary=HOST if you know it is right."
            % "; ".join("%s is %s" % (h, "the old primary" if h == old else "fenced (a former primary)"
                                      if f.get("fenced") else "without a majority (its sentinel)")
                        for h, f in sorted(replicas.items())))
    old = old if old and old != candidate else None
    # Synchronous ANY 1: an acknowledged commit is on at least one replica, so only the
    # most advanced of *all* of them is sure to hold every one. The old primary may be
    # ahead of all of them: what only it holds was never acknowledged.
    unknown = sorted(h for h in nodes if h != old and h != candidate and h not in replicas)
    ahead = sorted(h for h in replicas if h not in (old, candidate) and _rank(replicas[h]) > _rank(replicas[candidate]))
    if synchronous and not accept_loss:
        if unknown:
            raise PlanError(
                "synchronous mode: %s did not report a WAL position (unreachable or not running as a "
                "replica), and may hold commits that were acknowledged to clients and that %s lacks. "
                "Bring %s back and rerun, or accept losing them: -e failover_accept_loss=true"
                % (", ".join(unknown), candidate, "them" if len(unknown) > 1 else "it"))
        if ahead:
            raise PlanError(
                "synchronous mode: %s is behind %s (timeline %s at %s against timeline %s at %s): promoting "
                "it would lose acknowledged commits. Promote %s, wait until %s catches up, or accept the "
                "loss: -e failover_accept_loss=true"
                % (candidate, ahead[0], _rank(replicas[candidate])[0], int_to_lsn(_position(replicas[candidate])),
                   _rank(replicas[ahead[0]])[0], int_to_lsn(_position(replicas[ahead[0]])), ahead[0], candidate))
    chosen = replicas[candidate]
    # Positions on another timeline do not compare with the candidate's.
    same = [f for f in reachable.values() if int(f.get("timeline") or 0) in (0, _rank(chosen)[0])]
    known = [_position(f) for f in same] + [lsn_to_int(f.get("current_lsn")) or 0 for f in same]
    reference = max(known) if known else 0
    replayed = lsn_to_int(chosen.get("replay_lsn")) or 0
    lag = max(0, reference - replayed)
    if lag > max_lag_bytes and not force:
        raise PlanError(
            "refusing to promote %s: it has replayed up to %s, %d bytes behind the most advanced "
            "known position %s (failover_max_lag_bytes=%d)%s. Resume or wait for replay, or accept "
            "the gap with -e failover_max_lag_bytes=%d (or -e failover_force=true)."
            % (candidate, int_to_lsn(replayed), lag, int_to_lsn(reference), max_lag_bytes,
               "; WAL replay is paused there (SELECT pg_wal_replay_resume())" if chosen.get("replay_paused") else "",
               lag + 1))
    loss = None
    # Only a cleanly stopped old primary knows its last WAL position (the shutdown
    # checkpoint); after a crash the control file lags behind what it wrote.
    old_facts = reachable.get(old, {}) if old else {}
    if str(old_facts.get("cluster_state", "")).startswith("shut down") and old_facts.get("position_lsn"):
        loss = max(0, (lsn_to_int(old_facts["position_lsn"]) or 0) - _position(chosen))
    fence = sorted(h for h, f in reachable.items()
                   if h != candidate and (h == old or f.get("role") not in ("replica", "absent")))
    if not old:
        method = FENCE_NONE
    elif old in reachable:
        method = FENCE_SSH
    elif confirm_dead == old:
        method = FENCE_OPERATOR
    elif fence_command:
        method = FENCE_COMMAND
    else:
        method = FENCE_SELF
    # The old primary and fenced former primaries may hold what the new primary lacks:
    # resync.yml rejoins them, on purpose.
    repoint = sorted(h for h, f in replicas.items() if h not in (candidate, old) and not f.get("fenced"))
    return {
        "action": "promote",
        "candidate": candidate,
        "primary": candidate,
        "old_primary": old,
        "old_primary_reachable": bool(old and old in reachable),
        "fence": fence,
        "fence_method": method,
        "repoint": repoint,
        "lag_bytes": lag,
        "possible_loss_bytes": loss,
        "unreachable_replicas": unknown,
        "accepted_loss": bool(accept_loss and synchronous and unknown),
        "epoch": next_epoch(nodes),
        "candidate_timeline": _rank(chosen)[0],
        "candidate_position_lsn": int_to_lsn(_position(chosen)),
        "candidate_replay_lsn": int_to_lsn(replayed),
        "reference_lsn": int_to_lsn(reference),
        "reason": "%s is the most advanced reachable replica (timeline %s, %s)" % (
            candidate, _rank(chosen)[0], int_to_lsn(_position(chosen))) if not requested
        else "%s was requested with new_primary" % candidate,
    }


def switchover_plan(nodes, requested=None, max_lag_bytes=16 * 1024 * 1024):
    """Choose what switchover.yml does; the current primary must be up."""
    unreachable = sorted(h for h, f in nodes.items() if not f.get("reachable", True) or f.get("failed"))
    writable = writable_nodes(nodes)
    if len(writable) != 1:
        raise PlanError(
            "a switchover needs exactly one writable primary; found %s. %s"
            % (", ".join(writable) or "none",
               "Use failover.yml when the primary is down." if not writable
               else "Stop all but one and resync the others first."))
    primary = writable[0]
    if requested == primary:
        return {"action": "none", "primary": primary, "candidate": primary, "repoint": [],
                "reason": "%s is already the primary; nothing to do" % primary}
    replicas = {h: f for h, f in _reachable(nodes).items() if f.get("role") == "replica"}
    if requested and requested not in replicas:
        raise PlanError("new_primary=%s is not a running replica (%s). Replicas: %s"
                        % (requested, "unreachable" if requested in unreachable
                           else nodes.get(requested, {}).get("role", "not a database host"),
                           ", ".join(sorted(replicas)) or "none"))
    if not replicas:
        raise PlanError("no running replica to switch over to")
    current = lsn_to_int(nodes[primary].get("current_lsn")) or 0
    candidate = requested or sorted(replicas, key=lambda h: (-_position(replicas[h]), h))[0]
    chosen = replicas[candidate]
    lag = max(0, current - (lsn_to_int(chosen.get("replay_lsn")) or 0))
    receiver = chosen.get("wal_receiver") or {}
    if receiver.get("status") != "streaming":
        raise PlanError("%s is not streaming from the primary (wal receiver: %s); a switchover needs a "
                        "streaming replica. Run resync.yml -e node=%s first."
                        % (candidate, receiver.get("status") or "none", candidate))
    if lag > max_lag_bytes:
        raise PlanError("%s is %d bytes behind the primary (switchover_max_lag_bytes=%d); wait until it "
                        "catches up%s." % (candidate, lag, max_lag_bytes,
                                           " (its WAL replay is paused)" if chosen.get("replay_paused") else ""))
    if unreachable:
        raise PlanError("database host(s) %s unreachable: a planned switchover needs every node. "
                        "Fix them or resync them later and use --limit to exclude them."
                        % ", ".join(unreachable))
    return {"action": "switchover", "primary": primary, "candidate": candidate, "epoch": next_epoch(nodes),
            "repoint": sorted(h for h in replicas if h != candidate), "lag_bytes": lag,
            "reason": "planned move from %s to %s" % (primary, candidate)}


# basebackup policies for resync_action
BASEBACKUP_NEVER = "never"  # fail rather than copy
BASEBACKUP_SAFE = "safe"    # only an empty data directory or a known replica's
BASEBACKUP_ALWAYS = "always"  # also a diverged former primary (its data is moved aside)


def resync_action(local, primary, allow_rewind=True, basebackup=BASEBACKUP_SAFE):
    """How to make `local` a streaming replica of `primary`.

    local: role, has_data, system_identifier, standby_signal, wal_receiver, upstream
    primary: system_identifier, address
    Returns (action, reason); action in none, repoint, rewind, basebackup.
    Raises PlanError when policy forbids every way.
    """
    host = local.get("host", "this node")
    if not local.get("has_data"):
        if basebackup == BASEBACKUP_NEVER:
            raise PlanError("%s has no data directory and resync_basebackup=never forbids cloning it" % host)
        return "basebackup", "the data directory is empty"
    if local.get("role") == "primary" and local.get("address") and local.get("address") == primary.get("address"):
        raise PlanError("%s is the primary itself; nothing to resync" % host)
    if str(local.get("system_identifier")) != str(primary.get("system_identifier")):
        if _standby(local) and basebackup in (BASEBACKUP_SAFE, BASEBACKUP_ALWAYS):
            return "basebackup", "a replica of another cluster (system identifier %s, primary has %s)" % (
                local.get("system_identifier"), primary.get("system_identifier"))
        if basebackup == BASEBACKUP_ALWAYS:
            return "basebackup", "holds another cluster; its data directory is moved aside"
        raise PlanError(
            "%s holds a different PostgreSQL cluster (system identifier %s, the primary has %s) that "
            "is not a replica: it may be the only copy of its data. Refusing to overwrite it. Move the "
            "data directory away yourself, or run resync.yml -e node=%s -e resync_basebackup=always."
            % (host, local.get("system_identifier"), primary.get("system_identifier"), host))
    receiver = local.get("wal_receiver") or {}
    if (local.get("role") == "replica" and receiver.get("status") == "streaming"
            and receiver.get("sender_host") == primary.get("address")):
        return "none", "already streaming from %s" % primary.get("address")
    if _standby(local):
        return "repoint", "a replica of this cluster; pointed at %s" % primary.get("address")
    if allow_rewind:
        return "rewind", "a former primary of this cluster; pg_rewind discards what diverged"
    if basebackup == BASEBACKUP_ALWAYS:
        return "basebackup", "a former primary of this cluster; its data directory is moved aside"
    raise PlanError(
        "%s holds a former primary of this cluster (not a replica, not in recovery): it may hold "
        "transactions the primary lacks, so site.yml will not overwrite it. Rejoin it on purpose "
        "with: ansible-playbook resync.yml -e node=%s" % (host, host))
