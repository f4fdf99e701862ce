# Project level with the asset feed and notifications (one secret with a version), no API enabling.
project_id                         = "acme-gke-dev"
region                             = "asia-northeast1"
image                              = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
enable_asset_feed                  = true
enable_apis                        = false
notification_secrets               = ["slack-webhook-url", "webhook-hmac-key"]
notification_secrets_with_versions = ["slack-webhook-url"]
notifications = {
  channels = [{ name = "platform-slack", type = "slack", url_env = "REMEDIATOR_SLACK_WEBHOOK_URL" }]
  routes   = [{ channels = ["platform-slack"] }]
}
deletion_protection = false
