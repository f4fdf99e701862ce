#!/usr/bin/env bash
# Organization sweep under the DEFAULT client rate limits (no --rate-limit overrides): `scan --organization`
# of a generated organization (default 10,000 projects in 40 nested folders, GKE in most of them) with
# simulated API latency (default 20 ms), once through Cloud Asset Inventory (snapshot, suspects re-verified
# live) and once project by project (--no-asset-inventory). Prints, side by side: wall time, peak RSS, API
# calls by API, projects decided from the snapshot and re-verified live, and whether both paths' JSON
# verdicts are identical; then the issue's targets (< 60 s wall, <= 100 Cloud Asset calls, <= 4 live calls
# per suspect project, peak RSS < 150 MB, identical verdicts).
#
# Under the default limits the per-project path is bound by Resource Manager's 10 requests/s (one policy read
# per project): about PROJECTS/10 seconds. PER_PROJECT_TIMEOUT (default 3600 s) bounds that run; a run cut
# short is printed as such and its verdicts are not compared.
#
# Env: PROJECTS (10000), FOLDERS (40), BROKEN (0.02), BENCH_LATENCY_MS (20), CONCURRENCY (64),
#      PER_PROJECT_TIMEOUT (3600), SKIP_PER_PROJECT (0), SCAN_ARGS (more `scan` arguments for both runs,
#      e.g. "--iam-v2-wait 0": deny-policy reads never wait for Google's 5 a minute), DENY_EVERY (0: with N,
#      deny policies on the organization, every folder and every Nth GKE project, see infra/gen-world.py).
source "$(dirname "$0")/lib/common.sh"
need_bin "$BIN"
START_TIMEOUT=${START_TIMEOUT:-300}

PROJECTS=${PROJECTS:-10000}
FOLDERS=${FOLDERS:-40}
BROKEN=${BROKEN:-0.02}
DENY_EVERY=${DENY_EVERY:-0}
LATENCY=${BENCH_LATENCY_MS:-20}
CONCURRENCY=${CONCURRENCY:-64}
PER_PROJECT_TIMEOUT=${PER_PROJECT_TIMEOUT:-3600}
SKIP_PER_PROJECT=${SKIP_PER_PROJECT:-0}
ORG=123456789012

world="$BENCH_TMP/world.json"
python3 "$BENCH_ROOT/infra/gen-world.py" --projects "$PROJECTS" --folders "$FOLDERS" --seed 1 \
    --broken-fraction "$BROKEN" --org-id "$ORG" --deny-every "$DENY_EVERY" >"$world" 2>"$BENCH_TMP/gen.err"
echo "== org sweep${SCAN_ARGS:+ (scan $SCAN_ARGS)}: $PROJECTS projects, $FOLDERS folders, $(cat "$BENCH_TMP/gen.err" | sed 's/^generated //'), ${LATENCY} ms simulated latency, default rate limits, --concurrency $CONCURRENCY"
start_sim "$world"
sim_latency "$LATENCY"

run_path() { # label timeout extra-args...
    local label=$1 timeout=$2
    shift 2
    sim_reset_stats
    local m
    m=$($MEASURE "$BENCH_TMP/$label.json" --timeout "$timeout" -- "$BIN" scan --organization "$ORG" \
        --format json --api-endpoint "$SIM" --concurrency "$CONCURRENCY" ${SCAN_ARGS:-} "$@")
    echo "$m" >"$BENCH_TMP/$label.measure"
    sim_stats >"$BENCH_TMP/$label.stats"
}

run_path cai 900
if [[ "$SKIP_PER_PROJECT" == 1 ]]; then
    echo "per-project run skipped (SKIP_PER_PROJECT=1)"
else
    run_path per-project "$PER_PROJECT_TIMEOUT" --no-asset-inventory
fi

hr
python3 - "$BENCH_TMP" "$PER_PROJECT_TIMEOUT" <<'PY'
import json, os, sys
tmp, timeout = sys.argv[1], float(sys.argv[2])

def load(label):
    m = os.path.join(tmp, f"{label}.measure")
    if not os.path.exists(m):
        return None
    measure = json.load(open(m))
    stats = json.load(open(os.path.join(tmp, f"{label}.stats")))
    by_api = {}
    for endpoint, n in stats.get("by_endpoint", {}).items():
        api = endpoint.split(".")[0]
        by_api[api] = by_api.get(api, 0) + n
    stats["by_api"] = by_api
    doc = None
    if measure["rc"] in (0, 1):
        try:
            doc = json.load(open(os.path.join(tmp, f"{label}.json")))
        except ValueError:
            doc = None
    return {"measure": measure, "stats": stats, "doc": doc}

runs = {label: load(label) for label in ("cai", "per-project")}
apis = sorted({a for r in runs.values() if r for a in r["stats"].get("by_api", {})})

def cell(label, f):
    r = runs[label]
    if r is None:
        return "-"
    try:
        return f(r)
    except (KeyError, TypeError):
        return "n/a"

def wall(r):
    w = r["measure"]["wall_ms"] / 1000
    return f"{w:.1f} s" + (" (TIMED OUT)" if r["measure"]["rc"] == -9 else "")

rows = [
    ("wall time", lambda r: wall(r)),
    ("peak RSS", lambda r: f"{r['measure']['max_rss_kb'] / 1024:.1f} MB"),
    ("exit code", lambda r: str(r["measure"]["rc"])),
    ("API calls (simulator)", lambda r: str(r["stats"]["total"])),
]
rows += [(f"  {a}", (lambda a: lambda r: str(r["stats"]["by_api"].get(a, 0)))(a)) for a in apis]
rows += [
    ("discovery", lambda r: r["doc"]["discovery"]["path"]),
    ("projects", lambda r: str(len(r["doc"]["projects"]))),
    ("from snapshot", lambda r: str(r["doc"]["discovery"].get("from_snapshot", "-"))),
    ("re-verified live", lambda r: str(r["doc"]["discovery"].get("reverified", "-"))),
    ("findings incomplete", lambda r: str(sum(f.get("status") == "incomplete" for p in r["doc"]["projects"] for f in p["findings"]))),
    ("findings ok", lambda r: str(sum(f.get("status") == "ok" for p in r["doc"]["projects"] for f in p["findings"]))),
]
print(f"{'':<24} {'Cloud Asset Inventory':>24} {'per project':>24}")
for name, f in rows:
    print(f"{name:<24} {cell('cai', f):>24} {cell('per-project', f):>24}")

cai, pp = runs["cai"], runs["per-project"]
identical = None
if cai and pp and cai["doc"] and pp["doc"]:
    identical = cai["doc"]["projects"] == pp["doc"]["projects"]
    if not identical:
        # The first project the paths disagree on, so a difference can be read, not only counted.
        for a, b in zip(cai["doc"]["projects"], pp["doc"]["projects"]):
            if a != b:
                print(f"first difference: {a.get('project_id')}:")
                print("  cloud asset:", json.dumps(a)[:1500])
                print("  per project:", json.dumps(b)[:1500])
                break
print(f"{'identical verdicts':<24} {('yes' if identical else 'NO') if identical is not None else 'not compared (a run did not finish)':>24}")
print("-" * 80)
if cai and cai["doc"]:
    d = cai["doc"]["discovery"]
    asset_calls = cai["stats"]["by_api"].get("cloudasset", 0)
    suspects = max(d.get("reverified", 0), 1)
    live = cai["stats"]["total"] - asset_calls
    wall_s = cai["measure"]["wall_ms"] / 1000
    rss = cai["measure"]["max_rss_kb"] / 1024
    ok = lambda c: "met" if c else "MISSED"
    print(f"target wall < 60 s: {wall_s:.1f} s: {ok(wall_s < 60)}")
    print(f"target <= 100 Cloud Asset calls: {asset_calls}: {ok(asset_calls <= 100)}")
    # Reads shared by every suspect (each folder's parent and policy, the organization's policy, predefined
    # role definitions) are made once per run, whatever the number of suspects. Deny-policy reads (IAM v2,
    # `iam.policies.listPolicies`) are counted apart: Google allows 5 a minute, they are shared by every
    # project under a folder or the organization, and a project's own are read for the snapshot's verdicts
    # too, so charging them to the suspects would say nothing about the suspects.
    shared_keys = ("folders.get", "folders.getIamPolicy", "organizations.getIamPolicy", "roles.get")
    by = cai["stats"]["by_endpoint"]
    shared = sum(n for e, n in by.items() if e.endswith(shared_keys))
    deny = sum(n for e, n in by.items() if e.startswith("iam.policies."))
    per = (live - shared - deny) / suspects
    print(f"target <= 4 live calls per suspect: {live} live calls = {shared} shared reads (folders, organization, roles) + {deny} deny-policy reads (IAM v2, at most 5 a minute) + {live - shared - deny} for {d.get('reverified', 0)} suspects = {per:.2f} per suspect: {ok(per <= 4)}")
    print(f"target peak RSS < 150 MB: {rss:.1f} MB: {ok(rss < 150)}")
    print(f"target identical verdicts: {'met' if identical else ('MISSED' if identical is False else 'not compared')}")
PY
