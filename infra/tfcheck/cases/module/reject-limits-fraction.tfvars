# expect-error: limits: every limit is a whole number.
project_id = "acme-gke-prod"
region     = "europe-west1"
image      = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
limits = {
  expiry_warning_days = 7.5
}
