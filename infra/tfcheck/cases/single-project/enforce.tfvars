# The single-project example in enforce mode with the Slack secret exposed.
project_id            = "acme-gke-prod"
region                = "us-east1"
image                 = "us-east1-docker.pkg.dev/acme-gke-prod/remediator/gke-iam-remediator:v1.4.2"
mode                  = "enforce"
secrets_with_versions = ["slack-webhook-url"]
