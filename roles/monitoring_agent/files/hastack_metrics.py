#!/usr/bin/python3
"""hastack's own metrics for node_exporter's textfile collector.

Run by hastack-metrics.timer every few seconds; each run writes one file atomically
(rename), so node_exporter never serves half a file. What it reads, per host:
  db      this node's PostgreSQL through hastack's shared facts code (the same
          gather_node() that failover.yml's pg_node_facts uses), the cluster record
          (epoch), the fence marker, replication slots and max_slot_wal_keep_size;
  vips    which VIP addresses this host holds, keepalived's last state per VIP (the
          notify hook, hastack-event vip, records it) and whether keepalived runs;
  backup  the WAL archiver's unit, the archive folder (newest file, gaps), the backup
          runs' manifest.json and verify.json (roles/backup writes them);
  app     Litestream lag (hastack-litestream-lag) and /health URLs;
  certificates  when each certificate hastack installed ends (CA, PostgreSQL, HAProxy).
Configuration: /etc/hastack/metrics.json (roles/monitoring_agent).
A section that fails is reported as hastack_metrics_section_ok{section=...} 0 and its
error goes to the journal; the others are still written.
"""

import argparse
import contextlib
import datetime
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request

CONFIG = "/etc/hastack/metrics.json"
LIB = os.path.dirname(os.path.abspath(__file__))


# ------------------------------------------------------------------ exposition format
def escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(samples, helps):
    """Prometheus text format from [(name, {labels}, value)], one HELP/TYPE per name."""
    lines, seen = [], set()
    for name, labels, value in samples:
        if value is None:
            continue
        if name not in seen:
            seen.add(name)
            lines.append("# HELP %s %s" % (name, helps.get(name, name)))
            lines.append("# TYPE %s gauge" % name)
        label_text = ",".join('%s="%s"' % (k, escape(v)) for k, v in sorted(labels.items()))
        number = float(value)
        text = repr(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)
        lines.append("%s%s %s" % (name, "{%s}" % label_text if label_text else "", text))
    return "\n".join(lines) + "\n"


def write_atomic(path, text):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


HELP = {
    "hastack_pg_up": "1 when PostgreSQL answers on the local socket",
    "hastack_pg_writable": "1 when this node is a read-write primary",
    "hastack_pg_in_recovery": "1 when this node is a standby (in recovery)",
    "hastack_pg_timeline": "timeline this node is on",
    "hastack_pg_epoch": "cluster epoch recorded on this node (/var/lib/hastack/cluster.json)",
    "hastack_pg_recorded_primary": "the primary this node's cluster record names",
    "hastack_pg_fenced": "1 when the fence marker is in the data directory",
    "hastack_pg_replica_streaming": "1 when this standby's WAL receiver streams",
    "hastack_pg_replay_lag_bytes": "WAL received but not yet replayed on this standby",
    "hastack_pg_replay_lag_seconds": "age of the last replayed commit while WAL waits for replay, else 0",
    "hastack_pg_replicas_streaming": "walsenders streaming from this primary (standbys and the WAL archiver)",
    "hastack_pg_replica_replay_lag_bytes": "primary's view: bytes a standby has not replayed",
    "hastack_pg_slot_active": "1 when the replication slot is in use",
    "hastack_pg_slot_retained_bytes": "WAL the slot keeps on this node",
    "hastack_pg_max_slot_wal_keep_size_bytes": "max_slot_wal_keep_size (-1: unlimited)",
    "hastack_pg_quorum": "1 when this node's sentinel hears a majority",
    "hastack_vip_held": "1 when this host holds the VIP address",
    "hastack_keepalived_up": "1 when keepalived runs",
    "hastack_keepalived_state": "keepalived's last state for the VIP (notify hook)",
    "hastack_wal_archiver_up": "1 when the WAL archiver (pg_receivewal) unit is active",
    "hastack_wal_archiver_restarts": "times systemd restarted the WAL archiver",
    "hastack_wal_archive_newest_timestamp_seconds": "modification time of the newest file in the WAL archive",
    "hastack_wal_archive_gaps": "gaps in the WAL archive since the newest base backup",
    "hastack_backup_last_success_timestamp_seconds":
        "end of the newest successful backup (no backup yet: when the backup folder was made)",
    "hastack_backup_last_run_ok": "1 when the newest backup run succeeded",
    "hastack_backup_runs": "backup runs kept",
    "hastack_backup_verify_ok": "1 when the newest verification restored the backup correctly",
    "hastack_backup_last_verify_timestamp_seconds": "time of the newest verification",
    "hastack_base_backup_last_timestamp_seconds": "end of the newest base backup",
    "hastack_litestream_lag_seconds": "how far the Litestream replica is behind",
    "hastack_litestream_replica_ok": "1 when hastack-litestream-lag could read the replica",
    "hastack_http_up": "1 when the URL answered 200",
    "hastack_tls_certificate_not_after_timestamp_seconds": "End of validity of a certificate hastack installed",
    "hastack_http_duration_seconds": "time the URL took to answer",
    "hastack_metrics_section_ok": "1 when the collector read this section",
    "hastack_metrics_last_run_timestamp_seconds": "when the collector last ran",
}


# ------------------------------------------------------------------ PostgreSQL
def import_facts():
    """hastack's facts code as failover.yml uses it: module_utils/ ships beside this file as
    ansible/module_utils/ (only this process sees that path)."""
    sys.path.insert(0, LIB)
    from ansible.module_utils import hastack_facts  # noqa: PLC0415 - DB hosts only, from LIB

    return hastack_facts


def run_command(argv, environ_update=None):
    env = dict(os.environ, **(environ_update or {}))
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=10, check=False)  # noqa: S603
    return result.returncode, result.stdout, result.stderr


def db_samples(node, setting_bytes=None):
    """Samples of one node's facts (hastack_facts.gather_node)."""
    running = bool(node.get("running"))
    in_recovery = running and node.get("role") == "replica"
    writable = running and node.get("role") == "primary"
    receiver = node.get("wal_receiver") or {}
    streaming = in_recovery and receiver.get("status") == "streaming"
    backlog = node.get("replay_backlog_bytes") or 0
    delay = node.get("replay_delay_seconds")
    samples = [
        ("hastack_pg_up", {}, running),
        ("hastack_pg_writable", {}, writable),
        ("hastack_pg_in_recovery", {}, in_recovery),
        ("hastack_pg_timeline", {}, node.get("timeline") or node.get("history_timeline")),
        ("hastack_pg_epoch", {}, node.get("epoch", 0)),
        ("hastack_pg_fenced", {}, bool(node.get("fenced"))),
        ("hastack_pg_replica_streaming", {}, streaming),
        ("hastack_pg_replay_lag_bytes", {}, backlog if in_recovery else 0),
        # An idle primary sends nothing to replay: the last replay time only says how far
        # behind a standby is while WAL is waiting for replay.
        ("hastack_pg_replay_lag_seconds", {}, max(delay or 0, 0) if in_recovery and backlog > 0 else 0),
        ("hastack_pg_max_slot_wal_keep_size_bytes", {}, setting_bytes),
    ]
    if node.get("recorded_primary"):
        samples.append(("hastack_pg_recorded_primary", {"primary": node["recorded_primary"]}, 1))
    if node.get("quorum") is not None:
        samples.append(("hastack_pg_quorum", {}, bool(node["quorum"])))
    if writable:
        replicas = node.get("replicas") or []
        samples.append(("hastack_pg_replicas_streaming", {},
                        sum(1 for r in replicas if r.get("state") == "streaming")))
        for replica in replicas:
            samples.append(("hastack_pg_replica_replay_lag_bytes", {"replica": replica.get("application_name")},
                            replica.get("replay_lag_bytes")))
    for slot in node.get("slots") or []:
        labels = {"slot": slot["slot_name"]}
        samples.append(("hastack_pg_slot_active", labels, bool(slot.get("active"))))
        samples.append(("hastack_pg_slot_retained_bytes", labels, slot.get("retained_bytes")))
    return samples


def collect_db(cfg):
    facts = import_facts()
    node = facts.gather_node(run_command, cfg["data_directory"], cfg["bin_dir"], cfg["socket_dir"], cfg["port"],
                             connect_timeout=2)
    setting = None
    if node.get("running"):
        with facts.connect(facts.local_conninfo(cfg["socket_dir"], cfg["port"]), connect_timeout=2) as conn:
            setting = conn.execute(
                "SELECT pg_size_bytes(current_setting('max_slot_wal_keep_size'))").fetchone()[0]
    return db_samples(node, setting)


# ------------------------------------------------------------------ VIPs, keepalived
def held_addresses(ip_output):
    """Addresses from `ip -o -4 addr show`."""
    found = set()
    for line in ip_output.splitlines():
        parts = line.split()
        if "inet" in parts:
            found.add(parts[parts.index("inet") + 1].split("/")[0])
    return found


def unit_active(unit):
    return subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0  # noqa: S603,S607


def collect_vips(cfg):
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True,  # noqa: S607
                         check=True).stdout
    held = held_addresses(out)
    samples = [("hastack_keepalived_up", {}, unit_active("keepalived.service"))]
    for vip in cfg["vips"]:
        address = vip["address"].split("/")[0]
        samples.append(("hastack_vip_held", {"vip": vip["name"], "address": address}, address in held))
        with contextlib.suppress(OSError):
            with open(os.path.join(cfg["state_dir"], "hastack_%s.state" % vip["name"]), encoding="utf-8") as handle:
                state = handle.read().strip()
            if state:
                samples.append(("hastack_keepalived_state", {"vip": vip["name"], "state": state}, 1))
    return samples


# ------------------------------------------------------------------ backups
def iso_timestamp(text):
    return datetime.datetime.fromisoformat(text).timestamp()


def read_json(path):
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    return None


def dump_samples(dump_root):
    """Newest successful run, newest run's outcome, newest verification, from the folders
    roles/backup writes (one folder per run, manifest.json, verify.json)."""
    names = sorted((n for n in os.listdir(dump_root) if os.path.isdir(os.path.join(dump_root, n))), reverse=True) \
        if os.path.isdir(dump_root) else []
    manifests = [(n, read_json(os.path.join(dump_root, n, "manifest.json"))) for n in names]
    ok = [m for _, m in manifests if m and m.get("ok") and m.get("ended")]
    if ok:
        last_success = iso_timestamp(ok[0]["ended"])
    elif os.path.isdir(dump_root):
        # A fresh cluster: the backup is due from when the role made the folder.
        last_success = os.stat(dump_root).st_mtime
    else:
        last_success = 0
    samples = [("hastack_backup_last_success_timestamp_seconds", {}, last_success),
               ("hastack_backup_runs", {}, len(names))]
    if manifests:
        samples.append(("hastack_backup_last_run_ok", {}, bool(manifests[0][1] and manifests[0][1].get("ok"))))
    verified = [v for v in (read_json(os.path.join(dump_root, n, "verify.json")) for n in names) if v]
    if verified:
        newest = max(verified, key=lambda v: v.get("verified", ""))
        samples.append(("hastack_backup_verify_ok", {}, bool(newest.get("ok"))))
        samples.append(("hastack_backup_last_verify_timestamp_seconds", {}, iso_timestamp(newest["verified"])))
    return samples


def archive_samples(wal_root, base_root, backup_lib):
    names = sorted(os.listdir(wal_root)) if os.path.isdir(wal_root) else []
    newest = max((os.path.getmtime(os.path.join(wal_root, n)) for n in names), default=None)
    samples = [("hastack_wal_archive_newest_timestamp_seconds", {}, newest)]
    bases = sorted((n for n in os.listdir(base_root) if n.endswith(".json")), reverse=True) \
        if os.path.isdir(base_root) else []
    finished = read_json(os.path.join(base_root, bases[0])) if bases else None
    if finished and finished.get("finished"):
        samples.append(("hastack_base_backup_last_timestamp_seconds", {}, iso_timestamp(finished["finished"])))
    if backup_lib and os.path.exists(os.path.join(backup_lib, "hastack_wal.py")):
        sys.path.insert(0, backup_lib)
        import hastack_wal  # noqa: PLC0415 - roles/backup's own archive analysis, on the backup host only

        histories, start = {}, None
        for name in names:
            parsed = hastack_wal.parse_name(name)
            if parsed and parsed[0] == "history":
                with open(os.path.join(wal_root, name), encoding="utf-8") as handle:
                    histories[parsed[1]] = handle.read()
        if bases:
            with contextlib.suppress(OSError):
                with open(os.path.join(base_root, bases[0][:-5], "backup_label"), encoding="utf-8") as handle:
                    start = hastack_wal.base_backup_start(handle.read())
        samples.append(("hastack_wal_archive_gaps", {}, len(hastack_wal.analyse(names, histories, start)["problems"])))
    return samples


def collect_backup(cfg):
    backup = read_json(cfg["config"]) or {}
    state = subprocess.run(["systemctl", "show", cfg["archiver_unit"], "-p", "ActiveState,NRestarts"],  # noqa: S603,S607
                           capture_output=True, text=True, check=False).stdout
    props = dict(line.split("=", 1) for line in state.splitlines() if "=" in line)
    samples = [("hastack_wal_archiver_up", {}, props.get("ActiveState") == "active"),
               ("hastack_wal_archiver_restarts", {}, int(props.get("NRestarts") or 0))]
    samples += dump_samples(backup.get("dump_root", ""))
    samples += archive_samples(backup.get("wal_root", ""), backup.get("base_root", ""), cfg.get("lib"))
    return samples


# ------------------------------------------------------------------ app
def collect_litestream(cfg):
    command = shutil.which(cfg["litestream_lag_command"])
    if not command:
        return []
    out = subprocess.run([command], capture_output=True, text=True, timeout=60, check=False).stdout  # noqa: S603
    return litestream_samples(out)


def litestream_samples(out):
    """hastack-litestream-lag's JSON lines: lag, and whether the replica could be read at all
    (an error line, or no replica file yet, has no lag)."""
    samples = []
    for line in out.splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            labels = {"database": item.get("database", "?")}
            readable = "error" not in item and item.get("lag_seconds") is not None
            samples.append(("hastack_litestream_replica_ok", labels, readable))
            samples.append(("hastack_litestream_lag_seconds", labels, item.get("lag_seconds")))
    return samples


def collect_http(cfg):
    samples = []
    for check in cfg["http_checks"]:
        labels = {"check": check["name"], "url": check["url"]}
        started = time.monotonic()
        try:
            with urllib.request.urlopen(check["url"], timeout=check.get("timeout", 3)) as response:  # noqa: S310
                ok = response.status == 200
        except OSError:
            ok = False
        samples.append(("hastack_http_up", labels, ok))
        samples.append(("hastack_http_duration_seconds", labels, round(time.monotonic() - started, 3)))
    return samples


def certificate_not_after(path):
    """Unix time a PEM certificate (the first one in the file) stops being valid."""
    # The standard library's own parser (no openssl binary on every host): private, but
    # the same one the ssl module's tests use, unchanged since Python 3.4.
    decoded = ssl._ssl._test_decode_cert(path)
    return ssl.cert_time_to_seconds(decoded["notAfter"])


def collect_certificates(cfg):
    samples = []
    for path in cfg["paths"]:
        if os.path.exists(path):
            samples.append(("hastack_tls_certificate_not_after_timestamp_seconds", {"path": path},
                            certificate_not_after(path)))
    return samples


SECTIONS = {"db": collect_db, "vips": collect_vips, "backup": collect_backup, "litestream": collect_litestream,
            "http": collect_http, "certificates": collect_certificates}


def collect(cfg):
    samples = []
    for name, function in SECTIONS.items():
        section = cfg.get(name)
        if not section:
            continue
        try:
            samples += function(section)
            ok = True
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
            print("hastack-metrics: %s: %s" % (name, str(exc).strip() or type(exc).__name__), file=sys.stderr)
            ok = False
        samples.append(("hastack_metrics_section_ok", {"section": name}, ok))
    samples.append(("hastack_metrics_last_run_timestamp_seconds", {}, round(time.time(), 3)))
    return samples


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--stdout", action="store_true", help="print instead of writing the textfile")
    args = parser.parse_args(argv[1:])
    with open(args.config, encoding="utf-8") as handle:
        cfg = json.load(handle)
    text = render(collect(cfg), HELP)
    if args.stdout:
        sys.stdout.write(text)
    else:
        write_atomic(cfg["textfile"], text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
