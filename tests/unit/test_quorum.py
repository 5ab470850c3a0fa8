"""The one-primary rules (module_utils/hastack_quorum.py): lease, epoch, proof, start-up."""

import pytest

from module_utils import hastack_quorum as q

MEMBERS = ["app1", "backup1", "db1", "db2", "db3"]  # majority 3


def echo_from(node, t, boot="b"):
    return {"echo": {node: [t, boot]}}


def test_majority():
    assert [q.majority(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 2, 3, 3, 4]


def test_messages_are_signed():
    packet = q.encode(b"secret", {"v": q.PROTOCOL, "n": "db1", "e": 3})
    assert q.decode(b"secret", packet)["e"] == 3
    assert q.decode(b"other", packet) is None
    tampered = packet[:-2] + b"9}"
    assert q.decode(b"secret", tampered) is None


def test_lease_runs_out_with_the_majority_th_newest_echo():
    peers = {"db2": echo_from("db1", 10.0), "db3": echo_from("db1", 9.0), "app1": echo_from("db1", 8.0)}
    # db1 needs 2 others: the second newest echo (9.0) + lease.
    assert q.lease_until("db1", "b", MEMBERS, peers, 1.0) == 10.0
    assert q.lease_until("db1", "b", MEMBERS, {"db2": echo_from("db1", 10.0)}, 1.0) is None
    # Echoes of an earlier boot are another clock: they do not count.
    stale = {"db2": echo_from("db1", 10.0, "old"), "db3": echo_from("db1", 9.0)}
    assert q.lease_until("db1", "b", MEMBERS, stale, 1.0) is None
    assert q.lease_until("db1", "b", ["db1"], {}, 1.0) == float("inf")


def peer(received, epoch=5, writable=False):
    return {"received": received, "e": epoch, "w": writable}


def test_a_writable_node_fences_itself_when_a_member_has_a_newer_epoch_or_the_lease_ran_out():
    local = {"node": "db1", "epoch": 5, "writable": True}
    peers = {"db2": peer(99.8, epoch=6)}
    assert "epoch 5 is older than the epoch 6 that db2 knows of" in q.self_fence_reason(
        local, MEMBERS, peers, 100.0, 1.0, 101.0)
    # A witness has no record of its own but passes on the newest epoch it heard of.
    witness = {"app1": dict(peer(99.8, epoch=0), ke=6)}
    assert "that app1 knows of" in q.self_fence_reason(local, MEMBERS, witness, 100.0, 1.0, 101.0)
    # A newer epoch heard longer than a lease ago no longer speaks for the cluster.
    assert q.self_fence_reason(local, MEMBERS, {"db2": peer(98.0, epoch=6)}, 100.0, 1.0, 101.0) is None
    assert "lost the lease" in q.self_fence_reason(local, MEMBERS, {}, 100.0, 1.0, 99.9)
    assert q.self_fence_reason(dict(local, writable=False), MEMBERS, {}, 100.0, 1.0, 99.9) is None


def test_the_vip_needs_the_lease_and_the_newest_epoch():
    local = {"node": "db1", "epoch": 5, "fenced": False}
    assert q.may_hold_vip(local, {"db2": peer(99.9, epoch=5)}, 100.0, 1.0, 100.5)
    assert not q.may_hold_vip(local, {"db2": peer(99.9, epoch=6)}, 100.0, 1.0, 100.5)
    assert not q.may_hold_vip(local, {}, 100.0, 1.0, 99.0)
    assert not q.may_hold_vip(dict(local, fenced=True), {}, 100.0, 1.0, 100.5)


def state(silences, own=None, now=100.0, ages=None):
    """The candidate db2's sentinel state; silences: member -> how long it had not heard db1.
    Timings: lease 1.0, interval 0.2, watchdog 1.0, fence 0.3: a silent primary refuses
    writes 1.5 s after it went silent at the latest."""
    ages = ages or {}
    return {"node": "db2", "now": now, "members": MEMBERS, "lease": 1.0, "interval": 0.2, "watchdog": 1.0,
            "fence_seconds": 0.3,
            "silence": {"db1": own} if own is not None else {},
            "peers": {m: {"age": ages.get(m, 0.05), "h": {"db1": s}} for m, s in silences.items()}}


def test_a_killed_primary_is_proven_fenced_once_lease_and_hold_have_passed():
    # db1 died 1.5 s ago: every member has not heard it since.
    st = state({"db3": 1.45, "app1": 1.45, "backup1": 1.45}, own=1.5)
    proof = q.self_fence_proof(st, 100.0, "db1")
    assert proof["safe_in"] == pytest.approx(0.1 + 1.5 - 1.5, abs=0.06)  # margin + reaction - silence
    assert proof["safe"] == (proof["safe_in"] == 0)
    early = q.self_fence_proof(state({"db3": 0.95, "app1": 0.95, "backup1": 0.95}, own=1.0), 100.0, "db1")
    assert not early["safe"] and early["safe_in"] is None  # not yet a whole lease of silence
    soon = q.self_fence_proof(state({"db3": 1.15, "app1": 1.15, "backup1": 1.15}, own=1.2), 100.0, "db1")
    assert not soon["safe"] and soon["safe_in"] == pytest.approx(0.45, abs=0.06)
    slow = dict(state({"db3": 1.45, "app1": 1.45, "backup1": 1.45}, own=1.5), watchdog=3.0)
    assert q.self_fence_proof(slow, 100.0, "db1")["safe_in"] == pytest.approx(0.1 + 3.3 - 1.5, abs=0.06)
    later = q.self_fence_proof(state({"db3": 2.9, "app1": 2.9, "backup1": 2.9}, own=2.95), 100.0, "db1")
    assert later["safe"] and len(later["witnesses"]) == 3


def test_a_primary_heard_recently_by_enough_members_is_alive():
    # Unreachable from the controller only: everyone still hears db1.
    st = state({"db3": 0.1, "app1": 0.2, "backup1": 0.1}, own=0.15)
    proof = q.self_fence_proof(st, 100.0, "db1")
    assert not proof["safe"] and proof["safe_in"] is None
    assert "db3 heard it" in proof["reason"]


def test_a_primary_that_still_has_a_majority_is_not_proven_fenced():
    # db1 cut off from db2 and db3 but still talking to both witnesses: with itself that
    # is 3 of 5, a majority. Only db2 and db3 report silence: not enough.
    st = state({"db3": 5.0, "app1": 0.1, "backup1": 0.1}, own=5.0)
    assert not q.self_fence_proof(st, 100.0, "db1")["safe"]


def test_old_reports_do_not_stretch_the_window():
    # db3's report is 4 s old: its silence window ended then, so it cannot vouch for now.
    st = state({"db3": 0.2, "app1": 3.0, "backup1": 3.0}, own=3.0, ages={"db3": 4.0})
    proof = q.self_fence_proof(st, 100.0, "db1")
    assert proof["safe"] and "db3" not in proof["witnesses"]


def start_state(peers, members=("db1", "db2", "db3")):
    return {"members": list(members), "lease": 1.0,
            "peers": {m: dict({"age": 0.1, "e": 5, "w": False}, **p) for m, p in peers.items()}}


def test_start_waits_for_a_majority_and_starts_the_recorded_primary():
    assert q.start_decision(start_state({}), "db1", "db1", 5)[0] == "wait"
    assert q.start_decision(start_state({"db2": {"age": 5.0}}), "db1", "db1", 5)[0] == "wait"
    assert q.start_decision(start_state({"db2": {}}), "db1", "db1", 5)[0] == "primary"
    # A brand-new cluster has no record yet.
    assert q.start_decision(start_state({"db2": {"e": 0}}), "db1", None, 0)[0] == "primary"


def test_start_fences_a_former_primary_that_only_witnesses_hear():
    # db1 comes back and hears two witnesses only (3 of 5 with itself): they know of epoch 6.
    st = start_state({"app1": {"e": 0, "ke": 6}, "backup1": {"e": 0, "ke": 6}}, members=MEMBERS)
    assert q.start_decision(st, "db1", "db1", 5) == ("fence", "app1 knows of cluster epoch 6, newer than "
                                                                      "this node's 5")


def test_start_fences_a_former_primary():
    assert q.start_decision(start_state({"db2": {"e": 6}}), "db1", "db1", 5)[0] == "fence"
    assert q.start_decision(start_state({"db2": {"w": True}}), "db1", "db1", 5)[0] == "fence"
    assert q.start_decision(start_state({"db2": {}}), "db1", "db2", 5)[0] == "fence"
