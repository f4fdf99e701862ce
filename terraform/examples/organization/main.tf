# One operations project watches a whole organization: an aggregated organization sink, the read role and
# the conditional setIamPolicy grant at the organization, the asset feed as a second trigger, all three
# notification secrets. Starts in dry-run.

module "gke_iam_remediator" {
  source = "../../modules/gke-iam-remediator"

  project_id = var.ops_project_id
  region     = var.region
  image      = var.image

  sink_level     = "organization"
  sink_parent_id = var.organization_id

  mode = var.mode
  restore_requirements = [
    "node-sa-permissions",
    "gke-service-agent",
    "gke-node-service-agent",
  ]
  restore_node_sa_exists        = true
  restore_container_api_enabled = false

  policy_scope = {
    include_projects = ["*"]
    exclude_projects = ["sandbox-*"]
    exclude_folders  = var.excluded_folder_ids
  }
  exempt_principals = ["serviceAccount:legacy-*@*"]
  limits = {
    max_writes_per_run           = 50
    max_restorations_per_binding = 3
    window_minutes               = 60
  }
  grace_seconds = 60

  enable_asset_feed = true

  max_instance_count   = 10
  max_concurrency      = 40
  ack_deadline_seconds = 180

  notification_secrets               = ["slack-webhook-url", "smtp-password", "webhook-hmac-key"]
  notification_secrets_with_versions = var.secrets_with_versions
  alert_notification_channels        = var.alert_notification_channels
  notifications = length(local.notification_channels) == 0 ? null : {
    channels = local.notification_channels
    routes   = local.notification_routes
  }

  sweep_schedule  = "23 2 * * *"
  sweep_time_zone = "Europe/Berlin"

  labels = {
    team = "platform"
    env  = "prod"
  }
}

# Notifications: a Slack channel and a signed webhook (webhook_url) that take every outcome but `healthy`,
# and an email route for the outcomes that need a person (`email.outcomes`, default failed and
# escalated). A channel is configured only once the secret it reads has a version and is listed in
# secrets_with_versions (the module refuses a channel whose secret the service does not get); an email
# server without `username` needs no secret.
# Each channel is its own element of a tuple, so its numbers stay numbers in the rendered policy file.
locals {
  slack_ready = contains(var.secrets_with_versions, "slack-webhook-url")
  email_ready = var.email != null && (try(var.email.username, null) == null || contains(var.secrets_with_versions, "smtp-password"))

  slack_channel = local.slack_ready ? { name = "slack", type = "slack", url_env = "REMEDIATOR_SLACK_WEBHOOK_URL" } : null
  email_channel = local.email_ready ? merge(
    { name = "email", type = "email", host = var.email.host, port = var.email.port, from = var.email.from },
    [for u in [var.email.username] : { username = u, password_env = "REMEDIATOR_SMTP_PASSWORD" } if u != null]...
  ) : null

  webhook_ready   = var.webhook_url != null && contains(var.secrets_with_versions, "webhook-hmac-key")
  webhook_channel = local.webhook_ready ? { name = "siem", type = "webhook", url = var.webhook_url, key_env = "REMEDIATOR_WEBHOOK_HMAC_KEY" } : null

  notification_channels = [for c in [local.slack_channel, local.email_channel, local.webhook_channel] : c if c != null]
  notification_routes = [for r in [
    local.slack_ready ? { channels = ["slack"] } : null,
    local.email_ready ? { outcomes = var.email.outcomes, channels = ["email"], to = var.email.to } : null,
    local.webhook_ready ? { channels = ["siem"] } : null,
  ] : r if r != null]
}
