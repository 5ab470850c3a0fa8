"""Address filters for roles/firewall, with the standard library only (no netaddr on the
controller): nftables refuses overlapping elements in one anonymous set, so every source
list is split per address family and cleared of networks another one holds."""

import ipaddress

from ansible.errors import AnsibleFilterError


def _network(value):
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError as error:
        raise AnsibleFilterError(
            f"roles/firewall: {value!r} is not an IP address or CIDR network ({error}). The firewall needs "
            "addresses, not names: set hastack_address (or the firewall_*_networks entry) to an IP."
        ) from error


def firewall_networks(values, family):
    """The networks of `values` in address family 4 or 6, without overlaps, sorted, as text."""
    networks = [_network(value) for value in values or []]
    chosen = [network for network in networks if network.version == int(family)]
    # Drop what a wider network already holds (two CIDRs nest or are disjoint), but keep
    # neighbouring hosts apart: the rules (and --diff) name the hosts, not a merged /31.
    kept = sorted({n for n in chosen if not any(o != n and n.subnet_of(o) for o in chosen)})
    return [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in kept]


def firewall_invalid(values):
    """The entries of `values` that are not an IP address or CIDR network."""
    bad = []
    for value in values or []:
        try:
            ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            bad.append(value)
    return bad


def firewall_address_in(address, networks):
    """Whether `address` (IPv4-mapped IPv6 counts as IPv4) lies in one of `networks`."""
    try:
        ip = ipaddress.ip_address(str(address).strip())
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in _network(network) for network in networks or [] if _network(network).version == ip.version)


class FilterModule:
    def filters(self):
        return {
            "firewall_networks": firewall_networks,
            "firewall_invalid": firewall_invalid,
            "firewall_address_in": firewall_address_in,
        }
