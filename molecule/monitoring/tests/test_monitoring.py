"""Monitoring that wakes someone, on one converge: every target is scraped; a stopped
replica, a stopped WAL archiver and a killed primary each raise their alert, which reaches
the lab's webhook receiver and mailbox (the time from the failure to the delivery is
printed); failover.yml resolves "no writable primary" and its event and the VIP
transition arrive too; status.yml's JSON reports each failure and exits non-zero.

The tests run in order and share the cluster.
"""

import json
import pathlib
import sys
import time
import urllib.parse
import urllib.request

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from hastack_testlib import EPHEMERAL, playbook, psql, sh, wait_until

PROMETHEUS = "http://198.18.8.31:9090"
SINKS = "/var/lib/hastack-lab-sinks"
MONITOR = "mo-backup1"
FIGURES = {}

# One podman exec lists what the sinks received after a moment (file names are the
# receive time in ns), with each file's content.
LIST_SINKS = f"""
import json, os, sys
since = int(sys.argv[1])
out = []
for kind in ("webhook", "mail"):
    folder = os.path.join("{SINKS}", kind)
    for name in sorted(os.listdir(folder)):
        if not name.startswith(".") and int(name.split(".")[0]) > since:
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as handle:
                out.append({{"kind": kind, "ns": int(name.split(".")[0]), "body": handle.read()}})
print(json.dumps(out))
"""


def api(path, **params):
    url = PROMETHEUS + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]


def query(expr):
    return {r["metric"].get("instance"): float(r["value"][1]) for r in api("/api/v1/query", query=expr)["result"]}


def firing(alertname=None):
    return [a["labels"] for a in api("/api/v1/alerts")["alerts"]
            if a["state"] == "firing" and (alertname is None or a["labels"]["alertname"] == alertname)]


def received(since_ns):
    result = sh(MONITOR, f"python3 - {since_ns} <<'EOF'\n{LIST_SINKS}\nEOF")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def webhook_alerts(message):
    body = json.loads(message["body"])
    return [dict(alert["labels"], status=alert["status"]) for alert in body["alerts"]]


def wait_for_delivery(alertname, since_ns, timeout=60, status="firing", **labels):
    """Both sinks got `alertname` (with labels) in `status` after since_ns: the receive
    times, in ns, of the first webhook post and the first mail."""
    found = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(found) < 2:
        for message in received(since_ns):
            if message["kind"] == "webhook" and "webhook" not in found:
                if any(a["alertname"] == alertname and a["status"] == status
                       and all(a.get(k) == v for k, v in labels.items()) for a in webhook_alerts(message)):
                    found["webhook"] = message["ns"]
            elif message["kind"] == "mail" and "mail" not in found:
                subject = next((line for line in message["body"].splitlines() if line.startswith("Subject:")), "")
                if f"[{status.upper()}" in subject and alertname in subject:
                    found["mail"] = message["ns"]
        if len(found) < 2:
            time.sleep(0.5)
    assert len(found) == 2, f"{alertname} ({status}) reached only {sorted(found) or 'nothing'} in {timeout} s"
    return found


def record(name, started_ns, delivered):
    figures = {kind: round((ns - started_ns) / 1e9, 1) for kind, ns in delivered.items()}
    FIGURES[name] = figures
    print(f"\nMEASURED {name}: failure to alert delivered: webhook {figures['webhook']} s, mail {figures['mail']} s")
    (EPHEMERAL / "monitoring-figures.json").write_text(json.dumps(FIGURES, indent=2))


def status_json(tmp_path, name):
    result = playbook("status.yml", "-e", "status_format=json", "-e", f"status_output={tmp_path}/{name}.json")
    return result, json.loads((tmp_path / f"{name}.json").read_text())


def test_prometheus_scrapes_every_exporter():
    expected = {("node", "mo-db1"), ("node", "mo-db2"), ("node", "mo-backup1"), ("postgres", "mo-db1"),
                ("postgres", "mo-db2"), ("prometheus", "mo-backup1"), ("alertmanager", "mo-backup1")}

    def all_up():
        targets = api("/api/v1/targets")["activeTargets"]
        return {(t["labels"]["job"], t["labels"]["instance"]) for t in targets if t["health"] == "up"} == expected

    wait_until(all_up, timeout=60, message="every target up in Prometheus", interval=1)
    # hastack's own metrics and postgres_exporter's, as the converged cluster is.
    wait_until(lambda: query("hastack_pg_writable") == {"mo-db1": 1, "mo-db2": 0}, timeout=30,
               message="hastack_pg_writable", interval=1)
    assert query("hastack_pg_replica_streaming") == {"mo-db1": 0, "mo-db2": 1}
    assert query('hastack_vip_held{vip="db"}') == {"mo-db1": 1, "mo-db2": 0}
    assert query('hastack_pg_slot_active{slot="hastack_backup"}') == {"mo-db1": 1}
    assert query("hastack_wal_archiver_up") == {"mo-backup1": 1}
    assert query("pg_up") == {"mo-db1": 1, "mo-db2": 1}
    assert query("hastack_metrics_section_ok == 0") == {}


def test_a_healthy_cluster_raises_no_alert():
    wait_until(lambda: not [a for a in firing() if a.get("severity") != "info"], timeout=30,
               message="no alert firing on the converged cluster", interval=1)


def test_stopped_replica_raises_not_streaming_and_status_fails(tmp_path):
    started = time.time_ns()
    sh("mo-db2", "systemctl stop postgresql@15-main")
    try:
        delivered = wait_for_delivery("HastackReplicaNotStreaming", started, instance="mo-db2")
        record("replica stopped", started, delivered)
        result, status = status_json(tmp_path, "replica")
        assert result.returncode != 0 and not status["healthy"]
        assert any(p["what"] == "mo-db2 is stopped" for p in status["problems"]), status["problems"]
    finally:
        sh("mo-db2", "systemctl start postgresql@15-main")
    wait_until(lambda: not firing("HastackReplicaNotStreaming"), timeout=60, message="the alert resolved", interval=1)


def test_stopped_archiver_alert_reaches_webhook_and_mail(tmp_path):
    started = time.time_ns()
    sh(MONITOR, "systemctl stop hastack-pg-receivewal")
    try:
        delivered = wait_for_delivery("HastackWalArchiverDown", started, instance="mo-backup1")
        record("WAL archiver stopped", started, delivered)
        result, status = status_json(tmp_path, "archiver")
        assert result.returncode != 0 and not status["healthy"]
        assert any("archiver" in p["what"] for p in status["problems"]), status["problems"]
    finally:
        sh(MONITOR, "systemctl start hastack-pg-receivewal")
    wait_until(lambda: not firing("HastackWalArchiverDown"), timeout=60, message="the alert resolved", interval=1)
    # Resolved alerts are delivered too (send_resolved), so the on-call knows it is over.
    wait_for_delivery("HastackWalArchiverDown", started, status="resolved", instance="mo-backup1")


def test_killed_primary_raises_no_writable_primary_until_failover(tmp_path):
    started = time.time_ns()
    sh("mo-db1", "pkill -KILL -x postgres")
    delivered = wait_for_delivery("HastackNoWritablePrimary", started)
    record("primary killed", started, delivered)
    result, status = status_json(tmp_path, "primary")
    assert result.returncode != 0 and not status["healthy"]

    before_failover = time.time_ns()
    result = playbook("failover.yml")
    assert result.returncode == 0
    assert "FAILOVER DONE: mo-db2 is the primary" in result.stdout
    assert psql("mo-db2", "SELECT pg_is_in_recovery()") == "f"
    wait_until(lambda: not firing("HastackNoWritablePrimary"), timeout=60, message="the alert resolved", interval=1)
    wait_until(lambda: query("hastack_pg_writable == 1") == {"mo-db2": 1}, timeout=30,
               message="mo-db2 writable in Prometheus", interval=1)
    # The playbook's event and keepalived's VIP transition reached the on-call as well.
    wait_for_delivery("HastackFailover", before_failover, primary="mo-db2")
    wait_for_delivery("HastackVipTransition", before_failover, vip="db", state="MASTER", host="db2")
    # The old primary is fenced and does not stream: that stays an alert until resync.yml.
    wait_until(lambda: {a.get("instance") for a in firing("HastackReplicaNotStreaming")} == {"mo-db1"}, timeout=30,
               message="mo-db1 reported as not streaming", interval=1)
    assert query("hastack_pg_fenced") == {"mo-db1": 1, "mo-db2": 0}


@pytest.fixture(autouse=True, scope="module")
def print_figures():
    yield
    print("\nMEASURED (all):", json.dumps(FIGURES))
