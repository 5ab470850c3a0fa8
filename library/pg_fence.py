#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hastack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_fence
short_description: Stop a replaced PostgreSQL primary and keep it from starting as one
description:
  - Stops the PostgreSQL service (killing it when a clean stop exceeds C(timeout)), then
    writes C(standby.signal) and a C(hastack.fenced) marker into the data directory. If
    anyone starts the service again, the node comes up in recovery — read-only — instead
    of as a second primary. M(pg_resync) later rewinds it and removes the marker.
  - Records the new primary and cluster epoch in C(/var/lib/hastack/cluster.json).
  - Idempotent: a stopped, fenced node reports C(changed=false). Supports check mode.
options:
  data_directory:
    description: The cluster's data directory.
    type: path
    required: true
  service:
    description: systemd unit of the cluster.
    type: str
    required: true
  bin_dir:
    description: Directory of the PostgreSQL server binaries (pg_controldata).
    type: path
    required: true
  timeout:
    description: Seconds a clean stop may take before the service is killed.
    type: int
    default: 10
  epoch:
    description: Cluster epoch of the failover that fenced this node.
    type: int
  new_primary:
    description: Inventory name of the node that replaced this one.
    type: str
  checkpoint:
    description:
      - Run C(CHECKPOINT) before the stop, while clients still write, so that the shutdown
        checkpoint (during which nobody can write) has little left to flush. A planned
        switchover sets it; a failed CHECKPOINT only warns, the stop goes on.
    type: bool
    default: false
  port:
    description: Port of the local PostgreSQL (for C(checkpoint)).
    type: int
    default: 5432
  socket_dir:
    description: Directory of the local Unix socket (for C(checkpoint)).
    type: path
    default: /var/run/postgresql
author: hastack
"""

EXAMPLES = r"""
- name: Fence the old primary
  pg_fence:
    data_directory: "{{ postgresql_data_directory }}"
    bin_dir: "{{ postgresql_bin_dir }}"
    service: "{{ postgresql_service }}"
    epoch: "{{ epoch }}"
    new_primary: "{{ plan.candidate }}"
  when: inventory_hostname in plan.fence
"""

RETURN = r"""
stopped:
  description: Whether this run stopped the service.
  returned: always
  type: bool
killed:
  description: Whether the service had to be killed.
  returned: always
  type: bool
checkpoint_lsn:
  description: The last checkpoint in the control file after the stop; after a clean stop
    this is the shutdown checkpoint, the last WAL the node wrote (switchover waits for it).
  returned: when the node holds a cluster
  type: str
cluster_state:
  description: pg_controldata's cluster state after the stop (C(shut down) after a clean stop).
  returned: when the node holds a cluster
  type: str
  sample: shut down
checkpoint_seconds:
  description: How long the CHECKPOINT before the stop took (null when it failed).
  returned: when checkpoint is set and the service was running
  type: float
  sample: 0.08
stop_seconds:
  description: How long the stop took (writes are refused from its start).
  returned: when the service was running
  type: float
  sample: 0.35
stop_started_at:
  description: When the stop began (seconds since the epoch, this host's clock); switchover.yml's write gap.
  returned: when the service was running
  type: float
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hastack_module import local_postgres_argument_spec
from ansible.module_utils.hastack_service import is_active, postmaster_running, stop_postgresql
from ansible.module_utils.hastack_facts import connect, HAS_PSYCOPG, local_conninfo, parse_controldata
from ansible.module_utils.hastack_state import FENCE_MARKER, record_primary, write_owned


def controldata(module, bin_dir, data):
    rc, out, _ = module.run_command([os.path.join(bin_dir, "pg_controldata"), "-D", data],
                                    environ_update={"LC_ALL": "C"})
    facts = parse_controldata(out) if rc == 0 else {}
    return {"checkpoint_lsn": facts.get("checkpoint_lsn"), "cluster_state": facts.get("cluster_state")}


def checkpoint(module, p):
    """CHECKPOINT over the local socket; seconds it took, or None when it failed (warned)."""
    start = time.monotonic()
    try:
        with connect(local_conninfo(p["socket_dir"], p["port"]), connect_timeout=2) as conn:
            conn.execute("CHECKPOINT")
    except Exception as exc:  # noqa: BLE001 - only a speed-up: the clean stop checkpoints anyway
        module.warn("CHECKPOINT before the stop failed (%s); the shutdown checkpoint does it all" % exc)
        return None
    return round(time.monotonic() - start, 3)


def main():
    module = AnsibleModule(
        argument_spec=local_postgres_argument_spec(
            "data_directory", "service", "bin_dir", "port", "socket_dir",
            timeout=dict(type="int", default=10),
            epoch=dict(type="int"),
            new_primary=dict(type="str"),
            checkpoint=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    data = p["data_directory"]
    if not os.path.exists(os.path.join(data, "PG_VERSION")):
        module.exit_json(changed=False, stopped=False, killed=False, msg="no cluster in %s" % data)
    active = is_active(module, p["service"]) or postmaster_running(module, p["bin_dir"], data)
    signal = os.path.join(data, "standby.signal")
    marker = os.path.join(data, FENCE_MARKER)
    record = record_primary(p["epoch"], p["new_primary"], dry=True, local="")
    changed = active or not os.path.exists(signal) or not os.path.exists(marker) or record
    if module.check_mode or not changed:
        module.exit_json(changed=changed, stopped=False, killed=False,
                         **(controldata(module, p["bin_dir"], data) if not active else {}))
    killed = False
    result = {}
    if active and p["checkpoint"] and HAS_PSYCOPG:
        result["checkpoint_seconds"] = checkpoint(module, p)
    if active:
        result["stop_started_at"] = round(time.time(), 3)
        stop_start = time.monotonic()
        killed, running = stop_postgresql(module, p["service"], p["bin_dir"], data, p["timeout"])
        result["stop_seconds"] = round(time.monotonic() - stop_start, 3)
        if running:
            module.fail_json(msg="could not stop %s; the old primary may still accept writes. Stop it by hand "
                                 "(or power the host off) before pointing clients at the new primary." % p["service"])
    write_owned(signal, "", 0o600)
    write_owned(marker, json.dumps({"fenced_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                    "epoch": p["epoch"], "new_primary": p["new_primary"]}) + "\n", 0o600)
    record_primary(p["epoch"], p["new_primary"], local="")
    result.update(controldata(module, p["bin_dir"], data))
    module.exit_json(changed=True, stopped=active, killed=killed, **result)


if __name__ == "__main__":
    main()
