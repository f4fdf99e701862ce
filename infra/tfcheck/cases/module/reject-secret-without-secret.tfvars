# expect-error: notification_secrets_with_versions must be a subset of notification_secrets: smtp-password is listed
project_id                         = "acme-gke-prod"
region                             = "europe-west1"
image                              = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
notification_secrets               = ["slack-webhook-url"]
notification_secrets_with_versions = ["slack-webhook-url", "smtp-password"]
