#!/usr/bin/env bash
# Runs every benchmark in turn (each prints its own table). Build first:
#   cargo build --release --bins --examples
# Every figure is measured on loopback against the simulator; nothing reaches Google.
set -uo pipefail
dir=$(dirname "$0")
rc=0
for b in footprint seed-vs-scan scale org-sweep events; do
    echo
    bash "$dir/$b.sh" || { echo "bench/$b.sh FAILED (exit $?)"; rc=1; }
done
exit $rc
