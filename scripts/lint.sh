#!/usr/bin/env bash
# Lint and type gates: ruff (rules and format check) and mypy, with the tools installed in .venv
# (scripts/setup.sh installs them with the dev extra). Runs every gate, then fails if any failed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
status=0
run() {
  echo "+ $*"
  "$@" || status=1
}
run .venv/bin/ruff check .
run .venv/bin/ruff format --check --output-format concise .
run .venv/bin/mypy feature_assets
exit $status
