#!/usr/bin/env bash
# Scan output: wall time, peak RSS and write(2) calls of `scan --organization` over a generated world
# (default 2,000 projects), JSON and table, for this build and optionally a baseline build side by side
# (BASE_BIN=path/to/older/gke-iam-remediator). Shows what buffered, streamed output costs and saves.
#
# Env: PROJECTS (2000), FOLDERS (20), BENCH_LATENCY_MS (0: output cost stands out; 20 as scale.sh),
#      RUNS (3, median), CONCURRENCY (128), RATE (2000/s per API), BASE_BIN (unset: this build only).
source "$(dirname "$0")/lib/common.sh"
need_bin "$BIN"
[[ -n "${BASE_BIN:-}" ]] && need_bin "$BASE_BIN"

PROJECTS=${PROJECTS:-2000}
FOLDERS=${FOLDERS:-20}
LATENCY=${BENCH_LATENCY_MS:-0}
RUNS=${RUNS:-3}
CONCURRENCY=${CONCURRENCY:-128}
RATE=${RATE:-2000}
ORG=123456789012
command -v strace >/dev/null || { echo "strace is needed to count write(2) calls" >&2; exit 2; }

rate_args=()
for api in cloudresourcemanager iam container serviceusage recommender; do
    rate_args+=(--rate-limit "$api=$RATE")
done

world="$BENCH_TMP/world.json"
python3 "$BENCH_ROOT/infra/gen-world.py" --projects "$PROJECTS" --folders "$FOLDERS" --seed 1 \
    --broken-fraction 0.1 --org-id "$ORG" >"$world" 2>/dev/null
start_sim "$world"
sim_latency "$LATENCY"
echo "== scan output: $PROJECTS projects, latency ${LATENCY} ms, --concurrency $CONCURRENCY, $RUNS runs (median)"

measure() { # label bin format
    local label=$1 bin=$2 format=$3 walls=() rss=() r m writes
    for ((r = 0; r < RUNS; r++)); do
        m=$(RUST_LOG=error $MEASURE "$BENCH_TMP/out" --timeout 600 -- "$bin" scan --organization "$ORG" \
            --format "$format" --api-endpoint "$SIM" --concurrency "$CONCURRENCY" "${rate_args[@]}" \
            $(iam_v2_args "$bin") 2>/dev/null)
        walls+=("$(jq -r .wall_ms <<<"$m")")
        rss+=("$(jq -r .max_rss_kb <<<"$m")")
    done
    if [[ "$format" == json ]]; then jq -e '.projects | length' "$BENCH_TMP/out" >/dev/null || { echo "$label: invalid JSON" >&2; exit 1; }; fi
    # write(2) calls on standard output only (sockets and eventfds are not output).
    RUST_LOG=error strace -f -qq -e trace=write,writev -o "$BENCH_TMP/strace" "$bin" scan --organization "$ORG" \
        --format "$format" --api-endpoint "$SIM" --concurrency "$CONCURRENCY" "${rate_args[@]}" \
        $(iam_v2_args "$bin") >"$BENCH_TMP/out" 2>/dev/null || true
    writes=$(grep -cE '(^|[0-9] )writev?\(1,' "$BENCH_TMP/strace" || true)
    printf '%-10s %-6s %10s %10s %12s %12s\n' "$label" "$format" \
        "$(printf '%s\n' "${walls[@]}" | median)" \
        "$(python3 -c "import sys; print(round($(printf '%s\n' "${rss[@]}" | median)/1024, 1))")" \
        "${writes:-0}" "$(wc -c <"$BENCH_TMP/out")"
}

hr
printf '%-10s %-6s %10s %10s %12s %12s\n' build format wall_ms rss_MB "write(2)" stdout_bytes
for format in json table; do
    [[ -n "${BASE_BIN:-}" ]] && measure baseline "$BASE_BIN" "$format"
    measure this "$BIN" "$format"
done
hr
