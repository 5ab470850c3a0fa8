"""status.yml's judgement of the cluster (module_utils/hastack_status.py)."""

from module_utils.hastack_status import cluster_status, size_to_bytes, sqlite_status


def primary(**extra):
    return {"reachable": True, "role": "primary", "timeline": 2, "epoch": 2, "current_lsn": "0/5000000",
            "quorum": True, "replicas": [
                {"application_name": "db2", "state": "streaming", "sync_state": "quorum",
                 "replay_lag_seconds": 0.01},
                {"application_name": "db3", "state": "streaming", "sync_state": "quorum",
                 "replay_lag_seconds": 0.02}],
            "slots": [{"slot_name": "db2", "retained_bytes": 1024}, {"slot_name": "db3", "retained_bytes": 2048}],
            **extra}


def replica(replay="0/5000000", streaming=True, **extra):
    return {"reachable": True, "role": "replica", "timeline": 2, "epoch": 2, "replay_lsn": replay,
            "quorum": True, "wal_receiver": {"status": "streaming" if streaming else "stopping",
                                             "sender_host": "10.0.0.1"}, **extra}


VIPS = [{"name": "db", "address": "10.0.0.100/24", "db": True, "holders": ["db1"]},
        {"name": "app", "address": "10.0.0.101/24", "db": False, "holders": ["app1"]}]
OK_BACKUPS = {"backup1": ["OK: dumps: newest 2 h old", "OK: WAL archive: archiver streaming"]}


def healthy_cluster():
    return {"db1": primary(), "db2": replica(), "db3": replica()}


def test_a_healthy_cluster():
    status = cluster_status(healthy_cluster(), VIPS, OK_BACKUPS, {"app1": 200, "app2": 200})
    assert status["healthy"] and status["primary"] == "db1" and status["problems"] == []
    rows = {r["node"]: r for r in status["nodes"]}
    assert rows["db1"]["vips"] == ["db"] and rows["db2"]["sync_state"] == "quorum"
    assert rows["db3"]["slot_retained_bytes"] == 2048 and rows["db2"]["lag_bytes"] == 0


def critical(status):
    return [p["what"] for p in status["problems"] if p["severity"] == "critical"]


def test_no_primary_and_split_brain_are_critical():
    nodes = healthy_cluster()
    nodes["db1"] = {"reachable": False}
    status = cluster_status(nodes, VIPS)
    assert not status["healthy"]
    assert "no writable primary" in critical(status)
    assert any("db1 does not answer" in w for w in critical(status))
    nodes = healthy_cluster()
    nodes["db2"] = primary()
    assert any("split brain" in w for w in critical(cluster_status(nodes)))


def test_a_replica_not_streaming_is_critical_and_names_resync():
    nodes = healthy_cluster()
    nodes["db3"] = replica(streaming=False)
    status = cluster_status(nodes)
    problem = next(p for p in status["problems"] if "db3 is not streaming" in p["what"])
    assert problem["severity"] == "critical" and problem["do"] == "ansible-playbook resync.yml -e node=db3"


def test_lag_slot_retention_and_stale_epochs_are_warnings():
    nodes = healthy_cluster()
    nodes["db2"] = replica(replay="0/4000000")
    nodes["db1"]["slots"][1]["retained_bytes"] = 900 * 1024 ** 2
    nodes["db3"]["epoch"] = 1
    status = cluster_status(nodes, max_lag_bytes=1024, slot_keep_bytes=size_to_bytes("1GB"))
    assert status["healthy"]
    warnings = " | ".join(p["what"] for p in status["problems"])
    assert "db2 is 16777216 bytes behind" in warnings
    assert "near max_slot_wal_keep_size" in warnings
    assert "db3 has epoch 1, older than 2" in warnings


def test_the_db_vip_off_the_primary_or_on_two_hosts_is_critical():
    vips = [dict(VIPS[0], holders=["db2"])]
    assert any("not on the primary db1" in w for w in critical(cluster_status(healthy_cluster(), vips)))
    vips = [dict(VIPS[1], holders=["app1", "app2"])]
    assert any("held by app1, app2 at once" in w for w in critical(cluster_status(healthy_cluster(), vips)))
    vips = [dict(VIPS[1], holders=[])]
    assert any("held by no reachable host" in w for w in critical(cluster_status(healthy_cluster(), vips)))


def test_backup_and_app_answers():
    backups = {"backup1": ["WARNING: dumps: no backup yet", "CRITICAL: WAL archive: gap"]}
    status = cluster_status(healthy_cluster(), backups=backups, apps={"app1": 200, "app2": None})
    assert [p["severity"] for p in status["problems"]] == ["warning", "critical", "warning"]
    assert not cluster_status(healthy_cluster(), apps={"app1": 503, "app2": None})["healthy"]
    assert not cluster_status(healthy_cluster(), backups={"backup1": None})["healthy"]


def test_size_to_bytes():
    assert size_to_bytes("1GB") == 1024 ** 3 and size_to_bytes("512MB") == 512 * 1024 ** 2
    assert size_to_bytes("-1") is None and size_to_bytes("") is None and size_to_bytes("64") == 64 * 1024 ** 2


# ------------------------------------------------------------------ SQLite mode
def server(app="inactive", litestream="inactive", lag=None):
    return {"app": app, "litestream": litestream, "lag": lag}


def writer(lag_seconds=0.0):
    return server("active", "active", {"lag_seconds": lag_seconds, "replica_newest": "2026-11-28T09:00:00+00:00"})


APP_VIP = [{"name": "app", "address": "10.0.0.101/24", "db": False, "holders": ["app1"]}]


def test_sqlite_one_writer_replicating_under_the_vip_is_healthy():
    status = sqlite_status({"app1": writer(), "app2": server()}, APP_VIP, OK_BACKUPS, {"app1": 200, "app2": None})
    assert status["healthy"] and status["active"] == "app1" and status["problems"] == [], status["problems"]
    rows = {r["node"]: r for r in status["servers"]}
    assert rows["app1"]["role"] == "active" and rows["app1"]["vips"] == ["app"] and rows["app2"]["role"] == "standby"


def test_sqlite_no_writer_two_writers_and_no_replication_are_critical():
    gone = sqlite_status({"app1": None, "app2": server()}, APP_VIP)
    assert critical(gone) == ["no app server runs the app (app1 does not answer)"]
    assert "failover.yml" in gone["problems"][0]["do"]
    both = sqlite_status({"app1": writer(), "app2": server(litestream="active")}, APP_VIP)
    assert critical(both) == ["app1, app2 all run the app or Litestream: two writers of one database"]
    silent = sqlite_status({"app1": server(app="active"), "app2": server()}, APP_VIP)
    assert critical(silent) == ["app1 runs the app but not Litestream: nothing is replicated"]


def test_sqlite_lag_and_a_misplaced_vip():
    behind = sqlite_status({"app1": writer(42.0), "app2": server()}, APP_VIP, max_lag_seconds=10)
    assert behind["healthy"] and [p["what"] for p in behind["problems"]] == ["the replica is 42.0 s behind app1"]
    moved = sqlite_status({"app1": server(), "app2": writer()}, APP_VIP)
    assert critical(moved) == ["VIP app is on app1, but the app runs on app2"]
