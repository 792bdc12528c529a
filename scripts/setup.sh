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
# Spark's classes, archived once for this environment's JVM and jars: every later Spark start is ~4 s faster.
# Optional: without the archive Spark starts as usual.
if ! SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}" .venv/bin/python -m feature_assets.dev.jvm_archive \
    > .venv/jvm-archive.log 2>&1; then
  echo "note: no Spark class archive was built (see .venv/jvm-archive.log); Spark starts without it" >&2
fi
