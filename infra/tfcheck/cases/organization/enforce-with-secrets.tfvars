# The organization example after the dry-run weeks: enforce, all three secrets with versions, excluded
# folders, two alert channels.
ops_project_id        = "acme-ops-remediator"
organization_id       = "123456789012"
region                = "europe-west1"
image                 = "europe-west1-docker.pkg.dev/acme-ops-remediator/remediator/gke-iam-remediator@sha256:2222222222222222222222222222222222222222222222222222222222222222"
mode                  = "enforce"
excluded_folder_ids   = ["998877665544", "112233445566"]
secrets_with_versions = ["slack-webhook-url", "smtp-password", "webhook-hmac-key"]
alert_notification_channels = [
  "projects/acme-ops-remediator/notificationChannels/1234567890",
  "projects/acme-ops-remediator/notificationChannels/42",
]
