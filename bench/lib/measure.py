#!/usr/bin/env python3
"""Run a command, capture its stdout to a file, and print one JSON line:
{"rc": N, "wall_ms": F, "max_rss_kb": N}. max_rss_kb is the child's peak resident set size
(getrusage RUSAGE_CHILDREN; the command must be exec'd directly, not through a shell that forks).

usage: measure.py STDOUT_FILE [--timeout SECS] -- CMD ARGS...
"""
import json
import resource
import subprocess
import sys
import time


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 3 or "--" not in args:
        print(__doc__, file=sys.stderr)
        return 2
    sep = args.index("--")
    opts, cmd = args[:sep], args[sep + 1:]
    out_file = opts[0]
    timeout = float(opts[opts.index("--timeout") + 1]) if "--timeout" in opts else 600.0
    start = time.monotonic()
    with open(out_file, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = -9
    wall_ms = (time.monotonic() - start) * 1000.0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"rc": rc, "wall_ms": round(wall_ms, 1), "max_rss_kb": rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
