#!/usr/bin/env bash
# promtool check rules and promtool test rules on hastack's alert rules (make promtool,
# make test): the template of roles/prometheus rendered with the role's defaults, the unit
# tests in tests/promtool/. promtool runs in the cluster image, which has Debian's
# prometheus package: nothing is installed on this machine for it.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${HASTACK_CLUSTER_IMAGE:-localhost/hastack-debian-cluster:bookworm}
out=.cache/promtool
rm -rf "$out" && mkdir -p "$out"
ANSIBLE_CONFIG=$PWD/ansible.cfg ansible localhost -c local -i localhost, \
  -e ansible_python_interpreter="$(command -v python3)" -e @roles/prometheus/defaults/main.yml \
  -m ansible.builtin.template \
  -a "src=roles/prometheus/templates/etc/prometheus/rules/hastack.yml.j2 dest=$out/hastack.yml mode=0644" >/dev/null 2>&1 || { echo "rendering the rules failed" >&2; exit 1; }
cp tests/promtool/*.yml "$out/"
podman run --rm --network none -v "$PWD/$out:/rules:ro" -w /rules "$IMAGE" \
  sh -c 'promtool check rules hastack.yml && promtool test rules hastack_test.yml'
