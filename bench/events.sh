#!/usr/bin/env bash
# Events: `serve` (release binary, enforce policy, no notifications topic) under a burst of push deliveries
# from examples/loadgen.rs: by default 10,000 wrapped Pub/Sub deliveries of audit-log SetIamPolicy REMOVE
# entries across a generated 100-project world (30% of projects broken), 30% duplicates (same messageId
# re-sent), 64 in flight, at most 180 s. Prints deliveries/s, p50/p99 latency, status codes, policy reads
# and writes per project (target: one write per broken binding), and serve's peak RSS.
#
# Env: PROJECTS (100), DELIVERIES (10000), DUPLICATES (0.3), CONCURRENCY (64), MAX_SECONDS (180),
#      BENCH_LATENCY_MS (20), BROKEN (0.3), COALESCE_MS (0 = leading edge, serve's REMEDIATOR_COALESCE_MS),
#      RATE (2000 requests/s per API; serve's built-in default is 10/s for Resource Manager).
source "$(dirname "$0")/lib/common.sh"
need_bin "$BIN" "$LOADGEN"

PROJECTS=${PROJECTS:-100}
DELIVERIES=${DELIVERIES:-10000}
DUPLICATES=${DUPLICATES:-0.3}
CONCURRENCY=${CONCURRENCY:-64}
MAX_SECONDS=${MAX_SECONDS:-180}
LATENCY=${BENCH_LATENCY_MS:-20}
BROKEN=${BROKEN:-0.3}
COALESCE_MS=${COALESCE_MS:-0}
RATE=${RATE:-2000}
SELF=gke-iam-remediator@ops-project.iam.gserviceaccount.com

echo "== events: $DELIVERIES deliveries over $PROJECTS projects, ${DUPLICATES} duplicates, $CONCURRENCY in flight, simulated latency ${LATENCY} ms per API call, coalesce ${COALESCE_MS} ms, rate limit $RATE/s per API"

WORLD="$BENCH_TMP/world.json"
python3 "$BENCH_ROOT/infra/gen-world.py" --projects "$PROJECTS" --folders 5 --seed 2 \
    --broken-fraction "$BROKEN" >"$WORLD" 2>/dev/null
jq -r '.projects[].id' "$WORLD" >"$BENCH_TMP/projects.txt"
start_sim "$WORLD"

rate_args=()
for api in cloudresourcemanager iam container serviceusage recommender; do
    rate_args+=(--rate-limit "$api=$RATE")
done

# Expected writes: the bindings a dry-run scan would restore (one project run restores all of a project's
# missing bindings in one read-modify-write).
"$BIN" scan --organization 123456789012 --format json --api-endpoint "$SIM" --concurrency 64 \
    "${rate_args[@]}" >"$BENCH_TMP/before.json" || true
jq -r '.projects[] | select([.actions[] | select(.outcome == "would-restore")] | length > 0) | .project_id' \
    "$BENCH_TMP/before.json" | sort >"$BENCH_TMP/broken-projects.txt"
broken_bindings=$(jq '[.projects[].actions[] | select(.outcome == "would-restore")] | length' "$BENCH_TMP/before.json")
broken_projects=$(wc -l <"$BENCH_TMP/broken-projects.txt")

sim_latency "$LATENCY"
printf 'mode: enforce\n' >"$BENCH_TMP/policy.yaml"
env REMEDIATOR_API_ENDPOINT="$SIM" REMEDIATOR_ACCESS_TOKEN="sim:$SELF" REMEDIATOR_SELF_EMAIL="$SELF" \
    REMEDIATOR_POLICY="$BENCH_TMP/policy.yaml" REMEDIATOR_COALESCE_MS="$COALESCE_MS" \
    REMEDIATOR_LOG_FORMAT=json RUST_LOG=warn \
    "$BIN" serve --listen 127.0.0.1:0 "${rate_args[@]}" >"$BENCH_TMP/serve.out" 2>&1 &
SERVE_PID=$!
BENCH_PIDS+=("$SERVE_PID")
SERVE=$(wait_listening "$BENCH_TMP/serve.out" "$SERVE_PID")
rss_idle=$(vm_rss_kb "$SERVE_PID")
sim_reset_stats

"$LOADGEN" --url "$SERVE/pubsub/push" --projects-file "$BENCH_TMP/projects.txt" \
    --deliveries "$DELIVERIES" --duplicates "$DUPLICATES" --concurrency "$CONCURRENCY" \
    --max-seconds "$MAX_SECONDS" --seed 7 >"$BENCH_TMP/load.json"

# Wait until the simulator is quiet (runs still in flight finish).
prev=-1
for ((i = 0; i < 60; i++)); do
    cur=$(sim_stats | jq .total)
    [[ "$cur" == "$prev" ]] && break
    prev=$cur
    sleep 1
done
peak_kb=$(vm_hwm_kb "$SERVE_PID")
healthz=$(curl -fsS "$SERVE/healthz")
stats=$(sim_stats)
curl -fsS "${SIM}_sim/journal" >"$BENCH_TMP/journal.json"
alive=$(kill -0 "$SERVE_PID" 2>/dev/null && echo yes || echo NO)

# After: nothing restorable left?
sim_latency 0
"$BIN" scan --organization 123456789012 --format json --api-endpoint "$SIM" --concurrency 64 \
    "${rate_args[@]}" >"$BENCH_TMP/after.json" || true
left=$(jq '[.projects[].actions[] | select(.outcome == "would-restore")] | length' "$BENCH_TMP/after.json")

L="$BENCH_TMP/load.json"
per_project=$(jq -r '
  [.entries[] | select(.endpoint | test("projects\\.(getIamPolicy|setIamPolicy)$"))
   | {p: (.path | capture("projects/(?<p>[^/:]+):").p), w: (.endpoint | test("setIamPolicy$"))}]
  | group_by(.p) | map({p: .[0].p, reads: ([.[] | select(.w | not)] | length), writes: ([.[] | select(.w)] | length)})' \
  "$BENCH_TMP/journal.json")
max_writes=$(jq '[.[].writes] | max // 0' <<<"$per_project")
writes=$(jq '[.[].writes] | add // 0' <<<"$per_project")
reads=$(jq '[.[].reads] | add // 0' <<<"$per_project")
written_projects=$(jq -r '.[] | select(.writes > 0) | .p' <<<"$per_project" | sort)
extra=$(comm -13 "$BENCH_TMP/broken-projects.txt" <(echo "$written_projects" | sed '/^$/d') | wc -l)

hr
printf '%-40s %s\n' "deliveries sent / planned" "$(jq -r '"\(.sent) / \(.planned) (\(.unique) unique, \(.duplicates) duplicates)"' "$L")"
printf '%-40s %s\n' "wall time (ms)" "$(jq -r .elapsed_ms "$L")"
printf '%-40s %s\n' "deliveries/s" "$(jq -r .deliveries_per_s "$L")"
printf '%-40s %s\n' "latency p50 / p90 / p99 / max (ms)" "$(jq -r '.latency_ms | "\(.p50) / \(.p90) / \(.p99) / \(.max)"' "$L")"
printf '%-40s %s\n' "status codes" "$(jq -c .status "$L") transport errors: $(jq -r .transport_errors "$L")"
printf '%-40s %s\n' "serve /healthz counters" "$healthz"
printf '%-40s %s\n' "policy reads (project getIamPolicy)" "$reads total, $(python3 -c "print(round($reads/$PROJECTS,1))") per project"
printf '%-40s %s\n' "policy writes (project setIamPolicy)" "$writes total, max $max_writes in one project"
printf '%-40s %s\n' "broken bindings before (dry-run scan)" "$broken_bindings in $broken_projects projects"
printf '%-40s %s\n' "writes per broken binding" "$(python3 -c "print(round($writes/max($broken_bindings,1),2))")"
printf '%-40s %s\n' "projects written but not broken" "$extra"
printf '%-40s %s\n' "restorable bindings left after" "$left"
printf '%-40s %s\n' "all API calls during the burst" "$(jq .total <<<"$stats") ($(python3 -c "print(round($(jq .total <<<"$stats")/$PROJECTS,1))") per project)"
printf '%-40s %s\n' "serve RSS idle / peak (MB)" "$(python3 -c "print(round($rss_idle/1024,1), '/', round($peak_kb/1024,1))")"
printf '%-40s %s\n' "serve alive after the burst" "$alive"
hr
echo "calls by endpoint: $(jq -c .by_endpoint <<<"$stats")"
[[ "$alive" == yes && "$left" == 0 ]]
