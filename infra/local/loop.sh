#!/usr/bin/env bash
# The local loop, by hand: the official Pub/Sub emulator, the simulator publishing Cloud Audit Log
# entries to it, and `serve` behind a push subscription. Break IAM with the real gcloud and watch the
# binding come back and the notification arrive.
#
#   infra/local/loop.sh [WORLD_FILE] [POLICY_FILE]
#
# Defaults: infra/worlds/demo.yaml and an enforce policy. Everything listens on 127.0.0.1 and stops
# with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
world=${1:-infra/worlds/demo.yaml}
policy=${2:-}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
# Ctrl-C / SIGTERM: clean up and exit (a trap alone would return to the polling loop).
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 1 150); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.2; done; echo "timed out waiting for $2 in $1" >&2; cat "$1" >&2; exit 1; }

cargo build --release --locked --quiet
bin=target/release/gke-iam-remediator
ops=ops-project

echo "starting the Pub/Sub emulator..."
export CLOUDSDK_CONFIG="$work/gcloud"
sdk=$(gcloud info --format='value(installation.sdk_root)')
eport=$(free_port)
"$sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator" --host=127.0.0.1 --port="$eport" --data-dir="$work/pubsub" >"$work/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$eport/" >/dev/null && break; sleep 0.2; done
export PUBSUB_EMULATOR_HOST=127.0.0.1:$eport
E=http://$PUBSUB_EMULATOR_HOST/v1/projects/$ops
for t in iam-events notifications; do curl -sf -X PUT "$E/topics/$t" >/dev/null; done
curl -sf -X PUT "$E/subscriptions/notifications-pull" -H 'content-type: application/json' \
  -d "{\"topic\":\"projects/$ops/topics/notifications\",\"ackDeadlineSeconds\":30}" >/dev/null

echo "starting the simulator with $world..."
"$bin" sim --world "$world" --listen 127.0.0.1:0 --audit-log-topic "projects/$ops/topics/iam-events" >"$work/sim.log" 2>&1 &
pids+=($!)
wait_line "$work/sim.log" '^listening on http://'
sim="$(sed -n 's/^listening on //p' "$work/sim.log")/"

if [ -z "$policy" ]; then policy="$work/policy.yaml"; printf 'mode: enforce\n' >"$policy"; fi
sport=$(free_port)
echo "starting serve on 127.0.0.1:$sport (policy $policy)..."
PORT=$sport REMEDIATOR_API_ENDPOINT=$sim REMEDIATOR_ACCESS_TOKEN=sim:gke-iam-remediator@$ops.iam.gserviceaccount.com \
REMEDIATOR_SELF_EMAIL=gke-iam-remediator@$ops.iam.gserviceaccount.com REMEDIATOR_POLICY=$policy \
REMEDIATOR_NOTIFY_TOPIC=projects/$ops/topics/notifications REMEDIATOR_LOG_FORMAT=text RUST_LOG=info \
  "$bin" serve --listen 127.0.0.1:$sport >"$work/serve.log" 2>&1 &
pids+=($!)
wait_line "$work/serve.log" 'listening on http://'
curl -sf -X PUT "$E/subscriptions/iam-events-push" -H 'content-type: application/json' \
  -d "{\"topic\":\"projects/$ops/topics/iam-events\",\"pushConfig\":{\"pushEndpoint\":\"http://127.0.0.1:$sport/pubsub/push\"},\"ackDeadlineSeconds\":30}" >/dev/null

cat <<EOT

Ready. In another terminal, point gcloud at the simulator and break something:

  export CLOUDSDK_CONFIG=\$(mktemp -d) CLOUDSDK_AUTH_DISABLE_CREDENTIALS=true CLOUDSDK_CORE_DISABLE_PROMPTS=1
  for api in CLOUDRESOURCEMANAGER IAM CONTAINER RECOMMENDER SERVICEUSAGE POLICYTROUBLESHOOTER; do
    export CLOUDSDK_API_ENDPOINT_OVERRIDES_\$api=$sim; done
  gcloud projects remove-iam-policy-binding demo-project --role roles/container.defaultNodeServiceAgent \\
    --member serviceAccount:service-100000000001@gcp-sa-gkenode.iam.gserviceaccount.com --condition=None
  gcloud projects get-iam-policy demo-project

Logs: $work/serve.log (serve), $work/sim.log (simulator). Notifications are printed below. Ctrl-C stops everything.

EOT
while true; do
  out=$(curl -sf -X POST "$E/subscriptions/notifications-pull:pull" -H 'content-type: application/json' \
    -d '{"maxMessages":50,"returnImmediately":true}' || true)
  ids=$(echo "$out" | jq -c '[.receivedMessages[]?.ackId]')
  echo "$out" | jq -r '.receivedMessages[]?.message.data' | while read -r d; do
    echo "$d" | base64 -d | jq -c '{outcome, project_id, requirement, principal, actor: .evidence.actor}'
  done
  if [ "$ids" != "[]" ] && [ -n "$ids" ]; then
    curl -sf -X POST "$E/subscriptions/notifications-pull:acknowledge" -H 'content-type: application/json' -d "{\"ackIds\":$ids}" >/dev/null
  fi
  sleep 1
done
