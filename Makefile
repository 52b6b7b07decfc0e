# The README's two commands are `make dev` (the main job) and `make test` (the suite).
# Both install what they need first (hack/setup.sh) and build the Kubernetes binaries
# on first use (cached under ~/.cache/agentstack).

.PHONY: setup build dev test lint bench

setup:
	hack/setup.sh

build: setup
	.venv/bin/agentstack dev build

dev: build
	.venv/bin/agentstack dev up

lint: setup
	hack/lint.sh

test: build
	hack/test.sh

bench: build
	hack/bench.sh
