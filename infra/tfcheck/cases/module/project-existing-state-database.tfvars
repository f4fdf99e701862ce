# The state in an existing Firestore Native database of project_id: the module creates no database, only
# the runtime account's conditional roles/datastore.user grant on it, and points REMEDIATOR_STATE at it.
project_id            = "acme-gke-prod"
region                = "europe-west1"
image                 = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
create_state_database = false
state_database_id     = "ops-shared-state"
