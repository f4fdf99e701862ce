#!/usr/bin/env python3
"""Start `serve` N times; for each, the time from spawn until GET /healthz answers 200, and its RSS after
an idle second. Prints one JSON line: {"ready_ms": [...], "idle_rss_kb": [...]}.

usage: startup.py BIN RUNS   (env passed through; serve listens on a free 127.0.0.1 port)
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    binary, runs = sys.argv[1], int(sys.argv[2])
    ready, idle = [], []
    for _ in range(runs):
        port = free_port()
        env = dict(os.environ, REMEDIATOR_LOG_FORMAT="json", RUST_LOG="warn")
        start = time.monotonic()
        proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = start + 30
            while True:
                if proc.poll() is not None:
                    print(f"serve exited with {proc.returncode}", file=sys.stderr)
                    return 1
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    c.request("GET", "/healthz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    print("serve not ready within 30 s", file=sys.stderr)
                    return 1
                time.sleep(0.001)
            ready.append(round((time.monotonic() - start) * 1000.0, 1))
            time.sleep(1.0)
            idle.append(rss_kb(proc.pid))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(json.dumps({"ready_ms": ready, "idle_rss_kb": idle}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
