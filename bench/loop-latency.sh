#!/usr/bin/env bash
# Local loop latency: a binding removed on the simulator -> its audit-log entry published to the official
# Pub/Sub emulator -> pushed to `serve` (release binary, enforce) -> the binding restored on the simulator
# -> the `restored` notification published to the emulator. RUNS removals (default 7), one at a time, each
# after the previous one's pushes were answered. Per run and stage, from the simulator's journal (the time
# each call was answered, i.e. its change applied), the emulator's publishTime of each message (a pull
# subscription beside the push one) and serve's JSON logs (RUST_LOG=debug):
#   removal      the removing setIamPolicy is applied on the simulator (t = 0)
#   audit        the emulator's publishTime of the removal's audit-log entry
#   push         serve has read and parsed the push (its debug event `push received`)
#   first read   serve's first call to the simulator for this run is answered
#   restored     serve's setIamPolicy is applied on the simulator
#   notified     the emulator's publishTime of the `restored` notification
# Then the median and spread of each stage over the runs.
#
# Env: RUNS (7), COALESCE_MS (0: serve's default, REMEDIATOR_COALESCE_MS; the end-to-end test in
#      tests/api/serve.rs runs serve with 300), GRACE_SECONDS (0: the policy's grace_seconds default),
#      FRESH (0: one serve for every run, so runs after the first reuse its caches; 1: a new serve for
#      each run, every run cold as in the test), GAP_SECONDS (1: idle time between runs), LATENCY_MS (0:
#      the simulator's latency per API call; 0 as in the test, Google's is tens of milliseconds), KEEP (a
#      directory to copy the logs, journals and rows to).
# Needs gcloud's Pub/Sub emulator (`google-cloud-cli-pubsub-emulator`) and Java.
source "$(dirname "$0")/lib/common.sh"
need_bin "$BIN"

RUNS=${RUNS:-7}
COALESCE_MS=${COALESCE_MS:-0}
GRACE_SECONDS=${GRACE_SECONDS:-0}
FRESH=${FRESH:-0}
GAP_SECONDS=${GAP_SECONDS:-1}
LATENCY_MS=${LATENCY_MS:-0}
OPS=ops-project
SELF=gke-iam-remediator@ops-project.iam.gserviceaccount.com
PROJECT=demo-project
ROLE=roles/container.serviceAgent
MEMBER=serviceAccount:service-100000000001@container-engine-robot.iam.gserviceaccount.com

echo "== loop latency: $RUNS removals of $ROLE on $PROJECT; coalesce ${COALESCE_MS} ms, grace ${GRACE_SECONDS} s, simulated latency ${LATENCY_MS} ms per call, $([[ $FRESH == 1 ]] && echo "a fresh serve per run" || echo "one serve for all runs")"
echo "   machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; $("$BIN" --version)"

# The emulator must be told its port: a free one, picked just before it starts.
SDK=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null)
EMU_BIN="$SDK/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
[[ -x "$EMU_BIN" ]] || { echo "the Pub/Sub emulator is missing at $EMU_BIN" >&2; exit 2; }
EMU_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
EMU="127.0.0.1:$EMU_PORT"
mkdir -p "$BENCH_TMP/pubsub"
"$EMU_BIN" --host=127.0.0.1 --port="$EMU_PORT" --data-dir="$BENCH_TMP/pubsub" >"$BENCH_TMP/emulator.log" 2>&1 &
BENCH_PIDS+=("$!")
for ((i = 0; i < 600; i++)); do
    curl -fsS "http://$EMU/" >/dev/null 2>&1 && break
    sleep 0.1
done
E="http://$EMU/v1/projects/$OPS"
ps_put() { curl -fsS -X PUT -H 'content-type: application/json' --data "${2:-{\}}" "$E/$1" >/dev/null; }
ps_put topics/iam-events
ps_put topics/notifications
ps_put subscriptions/notifications-pull "{\"topic\":\"projects/$OPS/topics/notifications\",\"ackDeadlineSeconds\":60}"
ps_put subscriptions/iam-events-tap "{\"topic\":\"projects/$OPS/topics/iam-events\",\"ackDeadlineSeconds\":60}"

# The simulator publishes an audit-log entry of every change to iam-events.
out="$BENCH_TMP/sim.out"
PUBSUB_EMULATOR_HOST=$EMU "$BIN" sim --world "$BENCH_ROOT/infra/worlds/healthy.yaml" --listen 127.0.0.1:0 \
    --audit-log-topic "projects/$OPS/topics/iam-events" >"$out" 2>"$out.err" &
SIM_PID=$!
BENCH_PIDS+=("$SIM_PID")
SIM="$(wait_listening "$out" "$SIM_PID")/"
sim_latency "$LATENCY_MS"

printf 'mode: enforce\ngrace_seconds: %s\nlimits:\n  max_restorations_per_binding: 1000\n' "$GRACE_SECONDS" \
    >"$BENCH_TMP/policy.yaml"

SERVE_PID=
# start_serve N: a serve logging to $BENCH_TMP/serve.N.log; the push subscription points at it.
start_serve() {
    local log="$BENCH_TMP/serve.$1.log"
    env REMEDIATOR_API_ENDPOINT="$SIM" REMEDIATOR_ACCESS_TOKEN="sim:$SELF" REMEDIATOR_SELF_EMAIL="$SELF" \
        REMEDIATOR_POLICY="$BENCH_TMP/policy.yaml" REMEDIATOR_COALESCE_MS="$COALESCE_MS" \
        REMEDIATOR_NOTIFY_TOPIC="projects/$OPS/topics/notifications" PUBSUB_EMULATOR_HOST="$EMU" \
        REMEDIATOR_LOG_FORMAT=json RUST_LOG=debug \
        "$BIN" serve --listen 127.0.0.1:0 >"$log" 2>&1 &
    SERVE_PID=$!
    BENCH_PIDS+=("$SERVE_PID")
    SERVE=$(wait_listening "$log" "$SERVE_PID")
    local push="{\"topic\":\"projects/$OPS/topics/iam-events\",\"ackDeadlineSeconds\":30,\"pushConfig\":{\"pushEndpoint\":\"$SERVE/pubsub/push\"}}"
    if [[ "$1" == 1 ]]; then
        ps_put subscriptions/iam-events-push "$push"
    else
        curl -fsS -X POST -H 'content-type: application/json' \
            --data "{\"pushConfig\":{\"pushEndpoint\":\"$SERVE/pubsub/push\"}}" \
            "$E/subscriptions/iam-events-push:modifyPushConfig" >/dev/null
    fi
}

# pull SUB: messages so far (acknowledged), one JSON object per line: {publishTime, data}
pull() {
    local r
    r=$(curl -fsS -X POST -H 'content-type: application/json' \
        --data '{"maxMessages":100,"returnImmediately":true}' "$E/subscriptions/$1:pull")
    local ids
    ids=$(jq -c '[.receivedMessages[]?.ackId]' <<<"$r")
    if [[ "$ids" != "[]" ]]; then
        curl -fsS -X POST -H 'content-type: application/json' --data "{\"ackIds\":$ids}" \
            "$E/subscriptions/$1:acknowledge" >/dev/null
    fi
    jq -c '.receivedMessages[]? | {publishTime: .message.publishTime, data: (.message.data | @base64d | fromjson)}' <<<"$r"
}

# remove: the binding removed as gcloud does it (read, then write with the etag).
remove() {
    local policy
    policy=$(curl -fsS -X POST -H 'content-type: application/json' \
        --data '{"options":{"requestedPolicyVersion":3}}' "${SIM}v1/projects/$PROJECT:getIamPolicy")
    policy=$(jq -c --arg r "$ROLE" --arg m "$MEMBER" \
        '.bindings |= map(if .role == $r then .members -= [$m] else . end | select(.members | length > 0))' <<<"$policy")
    curl -fsS -X POST -H 'content-type: application/json' --data "{\"policy\":$policy}" \
        "${SIM}v1/projects/$PROJECT:setIamPolicy" >/dev/null
}

healthz_acked() { curl -fsS "$SERVE/healthz" | jq '.pushes.acked + .pushes.retried'; }

ROWS="$BENCH_TMP/rows.jsonl"
start_serve 1
for ((run = 1; run <= RUNS; run++)); do
    if [[ $FRESH == 1 && $run -gt 1 ]]; then
        stop_pid "$SERVE_PID"
        start_serve "$run"
    fi
    log="$BENCH_TMP/serve.$([[ $FRESH == 1 ]] && echo "$run" || echo 1).log"
    log_from=$(wc -l <"$log")
    answered=$(healthz_acked)
    sim_reset_stats
    remove
    # Restored: serve's setIamPolicy in the journal (polled every 20 ms).
    restored=
    for ((i = 0; i < 1500; i++)); do
        if curl -fsS "${SIM}_sim/journal" | jq -e --arg c "serviceAccount:$SELF" \
            '[.entries[] | select(.caller == $c and (.endpoint | endswith("projects.setIamPolicy")))] | length > 0' >/dev/null; then
            restored=yes
            break
        fi
        sleep 0.02
    done
    [[ -n "$restored" ]] || { echo "run $run: not restored within 30 s" >&2; tail -20 "$log" >&2; exit 1; }
    # Both pushes (the removal's and the restore's own entry) answered, the notification published.
    for ((i = 0; i < 300; i++)); do
        [[ $(healthz_acked) -ge $((answered + 2)) ]] && break
        sleep 0.1
    done
    notes=""
    for ((i = 0; i < 100; i++)); do
        notes+=$(pull notifications-pull)
        grep -q '"restored"' <<<"$notes" && break
        sleep 0.1
    done
    audits=$(pull iam-events-tap)
    curl -fsS "${SIM}_sim/journal" >"$BENCH_TMP/journal.$run.json"
    tail -n +"$((log_from + 1))" "$log" >"$BENCH_TMP/serve-run.$run.log"
    python3 - "$BENCH_TMP/journal.$run.json" "$BENCH_TMP/serve-run.$run.log" "$SELF" "$run" \
        <(printf '%s\n' "$audits") <(printf '%s\n' "$notes") >>"$ROWS" <<'PY'
import json, sys
from datetime import datetime

def ts(s):
    # RFC 3339 with up to nanoseconds, Z or +00:00
    s = s.replace("Z", "+00:00")
    head, _, tz = s.partition("+")
    if "." in head:
        base, frac = head.split(".")
        head = f"{base}.{frac[:6]:0<6}"
    return datetime.fromisoformat(f"{head}+{tz or '00:00'}").timestamp()

journal, log, me, run, audits, notes = sys.argv[1:]
entries = json.load(open(journal))["entries"]
caller = f"serviceAccount:{me}"
removal = next(e for e in entries if e["endpoint"].endswith("projects.setIamPolicy") and e["caller"] != caller)
mine = [e for e in entries if e["caller"] == caller and ts(e["time"]) >= ts(removal["time"])]
t0 = ts(removal["time"])
row = {"run": int(run)}
audit = [json.loads(l) for l in open(audits) if l.strip()]
audit = [a for a in audit if a["data"].get("protoPayload", {}).get("methodName") == "SetIamPolicy"
         and a["data"]["protoPayload"].get("authenticationInfo", {}).get("principalEmail") != me]
if audit:
    row["audit"] = ts(audit[0]["publishTime"]) - t0
pushes = []
for line in open(log):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("message") == "push received":
        pushes.append(ts(j["time"]))
if pushes:
    row["push"] = min(pushes) - t0
if mine:
    row["first_read"] = ts(mine[0]["time"]) - t0
    row["calls_before_write"] = [e["endpoint"] for e in mine][: next(
        (i for i, e in enumerate(mine) if e["endpoint"].endswith("projects.setIamPolicy")), len(mine))]
    w = [e for e in mine if e["endpoint"].endswith("projects.setIamPolicy")]
    if w:
        row["restored"] = ts(w[0]["time"]) - t0
note = [json.loads(l) for l in open(notes) if l.strip()]
note = [n for n in note if n["data"].get("outcome") == "restored"]
if note:
    row["notified"] = ts(note[0]["publishTime"]) - t0
for k, v in list(row.items()):
    if isinstance(v, float):
        row[k] = round(v * 1000, 1)
print(json.dumps(row))
PY
    sleep "$GAP_SECONDS"
done

hr
python3 - "$ROWS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
stages = ["audit", "push", "first_read", "restored", "notified"]
print(f"{'run':>4} " + " ".join(f"{s:>11}" for s in stages) + "   (ms after the removal reached the simulator)")
for r in rows:
    print(f"{r['run']:>4} " + " ".join(f"{r.get(s, 'n/a'):>11}" for s in stages))
def stat(vals):
    return f"{statistics.median(vals):.1f} ({min(vals):.1f}-{max(vals):.1f})" if vals else "n/a"
print()
for s in stages:
    print(f"{s:<12} median (min-max) {stat([r[s] for r in rows if s in r])} ms")
warm = rows[1:]
if warm:
    print(f"{'restored':<12} runs 2..{len(rows)} only: {stat([r['restored'] for r in warm if 'restored' in r])} ms")
print("calls before the write, run 1:", ", ".join(rows[0].get("calls_before_write", [])))
if len(rows) > 1:
    print("calls before the write, run 2:", ", ".join(rows[1].get("calls_before_write", [])))
PY
hr
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -n "${KEEP:-}" ]] && cp -r "$BENCH_TMP" "$KEEP" && echo "logs kept in $KEEP"
true
