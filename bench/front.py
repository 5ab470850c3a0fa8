#!/usr/bin/env python3
"""The front door on the lab: requests per second through HAProxy over TLS at the app VIP
against the same requests straight to one app server (same run, as a ratio), and the
failed requests during a rolling deploy and during an app host kill.

    .venv/bin/python bench/front.py [--seconds 10] [--clients 8] [--deploy] [--kill]

Throughput: CLIENTS threads, each on one keep-alive connection, GET /api/entries/count
(a read from PostgreSQL through the DB VIP) for SECONDS, first through
https://APP_VIP/ (certificate verified against .lab/ca/ca.crt), then straight to
http://app1:8000/, then through the VIP again; the VIP's figure is the mean of its two.
--deploy: a client posts entries over HTTPS, one new connection each, while deploy.yml
rolls a new release out (a git copy of app/ with one commit) and back to the bundled app.
--kill: the same client while the VIP holder's host is killed; the host is started again
afterwards and waited for until its HAProxy serves.
"""

import argparse
import http.client
import json
import os
import pathlib
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchlib import ROOT, playbook, sh

# The lab's; --vip, --apps and --ca point the script at another set of hosts.
LAB = {"vip": "198.18.1.101", "ca": str(ROOT / ".lab" / "ca" / "ca.crt")}
APPS = {"hastack-lab-app1": "198.18.1.21", "hastack-lab-app2": "198.18.1.22"}  # podman container: address


def connect(target):
    if target == "vip":
        return http.client.HTTPSConnection(LAB["vip"], 443, timeout=5,
                                           context=ssl.create_default_context(cafile=LAB["ca"]))
    return http.client.HTTPConnection(APPS[next(iter(APPS))], 8000, timeout=5)


def throughput(target, seconds, clients):
    counts, errors = [0] * clients, [0] * clients
    deadline = time.monotonic() + seconds

    def worker(n):
        connection = connect(target)
        while time.monotonic() < deadline:
            try:
                connection.request("GET", "/api/entries/count")
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    counts[n] += 1
                else:
                    errors[n] += 1
            except (OSError, http.client.HTTPException):
                errors[n] += 1
                connection.close()
                connection = connect(target)
        connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds, sum(errors)


class Stream(threading.Thread):
    """POSTs over HTTPS through the VIP, one new connection each; (time, ok, detail)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.results, self.stopped = [], threading.Event()

    def run(self):
        body = json.dumps({"machine": "bench", "member": "front", "minutes": 1})
        while not self.stopped.is_set():
            started = time.monotonic()
            try:
                connection = connect("vip")
                connection.request("POST", "/api/entries", body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                connection.close()
                self.results.append((started, response.status == 201, response.status))
            except (OSError, http.client.HTTPException) as exc:
                self.results.append((started, False, type(exc).__name__))
                # A client waits a little before it tries again (a dying host's kernel
                # refuses connections in microseconds: thousands of "failures" otherwise).
                time.sleep(0.05)

    def finish(self):
        self.stopped.set()
        self.join(10)
        failed = [r for r in self.results if not r[1]]
        return len(self.results), failed


def release_repo(where):
    repo = pathlib.Path(where) / "app"
    shutil.copytree(ROOT / "app", repo, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@hastack.test",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@hastack.test")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench release"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)
    return repo


def vip_holder():
    for name in APPS:
        if f" {LAB['vip']}/" in sh(["podman", "exec", name, "ip", "-o", "-4", "addr", "show"]).stdout:
            return name
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--deploy", action="store_true")
    parser.add_argument("--kill", action="store_true")
    parser.add_argument("--vip", default=LAB["vip"], help="the app VIP (not the lab's: e.g. a Molecule scenario's)")
    parser.add_argument("--apps", default=",".join(f"{k}={v}" for k, v in APPS.items()),
                        help="app servers as container=address,...; the first is the direct target")
    parser.add_argument("--ca", default=LAB["ca"], help="the CA certificate HTTPS is verified with")
    args = parser.parse_args()
    LAB.update(vip=args.vip, ca=args.ca)
    APPS.clear()
    APPS.update(pair.split("=", 1) for pair in args.apps.split(","))
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"command: bench/front.py --seconds {args.seconds:g} --clients {args.clients}")

    vip1, vip1_err = throughput("vip", args.seconds, args.clients)
    direct, direct_err = throughput("direct", args.seconds, args.clients)
    vip2, vip2_err = throughput("vip", args.seconds, args.clients)
    vip = (vip1 + vip2) / 2
    print(f"through HAProxy over TLS (app VIP, both app servers): {vip:.0f} req/s ({vip1:.0f}, {vip2:.0f}; "
          f"{vip1_err + vip2_err} errors)")
    print(f"straight to {next(iter(APPS))}:8000 (one app server, plain HTTP): {direct:.0f} req/s ({direct_err} errors)")
    print(f"ratio VIP / direct: {vip / direct:.2f}")

    if args.deploy:
        with tempfile.TemporaryDirectory() as tmp:
            repo = release_repo(tmp)
            for label, extra in (("deploy a git release", ["-e", f"app_git_repo={repo}", "-e", "app_git_version=main"]),
                                 ("deploy back to the bundled app", [])):
                stream = Stream()
                stream.start()
                seconds, _ = playbook("deploy.yml", *extra)
                sent, failed = stream.finish()
                print(f"{label}: deploy.yml {seconds:.1f} s, {sent} POSTs, {len(failed)} failed {failed[:3]}")

    if args.kill:
        holder = vip_holder()
        stream = Stream()
        stream.start()
        time.sleep(2)
        killed = time.monotonic()
        sh(["podman", "kill", holder])
        time.sleep(8)
        sent, failed = stream.finish()
        window = max((r[0] for r in failed), default=killed) - killed
        print(f"{holder} killed: {sent} POSTs, {len(failed)} failed, the last failed one started "
              f"{window:.2f} s after the kill {[r[2] for r in failed][:5]}")
        sh(["podman", "start", holder])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if sh(["podman", "exec", holder, "curl", "-sf", "http://127.0.0.1:8405/ready"]).returncode == 0:
                break
            time.sleep(1)
        print(f"{holder} started again; its HAProxy serves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
