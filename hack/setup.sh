#!/usr/bin/env bash
# Install everything the project needs on a fresh machine, idempotently:
#   - a virtualenv in .venv with the project (editable) and its dev tools, at the
#     versions of constraints.txt (re-run only when pyproject.toml or constraints change);
#   - redis-server from Debian's packages if it is missing.
# The Kubernetes binaries and helm are built on first use by `agentstack dev build`
# (Go module proxy, cached under ~/.cache/agentstack); this script checks Go is there.
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
stamp=".venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing Python dependencies into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo -n)
  else
    say "redis-server is missing and this user cannot install packages: install redis-server"
    exit 1
  fi
  say "installing redis-server from Debian's packages"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq redis-server >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
  say "Go 1.24 or newer is needed to build the control plane and helm: install Go"
  exit 1
fi
