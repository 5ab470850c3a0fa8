"""Decision logic of the PostgreSQL modules, without a database."""

import types

import pytest

from module_utils import hastack_facts, hastack_lsn, hastack_plan, hastack_state
from module_utils.hastack_plan import PlanError

# The shared code by concern (LSNs, node files, facts, decisions), tested as one.
pg = types.SimpleNamespace(**{k: v for m in (hastack_lsn, hastack_state, hastack_facts, hastack_plan)
                              for k, v in vars(m).items() if not k.startswith("__")})

SYSID = "7300000000000000001"


def primary(lsn="0/5000000", **extra):
    return {"reachable": True, "role": "primary", "has_data": True, "system_identifier": SYSID,
            "current_lsn": lsn, "position_lsn": lsn, **extra}


def replica(receive="0/5000000", replay=None, upstream="198.18.3.11", streaming=True, **extra):
    replay = replay or receive
    return {"reachable": True, "role": "replica", "has_data": True, "system_identifier": SYSID,
            "standby_signal": True, "receive_lsn": receive, "replay_lsn": replay,
            "position_lsn": pg.max_lsn(receive, replay), "upstream": upstream,
            "wal_receiver": {"status": "streaming" if streaming else "stopping", "sender_host": upstream},
            **extra}


def dead():
    return {"reachable": False}


def stopped(**extra):
    return {"reachable": True, "role": "stopped", "has_data": True, "system_identifier": SYSID, **extra}


# ------------------------------------------------------------------ LSNs
@pytest.mark.parametrize("text,value", [("0/0", 0), ("0/16B3748", 0x16B3748),
                                        ("16/B374D848", (0x16 << 32) + 0xB374D848)])
def test_lsn_round_trip(text, value):
    assert pg.lsn_to_int(text) == value
    assert pg.int_to_lsn(value) == text.upper()


def test_lsn_rejects_garbage():
    with pytest.raises(ValueError):
        pg.lsn_to_int("16-B3")


def test_max_lsn_ignores_missing():
    assert pg.max_lsn(None, "0/10", "0/F") == "0/10"
    assert pg.max_lsn(None, "") is None


def test_slot_name_is_valid_for_postgres():
    assert pg.slot_name("db-1.example.net") == "db_1_example_net"


def test_timeline_from_walfile():
    assert pg.timeline_from_walfile("000000020000000000000003") == 2


def test_parse_controldata():
    text = """pg_control version number:            1300
Database system identifier:           7300000000000000001
Database cluster state:               shut down in recovery
Latest checkpoint location:           0/3000060
Latest checkpoint's TimeLineID:       2
Minimum recovery ending location:     0/3000108
"""
    facts = pg.parse_controldata(text)
    assert facts == {"system_identifier": SYSID, "cluster_state": "shut down in recovery",
                     "checkpoint_lsn": "0/3000060", "timeline": 2, "min_recovery_lsn": "0/3000108"}


@pytest.mark.parametrize("message,state", [
    ("FATAL:  the database system is starting up", "starting"),
    ("FATAL:  the database system is shutting down", "stopping"),
    ('connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: No such file or directory', "stopped"),
    ("timeout expired", "unresponsive"),
])
def test_classify_connect_error(message, state):
    assert pg.classify_connect_error(message) == state


def test_cluster_state_file_round_trip(tmp_path):
    path = tmp_path / "sub" / "cluster.json"
    pg.write_cluster_state({"epoch": 3, "primary": "db2"}, str(path))
    assert pg.read_cluster_state(str(path)) == {"epoch": 3, "primary": "db2"}
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert pg.read_cluster_state(str(tmp_path / "missing.json")) == {}


# ------------------------------------------------------------------ converge
def test_converge_builds_around_the_writable_node_not_the_inventory():
    primary_host, reason = pg.converge_primary({"db1": replica(), "db2": primary()}, "db1")
    assert primary_host == "db2"
    assert "inventory names db1" in reason


def test_converge_refuses_two_writable_nodes():
    with pytest.raises(PlanError, match="more than one writable.*db1, db2"):
        pg.converge_primary({"db1": primary(), "db2": primary()}, "db1")


def test_converge_new_cluster_uses_the_inventory_primary():
    nodes = {"db1": {"reachable": True, "role": "absent", "has_data": False},
             "db2": {"reachable": True, "role": "absent", "has_data": False}}
    assert pg.converge_primary(nodes, "db1")[0] == "db1"


def test_converge_refuses_unreachable_hosts():
    with pytest.raises(PlanError, match="db2.*unreachable"):
        pg.converge_primary({"db1": primary(), "db2": dead()}, "db1")


def test_converge_never_promotes_when_only_replicas_are_up():
    with pytest.raises(PlanError, match="failover.yml"):
        pg.converge_primary({"db1": stopped(standby_signal=True), "db2": replica()}, "db1")


def test_converge_starts_a_stopped_primary():
    assert pg.converge_primary({"db1": stopped(), "db2": replica()}, "db1")[0] == "db1"


def test_converge_refuses_a_stopped_primary_the_epoch_disowns():
    with pytest.raises(PlanError, match="recorded db2"):
        pg.converge_primary({"db1": stopped(), "db2": stopped(standby_signal=True)}, "db1", recorded_primary="db2")


# ------------------------------------------------------------------ failover
def test_failover_promotes_the_most_advanced_replica_and_fences_the_old_primary():
    nodes = {"db1": stopped(), "db2": replica("0/5000000"), "db3": replica("0/6000000")}
    plan = pg.failover_plan(nodes, old_primary="db1")
    assert plan["action"] == "promote"
    assert plan["candidate"] == "db3"
    assert plan["fence"] == ["db1"]
    assert plan["repoint"] == ["db2"]


def test_failover_with_unreachable_old_primary():
    plan = pg.failover_plan({"db1": dead(), "db2": replica()}, old_primary="db1")
    assert plan["candidate"] == "db2"
    assert plan["fence"] == []
    assert plan["old_primary_reachable"] is False


def test_failover_is_a_no_op_once_a_primary_is_writable():
    plan = pg.failover_plan({"db1": stopped(standby_signal=True), "db2": primary()}, old_primary="db1")
    assert plan["action"] == "none"
    assert plan["primary"] == "db2"


def test_failover_refuses_without_a_reachable_replica():
    with pytest.raises(PlanError, match="no replica is reachable.*db2"):
        pg.failover_plan({"db1": dead(), "db2": dead()}, old_primary="db1")


def test_failover_refuses_a_lagging_replica_and_names_the_override():
    nodes = {"db1": dead(), "db2": replica(receive="0/9000000", replay="0/5000000", replay_paused=True)}
    with pytest.raises(PlanError) as excinfo:
        pg.failover_plan(nodes, old_primary="db1", max_lag_bytes=1024 * 1024)
    message = str(excinfo.value)
    assert "failover_max_lag_bytes=" in message
    assert "failover_force=true" in message
    assert "paused" in message


def test_failover_force_accepts_the_lag():
    nodes = {"db1": dead(), "db2": replica(receive="0/9000000", replay="0/5000000")}
    plan = pg.failover_plan(nodes, old_primary="db1", max_lag_bytes=1024, force=True)
    assert plan["candidate"] == "db2"
    assert plan["lag_bytes"] == 0x4000000


def test_failover_lag_is_measured_against_the_most_advanced_peer():
    nodes = {"db1": dead(), "db2": replica("0/5000000"), "db3": replica("0/9000000")}
    with pytest.raises(PlanError, match="db2.*behind"):
        pg.failover_plan(nodes, old_primary="db1", requested="db2", max_lag_bytes=1024)


def test_failover_refuses_split_brain():
    with pytest.raises(PlanError, match="split brain"):
        pg.failover_plan({"db1": primary(), "db2": primary(), "db3": replica()}, old_primary="db1")


def test_failover_refuses_when_the_primary_is_alive_and_another_node_is_requested():
    with pytest.raises(PlanError, match="switchover.yml -e new_primary=db2"):
        pg.failover_plan({"db1": primary(), "db2": replica()}, old_primary="db1", requested="db2")


def test_failover_requested_node_must_be_a_running_replica():
    with pytest.raises(PlanError, match="new_primary=db3 cannot be promoted: it is unreachable"):
        pg.failover_plan({"db1": dead(), "db2": replica(), "db3": dead()}, old_primary="db1", requested="db3")


# ------------------------------------------------------------------ switchover
def test_switchover_picks_a_caught_up_streaming_replica():
    plan = pg.switchover_plan({"db1": primary("0/5000000"), "db2": replica("0/5000000")}, requested="db2")
    assert plan["action"] == "switchover"
    assert plan["candidate"] == "db2"


def test_switchover_to_the_current_primary_does_nothing():
    assert pg.switchover_plan({"db1": primary(), "db2": replica()}, requested="db1")["action"] == "none"


def test_switchover_refuses_a_lagging_or_broken_replica():
    with pytest.raises(PlanError, match="behind"):
        pg.switchover_plan({"db1": primary("0/9000000"), "db2": replica("0/5000000")}, requested="db2",
                           max_lag_bytes=1024)
    with pytest.raises(PlanError, match="not streaming"):
        pg.switchover_plan({"db1": primary(), "db2": replica(streaming=False)}, requested="db2")


def test_switchover_without_new_primary_only_finishes_never_starts_a_move():
    # A re-run after a run killed once everything was done: nothing to finish, no new move.
    plan = pg.switchover_plan({"db1": primary("0/5000000"), "db2": replica("0/5000000")})
    assert plan["action"] == "none" and "new_primary=" in plan["reason"]


def test_switchover_refuses_without_a_primary():
    with pytest.raises(PlanError, match="failover.yml"):
        pg.switchover_plan({"db1": dead(), "db2": replica()})


def fenced_old_primary(epoch=3, recorded="db2", lsn="0/6000028"):
    """What pg_fence leaves when a switchover to `recorded` stopped the primary cleanly."""
    return stopped(fenced=True, standby_signal=True, running=False, cluster_state="shut down",
                   position_lsn=lsn, checkpoint_lsn=lsn, epoch=epoch, recorded_primary=recorded)


ADDRESSES = {"db1": "198.18.3.11", "db2": "198.18.3.12", "db3": "198.18.3.13"}


def test_switchover_interrupted_after_the_clean_stop_is_resumed():
    nodes = {"db1": fenced_old_primary(), "db2": replica("0/6000028", epoch=2),
             "db3": replica("0/6000028", epoch=2)}
    plan = pg.switchover_plan(nodes, addresses=ADDRESSES)
    assert plan["action"] == "switchover" and plan["resumed"]
    assert (plan["primary"], plan["candidate"], plan["epoch"]) == ("db1", "db2", 3)
    assert plan["rejoin"] == ["db1", "db3"]
    assert pg.switchover_plan(nodes, requested="db2")["resumed"]
    with pytest.raises(PlanError, match="finish it first"):
        pg.switchover_plan(nodes, requested="db3")


def test_a_crashed_or_foreign_stop_is_not_resumed_as_a_switchover():
    # Killed (not "shut down"): its last WAL position is unknown, failover.yml decides.
    crashed = fenced_old_primary()
    crashed["cluster_state"] = "in production"
    with pytest.raises(PlanError, match="failover.yml"):
        pg.switchover_plan({"db1": crashed, "db2": replica(epoch=2)})
    # A newer epoch exists elsewhere: this stop is history.
    with pytest.raises(PlanError, match="failover.yml"):
        pg.switchover_plan({"db1": fenced_old_primary(epoch=3), "db2": replica(epoch=4)})


def test_switchover_interrupted_after_the_promotion_is_finished_first():
    nodes = {"db1": fenced_old_primary(), "db2": primary(epoch=3, recorded_primary="db2"),
             "db3": replica(upstream="198.18.3.11", streaming=False, epoch=2)}
    plan = pg.switchover_plan(nodes, addresses=ADDRESSES)
    assert plan["action"] == "finish" and plan["rejoin"] == ["db1", "db3"]
    assert pg.switchover_plan(nodes, requested="db2", addresses=ADDRESSES)["action"] == "finish"
    with pytest.raises(PlanError, match="unfinished"):
        pg.switchover_plan(nodes, requested="db3", addresses=ADDRESSES)
    # Already streaming from the new primary (pointed at the candidate before the stop),
    # but without the move's epoch: finished too.
    nodes["db3"] = replica(upstream="198.18.3.12", epoch=2)
    assert pg.switchover_plan(nodes, addresses=ADDRESSES)["rejoin"] == ["db1", "db3"]
    # A fenced node from an older move is resync.yml's, not part of this one.
    nodes["db1"] = fenced_old_primary(epoch=2, recorded="db1")
    nodes["db3"] = replica(upstream="198.18.3.12", epoch=3)
    assert pg.switchover_plan(nodes, requested="db2", addresses=ADDRESSES)["action"] == "none"


# ------------------------------------------------------------------ resync
PRIMARY = {"system_identifier": SYSID, "address": "198.18.3.12"}


def test_resync_nothing_to_do_when_streaming_from_the_primary():
    local = replica(upstream="198.18.3.12")
    assert pg.resync_action(local, PRIMARY)[0] == "none"


def test_resync_repoints_a_replica_of_the_same_cluster():
    assert pg.resync_action(replica(upstream="198.18.3.11"), PRIMARY)[0] == "repoint"
    assert pg.resync_action(stopped(standby_signal=True), PRIMARY)[0] == "repoint"


def test_resync_rewinds_a_former_primary():
    assert pg.resync_action(stopped(), PRIMARY, allow_rewind=True)[0] == "rewind"


def test_resync_in_site_yml_refuses_a_former_primary():
    with pytest.raises(PlanError, match="resync.yml -e node=db1"):
        pg.resync_action(dict(stopped(), host="db1"), PRIMARY, allow_rewind=False, basebackup=pg.BASEBACKUP_SAFE)


def test_resync_clones_an_empty_node_but_not_under_never():
    assert pg.resync_action({"has_data": False}, PRIMARY)[0] == "basebackup"
    with pytest.raises(PlanError):
        pg.resync_action({"has_data": False}, PRIMARY, basebackup=pg.BASEBACKUP_NEVER)


def test_resync_clones_again_after_a_clone_was_cut_short():
    # pg_basebackup writes pg_control last: a cut-short copy has no system identifier and
    # would look like another cluster's data without the marker.
    partial = stopped(cloning=True, system_identifier=None)
    assert pg.resync_action(partial, PRIMARY, basebackup="safe")[0] == "basebackup"
    with pytest.raises(PlanError, match="cut short"):
        pg.resync_action(partial, PRIMARY, basebackup="never")


def test_resync_repoints_a_cleanly_stopped_former_primary_the_timeline_forked_after():
    old = fenced_old_primary(lsn="0/6000028")
    forked_after = dict(PRIMARY, fork_lsn=pg.lsn_to_int("0/60000A0"))
    assert pg.resync_action(old, forked_after, allow_rewind=False)[0] == "repoint"
    # Forked before its checkpoint (a failover that did not wait for it): it diverged.
    forked_before = dict(PRIMARY, fork_lsn=pg.lsn_to_int("0/5000000"))
    assert pg.resync_action(old, forked_before)[0] == "rewind"
    with pytest.raises(PlanError, match="former primary"):
        pg.resync_action(old, forked_before, allow_rewind=False)
    # Killed, not stopped cleanly: what it wrote last is unknown.
    crashed = dict(old, cluster_state="in production")
    assert pg.resync_action(crashed, forked_after)[0] == "rewind"


def test_resync_never_overwrites_another_clusters_primary_data():
    other = stopped(system_identifier="1")
    with pytest.raises(PlanError, match="only copy"):
        pg.resync_action(other, PRIMARY, allow_rewind=True, basebackup=pg.BASEBACKUP_SAFE)
    assert pg.resync_action(other, PRIMARY, basebackup=pg.BASEBACKUP_ALWAYS)[0] == "basebackup"


def test_resync_reclones_a_replica_of_another_cluster():
    assert pg.resync_action(replica(system_identifier="1"), PRIMARY)[0] == "basebackup"


def test_resync_falls_back_to_basebackup_when_rewind_is_off():
    assert pg.resync_action(stopped(), PRIMARY, allow_rewind=False, basebackup=pg.BASEBACKUP_ALWAYS)[0] == "basebackup"


def test_converge_never_restarts_a_fenced_primary():
    with pytest.raises(PlanError, match="failover.yml"):
        pg.converge_primary({"db1": stopped(standby_signal=True, fenced=True), "db2": replica()}, "db1")


def test_resync_rewinds_a_fenced_primary_even_with_standby_signal():
    fenced = stopped(standby_signal=True, fenced=True)
    assert pg.resync_action(fenced, PRIMARY, allow_rewind=True)[0] == "rewind"
    with pytest.raises(PlanError, match="resync.yml"):
        pg.resync_action(fenced, PRIMARY, allow_rewind=False, basebackup=pg.BASEBACKUP_SAFE)


def test_failover_plan_carries_the_next_epoch_and_the_loss_estimate():
    nodes = {"db1": stopped(position_lsn="0/6000000", cluster_state="shut down", epoch=3),
             "db2": replica("0/5000000", epoch=3)}
    plan = pg.failover_plan(nodes, old_primary="db1")
    assert plan["epoch"] == 4
    assert plan["possible_loss_bytes"] == 0x1000000
    crashed = dict(nodes, db1=stopped(position_lsn="0/6000000", cluster_state="in production", epoch=3))
    assert pg.failover_plan(crashed, old_primary="db1")["possible_loss_bytes"] is None
    assert pg.failover_plan({"db1": dead(), "db2": replica()}, old_primary="db1")["possible_loss_bytes"] is None


def test_recorded_primary_follows_the_highest_epoch():
    nodes = {"db1": {"epoch": 1, "recorded_primary": "db1"}, "db2": {"epoch": 2, "recorded_primary": "db2"},
             "db3": {}}
    assert pg.recorded_primary(nodes) == "db2"
    assert pg.recorded_primary({"db1": {}}) is None


def test_resync_plan_rejoins_a_stale_writable_primary():
    plan = pg.resync_plan({"db1": primary(epoch=1), "db2": primary(epoch=2)}, "db1")
    assert plan["primary"] == "db2"
    assert plan["epoch"] == 2


def test_resync_plan_needs_a_primary_to_follow():
    with pytest.raises(PlanError, match="failover.yml"):
        pg.resync_plan({"db1": stopped(), "db2": replica()}, "db1")
    with pytest.raises(PlanError, match="unreachable"):
        pg.resync_plan({"db1": dead(), "db2": primary()}, "db1")


def test_record_primary_writes_only_changes(tmp_path):
    path = str(tmp_path / "cluster.json")
    assert pg.record_primary(None, "db2", path=path) is False
    assert pg.record_primary(2, "db2", dry=True, path=path) is True
    assert pg.read_cluster_state(path) == {}
    assert pg.record_primary(2, "db2", path=path) is True
    assert pg.record_primary(2, "db2", path=path) is False
    assert pg.record_primary(3, None, path=path) is True
    state = pg.read_cluster_state(path)
    assert (state["epoch"], state["primary"]) == (3, "db2")


def test_record_primary_keeps_the_vip_track_file_in_step(tmp_path):
    path, track = str(tmp_path / "cluster.json"), tmp_path / "primary.track"
    assert pg.record_primary(2, "db2", path=path, local="db2", track_path=str(track)) is True
    assert track.read_text() == "0\n"
    # The state is unchanged but the track file was missing on this node: still a change.
    track.unlink()
    assert pg.record_primary(2, "db2", path=path, local="db2", track_path=str(track)) is True
    assert pg.record_primary(2, "db2", path=path, local="db2", track_path=str(track)) is False
    # A fenced node ("") and a replica never hold the DB VIP.
    assert pg.record_primary(3, "db1", path=path, local="", track_path=str(track)) is True
    assert track.read_text() == "1\n"
    assert pg.record_primary(3, "db1", dry=True, path=path, local="db1", track_path=str(track)) is True
    assert track.read_text() == "1\n"


# ------------------------------------------------------------- one primary (issue 9)
def test_failover_ranks_by_timeline_before_lsn():
    nodes = {"db1": dead(), "db2": replica("0/9000000", timeline=1), "db3": replica("0/6000000", timeline=2)}
    assert pg.failover_plan(nodes, old_primary="db1")["candidate"] == "db3"


def test_failover_says_how_the_old_primary_is_kept_from_writing():
    nodes = {"db1": dead(), "db2": replica(), "db3": replica()}
    assert pg.failover_plan(nodes, old_primary="db1")["fence_method"] == pg.FENCE_SELF
    assert pg.failover_plan(nodes, old_primary="db1", fence_command=True)["fence_method"] == pg.FENCE_COMMAND
    assert pg.failover_plan(nodes, old_primary="db1", confirm_dead="db1")["fence_method"] == pg.FENCE_OPERATOR
    # An attestation for another host proves nothing about db1.
    assert pg.failover_plan(nodes, old_primary="db1", confirm_dead="db3")["fence_method"] == pg.FENCE_SELF
    reachable = {"db1": stopped(), "db2": replica(), "db3": replica()}
    assert pg.failover_plan(reachable, old_primary="db1")["fence_method"] == pg.FENCE_SSH


def test_synchronous_failover_refuses_while_a_replica_is_missing():
    nodes = {"db1": dead(), "db2": replica(), "db3": dead()}
    with pytest.raises(PlanError, match="db3 did not report.*failover_accept_loss"):
        pg.failover_plan(nodes, old_primary="db1", synchronous=True)
    plan = pg.failover_plan(nodes, old_primary="db1", synchronous=True, accept_loss=True)
    assert plan["candidate"] == "db2" and plan["accepted_loss"]
    # Asynchronous mode promises nothing about acknowledged commits: no refusal.
    assert pg.failover_plan(nodes, old_primary="db1")["candidate"] == "db2"


def test_synchronous_failover_refuses_a_requested_replica_that_is_behind():
    nodes = {"db1": dead(), "db2": replica("0/5000000"), "db3": replica("0/5000100")}
    with pytest.raises(PlanError, match="db2 is behind db3"):
        pg.failover_plan(nodes, old_primary="db1", requested="db2", synchronous=True)


def test_failover_never_picks_the_old_primary_a_fenced_node_or_one_without_a_majority():
    # db1 fenced itself (read-only, so a "replica") and is as far as db2: db2 is chosen.
    nodes = {"db1": replica(fenced=True), "db2": replica(), "db3": replica(quorum=False, receive="0/5000100")}
    plan = pg.failover_plan(nodes, old_primary="db1")
    assert plan["candidate"] == "db2" and plan["old_primary"] == "db1"
    with pytest.raises(PlanError, match="no replica may be promoted"):
        pg.failover_plan({"db1": replica(fenced=True), "db2": replica(fenced=True)}, old_primary="db1")
    with pytest.raises(PlanError, match="would fence itself"):
        pg.failover_plan(nodes, old_primary="db1", requested="db3")


def test_a_rerun_after_an_interrupted_failover_repoints_the_replicas_left_behind():
    nodes = {"db1": dead(), "db2": primary(epoch=4), "db3": replica(upstream="198.18.3.11", epoch=3)}
    addresses = {"db1": "198.18.3.11", "db2": "198.18.3.12", "db3": "198.18.3.13"}
    plan = pg.failover_plan(nodes, old_primary="db1", addresses=addresses)
    assert (plan["action"], plan["repoint"], plan["epoch"]) == ("none", ["db3"], 4)
    # Interrupted after the early repoint: it streams from db2 but has not recorded epoch 4.
    nodes["db3"] = replica(upstream="198.18.3.12", epoch=3)
    assert pg.failover_plan(nodes, old_primary="db1", addresses=addresses)["repoint"] == ["db3"]
    nodes["db3"] = replica(upstream="198.18.3.12", epoch=4)
    assert pg.failover_plan(nodes, old_primary="db1", addresses=addresses)["repoint"] == []


def test_timeline_history_gives_each_fork_point():
    history = "1\t0/5000A0\tno recovery target specified\n\n2\t0/7000000\tno recovery target specified\n"
    assert pg.timeline_switchpoints(history) == {1: 0x5000A0, 2: 0x7000000}


def test_a_replica_past_the_fork_point_is_rewound_or_refused_never_just_repointed():
    local = dict(replica("0/5000100", streaming=False), timeline=1, host="db3")
    primary = {"system_identifier": SYSID, "address": "198.18.3.12", "fork_lsn": 0x5000000}
    assert pg.resync_action(local, primary, allow_rewind=True)[0] == "rewind"
    with pytest.raises(PlanError, match="past 0/5000000 where the primary's timeline forked off"):
        pg.resync_action(local, primary, allow_rewind=False)
    # Received past the fork (a dead primary's torn last record) but not replayed: it follows.
    torn = dict(replica("0/5000100", replay="0/4FFFF00", streaming=False), timeline=1, host="db3")
    assert pg.resync_action(torn, primary, allow_rewind=False)[0] == "repoint"


def test_the_newest_history_file_names_the_timeline_a_standby_follows(tmp_path):
    assert pg.newest_history_timeline(str(tmp_path / "missing")) is None
    assert pg.newest_history_timeline(str(tmp_path)) == 1
    for name in ("00000002.history", "0000000A.history", "000000030000000000000005", "0000000B.history.tmp"):
        (tmp_path / name).write_text("")
    assert pg.newest_history_timeline(str(tmp_path)) == 10
