"""roles/firewall's nftables.conf rendered for the hosts of a small inventory: who may reach
which port (molecule/security and the lab prove the rules on real hosts)."""

import importlib.util
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml
from role_template import render_role_template

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "firewall"
HOSTS = {"db1": "10.0.0.11", "db2": "10.0.0.12", "app1": "10.0.0.21", "app2": "10.0.0.22",
         "backup1": "10.0.0.31", "v6db": "2001:db8::13"}
GROUPS = {"db": ["db1", "db2", "v6db"], "app": ["app1", "app2"], "backup": ["backup1"], "lab_sinks": ["backup1"]}
GROUPS["hastack"] = GROUPS["db"] + GROUPS["app"] + GROUPS["backup"]
VIPS = [{"name": "db", "group": "db", "address": "10.0.0.100/24"},
        {"name": "app", "group": "app", "address": "10.0.0.101/24"}]


def load_filters():
    spec = importlib.util.spec_from_file_location("firewall_filters", ROLE / "filter_plugins" / "firewall.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FILTERS = load_filters()


def render(host, **overrides):
    filters = dict(FILTERS.FilterModule().filters(), extract=lambda name, container: container[name], bool=bool)
    hostvars = {name: {"hastack_address": address} for name, address in HOSTS.items()}
    values = {"inventory_hostname": host, "hastack_address": HOSTS[host], "groups": dict(GROUPS, all=list(HOSTS)),
              "hostvars": hostvars, "ansible_managed": "managed", "keepalived_vips": VIPS,
              "postgresql_app_networks": ["192.0.2.0/24"]}
    return render_role_template(ROLE, "etc/nftables.conf.j2", values, overrides, filters)


def rules(config, comment):
    """{family keyword: set of sources} of the accept rules tagged with `comment`."""
    found = {}
    for line in config.splitlines():
        match = re.match(r'\s*(ip6?) saddr \{ (.*?) \} .*accept comment "(.*)"$', line)
        if match and match.group(3) == comment:
            found.setdefault(match.group(1), set()).update(match.group(2).split(", "))
    return found


def v4(config, comment):
    return rules(config, comment).get("ip", set())


def test_atomic_replace_of_our_table_only():
    config = render("db1")
    assert "flush ruleset" not in config
    lines = [line for line in config.splitlines() if line.startswith("table") or line.startswith("delete")]
    assert lines[:3] == ["table inet hastack", "delete table inet hastack", "table inet hastack {"]
    body = config.split("chain input {", 1)[1]
    assert "policy drop;" in body.splitlines()[1]
    assert body.rstrip().splitlines()[-3].strip() == 'counter name "hastack_dropped" counter drop'
    assert "chain output" not in config and "chain forward" not in config


def test_postgresql_only_on_db_hosts_from_the_right_set():
    config = render("db1", firewall_postgresql_extra_networks=["198.51.100.7"])
    assert v4(config, "postgresql") == {"10.0.0.11", "10.0.0.12", "10.0.0.21", "10.0.0.22", "10.0.0.31",
                                        "192.0.2.0/24", "198.51.100.7"}
    assert rules(config, "postgresql")["ip6"] == {"2001:db8::13"}
    assert "tcp dport 5432" in config
    for host in ("app1", "backup1"):
        assert "5432" not in render(host) and not rules(render(host), "postgresql")


def test_vrrp_only_from_the_peers_of_each_vip():
    db1 = render("db1")
    assert rules(db1, "vrrp db") == {"ip": {"10.0.0.12"}, "ip6": {"2001:db8::13"}}
    assert not rules(db1, "vrrp app")
    app1 = render("app1")
    assert rules(app1, "vrrp app") == {"ip": {"10.0.0.22"}} and not rules(app1, "vrrp db")
    assert "l4proto 112" not in render("backup1")


def test_ssh_from_admin_networks_and_every_hastack_host():
    config = render("backup1", firewall_admin_networks=["203.0.113.0/24"])
    assert v4(config, "ssh") == {"203.0.113.0/24", "10.0.0.11", "10.0.0.12", "10.0.0.21", "10.0.0.22", "10.0.0.31"}
    assert rules(config, "ssh")["ip6"] == {"2001:db8::13"}


def test_app_port_behind_haproxy_only_from_app_peers_and_the_monitor_host():
    config = render("app1")
    assert v4(config, "app") == {"10.0.0.21", "10.0.0.22", "10.0.0.31"}
    assert v4(config, "http") == {"0.0.0.0/0"} and "tcp dport { 80, 443 }" in config
    # No login of its own: never the admin networks' Internet-wide default.
    assert v4(config, "haproxy stats") == {"10.0.0.31"}
    opened = render("app1", firewall_monitoring_networks=["203.0.113.9"])
    assert v4(opened, "haproxy stats") == {"10.0.0.31", "203.0.113.9"}


def test_app_port_open_to_clients_without_haproxy():
    config = render("app1", hastack_haproxy=False, firewall_app_networks=["198.51.100.0/24"])
    assert v4(config, "app") == {"198.51.100.0/24"}
    assert not rules(config, "http") and not rules(config, "haproxy stats")


def test_exporters_only_from_the_monitor_host():
    db1 = render("db1")
    assert v4(db1, "node exporter") == {"10.0.0.31"} and v4(db1, "postgres exporter") == {"10.0.0.31"}
    assert not rules(render("app1"), "postgres exporter")
    backup = render("backup1")
    assert v4(backup, "prometheus") == {"10.0.0.31"} and "0.0.0.0/0" not in v4(backup, "alertmanager")
    opened = render("backup1", firewall_monitoring_networks=["203.0.113.9"])
    assert v4(opened, "prometheus") == {"10.0.0.31", "203.0.113.9"}
    assert "10.0.0.11" in v4(backup, "alertmanager") and v4(backup, "lab sinks") >= {"10.0.0.21"}
    assert not rules(db1, "prometheus") and not rules(db1, "lab sinks")


def test_sentinel_chrony_trusted_and_extra_rules():
    config = render("backup1", firewall_trusted_networks=["198.18.20.1/32"], firewall_chrony_networks=["10.0.0.0/24"],
                    firewall_extra_rules=["tcp dport 9999 drop"], sentinel_members={"a": "10.0.0.11", "b": "10.0.0.21"})
    assert v4(config, "sentinel") == {"10.0.0.11", "10.0.0.21"} and "udp dport 7400" in config
    assert v4(config, "chrony") == {"10.0.0.0/24"} and v4(config, "trusted") == {"198.18.20.1"}
    assert config.index("tcp dport 9999 drop") < config.index('counter name "hastack_dropped" counter drop')


def test_overlapping_sources_are_merged_neighbours_kept():
    # nft refuses overlapping elements in one anonymous set.
    config = render("db1", firewall_postgresql_extra_networks=["10.0.0.0/24"], postgresql_app_networks=[])
    assert v4(config, "postgresql") == {"10.0.0.0/24"}
    assert FILTERS.firewall_networks(["10.0.0.13", "10.0.0.12", "10.0.0.12/32", "::1"], 4) == ["10.0.0.12", "10.0.0.13"]


def test_lock_out_guard_filters():
    assert FILTERS.firewall_address_in("10.0.0.5", ["10.0.0.0/24"])
    assert FILTERS.firewall_address_in("::ffff:10.0.0.5", ["10.0.0.0/24"])
    assert not FILTERS.firewall_address_in("10.0.1.5", ["10.0.0.0/24", "::/0"])
    assert FILTERS.firewall_invalid(["10.0.0.1", "db1.example.net", "::/0"]) == ["db1.example.net"]


@pytest.mark.skipif(shutil.which("nft") is None, reason="no nft on this controller")
@pytest.mark.parametrize("host", ["db1", "app1", "backup1"])
def test_nft_accepts_the_rendered_file(host, tmp_path):
    path = tmp_path / "nftables.conf"
    path.write_text(render(host, firewall_trusted_networks=["198.18.20.1/32"],
                           firewall_extra_rules=["tcp dport 9999 drop"]), encoding="utf-8")
    result = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False)  # noqa: S603, S607
    if "Operation not permitted" in result.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN here")
    assert result.returncode == 0, result.stderr


def load_yaml(*parts):
    return yaml.safe_load((ROOT.joinpath(*parts)).read_text(encoding="utf-8"))


def test_wiring_lab_on_with_the_controller_trusted_molecule_off():
    lab = load_yaml("inventories", "lab", "group_vars", "all", "lab.yml")
    # Drills and benchmarks reach the hosts from the controller, the lab network's gateway.
    assert lab["hastack_firewall"] is True and lab["firewall_trusted_networks"] == ["{{ hastack_lab_gateway }}/32"]
    molecule = load_yaml(".config", "molecule", "config.yml")
    assert molecule["provisioner"]["inventory"]["group_vars"]["all"]["hastack_firewall"] is False
    # site.yml -> common.yml -> firewall.yml, right after the baseline.
    assert load_yaml("playbooks", "common.yml")[1]["ansible.builtin.import_playbook"] == "firewall.yml"
    play = load_yaml("playbooks", "firewall.yml")[0]
    assert {"role": "firewall", "when": "hastack_firewall | default(true)"} in play["roles"]
