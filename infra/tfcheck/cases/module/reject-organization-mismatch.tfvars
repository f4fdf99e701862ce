# expect-error: but organization_id is 999999999999
project_id      = "acme-ops-remediator"
region          = "europe-west1"
image           = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
sink_level      = "organization"
sink_parent_id  = "123456789012"
organization_id = "999999999999"
