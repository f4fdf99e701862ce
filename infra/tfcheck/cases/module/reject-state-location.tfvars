# expect-error: state_location must be null, a Firestore region such as europe-west1, or a multi-region
project_id     = "acme-gke-prod"
region         = "europe-west1"
image          = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
state_location = "europe"
