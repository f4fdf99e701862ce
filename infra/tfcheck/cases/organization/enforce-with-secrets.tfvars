# The organization example after the dry-run weeks: enforce, all three secrets with versions, excluded
# folders, two alert channels; so the Slack channel, the email route (with SMTP AUTH) and the webhook.
# expect-policy: "notifications": "channels": - "name": "slack" "type": "slack" "url_env": "REMEDIATOR_SLACK_WEBHOOK_URL"
# expect-policy: "name": "email" "password_env": "REMEDIATOR_SMTP_PASSWORD" "port": 587 "type": "email" "username": "remediator@example.com"
# expect-policy: - "key_env": "REMEDIATOR_WEBHOOK_HMAC_KEY" "name": "siem" "type": "webhook" "url": "https://siem.example.com/hooks/gke"
# expect-policy: "routes": - "channels": - "slack" - "channels": - "email" "outcomes": - "failed" - "escalated" "to": - "oncall@example.com" - "channels": - "siem"
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
email = {
  host     = "smtp.example.com"
  username = "remediator@example.com"
  from     = "GKE IAM remediator <remediator@example.com>"
  to       = ["oncall@example.com"]
}
webhook_url = "https://siem.example.com/hooks/gke"
