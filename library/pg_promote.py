#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hastack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_promote
short_description: Promote a PostgreSQL replica and wait until it accepts writes
description:
  - Calls C(pg_promote(wait => true)) on the local replica, then waits until the server is
    out of recovery and can assign a transaction ID (it accepts writes).
  - A node that is already a primary is left alone (C(changed=false)).
  - Optionally runs C(CHECKPOINT) afterwards so the control file shows the new timeline;
    pg_rewind against this node decides wrongly without it.
  - Records the new primary and cluster epoch in C(/var/lib/hastack/cluster.json) when
    C(epoch) is given.
  - In check mode reports whether it would promote.
options:
  port:
    description: Port of the local PostgreSQL.
    type: int
    default: 5432
  socket_dir:
    description: Directory of the local Unix socket.
    type: path
    default: /var/run/postgresql
  login_user:
    description: Database superuser to connect as over the socket.
    type: str
    default: postgres
  timeout:
    description: Seconds to wait for the promotion and the first writable transaction.
    type: int
    default: 60
  wait_replay_lsn:
    description:
      - Before promoting, wait until the node has replayed past this LSN (the old primary's
        shutdown checkpoint in a switchover), and fail without promoting if it does not
        within C(timeout).
    type: str
  checkpoint:
    description: Run CHECKPOINT after promotion.
    type: bool
    default: true
  wait_shutdown_after:
    description:
      - Before promoting, wait until the last WAL record this node received and replayed is
        the old primary's shutdown checkpoint, written after this LSN (the primary's position
        before it was asked to stop), and fail without promoting if it does not come within
        C(timeout).
      - A clean stop sends every record up to its shutdown checkpoint, the last one it
        writes, and waits for the standby's flush before it ends the connection; so this
        node can be promoted the moment that record is replayed, started at the same time as
        the stop (switchover.yml), without waiting for the stop's result to come back.
      - After an unclean stop (killed) no such record comes and the node is not promoted.
      - Reads the tail of C(pg_wal) with pg_waldump from C(bin_dir).
    type: str
  data_directory:
    description: Data directory of the local PostgreSQL; required with C(wait_shutdown_after).
    type: path
  bin_dir:
    description: Directory of the PostgreSQL programs (pg_waldump); required with C(wait_shutdown_after).
    type: path
  fenced_by_lease:
    description:
      - Inventory name of an old primary that could not be fenced over SSH. Before promoting,
        wait until this node's sentinel state proves that the old primary's lease ran out and
        that it has fenced itself (hastack_quorum.self_fence_proof); fail without promoting if
        that is not proven within C(proof_timeout) (the old primary is alive, e.g. only the
        controller lost it).
    type: str
  proof_timeout:
    description: Seconds to wait for that proof; 0 means 2 x (lease + watchdog) + 1 s from the sentinel's settings.
    type: float
    default: 0
  epoch:
    description: Cluster epoch to record with this node as primary; omitted means do not record.
    type: int
  node_name:
    description: Inventory name of this node, recorded as the primary.
    type: str
  replica_slots:
    description:
      - Inventory names of the replicas that will stream from this node. Their physical
        replication slots are created here before the promotion, while the node is a
        standby nobody writes to; created right after it, each slot's fsync competes with
        the promotion's CHECKPOINT and held the first synchronous commit back by seconds
        on a busy host. An existing slot is kept.
    type: list
    elements: str
    default: []
requirements:
  - psycopg >= 3.1 on the managed host (Debian package python3-psycopg)
author: hastack
"""

EXAMPLES = r"""
- name: Promote the chosen replica
  pg_promote:
    timeout: 30
    epoch: "{{ plan.epoch }}"
    node_name: "{{ inventory_hostname }}"
  when: inventory_hostname == plan.candidate
"""

RETURN = r"""
promoted:
  description: Whether this run promoted the node.
  returned: always
  type: bool
timeline:
  description: The node's timeline after promotion.
  returned: success
  type: int
lsn:
  description: pg_current_wal_lsn() after promotion.
  returned: success
  type: str
promote_seconds:
  description: Time from the end of the waits (replay, shutdown checkpoint, self-fence proof) to the first
    writable transaction.
  returned: when promoted
  type: float
  sample: 0.12
slots_created:
  description: The replication slots created before the promotion.
  returned: when promoted
  type: list
  sample: ["db3"]
writable_at:
  description: When the node first accepted a write (seconds since the epoch, this host's clock).
  returned: when promoted
  type: float
shutdown_checkpoint_lsn:
  description: The old primary's shutdown checkpoint this node replayed before it was promoted.
  returned: when wait_shutdown_after is given and the node was promoted
  type: str
  sample: 0/70A8800
proof:
  description: The self-fence proof for C(fenced_by_lease) - witnesses, seconds waited, who last heard the
    old primary when.
  returned: when fenced_by_lease is given
  type: dict
  sample: {"witnesses": ["db3", "backup1"], "waited": 0.41, "heard_by": {"db3": 2.1}}
"""

import os
import re
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.hastack_module import local_postgres_argument_spec
from ansible.module_utils.hastack_quorum import SENTINEL_STATE_FILE, read_state, self_fence_proof
from ansible.module_utils.hastack_facts import connect, HAS_PSYCOPG, local_conninfo, PSYCOPG_IMPORT_ERROR, query_one
from ansible.module_utils.hastack_lsn import int_to_lsn, lsn_to_int, slot_name, timeline_from_walfile
from ansible.module_utils.hastack_state import record_primary

POSITION_SQL = ("SELECT pg_current_wal_lsn()::text AS lsn, "
                "pg_walfile_name(pg_current_wal_lsn()) AS walfile")
STANDBY_SQL = ("SELECT pg_last_wal_replay_lsn()::text AS replay, pg_last_wal_receive_lsn()::text AS receive, "
               "(SELECT status FROM pg_stat_wal_receiver) AS receiver")
SEGMENT_SIZE_SQL = "SELECT setting::bigint AS bytes FROM pg_settings WHERE name = 'wal_segment_size'"
WALDUMP_RECORD = re.compile(r"\blsn: ([0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: ([A-Z_]+)")
WAL_PAGE = 8192
DUPLICATE_OBJECT = "42710"


def wait_writable(conn, deadline):
    while True:
        row = query_one(conn, "SELECT pg_is_in_recovery() AS rec, current_setting('transaction_read_only') AS ro")
        if not row["rec"] and row["ro"] == "off":
            # Assigning a transaction ID fails on a read-only server: proof of writability.
            query_one(conn, "SELECT pg_current_xact_id()::text AS xid")
            return
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.02)


def wait_self_fenced(old, timeout):
    """Wait until the local sentinel's state proves `old` fenced itself; (proof, error)."""
    started = time.monotonic()
    proof, deadline = None, None
    while True:
        now = time.monotonic()
        state = read_state(now=now)
        if state:
            if deadline is None:
                deadline = started + (timeout or 2 * (state["lease"] + state["watchdog"]) + 1.0)
            proof = self_fence_proof(state, now, old)
            if proof["safe"]:
                proof["waited"] = round(now - started, 3)
                return proof, None
        if deadline is None and now - started > 3:
            return proof, ("this node's sentinel does not report (%s); is hastack-sentinel running?"
                           % SENTINEL_STATE_FILE)
        if deadline is not None and now > deadline:
            return proof, proof["reason"]
        time.sleep(min(0.05, max(0.005, (proof or {}).get("safe_in") or 0.05)))


def last_wal_record(waldump_output):
    """(lsn, record type) of the last record pg_waldump printed, (None, None) when none."""
    found = (None, None)
    for line in waldump_output.splitlines():
        match = WALDUMP_RECORD.search(line)
        if match:
            found = (match.group(1), match.group(2))
    return found


def newest_timeline_of_segment(wal_dir, lsn, segment_size):
    """The highest timeline of the WAL files in wal_dir that hold position `lsn`, or None."""
    segno = lsn // segment_size
    per_xlogid = 0x100000000 // segment_size
    suffix = "%08X%08X" % (segno // per_xlogid, segno % per_xlogid)
    timelines = [int(name[:8], 16) for name in os.listdir(wal_dir)
                 if len(name) == 24 and name.endswith(suffix) and re.match(r"^[0-9A-F]{24}$", name)]
    return max(timelines) if timelines else None


def wait_shutdown_checkpoint(module, conn, after, deadline):
    """Wait until the last WAL record this standby received and replayed is a shutdown
    checkpoint beyond `after`; its LSN. Raises TimeoutError(what was last seen)."""
    p = module.params
    floor = lsn_to_int(after)
    wal_dir = os.path.join(p["data_directory"], "pg_wal")
    waldump = os.path.join(p["bin_dir"], "pg_waldump")
    size = query_one(conn, SEGMENT_SIZE_SQL)["bytes"]
    checked, seen = None, "nothing beyond %s" % after
    while True:
        row = query_one(conn, STANDBY_SQL)
        replay = lsn_to_int(row["replay"]) or 0
        # Only once the primary ended the stream and everything received is replayed: while
        # it streams, a shutdown checkpoint from an earlier restart can be the last record.
        if (row["receiver"] != "streaming" and replay > floor and replay != checked
                and replay >= (lsn_to_int(row["receive"]) or 0)):
            checked = replay
            timeline = newest_timeline_of_segment(wal_dir, replay - 1, size)
            start = max(replay - 2 * WAL_PAGE, (replay - 1) // size * size, floor) // WAL_PAGE * WAL_PAGE
            rc, out, err = module.run_command([waldump, "-p", wal_dir, "-t", str(timeline or 1),
                                               "-s", int_to_lsn(start), "-e", row["replay"]])
            lsn, kind = last_wal_record(out)
            seen = "%s at %s (pg_waldump rc %d%s)" % (kind, lsn, rc, ": " + err.strip()[-200:] if not lsn else "")
            if kind == "CHECKPOINT_SHUTDOWN" and (lsn_to_int(lsn) or 0) >= floor:
                return int_to_lsn(lsn_to_int(lsn))  # as pg_controldata prints it: 0/70A8800
        if time.monotonic() > deadline:
            raise TimeoutError(seen)
        time.sleep(0.01)


def create_slots(conn, names):
    """Physical slots (WAL reserved now) for these replicas; the names of those created."""
    created = []
    for name in sorted({slot_name(n) for n in names}):
        exists = query_one(conn, "SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = %s", (name,))["n"]
        if not exists:
            try:
                conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
            except Exception as exc:  # only a duplicate is expected; anything else is raised
                # The replica's own repoint runs at the same time (failover.yml) and creates
                # the same slot over its replication connection: either one is fine.
                if getattr(exc, "sqlstate", None) != DUPLICATE_OBJECT:
                    raise
                continue
            created.append(name)
    return created


def wait_replayed(conn, lsn, deadline):
    target = lsn_to_int(lsn)
    while True:
        replayed = query_one(conn, "SELECT pg_last_wal_replay_lsn()::text AS lsn")["lsn"]
        if (lsn_to_int(replayed) or 0) > target:
            return replayed
        if time.monotonic() > deadline:
            raise TimeoutError(replayed)
        time.sleep(0.01)


def main():
    module = AnsibleModule(
        argument_spec=local_postgres_argument_spec(
            "port", "socket_dir", "login_user",
            timeout=dict(type="int", default=60),
            wait_replay_lsn=dict(type="str"),
            wait_shutdown_after=dict(type="str"),
            data_directory=dict(type="path"),
            bin_dir=dict(type="path"),
            fenced_by_lease=dict(type="str"),
            proof_timeout=dict(type="float", default=0),
            checkpoint=dict(type="bool", default=True),
            epoch=dict(type="int"),
            node_name=dict(type="str"),
            replica_slots=dict(type="list", elements="str", default=[]),
        ),
        required_by={"wait_shutdown_after": ["data_directory", "bin_dir"]},
        supports_check_mode=True,
    )
    if not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg (Debian: python3-psycopg)"),
                         exception=str(PSYCOPG_IMPORT_ERROR))
    p = module.params
    try:
        conn = connect(local_conninfo(p["socket_dir"], p["port"], user=p["login_user"]))
    except Exception as exc:  # noqa: BLE001 - whatever the cause, the operator gets what to do next
        module.fail_json(msg="cannot promote: PostgreSQL on this host does not answer on %s (%s). Start it "
                             "(systemctl start postgresql@<version>-main) or choose another replica with "
                             "-e new_primary=HOST." % (p["socket_dir"], str(exc).strip()))
    with conn:
        in_recovery = query_one(conn, "SELECT pg_is_in_recovery() AS rec")["rec"]
        if not in_recovery:
            pos = query_one(conn, POSITION_SQL)
            changed = record_primary(p["epoch"], p["node_name"], dry=module.check_mode, local=p["node_name"])
            module.exit_json(changed=changed, promoted=False, lsn=pos["lsn"],
                             timeline=timeline_from_walfile(pos["walfile"]))
        if module.check_mode:
            module.exit_json(changed=True, promoted=False)
        proof = None
        if p["fenced_by_lease"]:
            proof, error = wait_self_fenced(p["fenced_by_lease"], p["proof_timeout"])
            if error:
                module.fail_json(
                    msg="NOT PROMOTED: %s may still accept writes. %s. If it is alive and only unreachable "
                        "from this controller, fix that and rerun; if you have powered it off, rerun with "
                        "-e failover_confirm_dead=%s (or configure failover_fence_command)."
                        % (p["fenced_by_lease"], error, p["fenced_by_lease"]), proof=proof)
        start = time.monotonic()
        deadline = start + p["timeout"]
        if p["wait_replay_lsn"]:
            try:
                wait_replayed(conn, p["wait_replay_lsn"], deadline)
            except TimeoutError as exc:
                module.fail_json(msg="not promoted: the node replayed only up to %s within %d s, not past the old "
                                     "primary's final checkpoint %s. Promoting now would lose writes."
                                     % (exc.args[0], p["timeout"], p["wait_replay_lsn"]))
        shutdown_lsn = None
        if p["wait_shutdown_after"]:
            try:
                shutdown_lsn = wait_shutdown_checkpoint(module, conn, p["wait_shutdown_after"], deadline)
            except TimeoutError as exc:
                module.fail_json(msg="not promoted: within %d s this node did not receive the old primary's shutdown "
                                     "checkpoint after %s (last record: %s). Unless the old primary stopped cleanly, "
                                     "promoting could lose writes." % (p["timeout"], p["wait_shutdown_after"],
                                                                       exc.args[0]))
        promote_start = time.monotonic()
        slots = create_slots(conn, p["replica_slots"])
        # Recorded first: the fenced old primary already gossips this epoch naming this node,
        # and a sentinel that saw this node writable with the older epoch would fence it. The
        # record alone moves nothing (the DB VIP also needs the node writable).
        record_primary(p["epoch"], p["node_name"], local=p["node_name"])
        done = query_one(conn, "SELECT pg_promote(true, %s) AS ok", (p["timeout"],))["ok"]
        if not done:
            module.fail_json(msg="pg_promote() did not finish within %d s; the node is still in recovery. Check "
                                 "its log (journalctl -u postgresql@*) and rerun failover.yml." % p["timeout"])
        try:
            wait_writable(conn, deadline)
        except TimeoutError:
            module.fail_json(msg="the node left recovery but refused writes for %d s (transaction_read_only "
                                 "or default_transaction_read_only set?)" % p["timeout"])
        promote_seconds = round(time.monotonic() - promote_start, 3)
        writable_at = round(time.time(), 3)
        record_primary(p["epoch"], p["node_name"], local=p["node_name"])
        if p["checkpoint"]:
            conn.execute("CHECKPOINT")
        pos = query_one(conn, POSITION_SQL)
    module.exit_json(changed=True, promoted=True, promote_seconds=promote_seconds, lsn=pos["lsn"],
                     timeline=timeline_from_walfile(pos["walfile"]), proof=proof, slots_created=slots,
                     shutdown_checkpoint_lsn=shutdown_lsn, writable_at=writable_at)


if __name__ == "__main__":
    main()
