# Organization level, enforce, every opt-in requirement and feature: roles/editor for the Google APIs
# service agent, API re-enabling, service-account undelete, asset feed, troubleshooter, healthy
# notifications, KMS-encrypted topics, all three notification secrets with versions, a notifications
# section, alert channels, a state database of its own name in a multi-region with point-in-time recovery
# and without delete protection; every limit, and a shorter wait for the metrics.
# expect-policy: "limits": "deny_policy_max_age_minutes": 15 "expiry_warning_days": 30 "max_restorations_per_binding": 3 "max_write_attempts": 5 "max_writes_per_run": 20 "window_minutes": 60
project_id     = "acme-ops-remediator"
region         = "europe-west4"
image          = "europe-west1-docker.pkg.dev/acme-ops/remediator/gke-iam-remediator@sha256:1111111111111111111111111111111111111111111111111111111111111111"
sink_level     = "organization"
sink_parent_id = "123456789012"
mode           = "enforce"
restore_requirements = [
  "node-sa-permissions",
  "gke-service-agent",
  "gke-node-service-agent",
  "google-apis-service-agent",
]
restore_container_api_enabled      = true
restore_node_sa_exists             = true
enable_asset_feed                  = true
policy_troubleshooter              = true
notify_healthy                     = true
kms_key_name                       = "projects/acme-kms/locations/europe-west4/keyRings/ops/cryptoKeys/pubsub"
notification_secrets               = ["slack-webhook-url", "smtp-password", "webhook-hmac-key"]
notification_secrets_with_versions = ["slack-webhook-url", "smtp-password", "webhook-hmac-key"]
alert_notification_channels        = ["projects/acme-ops-remediator/notificationChannels/42"]
state_database_id                  = "remediator-state"
state_location                     = "eur3"
state_point_in_time_recovery       = true
state_delete_protection            = false
notifications = {
  digest_window_seconds = 30
  channels = [
    { name = "platform-slack", type = "slack", url_env = "REMEDIATOR_SLACK_WEBHOOK_URL" },
    {
      name         = "oncall"
      type         = "email"
      host         = "smtp.example.com"
      username     = "remediator@example.com"
      password_env = "REMEDIATOR_SMTP_PASSWORD"
      from         = "GKE IAM remediator <remediator@example.com>"
      to           = ["platform@example.com"]
    },
    { name = "siem", type = "webhook", url = "https://siem.example.com/hooks/gke", key_env = "REMEDIATOR_WEBHOOK_HMAC_KEY" },
  ]
  routes = [
    { channels = ["platform-slack", "siem"] },
    { outcomes = ["failed", "escalated"], channels = ["oncall"] },
  ]
}
policy_scope = {
  exclude_projects = ["sandbox-*"]
  exclude_folders  = ["998877665544"]
}
limits = {
  max_writes_per_run          = 20
  expiry_warning_days         = 30
  deny_policy_max_age_minutes = 15
}
metric_propagation_wait = "90s"
