# Project level, dry-run, module defaults everywhere else.
# expect-policy: "limits": "deny_policy_max_age_minutes": 60 "expiry_warning_days": 14 "max_restorations_per_binding": 3 "max_write_attempts": 5 "max_writes_per_run": 100 "window_minutes": 60 "mode": "dry-run"
project_id = "acme-gke-prod"
region     = "europe-west1"
image      = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
