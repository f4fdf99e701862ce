# The shared state store: one Firestore database in Native mode that every instance of the service and
# every run of the sweep job read and write (REMEDIATOR_STATE, src/state/mod.rs). It holds the finding
# ledger, the notification outbox and the restoration counts (collection `remediator-projects`, one
# document per project), the deny-policy cache (`remediator-deny-policies`) and the channels'
# de-duplication (`remediator-deliveries`). It is a cache and a ledger: nothing read from it is ever the
# reason for a grant. Every write is a single-document write with an updateTime precondition.
#
# No google_firestore_index: the one query the service runs (`pending == true` on remediator-projects)
# is a single-field equality, which Firestore's automatic single-field indexes answer. No TTL policy: the
# documents carry no expiry timestamp for a TTL to act on (the README's "State" section says how to
# reset the store).

locals {
  # A named database, never `(default)`: it cannot collide with (or take over) a project's default
  # database, and two deployments with different names in one project get one database each.
  state_database_id = coalesce(var.state_database_id, var.name)
  state_location    = coalesce(var.state_location, var.region)

  # The database's resource name. Taken from the resource when the module creates it, so the grant and
  # the Cloud Run service and job wait for the database.
  state_database = var.create_state_database ? "projects/${google_firestore_database.state[0].project}/databases/${google_firestore_database.state[0].name}" : "projects/${var.project_id}/databases/${local.state_database_id}"

  # REMEDIATOR_STATE (src/state/mod.rs StateLocation): the one setting that names the store.
  state_url = "firestore://${local.state_database}"
}

resource "google_firestore_database" "state" {
  count = var.create_state_database ? 1 : 0

  project          = var.project_id
  name             = local.state_database_id
  location_id      = local.state_location
  type             = "FIRESTORE_NATIVE"
  concurrency_mode = "OPTIMISTIC" # the service's writes are compare-and-swap on updateTime, never locks

  point_in_time_recovery_enablement = var.state_point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"

  # Delete protection (default on) makes the API refuse to delete the database; with it off, `DELETE`
  # makes `terraform destroy` really delete it instead of leaving an orphan that still costs storage and
  # blocks the next apply with the same database id.
  delete_protection_state = var.state_delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy         = "DELETE"

  depends_on = [google_project_service.this]
}

# roles/datastore.user (read and write documents, run queries, transactions) for the runtime account,
# which both the service and the sweep job run as, on this one database only: granted on the project
# with an IAM condition on the database's resource name, as Google documents for per-database access.
# A condition and not a database-level binding: the google provider (6.x, checked in the 6.50.0 schema
# tfcheck extracts) has no google_firestore_database_iam_* resource, and the Firestore Admin API has no
# getIamPolicy/setIamPolicy on a database: its IAM policy is the project's.
# The role's project-level permissions (resourcemanager.projects.get/list, appengine.applications.get)
# do not match the condition, so they are not granted through it.
resource "google_project_iam_member" "runtime_state" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = local.runtime_member

  condition {
    title       = "gke-iam-remediator-state-only"
    description = "Only the gke-iam-remediator state database ${local.state_database_id}."
    expression  = "resource.name == \"${local.state_database}\""
  }
}
