# ruff: noqa: S101, S108, S603, S607, S608 - a Molecule verifier (molecule/** has the same ignores in ruff.toml)
"""Secret rotation under a steady writer (rotate_secrets.yml).

A client writes through the app all along (bench/writer.py) while the primary's
pg_stat_replication is sampled every 0.2 s; the vault is "rotated" by writing new values
into the scenario's password files. Asserts: no failed write, the replicas stream again
within seconds, the old passwords are refused, the new ones accepted, and site.yml then
changes nothing.

Written for the `security` scenario; the host names and the app URL come from the
environment so it also runs on `ha` (ROTATE_DB=ha-db1,ha-db2 ROTATE_CLIENT=ha-client
ROTATE_APP_URL=http://198.18.4.101:8000).
"""

import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "molecule" / "shared"))
from hastack_testlib import EPHEMERAL, ROOT, playbook, psql, recap_changed, sh

DB = os.environ.get("ROTATE_DB", "sec-db1,sec-db2").split(",")
CLIENT = os.environ.get("ROTATE_CLIENT", "sec-out")
APP_URL = os.environ.get("ROTATE_APP_URL", "https://198.18.11.101")
LOG, REPL_LOG = "/tmp/rotate-acked", "/tmp/rotate-repl"
SECRETS = {"app": "hastack", "repl": "replicator", "rewind": "hastack_rewind"}


def primary():
    return next(node for node in DB if psql(node, "SELECT pg_is_in_recovery()", db="postgres") == "f")


def login(node, user, password, database="postgres"):
    """psql over TCP on the primary itself (loopback: scram-sha-256 like every remote rule)."""
    result = sh(node, f"PGPASSWORD='{password}' psql -XAtq -h 127.0.0.1 -U {user} -d {database} -c 'SELECT 1'")
    return result.returncode == 0, result.stderr


def replication_gaps(lines, replicas):
    """Longest time (s) any replica was missing from pg_stat_replication as streaming, and
    the replicas never seen streaming."""
    longest, last_seen = 0.0, {}
    for line in lines:
        at, _, rest = line.partition(" ")
        at = float(at)
        for name in replicas:
            if f"{name}|streaming" in rest:
                if name in last_seen:
                    longest = max(longest, at - last_seen[name])
                last_seen[name] = at
    return longest, set(replicas) - set(last_seen)


def test_rotation_under_a_steady_writer_fails_no_write_and_refuses_the_old_passwords():
    node = primary()
    replicas = [name.split("-", 1)[1] for name in DB if name != node]
    old = {name: (EPHEMERAL / f"password_{name}").read_text(encoding="utf-8") for name in SECRETS}
    for name, user in SECRETS.items():
        assert login(node, user, old[name].split()[0])[0], f"{user} cannot log in before the rotation"

    subprocess.run(["podman", "cp", str(ROOT / "bench" / "writer.py"), f"{CLIENT}:/tmp/writer.py"], check=True)
    sh(CLIENT, f"rm -f {LOG} {LOG}.stop")
    subprocess.run(["podman", "exec", "-d", CLIENT, "python3", "/tmp/writer.py", APP_URL, LOG, "600"], check=True)
    sh(node, f"rm -f {REPL_LOG}")
    subprocess.run(["podman", "exec", "-d", node, "sh", "-c",
                    f"while [ ! -e {REPL_LOG}.stop ]; do echo $(date +%s.%N) $(runuser -u postgres -- psql -XAtq "
                    f"-c 'SELECT application_name, state FROM pg_stat_replication') >> {REPL_LOG}; sleep 0.2; done"],
                   check=True)
    time.sleep(3)
    try:
        new = {}
        for name in SECRETS:
            new[name] = "rot" + os.urandom(12).hex()
            (EPHEMERAL / f"password_{name}").write_text(new[name] + "\n", encoding="utf-8")
        result = playbook("rotate_secrets.yml", "-e", "rotate=app,replication,rewind")
        assert result.returncode == 0, result.stdout[-3000:]
        time.sleep(3)
    finally:
        sh(CLIENT, f"touch {LOG}.stop")
        sh(node, f"touch {REPL_LOG}.stop")
        time.sleep(2.5)

    lines = sh(CLIENT, f"cat {LOG}").stdout.splitlines()
    failed = [line for line in lines if line.startswith("err")]
    ok = [line for line in lines if line.startswith("ok")]
    gap, unseen = replication_gaps(sh(node, f"cat {REPL_LOG}").stdout.splitlines(), replicas)
    print(f"writes acknowledged {len(ok)}, failed {len(failed)}, longest replica gap {gap:.1f} s, "
          f"rotate_secrets.yml {result.seconds:.1f} s")
    assert not failed, failed[:10]
    assert len(ok) > 20, "the writer hardly wrote: the test proves nothing"
    assert not unseen, f"{unseen} never seen streaming: the gap measures nothing"
    assert gap < 5, f"a replica was away {gap:.1f} s"

    for name, user in SECRETS.items():
        accepted, error = login(node, user, old[name].split()[0])
        assert not accepted and "password authentication failed" in error, f"{user}: old password still works"
        assert login(node, user, new[name])[0], f"{user}: new password refused"
    assert psql(node, "SELECT count(*) FROM pg_roles WHERE rolname LIKE '%\\_rotate'", db="postgres") == "0"

    again = playbook("site.yml")
    assert again.returncode == 0
    assert set(recap_changed(again.stdout).values()) == {0}, recap_changed(again.stdout)
