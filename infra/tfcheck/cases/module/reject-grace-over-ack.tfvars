# expect-error: ack_deadline_seconds must be at least grace_seconds + 30
project_id    = "acme-gke-prod"
region        = "europe-west1"
image         = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
grace_seconds = 100
