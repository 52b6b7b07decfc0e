#!/usr/bin/env bash
# Install everything the project needs on a fresh machine, idempotently:
#   - a virtualenv in .venv with the project (editable), the dev kit (devkit/, editable;
#     never part of the product) and the dev tools, at the versions of constraints.txt
#     (re-run only when a pyproject.toml or constraints.txt changes);
#   - the live page's Node tooling (TypeScript, esbuild, ESLint, Prettier, tsx) in
#     web/node_modules, by `npm ci` at the versions of web/package-lock.json (re-run only
#     when web/package.json or the lock changes);
#   - Debian's redis-server and redis-sentinel, prometheus, chromium and chromium-driver, podman, buildah,
#     runc, debootstrap and lua-check (luacheck, for the Redis layer's scripts) if
#     missing; containerd, the CNI plugins, iptables, conntrack and iproute2 for the
#     dev node.
# The Kubernetes binaries and helm are built on first use by `agentstack dev build`
# (Go module proxy, cached under ~/.cache/agentstack); this script checks Go and Node
# (20.19 or newer, with npm) are there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Python 3.11 or newer is needed (found: $("$python" --version 2>&1 || echo none))"
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml devkit/pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing Python dependencies into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e '.[dev]' -e ./devkit
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Debian packages the tests use as real parts: redis-server (and redis-cli) and
# redis-sentinel (the failover tests' Sentinels), Prometheus
# (and promtool), headless Chromium with its WebDriver for the live page; podman,
# buildah, runc and debootstrap to build and run the project's image (no registry, no
# Docker engine: `agentstack dev image`); containerd, the CNI plugins (/usr/lib/cni),
# iptables, conntrack and iproute2 for the dev node that runs the chart's pods;
# luacheck (lua-check) for `make lint`.
missing=()
for pair in redis-server:redis-server redis-sentinel:redis-sentinel prometheus:prometheus promtool:prometheus \
            chromium:chromium chromedriver:chromium-driver podman:podman buildah:buildah \
            runc:runc debootstrap:debootstrap newuidmap:uidmap fuse-overlayfs:fuse-overlayfs \
            containerd:containerd ctr:containerd /usr/lib/cni/bridge:containernetworking-plugins \
            iptables:iptables conntrack:conntrack ip:iproute2 luacheck:lua-check; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo -n)
  else
    say "missing Debian packages (${missing[*]}) and this user cannot install them"
    exit 1
  fi
  readarray -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
  say "installing from Debian's packages: ${packages[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
  say "Go 1.24 or newer is needed to build the control plane and helm: install Go"
  exit 1
fi

# The live page (web/) is checked, tested and built with npm's tools, pinned by the lock
# (its built script is committed, so the wheel and the image need no Node).
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number);
              process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null \
   || ! command -v npm >/dev/null 2>&1; then
  found=$(node --version 2>/dev/null || echo none)
  say "Node 20.19 or newer, with npm, is needed for the live page's tools (found: $found)"
  exit 1
fi
web_stamp="web/node_modules/.installed-$(cat web/package.json web/package-lock.json | sha256sum | cut -c1-16)"
if [ ! -f "$web_stamp" ]; then
  say "installing the live page's tools into web/node_modules (npm ci)"
  npm --prefix web ci --no-audit --no-fund --loglevel=error
  touch "$web_stamp"
fi
