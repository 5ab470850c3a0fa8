#!/usr/bin/env bash
# `make demo VARIANT=sqlite`: the SQLite path on the lab's app and backup hosts
# (inventories/lab-sqlite): converge site.yml twice (the second must change nothing), show
# the status, write entries through the app VIP and prove they are in Litestream's replica
# on backup1 by restoring it on app2, then kill app1's host and fail over to app2. Use a fresh lab (make lab-down first) when the lab
# ran the PostgreSQL variant before.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/demo-lib.sh
inventory=inventories/lab-sqlite
export ANSIBLE_VAULT_PASSWORD_FILE=$PWD/.lab/vault-pass
vault=(-e @inventories/lab/group_vars/all/vault.yml)
log=$(mktemp -d)/site

converge_twice "$log" "$inventory" "${vault[@]}"

echo
echo "== Entries through the app VIP, then Litestream's replica restored on app2"
for i in $(seq 1 20); do
  curl -fsS -X POST -H 'Content-Type: application/json' \
    -d "{\"machine\": \"lathe\", \"member\": \"demo $i\", \"minutes\": 5}" http://198.18.1.101:8000/api/entries > /dev/null
done
count=$(curl -fsS http://198.18.1.101:8000/api/entries/count)
echo "app VIP: $count"
sleep 2  # Litestream's sync interval (1 s) and one sync
ansible -i "$inventory" "${vault[@]}" app2 -b -m ansible.builtin.shell -a \
  "rm -f /tmp/demo-restore.db*; litestream restore -config /etc/litestream.yml -o /tmp/demo-restore.db /var/lib/hastack-app/app.db \
   && python3 -c \"import sqlite3; c = sqlite3.connect('/tmp/demo-restore.db'); \
   print('replica restored on app2:', c.execute('SELECT count(*) FROM usage_entries').fetchone()[0], 'entries,', \
   'integrity_check', c.execute('PRAGMA integrity_check').fetchone()[0])\"; rm -f /tmp/demo-restore.db*" | sed -n 's/^replica/replica/p'

echo
echo "== A backup on backup1: a checked copy of the replica, the uploads and the configuration"
ansible -i "$inventory" "${vault[@]}" backup -b -m ansible.builtin.shell \
  -a "/usr/local/sbin/hastack-backup dump >/dev/null 2>&1 && /usr/local/sbin/hastack-backup list | head -1" > "$log.dump" \
  || { cat "$log.dump"; echo "demo: the backup failed (log: $log.dump)" >&2; exit 1; }
sed -n 's/^\([0-9]\{8\}T[0-9]\{6\}Z .*\)/backup1: \1/p' "$log.dump"

echo
echo "== Failover drill: kill app1's host, run failover.yml (the operator attests app1 is off)"
before=$(curl -fsS http://198.18.1.101:8000/api/entries/count | python3 -c 'import json, sys; print(json.load(sys.stdin)["count"])')
sleep 2  # one sync interval and one sync: what was written before is in the replica
podman kill hastack-lab-app1 > /dev/null
killed=$(date +%s.%N)
ansible-playbook -i "$inventory" "${vault[@]}" failover.yml -e failover_confirm_dead=app1 > "$log.failover" \
  || { sed -n '/msg:/,/^$/p' "$log.failover"; echo "demo: failover.yml failed (log: $log.failover)" >&2; exit 1; }
sed -n '/msg:/,/^$/p' "$log.failover"
after=$(curl -fsS --retry 20 --retry-delay 1 --retry-all-errors http://198.18.1.101:8000/api/entries/count \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["count"])')
echo "demo: kill -> app2 serving through the app VIP: $(python3 -c "import time; print(round(time.time() - $killed, 1))") s;" \
  "entries before the kill: $before, served by app2: $after"
if [ "$after" -lt "$before" ]; then
  echo "demo: entries written before the kill are missing" >&2
  exit 1
fi
podman start hastack-lab-app1 > /dev/null

echo
echo "== Status"
ansible-playbook -i "$inventory" "${vault[@]}" status.yml | sed -n '/msg:/,/^$/p' || true
echo
echo "demo: SQLite variant converged, second run changed=0. Next:"
echo "  export ANSIBLE_VAULT_PASSWORD_FILE=.lab/vault-pass"
echo "  ansible-playbook -i $inventory -e @inventories/lab/group_vars/all/vault.yml failover.yml"
