# Folder level in enforce mode: organization-defined custom roles, folder sink and grants, a sweep scope of
# two folders, a shorter name and push_auth = "signed".
project_id           = "acme-ops-remediator"
region               = "us-central1"
image                = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
name                 = "gke-fix"
sink_level           = "folder"
sink_parent_id       = "445566778899"
organization_id      = "123456789012"
sweep_scope          = ["folders/445566778899", "folders/998877665544"]
mode                 = "enforce"
push_auth            = "signed"
grace_seconds        = 90
ack_deadline_seconds = 180
