#!/usr/bin/env bash
# `make test`: lint, unit tests and every Molecule scenario, with a timing per stage
# and one closing line that adds up every pytest run (unit and testinfra).
set -uo pipefail
cd "$(dirname "$0")/.."

scenarios=${SCENARIOS:-$(ls molecule/*/molecule.yml | xargs -n1 dirname | xargs -n1 basename | sort)}
logdir=$(mktemp -d /tmp/hastack-test.XXXXXX)
status=0
summary=()

stage() {
  local name=$1; shift
  local start=$SECONDS rc
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$logdir/$name.log"
  rc=${PIPESTATUS[0]}
  summary+=("$(printf '%-22s %-6s %4ss' "$name" "$([ "$rc" = 0 ] && echo ok || echo FAILED)" $((SECONDS - start)))")
  [ "$rc" = 0 ] || status=1
  return "$rc"
}

stage yamllint yamllint -s .
stage ansible-lint ansible-lint
stage ruff ruff check .
stage unit pytest -q -p no:cacheprovider tests/unit
stage promtool bash scripts/promtool.sh
for scenario in $scenarios; do
  stage "molecule-$scenario" molecule test -s "$scenario"
done

# pytest's closing line, e.g. "==== 56 passed, 1 failed in 12.7s ====" or "12 passed in 0.1s".
read -r passed failed < <(cat "$logdir"/*.log | awk '
  /^(=+ )?[0-9]+ (passed|failed|error).* in [0-9.]+s/ {
    for (i = 1; i < NF; i++) {
      n = $i + 0; w = $(i + 1); sub(/[,=]+$/, "", w)
      if (w == "passed") p += n
      else if (w == "failed" || w == "error" || w == "errors") f += n
    }
  }
  END { print p + 0, f + 0 }')

echo
echo "=== summary (logs in $logdir)"
printf '%s\n' "${summary[@]}"
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then
  failed=1  # a stage failed outside pytest (lint, converge, idempotence)
fi
echo "tests: $passed passed, $failed failed"
exit "$status"
