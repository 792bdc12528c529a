#!/usr/bin/env bash
# Opens the Dagster UI on the quickstart's instance and warehouse (http://127.0.0.1:3000), with the
# embedded MongoDB-protocol server and Kafka-protocol broker running for the online assets.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export DAGSTER_HOME="${DAGSTER_HOME:-$ROOT/.dagster_home}"
mkdir -p "$DAGSTER_HOME" .services
if [ -z "${FEATURE_ASSETS_MONGO_URI:-}" ]; then
  rm -f .services/services.env
  .venv/bin/python -m feature_assets.dev.services.local up --state-dir .services &
  SERVICES=$!
  trap 'kill $SERVICES 2>/dev/null; wait $SERVICES 2>/dev/null' EXIT
  for _ in $(seq 100); do [ -f .services/services.env ] && break; sleep 0.2; done
  # shellcheck disable=SC1091
  source .services/services.env
fi
.venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}"
