# Sourced by scripts/demo.sh and scripts/demo-sqlite.sh.

# converge_twice LOG INVENTORY [ansible-playbook args...]: site.yml twice; the second run
# must report changed=0 (the roles are idempotent), or the demo stops.
converge_twice() {
  local log=$1 inventory=$2
  shift 2
  echo "== site.yml, first run"
  ansible-playbook -i "$inventory" "$@" site.yml | tee "$log.1"
  echo "== site.yml, second run (must report changed=0)"
  ansible-playbook -i "$inventory" "$@" site.yml > "$log.2"
  local recap
  recap=$(sed -n '/^PLAY RECAP/,/^$/p' "$log.2")
  echo "$recap"
  if grep -Eq 'changed=[1-9]|failed=[1-9]|unreachable=[1-9]' <<<"$recap"; then
    echo "demo: the second run changed something; the roles are not idempotent (log: $log.2)" >&2
    exit 1
  fi
}
