# expect-error: state_database_id must be null or a named Firestore database id
project_id        = "acme-gke-prod"
region            = "europe-west1"
image             = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
state_database_id = "(default)"
