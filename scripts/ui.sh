#!/usr/bin/env bash
# Opens the Dagster UI on the quickstart's instance and warehouse (http://127.0.0.1:3000).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export DAGSTER_HOME="${DAGSTER_HOME:-$ROOT/.dagster_home}"
[ -f .services/services.env ] && source .services/services.env
exec .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}"
