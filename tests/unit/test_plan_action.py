"""pg_cluster_plan's controller-side action plugin gives the module's answers: same
validation, same decision, same refusal message."""

import types

import pytest
from script_loader import load_script

from module_utils import hastack_plan

plugin = load_script("pg_cluster_plan_action", "roles/postgresql/action_plugins/pg_cluster_plan.py")


def replica(lsn, upstream="198.18.1.11"):
    return {"reachable": True, "role": "replica", "has_data": True, "standby_signal": True, "receive_lsn": lsn,
            "replay_lsn": lsn, "position_lsn": lsn, "upstream": upstream,
            "wal_receiver": {"status": "streaming", "sender_host": upstream}}


def run(args):
    action = plugin.ActionModule.__new__(plugin.ActionModule)
    action._task = types.SimpleNamespace(args=args, async_val=0)
    # ActionBase.run() checks the task's async settings; what matters here is our part.
    orig = plugin.ActionBase.run
    plugin.ActionBase.run = lambda self, tmp=None, task_vars=None: {}
    try:
        return action.run(task_vars={})
    finally:
        plugin.ActionBase.run = orig


def test_plugin_loads_the_shared_plan_code():
    assert hasattr(plugin.load_plan(), "decide")


def test_plugin_decides_like_the_module():
    nodes = {"db1": {"reachable": False}, "db2": replica("0/5000100"), "db3": replica("0/5000000")}
    args = {"mode": "failover", "nodes": nodes, "old_primary": "db1", "synchronous": "true"}
    result = run(args)
    assert not result.get("failed"), result
    params = dict(args, synchronous=True, max_lag_bytes=16 * 1024 * 1024, force=False, accept_loss=False,
                  fence_command=False, confirm_dead=None, addresses=None, new_primary=None, node=None,
                  inventory_primary=None)
    assert result["plan"] == hastack_plan.decide(params)
    assert result["plan"]["candidate"] == "db2"


def test_plugin_refuses_like_the_module():
    nodes = {"db1": {"reachable": False}, "db2": replica("0/5000100"), "db3": {"reachable": False}}
    result = run({"mode": "failover", "nodes": nodes, "old_primary": "db1", "synchronous": True})
    assert result["failed"] and result["msg"].startswith("failover: synchronous mode: db3 did not report")


@pytest.mark.parametrize("args", [{"nodes": {}}, {"mode": "resync", "nodes": {}}, {"mode": "bogus", "nodes": {}}])
def test_plugin_validates_arguments(args):
    result = run(args)
    assert result["failed"] and result["msg"].startswith("pg_cluster_plan: ")
