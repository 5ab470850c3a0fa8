#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hastack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_node_facts
short_description: Report a PostgreSQL node's replication role and position
description:
  - Connects to the local PostgreSQL over its Unix socket as C(postgres) and reports the
    node's role (primary, replica), timeline, WAL positions, lag, upstream, replication
    slots with the WAL they retain and connected replicas with their sync state.
  - When PostgreSQL does not answer, reads C(pg_controldata) instead and reports the role
    as C(stopped) (or C(starting), C(stopping), C(unresponsive)); C(absent) when the data
    directory holds no cluster.
  - Also returns the cluster epoch and primary recorded on this node by failover and
    switchover (C(/var/lib/hastack/cluster.json)).
  - Read-only; it never changes anything, so it runs the same in check mode.
options:
  data_directory:
    description: The cluster's data directory.
    type: path
    required: true
  bin_dir:
    description: Directory of the PostgreSQL server binaries (pg_controldata).
    type: path
    required: true
  port:
    description: Port of the local PostgreSQL.
    type: int
    default: 5432
  socket_dir:
    description: Directory of the local Unix socket.
    type: path
    default: /var/run/postgresql
  login_user:
    description: Database role to connect as over the socket (peer or ident mapped).
    type: str
    default: postgres
  connect_timeout:
    description: Seconds to wait for the local server before calling it unresponsive.
    type: int
    default: 3
requirements:
  - psycopg >= 3.1 on the managed host (Debian package python3-psycopg)
author: hastack
"""

EXAMPLES = r"""
- name: Gather replication facts
  pg_node_facts:
    data_directory: "{{ postgresql_data_directory }}"
    bin_dir: "{{ postgresql_bin_dir }}"
  register: node

- name: Show the role
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} is {{ node.node.role }} at {{ node.node.position_lsn }}"
"""

RETURN = r"""
node:
  description: What this node is and where it stands.
  returned: always
  type: dict
  contains:
    role:
      description: primary, replica, stopped, starting, stopping, unresponsive or absent.
      type: str
      sample: replica
    running:
      description: Whether PostgreSQL answered.
      type: bool
    has_data:
      description: Whether the data directory holds a cluster (PG_VERSION exists).
      type: bool
    standby_signal:
      description: Whether standby.signal exists (the node starts as a replica).
      type: bool
    system_identifier:
      description: The cluster's system identifier; equal on a primary and its replicas.
      type: str
    timeline:
      description: Current timeline (primary), received timeline (replica) or checkpoint timeline.
      type: int
    current_lsn:
      description: pg_current_wal_lsn() on a primary.
      type: str
    receive_lsn:
      description: Last WAL position received and flushed (replica).
      type: str
    replay_lsn:
      description: Last WAL position replayed (replica).
      type: str
    position_lsn:
      description: The most advanced position this node holds (current, received or replayed).
      type: str
    replay_backlog_bytes:
      description: Received but not yet replayed WAL in bytes (replica).
      type: int
    replay_delay_seconds:
      description: Seconds since the last replayed transaction's commit (replica; grows when idle).
      type: float
    replay_paused:
      description: Whether WAL replay is paused (replica).
      type: bool
    upstream:
      description: Host the WAL receiver streams from (replica).
      type: str
    wal_receiver:
      description: Row of pg_stat_wal_receiver (status, sender_host, slot_name, ...).
      type: dict
    slots:
      description: Replication slots with retained_bytes (WAL held for them).
      type: list
    replicas:
      description: Rows of pg_stat_replication with sync_state and replay_lag_bytes.
      type: list
    cluster_state:
      description: pg_controldata's cluster state when PostgreSQL is not running.
      type: str
    epoch:
      description: Cluster epoch recorded on this node by the last failover/switchover (0 if none).
      type: int
    recorded_primary:
      description: Primary recorded with that epoch.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.hastack_module import local_postgres_argument_spec
from ansible.module_utils.hastack_facts import gather_node, PSYCOPG_IMPORT_ERROR


def main():
    module = AnsibleModule(
        argument_spec=local_postgres_argument_spec(
            "data_directory", "bin_dir", "port", "socket_dir", "login_user",
            connect_timeout=dict(type="int", default=3),
        ),
        supports_check_mode=True,
    )
    try:
        node = gather_node(module.run_command, **module.params)
    except RuntimeError:
        module.fail_json(msg=missing_required_lib("psycopg (Debian: python3-psycopg)"),
                         exception=str(PSYCOPG_IMPORT_ERROR))
    module.exit_json(changed=False, node=node)


if __name__ == "__main__":
    main()
