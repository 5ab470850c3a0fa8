#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hastack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_status
short_description: Judge the health of a hastack cluster from what status.yml gathered
description:
  - Takes the facts M(pg_node_facts) gathered on every database host, the holders of each
    VIP, the output of C(hastack-backup check) on the backup hosts and each app server's
    C(/health) answer, and returns one structure - a row per database node and the
    problems found, each with what to do.
  - In SQLite mode (option O(sqlite)) it judges the app servers instead - one writer
    running the app and Litestream, under the app VIP, replicating within O(max_lag_seconds).
  - Runs on the controller and changes nothing; check mode gives the same answer.
  - The rules are in C(module_utils/hastack_status.py) (unit tested).
options:
  nodes:
    description:
      - Inventory host name to the C(node) result of M(pg_node_facts); hosts that could not
        be reached carry C(reachable=false).
      - Ignored when O(sqlite) is given.
    type: dict
    default: {}
  sqlite:
    description:
      - SQLite mode - app host to C(app) and C(litestream) (their systemd ActiveState) and
        C(lag) (the JSON of C(hastack-litestream-lag), or null); null for a host that did
        not answer.
    type: dict
  max_lag_seconds:
    description: SQLite mode - a replica further behind its writer than this is a warning.
    type: float
    default: 10
  vips:
    description:
      - The VIPs, each with C(name), C(address), C(holders) (hosts that hold it) and C(db)
        (whether it is the DB VIP, which must sit on the primary).
    type: list
    elements: dict
    default: []
  backups:
    description: Backup host to the lines C(hastack-backup check) printed (null when it did not answer).
    type: dict
    default: {}
  apps:
    description: App host to the HTTP status its C(/health) answered (null when it did not answer).
    type: dict
    default: {}
  max_lag_bytes:
    description: A replica further behind the primary than this is a warning.
    type: int
    default: 16777216
  slot_keep_size:
    description:
      - C(max_slot_wal_keep_size) in PostgreSQL's notation; WAL retained for a slot above 80 %
        of it is a warning.
    type: str
author: hastack
"""

EXAMPLES = r"""
- name: Judge the cluster
  cluster_status:
    nodes: "{{ postgresql_cluster_nodes }}"
    vips: "{{ status_vip_holders }}"
    backups: "{{ status_backup_lines }}"
  delegate_to: localhost
  run_once: true
  register: status
"""

RETURN = r"""
status:
  description: The cluster's health.
  returned: success
  type: dict
  contains:
    healthy:
      description: No critical problem.
      type: bool
    primary:
      description: The one writable node, or null (PostgreSQL).
      type: str
    active:
      description: The one app server that runs the app and Litestream, or null (SQLite mode).
      type: str
    servers:
      description:
        - SQLite mode - a row per app server - node, role (active, standby, unreachable), app,
          litestream, lag_seconds, replica_newest, vips.
      type: list
    epoch:
      description: The newest cluster epoch a node reported.
      type: int
    nodes:
      description:
        - A row per database node - node, role, timeline, epoch, lsn, lag_bytes, lag_seconds,
          sync_state, slot_retained_bytes, fenced, quorum, upstream, vips.
      type: list
    vips:
      description: Each VIP with its holders.
      type: list
    backups:
      description: Each backup host with the lines of its check.
      type: list
    apps:
      description: Each app server with the HTTP status of its /health.
      type: list
    problems:
      description: Each problem with its severity (critical or warning), what and what to do.
      type: list
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hastack_status import cluster_status, size_to_bytes, sqlite_status


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nodes=dict(type="dict", default={}),
            sqlite=dict(type="dict"),
            max_lag_seconds=dict(type="float", default=10),
            vips=dict(type="list", elements="dict", default=[]),
            backups=dict(type="dict", default={}),
            apps=dict(type="dict", default={}),
            max_lag_bytes=dict(type="int", default=16 * 1024 * 1024),
            slot_keep_size=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["sqlite"] is not None:
        module.exit_json(changed=False, status=sqlite_status(p["sqlite"], vips=p["vips"], backups=p["backups"],
                                                             apps=p["apps"], max_lag_seconds=p["max_lag_seconds"]))
    try:
        keep = size_to_bytes(p["slot_keep_size"])
    except ValueError:
        module.fail_json(msg="slot_keep_size=%s is not a PostgreSQL size (e.g. 1GB)" % p["slot_keep_size"])
    status = cluster_status(p["nodes"], vips=p["vips"], backups=p["backups"], apps=p["apps"],
                            max_lag_bytes=p["max_lag_bytes"], slot_keep_bytes=keep)
    module.exit_json(changed=False, status=status)


if __name__ == "__main__":
    main()
