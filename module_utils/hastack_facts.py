# -*- coding: utf-8 -*-
# What a database node is, read on the node: local and replication connections
# (psycopg 3), pg_controldata when the server is down, the cluster record and the
# sentinel's view (pg_node_facts, pg_resync, pg_promote, vip_probe).

from __future__ import annotations

import os

from ansible.module_utils.hastack_lsn import lsn_to_int, max_lsn, timeline_from_walfile
from ansible.module_utils.hastack_quorum import read_state
from ansible.module_utils.hastack_state import FENCE_MARKER, clone_marker, read_cluster_state

try:
    import psycopg
    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the target host
    psycopg = None
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = exc


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
        rows.append(dict(zip(names, values, strict=True)))
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


def gather_node(run_command, data_directory, bin_dir, socket_dir="/var/run/postgresql", port=5432,
                login_user="postgres", connect_timeout=3):
    """Facts of the local node, whether or not PostgreSQL runs.

    run_command is AnsibleModule.run_command (pg_controldata when the server is down).
    """
    node = {
        "has_data": os.path.exists(os.path.join(data_directory, "PG_VERSION")),
        "standby_signal": os.path.exists(os.path.join(data_directory, "standby.signal")),
        "fenced": os.path.exists(os.path.join(data_directory, FENCE_MARKER)),
        "cloning": os.path.exists(clone_marker(data_directory)),
        "data_directory": data_directory,
    }
    node["history_timeline"] = newest_history_timeline(os.path.join(data_directory, "pg_wal"))
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


def newest_history_timeline(wal_dir):
    """The newest timeline whose history file is in pg_wal (1 when there is none): the
    timeline a standby follows, which pg_control_checkpoint() only shows after the next
    restartpoint."""
    try:
        names = os.listdir(wal_dir)
    except OSError:
        return None
    timelines = [int(n[:8], 16) for n in names if len(n) == 16 and n.endswith(".history")
                 and all(c in "0123456789ABCDEF" for c in n[:8])]
    return max(timelines, default=1)


def sentinel_facts():
    """What this node's sentinel says: whether a majority hears it (quorum: None when the
    sentinel does not report) and why it fenced itself, if it did."""
    state = read_state() or {}
    return {"quorum": bool(state["lease_ok"]) if state else None, "sentinel_fence_reason": state.get("fence_reason")}
