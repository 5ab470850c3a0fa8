#!/usr/bin/env bash
# The lab: one podman container per host of inventories/lab, booting systemd, with a
# static address on the podman network hastack-lab and sshd reachable with the lab key.
#   scripts/lab.sh up      create or start every lab host (idempotent)
#   scripts/lab.sh down    remove the lab hosts and the network
#   scripts/lab.sh status  list the lab hosts
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${HASTACK_IMAGE:-localhost/hastack-debian:bookworm}
INVENTORY=$here/inventories/lab
LABDIR=$here/.lab
PREFIX=hastack-lab-
ADMIN=hastack
ANSIBLE_INVENTORY_BIN=${ANSIBLE_INVENTORY_BIN:-$here/.venv/bin/ansible-inventory}

log() { printf '[lab] %s\n' "$*"; }
die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

# "name address" per lab host, plus the network settings, from the inventory.
read_inventory() {
  "$ANSIBLE_INVENTORY_BIN" -i "$INVENTORY" --vault-password-file "$VAULT_PASS" --list 2>/dev/null | python3 -c '
import ipaddress, json, sys
inv = json.load(sys.stdin)
hv = inv["_meta"]["hostvars"]
names = sorted(hv)
anyhost = hv[names[0]]
print("NET", anyhost["hastack_lab_network"], anyhost["hastack_lab_subnet"], anyhost["hastack_lab_gateway"])
allowed = ipaddress.ip_network("198.18.0.0/15")
for name in names:
    addr = hv[name]["ansible_host"]
    if ipaddress.ip_address(addr) not in allowed:
        sys.exit(f"lab host {name} has {addr}, outside 198.18.0.0/15")
    print("HOST", name, addr)
'
}

ensure_network() {
  local net=$1 subnet=$2 gw=$3
  if podman network exists "$net"; then
    local have
    have=$(podman network inspect "$net" --format '{{range .Subnets}}{{.Subnet}} {{end}}')
    [[ " $have " == *" $subnet "* ]] || die "network $net exists with subnet '$have', expected $subnet: run 'make lab-down' first"
  else
    log "creating network $net $subnet"
    podman network create --subnet "$subnet" --gateway "$gw" "$net" >/dev/null
  fi
}

ensure_key() {
  mkdir -p "$LABDIR/ssh"
  chmod 700 "$LABDIR" "$LABDIR/ssh"
  [ -f "$LABDIR/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C hastack-lab -f "$LABDIR/ssh/id_ed25519"
}

# The lab's secrets: random passwords in an ansible-vault file, as in production. The
# vault password stays in .lab/ (git-ignored); export ANSIBLE_VAULT_PASSWORD_FILE to it.
VAULT_PASS=$LABDIR/vault-pass
VAULT_FILE=$INVENTORY/group_vars/all/vault.yml
VAULT_VARS="vault_postgresql_replication_password vault_postgresql_rewind_password vault_postgresql_app_password vault_postgresql_backup_password vault_keepalived_auth_pass vault_sentinel_secret"
# Creates the vault file, and adds secrets a newer checkout needs to an existing one.
ensure_vault() {
  if [ ! -s "$VAULT_PASS" ]; then
    (umask 077; head -c 32 /dev/urandom | base64 > "$VAULT_PASS")
  fi
  local tmp name added=0
  tmp=$(mktemp)
  if [ -f "$VAULT_FILE" ] && ! "$here/.venv/bin/ansible-vault" view --vault-password-file "$VAULT_PASS" "$VAULT_FILE" > "$tmp" 2>/dev/null; then
    # .lab/ was lost (its vault password with it): new secrets, so rebuild the hosts too.
    log "cannot decrypt $VAULT_FILE with .lab/vault-pass: generating new lab secrets (run make lab-down first if the hosts exist)"
    : > "$tmp"
  fi
  [ -s "$tmp" ] || printf -- '---\n' > "$tmp"
  for name in $VAULT_VARS; do
    grep -q "^$name:" "$tmp" && continue
    # keepalived's VRRP password is at most 8 characters.
    printf '%s: "%s"\n' "$name" "$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c "$([ "$name" = vault_keepalived_auth_pass ] && echo 8 || echo 24)")" >> "$tmp"
    added=1
  done
  if [ "$added" = 1 ]; then
    "$here/.venv/bin/ansible-vault" encrypt --vault-password-file "$VAULT_PASS" --output "$VAULT_FILE" "$tmp" >/dev/null
    log "wrote $VAULT_FILE (encrypted; password in .lab/vault-pass)"
  fi
  rm -f "$tmp"
}

# What a provider's cloud-init does on a rented server: an admin user with our key
# and sudo. Everything else is the playbooks' job.
bootstrap_host() {
  local c=$1
  podman exec "$c" bash -ec "
    id -u $ADMIN >/dev/null 2>&1 || useradd -m -s /bin/bash -G sudo $ADMIN
    install -d -m 700 -o $ADMIN -g $ADMIN /home/$ADMIN/.ssh
    echo '$(cat "$LABDIR/ssh/id_ed25519.pub")' > /home/$ADMIN/.ssh/authorized_keys
    chown $ADMIN:$ADMIN /home/$ADMIN/.ssh/authorized_keys
    chmod 600 /home/$ADMIN/.ssh/authorized_keys
    [ -f /etc/sudoers.d/90-lab-bootstrap ] || { echo '$ADMIN ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-lab-bootstrap; chmod 440 /etc/sudoers.d/90-lab-bootstrap; }
  "
}

wait_ssh() {
  local name=$1 addr=$2 i
  for i in $(seq 1 100); do
    if ssh -q -i "$LABDIR/ssh/id_ed25519" -o BatchMode=yes -o ConnectTimeout=2 \
         -o UserKnownHostsFile="$LABDIR/ssh/known_hosts" -o StrictHostKeyChecking=accept-new \
         "$ADMIN@$addr" true 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  die "$name ($addr) does not answer on SSH after 20 s: 'podman logs $PREFIX$name' shows its boot"
}

up() {
  bash "$here/scripts/host-setup.sh"
  bash "$here/scripts/build-image.sh"
  ensure_key
  ensure_vault
  local net="" subnet="" gw="" hosts=() kind a b c
  while read -r kind a b c; do
    case $kind in
      NET) net=$a subnet=$b gw=$c ;;
      HOST) hosts+=("$a=$b") ;;
    esac
  done < <(read_inventory)
  [ -n "$net" ] || die "could not read $INVENTORY (is the venv installed? run 'make venv')"
  ensure_network "$net" "$subnet" "$gw"

  local entry name addr cname state created=0
  for entry in "${hosts[@]}"; do
    name=${entry%%=*} addr=${entry#*=} cname=$PREFIX$name
    state=$(podman container inspect "$cname" --format '{{.State.Status}}' 2>/dev/null || echo absent)
    case $state in
      running) ;;
      absent)
        log "creating $name ($addr)"
        podman run -d --name "$cname" --hostname "$name" \
          --network "$net" --ip "$addr" \
          --systemd=always --cap-add NET_ADMIN,NET_RAW \
          --label hastack.lab=1 "$IMAGE" /sbin/init >/dev/null
        created=1 ;;
      *)
        log "starting $name ($state)"
        podman start "$cname" >/dev/null ;;
    esac
  done
  # Recreated hosts come with new host keys.
  [ "$created" = 0 ] || : > "$LABDIR/ssh/known_hosts"
  for entry in "${hosts[@]}"; do
    name=${entry%%=*} addr=${entry#*=}
    bootstrap_host "$PREFIX$name"
    wait_ssh "$name" "$addr"
  done
  log "up: ${#hosts[@]} hosts on $net ($subnet); ssh -i .lab/ssh/id_ed25519 $ADMIN@<address>"
}

down() {
  local ids
  ids=$(podman ps -a --filter label=hastack.lab=1 --format '{{.Names}}')
  if [ -n "$ids" ]; then
    log "removing $(echo "$ids" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    # A container that is stopping while it is removed can make the first rm fail.
    podman rm -f -t 2 $ids >/dev/null 2>&1 || podman rm -f $ids >/dev/null
  fi
  if podman network exists hastack-lab; then
    podman network rm hastack-lab >/dev/null
  fi
  rm -f "$LABDIR/ssh/known_hosts"
  log "down"
}

status() {
  podman ps -a --filter label=hastack.lab=1 --format 'table {{.Names}}\t{{.Status}}\t{{.Networks}}'
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
