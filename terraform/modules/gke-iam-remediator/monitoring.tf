# Operators see a broken remediator without reading logs: a log-based metric counts the outcome log lines
# of the service AND of the sweep job (`jsonPayload.message = "finding outcome"`, labelled by
# `jsonPayload.outcome`), two more carry the ledger's totals (`jsonPayload.message = "ledger totals"`:
# open findings, pending notifications); alerts fire on `failed` outcomes, on `escalated` outcomes, on
# messages waiting in the dead-letter subscription and on failed sweep job executions; a dashboard shows
# all of it.

locals {
  # Known before anything exists, so the metric does not wait for the service or the job and is created
  # at the very start of an apply (see the alert policies' depends_on).
  service_name = var.name
  job_name     = "${var.name}-sweep"

  # Both Cloud Run resource types that write outcome lines.
  outcome_resources = "resource.type=one_of(\"cloud_run_revision\", \"cloud_run_job\")"
  outcome_metric    = "logging.googleapis.com/user/${var.name}-outcomes"

  alert_documentation_links = "Dashboard: `${var.name}` in Cloud Monitoring. Logs: `jsonPayload.message=\"finding outcome\"` on the service `${local.service_name}` and the job `${local.job_name}`."
}

resource "google_logging_metric" "outcomes" {
  project     = var.project_id
  name        = "${var.name}-outcomes"
  description = "gke-iam-remediator finding outcomes of the service and the sweep job (restored, would-restore, healthy, not-allowed, unknown, failed, escalated)."
  filter = join(" AND ", [
    "((resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.service_name}\") OR (resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${local.job_name}\"))",
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

  depends_on = [google_project_service.this]
}

# The ledger's totals: the service (after every sweep) and the job (after every run) log one line
# `jsonPayload.message = "ledger totals"` with the integer fields openFindings and pendingNotifications,
# read from the shared state store. Each field becomes a DISTRIBUTION metric through a value extractor
# (a log-based metric extracts one value, so one metric per field); the dashboard plots their mean per
# hour. Same resource filter as the outcome metric, and created as early.
locals {
  ledger_totals = {
    open_findings         = "open findings in the ledger"
    pending_notifications = "notifications waiting in the outbox"
  }
  ledger_field  = { open_findings = "openFindings", pending_notifications = "pendingNotifications" }
  ledger_metric = { for k, _ in local.ledger_totals : k => "logging.googleapis.com/user/${var.name}-${replace(k, "_", "-")}" }
}

resource "google_logging_metric" "ledger" {
  for_each = local.ledger_totals

  project     = var.project_id
  name        = "${var.name}-${replace(each.key, "_", "-")}"
  description = "gke-iam-remediator ${each.value}, as the last sweep of the service or run of the job reported it (log line \"ledger totals\")."
  filter = join(" AND ", [
    "((resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.service_name}\") OR (resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${local.job_name}\"))",
    "jsonPayload.message=\"ledger totals\"",
  ])
  # The service logs through tracing-stackdriver, which writes field names in camelCase.
  value_extractor = "EXTRACT(jsonPayload.${local.ledger_field[each.key]})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "gke-iam-remediator ${replace(each.key, "_", " ")}"
  }

  # 0, then powers of two up to 2^20: the mean (what the dashboard plots) is exact whatever the buckets.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.this]
}

# Cloud Monitoring knows a new log-based metric only some time after Logging created it: an alert policy
# (or dashboard) that names it before then is refused with 404 "Cannot find metric(s) that match type =
# ... If a metric was created recently, it could take up to 10 minutes to become available" (an open
# terraform-provider-google issue, 11102: the provider does not retry it, and depends_on on the metric
# does not wait for it). So everything that names these metrics waits for this timer. It starts as soon
# as the metrics exist, at the very start of an apply, and runs while the rest (state database, Cloud Run
# service and job) is created; it waits again only when a metric is replaced (its triggers), never on
# later applies.
resource "time_sleep" "metrics_visible" {
  create_duration = var.metric_propagation_wait

  triggers = {
    outcomes = google_logging_metric.outcomes.id
    ledger   = join(",", [for k in sort(keys(google_logging_metric.ledger)) : google_logging_metric.ledger[k].id])
  }
}

resource "google_monitoring_alert_policy" "failed" {
  project               = var.project_id
  display_name          = "${var.name}: failed restoration"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "failed outcomes (service or sweep job)"

    condition_threshold {
      filter          = "metric.type=\"${local.outcome_metric}\" AND ${local.outcome_resources} AND metric.label.outcome=\"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.requirement"]
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
      gke-iam-remediator reported a `failed` outcome: a binding, service or service account GKE needs is
      missing and the write that should have restored it failed (permission denied, quota, API error). Read
      the notification on `${google_pubsub_topic.notifications.id}` (it names the project, requirement and
      principal), fix the cause (usually the runtime account's grant or an organization policy), then run
      the sweep job (`gcloud run jobs execute ${local.job_name} --region ${var.region}`) to confirm.
      ${local.alert_documentation_links}
    EOT
  }

  depends_on = [google_logging_metric.outcomes, time_sleep.metrics_visible, google_cloud_run_v2_service.this, google_cloud_run_v2_job.sweep]
}

resource "google_monitoring_alert_policy" "escalated" {
  project               = var.project_id
  display_name          = "${var.name}: escalated remediation"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "escalated outcomes (service or sweep job)"

    condition_threshold {
      filter          = "metric.type=\"${local.outcome_metric}\" AND ${local.outcome_resources} AND metric.label.outcome=\"escalated\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.requirement"]
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
      gke-iam-remediator stopped restoring a binding and escalated: it was removed again more often than
      the policy allows (`limits.max_restorations_per_binding` per `limits.window_minutes`), so something
      (often another Terraform state or a policy-as-code tool) keeps removing it. Find who removes it in the
      audit logs (`protoPayload.methodName="SetIamPolicy"` on the project in the notification), settle which
      tool owns the binding, then restore it once by hand or let the next sweep do it.
      ${local.alert_documentation_links}
    EOT
  }

  depends_on = [google_logging_metric.outcomes, time_sleep.metrics_visible, google_cloud_run_v2_service.this, google_cloud_run_v2_job.sweep]
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
      subscription's health (401/403 answers mean a push authentication mismatch: see push_auth), then run
      the sweep job to re-check every project in scope.
    EOT
  }

  depends_on = [google_cloud_run_v2_service.this]
}

resource "google_monitoring_alert_policy" "sweep_failed" {
  project               = var.project_id
  display_name          = "${var.name}: sweep job failed"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "failed executions of the sweep job"

    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/job/completed_execution_count\" AND resource.type=\"cloud_run_job\" AND resource.label.job_name=\"${local.job_name}\" AND metric.label.result=\"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
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
      An execution of the sweep job `${local.job_name}` failed: the job exits 1 when a restoration failed
      and 2 on an error (configuration, permissions, API outage); Cloud Run retries a task once. Read the
      execution's logs (`gcloud run jobs executions list --job ${local.job_name} --region ${var.region}`),
      fix the cause, then execute the job again.
    EOT
  }

  depends_on = [google_cloud_run_v2_job.sweep]
}
