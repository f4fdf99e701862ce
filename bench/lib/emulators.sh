# The official Pub/Sub and Firestore emulators for bench scripts (sourced after common.sh). Each is a
# shell wrapper starting a JVM, so each runs in a process group of its own, and the EXIT trap kills
# the whole group (wrapper and JVM) before common.sh's cleanup. Both listen on 127.0.0.1 only.

EMULATOR_GROUPS=()

emulators_cleanup() {
    local g
    for g in "${EMULATOR_GROUPS[@]:-}"; do
        [[ -n "$g" ]] && kill -KILL -- "-$g" 2>/dev/null || true
    done
}
trap 'emulators_cleanup; bench_cleanup' EXIT

sdk_root() { gcloud info --format='value(installation.sdk_root)' 2>/dev/null; }

# free_port: a free TCP port on 127.0.0.1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_http URL SECONDS: until URL answers 200
wait_http() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$1 did not answer within $2 s" >&2
    return 1
}

# start_pubsub_emulator: sets PUBSUB_HOST (127.0.0.1:PORT)
start_pubsub_emulator() {
    local bin port
    bin="$(sdk_root)/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
    [[ -x "$bin" ]] || { echo "the Pub/Sub emulator is missing at $bin" >&2; exit 2; }
    port=$(free_port)
    mkdir -p "$BENCH_TMP/pubsub-data"
    setsid "$bin" --host=127.0.0.1 --port="$port" --data-dir="$BENCH_TMP/pubsub-data" \
        >"$BENCH_TMP/pubsub.log" 2>&1 &
    EMULATOR_GROUPS+=("$!")
    disown "$!"
    PUBSUB_HOST="127.0.0.1:$port"
    wait_http "http://$PUBSUB_HOST/" 60
}

# start_firestore_emulator: sets FIRESTORE_HOST (127.0.0.1:PORT)
start_firestore_emulator() {
    local bin port
    bin="$(sdk_root)/platform/cloud-firestore-emulator/cloud_firestore_emulator"
    [[ -x "$bin" ]] || { echo "the Firestore emulator is missing at $bin" >&2; exit 2; }
    port=$(free_port)
    setsid "$bin" start --host=127.0.0.1 --port="$port" >"$BENCH_TMP/firestore.log" 2>&1 &
    EMULATOR_GROUPS+=("$!")
    disown "$!"
    FIRESTORE_HOST="127.0.0.1:$port"
    wait_http "http://$FIRESTORE_HOST/" 60
}

# pubsub_topic PROJECT TOPIC [SUBSCRIPTION]: creates a topic and a pull subscription on it
pubsub_topic() {
    local base="http://$PUBSUB_HOST/v1/projects/$1"
    curl -fsS -X PUT "$base/topics/$2" >/dev/null
    if [[ -n "${3:-}" ]]; then
        curl -fsS -X PUT -H 'content-type: application/json' \
            --data "{\"topic\":\"projects/$1/topics/$2\",\"ackDeadlineSeconds\":60}" \
            "$base/subscriptions/$3" >/dev/null
    fi
}
