#!/usr/bin/env bash
# Static checks: ruff (lint and format), mypy (strict), import-linter (layer contracts),
# luacheck over the Redis layer's Lua scripts as Redis runs them; the live page's
# TypeScript (web/): tsc (strict), ESLint (typescript-eslint, type-aware), Prettier, and
# the committed bundle (api/agentstack_api/static/app.js) equal to a fresh build.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m agentstack_devkit.lualint
npm --prefix web run --silent check
# The release workflow, by actionlint built from hack/actionlint's pin.
"$(.venv/bin/python -c 'from agentstack_devkit.toolchain import release_tool; print(release_tool("actionlint"))')" .github/workflows/*.yml
