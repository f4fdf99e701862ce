# expect-error: sink_level = folder needs organization_id
project_id     = "acme-gke-prod"
region         = "europe-west1"
image          = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
sink_level     = "folder"
sink_parent_id = "445566778899"
