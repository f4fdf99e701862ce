# The audit-log sink: Admin Activity entries that intake acts on, delivered to the events topic. Created at
# the level var.sink_level chooses (folder and organization sinks include their children).

locals {
  # The audit-log events intake understands (src/intake/audit_log.rs): per service, the method names it
  # acts on. Intake compares the last dot-separated segment of protoPayload.methodName, so the filter does
  # the same with an anchored regular expression: `SetIamPolicy` and
  # `google.container.v1beta1.ClusterManager.CreateNodePool` match, `DeleteServiceAccountKey` does not.
  # The consistency test (tests/api/deployment.rs) checks this map against the code.
  audit_log_methods = {
    "cloudresourcemanager.googleapis.com" = ["SetIamPolicy"]
    "iam.googleapis.com"                  = ["DeleteServiceAccount", "DisableServiceAccount", "CreatePolicy", "UpdatePolicy", "DeletePolicy"]
    "serviceusage.googleapis.com"         = ["DisableService"]
    "container.googleapis.com"            = ["CreateCluster", "CreateNodePool", "UpdateNodePool"]
  }

  # What else intake requires of each service's entries (it acknowledges and ignores the rest).
  audit_log_conditions = {
    # A binding was removed, of any role: any role may have carried the node permissions. Intake reads
    # the delta under serviceData (today) and metadata.
    "cloudresourcemanager.googleapis.com" = "(protoPayload.serviceData.policyDelta.bindingDeltas.action=\"REMOVE\" OR protoPayload.metadata.policyDelta.bindingDeltas.action=\"REMOVE\")"
    "iam.googleapis.com"                  = ""
    # Only the Container API matters.
    "serviceusage.googleapis.com" = "(protoPayload.resourceName:\"/services/container.googleapis.com\" OR protoPayload.request.name:\"/services/container.googleapis.com\" OR protoPayload.authorizationInfo.resource=\"services/container.googleapis.com\")"
    # Only the first entry of the long-running operation carries the request (and the node service account).
    "container.googleapis.com" = "operation.first=true"
  }

  sink_filter = join("\n", [
    "logName:\"cloudaudit.googleapis.com%2Factivity\"",
    "AND (",
    join("\n  OR ", [
      for service, methods in local.audit_log_methods : format(
        "(protoPayload.serviceName=\"%s\" AND protoPayload.methodName=~\"(^|[.])(%s)$\"%s)",
        service,
        join("|", methods),
        local.audit_log_conditions[service] == "" ? "" : " AND ${local.audit_log_conditions[service]}",
      )
    ]),
    ")",
  ])

  sink_name        = "${var.name}-audit"
  sink_destination = "pubsub.googleapis.com/${google_pubsub_topic.events.id}"
}

resource "google_logging_project_sink" "this" {
  count = var.sink_level == "project" ? 1 : 0

  project                = local.sink_parent_id
  name                   = local.sink_name
  description            = "GKE IAM events for gke-iam-remediator."
  destination            = local.sink_destination
  filter                 = local.sink_filter
  unique_writer_identity = true

  lifecycle {
    precondition {
      condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", local.sink_parent_id))
      error_message = "sink_level = project needs sink_parent_id empty (project_id) or a project ID, not a numeric folder or organization ID; set sink_level to folder or organization for those."
    }
  }
}

resource "google_logging_folder_sink" "this" {
  count = var.sink_level == "folder" ? 1 : 0

  folder           = local.sink_parent_id
  name             = local.sink_name
  description      = "GKE IAM events for gke-iam-remediator (folder and every project below it)."
  destination      = local.sink_destination
  filter           = local.sink_filter
  include_children = true

  lifecycle {
    precondition {
      condition     = can(regex("^[0-9]{1,20}$", local.sink_parent_id))
      error_message = "sink_level = folder needs sink_parent_id set to a numeric folder ID."
    }
  }
}

resource "google_logging_organization_sink" "this" {
  count = var.sink_level == "organization" ? 1 : 0

  org_id           = local.sink_parent_id
  name             = local.sink_name
  description      = "GKE IAM events for gke-iam-remediator (the whole organization)."
  destination      = local.sink_destination
  filter           = local.sink_filter
  include_children = true

  lifecycle {
    precondition {
      condition     = can(regex("^[0-9]{1,20}$", local.sink_parent_id))
      error_message = "sink_level = organization needs sink_parent_id set to a numeric organization ID."
    }
  }
}

locals {
  sink_writer_identity = one(concat(
    google_logging_project_sink.this[*].writer_identity,
    google_logging_folder_sink.this[*].writer_identity,
    google_logging_organization_sink.this[*].writer_identity,
  ))
}

# The sink's own writer identity may publish to the events topic, and nothing else.
resource "google_pubsub_topic_iam_member" "events_sink_writer" {
  project = var.project_id
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.publisher"
  member  = local.sink_writer_identity
}
