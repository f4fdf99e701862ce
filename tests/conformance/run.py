#!/usr/bin/env python3
"""Google's official Python clients against a fresh `sim`: every method the simulator serves, with errors.

Usage: run.py BINARY   (BINARY is the built `gke-iam-remediator`; run.sh sets up the venv and calls this)

Clients: the GAPIC libraries with transport="rest" where they offer REST (google-cloud-resource-manager,
-container, -recommender, -service-usage, -policy-troubleshooter, -asset), google-cloud-logging over its JSON HTTP
connection (its GAPIC has no REST transport), and google-api-python-client with its static discovery
documents for the rest (IAM admin v1, Resource Manager v1/v2, Container v1 zones, Policy Troubleshooter v3,
Logging v2, Cloud Asset v1). Each case names one API method; it passes only if every assertion in it holds. Prints one line
per method and a summary; exits 1 on any failure.
"""

import json
import os
import subprocess
import sys
import traceback

import httplib2
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from google.cloud import container_v1, policytroubleshooter_v1, recommender_v1, resourcemanager_v3
from google.cloud import iam_v2, orgpolicy_v2, service_usage_v1
from google.cloud import asset_v1
from google.cloud import logging as gcl_logging
from google.iam.v1 import policy_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT, NUMBER, OTHER = "conf-project", "200000000001", "conf-other"
ORG = "organizations/123456789012"
DIAG = "google.container.DiagnosisRecommender"
SA_A = "nodes-a@conf-project.iam.gserviceaccount.com"

CASES = []


def case(name):
    def register(fn):
        CASES.append((name, fn))
        return fn
    return register


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def raises(exc_types, fn, status=None, message=None):
    """fn() must raise one of exc_types (api_core or HttpError); optional canonical status / message part."""
    try:
        fn()
    except exc_types as e:
        body = None
        if isinstance(e, HttpError):
            body = json.loads(e.content.decode())
        elif getattr(e, "response", None) is not None:
            try:
                body = e.response.json()
            except Exception:
                body = None
        if status is not None:
            got = (body or {}).get("error", {}).get("status")
            expect(got == status, f"status {got!r}, want {status!r}: {e}")
        if message is not None:
            expect(message in str(e), f"message {str(e)!r} lacks {message!r}")
        return e
    raise AssertionError(f"no error from {fn}")


class Ctx:
    def __init__(self, base):
        self.base = base.rstrip("/")
        creds = AnonymousCredentials()
        opts = ClientOptions(api_endpoint=self.base)

        def gapic(cls):
            return cls(credentials=creds, transport="rest", client_options=opts)

        self.projects = gapic(resourcemanager_v3.ProjectsClient)
        self.folders = gapic(resourcemanager_v3.FoldersClient)
        self.orgs = gapic(resourcemanager_v3.OrganizationsClient)
        self.gke = gapic(container_v1.ClusterManagerClient)
        self.recs = gapic(recommender_v1.RecommenderClient)
        self.su = gapic(service_usage_v1.ServiceUsageClient)
        self.checker = gapic(policytroubleshooter_v1.IamCheckerClient)
        self.deny = gapic(iam_v2.PoliciesClient)
        self.orgpolicy = gapic(orgpolicy_v2.OrgPolicyClient)
        self.assets = gapic(asset_v1.AssetServiceClient)
        self.logging = gcl_logging.Client(project=PROJECT, credentials=creds, _use_grpc=False,
                                          client_options={"api_endpoint": self.base})

        def api(name, version):
            return discovery.build(name, version, http=httplib2.Http(), static_discovery=True,
                                   client_options={"api_endpoint": self.base + "/"}, cache_discovery=False)

        self.iam = api("iam", "v1")
        self.crm1 = api("cloudresourcemanager", "v1")
        self.crm2 = api("cloudresourcemanager", "v2")
        self.gke1 = api("container", "v1")
        self.pt3 = api("policytroubleshooter", "v3")
        self.log2 = api("logging", "v2")
        self.ci = api("cloudidentity", "v1")
        self.ca1 = api("cloudasset", "v1")

    def control(self, method, path, body=None):
        h = httplib2.Http()
        resp, content = h.request(self.base + "/_sim/" + path, method,
                                  body=json.dumps(body) if body is not None else None,
                                  headers={"content-type": "application/json"})
        expect(resp.status == 200, f"control {path}: {resp.status} {content!r}")
        return json.loads(content)


def all_pages(request, next_fn, key):
    """google-api-python-client paging: every page's items and the number of pages."""
    items, pages = [], 0
    while request is not None:
        resp = request.execute()
        pages += 1
        items.extend(resp.get(key, []))
        request = next_fn(request, resp)
    return items, pages


# ---------------------------------------------------------------- Resource Manager v3 (GAPIC REST)

@case("cloudresourcemanager.v3.projects.get")
def _(c):
    p = c.projects.get_project(name=f"projects/{PROJECT}")
    expect(p.project_id == PROJECT and p.name == f"projects/{NUMBER}" and p.parent == "folders/222", p)
    raises(gexc.Forbidden, lambda: c.projects.get_project(name="projects/no-such-project"), status="PERMISSION_DENIED")


@case("cloudresourcemanager.v3.projects.list")
def _(c):
    got = [p.project_id for p in c.projects.list_projects(parent="folders/222")]
    expect(got == [PROJECT], got)


@case("cloudresourcemanager.v3.projects.search")
def _(c):
    pager = c.projects.search_projects(request={"query": "", "page_size": 1})
    pages = list(pager.pages)
    ids = [p.project_id for page in pages for p in page.projects]
    expect(sorted(ids) == [OTHER, PROJECT] and len(pages) == 2, (ids, len(pages)))


@case("cloudresourcemanager.v3.projects.getIamPolicy")
def _(c):
    pol = c.projects.get_iam_policy(request={"resource": f"projects/{PROJECT}",
                                            "options": {"requested_policy_version": 3}})
    roles = [b.role for b in pol.bindings]
    expect(roles == sorted(roles) and "roles/owner" in roles and pol.etag, roles)


@case("cloudresourcemanager.v3.projects.setIamPolicy")
def _(c):
    res = f"projects/{PROJECT}"
    pol = c.projects.get_iam_policy(request={"resource": res})
    pol.bindings.add(role="roles/container.developer", members=[f"serviceAccount:{SA_A}"])
    new = c.projects.set_iam_policy(request={"resource": res, "policy": pol})
    expect(any(b.role == "roles/container.developer" for b in new.bindings), new)
    # The etag read before the write is stale now: 409 ABORTED (Conflict in api_core).
    raises(gexc.Conflict, lambda: c.projects.set_iam_policy(request={"resource": res, "policy": pol}),
           status="ABORTED")
    fresh = c.projects.get_iam_policy(request={"resource": res})
    ghost = policy_pb2.Policy()
    ghost.CopyFrom(fresh)
    ghost.bindings.add(role="roles/viewer", members=["serviceAccount:ghost@conf-project.iam.gserviceaccount.com"])
    raises(gexc.BadRequest, lambda: c.projects.set_iam_policy(request={"resource": res, "policy": ghost}),
           status="INVALID_ARGUMENT", message="Service account ghost@conf-project.iam.gserviceaccount.com does not exist.")
    deleted = policy_pb2.Policy()
    deleted.CopyFrom(fresh)
    deleted.bindings.add(role="roles/viewer", members=["serviceAccount:gone@conf-project.iam.gserviceaccount.com"])
    raises(gexc.BadRequest, lambda: c.projects.set_iam_policy(request={"resource": res, "policy": deleted}),
           status="INVALID_ARGUMENT", message="does not exist")
    agent = policy_pb2.Policy()
    agent.CopyFrom(fresh)
    agent.bindings.add(role="roles/viewer", members=["serviceAccount:service-200000000001@gcp-sa-pubsub.iam.gserviceaccount.com"])
    raises(gexc.BadRequest, lambda: c.projects.set_iam_policy(request={"resource": res, "policy": agent}),
           message="does not exist")
    unknown = policy_pb2.Policy()
    unknown.CopyFrom(fresh)
    unknown.bindings.add(role="roles/made.up", members=["user:a@example.com"])
    raises(gexc.BadRequest, lambda: c.projects.set_iam_policy(request={"resource": res, "policy": unknown}),
           status="INVALID_ARGUMENT")


@case("cloudresourcemanager.v3.projects.testIamPermissions")
def _(c):
    r = c.projects.test_iam_permissions(request={"resource": f"projects/{PROJECT}",
                                                "permissions": ["resourcemanager.projects.get", "run.jobs.run"]})
    expect(list(r.permissions) == ["resourcemanager.projects.get"], r)


@case("cloudresourcemanager.v3.folders.get")
def _(c):
    f = c.folders.get_folder(name="folders/222")
    expect(f.parent == "folders/111" and f.display_name == "gke-workloads", f)
    raises(gexc.Forbidden, lambda: c.folders.get_folder(name="folders/999"), status="PERMISSION_DENIED")


@case("cloudresourcemanager.v3.folders.list")
def _(c):
    pages = list(c.folders.list_folders(request={"parent": ORG, "page_size": 1}).pages)
    names = [f.name for p in pages for f in p.folders]
    expect(names == ["folders/111", "folders/333"] and len(pages) == 2, names)


@case("cloudresourcemanager.v3.folders.search")
def _(c):
    got = [f.name for f in c.folders.search_folders(query="displayName=gke-workloads")]
    expect(got == ["folders/222"], got)


@case("cloudresourcemanager.v3.folders.getIamPolicy")
def _(c):
    pol = c.folders.get_iam_policy(request={"resource": "folders/111"})
    expect(pol.version == 1 and pol.etag, pol)


@case("cloudresourcemanager.v3.folders.setIamPolicy")
def _(c):
    pol = c.folders.get_iam_policy(request={"resource": "folders/111"})
    pol.bindings.add(role="roles/resourcemanager.folderViewer", members=["group:platform-admins@example.com"])
    new = c.folders.set_iam_policy(request={"resource": "folders/111", "policy": pol})
    expect([b.role for b in new.bindings] == ["roles/resourcemanager.folderViewer"], new)
    new.bindings.add(role="roles/viewer", members=["group:nobody@example.com"])
    raises(gexc.BadRequest, lambda: c.folders.set_iam_policy(request={"resource": "folders/111", "policy": new}),
           message="Group nobody@example.com does not exist.")


@case("cloudresourcemanager.v3.folders.testIamPermissions")
def _(c):
    r = c.folders.test_iam_permissions(request={"resource": "folders/111",
                                               "permissions": ["resourcemanager.folders.get"]})
    expect(list(r.permissions) == ["resourcemanager.folders.get"], r)


@case("cloudresourcemanager.v3.organizations.get")
def _(c):
    o = c.orgs.get_organization(name=ORG)
    expect(o.display_name == "example.com", o)
    raises(gexc.Forbidden, lambda: c.orgs.get_organization(name="organizations/1"), status="PERMISSION_DENIED")


@case("cloudresourcemanager.v3.organizations.search")
def _(c):
    got = [o.name for o in c.orgs.search_organizations(query="domain:example.com")]
    expect(got == [ORG], got)


@case("cloudresourcemanager.v3.organizations.getIamPolicy")
def _(c):
    pol = c.orgs.get_iam_policy(request={"resource": ORG})
    expect([b.role for b in pol.bindings] == ["roles/resourcemanager.organizationAdmin"], pol)


@case("cloudresourcemanager.v3.organizations.setIamPolicy")
def _(c):
    pol = c.orgs.get_iam_policy(request={"resource": ORG})
    pol.bindings.add(role="roles/resourcemanager.organizationViewer", members=["user:auditor@example.com"])
    new = c.orgs.set_iam_policy(request={"resource": ORG, "policy": pol})
    expect(len(new.bindings) == 2, new)


@case("cloudresourcemanager.v3.organizations.testIamPermissions")
def _(c):
    r = c.orgs.test_iam_permissions(request={"resource": ORG, "permissions": ["resourcemanager.organizations.get"]})
    expect(list(r.permissions) == ["resourcemanager.organizations.get"], r)


# ---------------------------------------------------------------- Resource Manager v1 / v2 (discovery)

@case("cloudresourcemanager.v1.projects.get")
def _(c):
    p = c.crm1.projects().get(projectId=PROJECT).execute()
    expect(p["projectNumber"] == NUMBER and p["parent"] == {"type": "folder", "id": "222"}, p)


@case("cloudresourcemanager.v1.projects.list")
def _(c):
    items, pages = all_pages(c.crm1.projects().list(pageSize=1), c.crm1.projects().list_next, "projects")
    expect(sorted(p["projectId"] for p in items) == [OTHER, PROJECT] and pages == 2, (items, pages))


@case("cloudresourcemanager.v1.projects.getAncestry")
def _(c):
    a = c.crm1.projects().getAncestry(projectId=PROJECT, body={}).execute()
    kinds = [x["resourceId"]["type"] for x in a["ancestor"]]
    expect(kinds == ["project", "folder", "folder", "organization"], kinds)


@case("cloudresourcemanager.v1.projects.getIamPolicy")
def _(c):
    pol = c.crm1.projects().getIamPolicy(resource=PROJECT, body={"options": {"requestedPolicyVersion": 3}}).execute()
    for b in pol["bindings"]:
        expect(b["members"] == sorted(b["members"]), b)


@case("cloudresourcemanager.v1.projects.setIamPolicy")
def _(c):
    pol = c.crm1.projects().getIamPolicy(resource=OTHER, body={}).execute()
    pol["bindings"].append({"role": "roles/compute.viewer", "members": ["user:z@example.com", "user:a@example.com"]})
    new = c.crm1.projects().setIamPolicy(resource=OTHER, body={"policy": pol}).execute()
    b = [x for x in new["bindings"] if x["role"] == "roles/compute.viewer"][0]
    expect(b["members"] == ["user:a@example.com", "user:z@example.com"], b)
    e = raises(HttpError, lambda: c.crm1.projects().setIamPolicy(resource=OTHER, body={"policy": new, "bogus": 1}).execute())
    expect(e.resp.status == 400 and 'Unknown name \\"bogus\\"' in e.content.decode(), e.content)


@case("cloudresourcemanager.v1.projects.testIamPermissions")
def _(c):
    r = c.crm1.projects().testIamPermissions(resource=PROJECT, body={"permissions": ["container.clusters.get"]}).execute()
    expect(r.get("permissions") == ["container.clusters.get"], r)


@case("cloudresourcemanager.v1.organizations.get")
def _(c):
    o = c.crm1.organizations().get(name=ORG).execute()
    expect(o["lifecycleState"] == "ACTIVE", o)


@case("cloudresourcemanager.v1.organizations.search")
def _(c):
    r = c.crm1.organizations().search(body={"filter": "domain:example.com"}).execute()
    expect([o["name"] for o in r["organizations"]] == [ORG], r)


@case("cloudresourcemanager.v1.organizations.getIamPolicy")
def _(c):
    r = c.crm1.organizations().getIamPolicy(resource=ORG, body={}).execute()
    expect("etag" in r, r)


@case("cloudresourcemanager.v1.organizations.setIamPolicy")
def _(c):
    pol = c.crm1.organizations().getIamPolicy(resource=ORG, body={}).execute()
    pol["etag"] = "BwYAAAAAAAA="
    e = raises(HttpError, lambda: c.crm1.organizations().setIamPolicy(resource=ORG, body={"policy": pol}).execute())
    expect(e.resp.status == 409, e)


@case("cloudresourcemanager.v2.folders.get")
def _(c):
    f = c.crm2.folders().get(name="folders/111").execute()
    expect(f["lifecycleState"] == "ACTIVE", f)


@case("cloudresourcemanager.v2.folders.list")
def _(c):
    items, pages = all_pages(c.crm2.folders().list(parent=ORG, pageSize=1), c.crm2.folders().list_next, "folders")
    expect([f["name"] for f in items] == ["folders/111", "folders/333"] and pages == 2, items)


@case("cloudresourcemanager.v2.folders.search")
def _(c):
    r = c.crm2.folders().search(body={"query": "parent=folders/111"}).execute()
    expect([f["name"] for f in r["folders"]] == ["folders/222"], r)


@case("cloudresourcemanager.v2.folders.getIamPolicy")
def _(c):
    r = c.crm2.folders().getIamPolicy(resource="folders/222", body={}).execute()
    expect(r.get("version") == 1, r)


@case("cloudresourcemanager.v2.folders.setIamPolicy")
def _(c):
    pol = c.crm2.folders().getIamPolicy(resource="folders/222", body={}).execute()
    pol["bindings"] = [{"role": "roles/viewer", "members": ["domain:example.com"]}]
    r = c.crm2.folders().setIamPolicy(resource="folders/222", body={"policy": pol}).execute()
    expect(r["bindings"][0]["members"] == ["domain:example.com"], r)


# ---------------------------------------------------------------- IAM v1 (discovery)

@case("iam.roles.get")
def _(c):
    r = c.iam.roles().get(name="roles/container.defaultNodeServiceAccount").execute()
    expect("monitoring.timeSeries.create" in r["includedPermissions"], r)
    for name in ["roles/compute.viewer", "roles/container.developer", "roles/resourcemanager.folderViewer"]:
        c.iam.roles().get(name=name).execute()
    e = raises(HttpError, lambda: c.iam.roles().get(name="roles/made.up").execute())
    expect(e.resp.status == 404, e)


@case("iam.roles.list")
def _(c):
    items, pages = all_pages(c.iam.roles().list(pageSize=50), c.iam.roles().list_next, "roles")
    names = {r["name"] for r in items}
    expect(len(items) > 100 and pages >= 3 and "roles/run.invoker" in names, (len(items), pages))
    expect(all("includedPermissions" not in r for r in items), "BASIC view has no permissions")


@case("iam.projects.roles.get")
def _(c):
    r = c.iam.projects().roles().get(name=f"projects/{PROJECT}/roles/nodeLogs").execute()
    expect(r["includedPermissions"] == ["logging.logEntries.create"], r)


@case("iam.projects.roles.list")
def _(c):
    r = c.iam.projects().roles().list(parent=f"projects/{PROJECT}", view="FULL").execute()
    expect([x["name"] for x in r["roles"]] == [f"projects/{PROJECT}/roles/nodeLogs"] and r["roles"][0]["includedPermissions"], r)


@case("iam.organizations.roles.get")
def _(c):
    r = c.iam.organizations().roles().get(name=f"{ORG}/roles/gkeNodeMinimal").execute()
    expect(r["title"] == "GKE node minimal", r)


@case("iam.organizations.roles.list")
def _(c):
    r = c.iam.organizations().roles().list(parent=ORG).execute()
    expect(len(r["roles"]) == 1, r)


@case("iam.projects.serviceAccounts.get")
def _(c):
    sa = c.iam.projects().serviceAccounts().get(name=f"projects/{PROJECT}/serviceAccounts/{SA_A}").execute()
    expect(sa["uniqueId"] == "110000000000000000001", sa)
    sa = c.iam.projects().serviceAccounts().get(name="projects/-/serviceAccounts/110000000000000000002").execute()
    expect(sa["email"].startswith("nodes-b@"), sa)
    e = raises(HttpError, lambda: c.iam.projects().serviceAccounts().get(
        name="projects/-/serviceAccounts/ghost@conf-project.iam.gserviceaccount.com").execute())
    expect(e.resp.status == 403 and json.loads(e.content)["error"]["status"] == "PERMISSION_DENIED", e.content)
    e = raises(HttpError, lambda: c.iam.projects().serviceAccounts().get(
        name=f"projects/{PROJECT}/serviceAccounts/ghost@conf-project.iam.gserviceaccount.com").execute())
    expect(e.resp.status == 404 and json.loads(e.content)["error"]["status"] == "NOT_FOUND", e.content)


@case("iam.projects.serviceAccounts.list")
def _(c):
    sas = c.iam.projects().serviceAccounts()
    items, pages = all_pages(sas.list(name=f"projects/{PROJECT}", pageSize=2), sas.list_next, "accounts")
    emails = sorted(a["email"] for a in items)
    # three user-managed accounts and the implicit Compute Engine default account; the deleted one is hidden
    expect(len(emails) == 4 and pages == 2 and not any(e.startswith("gone@") for e in emails), (emails, pages))


@case("iam.projects.serviceAccounts.disable")
def _(c):
    c.iam.projects().serviceAccounts().disable(name=f"projects/{PROJECT}/serviceAccounts/{SA_A}", body={}).execute()
    sa = c.iam.projects().serviceAccounts().get(name=f"projects/{PROJECT}/serviceAccounts/{SA_A}").execute()
    expect(sa.get("disabled") is True, sa)


@case("iam.projects.serviceAccounts.enable")
def _(c):
    c.iam.projects().serviceAccounts().enable(name=f"projects/{PROJECT}/serviceAccounts/{SA_A}", body={}).execute()
    sa = c.iam.projects().serviceAccounts().get(name=f"projects/{PROJECT}/serviceAccounts/{SA_A}").execute()
    expect("disabled" not in sa, sa)


@case("iam.projects.serviceAccounts.delete")
def _(c):
    c.iam.projects().serviceAccounts().delete(name=f"projects/{PROJECT}/serviceAccounts/{SA_A}").execute()
    pol = c.crm1.projects().getIamPolicy(resource=PROJECT, body={}).execute()
    members = [m for b in pol["bindings"] for m in b["members"]]
    expect(f"deleted:serviceAccount:{SA_A}?uid=110000000000000000001" in members, members)


@case("iam.projects.serviceAccounts.undelete")
def _(c):
    r = c.iam.projects().serviceAccounts().undelete(name="projects/-/serviceAccounts/110000000000000000001", body={}).execute()
    expect(r["restoredAccount"]["email"] == SA_A, r)
    pol = c.crm1.projects().getIamPolicy(resource=PROJECT, body={}).execute()
    expect(any(f"serviceAccount:{SA_A}" in b["members"] for b in pol["bindings"]), pol)


# ---------------------------------------------------------------- Container v1

@case("container.projects.locations.clusters.list")
def _(c):
    r = c.gke.list_clusters(parent=f"projects/{PROJECT}/locations/-")
    expect(sorted(x.name for x in r.clusters) == ["ap1", "c1", "nap1"], r)
    only = c.gke.list_clusters(parent=f"projects/{PROJECT}/locations/us-central1")
    expect([x.name for x in only.clusters] == ["c1"], only)
    raises(gexc.Forbidden, lambda: c.gke.list_clusters(parent=f"projects/{OTHER}/locations/-"),
           status="PERMISSION_DENIED", message="Kubernetes Engine API has not been used")


@case("container.projects.locations.clusters.get")
def _(c):
    cl = c.gke.get_cluster(name=f"projects/{PROJECT}/locations/us-central1/clusters/c1")
    expect(cl.node_config.service_account == SA_A and cl.logging_service and cl.monitoring_service and cl.endpoint, cl)
    nap = c.gke.get_cluster(name=f"projects/{PROJECT}/locations/us-east1/clusters/nap1")
    a = nap.autoscaling
    expect(a.enable_node_autoprovisioning and a.autoprovisioning_node_pool_defaults.service_account.startswith("nodes-b@"), a)
    ap = c.gke.get_cluster(name=f"projects/{PROJECT}/locations/europe-west1/clusters/ap1")
    expect(ap.autopilot.enabled, ap.autopilot)
    raises(gexc.NotFound, lambda: c.gke.get_cluster(name=f"projects/{PROJECT}/locations/us-central1/clusters/nope"))


@case("container.projects.locations.clusters.nodePools.list")
def _(c):
    r = c.gke.list_node_pools(parent=f"projects/{PROJECT}/locations/us-central1/clusters/c1")
    expect([p.name for p in r.node_pools] == ["pool-1", "pool-2"] and r.node_pools[1].config.service_account == "default", r)


@case("container.projects.locations.clusters.nodePools.get")
def _(c):
    p = c.gke.get_node_pool(name=f"projects/{PROJECT}/locations/us-central1/clusters/c1/nodePools/pool-1")
    expect(p.config.service_account == SA_A, p)
    raises(gexc.NotFound, lambda: c.gke.get_node_pool(
        name=f"projects/{PROJECT}/locations/us-central1/clusters/c1/nodePools/none"))


@case("container.projects.locations.clusters.nodePools.create")
def _(c):
    op = c.gke.create_node_pool(parent=f"projects/{PROJECT}/locations/us-central1/clusters/c1",
                                node_pool=container_v1.NodePool(name="pool-3", initial_node_count=1,
                                                                config=container_v1.NodeConfig(service_account=SA_A)))
    expect(op.status == container_v1.Operation.Status.RUNNING, op)
    c.state["gke_op"] = op.name
    raises(gexc.Conflict, lambda: c.gke.create_node_pool(
        parent=f"projects/{PROJECT}/locations/us-central1/clusters/c1", node_pool=container_v1.NodePool(name="pool-3")))


@case("container.projects.locations.operations.get")
def _(c):
    name = f"projects/{PROJECT}/locations/us-central1/operations/{c.state['gke_op']}"
    statuses = []
    for _ in range(5):
        op = c.gke.get_operation(name=name)
        statuses.append(op.status)
        if op.status == container_v1.Operation.Status.DONE:
            break
    expect(statuses == [container_v1.Operation.Status.RUNNING, container_v1.Operation.Status.DONE], statuses)
    raises(gexc.NotFound, lambda: c.gke.get_operation(name=f"projects/{PROJECT}/locations/us-central1/operations/nope"))


@case("container.projects.zones.clusters.list")
def _(c):
    r = c.gke1.projects().zones().clusters().list(projectId=PROJECT, zone="-").execute()
    expect(len(r["clusters"]) == 3, r)


@case("container.projects.zones.clusters.get")
def _(c):
    r = c.gke1.projects().zones().clusters().get(projectId=PROJECT, zone="us-central1", clusterId="c1").execute()
    expect(len(r["nodePools"]) == 3, r)


# ---------------------------------------------------------------- Recommender v1 (GAPIC REST)

PARENT = f"projects/{PROJECT}/locations/us-central1/recommenders/{DIAG}"


@case("recommender.projects.locations.recommenders.recommendations.list")
def _(c):
    pages = list(c.recs.list_recommendations(request={"parent": PARENT, "page_size": 2}).pages)
    ids = [r.name.rsplit("/", 1)[1] for p in pages for r in p.recommendations]
    expect(len(ids) == 3 and len(pages) == 2, (ids, len(pages)))
    every = list(c.recs.list_recommendations(parent=f"projects/{PROJECT}/locations/-/recommenders/{DIAG}"))
    expect(len(every) == 4, every)
    f = list(c.recs.list_recommendations(request={"parent": PARENT, "filter": "stateInfo.state = ACTIVE"}))
    expect(len(f) == 3, f)
    raises(gexc.BadRequest, lambda: list(c.recs.list_recommendations(
        parent=f"projects/{PROJECT}/locations/us-central1/recommenders/google.no.SuchRecommender")))


@case("recommender.projects.locations.recommenders.recommendations.get")
def _(c):
    r = c.recs.get_recommendation(name=f"{PARENT}/recommendations/00000000-0000-4000-8000-000000000001")
    expect(r.recommender_subtype == "NODE_SA_MISSING_PERMISSIONS" and r.etag == '"1111111111111111"', r)
    raises(gexc.NotFound, lambda: c.recs.get_recommendation(name=f"{PARENT}/recommendations/nope"))


@case("recommender.projects.locations.recommenders.recommendations.markClaimed")
def _(c):
    name = f"{PARENT}/recommendations/00000000-0000-4000-8000-000000000001"
    r = c.recs.mark_recommendation_claimed(name=name, etag='"1111111111111111"', state_metadata={"run": "conformance"})
    expect(r.state_info.state == recommender_v1.RecommendationStateInfo.State.CLAIMED, r)
    raises(gexc.Conflict, lambda: c.recs.mark_recommendation_claimed(name=name, etag='"1111111111111111"'),
           status="ABORTED")
    c.state["rec_etag"] = r.etag


@case("recommender.projects.locations.recommenders.recommendations.markSucceeded")
def _(c):
    name = f"{PARENT}/recommendations/00000000-0000-4000-8000-000000000001"
    r = c.recs.mark_recommendation_succeeded(name=name, etag=c.state["rec_etag"])
    expect(r.state_info.state == recommender_v1.RecommendationStateInfo.State.SUCCEEDED, r)


@case("recommender.projects.locations.recommenders.recommendations.markFailed")
def _(c):
    name = f"{PARENT}/recommendations/00000000-0000-4000-8000-000000000002"
    cur = c.recs.get_recommendation(name=name)
    r = c.recs.mark_recommendation_failed(name=name, etag=cur.etag)
    expect(r.state_info.state == recommender_v1.RecommendationStateInfo.State.FAILED, r)


@case("recommender.projects.locations.recommenders.recommendations.markDismissed")
def _(c):
    name = f"{PARENT}/recommendations/00000000-0000-4000-8000-000000000003"
    cur = c.recs.get_recommendation(name=name)
    r = c.recs.mark_recommendation_dismissed(request={"name": name, "etag": cur.etag})
    expect(r.state_info.state == recommender_v1.RecommendationStateInfo.State.DISMISSED, r)
    # DISMISSED cannot be claimed: 400 FAILED_PRECONDITION.
    raises(gexc.BadRequest, lambda: c.recs.mark_recommendation_claimed(name=name, etag=r.etag),
           status="FAILED_PRECONDITION")


# ---------------------------------------------------------------- Service Usage v1 (GAPIC REST)

@case("serviceusage.services.get")
def _(c):
    s = c.su.get_service(request={"name": f"projects/{NUMBER}/services/container.googleapis.com"})
    expect(s.state == service_usage_v1.State.ENABLED and s.parent == f"projects/{NUMBER}", s)
    s = c.su.get_service(request={"name": f"projects/{PROJECT}/services/pubsub.googleapis.com"})
    expect(s.state == service_usage_v1.State.DISABLED, s)


@case("serviceusage.services.list")
def _(c):
    pages = list(c.su.list_services(request={"parent": f"projects/{NUMBER}", "filter": "state:ENABLED",
                                             "page_size": 2}).pages)
    names = [s.config.name for p in pages for s in p.services]
    expect(len(names) == 5 and len(pages) == 3, (names, len(pages)))
    every = list(c.su.list_services(request={"parent": f"projects/{NUMBER}"}))
    states = {s.state for s in every}
    expect(len(every) >= 40 and states == {service_usage_v1.State.ENABLED, service_usage_v1.State.DISABLED},
           (len(every), states))


@case("serviceusage.services.enable")
def _(c):
    op = c.su.enable_service(request={"name": f"projects/{NUMBER}/services/pubsub.googleapis.com"})
    res = op.result(timeout=30)
    expect(res.service.state == service_usage_v1.State.ENABLED, res)
    raises(gexc.Forbidden, lambda: c.su.enable_service(request={"name": f"projects/{NUMBER}/services/made-up.googleapis.com"}),
           message="Not found or permission denied")


@case("serviceusage.services.disable")
def _(c):
    raises(gexc.BadRequest, lambda: c.su.disable_service(request={"name": f"projects/{NUMBER}/services/compute.googleapis.com"}),
           status="FAILED_PRECONDITION", message="depended on")
    op = c.su.disable_service(request={"name": f"projects/{NUMBER}/services/pubsub.googleapis.com"})
    res = op.result(timeout=30)
    expect(res.service.state == service_usage_v1.State.DISABLED, res)


@case("serviceusage.operations.get")
def _(c):
    op = c.su.enable_service(request={"name": f"projects/{NUMBER}/services/secretmanager.googleapis.com"})
    expect(not op.done(), "a fresh operation is not done (operation_polls: 2)")
    polled = c.su._transport.operations_client.get_operation(op.operation.name)
    polled = c.su._transport.operations_client.get_operation(op.operation.name)
    expect(polled.done, polled)


# ---------------------------------------------------------------- Policy Troubleshooter

@case("policytroubleshooter.v1.iam.troubleshoot")
def _(c):
    r = c.checker.troubleshoot_iam_policy(request={"access_tuple": {
        "principal": "admin@example.com",
        "full_resource_name": f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}",
        "permission": "resourcemanager.projects.get"}})
    expect(r.access == policytroubleshooter_v1.AccessState.GRANTED, r)


@case("policytroubleshooter.v3.iam.troubleshoot")
def _(c):
    r = c.pt3.iam().troubleshoot(body={"accessTuple": {
        "principal": "nobody@elsewhere.example",
        "fullResourceName": f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}",
        "permission": "resourcemanager.projects.get"}}).execute()
    expect(r["overallAccessState"] == "CANNOT_ACCESS", r)


# ---------------------------------------------------------------- IAM v2 deny policies (GAPIC REST)

ORG_DENY = "policies/cloudresourcemanager.googleapis.com%2Forganizations%2F123456789012/denypolicies"


@case("iam.v2.policies.listPolicies")
def _(c):
    got = list(c.deny.list_policies(request={"parent": ORG_DENY, "page_size": 1}))
    names = [p.name for p in got]
    expect(names == [f"{ORG_DENY}/no-sa-keys", f"{ORG_DENY}/no-logs-for-c"], names)
    expect(all(p.kind == "DenyPolicy" and not p.rules for p in got), got)
    empty = list(c.deny.list_policies(parent=f"policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{PROJECT}/denypolicies"))
    expect(empty == [], empty)


@case("iam.v2.policies.get")
def _(c):
    p = c.deny.get_policy(name=f"{ORG_DENY}/no-sa-keys")
    rule = p.rules[0].deny_rule
    expect(list(rule.denied_principals) == ["principalSet://goog/public:all"], rule)
    expect(list(rule.exception_principals) == ["principalSet://goog/group/platform-admins@example.com"], rule)
    expect(list(rule.denied_permissions) == ["iam.googleapis.com/serviceAccountKeys.create"], rule)
    cond = c.deny.get_policy(name=f"{ORG_DENY}/no-logs-for-c").rules[0].deny_rule.denial_condition
    expect(cond.expression.startswith("resource.matchTag("), cond)
    raises(gexc.NotFound, lambda: c.deny.get_policy(name=f"{ORG_DENY}/nope"), status="NOT_FOUND")


# ---------------------------------------------------------------- Org Policy v2 (GAPIC REST)

AUTO = "iam.automaticIamGrantsForDefaultServiceAccounts"


@case("orgpolicy.policies.getEffectivePolicy")
def _(c):
    p = c.orgpolicy.get_effective_policy(name=f"projects/{PROJECT}/policies/{AUTO}")
    expect(p.name == f"projects/{NUMBER}/policies/{AUTO}" and p.spec.rules[0].enforce, p)
    reset = c.orgpolicy.get_effective_policy(name=f"projects/{OTHER}/policies/{AUTO}")
    expect(not reset.spec.rules[0].enforce, reset)


@case("orgpolicy.policies.get")
def _(c):
    p = c.orgpolicy.get_policy(name=f"{ORG}/policies/{AUTO}")
    expect(p.spec.rules[0].enforce and p.spec.etag, p)
    expect(c.orgpolicy.get_policy(name=f"folders/333/policies/{AUTO}").spec.reset, "folder reset")
    raises(gexc.NotFound, lambda: c.orgpolicy.get_policy(name=f"projects/{PROJECT}/policies/{AUTO}"), status="NOT_FOUND")


# ---------------------------------------------------------------- Cloud Identity v1 (discovery)

@case("cloudidentity.groups.memberships.checkTransitiveMembership")
def _(c):
    name = c.ci.groups().lookup(groupKey_id="platform-admins@example.com").execute()["name"]
    expect(name.startswith("groups/"), name)
    g = c.ci.groups().get(name=name).execute()
    expect(g["groupKey"]["id"] == "platform-admins@example.com", g)
    nested = c.ci.groups().memberships().checkTransitiveMembership(
        parent=name, query="member_key_id == 'nodes-b@conf-project.iam.gserviceaccount.com'").execute()
    expect(nested.get("hasMembership") is True, nested)
    outside = c.ci.groups().memberships().checkTransitiveMembership(
        parent=name, query="member_key_id=='nodes-a@conf-project.iam.gserviceaccount.com'").execute()
    expect(not outside.get("hasMembership", False), outside)
    e = raises(HttpError, lambda: c.ci.groups().lookup(groupKey_id="nobody@example.com").execute())
    expect(e.resp.status == 403, e)


# ---------------------------------------------------------------- Logging v2

@case("logging.entries.list")
def _(c):
    flt = 'protoPayload.methodName="SetIamPolicy" OR protoPayload.methodName="google.iam.admin.v1.DeleteServiceAccount"'
    got = list(c.logging.list_entries(resource_names=[f"projects/{PROJECT}"], filter_=flt, page_size=1))
    methods = {e.payload.get("methodName") if isinstance(e.payload, dict) else None for e in got}
    expect(len(got) >= 2 and methods == {"SetIamPolicy", "google.iam.admin.v1.DeleteServiceAccount"}, (len(got), methods))
    items, pages = all_pages(
        c.log2.entries().list(body={"resourceNames": [f"projects/{PROJECT}"], "pageSize": 1,
                                    "filter": "severity>=NOTICE AND NOT resource.type=gke_cluster",
                                    "orderBy": "timestamp desc"}),
        c.log2.entries().list_next, "entries")
    expect(pages == len(items) and len(items) >= 3, (pages, len(items)))
    e = raises(HttpError, lambda: c.log2.entries().list(body={"resourceNames": [f"projects/{PROJECT}"],
                                                              "filter": "thud=1"}).execute())
    expect(e.resp.status == 400, e)


# ---------------------------------------------------------------- Cloud Asset Inventory v1

CAI_CRM = ["cloudresourcemanager.googleapis.com/Project", "cloudresourcemanager.googleapis.com/Folder",
           "cloudresourcemanager.googleapis.com/Organization"]


@case("cloudasset.v1.assets.list")
def _(c):
    pager = c.assets.list_assets(request={"parent": ORG, "content_type": asset_v1.ContentType.IAM_POLICY,
                                          "asset_types": CAI_CRM, "page_size": 1})
    pages = list(pager.pages)
    assets = [a for p in pages for a in p.assets]
    names = [a.name for a in assets]
    expect(len(pages) == len(assets) >= 3, (len(pages), names))
    expect(f"//cloudresourcemanager.googleapis.com/projects/{NUMBER}" in names
           and f"//cloudresourcemanager.googleapis.com/{ORG}" in names, names)
    proj = next(a for a in assets if a.name.endswith(f"/projects/{NUMBER}"))
    expect(list(proj.ancestors) == [f"projects/{NUMBER}", "folders/222", "folders/111", ORG], proj.ancestors)
    expect(proj.asset_type == CAI_CRM[0] and proj.iam_policy.etag
           and any(b.role == "roles/owner" for b in proj.iam_policy.bindings), proj)
    expect(pages[0].read_time.year >= 2024, pages[0].read_time)
    clusters = list(c.assets.list_assets(request={"parent": f"projects/{PROJECT}",
                                                  "content_type": asset_v1.ContentType.RESOURCE,
                                                  "asset_types": ["container.googleapis.com/Cluster"]}))
    c1 = next(a for a in clusters if a.name.endswith("/locations/us-central1/clusters/c1"))
    expect(c1.resource.data["nodePools"][0]["config"]["serviceAccount"] == SA_A, c1.resource.data)
    expect(c1.resource.parent == f"//cloudresourcemanager.googleapis.com/projects/{NUMBER}", c1.resource.parent)
    ap1 = next(a for a in clusters if a.name.endswith("/clusters/ap1"))
    expect(ap1.resource.data["autopilot"]["enabled"] is True, ap1.resource.data["autopilot"])
    raises(gexc.BadRequest, lambda: list(c.assets.list_assets(
        request={"parent": ORG, "asset_types": ["container.googleapis.com/("]})), status="INVALID_ARGUMENT")
    c.control("PUT", "faults", {"deny": ["cloudasset.assets.listIamPolicy"]})
    try:
        raises(gexc.Forbidden, lambda: list(c.assets.list_assets(
            request={"parent": ORG, "content_type": asset_v1.ContentType.IAM_POLICY})), status="PERMISSION_DENIED")
    finally:
        c.control("PUT", "faults", {})


@case("cloudasset.v1.assets.list (discovery client)")
def _(c):
    items, pages = all_pages(
        # The comma form (list_next cannot carry a repeated query parameter to the next page).
        c.ca1.assets().list(parent="folders/111", contentType="RESOURCE", pageSize=2,
                            assetTypes="iam.googleapis.com/ServiceAccount,serviceusage.googleapis.com/Service"),
        c.ca1.assets().list_next, "assets")
    expect(pages == (len(items) + 1) // 2 and pages >= 2, (pages, len(items)))
    emails = {a["resource"]["data"].get("email") for a in items if a["assetType"] == "iam.googleapis.com/ServiceAccount"}
    expect(SA_A in emails and "gone@conf-project.iam.gserviceaccount.com" not in emails, emails)
    services = {a["resource"]["data"]["name"] for a in items if a["assetType"] == "serviceusage.googleapis.com/Service"}
    expect(f"projects/{NUMBER}/services/container.googleapis.com" in services, services)


def main():
    binary = sys.argv[1]
    proc = subprocess.Popen([binary, "sim", "--world", os.path.join(HERE, "world.yaml"), "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening on http://"):
            print(f"sim did not start: {line!r}")
            return 1
        c = Ctx(line.split()[-1])
        c.state = {}
        passed = 0
        for name, fn in CASES:
            try:
                fn(c)
                passed += 1
                print(f"PASS {name}")
            except Exception as e:
                print(f"FAIL {name}: {type(e).__name__}: {e}")
                traceback.print_exc(limit=3, file=sys.stdout)
        print(f"conformance: {len(CASES)} methods exercised, {passed} passed")
        return 0 if passed == len(CASES) else 1
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
