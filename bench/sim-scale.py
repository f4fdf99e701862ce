#!/usr/bin/env python3
"""Per-call server time of the simulator against world size (issue 11: "roughly constant time").

Usage: bench/sim-scale.py BINARY [--projects 2000,10000] [--calls 300]

For each size, generates a world with infra/gen-world.py, starts `BINARY sim`, then calls a mix of
per-resource endpoints on projects spread over the whole world (the last projects too, where a linear scan is
slowest): getIamPolicy (v1 and v3), projects.get, serviceAccounts.get through `projects/-`, clusters.list,
services.get and roles.get. Reports the mean server-side duration per call in microseconds, read from the
simulator's own journal (`GET /_sim/journal`, `duration_ms`), so client and HTTP overheads are excluded.
Python 3.11 standard library only.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def measure(binary, projects, calls, seed):
    world = json.loads(subprocess.check_output([sys.executable, os.path.join(HERE, "..", "infra", "gen-world.py"),
                                                "--projects", str(projects), "--folders", "20", "--seed", str(seed)]))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(world, f)
        path = f.name
    proc = subprocess.Popen([binary, "sim", "--world", path, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit(f"sim did not start: {line!r}")
        base = line.split()[-1].rstrip("/")
        rng = random.Random(seed)
        ps = world["projects"]
        picks = [ps[-1], ps[-2]] + [ps[rng.randrange(len(ps))] for _ in range(calls)]
        call(base, "DELETE", "/_sim/journal")
        for p in picks:
            pid, num = p["id"], p["number"]
            call(base, "POST", f"/v1/projects/{pid}:getIamPolicy", {})
            call(base, "POST", f"/v3/projects/{num}:getIamPolicy", {"options": {"requestedPolicyVersion": 3}})
            call(base, "GET", f"/v1/projects/{pid}")
            sas = p.get("service_accounts") or [{"email": f"{num}-compute@developer.gserviceaccount.com"}]
            call(base, "GET", f"/v1/projects/-/serviceAccounts/{sas[-1]['email']}")
            call(base, "GET", f"/v1/projects/{pid}/locations/-/clusters")
            call(base, "GET", f"/v1/projects/{num}/services/container.googleapis.com")
            call(base, "GET", "/v1/roles/container.defaultNodeServiceAccount")
        _, journal = call(base, "GET", "/_sim/journal")
        by = {}
        for e in journal["entries"]:
            if e["path"].startswith("/_sim/"):
                continue
            by.setdefault(e["endpoint"], []).append(e["duration_ms"] * 1000.0)
        return {k: sum(v) / len(v) for k, v in sorted(by.items())}, sum(sum(v) for v in by.values()) / sum(len(v) for v in by.values())
    finally:
        proc.terminate()
        proc.wait()
        os.unlink(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--projects", default="2000,10000")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for n in [int(x) for x in args.projects.split(",")]:
        per, mean = measure(args.binary, n, args.calls, args.seed)
        print(f"projects={n}: mean {mean:.1f} us/call")
        for k, v in per.items():
            print(f"  {k:45s} {v:8.1f} us")


if __name__ == "__main__":
    main()
