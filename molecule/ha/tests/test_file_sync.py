"""Uploaded files follow the active app server (roles/file_sync).

Files go in through the app VIP, hastack-file-sync pushes them from the VIP holder to the
other app server into a new snapshot and switches `current` to it; a file being written
never shows up there half-copied; the receiver's key runs no shell; after the app VIP moves,
the new holder serves the synced files and sends to the old one. Runs before test_ha.py
(which kills an app server) and leaves exactly one VIP holder behind.
"""

import hashlib
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from hastack_testlib import holds, sh, wait_until

APP_VIP = "198.18.4.101"
APP_SERVERS = {"ha-app1": "198.18.4.21", "ha-app2": "198.18.4.22"}
UPLOADS = "/var/lib/hastack-app/uploads"
RECEIVED = "/var/lib/hastack-file-sync/folders/uploads"
CURRENT = f"{RECEIVED}/current"
KEYS = "/etc/hastack-file-sync/ssh"
KEY = f"{KEYS}/id_ed25519"
SSH = f"ssh -i {KEY} -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile={KEYS}/known_hosts"


def put(name, body, base=f"http://{APP_VIP}:8000"):
    request = urllib.request.Request(f"{base}/api/files/{name}", data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def roles():
    [holder] = [node for node in APP_SERVERS if holds(node, APP_VIP)]
    [other] = [node for node in APP_SERVERS if node != holder]
    return holder, other


def sync(node):
    """One run of the timer's job (the lock makes a run the timer started meanwhile wait)."""
    result = sh(node, "flock /run/lock/hastack-file-sync.lock /usr/local/sbin/hastack-file-sync run", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def sums(node, folder):
    out = sh(node, f"cd {folder} && sha256sum -- *").stdout
    return {line.split(None, 1)[1].lstrip("*"): line.split()[0] for line in out.splitlines()}


def test_the_timer_runs_on_both_servers_and_the_receiver_key_runs_no_shell():
    holder, other = roles()
    for node in APP_SERVERS:
        assert sh(node, "systemctl is-enabled hastack-file-sync.timer").stdout.strip() == "enabled"
        assert sh(node, "systemctl is-active hastack-file-sync.timer").stdout.strip() == "active"
    target = f"hastack-sync@{APP_SERVERS[other]}"
    shell = sh(holder, f"{SSH} {target} id")
    assert shell.returncode != 0 and "uid=" not in shell.stdout, shell.stdout + shell.stderr
    assert "refused" in shell.stderr
    # rrsync is write-only: reading anything back (here /etc) through the key is refused.
    read = sh(holder, f"rsync -e '{SSH}' {target}:/etc/passwd /tmp/stolen")
    assert read.returncode != 0 and sh(holder, "test -e /tmp/stolen").returncode != 0
    # The key is the sender's alone, its private half readable by root only.
    assert sh(holder, f"stat -c '%a %U' {KEY}").stdout.split() == ["600", "root"]


def test_uploaded_files_arrive_byte_identical_on_the_passive_server():
    holder, other = roles()
    files = {f"file-{n:02d}.bin": os.urandom(n * 37_000 + 1) for n in range(20)}
    for name, body in files.items():
        put(name, body)
    expected = {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}
    assert "pushed" in sync(holder)
    received = sums(other, CURRENT)
    assert {name: received.get(name) for name in expected} == expected
    # The passive server's next run puts them into its live folder, owned by the app: its app
    # serves them as soon as it gets the VIP. (Its timer may have been first.)
    sync(other)
    assert {name: sums(other, UPLOADS).get(name) for name in expected} == expected
    assert sh(other, f"stat -c %U {UPLOADS}/file-03.bin").stdout.strip() == "hastack-app"
    served = sh(other, "curl -sf http://127.0.0.1:8000/api/files/file-07.bin | sha256sum").stdout.split()[0]
    assert served == expected["file-07.bin"]
    # A second push hard-links the unchanged files to the previous snapshot.
    sync(holder)
    assert int(sh(other, f"stat -c %h {CURRENT}/file-05.bin").stdout) >= 2
    snapshots = sh(other, f"ls {RECEIVED}/snapshots").stdout.split()
    assert 2 <= len(snapshots) <= 5
    # What status.yml shows: the age of the received snapshot, the last successful push.
    status = sh(other, "/usr/local/sbin/hastack-file-sync status").stdout
    assert status.startswith("passive (receives); uploads: received 20") and " s ago)" in status, status
    status = sh(holder, "/usr/local/sbin/hastack-file-sync status").stdout
    assert f"push {APP_SERVERS[other]} uploads: last ok 20" in status and "FAILED" not in status, status


def test_a_file_being_written_never_appears_half_copied():
    holder, other = roles()
    # The poller records what the passive server's current/ shows of big.bin, every 20 ms.
    sh(other, "rm -f /tmp/seen /tmp/seen.stop")
    subprocess.run(["podman", "exec", "-d", other, "sh", "-c",
                    f"while [ ! -e /tmp/seen.stop ]; do stat -L -c %s {CURRENT}/big.bin >> /tmp/seen 2>/dev/null"
                    " || echo none >> /tmp/seen; sleep 0.02; done"], check=True)
    # Written slowly the way the app writes (a '.' temporary file, then a rename), 48 MiB
    # over ~5 s, while pushes run one after another.
    subprocess.run(["podman", "exec", "-d", holder, "runuser", "-u", "hastack-app", "--", "sh", "-c",
                    f"for i in $(seq 48); do head -c 1048576 /dev/urandom; sleep 0.1; done > {UPLOADS}/.big.tmp"
                    f" && sync && mv {UPLOADS}/.big.tmp {UPLOADS}/big.bin"], check=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and sh(other, f"test -e {CURRENT}/big.bin").returncode != 0:
        sync(holder)
    sync(holder)
    sh(other, "touch /tmp/seen.stop")
    time.sleep(0.2)
    whole = sh(holder, f"sha256sum {UPLOADS}/big.bin").stdout.split()[0]
    assert sh(other, f"sha256sum {CURRENT}/big.bin").stdout.split()[0] == whole
    seen = sh(other, "cat /tmp/seen").stdout.split()
    assert "none" in seen and str(48 * 1048576) in seen, seen[-5:]
    assert set(seen) == {"none", str(48 * 1048576)}, f"current/ showed a partial big.bin: {sorted(set(seen))}"
    assert sh(other, f"ls -A {CURRENT}/ | grep '^\\.'").stdout == "", "a temporary file was synced"


def test_after_the_app_vip_moves_the_new_active_server_sends():
    holder, other = roles()
    sync(other)  # applies what it received last
    sh(holder, "systemctl stop keepalived")
    try:
        wait_until(lambda: holds(other, APP_VIP), timeout=15, message=f"the app VIP on {other}")
        # The new active server serves what was synced before the move.
        with urllib.request.urlopen(f"http://{APP_VIP}:8000/api/files/file-11.bin", timeout=10) as response:
            assert len(response.read()) == 11 * 37_000 + 1
        body = os.urandom(300_000)
        put("after-move.bin", body)
        out = sync(other)
        assert f"pushed {UPLOADS} to {APP_SERVERS[holder]}" in out
        assert sums(holder, CURRENT).get("after-move.bin") == hashlib.sha256(body).hexdigest()
        # The old holder, now passive, sends nothing.
        assert "pushed" not in sync(holder)
    finally:
        sh(holder, "systemctl start keepalived")
    time.sleep(3)  # nopreempt: the VIP stays where it is
    assert holds(other, APP_VIP) and not holds(holder, APP_VIP)
