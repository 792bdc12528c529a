#!/usr/bin/env bash
# Command B: set up, then run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export PYTHONDONTWRITEBYTECODE=1
# The slowest tests are listed at the end, to keep an eye on the suite's time.
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=20 "$@"
