# -*- coding: utf-8 -*-
# WAL positions (LSNs), timelines and slot names: plain arithmetic, unit tested in
# tests/unit/test_hastack_pg.py.

from __future__ import annotations

import re

LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def lsn_to_int(lsn):
    """'16/B374D848' -> integer byte position; None stays None."""
    if lsn is None or lsn == "":
        return None
    if isinstance(lsn, int):
        return lsn
    match = LSN_RE.match(str(lsn).strip())
    if not match:
        raise ValueError("not an LSN: %r" % (lsn,))
    return (int(match.group(1), 16) << 32) + int(match.group(2), 16)


def int_to_lsn(value):
    if value is None:
        return None
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def slot_name(host):
    """Replication slot (and application_name) for an inventory host name."""
    name = re.sub(r"[^a-z0-9_]", "_", host.lower())
    return name[:63]


def timeline_from_walfile(walfile):
    """'000000020000000000000003' -> 2."""
    if not walfile or len(walfile) < 8:
        return None
    return int(walfile[:8], 16)


def max_lsn(*lsns):
    values = [lsn_to_int(x) for x in lsns if x not in (None, "")]
    return int_to_lsn(max(values)) if values else None


def timeline_switchpoints(history):
    """A timeline history file's text -> {timeline: LSN (int) where the next one forked off}.
    Lines look like '1\t0/5000A0\tno recovery target specified'."""
    points = {}
    for line in (history or "").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].strip().isdigit():
            points[int(parts[0])] = lsn_to_int(parts[1].strip())
    return points
