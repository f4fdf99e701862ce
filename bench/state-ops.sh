#!/usr/bin/env bash
# State operations: `job --sweep --organization` of a generated organization, three times over one
# state store, in enforce mode: the first sweep on an empty store (every project's ledger is written
# once, broken bindings restored and announced), the second on the restored world with nothing changed
# (the issue's figure: store operations per project, target < 2), the third after breaking one project
# again (only its transitions are written and published). Prints, side by side per sweep: store reads,
# writes and conflicts (from the job's `ledger totals` log line), per project, notifications published,
# exit code and wall time.
#
# Env: PROJECTS (10000), FOLDERS (20), BROKEN (0.02), BENCH_LATENCY_MS (20), STATE (file: a fresh
#      directory; or firestore://projects/P/databases/D with FIRESTORE_EMULATOR_HOST set).
source "$(dirname "$0")/lib/common.sh"
need_bin "$BIN"
START_TIMEOUT=${START_TIMEOUT:-300}
PROJECTS=${PROJECTS:-10000}
FOLDERS=${FOLDERS:-20}
BROKEN=${BROKEN:-0.02}
LATENCY=${BENCH_LATENCY_MS:-20}
STATE=${STATE:-file:$BENCH_TMP/state}
ORG=123456789012

world="$BENCH_TMP/world.json"
python3 "$BENCH_ROOT/infra/gen-world.py" --projects "$PROJECTS" --folders "$FOLDERS" --seed 1 \
    --broken-fraction "$BROKEN" --org-id "$ORG" >"$world" 2>"$BENCH_TMP/gen.err"
echo "== state operations per sweep: $PROJECTS projects, $FOLDERS folders, $(sed 's/^generated //' "$BENCH_TMP/gen.err"), ${LATENCY} ms latency, state $STATE"
start_sim "$world"
sim_latency "$LATENCY"
printf 'mode: enforce\nlimits:\n  max_writes_per_run: 100000\n' >"$BENCH_TMP/policy.yaml"

sweep() { # label
    local label=$1 start end rc=0
    start=$(date +%s.%N)
    REMEDIATOR_STATE="$STATE" REMEDIATOR_POLICY="$BENCH_TMP/policy.yaml" REMEDIATOR_LOG_FORMAT=json \
        "$BIN" job --sweep --organization "$ORG" --api-endpoint "$SIM" \
        >"$BENCH_TMP/$label.log" 2>&1 || rc=$?
    end=$(date +%s.%N)
    python3 - "$BENCH_TMP/$label.log" "$BENCH_TMP/$label.out" "$rc" "$start" "$end" "$PROJECTS" >"$BENCH_TMP/$label.row" <<'PY'
import json, sys
log, out, rc, start, end, projects = sys.argv[1:7]
totals, published = {}, 0
for line in open(log):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if d.get("message") == "ledger totals":
        totals = d
    if d.get("message") == "finding outcome":
        published += 1
print(json.dumps({"rc": int(rc), "wall": float(end) - float(start), "reads": int(totals.get("stateReads", -1)),
                  "writes": int(totals.get("stateWrites", -1)), "published": published,
                  "open": totals.get("openFindings"), "projects": int(projects)}))
PY
}

sweep first
sweep unchanged
# One project broken again by hand (its node role removed through the simulator's IAM API): only
# its transition is written and announced.
python3 - "$SIM" "$world" <<'PY'
import json, sys, urllib.request
sim, world = sys.argv[1], json.load(open(sys.argv[2]))
def call(path, body):
    req = urllib.request.Request(sim + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
for p in world["projects"]:
    policy = call(f"v1/projects/{p['id']}:getIamPolicy", {"options": {"requestedPolicyVersion": 3}})
    node = [b for b in policy.get("bindings", []) if b["role"] == "roles/container.defaultNodeServiceAccount"]
    if node:
        policy["bindings"] = [b for b in policy["bindings"] if b not in node]
        call(f"v1/projects/{p['id']}:setIamPolicy", {"policy": policy})
        print(f"broke {p['id']}", file=sys.stderr)
        break
PY
sweep one-broken

hr
python3 - "$BENCH_TMP" <<'PY'
import json, sys, os
rows = {l: json.load(open(os.path.join(sys.argv[1], f"{l}.row"))) for l in ("first", "unchanged", "one-broken")}
print(f"{'':<28} {'first (empty store)':>20} {'unchanged':>20} {'one broken again':>20}")
def line(name, f):
    print(f"{name:<28} " + " ".join(f"{f(rows[l]):>20}" for l in ("first", "unchanged", "one-broken")))
line("store reads", lambda r: r["reads"])
line("store writes", lambda r: r["writes"])
line("store ops per project", lambda r: f"{(r['reads'] + r['writes']) / r['projects']:.2f}")
line("notifications", lambda r: r["published"])
line("exit code", lambda r: r["rc"])
line("wall time", lambda r: f"{r['wall']:.1f} s")
u = rows["unchanged"]
ok = u["reads"] >= 0 and (u["reads"] + u["writes"]) / u["projects"] < 2 and u["published"] == 0
print(f"target (unchanged sweep: < 2 store ops per project, nothing published): {'met' if ok else 'NOT met'}")
PY
