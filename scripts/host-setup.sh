#!/usr/bin/env bash
# Prepare this machine to run podman containers that boot systemd.
# Idempotent: safe to run before every lab or test run (see docs/LAB.md for why
# each step exists).
set -euo pipefail

log() { printf '[host-setup] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "host-setup: must run as root (rootful podman is what works on this kind of machine)" >&2
  exit 1
fi

need=()
for cmd in podman debootstrap ssh ssh-keygen; do
  command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
if [ "${#need[@]}" -gt 0 ]; then
  log "installing podman, debootstrap and the SSH client (missing: ${need[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq podman debootstrap openssh-client uidmap >/dev/null
fi

# Quirk 1: the VM lacks CAP_SYS_RESOURCE, so crun cannot raise RLIMIT_NOFILE above
# the hard limit; pin container ulimits at or below it. A drop-in keeps the distro
# defaults (CONTAINERS_CONF= would replace them and change default capabilities).
conf_dir=/etc/containers/containers.conf.d
conf_file=$conf_dir/50-hastack-ulimits.conf
hard_nofile=$(ulimit -Hn)
[ "$hard_nofile" = unlimited ] && hard_nofile=1048576
[ "$hard_nofile" -gt 20000 ] && hard_nofile=20000
want=$(printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n' "$hard_nofile" "$hard_nofile")
if [ ! -f "$conf_file" ] || [ "$(cat "$conf_file")" != "$want" ]; then
  log "writing $conf_file"
  mkdir -p "$conf_dir"
  printf '%s\n' "$want" > "$conf_file"
fi

# Quirk 2: cgroups v1 hybrid with only hugetlb left on cgroup2 makes crun refuse to
# start containers; mounting hugetlb as a v1 hierarchy takes it off cgroup2.
if [ -f /sys/fs/cgroup/unified/cgroup.controllers ] \
   && grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers \
   && ! mountpoint -q /sys/fs/cgroup/hugetlb; then
  log "mounting the hugetlb cgroup v1 hierarchy"
  mkdir -p /sys/fs/cgroup/hugetlb
  mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
fi

log "ok: $(podman --version)"
