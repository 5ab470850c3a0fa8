# -*- coding: utf-8 -*-
# The files hastack keeps on each database node, one constant per path: the cluster
# record (epoch and primary), keepalived's primary track file and the fence marker.
# The quorum track file and the sentinel's state are in hastack_quorum.

from __future__ import annotations

import json
import os
import pwd
import time

# Where failover/switchover record which node is the primary and the cluster epoch.
# keepalived's check script and the facts module read it; it is not replicated, so a
# node that was unreachable during a failover keeps its older epoch.
CLUSTER_STATE_FILE = "/var/lib/hastack/cluster.json"


# keepalived's track file for the DB VIP (weight 0: any value but 0 puts the instance
# in FAULT). Written together with the cluster state, so the VIP reacts to a promotion
# or a fence at once (inotify) instead of at the next run of the check script.
PRIMARY_TRACK_FILE = "/var/lib/hastack/primary.track"


def read_cluster_state(path=CLUSTER_STATE_FILE):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cluster_state(state, path=CLUSTER_STATE_FILE):
    """Atomically replace the cluster state file."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(state, handle, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def record_primary(epoch, primary, dry=False, path=CLUSTER_STATE_FILE, local=None, track_path=PRIMARY_TRACK_FILE):
    """Record the cluster epoch and its primary on this node; True when that is a change.

    epoch None records nothing; primary None keeps the recorded one. dry=True only
    tells whether it would change (check mode). local is this node's name ("" for a
    node that is never the primary, e.g. a fenced one): when given, the DB VIP's track
    file says whether this node is the recorded primary.
    """
    if epoch is None:
        return False
    state = read_cluster_state(path)
    primary = primary if primary is not None else state.get("primary")
    changed = False
    if (state.get("epoch"), state.get("primary")) != (epoch, primary):
        changed = True
        if not dry:
            state.update(epoch=epoch, primary=primary, updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            write_cluster_state(state, path)
    if local is not None:
        changed = write_track(bool(local) and primary == local, dry, track_path) or changed
    return changed


def write_track(is_primary, dry=False, path=PRIMARY_TRACK_FILE):
    """Write keepalived's track file: 0 lets this node hold the DB VIP, 1 does not."""
    # Replaced by a rename, never rewritten in place: keepalived must not read an empty file.
    return write_owned(path, "0\n" if is_primary else "1\n", mode=0o644, owner="root", dry=dry)


def write_owned(path, content, mode=0o640, owner="postgres", dry=False):
    """Atomically write a file owned by `owner`; False when it already has this content.
    dry=True only tells whether it would change."""
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == content:
                return False
    except OSError:
        pass
    if dry:
        return True
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    user = pwd.getpwnam(owner)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chown(tmp, user.pw_uid, user.pw_gid)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


FENCE_MARKER = "hastack.fenced"


def clone_marker(data_directory):
    """Beside the data directory (pg_basebackup needs it empty): present while a clone runs,
    so a clone cut short is recognised as one and not mistaken for another cluster."""
    return data_directory.rstrip("/") + ".hastack-cloning"
