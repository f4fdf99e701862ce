# expect-error: image must not use the mutable :latest tag
project_id = "acme-gke-prod"
region     = "europe-west1"
image      = "europe-west1-docker.pkg.dev/acme-gke-prod/remediator/gke-iam-remediator:latest"
