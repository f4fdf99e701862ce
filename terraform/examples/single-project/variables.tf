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
  description = "Secrets that already have a version (see README); their channels are then configured."
  type        = set(string)
  default     = []
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channels for the alerts."
  type        = list(string)
  default     = []
}

variable "email" {
  description = "Email notifications (null: none): the SMTP submission server (STARTTLS), the sender, the recipients and the outcomes they get. With `username`, the password is the smtp-password secret, and the channel is configured once that secret is listed in secrets_with_versions."
  type = object({
    host     = string
    port     = optional(number, 587)
    username = optional(string)
    from     = string
    to       = list(string)
    outcomes = optional(list(string), ["failed", "escalated"])
  })
  default = null

  validation {
    condition     = var.email == null || try(length(var.email.to) > 0 && alltrue([for o in var.email.outcomes : contains(["restored", "resolved", "would-restore", "not-allowed", "unknown", "failed", "escalated", "expiring", "healthy"], o)]), false)
    error_message = "email needs at least one address in `to`, and `outcomes` may name only restored, resolved, would-restore, not-allowed, unknown, failed, escalated, expiring, healthy."
  }
}
