# The README's two commands are `make dev` (the main job) and `make test` (the suite).
# Both install what they need first (hack/setup.sh) and build the Kubernetes binaries
# on first use (cached under ~/.cache/agentstack).

.PHONY: setup build dev test lint bench dashboards docs page release

setup:
	hack/setup.sh

build: setup
	.venv/bin/agentstack dev build

dev: build
	.venv/bin/agentstack dev up

# Publish the package's version to an OCI registry: make release REGISTRY=ghcr.io/OWNER
# (after podman login and helm registry login). RELEASE_FLAGS adds options of
# `agentstack dev release`, e.g. --plain-http, --key cosign.key --sbom-dir dist.
release: setup
	@test -n "$(REGISTRY)" || { echo "make release needs REGISTRY=host[:port][/path]" >&2; exit 2; }
	.venv/bin/agentstack dev release --registry "$(REGISTRY)" $(RELEASE_FLAGS)

lint: setup
	hack/lint.sh

# Rebuild the live page's script (api/agentstack_api/static/app.js) from web/src.
page: setup
	npm --prefix web run build

# Regenerate the chart's Grafana dashboards from code (devkit/agentstack_devkit/dashboards).
dashboards: setup
	.venv/bin/python -m agentstack_devkit.dashboards

# Regenerate the README's table of settings from the processes' settings models.
docs: setup
	.venv/bin/python -m agentstack_devkit.settingsdoc

test: build
	hack/test.sh

bench: build
	hack/bench.sh
