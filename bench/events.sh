#!/usr/bin/env bash
# Events: `serve` (release binary, enforce policy, no notifications topic) under a burst of push deliveries
# from examples/loadgen.rs: by default 10,000 wrapped Pub/Sub deliveries of audit-log SetIamPolicy REMOVE
# entries across a generated 100-project world (30% of projects broken), 30% duplicates (same messageId
# re-sent), at each of several numbers of requests in flight (64 and 256), at most 180 s per level. Every
# level starts from the same broken world (simulator reset) and a fresh `serve`. Prints one column per level,
# side by side: deliveries/s, p50/p90/p99/max latency, status codes, policy reads and writes (target: one
# write per broken binding), and serve's peak RSS; then draws throughput and p50/p99 against requests in
# flight (bench/lib/plot_events.py, matplotlib in a venv) from the measured rows.
#
# Env: LEVELS ("64 256": requests in flight), PROJECTS (100), DELIVERIES (10000), DUPLICATES (0.3),
#      MAX_SECONDS (180), BENCH_LATENCY_MS (20), BROKEN (0.3), COALESCE_MS (0 = leading edge, serve's
#      REMEDIATOR_COALESCE_MS), RATE (2000 requests/s per API; serve's built-in default is 10/s for Resource
#      Manager), PLOT (bench/results/events.png; empty: no plot), ROWS (where the measured rows are written as
#      JSON lines, default bench/results/events.jsonl), BENCH_VENV (bench/.venv: created with matplotlib
#      from PyPI when missing), RATE_APIS (the APIs RATE applies to; add `logging` to lift serve's 1/s
#      Cloud Logging pacing, which is Logging's read quota). CONCURRENCY=N is accepted as LEVELS=N.
source "$(dirname "$0")/lib/common.sh"
need_bin "$BIN" "$LOADGEN"

PROJECTS=${PROJECTS:-100}
DELIVERIES=${DELIVERIES:-10000}
DUPLICATES=${DUPLICATES:-0.3}
LEVELS=${LEVELS:-${CONCURRENCY:-64 256}}
MAX_SECONDS=${MAX_SECONDS:-180}
LATENCY=${BENCH_LATENCY_MS:-20}
BROKEN=${BROKEN:-0.3}
COALESCE_MS=${COALESCE_MS:-0}
RATE=${RATE:-2000}
PLOT=${PLOT-$BENCH_ROOT/bench/results/events.png}
ROWS=${ROWS:-$BENCH_ROOT/bench/results/events.jsonl}
SELF=gke-iam-remediator@ops-project.iam.gserviceaccount.com

echo "== events: $DELIVERIES deliveries over $PROJECTS projects, ${DUPLICATES} duplicates, in flight: $LEVELS; simulated latency ${LATENCY} ms per API call, coalesce ${COALESCE_MS} ms, rate limit $RATE/s per API"
echo "   machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"

WORLD="$BENCH_TMP/world.json"
python3 "$BENCH_ROOT/infra/gen-world.py" --projects "$PROJECTS" --folders 5 --seed 2 \
    --broken-fraction "$BROKEN" >"$WORLD" 2>/dev/null
jq -r '.projects[].id' "$WORLD" >"$BENCH_TMP/projects.txt"
start_sim "$WORLD"

rate_args=()
for api in ${RATE_APIS:-cloudresourcemanager iam container serviceusage recommender}; do
    rate_args+=(--rate-limit "$api=$RATE")
done

# The checks before and after (not measured) read every deny policy at once: the simulator enforces no
# IAM v2 quota here, and `serve` itself runs at the shipped default (5 a minute, never waited for).
check_args=(--rate-limit iam-v2=100000)

# Expected writes: the bindings a dry-run scan would restore (one project run restores all of a project's
# missing bindings in one read-modify-write).
"$BIN" scan --organization 123456789012 --format json --api-endpoint "$SIM" --concurrency 64 \
    "${rate_args[@]}" "${check_args[@]}" >"$BENCH_TMP/before.json" 2>"$BENCH_TMP/before.err" || true
jq -r '.projects[] | select([.actions[] | select(.outcome == "would-restore")] | length > 0) | .project_id' \
    "$BENCH_TMP/before.json" | sort >"$BENCH_TMP/broken-projects.txt"
broken_bindings=$(jq '[.projects[].actions[] | select(.outcome == "would-restore")] | length' "$BENCH_TMP/before.json")
broken_projects=$(wc -l <"$BENCH_TMP/broken-projects.txt")
printf 'mode: enforce\n' >"$BENCH_TMP/policy.yaml"

# run_level N: one burst at N in flight against a fresh serve and the world as loaded; appends a JSON row.
run_level() {
    local n=$1 out="$BENCH_TMP/level-$1"
    mkdir -p "$out"
    curl -fsS -X POST "${SIM}_sim/reset" >/dev/null
    sim_latency "$LATENCY"
    env REMEDIATOR_API_ENDPOINT="$SIM" REMEDIATOR_ACCESS_TOKEN="sim:$SELF" REMEDIATOR_SELF_EMAIL="$SELF" \
        REMEDIATOR_POLICY="$BENCH_TMP/policy.yaml" REMEDIATOR_COALESCE_MS="$COALESCE_MS" \
        REMEDIATOR_LOG_FORMAT=json RUST_LOG=warn \
        "$BIN" serve --listen 127.0.0.1:0 "${rate_args[@]}" >"$out/serve.out" 2>&1 &
    local serve_pid=$!
    BENCH_PIDS+=("$serve_pid")
    local serve
    serve=$(wait_listening "$out/serve.out" "$serve_pid")
    local rss_idle
    rss_idle=$(vm_rss_kb "$serve_pid")
    sim_reset_stats
    local cpu_before
    cpu_before=$(proc_cpu_ticks "$serve_pid")

    "$LOADGEN" --url "$serve/pubsub/push" --projects-file "$BENCH_TMP/projects.txt" \
        --deliveries "$DELIVERIES" --duplicates "$DUPLICATES" --concurrency "$n" \
        --max-seconds "$MAX_SECONDS" --seed 7 >"$out/load.json"

    # Wait until the simulator is quiet (runs still in flight finish).
    local prev=-1 cur i
    for ((i = 0; i < 60; i++)); do
        cur=$(sim_stats | jq .total)
        [[ "$cur" == "$prev" ]] && break
        prev=$cur
        sleep 1
    done
    local cpu_after peak_kb healthz alive
    cpu_after=$(proc_cpu_ticks "$serve_pid")
    peak_kb=$(vm_hwm_kb "$serve_pid")
    healthz=$(curl -fsS "$serve/healthz")
    sim_stats >"$out/stats.json"
    curl -fsS "${SIM}_sim/journal" >"$out/journal.json"
    alive=$(kill -0 "$serve_pid" 2>/dev/null && echo yes || echo NO)
    stop_pid "$serve_pid"

    # After: nothing restorable left?
    sim_latency 0
    "$BIN" scan --organization 123456789012 --format json --api-endpoint "$SIM" --concurrency 64 \
        "${rate_args[@]}" "${check_args[@]}" >"$out/after.json" 2>"$out/after.err" || true
    local left
    left=$(jq '[.projects[].actions[] | select(.outcome == "would-restore")] | length' "$out/after.json")

    jq -r '
      [.entries[] | select(.endpoint | test("projects\\.(getIamPolicy|setIamPolicy)$"))
       | {p: (.path | capture("projects/(?<p>[^/:]+):").p), w: (.endpoint | test("setIamPolicy$"))}]
      | group_by(.p) | map({p: .[0].p, reads: ([.[] | select(.w | not)] | length), writes: ([.[] | select(.w)] | length)})' \
      "$out/journal.json" >"$out/per-project.json"
    local written extra
    written=$(jq -r '.[] | select(.writes > 0) | .p' "$out/per-project.json" | sort)
    extra=$(comm -13 "$BENCH_TMP/broken-projects.txt" <(echo "$written" | sed '/^$/d') | wc -l)

    jq -c -n --argjson n "$n" --slurpfile load "$out/load.json" --slurpfile pp "$out/per-project.json" \
        --slurpfile stats "$out/stats.json" --argjson healthz "$healthz" \
        --argjson broken "$broken_bindings" --argjson broken_projects "$broken_projects" \
        --argjson extra "$extra" --argjson left "$left" --arg alive "$alive" \
        --argjson rss_idle "$rss_idle" --argjson peak "$peak_kb" --argjson latency "$LATENCY" \
        --argjson cpu_ticks "$((cpu_after - cpu_before))" --argjson hz "$(getconf CLK_TCK)" \
        --argjson projects "$PROJECTS" '
      ($load[0]) as $l | ($pp[0]) as $pp |
      {in_flight: $n, sent: $l.sent, planned: $l.planned, unique: $l.unique, duplicates: $l.duplicates,
       elapsed_ms: $l.elapsed_ms, deliveries_per_s: $l.deliveries_per_s, latency_ms: $l.latency_ms,
       status: $l.status, transport_errors: $l.transport_errors, timed_out: $l.timed_out,
       simulated_latency_ms: $latency,
       reads: ([$pp[].reads] | add // 0), writes: ([$pp[].writes] | add // 0),
       max_writes_per_project: ([$pp[].writes] | max // 0),
       broken_bindings: $broken, broken_projects: $broken_projects,
       writes_per_broken_binding: ((([$pp[].writes] | add // 0) / ([$broken, 1] | max)) * 100 | round / 100),
       written_not_broken: $extra, left_after: $left,
       api_calls: $stats[0].total, api_calls_per_project: (($stats[0].total / $projects) * 10 | round / 10),
       serve_cpu_s: ($cpu_ticks / $hz), serve_cpu_us_per_delivery: (($cpu_ticks / $hz) * 1e6 / ([$l.sent, 1] | max) | round),
       rss_idle_mb: (($rss_idle / 1024) * 10 | round / 10), rss_peak_mb: (($peak / 1024) * 10 | round / 10),
       healthz: $healthz, alive: $alive}' >>"$BENCH_TMP/rows.jsonl"
    echo "   $n in flight: done ($(jq -r .deliveries_per_s "$out/load.json") deliveries/s)" >&2
}

proc_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

for n in $LEVELS; do
    run_level "$n"
done

R="$BENCH_TMP/rows.jsonl"
row() { printf '%-40s' "$1"; jq -r "$2" "$R" | while IFS= read -r v; do printf ' %22s' "$v"; done; echo; }
hr
row "requests in flight" '.in_flight'
row "deliveries sent / planned" '"\(.sent) / \(.planned)"'
row "wall time (ms)" '.elapsed_ms'
row "deliveries/s" '.deliveries_per_s'
row "latency p50 / p90 (ms)" '"\(.latency_ms.p50) / \(.latency_ms.p90)"'
row "latency p99 / max (ms)" '"\(.latency_ms.p99) / \(.latency_ms.max)"'
row "p99 minus 2 API rounds (ms)" '"\(.latency_ms.p99 - 2 * .simulated_latency_ms) (2 x \(.simulated_latency_ms) ms)"'
row "status codes" '.status | to_entries | map("\(.key)x\(.value)") | join(",")'
row "transport errors / timed out" '"\(.transport_errors) / \(.timed_out)"'
row "policy reads (project getIamPolicy)" '.reads'
row "policy writes (project setIamPolicy)" '"\(.writes) (max \(.max_writes_per_project)/project)"'
row "broken bindings before (dry-run scan)" '"\(.broken_bindings) in \(.broken_projects) projects"'
row "writes per broken binding" '.writes_per_broken_binding'
row "projects written but not broken" '.written_not_broken'
row "restorable bindings left after" '.left_after'
row "all API calls (per project)" '"\(.api_calls) (\(.api_calls_per_project))"'
row "serve CPU (s) / per delivery (us)" '"\(.serve_cpu_s) / \(.serve_cpu_us_per_delivery)"'
row "serve RSS idle / peak (MB)" '"\(.rss_idle_mb) / \(.rss_peak_mb)"'
row "serve alive after the burst" '.alive'
hr
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ -n "$ROWS" ]]; then
    mkdir -p "$(dirname "$ROWS")"
    cp "$R" "$ROWS"
    echo "rows: $ROWS"
fi
if [[ -n "$PLOT" ]]; then
    VENV=${BENCH_VENV:-$BENCH_ROOT/bench/.venv}
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
        echo "installing matplotlib into $VENV (PyPI) for the plot"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet "matplotlib>=3.8,<4"
    fi
    mkdir -p "$(dirname "$PLOT")"
    "$VENV/bin/python" "$BENCH_ROOT/bench/lib/plot_events.py" "$R" "$PLOT"
    echo "plot: $PLOT"
fi

# Every level: serve alive, nothing left to restore, no project written that was not broken.
jq -e -s 'all(.[]; .alive == "yes" and .left_after == 0 and .written_not_broken == 0)' "$R" >/dev/null
