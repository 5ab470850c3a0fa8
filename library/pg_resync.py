#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hastack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_resync
short_description: Make this node a streaming replica of a given PostgreSQL primary
description:
  - Nothing to do when the node already streams from C(primary_host).
  - A replica of the same cluster is pointed at the primary (primary_conninfo and slot in
    C(conf.d), reload or start).
  - A former primary (for example one fenced by failover.yml) is rewound with
    C(pg_rewind) when C(allow_rewind) is true; when rewind is impossible or off,
    C(pg_basebackup) takes over if C(basebackup) allows it, otherwise the module fails
    with the reason. A diverged former primary's data directory is moved aside, never
    deleted; only an empty or a known replica's data directory is overwritten.
  - C(primary_conninfo) always names the replication role (pg_rewind -R would write the
    rewind user), with the password read from a passfile so no secret is in a config file.
  - Creates this node's physical replication slot on the primary before PostgreSQL starts
    (otherwise the first connection fails and the WAL receiver waits 5 s to retry), then
    waits until the node streams.
  - Supports check mode (reports the action it would take).
options:
  primary_host:
    description: Address of the primary to follow.
    type: str
    required: true
  primary_port:
    description: Port of the primary.
    type: int
    default: 5432
  node_name:
    description: This node's name; its application_name (synchronous_standby_names) and slot.
    type: str
    required: true
  slot:
    description: Physical replication slot on the primary; derived from C(node_name) by default.
    type: str
  replication_user:
    description: Role with REPLICATION used for streaming and pg_basebackup.
    type: str
    default: replicator
  rewind_user:
    description: Role with the pg_rewind function grants and pg_checkpoint.
    type: str
    default: hastack_rewind
  sslmode:
    description:
      - libpq sslmode of every connection to the primary (streaming, pg_rewind, pg_basebackup).
      - C(verify-full) checks the primary's certificate against C(sslrootcert) and its name or
        address against C(primary_host), so another server on that address is refused.
    type: str
    choices: [disable, prefer, require, verify-ca, verify-full]
    default: prefer
  sslrootcert:
    description: CA certificate the primary's certificate is verified against (readable by postgres).
    type: path
  passfile:
    description: libpq password file (owned by postgres, mode 0600) holding both roles' passwords.
    type: path
    default: /var/lib/postgresql/.pgpass
  data_directory:
    description: The cluster's data directory.
    type: path
    required: true
  config_dir:
    description: The cluster's configuration directory (Debian keeps it outside the data directory).
    type: path
    required: true
  bin_dir:
    description: Directory of the PostgreSQL server binaries.
    type: path
    required: true
  service:
    description: systemd unit of the cluster.
    type: str
    required: true
  port:
    description: Port of the local PostgreSQL.
    type: int
    default: 5432
  socket_dir:
    description: Directory of the local Unix socket.
    type: path
    default: /var/run/postgresql
  allow_rewind:
    description: Rewind a former primary with pg_rewind.
    type: bool
    default: true
  basebackup:
    description:
      - When a fresh copy with pg_basebackup is allowed.
      - C(never) fails instead. C(safe) copies only into an empty data directory or over a
        known replica. C(always) also replaces a former primary's data directory (moved aside).
    type: str
    choices: [never, safe, always]
    default: safe
  timeout:
    description:
      - Seconds to wait for the node to stream after it starts. The module returns as soon as
        it streams, while systemd may still run the unit's start (Debian's pg_ctlcluster
        probes a running server for another ~2 s).
    type: int
    default: 60
  repoint_timeout:
    description:
      - Seconds a repointed running replica may take to stream before rewind is tried (a
        stopped one gets C(timeout), its start included).
    type: int
    default: 10
  stop_timeout:
    description:
      - Seconds the stop before a rewind or a copy may take before PostgreSQL is killed (a
        warning says so). Whatever it held is on disk or replaced by the primary's copy next.
    type: int
    default: 60
  epoch:
    description: Cluster epoch to record with C(primary_name) on this node.
    type: int
  primary_name:
    description: Inventory name of the primary, recorded with C(epoch).
    type: str
requirements:
  - psycopg >= 3.1 on the managed host (Debian package python3-psycopg)
  - PostgreSQL 15 or later (pg_rewind --config-file)
author: hastack
"""

EXAMPLES = r"""
# The one caller is roles/postgresql/tasks/rejoin.yml; the paths are the role's variables.
- name: Rejoin the old primary as a replica
  pg_resync:
    primary_host: 198.18.1.12
    node_name: "{{ inventory_hostname }}"
    data_directory: "{{ postgresql_data_directory }}"
    config_dir: "{{ postgresql_config_dir }}"
    bin_dir: "{{ postgresql_bin_dir }}"
    service: "{{ postgresql_service }}"
    allow_rewind: true
    basebackup: always
"""

RETURN = r"""
action:
  description: What was done, in order of attempts (none, repoint, rewind, basebackup).
  returned: always
  type: str
  sample: rewind
attempts:
  description: Each method tried, with its outcome.
  returned: always
  type: list
reason:
  description: Why this action was chosen.
  returned: always
  type: str
moved_aside:
  description: Where a former primary's data directory was moved, if it was.
  returned: when a data directory was moved
  type: str
seconds:
  description: Time each step took.
  returned: always
  type: dict
total_seconds:
  description: Time the whole resync took on the node.
  returned: always
  type: float
"""

import os
import pwd
import shutil
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.hastack_module import local_postgres_argument_spec, tls_client_argument_spec
from ansible.module_utils.hastack_facts import (
    connect,
    gather_node,
    HAS_PSYCOPG,
    local_conninfo,
    PSYCOPG_IMPORT_ERROR,
    query_one,
    replication_command,
)
from ansible.module_utils.hastack_lsn import slot_name, timeline_switchpoints
from ansible.module_utils.hastack_service import stop_postgresql
from ansible.module_utils.hastack_plan import BASEBACKUP_ALWAYS, BASEBACKUP_NEVER, PlanError, resync_action
from ansible.module_utils.hastack_state import FENCE_MARKER, clone_marker, record_primary, write_owned

REPLICATION_CONF = "90-hastack-replication.conf"


class ResyncError(Exception):
    pass


class Resync:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.slot = self.p["slot"] or slot_name(self.p["node_name"])
        self.seconds = {}
        self.attempts = []
        self.postgres = pwd.getpwnam("postgres")

    # ------------------------------------------------------------ helpers
    def timed(self, name, func, *args):
        start = time.monotonic()
        try:
            return func(*args)
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0) + time.monotonic() - start, 3)

    def run(self, cmd, as_postgres=False):
        if as_postgres:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return self.module.run_command(cmd, environ_update={"LC_ALL": "C"})

    def ssl_params(self):
        params = {"sslmode": self.p["sslmode"]}
        if self.p["sslrootcert"]:
            params["sslrootcert"] = self.p["sslrootcert"]
        return params

    def conninfo(self, user, dbname=None, application_name=None):
        parts = ["host=%s" % self.p["primary_host"], "port=%d" % self.p["primary_port"], "user=%s" % user,
                 "passfile=%s" % self.p["passfile"], "connect_timeout=3"]
        parts += ["%s=%s" % item for item in sorted(self.ssl_params().items())]
        if dbname:
            parts.append("dbname=%s" % dbname)
        if application_name:
            parts.append("application_name=%s" % application_name)
        return " ".join(parts)

    def primary_params(self, user, **extra):
        params = {"host": self.p["primary_host"], "port": self.p["primary_port"], "user": user,
                  "passfile": self.p["passfile"]}
        params.update(self.ssl_params())
        params.update(extra)
        return params

    def local_node(self):
        node = gather_node(self.module.run_command, self.p["data_directory"], self.p["bin_dir"],
                           self.p["socket_dir"], self.p["port"])
        node["host"] = self.p["node_name"]
        return node

    def stop(self):
        killed, running = stop_postgresql(self.module, self.p["service"], self.p["bin_dir"],
                                          self.p["data_directory"], self.p["stop_timeout"])
        if running:
            raise ResyncError("could not stop %s: no clean stop within %d s, and killing it did not stop it "
                              "either (systemctl status %s; journalctl -u %s). Stop it by hand and rerun "
                              "resync.yml -e node=%s."
                              % (self.p["service"], self.p["stop_timeout"], self.p["service"], self.p["service"],
                                 self.p["node_name"]))
        if killed:
            self.module.warn("%s did not stop cleanly within %d s and was killed"
                             % (self.p["service"], self.p["stop_timeout"]))

    def service(self, verb):
        rc, out, err = self.run(["systemctl", verb, self.p["service"]])
        if rc != 0:
            raise ResyncError("systemctl %s %s failed: %s" % (verb, self.p["service"], (err or out).strip()))


    # ------------------------------------------------------------ primary side
    def identify_primary(self):
        try:
            with connect(self.primary_params(self.p["replication_user"], replication="true", dbname="replication"),
                         autocommit=True) as conn:
                return replication_command(conn, "IDENTIFY_SYSTEM")[0]
        except Exception as exc:
            raise ResyncError(
                "cannot open a replication connection to the primary %s:%d as %s: %s. Check that the primary "
                "runs, that its pg_hba.conf allows replication from this host, that %s holds the password, "
                "and (sslmode=%s) that its certificate is issued by %s for %s (site.yml re-issues it)."
                % (self.p["primary_host"], self.p["primary_port"], self.p["replication_user"],
                   str(exc).strip(), self.p["passfile"], self.p["sslmode"], self.p["sslrootcert"] or "the CA",
                   self.p["primary_host"])) from exc

    def fork_lsn(self, local, primary_timeline):
        """Where the primary's history left the local node's timeline (None: same timeline)."""
        timeline = max(int(local.get("timeline") or 0), int(local.get("history_timeline") or 0))
        if not timeline or timeline >= primary_timeline:
            return None
        with connect(self.primary_params(self.p["replication_user"], replication="true", dbname="replication"),
                     autocommit=True) as conn:
            history = replication_command(conn, "TIMELINE_HISTORY %d" % primary_timeline)[0]["content"]
        return timeline_switchpoints(history).get(timeline)

    def ensure_slot(self):
        with connect(self.primary_params(self.p["replication_user"], replication="true", dbname="replication"),
                     autocommit=True) as conn:
            try:
                replication_command(conn, 'CREATE_REPLICATION_SLOT "%s" PHYSICAL RESERVE_WAL' % self.slot)
                return True
            except RuntimeError as exc:
                if "already exists" in str(exc):
                    return False
                raise ResyncError("cannot create slot %s on the primary: %s" % (self.slot, exc)) from exc

    def checkpoint_primary(self):
        # Right after a promotion the primary's control file may still show the old
        # timeline; pg_rewind then decides wrongly and the rewound node cannot start.
        try:
            with connect(self.primary_params(self.p["rewind_user"], dbname="postgres")) as conn:
                conn.execute("CHECKPOINT")
        except Exception as exc:  # noqa: BLE001 - a failed CHECKPOINT only warns, the resync goes on
            self.module.warn("CHECKPOINT on the primary failed (%s); pg_rewind may pick an old timeline" % exc)

    # ------------------------------------------------------------ local side
    def replication_conf(self):
        return ("# Managed by hastack (pg_resync): this node replicates from %s.\n"
                "primary_conninfo = '%s keepalives_idle=5 keepalives_interval=1 keepalives_count=3'\n"
                "primary_slot_name = '%s'\n"
                "recovery_target_timeline = 'latest'\n"
                % (self.p["primary_host"],
                   self.conninfo(self.p["replication_user"], application_name=slot_name(self.p["node_name"])),
                   self.slot))

    def conf_path(self):
        return os.path.join(self.p["config_dir"], "conf.d", REPLICATION_CONF)

    def configure_standby(self):
        changed = write_owned(self.conf_path(), self.replication_conf())
        changed |= write_owned(os.path.join(self.p["data_directory"], "standby.signal"), "", 0o600)
        marker = os.path.join(self.p["data_directory"], FENCE_MARKER)
        if os.path.exists(marker):
            os.unlink(marker)
            changed = True
        return changed

    def streaming(self):
        try:
            with connect(local_conninfo(self.p["socket_dir"], self.p["port"]), connect_timeout=2) as conn:
                row = query_one(conn, "SELECT status, sender_host FROM pg_stat_wal_receiver")
        except Exception:  # noqa: BLE001 - any failure means "not streaming now"
            return None
        return row

    def wait_streaming(self, timeout, starting=None):
        """(streams, last wal receiver row). starting: a `systemctl start` still running,
        whose failure ends the wait at once."""
        deadline = time.monotonic() + timeout
        row = None
        while time.monotonic() < deadline:
            row = self.streaming()
            if row and row["status"] == "streaming" and row["sender_host"] == self.p["primary_host"]:
                return True, row
            if starting is not None and starting.poll():
                raise ResyncError("systemctl start %s failed: %s. Look at journalctl -u %s on this host."
                                  % (self.p["service"], starting.communicate()[1].strip(), self.p["service"]))
            time.sleep(0.05)
        return False, row

    def start(self):
        """Start PostgreSQL without waiting for systemd's start to return (wait_streaming
        waits for what counts): Debian's pg_ctlcluster sleeps ~2 s probing a server that is
        already up (0.5 s, then three good connections 0.5 s apart). The job finishes on
        its own; the unit shows "activating" meanwhile."""
        return subprocess.Popen(["systemctl", "start", self.p["service"]],  # noqa: S603,S607 - fixed argv
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def drop_stale_local_slots(self):
        # Slots this node kept from its days as a primary would retain WAL here for nothing.
        dropped = []
        with connect(local_conninfo(self.p["socket_dir"], self.p["port"])) as conn:
            rows = conn.execute("SELECT slot_name FROM pg_replication_slots "
                                "WHERE slot_type = 'physical' AND NOT active").fetchall()
            for (name,) in rows:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                dropped.append(name)
        return dropped

    # ------------------------------------------------------------ methods
    def repoint(self, running):
        self.timed("slot", self.ensure_slot)
        self.configure_standby()
        starting = None
        if running:
            self.timed("reload", self.service, "reload")
        else:
            starting = self.timed("start", self.start)
        # A stopped node's start (crash recovery included) counts against the wait.
        timeout = self.p["repoint_timeout"] if running else self.p["timeout"]
        ok, row = self.timed("wait_streaming", self.wait_streaming, timeout, starting)
        self.attempts.append({"method": "repoint", "ok": ok, "wal_receiver": row})
        return ok

    def rewind(self):
        self.timed("stop", self.stop)
        for name in ("standby.signal", "recovery.signal"):
            path = os.path.join(self.p["data_directory"], name)
            if os.path.exists(path):
                os.unlink(path)
        self.timed("checkpoint_primary", self.checkpoint_primary)
        cmd = [os.path.join(self.p["bin_dir"], "pg_rewind"), "--target-pgdata", self.p["data_directory"],
               "--source-server", self.conninfo(self.p["rewind_user"], dbname="postgres"),
               "--config-file", os.path.join(self.p["config_dir"], "postgresql.conf")]
        rc, out, err = self.timed("pg_rewind", self.run, cmd, True)
        self.attempts.append({"method": "rewind", "ok": rc == 0, "output": (out + err).strip()[-2000:]})
        if rc != 0:
            # pg_rewind needed the signal files gone; a failed rewind must not leave a
            # former primary that starts writable.
            self.fence_local("pg_rewind failed")
        return rc == 0

    def fence_local(self, reason):
        data = self.p["data_directory"]
        write_owned(os.path.join(data, "standby.signal"), "", 0o600)
        marker = os.path.join(data, FENCE_MARKER)
        if not os.path.exists(marker):
            write_owned(marker, '{"by": "pg_resync", "reason": "%s"}\n' % reason, 0o600)

    def basebackup(self, local):
        self.timed("stop", self.stop)
        data = self.p["data_directory"]
        moved = None
        marker = clone_marker(data)
        # A replica's copy, or a clone cut short, is only ever a copy of the primary's data;
        # anything else may be the only copy of something: moved aside, never deleted.
        disposable = local.get("cloning") or (local.get("standby_signal") and not local.get("fenced"))
        if local.get("has_data") and not disposable:
            moved = "%s.hastack-old-%s" % (data.rstrip("/"), time.strftime("%Y%m%dT%H%M%S"))
            os.rename(data, moved)
        elif os.path.isdir(data):
            shutil.rmtree(data)
        write_owned(marker, time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()), 0o600, owner="root")
        os.mkdir(data, 0o700)
        os.chown(data, self.postgres.pw_uid, self.postgres.pw_gid)
        self.timed("slot", self.ensure_slot)
        cmd = [os.path.join(self.p["bin_dir"], "pg_basebackup"), "--pgdata", data, "--wal-method=stream",
               "--checkpoint=fast", "--slot", self.slot, "--no-password",
               "--dbname", self.conninfo(self.p["replication_user"], application_name=slot_name(self.p["node_name"]))]
        rc, out, err = self.timed("pg_basebackup", self.run, cmd, True)
        self.attempts.append({"method": "basebackup", "ok": rc == 0, "output": (out + err).strip()[-2000:]})
        if rc != 0:
            raise ResyncError("pg_basebackup from %s failed: %s. Rerun resync.yml -e node=%s: it clones again."
                              % (self.p["primary_host"], (err or out).strip(), self.p["node_name"]))
        os.unlink(marker)
        return moved

    def start_and_wait(self):
        self.timed("slot", self.ensure_slot)
        self.configure_standby()
        starting = self.timed("start", self.start)
        ok, row = self.timed("wait_streaming", self.wait_streaming, self.p["timeout"], starting)
        if not ok:
            raise ResyncError(
                "PostgreSQL started but does not stream from %s after %d s (wal receiver: %s). Look at "
                "journalctl -u %s on this host and at pg_stat_replication on the primary."
                % (self.p["primary_host"], self.p["timeout"], row, self.p["service"]))

    # ------------------------------------------------------------ driver
    def execute(self):
        ident = self.timed("identify_primary", self.identify_primary)
        local = self.timed("local_facts", self.local_node)
        primary = {"system_identifier": ident["systemid"], "address": self.p["primary_host"]}
        if local.get("has_data") and str(local.get("system_identifier")) == str(ident["systemid"]):
            primary["fork_lsn"] = self.timed("timeline_history", self.fork_lsn, local, int(ident["timeline"]))
        action, reason = resync_action(local, primary, self.p["allow_rewind"], self.p["basebackup"])
        if action == "none":
            try:
                with open(self.conf_path(), encoding="utf-8") as handle:
                    current = handle.read()
            except OSError:
                current = None
            if current != self.replication_conf():
                action, reason = "repoint", "streams from the primary but its replication settings differ"
        result = {"action": action, "reason": reason, "attempts": self.attempts, "seconds": self.seconds,
                  "primary_timeline": int(ident["timeline"])}
        if action == "none":
            result["changed"] = self.record(dry=self.module.check_mode)
            return result
        if self.module.check_mode:
            result["changed"] = True
            return result
        done = []
        if action == "repoint":
            done.append("repoint")
            if self.repoint(local.get("running")):
                return self.finish(result, done)
            if not self.p["allow_rewind"]:
                raise ResyncError("repointed to %s but it does not stream within %d s and allow_rewind is off: "
                                  "its timeline may have diverged. Run resync.yml -e node=%s to rewind it."
                                  % (self.p["primary_host"],
                                     self.p["repoint_timeout"] if local.get("running") else self.p["timeout"],
                                     self.p["node_name"]))
            action = "rewind"
        if action == "rewind":
            done.append("rewind")
            if self.rewind():
                self.start_and_wait()
                return self.finish(result, done)
            if self.p["basebackup"] != BASEBACKUP_ALWAYS:
                raise ResyncError("pg_rewind failed and resync_basebackup=%s forbids a fresh copy: %s. Rerun "
                                  "with -e resync_basebackup=always to clone it (its data directory is moved "
                                  "aside, not deleted)." % (self.p["basebackup"], self.attempts[-1]["output"]))
            local = self.local_node()
            local["fenced"] = True  # a failed rewind leaves a former primary: keep its data
            action = "basebackup"
        if action == "basebackup":
            if self.p["basebackup"] == BASEBACKUP_NEVER:
                raise ResyncError("a fresh copy is needed but resync_basebackup=never")
            done.append("basebackup")
            moved = self.basebackup(local)
            if moved:
                result["moved_aside"] = moved
            self.start_and_wait()
        return self.finish(result, done)

    def finish(self, result, done):
        result["action"] = " -> ".join(done)
        result["dropped_local_slots"] = self.drop_stale_local_slots()
        self.record()
        result["changed"] = True
        return result

    def record(self, dry=False):
        return record_primary(self.p["epoch"], self.p["primary_name"], dry=dry, local=self.p["node_name"])


def main():
    module = AnsibleModule(
        argument_spec=local_postgres_argument_spec(
            "data_directory", "config_dir", "bin_dir", "service", "port", "socket_dir", **tls_client_argument_spec(),
            primary_host=dict(type="str", required=True),
            primary_port=dict(type="int", default=5432),
            node_name=dict(type="str", required=True),
            slot=dict(type="str"),
            replication_user=dict(type="str", default="replicator"),
            rewind_user=dict(type="str", default="hastack_rewind"),
            passfile=dict(type="path", default="/var/lib/postgresql/.pgpass"),
            allow_rewind=dict(type="bool", default=True),
            basebackup=dict(type="str", default="safe", choices=["never", "safe", "always"]),
            timeout=dict(type="int", default=60),
            repoint_timeout=dict(type="int", default=10),
            stop_timeout=dict(type="int", default=60),
            epoch=dict(type="int"),
            primary_name=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    if not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg (Debian: python3-psycopg)"),
                         exception=str(PSYCOPG_IMPORT_ERROR))
    resync = Resync(module)
    started = time.monotonic()
    try:
        result = resync.execute()
        result["total_seconds"] = round(time.monotonic() - started, 3)
    except PlanError as exc:
        module.fail_json(msg="%s: %s" % (module.params["node_name"], exc), attempts=resync.attempts,
                         seconds=resync.seconds)
    except ResyncError as exc:
        module.fail_json(msg="%s: %s" % (module.params["node_name"], exc), attempts=resync.attempts,
                         seconds=resync.seconds)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
