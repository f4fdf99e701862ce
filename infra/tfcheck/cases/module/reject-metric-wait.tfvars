# expect-error: metric_propagation_wait must be a duration in seconds or minutes of at most 30 minutes
project_id              = "acme-gke-prod"
region                  = "europe-west1"
image                   = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
metric_propagation_wait = "1h"
