# expect-error: retry_minimum_backoff (300s) must not exceed retry_maximum_backoff (60s)
project_id            = "acme-gke-prod"
region                = "europe-west1"
image                 = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
retry_minimum_backoff = "300s"
retry_maximum_backoff = "60s"
