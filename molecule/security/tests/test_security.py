"""The security baseline: verified TLS on every PostgreSQL connection, the firewall
from the inventory, secrets rotated under load.

The controller (198.18.11.1, trusted by the scenario's firewall) runs the clients and
verifies the servers against the scenario's CA; sec-out is a machine on the same network
that the inventory does not know. The tests run in order and share the hosts.
"""

import pathlib
import re
import secrets
import sys
import threading
import time

import psycopg
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from hastack_testlib import EPHEMERAL, ROOT, HttpsClient, holds, password, playbook, psql, recap_changed, sh, wait_until

DB = {"sec-db1": "198.18.11.11", "sec-db2": "198.18.11.12"}
APPS = {"sec-app1": "198.18.11.21", "sec-app2": "198.18.11.22"}
DB_VIP, APP_VIP = "198.18.11.100", "198.18.11.101"
OUTSIDER = "sec-out"
CA = EPHEMERAL / "ca" / "ca.crt"


def connect(host, sslmode="verify-full", user="hastack", secret=None, **extra):
    return psycopg.connect(host=host, dbname="hastack", user=user,
                           password=secret if secret is not None else password("app"),
                           sslmode=sslmode, sslrootcert=str(CA), connect_timeout=5, autocommit=True, **extra)


def answering_node(host):
    with connect(host) as conn:
        return conn.execute("SELECT current_setting('hastack.node')").fetchone()[0]


def primary():
    return next(node for node in DB if psql(node, "SELECT pg_is_in_recovery()", db="postgres") == "f")


def replica():
    return next(node for node in DB if node != primary())


def streaming(on_primary):
    return psql(on_primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                db="postgres") == "1"


def remote_connections_without_ssl(node):
    """Client connections to node from another address that are not encrypted."""
    return psql(node, "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                      "WHERE a.client_addr IS NOT NULL AND a.client_addr <> '127.0.0.1' AND NOT s.ssl",
                db="postgres")


def test_every_remote_postgresql_connection_is_tls_and_verifies():
    # The app servers (pooled, through the DB VIP) and the replica are connected now.
    node = primary()
    wait_until(lambda: streaming(node), 30, "the replica streaming")
    clients = psql(node, "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                         "WHERE a.client_addr IS NOT NULL AND s.ssl AND s.version IN ('TLSv1.2', 'TLSv1.3')",
                   db="postgres")
    assert int(clients) >= 2, "the replica and at least one app connection"
    assert remote_connections_without_ssl(node) == "0"
    # The replica's walreceiver verifies the primary (sslmode=verify-full against the CA).
    conninfo = psql(replica(), "SELECT conninfo FROM pg_stat_wal_receiver", db="postgres")
    assert "sslmode=verify-full" in conninfo and "sslrootcert=" in conninfo
    # A verifying client through the DB VIP: the VIP's address is in the certificate.
    assert answering_node(DB_VIP) == node
    # No plain (non-TLS) connection from another host is accepted, even with the password.
    with pytest.raises(psycopg.OperationalError, match="no encryption|pg_hba.conf"):
        connect(DB_VIP, sslmode="disable")
    # pg_hba: only loopback may go without TLS.
    hba = sh(node, "grep -Ev '^\\s*(#|$)' /etc/postgresql/15/main/pg_hba.conf").stdout
    plain = [line for line in hba.splitlines() if line.split()[0] == "host"]
    assert plain and all(re.search(r"\s(127\.0\.0\.1/32|::1/128)\s", line) for line in plain), hba


def test_a_server_with_another_certificate_is_refused_by_the_replica():
    node, standby = primary(), replica()
    # The primary now presents Debian's self-signed certificate instead of the CA's.
    psql(node, "ALTER SYSTEM SET ssl_cert_file = '/etc/ssl/certs/ssl-cert-snakeoil.pem'", db="postgres")
    psql(node, "ALTER SYSTEM SET ssl_key_file = '/etc/ssl/private/ssl-cert-snakeoil.key'", db="postgres")
    psql(node, "SELECT pg_reload_conf()", db="postgres")
    try:
        time.sleep(0.5)
        # The replica must connect again: its walreceiver refuses the impostor.
        psql(node, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication", db="postgres")
        time.sleep(4)
        assert not streaming(node), "the replica accepted a certificate the CA did not issue"
        log = sh(standby, "tail -n 20 /var/log/postgresql/postgresql-15-main.log").stdout
        assert "SSL error: certificate verify failed" in log, log
        # Nor does a verifying client of the DB VIP talk to it.
        with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
            connect(DB_VIP)
    finally:
        psql(node, "ALTER SYSTEM RESET ssl_cert_file", db="postgres")
        psql(node, "ALTER SYSTEM RESET ssl_key_file", db="postgres")
        psql(node, "SELECT pg_reload_conf()", db="postgres")
    # With its own certificate back, the replica streams again within seconds.
    wait_until(lambda: streaming(node), 15, "the replica streaming again")


def test_a_verifying_client_follows_the_db_vip_through_a_switchover():
    old = primary()
    new = replica()
    assert answering_node(DB_VIP) == old
    result = playbook("switchover.yml", "-e", f"new_primary={new}")
    assert result.returncode == 0, result.stdout[-3000:]
    wait_until(lambda: holds(new, DB_VIP), 10, "the DB VIP on the new primary")
    wait_until(lambda: _answers(new), 10, "a verified write through the DB VIP on the new primary")
    # The old primary rejoined over verified TLS.
    wait_until(lambda: streaming(new), 30, f"{old} streaming from {new}")
    conninfo = psql(old, "SELECT conninfo FROM pg_stat_wal_receiver", db="postgres")
    assert f"host={DB[new]}" in conninfo and "sslmode=verify-full" in conninfo
    assert remote_connections_without_ssl(new) == "0"


def _answers(node):
    try:
        with connect(DB_VIP) as conn:
            row = conn.execute("SELECT txid_current(), current_setting('hastack.node')").fetchone()
        return row[1] == node
    except psycopg.OperationalError:
        return False


def served_serial(node):
    out = sh(node, f"openssl s_client -starttls postgres -connect {DB[node]}:5432 -verify_return_error "
                   f"-CAfile /etc/ssl/hastack/ca.crt < /dev/null 2>/dev/null | openssl x509 -noout -serial")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_certificates_are_issued_again_and_reloaded_without_a_restart():
    node = primary()
    before = {n: served_serial(n) for n in DB}
    started = psql(node, "SELECT pg_postmaster_start_time()", db="postgres")
    with connect(DB_VIP) as held:
        result = playbook("certificates.yml", "-e", "renew_now=true")
        assert result.returncode == 0, result.stdout[-3000:]
        # A session opened before the renewal goes on.
        assert held.execute("SELECT txid_current()").fetchone()[0] > 0
    after = {n: served_serial(n) for n in DB}
    assert all(after[n] != before[n] for n in DB), (before, after)
    assert psql(node, "SELECT pg_postmaster_start_time()", db="postgres") == started
    assert answering_node(DB_VIP) == node
    wait_until(lambda: streaming(node), 15, "the replica streaming")


def reach(source, address, port, timeout=2):
    """'open', 'closed' (refused: no firewall in the way) or 'dropped' (no answer)."""
    script = ("import socket,sys\n"
              "s=socket.socket(); s.settimeout(%d)\n"
              "try: s.connect(('%s', %d)); print('open')\n"
              "except ConnectionRefusedError: print('closed')\n"
              "except OSError: print('dropped')\n") % (timeout, address, port)
    return sh(source, f"python3 -c \"{script}\"").stdout.strip()


def test_the_firewall_lets_through_only_what_the_inventory_says():
    db, app = "sec-db1", "sec-app1"
    # The machine the inventory does not know: PostgreSQL, gunicorn and the exporters are
    # dropped (no answer at all), the public HTTPS port answers.
    for address, port in ((DB[db], 5432), (DB_VIP, 5432), (APPS[app], 8000), (DB[db], 9100), (DB[db], 9187),
                          (APPS[app], 8404)):
        assert reach(OUTSIDER, address, port) == "dropped", f"{address}:{port} reachable from outside"
    assert reach(OUTSIDER, APP_VIP, 443) == "open"
    # Who the inventory names gets through: a DB peer and an app server to PostgreSQL,
    # the other app server's HAProxy to gunicorn.
    assert reach("sec-db2", DB[db], 5432) == "open"
    assert reach(app, DB[db], 5432) == "open"
    assert reach("sec-app2", APPS[app], 8000) == "open"
    # gunicorn only for the app servers' HAProxies, not for another inventory host.
    assert reach("sec-db2", APPS[app], 8000) == "dropped"
    # Dropped packets are counted.
    counters = sh(db, "nft list table inet hastack").stdout
    assert re.search(r"counter packets [1-9]\d* bytes \d+ drop", counters), counters


def test_the_firewall_shows_its_changes_and_never_locks_the_operator_out():
    rules = sh("sec-db1", "cat /etc/nftables.conf").stdout
    # --check --diff: the rule that would change, and nothing changed.
    preview = playbook("playbooks/firewall.yml", "--limit", "sec-db1", "--check", "--diff",
                       "-e", '{"firewall_postgresql_extra_networks": ["192.0.2.7/32"]}')
    assert preview.returncode == 0, preview.stdout[-3000:]
    assert re.search(r"^\+.*192\.0\.2\.7.*5432", preview.stdout, re.M), preview.stdout[-3000:]
    # Rules that would not let this controller's SSH session in: refused before any change.
    refused = playbook("playbooks/firewall.yml", "--limit", "sec-db1",
                       "-e", '{"firewall_trusted_networks": [], "firewall_admin_networks": ["192.0.2.0/24"]}')
    assert refused.returncode != 0 and "Refusing to change the firewall" in refused.stdout, refused.stdout[-3000:]
    assert sh("sec-db1", "cat /etc/nftables.conf").stdout == rules
    assert reach("sec-db2", DB["sec-db1"], 5432) == "open"


class ReplicationWatch(threading.Thread):
    """Samples the primary's pg_stat_replication every 0.1 s; the longest time without a
    streaming replica is the longest replica disconnect."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node, self.stopped, self.samples = node, threading.Event(), []

    def run(self):
        while not self.stopped.is_set():
            self.samples.append((time.monotonic(), streaming(self.node)))
            time.sleep(0.1)

    def stop(self):
        self.stopped.set()
        self.join(10)
        longest, down_since = 0.0, None
        for at, ok in self.samples:
            if not ok and down_since is None:
                down_since = at
            elif ok and down_since is not None:
                longest, down_since = max(longest, at - down_since), None
        if down_since is not None:
            longest = max(longest, self.samples[-1][0] - down_since)
        return longest


def new_secret(name):
    """What an operator does in the vault: a new value (Molecule's passwords are files)."""
    secret = "rotated-" + secrets.token_urlsafe(18)
    (EPHEMERAL / f"password_{name}").write_text(secret + "\n", encoding="utf-8")
    return secret


def test_secrets_are_rotated_under_load_without_a_failed_write(capsys):
    node = primary()
    old = {name: password(name) for name in ("app", "repl", "rewind")}
    new = {name: new_secret(name) for name in old}
    client, watch = HttpsClient(APP_VIP, CA, "security"), ReplicationWatch(node)
    client.start()
    watch.start()
    time.sleep(1)
    result = playbook("rotate_secrets.yml")
    time.sleep(1)
    results, longest_gap = client.stop(), watch.stop()
    assert result.returncode == 0, result.stdout[-3000:]
    failed = [r for r in results if not isinstance(r[2], int)]
    writes = [r for r in results if r[1] == "POST"]
    with capsys.disabled():
        print(f"\n[security] rotation: {len(failed)} of {len(results)} requests failed ({len(writes)} writes), "
              f"longest time without a streaming replica {longest_gap:.2f} s, playbook {result.seconds:.1f} s")
    assert writes and not failed, failed[:5]
    # Every acknowledged entry is stored.
    ids = [r[3] for r in writes]
    stored = psql(node, f"SELECT count(*) FROM usage_entries WHERE id IN ({','.join(map(str, ids))})")
    assert int(stored) == len(ids)
    wait_until(lambda: streaming(node), 10, "the replica streaming with the new password")
    # The new password works, the old one is refused.
    with connect(DB_VIP, secret=new["app"]) as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(DB_VIP, secret=old["app"])
    # Replication and rewind, from the other database node (only DB peers may use them).
    for user, name, extra, sql in (("replicator", "repl", "dbname=replication replication=true", "IDENTIFY_SYSTEM"),
                                   ("hastack_rewind", "rewind", "dbname=postgres", "SELECT 1")):
        def login(secret, user=user, extra=extra, sql=sql):
            return sh(replica(), f"PGPASSWORD='{secret}' psql 'host={DB[node]} user={user} {extra} "
                                 f"sslmode=verify-full sslrootcert=/etc/ssl/hastack/ca.crt' -XAtc '{sql}'")
        refused, accepted = login(old[name]), login(new[name])
        assert refused.returncode != 0 and "password authentication failed" in refused.stderr, (user, refused.stderr)
        assert accepted.returncode == 0, (user, accepted.stderr)
    # The temporary roles are gone.
    assert psql(node, "SELECT count(*) FROM pg_roles WHERE rolname LIKE '%\\_rotate'", db="postgres") == "0"
    # And the inventory is the truth again: the playbooks that hold these secrets (roles and
    # .pgpass on the database hosts, DATABASE_URL on the app servers) have nothing to change.
    again = playbook("playbooks/database.yml", str(ROOT / "playbooks" / "app.yml"))
    assert again.returncode == 0 and not any(recap_changed(again.stdout).values()), again.stdout[-3000:]
