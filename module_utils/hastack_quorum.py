# -*- coding: utf-8 -*-
# The rules that keep hastack to one primary, in one place.
#
# Every host of the cluster (database nodes, plus app/backup hosts as witnesses) runs
# hastack-sentinel. Each sentinel sends a signed heartbeat to every other member every
# `interval` seconds; a heartbeat carries the sender's cluster epoch and recorded primary,
# whether its PostgreSQL is writable, how long ago it last heard each member ("silence")
# and, per member, the send time of the newest heartbeat it received from that member
# ("echo", in the member's own monotonic clock). From those:
#
#   1. LEASE. A writable node keeps accepting writes only while a majority of members
#      (itself included) echoed one of its heartbeats sent within the last `lease`
#      seconds. Without it, the node fences itself: the DB VIP leaves at once, PostgreSQL
#      gets standby.signal + hastack.fenced and restarts read-only. If the sentinel itself
#      hangs, systemd's watchdog kills it and PostgreSQL, which is bound to it, stops.
#   2. EPOCH. A node whose epoch is lower than any member heard within the lease never
#      holds the DB VIP and, if writable, fences itself at once.
#   3. PROOF. failover.yml promotes without having fenced the old primary over SSH (or
#      with a power-off hook, or the operator's word) only when enough members that the
#      candidate hears have not heard the old primary for long enough that its lease has
#      run out, and the time it needs to fence itself (or the watchdog's) has passed.
#   4. START. A node that would start as a primary first waits for its sentinel to hear a
#      majority; it starts writable only if it is the recorded primary (or nothing is
#      recorded yet), no member has a newer epoch and none is writable. Otherwise, and
#      when no majority answers in time, it starts read-only (fails closed).
#
# Plain functions of plain dicts and monotonic times, shared by the sentinel (shipped to
# the hosts), the start guard and the modules; unit tested in tests/unit/test_quorum.py.

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time

PROTOCOL = 1
SIGNATURE_BYTES = 16

# Files on every node (one constant per path).
SENTINEL_STATE_FILE = "/run/hastack/sentinel.json"
# The newest cluster epoch (and its primary) this member has heard of, kept across restarts.
SENTINEL_EPOCH_FILE = "/var/lib/hastack/known-epoch.json"
SENTINEL_LEASE_FILE = "/run/hastack/sentinel.lease"
# keepalived track file for the DB VIP: "0" while this node may hold it as far as
# quorum and epoch go (the primary track file and the check script add the rest).
SENTINEL_TRACK_FILE = "/var/lib/hastack/quorum.track"


def read_state(path=None, now=None):
    """This node's sentinel state (SENTINEL_STATE_FILE), or None when it is missing,
    unreadable or stale: the sentinel rewrites it every interval, so a file older than two
    intervals + 1 s means the sentinel does not run."""
    try:
        with open(path or SENTINEL_STATE_FILE, encoding="utf-8") as handle:
            state = json.load(handle)
        age = (time.monotonic() if now is None else now) - float(state["now"])
        return state if age < 1.0 + 2 * float(state["interval"]) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def majority(count):
    return count // 2 + 1


# ------------------------------------------------------------------ messages
def sign(secret, payload):
    return hmac.new(secret, payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]


def encode(secret, message):
    payload = json.dumps(message, separators=(",", ":"), sort_keys=True).encode()
    return sign(secret, payload) + payload


def decode(secret, packet):
    """The message in a packet, or None when it is not signed with our secret."""
    signature, payload = packet[:SIGNATURE_BYTES], packet[SIGNATURE_BYTES:]
    if not hmac.compare_digest(signature, sign(secret, payload)):
        return None
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("v") != PROTOCOL or not message.get("n"):
        return None
    return message


# ------------------------------------------------------------------ the lease
def lease_until(node, boot, members, peers, lease):
    """Until when (this node's monotonic clock) a majority backs this node: the time the
    majority-th newest echo of its heartbeats (itself included) runs out. None when no
    majority has echoed. peers: member -> last message, whose "echo" maps each member to
    [send time, boot id] of the newest heartbeat it received from that member; echoes of
    an earlier boot (another monotonic clock) do not count."""
    need = majority(len(members)) - 1
    echoes = []
    for member in members:
        echo = (peers.get(member) or {}).get("echo", {}).get(node) if member != node else None
        if echo and echo[1] == boot:
            echoes.append(float(echo[0]))
    echoes.sort(reverse=True)
    if need == 0:
        return float("inf")
    if len(echoes) < need:
        return None
    return echoes[need - 1] + lease


def fresh_peers(peers, now, lease):
    """Peers heard within the lease: only they speak for the cluster's current state."""
    return {m: p for m, p in peers.items() if now - p["received"] <= lease}


def peer_epoch(peer):
    """The newest epoch a member knows of: its own record, or the newest it heard of (every
    sentinel, witnesses too, passes on the newest epoch it heard and keeps it on disk, so a
    majority always includes a member that knows of the last failover)."""
    return max(int(peer.get("e") or 0), int(peer.get("ke") or 0))


def newest_epoch(peers):
    return max([peer_epoch(p) for p in peers.values()] + [0])


def self_fence_reason(local, members, peers, now, lease, lease_ok_until):
    """Why a writable node must fence itself now, or None.

    local: {"node", "epoch", "writable"}; lease_ok_until: monotonic time until which the
    node holds its lease (from the supporters' echoes, or a start-up grace)."""
    if not local.get("writable"):
        return None
    fresh = fresh_peers(peers, now, lease)
    newer = sorted(m for m, p in fresh.items() if peer_epoch(p) > int(local.get("epoch") or 0))
    if newer:
        return ("epoch %s is older than the epoch %s that %s knows of: a failover replaced this node"
                % (local.get("epoch"), peer_epoch(fresh[newer[0]]), newer[0]))
    if now > lease_ok_until:
        return ("lost the lease: fewer than %d of the %d members answered within %.1f s "
                "(isolated from the cluster)" % (majority(len(members)), len(members), lease))
    return None


def may_hold_vip(local, peers, now, lease, lease_ok_until):
    """Whether quorum and epoch let this node hold the DB VIP (the recorded-primary track
    file and the writability check are keepalived's other two conditions)."""
    if local.get("fenced") or now > lease_ok_until:
        return False
    return int(local.get("epoch") or 0) >= newest_epoch(fresh_peers(peers, now, lease))


# ------------------------------------------------------------------ the proof
def self_fence_proof(state, now, old, margin=0.1):
    """Whether the old primary `old` has certainly stopped accepting writes, from the
    candidate's sentinel state (see SENTINEL_STATE_FILE), at monotonic time `now`.

    Each member m that the candidate heard reports how long it had not heard `old` when it
    sent its heartbeat: no heartbeat of `old` reached m in [quiet_since_m, seen_m]. If a set
    of members large enough that `old` cannot have a majority without one of them all
    stayed quiet over a common window of `lease` (+ margin for message delay), `old`'s
    lease had run out by the start of that window + lease; it stops accepting writes
    within `hold` seconds after that (its sentinel's reaction, or systemd's watchdog plus
    the PostgreSQL stop).

    Returns {"safe": bool, "safe_in": seconds or None, "witnesses": [...], "heard_by":
    {member: seconds since it heard old}, "reason": str}.
    """
    members, lease = state["members"], state["lease"]
    # After its lease ran out the old primary fences itself at its next evaluation; if its
    # sentinel hung instead, systemd's watchdog kills it (and PostgreSQL, bound to it)
    # `watchdog` seconds after its last heartbeat. Then the fast shutdown refuses writes.
    reaction = max(lease + state["interval"], state["watchdog"]) + state["fence_seconds"]
    needed = len(members) - majority(len(members)) + 1
    base = state["now"]
    evidence = {}  # member -> (quiet_since, seen): both in this host's monotonic clock
    heard_by = {}
    own = state.get("silence", {}).get(old)
    if own is not None:
        evidence[state["node"]] = (base - own, base)
        heard_by[state["node"]] = round(own + (now - base), 2)
    for member, peer in state.get("peers", {}).items():
        if member == old:
            continue
        silence = (peer.get("h") or {}).get(old)
        seen = base - peer["age"]
        if silence is None:
            continue  # `old` is not one of its members
        evidence[member] = (seen - silence, seen)
        heard_by[member] = round(silence + (now - seen), 2)
    best = None
    for group in itertools.combinations(sorted(evidence), needed) if len(evidence) >= needed else []:
        quiet_since = max(evidence[m][0] for m in group)
        seen = min(evidence[m][1] for m in group)
        if seen - quiet_since >= lease + margin:
            safe_at = quiet_since + margin + reaction
            if best is None or safe_at < best[0]:
                best = (safe_at, group)
    if best is None:
        return {"safe": False, "safe_in": None, "witnesses": [], "heard_by": heard_by,
                "reason": "%d of the %d members must report %s silent for %.1f s; reports so far: %s"
                % (needed, len(members), old, lease + margin,
                   ", ".join("%s heard it %.1f s ago" % kv for kv in sorted(heard_by.items())) or "none")}
    safe_in = max(0.0, best[0] - now)
    return {"safe": safe_in == 0.0, "safe_in": round(safe_in, 3), "witnesses": list(best[1]),
            "heard_by": heard_by,
            "reason": "%s silent to %s for over %.1f s: its lease ran out and it fenced itself"
            % (old, ", ".join(best[1]), lease)}


# ------------------------------------------------------------------ start-up
def start_decision(state, node, recorded_primary, epoch):
    """What a node that would start as a primary does, from its sentinel's (fresh) state.

    Returns (action, reason): "wait" (no majority heard yet), "primary" or "fence"."""
    members, lease = state["members"], float(state["lease"])
    fresh = {m: p for m, p in state.get("peers", {}).items() if p["age"] <= lease and m in members}
    if 1 + len(fresh) < majority(len(members)):
        return "wait", "heard %d of %d members, need %d" % (1 + len(fresh), len(members), majority(len(members)))
    newer = sorted(m for m, p in fresh.items() if peer_epoch(p) > int(epoch or 0))
    if newer:
        return "fence", "%s knows of cluster epoch %s, newer than this node's %s" % (
            newer[0], peer_epoch(fresh[newer[0]]), epoch)
    writable = sorted(m for m, p in fresh.items() if p.get("w"))
    if writable:
        return "fence", "%s is writable" % ", ".join(writable)
    if recorded_primary and recorded_primary != node:
        return "fence", "the cluster record (epoch %s) names %s as the primary" % (epoch, recorded_primary)
    return "primary", "%d of %d members heard, none newer or writable" % (1 + len(fresh), len(members))
