# -*- coding: utf-8 -*-
# The decisions: which node is, or becomes, the primary, and how a node rejoins. Pure
# functions of the facts that pg_node_facts gathered on every node (plain dicts); they
# raise PlanError with an operator-readable message before anything changes, and are
# unit tested without a database (tests/unit/test_hastack_pg.py). The one-primary rules
# the sentinels enforce are in hastack_quorum.

from __future__ import annotations

from ansible.module_utils.hastack_lsn import int_to_lsn, lsn_to_int
from ansible.module_utils.hastack_state import CLUSTER_STATE_FILE

class PlanError(Exception):
    """A decision that must stop the playbook before any change."""


def reachable_nodes(nodes):
    return {h: f for h, f in nodes.items() if f.get("reachable", True) and not f.get("failed")}


def clean_fenced_stop(facts):
    """A fenced former primary stopped cleanly: its shutdown checkpoint is the last WAL it wrote."""
    return bool(facts.get("fenced")) and facts.get("cluster_state") == "shut down"


def writable_nodes(nodes):
    return sorted(h for h, f in reachable_nodes(nodes).items() if f.get("role") == "primary")


def _standby(facts):
    """A replica, or a stopped node that will start as one (but not a fenced ex-primary)."""
    if facts.get("fenced"):
        return False
    return facts.get("role") == "replica" or bool(facts.get("standby_signal"))


def converge_primary(nodes, inventory_primary, recorded_primary=None):
    """The node site.yml builds around.

    Returns (primary, reason). Raises PlanError when the cluster is in a state that a
    converge must not touch (two writable nodes, or no writable node while replicas
    hold data, which is failover.yml's job).
    """
    unreachable = sorted(h for h, f in nodes.items() if not f.get("reachable", True) or f.get("failed"))
    if unreachable:
        raise PlanError(
            "database host(s) %s did not report (unreachable, or pg_node_facts failed there: see that "
            "task's output): site.yml needs every database host to decide "
            "which one is the primary. Bring them back, or limit the run with "
            "--limit '!%s' if they are gone for good (then remove them from the inventory)."
            % (", ".join(unreachable), ",".join(unreachable)))
    writable = writable_nodes(nodes)
    if len(writable) > 1:
        raise PlanError(
            "more than one writable PostgreSQL node: %s. Refusing to touch the cluster. Find the "
            "one the application writes to (DB VIP, cluster epoch in %s), stop PostgreSQL on the "
            "other(s) and run: ansible-playbook resync.yml -e node=<the other>"
            % (", ".join(writable), CLUSTER_STATE_FILE))
    if writable:
        reason = "detected: %s is not in recovery" % writable[0]
        if writable[0] != inventory_primary:
            reason += " (the inventory names %s; a failover or switchover moved it)" % inventory_primary
        return writable[0], reason
    with_data = {h: f for h, f in nodes.items() if f.get("has_data")}
    if not with_data:
        if inventory_primary not in nodes:
            raise PlanError("postgresql_primary=%s is not one of the database hosts (%s)"
                            % (inventory_primary, ", ".join(sorted(nodes))))
        return inventory_primary, "new cluster: %s (postgresql_primary) is initialised" % inventory_primary
    # A fenced node was a primary that a failover replaced: never start it as one.
    not_standby = sorted(h for h, f in with_data.items() if not _standby(f) and not f.get("fenced"))
    if len(not_standby) == 1:
        host = not_standby[0]
        if recorded_primary and recorded_primary != host:
            raise PlanError(
                "%s holds a stopped primary, but the last failover/switchover recorded %s as the "
                "primary. Start PostgreSQL on %s, or run failover.yml to promote a replica."
                % (host, recorded_primary, recorded_primary))
        return host, "%s holds the stopped primary; it is started" % host
    if len(not_standby) > 1:
        raise PlanError(
            "no node is writable and %s all hold non-replica data directories: cannot tell which "
            "is the primary. Start the right one by hand (systemctl start postgresql@<ver>-main) "
            "and rerun site.yml." % ", ".join(not_standby))
    raise PlanError(
        "no writable PostgreSQL node; replicas %s are up but the primary is down. This is an "
        "incident: run ansible-playbook failover.yml (site.yml never promotes)."
        % ", ".join(sorted(with_data)))


def next_epoch(nodes):
    return max([int(f.get("epoch") or 0) for f in nodes.values()] + [0]) + 1


def recorded_primary(nodes):
    """The primary recorded with the highest epoch among the nodes that answered."""
    best = max(((int(f.get("epoch") or 0), f.get("recorded_primary")) for f in nodes.values()
                if f.get("epoch")), default=(0, None))
    return best[1]


def resync_plan(nodes, node):
    """resync.yml: the primary `node` must follow. `node` itself may be writable (a stale
    primary that came back): the operator named it, so it is not counted."""
    if node not in nodes:
        raise PlanError("node=%s is not a database host (%s)" % (node, ", ".join(sorted(nodes))))
    if not nodes[node].get("reachable", True) or nodes[node].get("failed"):
        raise PlanError("%s is unreachable; bring the host back first" % node)
    others = {h: f for h, f in nodes.items() if h != node}
    writable = writable_nodes(others)
    if len(writable) != 1:
        raise PlanError(
            "%s needs exactly one writable primary among the other nodes to follow; found %s. %s"
            % (node, ", ".join(writable) or "none",
               "Run failover.yml first." if not writable else "Resolve the split brain first."))
    epochs = [int(f.get("epoch") or 0) for f in nodes.values()]
    return {"action": "resync", "primary": writable[0], "node": node, "epoch": max(epochs + [1]),
            "node_role": nodes[node].get("role")}


def _position(facts):
    return lsn_to_int(facts.get("position_lsn")) or lsn_to_int(facts.get("replay_lsn")) or 0


def _timeline(facts):
    """The timeline a node is on: a standby whose primary died has no WAL receiver, and its
    checkpoint's timeline lags until the next restartpoint; its newest history file does not."""
    return max(int(facts.get("timeline") or 0), int(facts.get("history_timeline") or 0))


def _rank(facts):
    """Most advanced first: a later timeline wins over a higher LSN on an older one."""
    return (_timeline(facts), _position(facts))


# How failover.yml makes sure the old primary takes no more writes before promoting.
FENCE_SSH = "ssh"            # reachable: pg_fence stops it and guards its start


FENCE_COMMAND = "command"    # unreachable: failover_fence_command powers it off


FENCE_OPERATOR = "operator"  # unreachable: the operator attested it is off


FENCE_SELF = "self"          # unreachable: its lease ran out (proven by the sentinels)


FENCE_NONE = "none"          # no old primary to fence


def failover_plan(nodes, old_primary=None, requested=None, max_lag_bytes=16 * 1024 * 1024, force=False,
                  synchronous=False, accept_loss=False, fence_command=False, confirm_dead=None, addresses=None):
    """Choose what failover.yml does.

    nodes: inventory host -> facts (with 'reachable'). Returns a dict with 'action'
    ('none' or 'promote'), 'candidate', 'fence' (reachable nodes to stop before the
    promotion), 'fence_method' (how the old primary is kept from writing, FENCE_*),
    'repoint' and figures for the summary; raises PlanError (before any change) when it
    must refuse. addresses (host -> address) lets a re-run find replicas that do not
    stream from the primary yet (an interrupted failover).
    """
    reachable = reachable_nodes(nodes)
    writable = writable_nodes(nodes)
    if len(writable) > 1:
        raise PlanError(
            "the cluster already has %d writable nodes (%s): split brain. failover.yml will not "
            "promote a third. Decide which holds the application's writes, stop PostgreSQL on the "
            "other(s) and rejoin them with resync.yml -e node=<host>."
            % (len(writable), ", ".join(writable)))
    if writable:
        primary = writable[0]
        if requested and requested != primary:
            raise PlanError(
                "%s is up and writable: a failover would create a second primary. For a planned "
                "move to %s run: ansible-playbook switchover.yml -e new_primary=%s"
                % (primary, requested, requested))
        # A failover interrupted after the promotion: finish it (replicas still pointed
        # at the old primary are repointed; one that the early repoint already pointed at
        # the new primary, but whose epoch was not recorded yet, gets the epoch), nothing else.
        address = (addresses or {}).get(primary)
        primary_epoch = int(nodes[primary].get("epoch") or 0)
        behind = sorted(h for h, f in reachable.items() if h != primary and f.get("role") == "replica"
                        and not f.get("fenced") and address
                        and ((f.get("wal_receiver") or {}).get("sender_host") != address
                             or (f.get("wal_receiver") or {}).get("status") != "streaming"
                             or int(f.get("epoch") or 0) < primary_epoch))
        return {"action": "none", "candidate": primary, "primary": primary, "fence": [], "repoint": behind,
                "fence_method": FENCE_NONE, "epoch": max([int(f.get("epoch") or 0) for f in nodes.values()] + [1]),
                "reason": "%s is already the writable primary%s" % (
                    primary, "; repointing %s, which still follow(s) another node or lack(s) its epoch"
                    % ", ".join(behind) if behind else "; nothing to do")}
    replicas = {h: f for h, f in reachable.items() if f.get("role") == "replica"}
    if not replicas:
        down = sorted(set(nodes) - set(reachable))
        raise PlanError(
            "no replica is reachable and running (unreachable: %s; reachable: %s), so there is "
            "nothing to promote. Bring a replica's host or PostgreSQL back, then rerun failover.yml."
            % (", ".join(down) or "none",
               ", ".join("%s=%s" % (h, f.get("role")) for h, f in sorted(reachable.items())) or "none"))
    old = old_primary
    # Never chosen by itself: the old primary (even fenced and read-only, it is what the
    # failover replaces), a fenced former primary, a node whose sentinel has no majority
    # (it would fence itself at once).
    eligible = {h: f for h, f in replicas.items() if h != old and not f.get("fenced") and f.get("quorum") is not False}

    def order(h):
        return (tuple(-x for x in _rank(replicas[h])), -(lsn_to_int(replicas[h].get("replay_lsn")) or 0), h)
    if requested:
        if requested not in nodes:
            raise PlanError("new_primary=%s is not a database host (%s)" % (requested, ", ".join(sorted(nodes))))
        if requested not in replicas:
            state = "unreachable" if requested not in reachable else reachable[requested].get("role")
            raise PlanError("new_primary=%s cannot be promoted: it is %s. Choose one of: %s"
                            % (requested, state, ", ".join(sorted(replicas))))
        if replicas[requested].get("quorum") is False:
            raise PlanError("new_primary=%s cannot be promoted: its sentinel does not hear a majority of the "
                            "cluster, so it would fence itself at once. Fix its network first." % requested)
        candidate = requested
    elif eligible:
        candidate = sorted(eligible, key=order)[0]
    else:
        raise PlanError(
            "no replica may be promoted: %s. Name one with -e new_primary=HOST if you know it is right."
            % "; ".join("%s is %s" % (h, "the old primary" if h == old else "fenced (a former primary)"
                                      if f.get("fenced") else "without a majority (its sentinel)")
                        for h, f in sorted(replicas.items())))
    old = old if old and old != candidate else None
    # Synchronous ANY 1: an acknowledged commit is on at least one replica, so only the
    # most advanced of *all* of them is sure to hold every one. The old primary may be
    # ahead of all of them: what only it holds was never acknowledged.
    unknown = sorted(h for h in nodes if h != old and h != candidate and h not in replicas)
    ahead = sorted(h for h in replicas if h not in (old, candidate) and _rank(replicas[h]) > _rank(replicas[candidate]))
    if synchronous and not accept_loss:
        if unknown:
            raise PlanError(
                "synchronous mode: %s did not report a WAL position (unreachable or not running as a "
                "replica), and may hold commits that were acknowledged to clients and that %s lacks. "
                "Bring %s back and rerun, or accept losing them: -e failover_accept_loss=true"
                % (", ".join(unknown), candidate, "them" if len(unknown) > 1 else "it"))
        if ahead:
            raise PlanError(
                "synchronous mode: %s is behind %s (timeline %s at %s against timeline %s at %s): promoting "
                "it would lose acknowledged commits. Promote %s, wait until %s catches up, or accept the "
                "loss: -e failover_accept_loss=true"
                % (candidate, ahead[0], _rank(replicas[candidate])[0], int_to_lsn(_position(replicas[candidate])),
                   _rank(replicas[ahead[0]])[0], int_to_lsn(_position(replicas[ahead[0]])), ahead[0], candidate))
    chosen = replicas[candidate]
    # Positions on another timeline do not compare with the candidate's.
    same = [f for f in reachable.values() if _timeline(f) in (0, _rank(chosen)[0])]
    known = [_position(f) for f in same] + [lsn_to_int(f.get("current_lsn")) or 0 for f in same]
    reference = max(known) if known else 0
    replayed = lsn_to_int(chosen.get("replay_lsn")) or 0
    lag = max(0, reference - replayed)
    if lag > max_lag_bytes and not force:
        raise PlanError(
            "refusing to promote %s: it has replayed up to %s, %d bytes behind the most advanced "
            "known position %s (failover_max_lag_bytes=%d)%s. Resume or wait for replay, or accept "
            "the gap with -e failover_max_lag_bytes=%d (or -e failover_force=true)."
            % (candidate, int_to_lsn(replayed), lag, int_to_lsn(reference), max_lag_bytes,
               "; WAL replay is paused there (SELECT pg_wal_replay_resume())" if chosen.get("replay_paused") else "",
               lag + 1))
    loss = None
    # Only a cleanly stopped old primary knows its last WAL position (the shutdown
    # checkpoint); after a crash the control file lags behind what it wrote.
    old_facts = reachable.get(old, {}) if old else {}
    if str(old_facts.get("cluster_state", "")).startswith("shut down") and old_facts.get("position_lsn"):
        loss = max(0, (lsn_to_int(old_facts["position_lsn"]) or 0) - _position(chosen))
    fence = sorted(h for h, f in reachable.items()
                   if h != candidate and (h == old or f.get("role") not in ("replica", "absent")))
    if not old:
        method = FENCE_NONE
    elif old in reachable:
        method = FENCE_SSH
    elif confirm_dead == old:
        method = FENCE_OPERATOR
    elif fence_command:
        method = FENCE_COMMAND
    else:
        method = FENCE_SELF
    # The old primary and fenced former primaries may hold what the new primary lacks:
    # resync.yml rejoins them, on purpose.
    repoint = sorted(h for h, f in replicas.items() if h not in (candidate, old) and not f.get("fenced"))
    return {
        "action": "promote",
        "candidate": candidate,
        "primary": candidate,
        "old_primary": old,
        "old_primary_reachable": bool(old and old in reachable),
        "fence": fence,
        "fence_method": method,
        "repoint": repoint,
        "lag_bytes": lag,
        "possible_loss_bytes": loss,
        "unreachable_replicas": unknown,
        "accepted_loss": bool(accept_loss and synchronous and unknown),
        "epoch": next_epoch(nodes),
        "candidate_timeline": _rank(chosen)[0],
        "candidate_position_lsn": int_to_lsn(_position(chosen)),
        "candidate_replay_lsn": int_to_lsn(replayed),
        "reference_lsn": int_to_lsn(reference),
        "reason": "%s is the most advanced reachable replica (timeline %s, %s)" % (
            candidate, _rank(chosen)[0], int_to_lsn(_position(chosen))) if not requested
        else "%s was requested with new_primary" % candidate,
    }


def _interrupted_switchover(nodes):
    """(old primary, candidate, epoch) of a switchover stopped after the old primary's clean
    stop and before the promotion, or None. Only a clean stop leaves a shutdown checkpoint
    that is the last WAL the old primary wrote; the candidate must replay past it first."""
    reachable = reachable_nodes(nodes)
    epoch = max([int(f.get("epoch") or 0) for f in reachable.values()] + [0])
    stopped = [h for h, f in reachable.items()
               if clean_fenced_stop(f) and not f.get("running") and f.get("position_lsn")
               and int(f.get("epoch") or 0) == epoch]
    if len(stopped) != 1:
        return None
    target = reachable[stopped[0]].get("recorded_primary")
    facts = reachable.get(target) or {}
    if target == stopped[0] or facts.get("role") != "replica" or facts.get("fenced"):
        return None
    return stopped[0], target, epoch


def left_behind(nodes, primary, addresses=None):
    """Nodes the last move to `primary` did not finish with: its predecessor, cleanly
    stopped and fenced for this very move (same epoch, recording `primary`), and replicas
    that do not stream from it. A fenced node from anything else is resync.yml's."""
    epoch = int(nodes[primary].get("epoch") or 0)
    address = (addresses or {}).get(primary)
    behind = []
    for host, facts in reachable_nodes(nodes).items():
        if host == primary:
            continue
        if facts.get("fenced"):
            if (clean_fenced_stop(facts) and not facts.get("running")
                    and facts.get("recorded_primary") == primary and int(facts.get("epoch") or 0) == epoch):
                behind.append(host)
        elif _standby(facts) and address:
            receiver = facts.get("wal_receiver") or {}
            # An older epoch: streaming from it already (switchover.yml points the other
            # replicas at the candidate before the stop), but the move's epoch never reached it.
            if (receiver.get("status") != "streaming" or receiver.get("sender_host") != address
                    or int(facts.get("epoch") or 0) < epoch):
                behind.append(host)
    return sorted(behind)


def switchover_plan(nodes, requested=None, max_lag_bytes=16 * 1024 * 1024, addresses=None):
    """Choose what switchover.yml does; the current primary must be up, or a switchover
    interrupted after its clean stop is finished. A re-run finishes an interrupted one
    (promotes its candidate, or rejoins the nodes it left behind) before a new move."""
    unreachable = sorted(h for h, f in nodes.items() if not f.get("reachable", True) or f.get("failed"))
    writable = writable_nodes(nodes)
    if not writable:
        pending = _interrupted_switchover(nodes)
        if pending and requested in (None, "", pending[1]):
            old, candidate, epoch = pending
            return {"action": "switchover", "primary": old, "candidate": candidate, "epoch": epoch,
                    "resumed": True, "lag_bytes": 0, "wait_replay_lsn": nodes[old]["position_lsn"],
                    "rejoin": sorted(h for h in reachable_nodes(nodes) if h != candidate),
                    "repoint": sorted(h for h, f in reachable_nodes(nodes).items()
                                      if h not in (old, candidate) and f.get("role") == "replica"),
                    "reason": "finishing the switchover from %s to %s: %s stopped cleanly at %s and is "
                              "fenced; %s is promoted once it replayed that far"
                              % (old, candidate, old, nodes[old]["position_lsn"], candidate)}
        if pending:
            raise PlanError(
                "a switchover from %s to %s stopped after %s's clean stop; finish it first: "
                "ansible-playbook switchover.yml (without new_primary, or with new_primary=%s)"
                % (pending[0], pending[1], pending[0], pending[1]))
    if len(writable) != 1:
        raise PlanError(
            "a switchover needs exactly one writable primary; found %s. %s"
            % (", ".join(writable) or "none",
               "Use failover.yml when the primary is down." if not writable
               else "Stop all but one and resync the others first."))
    primary = writable[0]
    behind = left_behind(nodes, primary, addresses)
    if behind:
        if requested not in (None, "", primary):
            raise PlanError(
                "the last move to %s is unfinished: %s not streaming from it. Finish it first with "
                "ansible-playbook switchover.yml (without new_primary), then move to %s."
                % (primary, ", ".join(behind) + (" is" if len(behind) == 1 else " are"), requested))
        return {"action": "finish", "primary": primary, "candidate": primary, "rejoin": behind, "repoint": behind,
                "epoch": int(nodes[primary].get("epoch") or 0),
                "reason": "%s is the primary; finishing the move to it: rejoining %s" % (primary, ", ".join(behind))}
    if requested == primary:
        return {"action": "none", "primary": primary, "candidate": primary, "repoint": [], "rejoin": [],
                "reason": "%s is already the primary; nothing to do" % primary}
    # Without new_primary this is a re-run after an interruption: finish, never start a
    # move nobody named (a run killed after its last rejoin left nothing to finish).
    if not requested:
        return {"action": "none", "primary": primary, "candidate": primary, "repoint": [], "rejoin": [],
                "reason": "no interrupted switchover to finish: %s is the primary and every node follows it. "
                          "To move the primary, name the new one: -e new_primary=HOST" % primary}
    replicas = {h: f for h, f in reachable_nodes(nodes).items() if f.get("role") == "replica"}
    if requested and requested not in replicas:
        raise PlanError("new_primary=%s is not a running replica (%s). Replicas: %s"
                        % (requested, "unreachable" if requested in unreachable
                           else nodes.get(requested, {}).get("role", "not a database host"),
                           ", ".join(sorted(replicas)) or "none"))
    if not replicas:
        raise PlanError("no running replica to switch over to")
    current = lsn_to_int(nodes[primary].get("current_lsn")) or 0
    candidate = requested
    chosen = replicas[candidate]
    lag = max(0, current - (lsn_to_int(chosen.get("replay_lsn")) or 0))
    receiver = chosen.get("wal_receiver") or {}
    if receiver.get("status") != "streaming":
        raise PlanError("%s is not streaming from the primary (wal receiver: %s); a switchover needs a "
                        "streaming replica. Run resync.yml -e node=%s first."
                        % (candidate, receiver.get("status") or "none", candidate))
    if lag > max_lag_bytes:
        raise PlanError("%s is %d bytes behind the primary (switchover_max_lag_bytes=%d); wait until it "
                        "catches up%s." % (candidate, lag, max_lag_bytes,
                                           " (its WAL replay is paused)" if chosen.get("replay_paused") else ""))
    if unreachable:
        raise PlanError("database host(s) %s unreachable: a planned switchover needs every node. "
                        "Fix them or resync them later and use --limit to exclude them."
                        % ", ".join(unreachable))
    # The candidate is promoted at the same time as the stop, once it has replayed the
    # primary's shutdown checkpoint: one written after this position (switchover.yml).
    return {"action": "switchover", "primary": primary, "candidate": candidate, "epoch": next_epoch(nodes),
            "shutdown_after": nodes[primary].get("current_lsn"),
            "repoint": sorted(h for h in replicas if h != candidate), "lag_bytes": lag,
            "rejoin": sorted(h for h in nodes if h != candidate),
            "reason": "planned move from %s to %s" % (primary, candidate)}


# basebackup policies for resync_action
BASEBACKUP_NEVER = "never"  # fail rather than copy


BASEBACKUP_SAFE = "safe"    # only an empty data directory or a known replica's


BASEBACKUP_ALWAYS = "always"  # also a diverged former primary (its data is moved aside)


def resync_action(local, primary, allow_rewind=True, basebackup=BASEBACKUP_SAFE):
    """How to make `local` a streaming replica of `primary`.

    local: role, has_data, system_identifier, standby_signal, wal_receiver, upstream,
    timeline, position_lsn
    primary: system_identifier, address, and fork_lsn: where the primary's history left
    the local node's timeline (None when the node is on the primary's timeline)
    Returns (action, reason); action in none, repoint, rewind, basebackup.
    Raises PlanError when policy forbids every way.
    """
    host = local.get("host", "this node")
    if local.get("cloning"):
        if basebackup == BASEBACKUP_NEVER:
            raise PlanError("%s holds a clone that was cut short and resync_basebackup=never forbids cloning it "
                            "again" % host)
        # Only ever a partial copy of the primary: nothing of its own to keep.
        return "basebackup", "a clone from the primary was cut short; it is cloned again"
    if not local.get("has_data"):
        if basebackup == BASEBACKUP_NEVER:
            raise PlanError("%s has no data directory and resync_basebackup=never forbids cloning it" % host)
        return "basebackup", "the data directory is empty"
    if local.get("role") == "primary" and local.get("address") and local.get("address") == primary.get("address"):
        raise PlanError("%s is the primary itself; nothing to resync" % host)
    if str(local.get("system_identifier")) != str(primary.get("system_identifier")):
        if _standby(local) and basebackup in (BASEBACKUP_SAFE, BASEBACKUP_ALWAYS):
            return "basebackup", "a replica of another cluster (system identifier %s, primary has %s)" % (
                local.get("system_identifier"), primary.get("system_identifier"))
        if basebackup == BASEBACKUP_ALWAYS:
            return "basebackup", "holds another cluster; its data directory is moved aside"
        raise PlanError(
            "%s holds a different PostgreSQL cluster (system identifier %s, the primary has %s) that "
            "is not a replica: it may be the only copy of its data. Refusing to overwrite it. Move the "
            "data directory away yourself, or run resync.yml -e node=%s -e resync_basebackup=always."
            % (host, local.get("system_identifier"), primary.get("system_identifier"), host))
    fork = primary.get("fork_lsn")
    # What it replayed (or must replay: the minimum recovery point of a stopped node) is
    # what counts: WAL received past the fork but not replayed is replaced by the new
    # timeline's, as a torn last record of a dead primary always is.
    position = lsn_to_int(local.get("replay_lsn")) or lsn_to_int(local.get("position_lsn"))
    # A former primary stopped cleanly: its shutdown checkpoint is the last WAL it wrote.
    # If the primary's timeline forked off after it (a switchover: the candidate replayed
    # it before its promotion), nothing diverged and it follows without pg_rewind.
    if clean_fenced_stop(local) and fork is not None and position is not None and position < fork:
        return "repoint", ("a former primary that stopped cleanly at %s, before the primary's timeline forked off "
                           "at %s: nothing diverged" % (int_to_lsn(position), int_to_lsn(fork)))
    if _standby(local) and fork is not None and position is not None and position > fork:
        # It replayed WAL of the old timeline past the point where the primary's timeline
        # forked off: it cannot follow that timeline.
        if allow_rewind:
            return "rewind", ("a replica that replayed WAL of timeline %s up to %s, past the fork point %s of "
                              "the primary's timeline: pg_rewind discards what diverged"
                              % (local.get("timeline"), int_to_lsn(position), int_to_lsn(fork)))
        raise PlanError(
            "%s replayed WAL of timeline %s up to %s, past %s where the primary's timeline forked off: it may "
            "hold commits the primary lacks and cannot follow it. Look at it, then rejoin it on purpose with: "
            "ansible-playbook resync.yml -e node=%s"
            % (host, local.get("timeline"), int_to_lsn(position), int_to_lsn(fork), host))
    receiver = local.get("wal_receiver") or {}
    if (local.get("role") == "replica" and receiver.get("status") == "streaming"
            and receiver.get("sender_host") == primary.get("address")):
        return "none", "already streaming from %s" % primary.get("address")
    if _standby(local):
        return "repoint", "a replica of this cluster; pointed at %s" % primary.get("address")
    if allow_rewind:
        return "rewind", "a former primary of this cluster; pg_rewind discards what diverged"
    if basebackup == BASEBACKUP_ALWAYS:
        return "basebackup", "a former primary of this cluster; its data directory is moved aside"
    raise PlanError(
        "%s holds a former primary of this cluster (not a replica, not in recovery): it may hold "
        "transactions the primary lacks, so site.yml will not overwrite it. Rejoin it on purpose "
        "with: ansible-playbook resync.yml -e node=%s" % (host, host))


# pg_cluster_plan's options: the module and its controller-side action plugin validate
# the task's arguments with this one spec.
PLAN_ARGUMENT_SPEC = dict(
    mode=dict(type="str", required=True, choices=["converge", "failover", "switchover", "resync"]),
    node=dict(type="str"),
    nodes=dict(type="dict", required=True),
    inventory_primary=dict(type="str"),
    old_primary=dict(type="str"),
    new_primary=dict(type="str"),
    max_lag_bytes=dict(type="int", default=16 * 1024 * 1024),
    force=dict(type="bool", default=False),
    synchronous=dict(type="bool", default=False),
    accept_loss=dict(type="bool", default=False),
    fence_command=dict(type="bool", default=False),
    confirm_dead=dict(type="str"),
    addresses=dict(type="dict"),
)
PLAN_REQUIRED_IF = [("mode", "converge", ["inventory_primary"]), ("mode", "resync", ["node"])]


def decide(params):
    """pg_cluster_plan's answer for validated params (PLAN_ARGUMENT_SPEC); raises PlanError."""
    nodes = params["nodes"]
    mode = params["mode"]
    recorded = recorded_primary(nodes)
    if mode == "converge":
        primary, reason = converge_primary(nodes, params["inventory_primary"], recorded)
        epochs = [int(n.get("epoch") or 0) for n in nodes.values()]
        return {"action": "converge", "primary": primary, "reason": reason, "epoch": max(epochs + [1]),
                "replicas": sorted(h for h in nodes if h != primary)}
    if mode == "failover":
        return failover_plan(nodes, old_primary=recorded or params["old_primary"], requested=params["new_primary"],
                             max_lag_bytes=params["max_lag_bytes"], force=params["force"],
                             synchronous=params["synchronous"], accept_loss=params["accept_loss"],
                             fence_command=params["fence_command"], confirm_dead=params["confirm_dead"],
                             addresses=params["addresses"])
    if mode == "resync":
        return resync_plan(nodes, params["node"])
    return switchover_plan(nodes, requested=params["new_primary"], max_lag_bytes=params["max_lag_bytes"],
                           addresses=params["addresses"])
