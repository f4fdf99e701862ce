#!/usr/bin/env python3
"""Print the remediation policy file a plan renders: the `secret_data` of the module's
`google_secret_manager_secret_version.policy`, read from `terraform show -json PLAN` on stdin (the module
planned as a root module or called from an example). Exactly one must be found."""

import json
import sys


def resources(module):
    yield from module.get("resources", [])
    for child in module.get("child_modules", []):
        yield from resources(child)


plan = json.load(sys.stdin)
found = [
    r["values"].get("secret_data")
    for r in resources(plan.get("planned_values", {}).get("root_module", {}))
    if r["type"] == "google_secret_manager_secret_version" and r["name"] == "policy"
]
if len(found) != 1 or not isinstance(found[0], str):
    sys.exit(f"plan_policy: expected one google_secret_manager_secret_version.policy with a known secret_data, found {found!r}")
sys.stdout.write(found[0])
