# Secret Manager: the notification credentials (created empty; add versions out of band, never through
# Terraform, so they stay out of the state) and the remediation policy file (not secret, but Cloud Run
# mounts files only from secrets; rendered from the module's inputs).

locals {
  # Secret key -> environment variable the service and job receive it in.
  notification_secret_env = {
    "slack-webhook-url" = "REMEDIATOR_SLACK_WEBHOOK_URL"
    "smtp-password"     = "REMEDIATOR_SMTP_PASSWORD"
    "webhook-hmac-key"  = "REMEDIATOR_WEBHOOK_HMAC_KEY"
  }

  # The remediation policy (src/config.rs RemediationPolicy; unknown keys are errors there).
  policy = merge(
    {
      mode              = var.mode
      restore           = concat(var.restore_requirements, var.restore_container_api_enabled ? ["container-api-enabled"] : [], var.restore_node_sa_exists ? ["node-sa-exists"] : [])
      scope             = var.policy_scope
      exempt_principals = var.exempt_principals
      limits            = var.limits
      grace_seconds     = var.grace_seconds
    },
    var.notifications == null ? {} : { notifications = var.notifications },
  )
  policy_dir  = "/etc/gke-iam-remediator"
  policy_file = "policy.yaml"
}

resource "google_secret_manager_secret" "notification" {
  for_each = var.notification_secrets

  project   = var.project_id
  secret_id = "${var.name}-${each.key}"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_iam_member" "notification_runtime" {
  for_each = var.notification_secrets

  project   = var.project_id
  secret_id = google_secret_manager_secret.notification[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.runtime_member
}

resource "google_secret_manager_secret" "policy" {
  project   = var.project_id
  secret_id = "${var.name}-policy"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_version" "policy" {
  secret      = google_secret_manager_secret.policy.id
  secret_data = yamlencode(local.policy)
}

resource "google_secret_manager_secret_iam_member" "policy_runtime" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.policy.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.runtime_member
}
