output "service_name" {
  description = "Cloud Run service name."
  value       = google_cloud_run_v2_service.this.name
}

output "service_uri" {
  description = "Cloud Run service URL (internal ingress only)."
  value       = google_cloud_run_v2_service.this.uri
}

output "push_audience" {
  description = "Audience of the push OIDC tokens (the service's deterministic URL)."
  value       = local.push_audience
}

output "sweep_job_name" {
  description = "Cloud Run job running `job --sweep`."
  value       = google_cloud_run_v2_job.sweep.name
}

output "runtime_service_account" {
  description = "Email of the runtime service account (REMEDIATOR_SELF_EMAIL)."
  value       = google_service_account.runtime.email
}

output "invoker_service_account" {
  description = "Email of the push invoker service account."
  value       = google_service_account.invoker.email
}

output "scheduler_service_account" {
  description = "Email of the sweep scheduler service account."
  value       = google_service_account.scheduler.email
}

output "events_topic" {
  description = "Events topic (audit-log sink, asset feed, sweep requests)."
  value       = google_pubsub_topic.events.id
}

output "notifications_topic" {
  description = "Notifications topic (Notification v1 JSON, attributes outcome/severity/project_id/requirement)."
  value       = google_pubsub_topic.notifications.id
}

output "dead_letter_topic" {
  description = "Dead-letter topic of the push subscription."
  value       = google_pubsub_topic.dead_letters.id
}

output "dead_letter_subscription" {
  description = "Pull subscription that keeps dead letters."
  value       = google_pubsub_subscription.dead_letters.id
}

output "push_subscription" {
  description = "Push subscription delivering events to the service."
  value       = google_pubsub_subscription.push.id
}

output "sink_writer_identity" {
  description = "Writer identity of the audit-log sink (granted roles/pubsub.publisher on the events topic)."
  value       = local.sink_writer_identity
}

output "sink_filter" {
  description = "Filter of the audit-log sink."
  value       = local.sink_filter
}

output "restorable_roles" {
  description = "Roles the conditional setIamPolicy grant allows the remediator to change."
  value       = local.restorable_roles
}

output "notification_secret_ids" {
  description = "Secret Manager secret ids by key; add versions with `gcloud secrets versions add`."
  value       = { for k, s in google_secret_manager_secret.notification : k => s.id }
}

output "policy_yaml" {
  description = "The remediation policy file rendered for the service and job."
  value       = yamlencode(local.policy)
}

output "dashboard_id" {
  description = "Cloud Monitoring dashboard of the deployment (projects/NUMBER/dashboards/ID)."
  value       = google_monitoring_dashboard.this.id
}

output "push_auth" {
  description = "Push authentication model the service runs with (REMEDIATOR_PUSH_AUTH)."
  value       = var.push_auth
}

output "state_database" {
  description = "Resource name of the Firestore state database (projects/PROJECT_ID/databases/ID); the service and job get it as REMEDIATOR_STATE = firestore://projects/PROJECT_ID/databases/ID."
  value       = local.state_database
}

output "state_database_id" {
  description = "Id of the Firestore state database, for gcloud's --database flag."
  value       = local.state_database_id
}
