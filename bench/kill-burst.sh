#!/usr/bin/env bash
# Kill burst: three `serve` instances (release binary, enforce) on one shared state store (the official
# Firestore emulator), behind a Pub/Sub-like pusher (bench/lib/kill_burst.py: the simulator's audit-log
# entries pulled from the official Pub/Sub emulator and pushed round robin; a message not answered 2xx
# within the ack deadline is pushed again, possibly to another instance, after a backoff). A generated
# world of PROJECTS projects has every project's node binding (roles/container.defaultNodeServiceAccount)
# removed at once (the burst) while KILLS random instances are killed with SIGKILL at random moments, each
# restarted at once on its port. With the world restored and every message acknowledged, the
# notifications topic is read and counted against the simulator's journal of our writes: lost (a
# restoration without a `restored` notification), duplicate (an id twice; a finding announced under two
# ids for one restoration), wrong (a notification for a binding that was not broken). Prints them beside
# the target (0 lost, 0 duplicate), with store operations per project from `/healthz`. Exits 1 when a
# target is missed.
#
# Env: PROJECTS (50), KILLS (100), KILL_MEAN_MS (150: mean time between kills, uniform in [0, 2x]),
#      BENCH_LATENCY_MS (50: per simulated API call), ACK_DEADLINE_S (10), MIN_BACKOFF_S (1),
#      MAX_BACKOFF_S (10; Pub/Sub's push backoff is 10-600 s, shortened here), GIVE_UP_S (600: then a
#      message counts as dead-lettered), MAX_SECONDS (900), SETTLE_S (10), SEED (1), KEEP (a directory
#      to copy the serve logs, the deliveries and the notifications to).
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/emulators.sh"
need_bin "$BIN"

PROJECTS=${PROJECTS:-50}
KILLS=${KILLS:-100}
KILL_MEAN_MS=${KILL_MEAN_MS:-150}
LATENCY=${BENCH_LATENCY_MS:-50}
SEED=${SEED:-1}
OPS_PROJECT=ops-project
SELF=gke-iam-remediator@ops-project.iam.gserviceaccount.com
ORG=123456789012

world="$BENCH_TMP/world.json"
python3 "$BENCH_ROOT/infra/gen-world.py" --projects "$PROJECTS" --folders 2 --seed "$SEED" \
    --broken-fraction 0 --org-id "$ORG" --deny-every 0 2>"$BENCH_TMP/gen.err" |
    python3 "$BENCH_ROOT/bench/lib/node_binding_world.py" >"$world"
echo "== kill burst: $PROJECTS projects, every node binding removed at once, $KILLS kills (SIGKILL) of 3 serve instances, mean ${KILL_MEAN_MS} ms apart; ${LATENCY} ms per API call; shared state: Firestore emulator"
echo "   machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
started=$(date +%s)

start_pubsub_emulator
start_firestore_emulator
pubsub_topic "$OPS_PROJECT" iam-events iam-events-pull
pubsub_topic "$OPS_PROJECT" notifications notifications-pull

sim_out="$BENCH_TMP/sim.out"
PUBSUB_EMULATOR_HOST="$PUBSUB_HOST" "$BIN" sim --world "$world" --listen 127.0.0.1:0 \
    --audit-log-topic "projects/$OPS_PROJECT/topics/iam-events" >"$sim_out" 2>"$sim_out.err" &
SIM_PID=$!
BENCH_PIDS+=("$SIM_PID")
SIM="$(wait_listening "$sim_out" "$SIM_PID")/"
sim_latency "$LATENCY"

printf 'mode: enforce\nlimits:\n  max_restorations_per_binding: 100\n  max_writes_per_run: 100000\n' \
    >"$BENCH_TMP/policy.yaml"
rate_args=()
for api in cloudresourcemanager iam container serviceusage recommender logging; do
    rate_args+=(--rate-limit "$api=2000")
done

python3 - "$BENCH_TMP/config.json" <<PY
import json, socket, sys
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
world = json.load(open("$world"))
json.dump({
    "bin": "$BIN", "tmp": "$BENCH_TMP", "sim": "$SIM", "pubsub": "$PUBSUB_HOST",
    "self": "$SELF", "ops_project": "$OPS_PROJECT", "notify_sub": "notifications-pull",
    "projects": [p["id"] for p in world["projects"]],
    "ports": [port(), port(), port()],
    "serve_args": """${rate_args[*]}""".split(),
    "serve_env": {
        "REMEDIATOR_API_ENDPOINT": "$SIM", "REMEDIATOR_ACCESS_TOKEN": "sim:$SELF",
        "REMEDIATOR_SELF_EMAIL": "$SELF", "REMEDIATOR_POLICY": "$BENCH_TMP/policy.yaml",
        "REMEDIATOR_NOTIFY_TOPIC": "projects/$OPS_PROJECT/topics/notifications",
        "PUBSUB_EMULATOR_HOST": "$PUBSUB_HOST", "FIRESTORE_EMULATOR_HOST": "$FIRESTORE_HOST",
        "REMEDIATOR_STATE": "firestore://projects/bench-kill-burst/databases/(default)",
        "REMEDIATOR_LOG_FORMAT": "json", "RUST_LOG": "info",
    },
    "kills": int("$KILLS"), "kill_mean_s": int("$KILL_MEAN_MS") / 1000, "seed": int("$SEED"),
    "ack_deadline_s": float("${ACK_DEADLINE_S:-10}"), "min_backoff_s": float("${MIN_BACKOFF_S:-1}"),
    "max_backoff_s": float("${MAX_BACKOFF_S:-10}"), "give_up_s": float("${GIVE_UP_S:-600}"),
    "max_seconds": float("${MAX_SECONDS:-900}"), "settle_s": float("${SETTLE_S:-10}"),
}, open(sys.argv[1], "w"))
PY

rc=0
python3 "$BENCH_ROOT/bench/lib/kill_burst.py" "$BENCH_TMP/config.json" || rc=$?
if [[ -n "${KEEP:-}" ]]; then
    cp -r "$BENCH_TMP" "$KEEP"
    echo "logs, config, notifications and deliveries kept in $KEEP"
fi
hr
echo "wall time: $(($(date +%s) - started)) s"
exit "$rc"
