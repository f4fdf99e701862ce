#!/usr/bin/env python3
"""Run a command, capture its stdout to a file, and print one JSON line:
{"rc": N, "wall_ms": F, "max_rss_kb": N}. max_rss_kb is the child's peak resident set size
(getrusage RUSAGE_CHILDREN; the command must be exec'd directly, not through a shell that forks).

The wait blocks in waitpid (a timer kills the command at the timeout): Popen.wait(timeout=...) polls
with sleeps growing to 50 ms, which added up to 50 ms to a short command's wall time (a 40 ms scan
measured as 63 ms, a 64 ms one as 113 ms).

usage: measure.py STDOUT_FILE [--timeout SECS] -- CMD ARGS...
"""
import json
import resource
import subprocess
import sys
import threading
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
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        rc = proc.wait()
        wall_ms = (time.monotonic() - start) * 1000.0
        timer.cancel()
        if timed_out.is_set():
            rc = -9
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"rc": rc, "wall_ms": round(wall_ms, 1), "max_rss_kb": rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
