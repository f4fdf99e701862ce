# Shared helpers for the bench/ scripts (sourced, not run). Needs bash, python3, curl, jq.
# Every process started here is recorded and killed by the EXIT trap; all traffic stays on 127.0.0.1.

set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BIN:-$BENCH_ROOT/target/release/gke-iam-remediator}
LOADGEN=${LOADGEN:-$BENCH_ROOT/target/release/examples/loadgen}
MEASURE="python3 $BENCH_ROOT/bench/lib/measure.py"
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
BENCH_PIDS=()

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]:-}"; do
        [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]:-}"; do
        [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

need_bin() {
    local f
    for f in "$@"; do
        if [[ ! -x "$f" ]]; then
            echo "missing $f: run \`cargo build --release --bins --examples\` first (--examples alone does not build the binary)" >&2
            exit 2
        fi
    done
}

# wait_listening FILE PID: waits (max $START_TIMEOUT s, default 30; a 10,000-project world takes longer
# to load) for "listening on http://ADDR" in FILE; prints http://ADDR
wait_listening() {
    local file=$1 pid=$2 i
    for ((i = 0; i < ${START_TIMEOUT:-30} * 10; i++)); do
        if grep -q '^listening on ' "$file" 2>/dev/null; then
            sed -n 's/^listening on \(http:\/\/[^ ]*\).*/\1/p' "$file" | head -1
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "process $pid exited before listening:" >&2
            cat "$file" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    echo "process $pid did not print its address within ${START_TIMEOUT:-30} s" >&2
    return 1
}

# start_sim WORLD_FILE: starts the simulator, sets SIM (base URL with trailing slash) and SIM_PID
start_sim() {
    local out="$BENCH_TMP/sim.$RANDOM.out"
    "$BIN" sim --world "$1" --listen 127.0.0.1:0 >"$out" 2>"$out.err" &
    SIM_PID=$!
    BENCH_PIDS+=("$SIM_PID")
    SIM="$(wait_listening "$out" "$SIM_PID")/"
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# sim_faults JSON
sim_faults() { curl -fsS -X PUT -H 'content-type: application/json' --data "$1" "${SIM}_sim/faults" >/dev/null; }
sim_reset_stats() { curl -fsS -X DELETE "${SIM}_sim/journal" >/dev/null; }
sim_stats() { curl -fsS "${SIM}_sim/stats"; }
sim_latency() { sim_faults "{\"latency\":{\"fixed_ms\":$1,\"jitter_ms\":${2:-0}},\"seed\":1}"; }

# median of numbers on stdin
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.stdin.read().split()]; print(round(statistics.median(v),1) if v else "n/a")'; }

# peak RSS (VmHWM, kB) of a running process
vm_hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
vm_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

hr() { printf '%s\n' "--------------------------------------------------------------------------------"; }

# iam_v2_args BIN: `--rate-limit iam-v2=100000` when BIN knows the IAM v2 limit (builds before it had none
# and read deny policies under `iam`): for scans that measure everything but Google's 5 deny reads a minute.
iam_v2_args() { if "$1" scan --help 2>/dev/null | grep -q 'iam-v2'; then echo "--rate-limit iam-v2=100000"; fi; }
