# The single-project example in enforce mode with the Slack secret exposed: the Slack channel only (the
# email route waits for the smtp-password secret's version).
# expect-policy: "notifications": "channels": - "name": "slack" "type": "slack" "url_env": "REMEDIATOR_SLACK_WEBHOOK_URL" "routes": - "channels": - "slack" "restore":
project_id            = "acme-gke-prod"
region                = "us-east1"
image                 = "us-east1-docker.pkg.dev/acme-gke-prod/remediator/gke-iam-remediator:v1.4.2"
mode                  = "enforce"
secrets_with_versions = ["slack-webhook-url"]
email = {
  host     = "smtp.example.com"
  username = "remediator@example.com"
  from     = "remediator@example.com"
  to       = ["oncall@example.com"]
}
