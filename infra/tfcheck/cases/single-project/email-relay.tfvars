# The single-project example with an email route through a relay without SMTP AUTH (no secret needed),
# every outcome that needs a person plus expiring grants, and no Slack secret yet.
# expect-policy: "notifications": "channels": - "from": "remediator@example.com" "host": "relay.internal.example.com" "name": "email" "port": 25 "type": "email" "routes": - "channels": - "email" "outcomes": - "failed" - "escalated" - "expiring" "to": - "oncall@example.com" - "platform@example.com" "restore":
project_id = "acme-gke-prod"
region     = "europe-west1"
image      = "europe-west1-docker.pkg.dev/acme-gke-prod/remediator/gke-iam-remediator@sha256:3333333333333333333333333333333333333333333333333333333333333333"
email = {
  host     = "relay.internal.example.com"
  port     = 25
  from     = "remediator@example.com"
  to       = ["oncall@example.com", "platform@example.com"]
  outcomes = ["failed", "escalated", "expiring"]
}
