#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hastack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_cluster_plan
short_description: Decide which node is, or becomes, the PostgreSQL primary
description:
  - Takes the facts that M(pg_node_facts) gathered on every database host and decides,
    before anything changes, what a playbook may do.
  - C(converge) (site.yml) finds the node to build around — the writable one, not
    necessarily the inventory's C(postgresql_primary) — and refuses when two nodes are
    writable or when only replicas are up.
  - C(failover) chooses the most advanced reachable replica (or C(new_primary)), and
    refuses when none is reachable, when it is further behind than C(max_lag_bytes), or
    when the cluster already has two writable nodes. A cluster that already has a
    writable primary needs nothing (C(action=none)).
  - C(switchover) checks the candidate streams from the live primary and is caught up. A
    switchover interrupted after the old primary's clean stop is resumed (C(resumed=true));
    one interrupted after the promotion is finished (C(action=finish): the nodes in
    C(rejoin) still need pointing at the primary) before any new move.
  - C(resync) finds the primary that C(node) must follow; C(node) may itself be a stale
    writable primary, which the operator chose to rejoin.
  - Runs on the controller, changes nothing; check mode gives the same answer.
options:
  mode:
    description: Which decision to make.
    type: str
    required: true
    choices: [converge, failover, switchover, resync]
  nodes:
    description:
      - Inventory host name to the C(node) result of M(pg_node_facts); hosts that could not
        be reached carry C(reachable=false).
    type: dict
    required: true
  inventory_primary:
    description: The primary the inventory names (used for a new cluster).
    type: str
  old_primary:
    description: The primary before this failover (recorded epoch or inventory).
    type: str
  new_primary:
    description: Promote this host instead of choosing the most advanced replica.
    type: str
  node:
    description: The node to rejoin (mode C(resync)).
    type: str
  max_lag_bytes:
    description: Refuse a candidate further behind than this.
    type: int
    default: 16777216
  force:
    description: Promote even when the candidate lags beyond C(max_lag_bytes).
    type: bool
    default: false
  synchronous:
    description:
      - Synchronous commit (C(ANY 1)) is on. A failover then needs every replica's WAL
        position, and the most advanced by (timeline, LSN), to be sure no acknowledged commit
        is lost; otherwise it refuses unless C(accept_loss).
    type: bool
    default: false
  accept_loss:
    description: In synchronous mode, promote although a replica did not report or C(new_primary) is behind.
    type: bool
    default: false
  fence_command:
    description: A power-off hook is configured (failover.yml's C(failover_fence_command)).
    type: bool
    default: false
  confirm_dead:
    description: The operator attests this host is powered off (failover.yml's C(failover_confirm_dead)).
    type: str
  addresses:
    description:
      - Inventory host name to address; lets a re-run of failover or switchover find replicas
        that still follow the old primary.
    type: dict
author: hastack
"""

EXAMPLES = r"""
- name: Decide the failover
  pg_cluster_plan:
    mode: failover
    nodes: "{{ dict(groups['db'] | zip(groups['db'] | map('extract', hostvars, 'hastack_node'))) }}"
    old_primary: db1
    max_lag_bytes: 16777216
  delegate_to: localhost
  run_once: true
  register: plan
"""

RETURN = r"""
plan:
  description: The decision.
  returned: success
  type: dict
  contains:
    action:
      description: none, promote, switchover, finish or converge.
      type: str
    primary:
      description: The node that is (or will be) the primary.
      type: str
    candidate:
      description: The node to promote.
      type: str
    fence:
      description: Reachable nodes to stop and keep from starting as a primary.
      type: list
    fence_method:
      description:
        - How the old primary is kept from taking writes before the promotion - C(ssh)
          (pg_fence), C(command) (the power-off hook), C(operator) (failover_confirm_dead),
          C(self) (its lease ran out; pg_promote waits for the sentinels' proof) or C(none).
      type: str
    repoint:
      description: Replicas to point at the new primary.
      type: list
    rejoin:
      description: Switchover - the nodes to make replicas of the (new) primary.
      type: list
    resumed:
      description: Switchover - an interrupted switchover is being finished.
      type: bool
    lag_bytes:
      description: How far the candidate's replay is behind the most advanced known position.
      type: int
    possible_loss_bytes:
      description: WAL the reachable old primary holds beyond the candidate (null when unknown).
      type: int
    epoch:
      description: Cluster epoch to record with the new primary.
      type: int
    reason:
      description: Why, in one sentence.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hastack_plan import decide, PLAN_ARGUMENT_SPEC, PLAN_REQUIRED_IF, PlanError


# The playbooks run this decision through the action plugin of the same name
# (roles/postgresql/action_plugins/pg_cluster_plan.py): the same code on the controller,
# without starting a module process (measured ~0.5-1 s on the critical path of a failover).
# This module is what runs when the plugin is not on the path (ad hoc, other playbooks).
def main():
    module = AnsibleModule(argument_spec=PLAN_ARGUMENT_SPEC, required_if=PLAN_REQUIRED_IF, supports_check_mode=True)
    try:
        plan = decide(module.params)
    except PlanError as exc:
        module.fail_json(msg="%s: %s" % (module.params["mode"], exc))
    module.exit_json(changed=False, plan=plan)


if __name__ == "__main__":
    main()
