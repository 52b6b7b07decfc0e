#!/usr/bin/env bash
# The benchmarks whose tables bench/RESULTS.md records, one after the other, as
# `make bench` runs them (about 77 minutes on 2 cores; run nothing else meanwhile).
# Tables go to stdout, progress to stderr. `hack/bench.sh --quick` is a smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."

py=.venv/bin/python
quick=()
if [ "${1:-}" = "--quick" ]; then
  quick=(--quick)
fi

run() {
  echo
  echo "## \$ $*"
  "$@"
}

# The operator against the naive Kopf operator, same stacks, control plane and Redis.
if [ ${#quick[@]} -eq 0 ]; then
  run "$py" -m bench.operator_scale --compare --stacks 1000 --interval 10 --consumer ack --runners 1
  run "$py" -m bench.operator_scale --stacks 10000 --baseline 1000 --interval 10 \
    --consumer ack --runners 1 --no-status-warmup
else
  run "$py" -m bench.operator_scale --compare --stacks 100 --interval 10 --consumer ack \
    --runners 1 --window 20
fi
# The operator with real runners (the default 100 -> 1,000 stacks at 5 s).
run "$py" -m bench.operator_scale "${quick[@]}"
run "$py" -m bench.trace_latency "${quick[@]}"
run "$py" -m bench.input_latency "${quick[@]}"
run "$py" -m bench.runner_throughput "${quick[@]}"
run "$py" -m bench.tracing_overhead "${quick[@]}"
run "$py" -m bench.api_latency "${quick[@]}"
run "$py" -m bench.recall_latency "${quick[@]}"
run "$py" -m bench.longevity "${quick[@]}"
run "$py" -m bench.namespace_budget "${quick[@]}"
run "$py" -m bench.fair_share "${quick[@]}"
run "$py" -m bench.checkpoints "${quick[@]}"
