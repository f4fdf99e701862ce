#!/usr/bin/env python3
"""Generate a large simulator world (JSON, which YAML accepts) for benchmarks and scale tests.

Usage: gen-world.py --projects 2000 --folders 20 --seed 1 --broken-fraction 0.1 > infra/worlds/large.json

The organization holds nested folders; most projects run GKE clusters whose node pools use a custom node
service account or the Compute Engine default account. Healthy projects grant the node role directly,
through a project custom role, or on their folder (inherited). A --broken-fraction of projects is broken
in one of the ways the design lists (node role missing, GKE service agent or node service agent binding
missing, node account deleted or disabled, Container API disabled, conditional-only grant). With
--deny-every N, IAM deny policies are attached too: one on the organization (it denies log writing to the
node account of the fourth GKE project), one on every folder (it denies metric writing to a node account
of a project elsewhere) and one on every Nth GKE project (every 2Nth denies metric writing to the project's
own node account, the others an account that does not exist). Deterministic for a given seed (the deny
policies do not change the rest of the world). Python 3.11 standard library only.
"""

import argparse
import json
import random
import sys

NODE_ROLE = "roles/container.defaultNodeServiceAccount"
NODE_PERMISSIONS = [
    "autoscaling.sites.writeMetrics",
    "logging.logEntries.create",
    "monitoring.metricDescriptors.create",
    "monitoring.timeSeries.create",
]
REGIONS = ["us-central1", "us-east1", "europe-west1", "europe-west4", "asia-northeast1"]
BREAKAGES = ["node-role", "service-agent", "node-service-agent", "deleted-sa", "disabled-sa", "api-disabled", "conditional"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--projects", type=int, default=2000)
    ap.add_argument("--folders", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--broken-fraction", type=float, default=0.1)
    ap.add_argument("--org-id", default="123456789012")
    ap.add_argument("--deny-every", type=int, default=0, help="attach deny policies (see above); 0: none")
    args = ap.parse_args()
    if args.projects < 1 or args.folders < 1 or not 0.0 <= args.broken_fraction <= 1.0:
        ap.error("need --projects >= 1, --folders >= 1 and 0 <= --broken-fraction <= 1")
    rng = random.Random(args.seed)
    org = args.org_id

    folders = []
    for i in range(args.folders):
        fid = str(300000000000 + i)
        parent = f"organizations/{org}" if i < max(1, args.folders // 4) else f"folders/{folders[rng.randrange(len(folders))]['id']}"
        folders.append({"id": fid, "parent": parent, "display_name": f"team-{i:02d}", "iam_policy": {"bindings": []}})

    org_role = f"organizations/{org}/roles/gkeNodeMinimal"
    world = {
        "organization": {
            "id": org,
            "display_name": "example.com",
            "iam_policy": {"bindings": [
                {"role": "roles/resourcemanager.projectIamAdmin", "members": ["group:platform-admins@example.com"]},
            ]},
            "custom_roles": [{"name": org_role, "title": "GKE node minimal", "included_permissions": NODE_PERMISSIONS}],
        },
        "folders": folders,
        "groups": [{"email": "platform-admins@example.com", "members": ["user:admin@example.com"]}],
        "projects": [],
    }
    folder_grants = {f["id"]: [] for f in folders}
    uid = 110000000000000000000
    broken_count = 0
    for i in range(args.projects):
        pid = f"proj-{i:05d}"
        number = str(200000000000 + i)
        folder = folders[rng.randrange(len(folders))]
        broken = rng.random() < args.broken_fraction
        breakage = rng.choice(BREAKAGES) if broken else None
        broken_count += bool(broken)
        node_sa = f"gke-nodes@{pid}.iam.gserviceaccount.com"
        uses_default = rng.random() < 0.3
        node_member = f"serviceAccount:{number}-compute@developer.gserviceaccount.com" if uses_default else f"serviceAccount:{node_sa}"
        bindings = [{"role": "roles/owner", "members": ["user:admin@example.com"]}]
        if breakage != "service-agent":
            bindings.append({"role": "roles/container.serviceAgent", "members": [f"serviceAccount:service-{number}@container-engine-robot.iam.gserviceaccount.com"]})
        if breakage != "node-service-agent":
            bindings.append({"role": "roles/container.defaultNodeServiceAgent", "members": [f"serviceAccount:service-{number}@gcp-sa-gkenode.iam.gserviceaccount.com"]})
        bindings.append({"role": "roles/editor", "members": [f"serviceAccount:{number}@cloudservices.gserviceaccount.com"]})
        custom_roles = []
        how = rng.random()
        if breakage == "node-role":
            bindings.append({"role": "roles/logging.logWriter", "members": [node_member]})
        elif breakage == "conditional":
            bindings.append({"role": NODE_ROLE, "members": [node_member], "condition": {"title": "gke-logs-bucket-only", "expression": "resource.name.startsWith('projects/_/buckets/gke-logs')"}})
        elif how < 0.6:
            bindings.append({"role": NODE_ROLE, "members": [node_member]})
        elif how < 0.75:
            role = f"projects/{pid}/roles/gkeNodeWriter"
            custom_roles.append({"name": role, "title": "GKE node writer", "included_permissions": NODE_PERMISSIONS})
            bindings.append({"role": role, "members": [node_member]})
        elif how < 0.85:
            bindings.append({"role": org_role, "members": [node_member]})
        else:
            folder_grants[folder["id"]].append(node_member)
        service_accounts = []
        if not uses_default:
            uid += 1
            sa = {"email": node_sa, "unique_id": str(uid), "display_name": "GKE nodes"}
            if breakage == "deleted-sa":
                sa["deleted"] = True
            if breakage == "disabled-sa":
                sa["disabled"] = True
            service_accounts.append(sa)
        clusters = []
        recommendations = []
        if rng.random() < 0.85:
            for c in range(rng.randint(1, 2)):
                region = rng.choice(REGIONS)
                sa_value = "default" if uses_default else node_sa
                if rng.random() < 0.2:
                    clusters.append({"name": f"ap-{c}", "location": region, "autopilot": True, "autoprovisioning_service_account": sa_value})
                else:
                    pools = [{"name": f"pool-{k}", "service_account": sa_value} for k in range(rng.randint(1, 3))]
                    clusters.append({"name": f"std-{c}", "location": region, "node_pools": pools})
                if breakage in ("node-role", "deleted-sa", "disabled-sa"):
                    recommendations.append({"location": region, "subtype": "NODE_SA_MISSING_PERMISSIONS", "cluster": clusters[-1]["name"]})
        services = [] if breakage == "api-disabled" else ["container.googleapis.com", "compute.googleapis.com"]
        project = {
            "id": pid,
            "number": number,
            "parent": f"folders/{folder['id']}",
            "services": services,
            "iam_policy": {"bindings": bindings},
        }
        for key, value in (("custom_roles", custom_roles), ("service_accounts", service_accounts), ("clusters", clusters), ("recommendations", recommendations)):
            if value:
                project[key] = value
        world["projects"].append(project)
    for f in folders:
        if folder_grants[f["id"]]:
            f["iam_policy"]["bindings"].append({"role": NODE_ROLE, "members": folder_grants[f["id"]]})
        if not f["iam_policy"]["bindings"]:
            del f["iam_policy"]
    if args.deny_every > 0:
        add_deny_policies(world, args.deny_every)
    json.dump(world, sys.stdout, indent=1)
    sys.stdout.write("\n")
    print(f"generated {args.projects} projects in {args.folders} folders, {broken_count} broken", file=sys.stderr)
    return 0


def node_account(project: dict) -> str | None:
    """The service account of the project's first node pool or Autopilot cluster, if it has clusters."""
    for cluster in project.get("clusters", []):
        value = cluster.get("autoprovisioning_service_account")
        for pool in cluster.get("node_pools", []):
            value = value or pool.get("service_account")
        if value == "default":
            return f"{project['number']}-compute@developer.gserviceaccount.com"
        if value:
            return value
    return None


def deny_policy(policy_id: str, account: str, permission: str) -> dict:
    principal = f"principal://iam.googleapis.com/projects/-/serviceAccounts/{account}"
    return {"id": policy_id, "rules": [{"denied_principals": [principal], "denied_permissions": [permission]}]}


def add_deny_policies(world: dict, every: int) -> None:
    gke = [p for p in world["projects"] if node_account(p)]
    if not gke:
        return
    logs, metrics = "logging.googleapis.com/logEntries.create", "monitoring.googleapis.com/timeSeries.create"
    world["organization"]["deny_policies"] = [deny_policy("org-no-logs", node_account(gke[min(3, len(gke) - 1)]), logs)]
    for i, folder in enumerate(world["folders"]):
        other = gke[(10 + i) % len(gke)]
        folder["deny_policies"] = [deny_policy(f"folder-{i}-no-metrics", node_account(other), metrics)]
    for i, project in enumerate(gke):
        if i % every == 0:
            own = i % (2 * every) == 0
            account = node_account(project) if own else "nobody@example.iam.gserviceaccount.com"
            project["deny_policies"] = [deny_policy(f"project-{i}-no-metrics", account, metrics)]


if __name__ == "__main__":
    sys.exit(main())
