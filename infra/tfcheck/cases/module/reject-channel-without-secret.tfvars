# expect-error: notifications channels read REMEDIATOR_SMTP_PASSWORD, but the service only gets
project_id                         = "acme-gke-prod"
region                             = "europe-west1"
image                              = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
notification_secrets_with_versions = ["slack-webhook-url"]
notifications = {
  channels = [
    { name = "slack", type = "slack", url_env = "REMEDIATOR_SLACK_WEBHOOK_URL" },
    { name = "mail", type = "email", host = "smtp.example.com", password_env = "REMEDIATOR_SMTP_PASSWORD", from = "r@example.com", to = ["p@example.com"] },
  ]
  routes = [{ channels = ["slack", "mail"] }]
}
