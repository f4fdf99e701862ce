# expect-error: limits: deny_policy_max_age_minutes must be between 1 and 1440.
project_id = "acme-gke-prod"
region     = "europe-west1"
image      = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
limits = {
  deny_policy_max_age_minutes = 0
}
