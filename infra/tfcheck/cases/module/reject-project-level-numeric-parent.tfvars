# expect-error: sink_level = project needs sink_parent_id empty (project_id) or a project ID
project_id     = "acme-gke-prod"
region         = "europe-west1"
image          = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
sink_parent_id = "123456789012"
