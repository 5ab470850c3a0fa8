#!/usr/bin/env bash
# Build the lab's Debian 12 systemd image with debootstrap, only when it is missing
# (no container registry is reachable from this kind of machine).
set -euo pipefail

IMAGE=${HASTACK_IMAGE:-localhost/hastack-debian:bookworm}
MIRROR=${HASTACK_MIRROR:-}

log() { printf '[build-image] %s\n' "$*"; }

if podman image exists "$IMAGE"; then
  log "image $IMAGE present"
  exit 0
fi

if [ -z "$MIRROR" ]; then
  # Use the mirror this machine already uses: it is the one we are allowed to reach.
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=$(awk '/^deb / && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
fi

root=$(mktemp -d /var/tmp/hastack-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT

log "debootstrap bookworm from $MIRROR (about a minute)"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,openssh-server,iproute2,iputils-ping,procps,sudo,ca-certificates,gnupg \
  bookworm "$root" "$MIRROR" >/dev/null

# Each container must get its own machine-id at first boot.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# Host keys are generated per container at first boot, never shared through the image.
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat > "$root/etc/systemd/system/ssh.service.d/hostkeys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
# Security updates come from the same mirror family as the base system.
security=${MIRROR%/debian}/debian-security
cat > "$root/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $security bookworm-security main
SRC
# No package lists in the image, and an old timestamp on their folder: apt's
# cache_valid_time must see them as stale so the first converge runs apt-get update.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
touch -d @0 "$root/var/lib/apt/lists"

log "importing into podman as $IMAGE"
tar -C "$root" -c . | podman import \
  --change 'CMD ["/sbin/init"]' \
  --change "STOPSIGNAL=SIGRTMIN+3" - "$IMAGE" >/dev/null 2>&1
log "built $IMAGE"
