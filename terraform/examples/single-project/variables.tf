variable "project_id" {
  description = "Project running GKE clusters; the remediator runs in it and watches it."
  type        = string
}

variable "region" {
  description = "Cloud Run region."
  type        = string
  default     = "europe-west1"
}

variable "image" {
  description = "Image pushed to Artifact Registry, pinned by digest."
  type        = string
}

variable "mode" {
  description = "dry-run first; enforce once the would-restore notifications look right."
  type        = string
  default     = "dry-run"
}

variable "secrets_with_versions" {
  description = "Secrets that already have a version (see README)."
  type        = set(string)
  default     = []
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channels for the alerts."
  type        = list(string)
  default     = []
}
