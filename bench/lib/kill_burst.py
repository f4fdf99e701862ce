"""The fleet, the pusher and the killer of bench/kill-burst.sh (standard library only; 127.0.0.1 only).

Starts three `serve` instances on fixed ports (one shared state store), a Pub/Sub-like pusher (pulls
the simulator's audit-log entries from a pull subscription and pushes each, wrapped, to the instances
round robin; a message not answered 2xx within the ack deadline is pushed again, to the next instance,
after a backoff), removes every project's node binding (the burst), kills random instances with
SIGKILL at random moments (each restarted at once on its port), waits until the world is restored and
every message acknowledged, then counts what the notifications topic received against the
simulator's journal of our writes. Prints the figures beside their targets.

Usage: kill_burst.py CONFIG_JSON (see bench/kill-burst.sh for the keys).
"""

import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

CFG = json.load(open(sys.argv[1]))
SELF = CFG["self"]
OPS = CFG["ops_project"]
NODE_ROLE = "roles/container.defaultNodeServiceAccount"
LOCK = threading.Lock()
STATS = {
    "pushes": 0,
    "acked": 0,
    "non_2xx": 0,
    "timeouts": 0,
    "connection_errors": 0,
    "redeliveries": 0,
    "given_up": 0,
    "kills": 0,
    "kills_while_busy": 0,
    "healthz_missed": 0,
}
OPS_TOTAL = {"reads": 0, "writes": 0, "conflicts": 0}


def bump(key, n=1):
    with LOCK:
        STATS[key] += n


def http(method, url, body=None, timeout=10.0, token=None):
    """(status, parsed JSON or None); raises on connection errors and timeouts."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


# ---- serve instances ---------------------------------------------------------------------------


class Instance:
    def __init__(self, n, port):
        self.n, self.port, self.proc = n, port, None
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(CFG["tmp"], f"serve-{n}.log"), "ab")

    def start(self):
        env = dict(os.environ)
        env.update(CFG["serve_env"])
        self.proc = subprocess.Popen(
            [CFG["bin"], "serve", "--listen", f"127.0.0.1:{self.port}", *CFG["serve_args"]],
            env=env,
            stdout=self.log,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve {self.n} exited at start-up; see {self.log.name}")
            try:
                status, _ = http("GET", f"{self.url}/healthz", timeout=0.5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise SystemExit(f"serve {self.n} did not answer within 30 s")

    def count_ops(self):
        """Adds this process's store operations (from /healthz) to the totals."""
        try:
            status, body = http("GET", f"{self.url}/healthz", timeout=0.5)
            state = (body or {}).get("state", {})
            with LOCK:
                for k in OPS_TOTAL:
                    OPS_TOTAL[k] += int(state.get(k, 0))
        except OSError:
            bump("healthz_missed")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.kill()


# ---- the pusher (Pub/Sub push with redelivery) ---------------------------------------------------

RR = {"next": 0}
OUTSTANDING = {"n": 0}
ALL_PULLED = {"n": 0}


def next_instance(instances):
    with LOCK:
        i = RR["next"] % len(instances)
        RR["next"] += 1
    return instances[i]


DELIVERIES = []


def describe(message):
    """What a pushed audit-log entry is about (for the deliveries file)."""
    try:
        entry = json.loads(base64.b64decode(message["data"]))
        p = entry.get("protoPayload", {})
        return {
            "resource": p.get("resourceName"),
            "actor": p.get("authenticationInfo", {}).get("principalEmail"),
            "method": p.get("methodName"),
        }
    except (KeyError, ValueError):
        return {}


def deliver(instances, message):
    """Pushes until a 2xx within the ack deadline, each attempt to the next instance."""
    started = time.time()
    attempt = 0
    record = {"message_id": message.get("messageId"), **describe(message), "attempts": []}
    with LOCK:
        DELIVERIES.append(record)
    body = {"message": message, "subscription": f"projects/{OPS}/subscriptions/iam-events-push"}
    try:
        while True:
            target = next_instance(instances)
            bump("pushes")
            if attempt > 0:
                bump("redeliveries")
            try:
                status, _ = http("POST", f"{target.url}/pubsub/push", body, timeout=CFG["ack_deadline_s"])
                record["attempts"].append([round(time.time() - started, 2), target.n, status])
                if 200 <= status < 300:
                    bump("acked")
                    return
                bump("non_2xx")
            except (TimeoutError, OSError) as e:
                record["attempts"].append([round(time.time() - started, 2), target.n, str(e)[:80]])
                bump("timeouts" if "timed out" in str(e) else "connection_errors")
            attempt += 1
            if time.time() - started > CFG["give_up_s"]:
                bump("given_up")
                return
            backoff = min(CFG["min_backoff_s"] * (2 ** (attempt - 1)), CFG["max_backoff_s"])
            time.sleep(backoff * random.uniform(0.8, 1.2))
    finally:
        with LOCK:
            OUTSTANDING["n"] -= 1


def pull(sub, max_messages=100):
    base = f"http://{CFG['pubsub']}/v1/projects/{OPS}/subscriptions/{sub}"
    _, r = http("POST", f"{base}:pull", {"maxMessages": max_messages, "returnImmediately": True})
    msgs = (r or {}).get("receivedMessages", [])
    if msgs:
        http("POST", f"{base}:acknowledge", {"ackIds": [m["ackId"] for m in msgs]})
    return [m["message"] for m in msgs]


def pusher(instances, stop):
    pool = ThreadPoolExecutor(max_workers=64)
    while not stop.is_set():
        msgs = pull("iam-events-pull")
        for m in msgs:
            with LOCK:
                OUTSTANDING["n"] += 1
                ALL_PULLED["n"] += 1
            pool.submit(deliver, instances, {k: m[k] for k in ("data", "messageId", "attributes") if k in m})
        if not msgs:
            time.sleep(0.2)
    pool.shutdown(wait=True)


# ---- the killer ----------------------------------------------------------------------------------


def killer(instances, kills_done):
    rng = random.Random(CFG["seed"])
    for _ in range(CFG["kills"]):
        time.sleep(rng.uniform(0, 2 * CFG["kill_mean_s"]))
        inst = rng.choice(instances)
        with LOCK:
            busy = OUTSTANDING["n"] > 0
        if busy:
            bump("kills_while_busy")
        inst.count_ops()
        inst.kill()
        bump("kills")
        inst.start()
    kills_done.set()


# ---- the world -----------------------------------------------------------------------------------


def sim(path, body=None, method="POST", token=None):
    status, r = http(method, CFG["sim"] + path, body, timeout=30, token=token)
    if status != 200:
        raise SystemExit(f"simulator {path}: {status} {r}")
    return r


def node_members(project):
    p = sim(f"v1/projects/{project}:getIamPolicy", {"options": {"requestedPolicyVersion": 3}})
    return p, [
        m for b in p.get("bindings", []) if b["role"] == NODE_ROLE and "condition" not in b for m in b["members"]
    ]


def remove_node_binding(project):
    token = "sim:alice@example.com"
    p, members = node_members(project)
    p["bindings"] = [b for b in p.get("bindings", []) if not (b["role"] == NODE_ROLE and "condition" not in b)]
    sim(f"v1/projects/{project}:setIamPolicy", {"policy": p}, token=token)
    return [(project, m) for m in members]


def restored(broken):
    by_project = {}
    for p, m in broken:
        by_project.setdefault(p, set()).add(m)
    for p, ms in by_project.items():
        if not ms <= set(node_members(p)[1]):
            return False
    return True


# ---- main ----------------------------------------------------------------------------------------


def main():
    instances = [Instance(n, port) for n, port in enumerate(CFG["ports"])]
    for i in instances:
        i.start()
    stop, kills_done = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=pusher, args=(instances, stop), daemon=True),
        threading.Thread(target=killer, args=(instances, kills_done), daemon=True),
    ]
    t0 = time.time()
    try:
        for t in threads:
            t.start()
        with ThreadPoolExecutor(max_workers=8) as pool:
            broken = [pair for pairs in pool.map(remove_node_binding, CFG["projects"]) for pair in pairs]
        burst_s = time.time() - t0
        sys.stderr.write(f"burst: {len(broken)} node bindings removed in {len(CFG['projects'])} projects in {burst_s:.1f} s\n")
        deadline = t0 + CFG["max_seconds"]
        done = False
        while time.time() < deadline:
            with LOCK:
                idle = OUTSTANDING["n"] == 0
            if kills_done.is_set() and idle and restored(broken):
                done = True
                break
            time.sleep(1)
        settled_s = time.time() - t0
        time.sleep(CFG["settle_s"])
        stop.set()
        threads[0].join(timeout=30)
        for i in instances:
            i.count_ops()
        notes = []
        while True:
            got = pull(CFG["notify_sub"])
            if not got:
                break
            for m in got:
                notes.append(json.loads(base64.b64decode(m["data"])))
        journal = sim("_sim/journal", method="GET")["entries"]
        report(broken, notes, journal, done, settled_s, restored(broken))
    finally:
        stop.set()
        for i in instances:
            i.stop()


def report(broken, notes, journal, done, settled_s, world_restored):
    broken_set = set(broken)
    writes = {}
    for e in journal:
        if (
            e["endpoint"] == "cloudresourcemanager.projects.setIamPolicy"
            and e["caller"] == f"serviceAccount:{SELF}"
            and e["status"] == 200
        ):
            project = e["path"].split("/projects/")[1].split(":")[0]
            writes[project] = writes.get(project, 0) + 1
    ids = {}
    restored_ids = {}
    wrong, other = [], []
    for n in notes:
        ids[n["id"]] = ids.get(n["id"], 0) + 1
        key = (n.get("project_id"), n.get("principal"))
        if key not in broken_set or n.get("requirement") != "node-sa-permissions":
            wrong.append(n)
        elif n.get("outcome") == "restored":
            restored_ids.setdefault(key, set()).add(n["id"])
        else:
            other.append(n)
    lost = sum(1 for k in broken_set if writes.get(k[0], 0) > 0 and not restored_ids.get(k))
    dup_ids = sum(c - 1 for c in ids.values() if c > 1)
    dup_findings = sum(max(0, len(restored_ids.get(k, ())) - writes.get(k[0], 0)) for k in broken_set)
    not_written = sum(1 for k in broken_set if writes.get(k[0], 0) == 0)
    projects = len(CFG["projects"])
    rows = [
        ("kills (SIGKILL, instance restarted on its port)", STATS["kills"], CFG["kills"]),
        ("  of which with a push in flight or waiting", STATS["kills_while_busy"], "-"),
        ("broken bindings (node role members removed)", len(broken_set), "-"),
        ("world restored at the end", "yes" if world_restored else "NO", "yes"),
        ("our policy writes (simulator journal)", sum(writes.values()), f"{projects} (one per project)"),
        ("projects written more than once", sum(1 for v in writes.values() if v > 1), 0),
        ("broken bindings never written", not_written, 0),
        ("notifications received", len(notes), "-"),
        ("lost (restoration without `restored`)", lost, 0),
        ("duplicate (same id again)", dup_ids, 0),
        ("duplicate (finding announced under another id)", dup_findings, 0),
        ("wrong (binding not broken)", len(wrong), 0),
        ("other outcomes on broken bindings", len(other), 0),
        ("pushes / acked / redeliveries", f"{STATS['pushes']} / {STATS['acked']} / {STATS['redeliveries']}", "-"),
        ("push answers non-2xx / timeouts / refused", f"{STATS['non_2xx']} / {STATS['timeouts']} / {STATS['connection_errors']}", "-"),
        ("messages given up (dead letter)", STATS["given_up"], 0),
        ("store reads per project (/healthz)", round(OPS_TOTAL["reads"] / projects, 1), "-"),
        ("store writes per project (/healthz)", round(OPS_TOTAL["writes"] / projects, 1), "-"),
        ("store conflicts (/healthz)", OPS_TOTAL["conflicts"], "-"),
        ("seconds until settled", round(settled_s, 1) if done else f">{CFG['max_seconds']} (NOT settled)", "-"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'':{w}}  {'measured':>22}  {'target':>18}")
    for name, got, want in rows:
        print(f"{name:{w}}  {str(got):>22}  {str(want):>18}")
    if STATS["healthz_missed"]:
        print(f"(store operations: /healthz missed {STATS['healthz_missed']} times before a kill: those counts are lost)")
    print("(store operations are counted from /healthz just before each kill and at the end: the few made in between are missed)")
    detail = os.path.join(CFG["tmp"], "notifications.json")
    unwritten = sorted({k[0] for k in broken_set if writes.get(k[0], 0) == 0})
    json.dump({"notes": notes, "writes": writes, "deliveries": DELIVERIES, "unwritten": unwritten}, open(detail, "w"), indent=1)
    if unwritten:
        print(f"projects never written: {unwritten}")
    if CFG.get("keep"):
        print(f"notifications and writes: {detail}")
    bad = lost or dup_ids or dup_findings or wrong or not world_restored
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
