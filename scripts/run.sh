#!/usr/bin/env bash
# The main job (run as root): ship this host's container logs and engine events
# into Elasticsearch.
#
# - installs the shipper (.venv), and starts the test bed's Docker engine and
#   Elasticsearch when none is configured (ES_URL / ES_USERNAME / ES_PASSWORD /
#   ES_API_KEY / ES_CA_FILE point at your own cluster instead);
# - runs `shipper setup`, then `shipper run` in the background;
# - starts three small demo containers that log (network none, capped logs);
# - after DEMO_SECONDS (default 15) prints what arrived: counts per container
#   and one sample document; then keeps shipping until Ctrl-C.
# SHIPPER_DEMO_ONCE=1 stops everything after the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${SHIPPER_STATE_DIR:-/var/lib/shipper}
DEMO_SECONDS=${DEMO_SECONDS:-15}
NAMESPACE=${SHIPPER_NAMESPACE:-default}
IMAGE=${SHIPPER_TEST_IMAGE:-shipper-testbed/busybox:1}
ES=${ES_URL:-http://127.0.0.1:9200}

say() { printf '[run] %s\n' "$*" >&2; }

scripts/install.sh
scripts/testbed.sh up

settings=(--set "state.directory=$STATE" --set "monitor.port=${SHIPPER_MONITOR_PORT:-9464}" --set "elasticsearch.namespace=$NAMESPACE" --set "elasticsearch.hosts=$ES")
[[ -n ${ES_USERNAME:-} ]] && settings+=(--set "elasticsearch.username=$ES_USERNAME")
[[ -n ${ES_CA_FILE:-} ]] && settings+=(--set "elasticsearch.ca_file=$ES_CA_FILE")
export SHIPPER_ELASTICSEARCH__PASSWORD=${ES_PASSWORD:-} SHIPPER_ELASTICSEARCH__API_KEY=${ES_API_KEY:-}
[[ -n $SHIPPER_ELASTICSEARCH__PASSWORD ]] || unset SHIPPER_ELASTICSEARCH__PASSWORD
[[ -n $SHIPPER_ELASTICSEARCH__API_KEY ]] || unset SHIPPER_ELASTICSEARCH__API_KEY

.venv/bin/shipper setup "${settings[@]}"

mkdir -p -m 0700 "$STATE"  # the shipper keeps it owner-only; its log below is private too
(umask 077; : >>"$STATE/shipper.log")
.venv/bin/shipper run "${settings[@]}" --log-format json >>"$STATE/shipper.log" 2>&1 &
SHIPPER_PID=$!
say "shipper running (pid $SHIPPER_PID), log: $STATE/shipper.log, status: .venv/bin/shipper status"

demo=()
cleanup() {
    ((${#demo[@]})) && docker rm -f "${demo[@]}" >/dev/null 2>&1 || true
    if kill -0 "$SHIPPER_PID" 2>/dev/null; then
        kill -TERM "$SHIPPER_PID" && wait "$SHIPPER_PID" || true
        say "shipper stopped"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_demo() { # name command
    docker rm -f "$1" >/dev/null 2>&1 || true
    docker run -d --name "$1" --network none --init --label shipper.demo=1 \
        --log-opt max-size=10m --log-opt max-file=2 "$IMAGE" sh -c "$2" >/dev/null
    demo+=("$1")
}
run_demo shipper-demo-web 'i=0; while true; do i=$((i+1)); echo "127.0.0.1 - - GET /item/$i HTTP/1.1 200"; usleep 200000; done'
run_demo shipper-demo-worker 'i=0; while true; do i=$((i+1)); echo "job $i done"; [ $((i % 5)) -eq 0 ] && echo "job $i slow" >&2; usleep 500000; done'
run_demo shipper-demo-batch 'seq 1 1000 | sed "s/^/batch record /"; sleep 3600'
say "demo containers: ${demo[*]}; waiting ${DEMO_SECONDS}s"
sleep "$DEMO_SECONDS"

index="logs-shipper.events-$NAMESPACE"
auth=()
[[ -n ${ES_USERNAME:-} ]] && auth=(-u "$ES_USERNAME:${ES_PASSWORD:-}")
[[ -n ${ES_API_KEY:-} ]] && auth=(-H "Authorization: ApiKey $ES_API_KEY")
curl -fsS "${auth[@]}" ${ES_CA_FILE:+--cacert "$ES_CA_FILE"} -XPOST "$ES/$index/_refresh" >/dev/null
echo "== documents in $index per container (logs and engine events)"
curl -fsS "${auth[@]}" ${ES_CA_FILE:+--cacert "$ES_CA_FILE"} -H 'Content-Type: application/json' \
    "$ES/$index/_search?size=0" -d '{"aggs":{"c":{"terms":{"field":"container.name","size":20}}}}' |
    .venv/bin/python -c 'import json,sys; [print("%8d  %s" % (b["doc_count"], b["key"])) for b in json.load(sys.stdin)["aggregations"]["c"]["buckets"]]'
echo "== a sample document"
curl -fsS "${auth[@]}" ${ES_CA_FILE:+--cacert "$ES_CA_FILE"} -H 'Content-Type: application/json' \
    "$ES/$index/_search?size=1" -d '{"query":{"term":{"container.name":"shipper-demo-web"}},"sort":[{"@timestamp":"desc"}]}' |
    .venv/bin/python -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["hits"]["hits"][0]["_source"], indent=2))'

if [[ ${SHIPPER_DEMO_ONCE:-} == 1 ]]; then
    exit 0
fi
say "shipping until Ctrl-C"
wait "$SHIPPER_PID"
