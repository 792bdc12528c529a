#!/usr/bin/env bash
# Opens the Dagster UI on the quickstart's instance and warehouse (http://127.0.0.1:3000), with the
# embedded MongoDB-protocol server and Kafka-protocol broker running for the online assets.
#
# The servers are those of .services (or $FEATURE_ASSETS_SERVICES_DIR): reused when a command (serve, the quickstart) already runs them, else
# started; CLI commands run meanwhile share them. They stop when the last process using them exits
# (Ctrl-C or SIGTERM here stops the UI first).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export DAGSTER_HOME="${DAGSTER_HOME:-$ROOT/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
UI=(.venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}")
if [ -n "${FEATURE_ASSETS_MONGO_URI:-}" ]; then
  exec "${UI[@]}"
fi
exec .venv/bin/python -m feature_assets.dev.services.local run -- "${UI[@]}"
