"""What the lab benchmarks share: running commands and playbooks against the lab, and
the log of acknowledged writes a client thread keeps while a benchmark runs."""

import os
import pathlib
import re
import subprocess
import sys
import threading
import time

import writer

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
           ANSIBLE_VAULT_PASSWORD_FILE=str(ROOT / ".lab" / "vault-pass"), ANSIBLE_NOCOLOR="1")


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, check=False, **kw)


def playbook(name, *extra):
    """(wall seconds, stdout) of a playbook run on the lab; exits on failure."""
    start = time.monotonic()
    out = sh([str(ROOT / ".venv/bin/ansible-playbook"), "-i", "inventories/lab", name, *extra], cwd=ROOT, env=ENV)
    if out.returncode:
        sys.exit(f"{name} failed:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}")
    return time.monotonic() - start, out.stdout


class AckedWrites(threading.Thread):
    """A client thread (run() in the subclass) appending (monotonic time, id, node) for
    every write the database acknowledged."""

    def __init__(self):
        super().__init__(daemon=True)
        self.acked, self.stop = [], threading.Event()

    def first_after(self, moment, node):
        """The first write committed on node after moment."""
        return next((t for t, _, n in list(self.acked) if t > moment and n == node), None)

    def longest_gap(self, start, end):
        times = [t for t, _, _ in list(self.acked) if start <= t <= end]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=None)

    def lost(self, stored_ids):
        """How many acknowledged ids stored_ids() lacks. The acknowledged ids are taken
        first: writes acknowledged while the query runs are not in its snapshot."""
        acked = {i for _, i, _ in list(self.acked)}
        return len(acked - stored_ids())


class AppClient(AckedWrites):
    """Posts entries through the app at url one after another (bench/writer.py's request):
    the app answers 201, with the node that committed it, only after COMMIT returned.
    Waits pause seconds after a failed attempt."""

    def __init__(self, url, pause):
        super().__init__()
        self.url, self.pause = url.rstrip("/") + "/api/entries", pause

    def run(self):
        while not self.stop.is_set():
            try:
                entry_id, node = writer.post(self.url)
                self.acked.append((time.monotonic(), entry_id, node))
            except (OSError, ValueError, KeyError):
                time.sleep(self.pause)


def app_password():
    """The app's database password from the lab's vault."""
    out = sh([str(ROOT / ".venv/bin/ansible-vault"), "view", "inventories/lab/group_vars/all/vault.yml"],
             cwd=ROOT, env=ENV)
    match = re.search(r'^vault_postgresql_app_password: "?([^"\n]+)"?$', out.stdout, re.M)
    if not match:
        sys.exit("cannot read the lab's app password (run make lab first): " + out.stderr)
    return match.group(1)
