#!/usr/bin/env bash
# The seed's bootstrap walk on examples/bootstrap, from a fresh state, on embedded defaults (local Spark,
# Dagster's local instance, the embedded MongoDB-protocol server): v1 stitched from its own fetch log, v2_dev
# reusing v1's output on a downsample, v2 reusing both and computing the rest. Each command is printed before
# its output. Run `bash scripts/quickstart.sh` (or scripts/setup.sh) once first: it creates .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$ROOT/examples/bootstrap"
# Everything the example writes (see examples/bootstrap/feature_repo.yaml): removed first for a fresh state.
STATE="$ROOT/data/bootstrap_example"
PYTHON="$ROOT/.venv/bin/python"
export PATH="$ROOT/.venv/bin:$PATH"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
# The repo's settings place the warehouse, Dagster home and embedded servers; variables would override them,
# and a fetch log turned off or elsewhere would leave v1 nothing to stitch.
unset FEATURE_ASSETS_WAREHOUSE DAGSTER_HOME FEATURE_ASSETS_SERVICES_DIR FEATURE_ASSETS_START_DATE \
    FEATURE_ASSETS_MONGO_URI FEATURE_ASSETS_MONGO_DATABASE FEATURE_ASSETS_FETCH_LOG

FIRST_DAY=2023-11-01
LAST_DAY=2023-11-07   # the day v1 serves and logs fetches
BATCH_DAY=2023-11-06  # fetches on LAST_DAY read the batch of the day before

if [ -f "$STATE/services/services.env" ]; then
    echo "an embedded server of $STATE/services may be running ($STATE/services/services.env exists):" \
        "stop it (feature-assets serve?), or remove $STATE if none runs" >&2
    exit 1
fi
rm -rf "$STATE"
cd "$REPO"

# Prints the command as one would type it (arguments with spaces, quotes or braces quoted), then runs it.
run() {
    local line="\$ feature-assets" arg
    for arg in "$@"; do
        if [[ "$arg" =~ ^[A-Za-z0-9_./:=,-]+$ ]]; then
            line="$line $arg"
        elif [[ "$arg" == *"'"* ]]; then
            line="$line \"$arg\""
        else
            line="$line '$arg'"
        fi
    done
    echo "$line"
    feature-assets "$@"
}

# Prints a table's rows for one day and the coverage flags of its bootstrap table, counted per combination.
coverage() {
    local table="$1" ds="$2"
    echo "# rows of $table on $ds by coverage flags (true: the part's values came from bootstrap, not computed)"
    "$PYTHON" - "$STATE/warehouse/default/$table/ds=$ds" <<'EOF'
import sys

import pandas as pd

table = pd.read_parquet(sys.argv[1])
flags = [c for c in table.columns if c.startswith("_covered_")]
counts = table.groupby(flags).size().rename("rows").reset_index()
print(counts.rename(columns={f: f.removeprefix("_covered_") for f in flags}).to_string(index=False))
EOF
}

echo "# 1. Data and configs: the quickstart's source tables for a week (100 checkouts a day), compiled configs"
run generate-data --start-ds "$FIRST_DAY" --end-ds "$LAST_DAY"
run compile

echo
echo "# 2. Log stitching: v1 backfilled, served for $LAST_DAY with request ids, its log flattened and stitched"
run backfill --conf production/joins/payments/model.v1 --start-ds "$FIRST_DAY" --end-ds "$LAST_DAY"
run upload --conf production/joins/payments/model.v1 --ds "$BATCH_DAY"
run load --conf production/joins/payments/model.v1 --ds "$BATCH_DAY"
run metadata-upload --conf production/joins/payments/model.v1
# Three of the day's requests, each fetched at its own time with its request id (logged with the values).
"$PYTHON" - "$STATE/warehouse/default/payments_payments_driver_v1/ds=$LAST_DAY" >"$STATE/requests.tsv" <<'EOF'
import sys

import pandas as pd

rows = pd.read_parquet(sys.argv[1]).sort_values("ts").iloc[[10, 50, 90]]
for row in rows.itertuples():
    print(f'{{"user_id":"{row.user_id}","request_id":"{row.request_id}"}}\t{row.ts}')
EOF
REQUEST_IDS=""
while IFS=$'\t' read -r keys at; do
    run fetch --type join --name payments/model.v1 -k "$keys" --at-millis "$at"
    REQUEST_IDS="$REQUEST_IDS${REQUEST_IDS:+, }'$("$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["request_id"])' "$keys")'"
done <"$STATE/requests.tsv"
# The daily log dump, for the whole week at once: days without fetches get empty partitions, so that every day
# of a later backfill finds its log partition.
run log-dump --start-ds "$FIRST_DAY" --end-ds "$LAST_DAY"
run backfill --conf production/group_bys/payments/schema.v1 --start-ds "$FIRST_DAY" --end-ds "$LAST_DAY"
run log-flattener --conf production/joins/payments/model.v1 --schema-table default.payments_schema_v1 \
    --start-ds "$FIRST_DAY" --end-ds "$LAST_DAY"
run show --table default.payments_model_v1_logged --ds "$LAST_DAY" --truncate 24
run backfill --conf production/joins/payments/model.v1 --start-ds "$LAST_DAY" --end-ds "$LAST_DAY"
coverage payments_model_v1_bootstrap "$LAST_DAY"
run show --table default.payments_model_v1 --ds "$LAST_DAY" --where "request_id IN ($REQUEST_IDS)" --truncate 24

echo
echo "# 3. Data sharing across joins: v2_dev, offline, on v1's labeled rows downsampled, v1's features from v1's output"
run backfill --conf production/joins/payments/model.v2_dev --start-ds "$FIRST_DAY" --end-ds "$LAST_DAY"
coverage payments_model_v2_dev_bootstrap "$LAST_DAY"

echo
echo "# 4. v2, the next production join: v1's output, then v2_dev's, then its own log; the rest computed"
run backfill --conf production/joins/payments/model.v2 --start-ds "$FIRST_DAY" --end-ds "$LAST_DAY"
coverage payments_model_v2_bootstrap "$LAST_DAY"
run show --table default.payments_model_v2 --ds "$LAST_DAY" --limit 5 --truncate 24
