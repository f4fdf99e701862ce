# Operators see a broken remediator without reading logs: a log-based metric counts the service's
# outcome log lines (`jsonPayload.message = "finding outcome"`, labelled by `jsonPayload.outcome`), one
# alert fires on `failed`/`escalated` outcomes, another on messages waiting in the dead-letter subscription.

resource "google_logging_metric" "outcomes" {
  project     = var.project_id
  name        = "${var.name}-outcomes"
  description = "gke-iam-remediator finding outcomes (restored, would-restore, healthy, not-allowed, unknown, failed, escalated)."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${google_cloud_run_v2_service.this.name}\"",
    "jsonPayload.message=\"finding outcome\"",
  ])

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "gke-iam-remediator outcomes"

    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "Outcome of one finding."
    }
    labels {
      key         = "requirement"
      value_type  = "STRING"
      description = "Requirement id of the finding."
    }
  }

  label_extractors = {
    "outcome"     = "EXTRACT(jsonPayload.outcome)"
    "requirement" = "EXTRACT(jsonPayload.requirement)"
  }
}

resource "google_monitoring_alert_policy" "outcomes" {
  project               = var.project_id
  display_name          = "${var.name}: failed or escalated remediation"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "failed or escalated outcomes"

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.outcomes.name}\" AND resource.type=\"cloud_run_revision\" AND metric.label.outcome=one_of(\"failed\", \"escalated\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.outcome", "metric.label.requirement"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      gke-iam-remediator reported a `failed` or `escalated` outcome: a binding GKE needs is missing and was
      not restored (write failed, or the binding flapped more than the policy allows). Read the
      notifications on `${google_pubsub_topic.notifications.id}` or the service logs
      (`jsonPayload.message="finding outcome"`), fix the cause, then let the next sweep confirm.
    EOT
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "${var.name}: dead-lettered events"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "messages in the dead-letter subscription"

    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${google_pubsub_subscription.dead_letters.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      Events could not be delivered to gke-iam-remediator ${var.max_delivery_attempts} times and were
      dead-lettered to `${google_pubsub_topic.dead_letters.id}`. Pull them from
      `${google_pubsub_subscription.dead_letters.id}`, check the service's logs and the push
      subscription's health, then run the sweep job to re-check every project in scope.
    EOT
  }
}
