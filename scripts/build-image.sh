#!/usr/bin/env bash
# Build the lab's images, each only when it is missing or out of date (no container
# registry is reachable from this kind of machine):
#   base     localhost/hastack-debian:bookworm, a debootstrap of Debian 12 with systemd,
#            sshd and python3: the lab and the `default` Molecule scenario (bare servers).
#   cluster  localhost/hastack-debian-cluster:bookworm, the base image with the packages
#            of scripts/cluster-packages.txt already installed: the other Molecule
#            scenarios, so they do not download and unpack PostgreSQL and co. on every
#            host of every run. Rebuilt when the list, this script or the base image
#            changes (a hash of the three is the image's label).
# Usage: build-image.sh [base|cluster|all]   (default: base; cluster builds base first)
set -euo pipefail

IMAGE=${HASTACK_IMAGE:-localhost/hastack-debian:bookworm}
CLUSTER_IMAGE=${HASTACK_CLUSTER_IMAGE:-localhost/hastack-debian-cluster:bookworm}
PACKAGES=$(dirname "$0")/cluster-packages.txt
MIRROR=${HASTACK_MIRROR:-}
what=${1:-base}

log() { printf '[build-image] %s\n' "$*"; }

build_base() {
  if podman image exists "$IMAGE"; then
    log "image $IMAGE present"
    return 0
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
  rm -rf "$root"
  trap - EXIT
}

build_cluster() {
  local want have name old
  want=$( { podman image inspect --format '{{.Id}}' "$IMAGE"; cat "$PACKAGES" "$0"; } | sha256sum | cut -c1-16)
  have=$(podman image inspect --format '{{ index .Labels "hastack.cluster" }}' "$CLUSTER_IMAGE" 2>/dev/null || true)
  if [ "$have" = "$want" ]; then
    log "image $CLUSTER_IMAGE present"
    return 0
  fi
  old=$(podman image inspect --format '{{.Id}}' "$CLUSTER_IMAGE" 2>/dev/null || true)
  # Groups of the list, in order: "recommends" / "no-recommends" lines switch the mode.
  local recommends=() plain=() mode=recommends line
  while read -r line; do
    line=${line%%#*}; line=${line//[[:space:]]/}
    case $line in
      '') ;;
      recommends|no-recommends) mode=$line ;;
      *) if [ "$mode" = recommends ]; then recommends+=("$line"); else plain+=("$line"); fi ;;
    esac
  done < "$PACKAGES"

  name=hastack-image-build-$$
  podman rm -f "$name" >/dev/null 2>&1 || true
  trap 'podman rm -f "'"$name"'" >/dev/null 2>&1 || true' EXIT
  log "installing ${#recommends[@]}+${#plain[@]} packages into $CLUSTER_IMAGE (about a minute)"
  podman run --name "$name" -i "$IMAGE" /bin/bash -s <<SCRIPT
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# Nothing starts while the image is built (no systemd runs here).
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
# As on a host the roles converge: no "main" cluster (roles/postgresql writes the same
# setting in createcluster.d before installing; hastack creates its clusters itself).
had_dir=\$(test -d /etc/postgresql-common/createcluster.d && echo yes || true)
mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/zz-image-build.conf
apt-get update -qq
apt-get install -y -qq --install-recommends ${recommends[*]} >/dev/null
apt-get install -y -qq --no-install-recommends ${plain[*]} >/dev/null
apt-get clean
rm -f /usr/sbin/policy-rc.d /etc/postgresql-common/createcluster.d/zz-image-build.conf
# The monitoring daemons and HAProxy start only where their roles enable them (scenarios
# with hastack_monitoring or hastack_haproxy), not on every host of every scenario.
for unit in prometheus prometheus-alertmanager prometheus-node-exporter prometheus-postgres-exporter haproxy; do
  rm -f /etc/systemd/system/multi-user.target.wants/\$unit.service
done
if [ -z "\$had_dir" ] && ! dpkg -S /etc/postgresql-common/createcluster.d >/dev/null 2>&1; then
  rmdir /etc/postgresql-common/createcluster.d
fi
test ! -e /etc/postgresql/15/main
# ssl-cert made a snakeoil key at install time: each host makes its own at first boot.
rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem
cat > /etc/systemd/system/hastack-snakeoil.service <<'UNIT'
[Unit]
Description=Make this host's own snakeoil certificate (the image ships none)
ConditionPathExists=!/etc/ssl/private/ssl-cert-snakeoil.key
Before=postgresql.service

[Service]
Type=oneshot
ExecStart=/usr/sbin/make-ssl-cert generate-default-snakeoil

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/hastack-snakeoil.service /etc/systemd/system/multi-user.target.wants/hastack-snakeoil.service
# Each container gets its own machine-id at first boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
# Stale package lists, as in the base image: the roles' apt tasks update them.
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/lib/apt/periodic/update-success-stamp
touch -d @0 /var/lib/apt/lists
SCRIPT
  podman commit --quiet \
    --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL=SIGRTMIN+3' \
    --change "LABEL hastack.cluster=$want" "$name" "$CLUSTER_IMAGE" >/dev/null
  podman rm -f "$name" >/dev/null
  trap - EXIT
  # The previous build, unless a container still uses it.
  if [ -n "$old" ]; then podman image rm "$old" >/dev/null 2>&1 || true; fi
  log "built $CLUSTER_IMAGE"
}

case $what in
  base) build_base ;;
  cluster|all) build_base; build_cluster ;;
  *) echo "usage: $0 [base|cluster|all]" >&2; exit 2 ;;
esac
