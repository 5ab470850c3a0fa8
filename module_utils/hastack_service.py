# -*- coding: utf-8 -*-
# Copyright: hastack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stopping the local PostgreSQL within a bound, for pg_fence and pg_resync.

Debian's unit lets a stop take an hour (TimeoutStopSec=1h): a module that waits on it
unbounded hangs the playbook of an operator in an incident. Both modules stop through
stop_postgresql(): systemd's stop (a fast shutdown) for at most `timeout` seconds, then
the unit is killed; a postmaster started by hand gets pg_ctl fast, then immediate."""

from __future__ import annotations

import os

ACTIVE_STATES = ("active", "activating", "reloading", "deactivating")


def is_active(module, service):
    _, out, _ = module.run_command(["systemctl", "is-active", service])
    return out.strip() in ACTIVE_STATES


def postmaster_running(module, bin_dir, data):
    """A postmaster in this data directory, whoever started it (systemd or by hand)."""
    rc, _, _ = module.run_command(["runuser", "-u", "postgres", "--", os.path.join(bin_dir, "pg_ctl"),
                                   "status", "-D", data])
    return rc == 0


def stop_postgresql(module, service, bin_dir, data, timeout):
    """Stop PostgreSQL; (killed, still_running). killed: a clean stop did not finish within
    `timeout` seconds and the server was killed (its next start runs crash recovery)."""
    killed = False
    rc, _, _ = module.run_command(["timeout", str(timeout), "systemctl", "stop", service])
    if rc != 0 and is_active(module, service):
        module.run_command(["systemctl", "kill", "--signal=SIGKILL", service])
        module.run_command(["timeout", str(timeout), "systemctl", "stop", service])
        killed = True
    if postmaster_running(module, bin_dir, data):
        pg_ctl = ["runuser", "-u", "postgres", "--", os.path.join(bin_dir, "pg_ctl"), "-D", data, "-w",
                  "-t", str(timeout), "stop"]
        if module.run_command(pg_ctl + ["-m", "fast"])[0] != 0:
            module.run_command(pg_ctl + ["-m", "immediate"])
            killed = True
    return killed, is_active(module, service) or postmaster_running(module, bin_dir, data)
