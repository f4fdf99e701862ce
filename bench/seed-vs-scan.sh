#!/usr/bin/env bash
# The user's alternative versus `scan`, side by side on the same simulated world.
#
# The seed script (the GKE troubleshooting page's bash: serial gcloud + jq) runs through the real gcloud
# with endpoint overrides pointing every API at the simulator; `scan --format json` runs against the same
# simulator. Printed: wall time of each, the ratio, the API calls each made (simulator counters, reset
# between runs), and whether both name the same service accounts as missing permissions.
#
# World: infra/worlds/broken-node-sa.yaml by default (grants direct and unconditional on the project --
# the seed script's own limits -- two clusters, four node pools/Autopilot, two of four SAs broken).
#
# Usage: bench/seed-vs-scan.sh [SEED_SCRIPT]
#   SEED_SCRIPT: the seed script's path (default: $SEED_SCRIPT, else ../shared/seed/check-node-sa-permissions.sh
#   from the repo root). It fails (exit 2, with what is missing) when the script, gcloud or jq is not found:
#   a comparison that did not run is not a result.
# Env: WORLD, BENCH_LATENCY_MS (simulated latency per API call, default 20), SCAN_RUNS (scan repetitions
#      for the median, default 5), SEED_RUNS (default 1: ~1.7 s per gcloud call).
source "$(dirname "$0")/lib/common.sh"
need_bin "$BIN"

if [[ $# -gt 1 || "${1:-}" == -* ]]; then
    echo "usage: $0 [SEED_SCRIPT]" >&2
    exit 2
fi
SEED_SCRIPT=${1:-${SEED_SCRIPT:-$BENCH_ROOT/../shared/seed/check-node-sa-permissions.sh}}
WORLD=${WORLD:-$BENCH_ROOT/infra/worlds/broken-node-sa.yaml}
LATENCY=${BENCH_LATENCY_MS:-20}
SCAN_RUNS=${SCAN_RUNS:-5}
SEED_RUNS=${SEED_RUNS:-1}
PROJECT=${PROJECT:-demo-project}

echo "== seed script vs scan: world $(basename "$WORLD"), project $PROJECT, simulated latency ${LATENCY} ms per API call"
if [[ ! -f "$SEED_SCRIPT" ]]; then
    echo "FAILED: seed script not found at $SEED_SCRIPT (pass its path: $0 PATH/check-node-sa-permissions.sh)" >&2
    exit 2
fi
for tool in gcloud jq; do
    if ! command -v "$tool" >/dev/null; then
        echo "FAILED: $tool is not installed or not on PATH (the seed script needs it)" >&2
        exit 2
    fi
done

start_sim "$WORLD"
sim_latency "$LATENCY"

# --- the seed script through gcloud (reference: gcp-wire-formats.md section 7) ---
GCLOUD_CONFIG="$BENCH_TMP/gcloud-config"
mkdir -p "$GCLOUD_CONFIG"
seed_env=(
    env -u CLOUDSDK_AUTH_ACCESS_TOKEN
    CLOUDSDK_CONFIG="$GCLOUD_CONFIG"
    CLOUDSDK_AUTH_DISABLE_CREDENTIALS=true
    CLOUDSDK_CORE_DISABLE_USAGE_REPORTING=true
    CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=true
    CLOUDSDK_SURVEY_DISABLE_PROMPTS=true
    CLOUDSDK_CORE_DISABLE_PROMPTS=1
    CLOUDSDK_CORE_PROJECT="$PROJECT"
)
for api in CLOUDRESOURCEMANAGER IAM CONTAINER RECOMMENDER SERVICEUSAGE POLICYTROUBLESHOOTER; do
    seed_env+=("CLOUDSDK_API_ENDPOINT_OVERRIDES_${api}=$SIM")
done

seed_walls=()
for ((r = 0; r < SEED_RUNS; r++)); do
    sim_reset_stats
    m=$($MEASURE "$BENCH_TMP/seed.out" --timeout 900 -- "${seed_env[@]}" bash "$SEED_SCRIPT" "$PROJECT")
    seed_walls+=("$(jq -r .wall_ms <<<"$m")")
    seed_calls=$(sim_stats | jq .total)
    seed_stats=$(sim_stats)
done
seed_wall=$(printf '%s\n' "${seed_walls[@]}" | median)
# Section 3 lines: "Grant roles/container.defaultNodeServiceAccount to the following service accounts: SA"
seed_missing=$(sed -n '/^--- 3\./,$p' "$BENCH_TMP/seed.out" \
    | sed -n 's/^Grant .* to the following service accounts: *//p' | tr ' ' '\n' | sed '/^$/d' | sort -u)
seed_gcloud_processes=$(jq '[.by_endpoint | to_entries[] | .value] | add' <<<"$seed_stats")

# --- scan ---
scan_walls=()
scan_inner=()
for ((r = 0; r < SCAN_RUNS; r++)); do
    sim_reset_stats
    m=$($MEASURE "$BENCH_TMP/scan.json" --timeout 300 -- "$BIN" scan --project "$PROJECT" --format json --api-endpoint "$SIM")
    scan_walls+=("$(jq -r .wall_ms <<<"$m")")
    scan_inner+=("$(jq -r .elapsed_ms "$BENCH_TMP/scan.json")")
    scan_calls=$(sim_stats | jq .total)
    scan_stats=$(sim_stats)
done
scan_wall=$(printf '%s\n' "${scan_walls[@]}" | median)
scan_elapsed=$(printf '%s\n' "${scan_inner[@]}" | median)
scan_missing=$(jq -r '.summary.missing_node_service_accounts[]? | sub("^serviceAccount:"; "")' "$BENCH_TMP/scan.json" | sort -u)

if [[ "$seed_missing" == "$scan_missing" ]]; then agree=yes; else agree=NO; fi
ratio=$(python3 -c "print(round($seed_wall / max($scan_wall, 0.001)))")

hr
printf '%-34s %14s %14s\n' "" "seed script" "scan"
printf '%-34s %14s %14s\n' "wall time (ms, median)" "$seed_wall" "$scan_wall"
printf '%-34s %14s %14s\n' "runs" "$SEED_RUNS" "$SCAN_RUNS"
printf '%-34s %14s %14s\n' "API calls (simulator)" "$seed_calls" "$scan_calls"
printf '%-34s %14s %14s\n' "processes started" "$seed_gcloud_processes (gcloud)" "1"
printf '%-34s %14s %14s\n' "scan's own elapsed_ms (median)" "" "$scan_elapsed"
hr
echo "wall-time ratio seed/scan: ${ratio}x   (simulated latency ${LATENCY} ms per call)"
echo "missing-permission SAs, seed: $(echo $seed_missing)"
echo "missing-permission SAs, scan: $(echo $scan_missing)"
echo "agree on the set of SAs missing permissions: $agree"
echo "seed calls by endpoint: $(jq -c .by_endpoint <<<"$seed_stats")"
echo "scan calls by endpoint: $(jq -c .by_endpoint <<<"$scan_stats")"
[[ "$agree" == yes ]]
