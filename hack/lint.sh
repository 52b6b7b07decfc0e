#!/usr/bin/env bash
# Static checks: ruff (lint and format), mypy (strict), import-linter (layer contracts).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
