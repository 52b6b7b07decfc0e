#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: static checks, the live page's unit
# tests (web/test, Node's test runner), then pytest.
# Extra arguments go to pytest (e.g. `hack/test.sh -m unit`).
set -euo pipefail
cd "$(dirname "$0")/.."

hack/lint.sh
npm --prefix web test --silent

set +e
.venv/bin/pytest --durations=40 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  # pytest's "no tests collected": a filter or a layout mistake, never a pass.
  echo "test: pytest collected no tests; refusing to report success" >&2
  exit 1
fi
exit "$status"
