#!/usr/bin/env bash
# Scale: `scan --organization` over a generated organization (default 2,000 projects in 20 nested folders,
# GKE in most projects, inherited folder grants, project and organization custom roles, 10% broken) with
# simulated API latency (default 20 ms). Prints wall time, API calls per project, distinct custom roles and
# peak RSS, the median of several runs, against the issue's targets (< 20 s, <= 4 calls per healthy
# project + 1 per distinct custom role, < 150 MB). A second world with no breakage gives the healthy-only
# figure.
#
# Env: PROJECTS (2000), FOLDERS (20), BROKEN (0.1), BENCH_LATENCY_MS (20), RUNS (3), CONCURRENCY (128),
#      RATE (2000 requests/s per API, client side).
source "$(dirname "$0")/lib/common.sh"
need_bin "$BIN"

PROJECTS=${PROJECTS:-2000}
FOLDERS=${FOLDERS:-20}
BROKEN=${BROKEN:-0.1}
LATENCY=${BENCH_LATENCY_MS:-20}
RUNS=${RUNS:-3}
CONCURRENCY=${CONCURRENCY:-128}
RATE=${RATE:-2000}
ORG=123456789012

rate_args=()
for api in cloudresourcemanager iam container serviceusage recommender; do
    rate_args+=(--rate-limit "$api=$RATE")
done
# shellcheck disable=SC2207
rate_args+=($(iam_v2_args "$BIN"))

echo "== scale: $PROJECTS projects, $FOLDERS folders, simulated latency ${LATENCY} ms per API call, --concurrency $CONCURRENCY, rate limit $RATE/s per API, $RUNS runs (median)"

run_world() { # label broken_fraction
    local label=$1 broken=$2 world="$BENCH_TMP/world-$1.json"
    python3 "$BENCH_ROOT/infra/gen-world.py" --projects "$PROJECTS" --folders "$FOLDERS" --seed 1 \
        --broken-fraction "$broken" --org-id "$ORG" >"$world" 2>/dev/null
    local custom_roles
    custom_roles=$(jq '[.organization.custom_roles[]?.name] + [.projects[].custom_roles[]?.name] | unique | length' "$world")
    start_sim "$world"
    sim_latency "$LATENCY"
    local walls=() rss=() r m
    for ((r = 0; r < RUNS; r++)); do
        sim_reset_stats
        m=$($MEASURE "$BENCH_TMP/scan-$label.json" --timeout 600 -- "$BIN" scan --organization "$ORG" \
            --format json --api-endpoint "$SIM" --concurrency "$CONCURRENCY" "${rate_args[@]}")
        walls+=("$(jq -r .wall_ms <<<"$m")")
        rss+=("$(jq -r .max_rss_kb <<<"$m")")
    done
    local stats doc
    stats=$(sim_stats)
    doc="$BENCH_TMP/scan-$label.json"
    local wall peak total nproj healthy errors role_reads broken_projects
    wall=$(printf '%s\n' "${walls[@]}" | median)
    peak=$(printf '%s\n' "${rss[@]}" | median)
    total=$(jq .total <<<"$stats")
    nproj=$(jq '.projects | length' "$doc")
    errors=$(jq '.summary.errors // 0' "$doc")
    healthy=$(jq '[.projects[] | select(.error == null and ([.findings[] | select(.status != "ok")] | length == 0))] | length' "$doc")
    broken_projects=$((nproj - healthy))
    role_reads=$(jq '[.by_endpoint | to_entries[] | select(.key | test("roles\\.get$")) | .value] | add // 0' <<<"$stats")
    echo "$label|$wall|$peak|$total|$nproj|$healthy|$broken_projects|$errors|$custom_roles|$role_reads|$(jq -c .by_endpoint <<<"$stats")" >>"$BENCH_TMP/rows"
    stop_pid "$SIM_PID"
}

run_world mixed "$BROKEN"
run_world healthy 0

hr
printf '%-9s %9s %9s %7s %8s %8s %7s %8s %8s %10s %14s\n' world wall_ms rss_MB calls projects healthy broken custom role_gets calls/proj "(calls-roles)/p"
while IFS='|' read -r label wall peak total nproj healthy brk errors custom role_reads by; do
    python3 - "$label" "$wall" "$peak" "$total" "$nproj" "$healthy" "$brk" "$custom" "$role_reads" <<'PY'
import sys
label, wall, peak, total, nproj, healthy, brk, custom, roles = sys.argv[1:]
wall, peak, total, nproj, roles = float(wall), float(peak), int(total), max(int(nproj), 1), int(roles)
print(f"{label:<9} {wall:>9.0f} {peak/1024:>9.1f} {total:>7} {nproj:>8} {healthy:>8} {brk:>7} {custom:>8} {roles:>8} {total/nproj:>10.2f} {(total-roles)/nproj:>14.2f}")
PY
done <"$BENCH_TMP/rows"
hr
echo "targets: wall < 20000 ms, calls <= 4 per healthy project + 1 per distinct custom role, peak RSS < 150 MB"
while IFS='|' read -r label wall peak total nproj healthy brk errors custom role_reads by; do
    budget=$((4 * nproj + custom))
    [[ "$label" == healthy ]] && verdict=$([[ $total -le $budget ]] && echo met || echo MISSED) || verdict="(broken projects need more reads and writes)"
    echo "$label: $total calls vs budget 4*$nproj+$custom=$budget: $verdict; errors: $errors"
    echo "$label calls by endpoint: $by"
done <"$BENCH_TMP/rows"
