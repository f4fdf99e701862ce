# One Cloud Monitoring dashboard for the on-call person: what the remediator did (restorations and every
# outcome), what needs a human (failed, escalated, dead letters, failed sweeps), what the ledger holds
# (open findings, pending notifications) and whether the push path is healthy (latency and error rate of
# the service, Pub/Sub's view of the pushes). The README lists the tiles and what each means.

locals {
  service_resource = "resource.type=\"cloud_run_revision\" AND resource.label.service_name=\"${local.service_name}\""
  job_resource     = "resource.type=\"cloud_run_job\" AND resource.label.job_name=\"${local.job_name}\""
  outcome_filter   = "metric.type=\"${local.outcome_metric}\" AND ${local.outcome_resources}"

  # Counts per 5 minutes, one line (or stack) per label value.
  sum_by = { for k, fields in {
    outcome     = ["metric.label.outcome"]
    requirement = ["metric.label.requirement"]
    restored    = ["metric.label.outcome", "metric.label.requirement"]
    result      = ["metric.label.result"]
    code_class  = ["metric.label.response_code_class"]
    push_class  = ["metric.label.response_class"]
    } : k => {
    alignmentPeriod    = "300s"
    perSeriesAligner   = "ALIGN_SUM"
    crossSeriesReducer = "REDUCE_SUM"
    groupByFields      = fields
  } }

  # A level reported once per sweep or job run (a DISTRIBUTION of one value per line): the mean of the
  # values reported in each hour, the highest of the service's and the job's. Sweeps are hours apart, so
  # an hour is the shortest period that draws a line rather than scattered points.
  ledger_level = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_MEAN", crossSeriesReducer = "REDUCE_MAX" }

  dashboard_tiles = [
    {
      title = "Restorations (restored; would-restore in dry-run)"
      chart = "STACKED_BAR"
      sets  = [{ filter = "${local.outcome_filter} AND metric.label.outcome=one_of(\"restored\", \"would-restore\")", aggregation = local.sum_by.restored }]
    },
    {
      title = "Outcomes by kind"
      chart = "STACKED_BAR"
      sets  = [{ filter = local.outcome_filter, aggregation = local.sum_by.outcome }]
    },
    {
      title = "Escalations (binding removed again and again; needs a human)"
      chart = "STACKED_BAR"
      sets  = [{ filter = "${local.outcome_filter} AND metric.label.outcome=\"escalated\"", aggregation = local.sum_by.requirement }]
    },
    {
      title = "Failed restorations (write refused or errored; needs a human)"
      chart = "STACKED_BAR"
      sets  = [{ filter = "${local.outcome_filter} AND metric.label.outcome=\"failed\"", aggregation = local.sum_by.requirement }]
    },
    {
      title = "Dead-lettered messages (waiting in the dead-letter subscription)"
      chart = "LINE"
      sets = [{
        filter      = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${var.name}-dead-letters\""
        aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_MAX", crossSeriesReducer = "REDUCE_SUM" }
      }]
    },
    {
      title = "Push latency of the service (p50, p99)"
      chart = "LINE"
      sets = [for p in ["50", "99"] : {
        filter      = "metric.type=\"run.googleapis.com/request_latencies\" AND ${local.service_resource}"
        aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_PERCENTILE_${p}", crossSeriesReducer = "REDUCE_MAX" }
      }]
    },
    {
      title = "Service requests by response class (4xx: push authentication or a bad message; 5xx: retried)"
      chart = "STACKED_BAR"
      sets  = [{ filter = "metric.type=\"run.googleapis.com/request_count\" AND ${local.service_resource}", aggregation = local.sum_by.code_class }]
    },
    {
      title = "Push deliveries as Pub/Sub sees them, by response class"
      chart = "STACKED_BAR"
      sets  = [{ filter = "metric.type=\"pubsub.googleapis.com/subscription/push_request_count\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${var.name}-push\"", aggregation = local.sum_by.push_class }]
    },
    {
      title = "Sweep job executions by result"
      chart = "STACKED_BAR"
      sets  = [{ filter = "metric.type=\"run.googleapis.com/job/completed_execution_count\" AND ${local.job_resource}", aggregation = local.sum_by.result }]
    },
    {
      title = "Open findings (ledger totals after each sweep and job run)"
      chart = "LINE"
      sets  = [{ filter = "metric.type=\"${local.ledger_metric.open_findings}\" AND ${local.outcome_resources}", aggregation = local.ledger_level }]
    },
    {
      title = "Pending notifications (outbox not yet published; should fall back to 0)"
      chart = "LINE"
      sets  = [{ filter = "metric.type=\"${local.ledger_metric.pending_notifications}\" AND ${local.outcome_resources}", aggregation = local.ledger_level }]
    },
  ]

  dashboard = {
    displayName = var.name
    mosaicLayout = {
      columns = 48
      tiles = concat(
        [{
          xPos   = 0
          yPos   = 0
          width  = 48
          height = 6
          widget = {
            title = "gke-iam-remediator (${var.mode})"
            text = {
              format  = "MARKDOWN"
              content = "Mode **${var.mode}**, push authentication **${var.push_auth}**, watching **${local.sink_parent}**. Alerts: failed, escalated, dead letters, failed sweeps. Red on the *failed*, *escalated*, *dead-lettered* or *sweep* tiles needs a human; the README's deployment section says what each tile means."
            }
          }
        }],
        [for i, t in local.dashboard_tiles : {
          xPos   = (i % 2) * 24
          yPos   = 6 + floor(i / 2) * 16
          width  = 24
          height = 16
          widget = {
            title = t.title
            xyChart = {
              dataSets = [for s in t.sets : {
                plotType        = t.chart
                targetAxis      = "Y1"
                timeSeriesQuery = { timeSeriesFilter = s }
              }]
              yAxis = { scale = "LINEAR" }
            }
          }
        }],
      )
    }
  }
}

resource "google_monitoring_dashboard" "this" {
  project        = var.project_id
  dashboard_json = jsonencode(local.dashboard)

  # Its charts name the three log-based metrics: it waits until Cloud Monitoring knows them (monitoring.tf).
  depends_on = [google_logging_metric.outcomes, google_logging_metric.ledger, time_sleep.metrics_visible, google_project_service.this]
}
