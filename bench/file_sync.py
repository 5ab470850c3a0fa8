#!/usr/bin/env python3
"""File sync time for ~1,000 uploaded files (roles/file_sync) between two app servers.

On the app server holding the app VIP, writes FILES files (default 1,000 of 4-64 KiB) into
a bench/ subfolder of the uploads folder, then times hastack-file-sync push (rsync over
SSH into a new snapshot + the receiver's commit):
  initial       every file new to the receiver;
  unchanged     nothing changed (hard links to the previous snapshot only);
  incremental   1 % of the files rewritten and 10 new ones.
Checks the receiver's current/ matches, then removes the bench files and pushes again.

Usage: .venv/bin/python bench/file_sync.py [--prefix ha-] [--files 1000]
  --prefix ha-            the molecule ha scenario, converged (molecule converge -s ha)
  --prefix hastack-lab-   the lab (make converge)
"""

import argparse
import subprocess
import sys
import time

UPLOADS = "/var/lib/hastack-app/uploads"
CURRENT = "/var/lib/hastack-file-sync/folders/uploads/current"
LOCK = "/run/lock/hastack-file-sync.lock"


def on(host, command, timeout=600):
    result = subprocess.run(["podman", "exec", host, "sh", "-c", command], capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        sys.exit(f"{host}: {command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def push(host):
    started = time.monotonic()
    on(host, f"flock {LOCK} /usr/local/sbin/hastack-file-sync push")
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default="ha-")
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    servers = [args.prefix + "app1", args.prefix + "app2"]
    vip = on(servers[0], "python3 -c \"import json; print(json.load(open('/etc/hastack-file-sync/config.json'))"
                         "['active_command'])\"").strip()
    active = [host for host in servers if subprocess.run(["podman", "exec", host, "sh", "-c", vip],
                                                          check=False).returncode == 0]
    if len(active) != 1:
        sys.exit(f"expected exactly one active app server, found {active}")
    sender = active[0]
    [receiver] = [host for host in servers if host != sender]
    make = (f"mkdir -p {UPLOADS}/bench && cd {UPLOADS}/bench && i=0; while [ $i -lt {args.files} ]; do "
            "head -c $(( (i % 16 + 1) * 4096 )) /dev/urandom > f$i; i=$((i+1)); done && "
            f"chown -R hastack-app: {UPLOADS}/bench")
    on(sender, make)
    size = on(sender, f"du -sk {UPLOADS}/bench").split()[0]
    print(f"{args.files} files, {int(size) / 1024:.1f} MiB, {sender} -> {receiver}")
    figures = {"initial": push(sender), "unchanged": push(sender)}
    changed = max(1, args.files // 100)
    on(sender, f"cd {UPLOADS}/bench && for i in $(seq 0 {changed - 1}); do head -c 8192 /dev/urandom > f$i; done"
               " && for i in $(seq 1 10); do head -c 8192 /dev/urandom > new$i; done")
    figures["incremental"] = push(sender)
    ours = on(sender, f"cd {UPLOADS}/bench && find . -type f -exec md5sum {{}} + | sort")
    theirs = on(receiver, f"cd {CURRENT}/bench && find . -type f -exec md5sum {{}} + | sort")
    on(sender, f"rm -rf {UPLOADS}/bench")
    push(sender)
    for name, seconds in figures.items():
        print(f"{name:12s} {seconds:6.2f} s")
    if ours != theirs:
        sys.exit("the receiver's current/ differs from the sender's folder")
    print(f"receiver's current/ identical ({args.files + 10} files)")


if __name__ == "__main__":
    main()
