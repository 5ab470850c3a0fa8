"""Inventories and Molecule scenarios stay inside the address range the project owns."""

import ipaddress
import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEST_RANGE = ipaddress.ip_network("198.18.0.0/15")


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def walk_hosts(group, groups=()):
    """Yield (host, vars, groups it belongs to) from a YAML inventory tree."""
    for host, hostvars in (group.get("hosts") or {}).items():
        yield host, hostvars or {}, groups
    for name, child in (group.get("children") or {}).items():
        yield from walk_hosts(child or {}, (*groups, name))


def lab_hosts():
    return list(walk_hosts(load(ROOT / "inventories" / "lab" / "hosts.yml")["all"]))


BASE_CONFIG = ROOT / ".config" / "molecule" / "config.yml"
BARE_IMAGE = "localhost/hastack-debian:bookworm"
# Networks promised to scenarios being written elsewhere: only that scenario may use it.
RESERVED = {"drills": ("hastack-mol-drills", ipaddress.ip_network("198.18.6.0/24"))}


def scenarios():
    return sorted((ROOT / "molecule").glob("*/molecule.yml"))


def merge(base, over):
    """Molecule's merge of a scenario over the base config: dicts key by key, the rest replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config(scenario):
    return merge(load(BASE_CONFIG), load(scenario))


def test_lab_addresses_are_in_the_test_range_and_unique():
    addresses = [ipaddress.ip_address(v["ansible_host"]) for _, v, _ in lab_hosts()]
    assert addresses, "the lab inventory has no hosts"
    assert all(a in TEST_RANGE for a in addresses)
    assert len(set(addresses)) == len(addresses)


def test_lab_has_the_documented_shape():
    by_group = {}
    for host, _, groups in lab_hosts():
        for group in groups:
            by_group.setdefault(group, set()).add(host)
    assert 2 <= len(by_group["db"]) <= 3
    assert len(by_group["app"]) == 2
    assert len(by_group["backup"]) == 1
    assert by_group["hastack"] == by_group["db"] | by_group["app"] | by_group["backup"]


def test_lab_subnet_holds_every_lab_host():
    lab = load(ROOT / "inventories" / "lab" / "group_vars" / "all" / "lab.yml")
    subnet = ipaddress.ip_network(lab["hastack_lab_subnet"])
    assert subnet.subnet_of(TEST_RANGE)
    assert ipaddress.ip_address(lab["hastack_lab_gateway"]) in subnet
    assert all(ipaddress.ip_address(v["ansible_host"]) in subnet for _, v, _ in lab_hosts())


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda p: p.parent.name)
def test_scenario_uses_its_own_network_in_the_test_range(scenario):
    platforms = load(scenario)["platforms"]
    networks = {p["network"] for p in platforms}
    assert len(networks) == 1, "a scenario's hosts share one network"
    subnets = {ipaddress.ip_network(p["ip"] + "/24", strict=False) for p in platforms}
    assert len(subnets) == 1
    assert next(iter(subnets)).subnet_of(TEST_RANGE)


def test_scenarios_and_lab_never_share_a_network():
    lab = load(ROOT / "inventories" / "lab" / "group_vars" / "all" / "lab.yml")
    seen = {lab["hastack_lab_network"]: ipaddress.ip_network(lab["hastack_lab_subnet"])}
    for scenario in scenarios():
        platforms = load(scenario)["platforms"]
        name = platforms[0]["network"]
        subnet = ipaddress.ip_network(platforms[0]["ip"] + "/24", strict=False)
        assert name not in seen, f"{scenario.parent.name} reuses network {name}"
        assert subnet not in seen.values(), f"{scenario.parent.name} reuses subnet {subnet}"
        for owner, (reserved_name, reserved_subnet) in RESERVED.items():
            if scenario.parent.name != owner:
                assert name != reserved_name and subnet != reserved_subnet, \
                    f"{scenario.parent.name}: {reserved_name} ({reserved_subnet}) is kept for {owner}"
        seen[name] = subnet


def test_molecule_never_calls_galaxy():
    for scenario in scenarios():
        dependency = config(scenario).get("dependency", {})
        assert dependency.get("enabled") is False, f"{scenario.parent.name}: dependency step must be disabled"


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda p: p.parent.name)
def test_scenario_keeps_every_step_and_names_its_image(scenario):
    merged = config(scenario)
    assert merged["scenario"]["test_sequence"] == [
        "destroy", "syntax", "create", "converge", "idempotence", "verify", "destroy"]
    assert merged["driver"]["hastack_image"].startswith("localhost/hastack-debian")


def test_default_scenario_proves_the_install_on_the_bare_image():
    assert config(ROOT / "molecule" / "default" / "molecule.yml")["driver"]["hastack_image"] == BARE_IMAGE


def test_production_inventory_holds_no_plaintext_secret():
    production = ROOT / "inventories" / "production"
    for path in production.rglob("*.yml"):
        data = load(path)
        for key, value in _flatten(data):
            if key.endswith(("password", "secret", "token")):
                assert "vault_" in str(value), f"{path.relative_to(ROOT)}: {key} must come from the vault"


def _flatten(data, prefix=""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _flatten(value, f"{prefix}{key}.")
            yield f"{prefix}{key}", value
    elif isinstance(data, list):
        for item in data:
            yield from _flatten(item, prefix)
