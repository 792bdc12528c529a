#!/usr/bin/env bash
# Command A: set up, then run the quickstart end to end on embedded defaults
# (local Spark, Dagster's local instance, a local MongoDB-protocol server and Kafka-protocol broker).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export DAGSTER_HOME="${DAGSTER_HOME:-$ROOT/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
exec .venv/bin/feature-assets quickstart "$@"
