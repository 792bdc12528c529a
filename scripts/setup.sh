#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs the project with its local services and test tools.
# Idempotent: a second run only re-checks the install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
STAMP=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$STAMP" ]; then
  echo "Installing the project into .venv (log: .venv/pip-install.log) ..."
  if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e '.[local,dev]'; } \
      > .venv/pip-install.log 2>&1; then
    tail -n 30 .venv/pip-install.log >&2
    echo "pip install failed; see .venv/pip-install.log" >&2
    exit 1
  fi
  rm -f .venv/.installed-* && touch "$STAMP"
fi
if ! command -v java >/dev/null 2>&1; then
  echo "Java 17 is required by Spark and was not found on PATH" >&2
  exit 1
fi
