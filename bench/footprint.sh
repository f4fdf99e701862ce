#!/usr/bin/env bash
# Footprint: release binary size, `serve` start-up to ready on /healthz (median of RUNS, default 10) and
# idle RSS one second after start. serve runs in dry-run against a local simulator address (nothing is
# called at start-up), no notifications topic.
source "$(dirname "$0")/lib/common.sh"
need_bin "$BIN"
RUNS=${RUNS:-10}

start_sim "$BENCH_ROOT/infra/worlds/healthy.yaml"
size=$(stat -c %s "$BIN")
out=$(REMEDIATOR_API_ENDPOINT="$SIM" python3 "$BENCH_ROOT/bench/lib/startup.py" "$BIN" "$RUNS")
ready=$(jq -r '.ready_ms[]' <<<"$out" | median)
ready_max=$(jq -r '.ready_ms | max' <<<"$out")
idle=$(jq -r '.idle_rss_kb[]' <<<"$out" | median)

echo "== footprint: $(basename "$BIN") $("$BIN" --version | awk '{print $2}'), $RUNS start-ups"
hr
printf '%-44s %s\n' "release binary size" "$(python3 -c "print(f'{$size/1048576:.1f} MiB ($size bytes)')")"
printf '%-44s %s\n' "serve start-up to /healthz 200 (median, max)" "$ready ms, $ready_max ms"
printf '%-44s %s\n' "serve idle RSS after 1 s (median)" "$(python3 -c "print(f'{$idle/1024:.1f} MiB')")"
hr
