#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hastack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vip_probe
short_description: Wait until writes succeed through the DB VIP and the app answers through the app VIP
description:
  - Connects to C(db_host) (the DB VIP) again and again until a transaction that needs a
    writable primary commits (C(SELECT txid_current())), optionally only when the node
    that answered is C(expect_node) (its C(hastack.node) setting).
  - Then, when C(http_url) is given, requests it until it answers 200.
  - Reports when each succeeded, in seconds after C(started_at) (a Unix time, e.g. when
    the playbook started), so a failover can report its time to the first write.
  - Makes no change to the system; the write is an empty transaction. Runs in check mode.
options:
  db_host:
    description: Address to connect to, normally the DB VIP.
    type: str
    required: true
  db_port:
    description: Port.
    type: int
    default: 5432
  db_name:
    description: Database.
    type: str
    required: true
  db_user:
    description: User.
    type: str
    required: true
  db_password:
    description: Password.
    type: str
    required: true
  sslmode:
    description: libpq sslmode; C(verify-full) checks the server's certificate and its address.
    type: str
    choices: [disable, prefer, require, verify-ca, verify-full]
    default: prefer
  sslrootcert:
    description: CA certificate the server's certificate is verified against.
    type: path
  expect_node:
    description: Only count a write answered by this node (C(current_setting('hastack.node'))).
    type: str
  http_url:
    description: URL that must answer 200 afterwards, e.g. the app's health URL through the app VIP.
    type: str
  started_at:
    description: Unix time the reported seconds are counted from; default the module's start.
    type: float
  timeout:
    description: Seconds to wait for each of the write and the HTTP answer.
    type: float
    default: 30
  interval:
    description: Seconds between attempts.
    type: float
    default: 0.05
requirements:
  - psycopg >= 3.1 on the host that probes (Debian package python3-psycopg)
author: hastack
"""

EXAMPLES = r"""
- name: Wait for the first write through the VIPs
  vip_probe:
    db_host: "{{ hastack_db_vip }}"
    db_name: hastack
    db_user: hastack
    db_password: "{{ postgresql_app_password }}"
    expect_node: "{{ plan.candidate }}"
    http_url: http://{{ hastack_app_vip }}:8000/health
    started_at: "{{ failover_t0 }}"
  delegate_to: "{{ groups['app'] | first }}"
  run_once: true
"""

RETURN = r"""
write_seconds:
  description: Seconds from C(started_at) to the first committed write through C(db_host).
  returned: success
  type: float
node:
  description: The node that answered the write.
  returned: success
  type: str
http_seconds:
  description: Seconds from C(started_at) to the first 200 from C(http_url).
  returned: when http_url is given
  type: float
attempts:
  description: Connection attempts until the write succeeded.
  returned: always
  type: int
"""

import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.hastack_facts import HAS_PSYCOPG, psycopg, PSYCOPG_IMPORT_ERROR
from ansible.module_utils.hastack_module import tls_client_argument_spec

WRITE_SQL = "SELECT txid_current(), current_setting('hastack.node', true)"


def try_write(p):
    """The node that committed a write through db_host, or raise."""
    with psycopg.connect(host=p["db_host"], port=p["db_port"], dbname=p["db_name"], user=p["db_user"],
                         password=p["db_password"], connect_timeout=1, sslmode=p["sslmode"],
                         sslrootcert=p["sslrootcert"], application_name="hastack-vip-probe") as conn:
        node = conn.execute(WRITE_SQL).fetchone()[1]
        conn.commit()
    return node


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - the operator's own URL
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def main():
    module = AnsibleModule(
        argument_spec=tls_client_argument_spec(
            db_host=dict(type="str", required=True),
            db_port=dict(type="int", default=5432),
            db_name=dict(type="str", required=True),
            db_user=dict(type="str", required=True),
            db_password=dict(type="str", required=True, no_log=True),
            expect_node=dict(type="str"),
            http_url=dict(type="str"),
            started_at=dict(type="float"),
            timeout=dict(type="float", default=30),
            interval=dict(type="float", default=0.05),
        ),
        supports_check_mode=True,
    )
    if not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=str(PSYCOPG_IMPORT_ERROR))
    p = module.params
    started = p["started_at"] or time.time()
    result = {"changed": False, "attempts": 0}

    deadline, last = time.monotonic() + p["timeout"], "no attempt"
    while True:
        result["attempts"] += 1
        try:
            node = try_write(p)
            if not p["expect_node"] or node == p["expect_node"]:
                result.update(node=node, write_seconds=round(time.time() - started, 3))
                break
            last = "%s answered, not %s" % (node, p["expect_node"])
        except (psycopg.Error, OSError) as exc:
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if time.monotonic() > deadline:
            module.fail_json(msg="no write succeeded through %s:%s within %.0f s (last: %s). Check which node "
                                 "holds the DB VIP (ip -o addr on the database hosts) and the keepalived log "
                                 "(journalctl -t hastack-keepalived -u keepalived)." % (
                                     p["db_host"], p["db_port"], p["timeout"], last), **result)
        time.sleep(p["interval"])

    if p["http_url"]:
        deadline, status = time.monotonic() + p["timeout"], None
        while status != 200:
            try:
                status = http_status(p["http_url"])
            except (OSError, ValueError) as exc:
                status = str(exc)
            if status == 200:
                break
            if time.monotonic() > deadline:
                module.fail_json(msg="%s did not answer 200 within %.0f s (last: %s). Check the app servers "
                                     "(systemctl status, journalctl -u) and which one holds the app VIP."
                                 % (p["http_url"], p["timeout"], status), **result)
            time.sleep(p["interval"])
        result.update(http_seconds=round(time.time() - started, 3), http_status=status)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
