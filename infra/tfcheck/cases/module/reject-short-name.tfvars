# expect-error: name must be 6-24 characters
project_id = "acme-gke-prod"
region     = "europe-west1"
image      = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
name       = "gke"
