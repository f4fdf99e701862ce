"""Rewrites a world from infra/gen-world.py (stdin -> stdout) so that every project's node service
account holds its permissions through exactly one grant: the project's unconditional binding of
roles/container.defaultNodeServiceAccount. Projects without clusters get one; every other grant to a
node account (project, folder or organization; conditional, custom or predefined role) is dropped.
Removing that one binding then breaks every project the same way (bench/kill-burst.sh)."""

import json
import sys

NODE_ROLE = "roles/container.defaultNodeServiceAccount"


def node_member(project):
    for cluster in project.get("clusters", []):
        value = cluster.get("autoprovisioning_service_account")
        for pool in cluster.get("node_pools", []):
            value = value or pool.get("service_account")
        if value == "default":
            return f"serviceAccount:{project['number']}-compute@developer.gserviceaccount.com"
        if value:
            return f"serviceAccount:{value}"
    return None


def strip(policy, members):
    if not policy:
        return
    kept = []
    for b in policy.get("bindings", []):
        b["members"] = [m for m in b["members"] if m not in members]
        if b["members"]:
            kept.append(b)
    policy["bindings"] = kept


world = json.load(sys.stdin)
members = {}
for p in world["projects"]:
    if node_member(p) is None:
        email = f"gke-nodes@{p['id']}.iam.gserviceaccount.com"
        if not any(sa["email"] == email for sa in p.get("service_accounts", [])):
            p.setdefault("service_accounts", []).append(
                {"email": email, "unique_id": str(190000000000000000000 + len(members)), "display_name": "GKE nodes"}
            )
        p["clusters"] = [{"name": "std-0", "location": "us-central1", "node_pools": [{"name": "pool-0", "service_account": email}]}]
    for sa in p.get("service_accounts", []):
        sa.pop("deleted", None)
        sa.pop("disabled", None)
    members[p["id"]] = node_member(p)
every = set(members.values())
strip(world.get("organization", {}).get("iam_policy"), every)
for f in world.get("folders", []):
    strip(f.get("iam_policy"), every)
for p in world["projects"]:
    strip(p["iam_policy"], every)
    p["iam_policy"]["bindings"] = [b for b in p["iam_policy"]["bindings"] if b["role"] != NODE_ROLE]
    p["iam_policy"]["bindings"].append({"role": NODE_ROLE, "members": [members[p["id"]]]})
    p.pop("recommendations", None)
json.dump(world, sys.stdout, indent=1)
