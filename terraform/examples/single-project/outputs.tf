output "service_uri" {
  description = "Internal URL of the service."
  value       = module.gke_iam_remediator.service_uri
}

output "runtime_service_account" {
  description = "The remediator's identity."
  value       = module.gke_iam_remediator.runtime_service_account
}

output "notifications_topic" {
  description = "Subscribe here for Notification v1 messages."
  value       = module.gke_iam_remediator.notifications_topic
}

output "dead_letter_subscription" {
  description = "Dead-lettered events are kept here."
  value       = module.gke_iam_remediator.dead_letter_subscription
}

output "notification_secret_ids" {
  description = "Secrets to add versions to."
  value       = module.gke_iam_remediator.notification_secret_ids
}

output "sink_filter" {
  description = "Filter of the audit-log sink (check it with gcloud logging read)."
  value       = module.gke_iam_remediator.sink_filter
}

output "state_database_id" {
  description = "Firestore database holding the remediator's state (gcloud --database)."
  value       = module.gke_iam_remediator.state_database_id
}

output "policy_yaml" {
  description = "The policy file the service and job read, notifications included."
  value       = module.gke_iam_remediator.policy_yaml
}
