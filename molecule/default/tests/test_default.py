"""The baseline on every host of the default scenario, checked from outside."""

import json
import os
import subprocess
import time
import urllib.request

import pytest

HOSTS = {"db1": "198.18.2.11", "db2": "198.18.2.12", "app1": "198.18.2.21", "backup1": "198.18.2.31"}
TIME_SERVER = "198.18.2.31"
testinfra_hosts = [f"podman://{name}" for name in HOSTS]

KEY = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "id_ed25519")


def ssh(user, address, command, *options):
    """Log in from the controller the way an operator does."""
    return subprocess.run(
        ["ssh", "-i", KEY, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         *options, f"{user}@{address}", command],
        capture_output=True, text=True, timeout=30, check=False,
    )


@pytest.mark.parametrize("package", ["chrony", "unattended-upgrades", "rsync", "jq", "sudo", "curl"])
def test_base_packages_installed(host, package):
    assert host.package(package).is_installed


def test_timezone(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Europe/Berlin"
    assert host.check_output("date +%Z") in ("CET", "CEST")


def test_chrony_runs_and_follows_the_lab_time_server(host):
    assert host.service("chrony").is_running
    assert host.service("chrony").is_enabled
    if host.backend.get_hostname() == "backup1":
        # The time server itself: serves the scenario network from its local clock.
        config = host.file("/etc/chrony/chrony.conf").content_string
        assert "allow 198.18.2.0/24" in config
        assert "local stratum 8" in config
        return
    deadline = time.monotonic() + 60
    sources = ""
    while time.monotonic() < deadline:
        sources = host.check_output("chronyc -n sources")
        # '^*' marks the source chronyd synchronises to.
        if any(line.startswith("^*") and TIME_SERVER in line for line in sources.splitlines()):
            return
        time.sleep(1)
    pytest.fail(f"chrony never selected {TIME_SERVER}:\n{sources}")


def test_admin_user(host):
    user = host.user("hastack")
    assert user.exists
    assert "sudo" in user.groups
    assert user.shell == "/bin/bash"
    keys = host.file("/home/hastack/.ssh/authorized_keys")
    assert keys.mode == 0o600
    with open(KEY + ".pub", encoding="utf-8") as handle:
        assert keys.content_string.strip() == handle.read().strip()


def test_sshd_effective_configuration(host):
    effective = host.check_output("sshd -T")
    for setting in ("permitrootlogin no", "passwordauthentication no", "kbdinteractiveauthentication no",
                    "maxauthtries 3", "x11forwarding no", "allowagentforwarding no", "allowtcpforwarding no"):
        assert setting in effective.splitlines(), setting


def test_admin_logs_in_with_key_and_becomes_root(host):
    address = HOSTS[host.backend.get_hostname()]
    result = ssh("hastack", address, "sudo -n id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_root_login_refused_even_with_an_authorised_key(host):
    address = HOSTS[host.backend.get_hostname()]
    with open(KEY + ".pub", encoding="utf-8") as handle:
        public_key = handle.read().strip()
    host.run("install -d -m 700 /root/.ssh && printf '%s\\n' '" + public_key + "' > /root/.ssh/authorized_keys")
    try:
        result = ssh("root", address, "true")
        assert result.returncode == 255
        assert "Permission denied" in result.stderr
    finally:
        host.run("rm -f /root/.ssh/authorized_keys")


def test_password_authentication_not_offered(host):
    address = HOSTS[host.backend.get_hostname()]
    result = ssh("hastack", address, "true", "-o", "PreferredAuthentications=password,keyboard-interactive",
                 "-o", "PubkeyAuthentication=no")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_unattended_security_upgrades(host):
    config = host.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in config
    blocked = [line for line in config.splitlines() if line.startswith("Unattended-Upgrade::Package-Blacklist::")]
    assert any('"postgresql-"' in line for line in blocked), blocked
    assert any('"keepalived"' in line for line in blocked), blocked
    # Debian's security origin stays allowed.
    assert "Debian-Security" in config


def test_postgresql_primary_and_replica(host):
    name = host.backend.get_hostname()
    if name not in ("db1", "db2"):
        pytest.skip("not a database host")
    sql = "runuser -u postgres -- psql -XAtq -c "
    in_recovery = host.check_output(sql + "'SELECT pg_is_in_recovery()'")
    if name == "db1":
        assert in_recovery == "f"
        # db2, and the backup host's WAL archive (pg_receivewal).
        assert host.check_output(sql + "\"SELECT string_agg(application_name || ' ' || state, ', ' "
                                       "ORDER BY application_name) FROM pg_stat_replication\"") \
            == "db2 streaming, hastack_backup streaming"
        assert "hastack" in host.check_output(sql + "'SELECT datname FROM pg_database'").split()
    else:
        assert in_recovery == "t"
        assert host.check_output(sql + "'SELECT sender_host FROM pg_stat_wal_receiver'") == "198.18.2.11"


def test_postgresql_listens_only_with_scram_for_the_network(host):
    if host.backend.get_hostname() not in ("db1", "db2"):
        pytest.skip("not a database host")
    hba = host.file("/etc/postgresql/15/main/pg_hba.conf").content_string
    network_rules = [line.split() for line in hba.splitlines() if line.startswith("host")]
    assert network_rules and all(rule[-1] == "scram-sha-256" for rule in network_rules)
    # TLS for every remote client; only loopback may go without.
    assert all(rule[0] == "hostssl" or rule[3] in ("127.0.0.1/32", "::1/128") for rule in network_rules)
    replication = {(rule[2], rule[3]) for rule in network_rules if rule[1] == "replication"}
    # replicator_rotate: the temporary role rotate_secrets.yml moves the replicas to.
    assert replication == {(user, address) for user in ("replicator", "replicator_rotate")
                           for address in ("198.18.2.11/32", "198.18.2.12/32")} | {("hastack_backup", "198.18.2.31/32")}
    assert host.file("/var/lib/postgresql/.pgpass").mode == 0o600


VIP_HOLDER = {"db1": "198.18.2.100", "app1": "198.18.2.101"}


def test_vrrp_v2_with_authentication_and_the_vips_on_the_right_hosts(host):
    name = host.backend.get_hostname()
    if name == "backup1":
        pytest.skip("shares no VIP")
    conf = host.file("/etc/keepalived/keepalived.conf")
    assert (conf.user, conf.mode) == ("root", 0o600)  # it holds the VRRP password
    assert "vrrp_version 2" in conf.content_string and "auth_type PASS" in conf.content_string
    assert host.service("keepalived").is_running
    addresses = host.check_output("ip -o -4 addr show")
    for holder, vip in VIP_HOLDER.items():
        assert (f" {vip}/" in addresses) == (name == holder), (name, vip)


def test_the_app_answers_through_the_app_vip_and_writes_through_the_db_vip():
    with urllib.request.urlopen("http://198.18.2.101:8000/health", timeout=5) as response:
        assert json.load(response) == {"status": "ok", "database": "reachable", "role": "primary", "node": "db1",
                                       "maintenance": False}
    request = urllib.request.Request("http://198.18.2.101:8000/api/entries", method="POST",
                                     data=b'{"machine": "saw", "member": "bo", "minutes": 10}',
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201 and json.load(response)["id"] >= 1
    with urllib.request.urlopen("http://198.18.2.101:8000/api/entries/count", timeout=5) as response:
        assert json.load(response)["count"] >= 1
