#!/usr/bin/env bash
# Converge the lab with site.yml, converge it again to prove nothing changes, and
# print what was built. Called by `make demo` after `make lab`.
set -euo pipefail
cd "$(dirname "$0")/.."
inventory=inventories/lab
export ANSIBLE_VAULT_PASSWORD_FILE=$PWD/.lab/vault-pass
log=$(mktemp -d)/site

echo "== site.yml, first run"
ansible-playbook -i "$inventory" site.yml | tee "$log.1"
echo "== site.yml, second run (must report changed=0)"
ansible-playbook -i "$inventory" site.yml > "$log.2"
recap=$(sed -n '/^PLAY RECAP/,/^$/p' "$log.2")
echo "$recap"
if grep -Eq 'changed=[1-9]|failed=[1-9]|unreachable=[1-9]' <<<"$recap"; then
  echo "demo: the second run changed something; the roles are not idempotent (log: $log.2)" >&2
  exit 1
fi

echo
echo "== What was built"
ansible-playbook -i "$inventory" status.yml | sed -n '/msg:/,/^$/p'
echo "Every host: common baseline (chrony, admin user, hardened sshd, security updates)."
echo
echo "demo: lab converged, second run changed=0. Next:"
echo "  export ANSIBLE_VAULT_PASSWORD_FILE=.lab/vault-pass"
echo "  ansible-playbook failover.yml        # see docs/RUNBOOK.md"
echo "  ssh -i .lab/ssh/id_ed25519 hastack@198.18.1.11"
