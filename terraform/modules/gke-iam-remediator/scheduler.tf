# The periodic sweep: Cloud Scheduler calls the Run Admin API `jobs.run` with an OAuth token of the
# scheduler service account (Google APIs take OAuth access tokens, not OIDC ID tokens).

resource "google_cloud_scheduler_job" "sweep" {
  project     = var.project_id
  region      = var.region
  name        = "${var.name}-sweep"
  description = "Runs the gke-iam-remediator sweep job over ${join(", ", local.sweep_scope)}."
  schedule    = var.sweep_schedule
  time_zone   = var.sweep_time_zone

  attempt_deadline = "180s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.sweep.name}:run"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler]
}
