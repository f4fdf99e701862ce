variable "ops_project_id" {
  description = "Operations project that hosts the remediator."
  type        = string
}

variable "organization_id" {
  description = "Numeric organization ID to watch."
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

variable "excluded_folder_ids" {
  description = "Folders whose projects are never touched (numeric ids)."
  type        = list(string)
  default     = []
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
