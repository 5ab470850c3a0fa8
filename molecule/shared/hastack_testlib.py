"""Helpers for the Molecule verifiers: run hastack's playbooks against the scenario's
inventory, and look inside the podman hosts."""

import http.client
import json
import os
import pathlib
import re
import ssl
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def playbook_command(name, *extra, inventories=()):
    """(argv, env) of ansible-playbook on the scenario's inventory (podman connections),
    with inventories laid over it (e.g. SSH connections, which a firewall inside a host
    can cut)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    sources = ["-i", str(EPHEMERAL / "inventory")] + [arg for path in inventories for arg in ("-i", str(path))]
    return ["ansible-playbook", *sources, str(ROOT / name), *extra], env


def playbook(name, *extra, inventories=()):
    argv, env = playbook_command(name, *extra, inventories=inventories)
    started = time.monotonic()
    try:
        result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        # Where it hung is the only clue a CI log keeps: its output so far.
        print((exc.stdout or b"").decode(errors="replace")[-6000:],
              (exc.stderr or b"").decode(errors="replace")[-3000:])
        raise
    result.seconds = time.monotonic() - started
    print(result.stdout[-6000:], result.stderr[-3000:])
    return result


def recap_changed(output):
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M)}


def sh(node, command, timeout=60):
    return subprocess.run(["podman", "exec", node, "sh", "-c", command], capture_output=True, text=True,
                          timeout=timeout, check=False)


def psql(node, sql, db="hastack"):
    result = subprocess.run(["podman", "exec", node, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", db,
                             "-c", sql], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip()


def holds(node, address):
    return f" {address}/" in sh(node, "ip -o -4 addr show").stdout


def wait_until(check, timeout=20, message="condition", interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {message}")


def password(name):
    return (EPHEMERAL / f"password_{name}").read_text(encoding="utf-8").split()[0]


class HttpsClient(threading.Thread):
    """Requests one after another, each on a new TLS connection: a POST of an entry, then
    a GET of /health. Records (time, what, status or error, id)."""

    def __init__(self, address, cafile, machine):
        super().__init__(daemon=True)
        self.address, self.machine = address, machine
        self.results, self.stopped = [], threading.Event()
        self.context = ssl.create_default_context(cafile=str(cafile))

    def request(self, method, path, body=None):
        connection = http.client.HTTPSConnection(self.address, 443, timeout=5, context=self.context)
        try:
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            return response.status, data
        finally:
            connection.close()

    def run(self):
        entry = json.dumps({"machine": self.machine, "member": "client", "minutes": 1})
        while not self.stopped.is_set():
            for method, path, body, good in (("POST", "/api/entries", entry, 201), ("GET", "/health", None, 200)):
                started = time.time()
                try:
                    status, data = self.request(method, path, body)
                    entry_id = json.loads(data)["id"] if status == 201 else None
                    self.results.append((started, method, status if status == good else f"HTTP {status}", entry_id))
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    self.results.append((started, method, f"{type(exc).__name__}: {exc}", None))
                    # As a browser or API client would: not thousands of instant retries
                    # while a dying host's kernel still refuses connections.
                    time.sleep(0.05)

    def stop(self):
        self.stopped.set()
        self.join(10)
        return self.results
