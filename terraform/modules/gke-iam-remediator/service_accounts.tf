# Three identities, each with one job:
# - runtime:   the service and the job run as it; the only account that reads and (conditionally) writes IAM.
# - invoker:   Pub/Sub signs push requests with it (OIDC); roles/run.invoker on the service only.
# - scheduler: Cloud Scheduler calls the Run Admin API jobs.run with it; roles/run.invoker on the job only.

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = var.name
  display_name = "gke-iam-remediator runtime"
  description  = "Runs the gke-iam-remediator service and sweep job; restores GKE IAM bindings under an IAM condition."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name}-push"
  display_name = "gke-iam-remediator push invoker"
  description  = "Identity of Pub/Sub push requests to the gke-iam-remediator service (OIDC token)."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name}-sched"
  display_name = "gke-iam-remediator sweep scheduler"
  description  = "Identity of Cloud Scheduler when it runs the gke-iam-remediator sweep job."

  depends_on = [google_project_service.this]
}

locals {
  runtime_member   = "serviceAccount:${google_service_account.runtime.email}"
  invoker_member   = "serviceAccount:${google_service_account.invoker.email}"
  scheduler_member = "serviceAccount:${google_service_account.scheduler.email}"
  pubsub_agent     = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
