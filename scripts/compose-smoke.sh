#!/usr/bin/env bash
# Smoke test of the docker-compose deployment, for a machine with Docker (compose v2.17 or newer):
#   1. build the image and start every service, waiting until the health checks pass;
#   2. run the quickstart through the containers (data, compile, backfill through Dagster, upload to MongoDB);
#   3. fetch a join from the fetch service over HTTP, with an API key;
#   4. send an event to Kafka and fetch until the streaming service has applied it;
#   5. stop and remove everything, volumes included (also on failure; KEEP=1 leaves the stack running).
#
# It runs as its own compose project (feature-assets-smoke), so a stack of yours is left alone: only its
# ports must be free (MONGO_HOST_PORT, KAFKA_HOST_PORT, DAGSTER_WEBSERVER_PORT, FEATURE_ASSETS_FETCH_PORT).
# Settings come from .env when it exists; missing secrets are generated for this run only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROJECT="${COMPOSE_PROJECT:-feature-assets-smoke}"
STREAMING_SERVICE=streaming_quickstart_returns_v1
JOIN=quickstart/training_set.v2
GROUP_BY=quickstart/returns.v1
# The seed's realtime event (see feature_assets/dev/realtime_demo.py): user 91 returns an order.
SEED_EVENT="1701475200000,F8E3E287-EA5D-6C4B-915D-A5E51A5557EC,91,81,356"
AFTER_SEED_MILLIS=1701475260000

if [[ -f .env ]]; then
  set -a
  # shellcheck disable=SC1091
  . ./.env
  set +a
fi
random_secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
export MONGO_INITDB_ROOT_PASSWORD="${MONGO_INITDB_ROOT_PASSWORD:-$(random_secret)}"
export FEATURE_ASSETS_API_KEYS="${FEATURE_ASSETS_API_KEYS:-$(random_secret)}"
API_KEY="${FEATURE_ASSETS_API_KEYS%%,*}"
FETCH_URL="http://localhost:${FEATURE_ASSETS_FETCH_PORT:-8000}"

compose() { docker compose -p "$PROJECT" -f docker-compose.yml "$@"; }
step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "compose-smoke: $*" >&2
  exit 1
}
cleanup() {
  local code=$?
  if [[ $code -ne 0 ]]; then
    echo "compose-smoke: failed; the services' last log lines:" >&2
    compose logs --tail 40 >&2 || true
  fi
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "KEEP=1: the stack is still up (compose project $PROJECT); remove it with: docker compose -p $PROJECT down -v"
  else
    step "Stopping and removing the stack and its volumes"
    compose down -v --remove-orphans || true
  fi
  exit "$code"
}
trap cleanup EXIT

# One request to the fetch service: the response body, or a failure naming the status.
fetch() {
  local path=$1 body=$2
  curl -sS --fail-with-body --max-time 30 -X POST "$FETCH_URL$path" \
    -H "Content-Type: application/json" -H "X-API-Key: $API_KEY" -H "Authorization: Bearer $API_KEY" \
    --data "$body"
}

step "Building the image and starting the services (waiting for their health checks)"
compose up -d --build --wait --wait-timeout 600

step "Running the quickstart inside the user code container, against the compose servers"
# The quickstart runs its own streaming job in the streaming service's consumer group: the service pauses.
compose stop "$STREAMING_SERVICE"
compose exec -T user_code feature-assets quickstart
compose start "$STREAMING_SERVICE"

step "Fetching the join $JOIN from the fetch service"
curl -sS --fail --max-time 10 "$FETCH_URL/healthz" > /dev/null || fail "the fetch service is not healthy"
joined=$(fetch "/v1/fetch/join/$JOIN" '{"user_id": "5", "request_id": "compose-smoke"}') ||
  fail "fetch of $JOIN failed: $joined"
echo "    $joined"
[[ "$joined" == *'"values":'* && "$joined" != *'"values":null'* ]] || fail "no values for user 5 in $joined"

step "Streaming an event through Kafka to the streaming service, then fetching $GROUP_BY"
keys='{"user_id": "91"}'
before=$(fetch "/v1/fetch/groupby/$GROUP_BY?at_millis=$AFTER_SEED_MILLIS" "$keys")
echo "    before: $before"
echo "$SEED_EVENT" | compose exec -T user_code feature-assets produce --topic events.returns
for _ in $(seq 60); do
  after=$(fetch "/v1/fetch/groupby/$GROUP_BY?at_millis=$AFTER_SEED_MILLIS" "$keys")
  [[ "$after" != "$before" ]] && break
  sleep 2
done
echo "    after:  $after"
[[ "$after" != "$before" ]] || fail "the streaming service did not apply the event within 120 s"

step "The smoke test passed (Dagster UI: http://localhost:${DAGSTER_WEBSERVER_PORT:-3000})"
