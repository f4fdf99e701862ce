#!/usr/bin/env bash
# Short, bounded fuzz run of every target (default 20 s each). Uses cargo-fuzz (libFuzzer, coverage
# guided) when `cargo fuzz` is installed, else the stable fallback runner (mutation fuzzing, not coverage
# guided). Exit 1 if any target panics; the crashing input is kept under fuzz/artifacts/TARGET/.
#
# usage: fuzz/run-short.sh [SECONDS_PER_TARGET] [TARGET...]
#   FUZZ_ENGINE=fallback forces the stable runner; FUZZ_ENGINE=libfuzzer requires cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(push_envelope classify_data world_file policy_file condition)
engine=${FUZZ_ENGINE:-auto}
if [[ "$engine" == auto ]]; then
    if cargo fuzz --help >/dev/null 2>&1; then engine=libfuzzer; else engine=fallback; fi
fi
echo "fuzz engine: $engine, ${secs}s per target: ${targets[*]}"
rc=0
if [[ "$engine" == libfuzzer ]]; then
    for t in "${targets[@]}"; do
        mkdir -p "corpus/$t"
        # Stable toolchain: cargo-fuzz's -Z flags need RUSTC_BOOTSTRAP; no sanitizer (needs nightly std).
        RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- \
            -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 -print_final_stats=1 || rc=1
    done
else
    cargo build --release --quiet --no-default-features --bin short
    for t in "${targets[@]}"; do
        ./target/release/short "$t" "$secs" "seeds/$t" || rc=1
    done
fi
exit $rc
