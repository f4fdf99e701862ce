terraform {
  # 1.5: `optional()` defaults, `check` blocks and lifecycle preconditions used below.
  required_version = ">= 1.5"

  # google / google-beta: checked offline against 6.50.0 and 7.46.1 (infra/tfcheck); 6.1.0 lacks
  # google_cloud_run_v2_service.invoker_iam_disabled, so the range starts at the lowest version checked.
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50, < 8.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.50, < 8.0"
    }
    # time_sleep: the alert policies and the dashboard wait until Cloud Monitoring knows the log-based
    # metrics (monitoring.tf).
    time = {
      source  = "hashicorp/time"
      version = "~> 0.9"
    }
  }
}
