#!/usr/bin/env python3
"""A Terraform state "as if applied" from a plan, for making plans of changes offline.

The stand-in provider cannot apply. To plan an *update* or a *delete*, Terraform needs a prior state:
this writes one (state format version 4) holding every resource of PLAN.json (the output of
`terraform show -json` of a plan of the configuration *before* the change) with its planned values,
each value known only after apply filled the way the real provider would fill it:
`google_service_account` gets `email = ACCOUNT_ID@PROJECT.iam.gserviceaccount.com` (and its `member`,
`name`, `id`, a unique id), any other attribute a typed placeholder from SCHEMA.json (extract_schema.py).
Planning the configuration *after* the change against that state gives a real plan of the change:
Terraform reads the state back through the stand-in (which returns it unchanged) and diffs.

Usage: plan_state.py SCHEMA.json PLAN.json > terraform.tfstate
"""

import hashlib
import json
import re
import sys


def placeholder(name, cty):
    if cty == "string":
        if name == "etag":
            return "BwYfakeEtag="
        return f"tfcheck-{name}"
    if cty == "number":
        return 0
    if cty == "bool":
        return False
    if isinstance(cty, list) and cty[0] in ("list", "set"):
        return []
    if isinstance(cty, list) and cty[0] == "map":
        return {}
    if isinstance(cty, list) and cty[0] == "object":
        return None
    raise ValueError(f"no placeholder for {name}: {cty}")


def fill(block, value, unknown):
    """`value` with every attribute marked unknown in `unknown` replaced by a placeholder."""
    if not isinstance(value, dict):
        value = {}
    unknown = unknown if isinstance(unknown, dict) else {}
    out = dict(value)
    for name, a in block["attributes"].items():
        if unknown.get(name) is True or name not in out:
            out[name] = placeholder(name, a["type"]) if unknown.get(name) is True else None
    for name, b in block["block_types"].items():
        v = out.get(name)
        u = unknown.get(name)
        if u is True:
            out[name] = [] if b["nesting"] != "single" else None
        elif b["nesting"] == "single":
            out[name] = fill(b["block"], v, u) if v is not None else None
        else:
            items = v or []
            marks = u if isinstance(u, list) else []
            out[name] = [fill(b["block"], el, marks[i] if i < len(marks) else {}) for i, el in enumerate(items)]
    return out


def digits(text, n=21):
    h = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    return str(h)[:n]


def account_values(values):
    project, account_id = values.get("project"), values.get("account_id")
    if not project or not account_id:
        return values
    email = f"{account_id}@{project}.iam.gserviceaccount.com"
    name = f"projects/{project}/serviceAccounts/{email}"
    values.update(email=email, member=f"serviceAccount:{email}", name=name, id=name)
    if values.get("unique_id") in (None, "tfcheck-unique_id"):
        values["unique_id"] = "1" + digits(email, 20)
    return values


INDEX = re.compile(r'\[(\d+|"[^"]*")\]$')


def main():
    schema = json.load(open(sys.argv[1]))
    plan = json.load(open(sys.argv[2]))
    resources = {}
    for rc in plan.get("resource_changes", []):
        if rc.get("mode") != "managed":
            continue
        change = rc["change"]
        if "create" not in change["actions"] and "update" not in change["actions"] and "no-op" not in change["actions"]:
            continue
        block = schema["resources"][rc["type"]]
        values = fill(block, change.get("after"), change.get("after_unknown"))
        if rc["type"] == "google_service_account":
            values = account_values(values)
        if rc["type"] == "google_project" and values.get("number") == "tfcheck-number":
            values["number"] = digits(values.get("project_id") or "p", 12)
        module = rc.get("module_address")
        key = (module, rc["type"], rc["name"])
        provider = rc["provider_name"]
        entry = resources.setdefault(
            key,
            {
                **({"module": module} if module else {}),
                "mode": "managed",
                "type": rc["type"],
                "name": rc["name"],
                "provider": f'provider["{provider}"]',
                "instances": [],
            },
        )
        instance = {"schema_version": 0, "attributes": values, "sensitive_attributes": []}
        m = INDEX.search(rc["address"])
        if m:
            k = m.group(1)
            instance = {"index_key": json.loads(k) if k.startswith('"') else int(k), **instance}
        entry["instances"].append(instance)
    state = {
        "version": 4,
        "terraform_version": plan.get("terraform_version", "1.11.4"),
        "serial": 1,
        "lineage": "00000000-0000-4000-8000-000000000000",
        "outputs": {},
        "resources": list(resources.values()),
        "check_results": None,
    }
    json.dump(state, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
