# Inputs of the gke-iam-remediator module. Every value is typed, described and validated; cross-variable
# rules (which need Terraform >= 1.9 inside `validation`) are lifecycle preconditions on the resources
# that depend on them (run.tf, pubsub.tf, logging.tf, iam.tf), so a mistake fails at plan time.

# ---------------------------------------------------------------------------------------------------------
# Where it runs
# ---------------------------------------------------------------------------------------------------------

variable "project_id" {
  description = "Project that hosts the remediator: Cloud Run service and job, topics, secrets, alerting."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Cloud Run and Cloud Scheduler region, e.g. europe-west1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 or europe-west1."
  }
}

variable "name" {
  description = "Name of the service and prefix of every resource. It is also the runtime service-account id, and the push and scheduler accounts append -push and -sched: service-account ids are 6-30 characters, so name is 6-24."
  type        = string
  default     = "gke-iam-remediator"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,22}[a-z0-9]$", var.name))
    error_message = "name must be 6-24 characters (it is the runtime service-account id and, with -push / -sched appended, the other two; service-account ids are 6-30 characters): lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "image" {
  description = "Container image built from this repository's Dockerfile, pinned by digest (recommended) or tag: REGISTRY/PATH@sha256:DIGEST or REGISTRY/PATH:TAG."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]*(:[0-9]+)?(/[a-z0-9._-]+)+(@sha256:[a-f0-9]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$", var.image))
    error_message = "image must be a fully qualified image reference with a tag or an @sha256 digest, e.g. europe-west1-docker.pkg.dev/ops/remediator/gke-iam-remediator@sha256:..."
  }

  validation {
    condition     = !endswith(var.image, ":latest")
    error_message = "image must not use the mutable :latest tag; pin a version tag or a digest."
  }
}

variable "labels" {
  description = "Labels added to every resource that supports them."
  type        = map(string)
  default     = {}
}

variable "enable_apis" {
  description = "Enable the Google APIs the deployment uses in project_id (never disabled on destroy)."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Deletion protection of the Cloud Run service and job."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------------------
# What it watches: the log sink level, and the scope of sweeps and of the IAM grants
# ---------------------------------------------------------------------------------------------------------

variable "sink_level" {
  description = "Where the audit-log sink and the remediator's IAM grants live: `project` (one project), `folder` (every project below a folder) or `organization`."
  type        = string
  default     = "project"

  validation {
    condition     = contains(["project", "folder", "organization"], var.sink_level)
    error_message = "sink_level must be one of: project, folder, organization."
  }
}

variable "sink_parent_id" {
  description = "The watched resource: a project ID for sink_level = project (empty means project_id), a numeric folder ID for folder, a numeric organization ID for organization."
  type        = string
  default     = ""

  validation {
    condition     = var.sink_parent_id == "" || can(regex("^([0-9]{1,20}|[a-z][a-z0-9-]{4,28}[a-z0-9])$", var.sink_parent_id))
    error_message = "sink_parent_id must be empty, a project ID, or a numeric folder/organization ID (without the folders/ or organizations/ prefix)."
  }
}

variable "organization_id" {
  description = "Numeric organization ID. Required when sink_level = folder (the read-only custom role is defined at the organization: folders cannot hold custom roles). Defaults to sink_parent_id when sink_level = organization."
  type        = string
  default     = ""

  validation {
    condition     = var.organization_id == "" || can(regex("^[0-9]{1,20}$", var.organization_id))
    error_message = "organization_id must be empty or a numeric organization ID."
  }
}

variable "sweep_scope" {
  description = "What a sweep covers (REMEDIATOR_SWEEP_SCOPE): `projects/ID`, `folders/N`, `organizations/N`. Empty means the sink's parent."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.sweep_scope : can(regex("^(projects/[a-z][a-z0-9-]{4,28}[a-z0-9]|folders/[0-9]{1,20}|organizations/[0-9]{1,20})$", s))])
    error_message = "each sweep_scope entry must be projects/PROJECT_ID, folders/NUMBER or organizations/NUMBER."
  }
}

# ---------------------------------------------------------------------------------------------------------
# The remediation policy (rendered to the YAML file the service reads from REMEDIATOR_POLICY)
# ---------------------------------------------------------------------------------------------------------

variable "mode" {
  description = "`dry-run` reports what would be restored and never writes; `enforce` restores. Start with dry-run."
  type        = string
  default     = "dry-run"

  validation {
    condition     = contains(["dry-run", "enforce"], var.mode)
    error_message = "mode must be dry-run or enforce."
  }
}

variable "restore_requirements" {
  description = "Requirement ids restored by an IAM binding that the remediator may restore. The conditional setIamPolicy grant allows exactly their roles. `google-apis-service-agent` (roles/editor for the Google APIs service agent) is opt-in."
  type        = list(string)
  default     = ["node-sa-permissions", "gke-service-agent", "gke-node-service-agent"]

  validation {
    condition     = alltrue([for r in var.restore_requirements : contains(["node-sa-permissions", "gke-service-agent", "gke-node-service-agent", "google-apis-service-agent"], r)])
    error_message = "restore_requirements may contain only: node-sa-permissions, gke-service-agent, gke-node-service-agent, google-apis-service-agent. Use restore_container_api_enabled and restore_node_sa_exists for the two requirements that are not restored by a binding."
  }

  validation {
    condition     = length(distinct(var.restore_requirements)) == length(var.restore_requirements)
    error_message = "restore_requirements must not repeat an id."
  }
}

variable "restore_container_api_enabled" {
  description = "Opt-in requirement `container-api-enabled`: re-enable container.googleapis.com when it is disabled. Adds serviceusage.services.enable."
  type        = bool
  default     = false
}

variable "restore_node_sa_exists" {
  description = "Opt-in requirement `node-sa-exists`: re-enable or undelete (within 30 days) node service accounts. Adds iam.serviceAccounts.enable and iam.serviceAccounts.undelete."
  type        = bool
  default     = false
}

variable "policy_scope" {
  description = "Policy scope: project-id globs to include/exclude and folder ids to include/exclude. Projects outside it are never touched."
  type = object({
    include_projects = optional(list(string), ["*"])
    exclude_projects = optional(list(string), [])
    include_folders  = optional(list(string), [])
    exclude_folders  = optional(list(string), [])
  })
  default = {}

  validation {
    condition     = alltrue([for g in concat(var.policy_scope.include_projects, var.policy_scope.exclude_projects) : length(g) > 0])
    error_message = "project globs must not be empty."
  }

  validation {
    condition     = alltrue([for f in concat(var.policy_scope.include_folders, var.policy_scope.exclude_folders) : can(regex("^[0-9]{1,20}$", f))])
    error_message = "folder ids in policy_scope must be numeric (without the folders/ prefix)."
  }
}

variable "exempt_principals" {
  description = "Member globs that are never granted anything, e.g. serviceAccount:legacy-*@*."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.exempt_principals : can(regex("^(user|serviceAccount|group|domain|principal|principalSet):.+$", p))])
    error_message = "each exempt principal must be a member pattern such as serviceAccount:name-*@*."
  }
}

variable "limits" {
  description = "Safety limits of the policy (its `limits:` keys): setIamPolicy writes per run, write attempts on etag conflicts, restorations of one binding per window_minutes before escalating, days before the end of a time-bound grant that an ok finding becomes `expiring` (0: never), minutes a deny-policy read is reused (IAM allows 5 reads a minute)."
  type = object({
    max_writes_per_run           = optional(number, 100)
    max_write_attempts           = optional(number, 5)
    max_restorations_per_binding = optional(number, 3)
    window_minutes               = optional(number, 60)
    expiry_warning_days          = optional(number, 14)
    deny_policy_max_age_minutes  = optional(number, 60)
  })
  default = {}

  validation {
    condition     = alltrue([for k, v in var.limits : floor(v) == v])
    error_message = "limits: every limit is a whole number."
  }

  validation {
    condition     = var.limits.max_write_attempts >= 1 && var.limits.max_write_attempts <= 20 && var.limits.window_minutes >= 1 && var.limits.max_writes_per_run >= 0 && var.limits.max_restorations_per_binding >= 1
    error_message = "limits: max_write_attempts 1-20, window_minutes >= 1, max_writes_per_run >= 0, max_restorations_per_binding >= 1."
  }

  validation {
    condition     = var.limits.expiry_warning_days >= 0 && var.limits.expiry_warning_days <= 366
    error_message = "limits: expiry_warning_days must be between 0 (no warning) and 366."
  }

  validation {
    condition     = var.limits.deny_policy_max_age_minutes >= 1 && var.limits.deny_policy_max_age_minutes <= 1440
    error_message = "limits: deny_policy_max_age_minutes must be between 1 and 1440."
  }
}

variable "grace_seconds" {
  description = "Seconds to wait after a removal event before restoring, so an infrastructure-as-code apply can finish. The wait happens inside the push request, so ack_deadline_seconds must exceed it."
  type        = number
  default     = 0

  validation {
    condition     = var.grace_seconds >= 0 && var.grace_seconds <= 540 && floor(var.grace_seconds) == var.grace_seconds
    error_message = "grace_seconds must be a whole number between 0 and 540 (Pub/Sub's 600 s push deadline minus time to work)."
  }
}

variable "notify_healthy" {
  description = "Also publish `healthy` outcomes (stale hints) to the notifications topic."
  type        = bool
  default     = false
}

variable "policy_troubleshooter" {
  description = "Ask the Policy Troubleshooter API to settle permissions granted through groups (REMEDIATOR_TROUBLESHOOTER)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------------------
# Cloud Run
# ---------------------------------------------------------------------------------------------------------

variable "min_instance_count" {
  description = "Minimum Cloud Run instances of the service (0 scales to zero)."
  type        = number
  default     = 0

  validation {
    condition     = var.min_instance_count >= 0 && var.min_instance_count <= 10
    error_message = "min_instance_count must be between 0 and 10."
  }
}

variable "max_instance_count" {
  description = "Maximum Cloud Run instances of the service. Bounds the write rate against the IAM APIs."
  type        = number
  default     = 5

  validation {
    condition     = var.max_instance_count >= 1 && var.max_instance_count <= 100
    error_message = "max_instance_count must be between 1 and 100."
  }
}

variable "max_concurrency" {
  description = "Maximum concurrent requests per instance. Pushes for one project are coalesced in-process, so moderate concurrency helps."
  type        = number
  default     = 40

  validation {
    condition     = var.max_concurrency >= 1 && var.max_concurrency <= 1000
    error_message = "max_concurrency must be between 1 and 1000."
  }
}

variable "cpu" {
  description = "CPU limit of the service and job containers."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4"], var.cpu)
    error_message = "cpu must be 1, 2 or 4."
  }
}

variable "memory" {
  description = "Memory limit of the service and job containers."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must look like 512Mi or 1Gi."
  }
}

variable "sweep_schedule" {
  description = "Cron schedule (Cloud Scheduler, 5 fields) of the periodic sweep job."
  type        = string
  default     = "17 */6 * * *"

  validation {
    condition     = length(split(" ", trimspace(var.sweep_schedule))) == 5
    error_message = "sweep_schedule must be a 5-field cron expression such as \"17 */6 * * *\"."
  }
}

variable "sweep_time_zone" {
  description = "Time zone of sweep_schedule (IANA name)."
  type        = string
  default     = "Etc/UTC"
}

variable "sweep_timeout_seconds" {
  description = "Timeout of one sweep job task."
  type        = number
  default     = 1800

  validation {
    condition     = var.sweep_timeout_seconds >= 60 && var.sweep_timeout_seconds <= 86400
    error_message = "sweep_timeout_seconds must be between 60 and 86400."
  }
}

variable "sweep_deny_read_wait_seconds" {
  description = "How long the sweep job may wait for Google's IAM v2 read quota (5 deny-policy reads a minute) to read the deny policies its plan could not read at once (REMEDIATOR_IAM_V2_WAIT_SECONDS of the job only): 122 s reads 15 attachment points a sweep instead of 5, so an organization with 20 folders has every deny policy read within two sweeps. 0: never wait (the deny policies left unread make accounts `ok*`, read by later sweeps). serve never waits."
  type        = number
  default     = 122

  validation {
    condition     = var.sweep_deny_read_wait_seconds >= 0 && var.sweep_deny_read_wait_seconds <= 600
    error_message = "sweep_deny_read_wait_seconds must be between 0 and 600."
  }
}

variable "push_auth" {
  description = "How Pub/Sub push requests are authenticated (REMEDIATOR_PUSH_AUTH): `cloud-run` (invoker check on, the service checks the forwarded token's claims) or `signed` (invoker_iam_disabled, the service verifies the signature). `none` is for local runs only and refused here."
  type        = string
  default     = "cloud-run"

  validation {
    condition     = contains(["cloud-run", "signed"], var.push_auth)
    error_message = "push_auth must be cloud-run (Cloud Run checks the invoker and the token signature, the service checks the claims) or signed (invoker check off, the service verifies the signature); none is for local runs only and is never deployed."
  }
}

# ---------------------------------------------------------------------------------------------------------
# State: the Firestore database the service and job share (state.tf, REMEDIATOR_STATE)
# ---------------------------------------------------------------------------------------------------------

variable "create_state_database" {
  description = "Create the state database (Firestore, Native mode) in project_id. false: use an existing Firestore Native database of project_id named state_database_id (the module only grants the runtime account access to it and never changes or deletes it)."
  type        = bool
  default     = true
}

variable "state_database_id" {
  description = "Id of the named Firestore database that holds the state (REMEDIATOR_STATE = firestore://projects/PROJECT_ID/databases/ID). null means `name`. Never `(default)`, so it never collides with the project's default database."
  type        = string
  default     = null

  validation {
    condition     = var.state_database_id == null || (can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.state_database_id)) && !can(regex("^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$", var.state_database_id)))
    error_message = "state_database_id must be null or a named Firestore database id: 4-63 characters, lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen, not UUID-like; (default) is not allowed."
  }
}

variable "state_location" {
  description = "Firestore location of the state database: a region (europe-west1) or a multi-region (nam5, eur3). null means `region`. Ignored when create_state_database is false."
  type        = string
  default     = null

  validation {
    condition     = var.state_location == null || can(regex("^([a-z]+-[a-z]+[0-9]+|nam[0-9]+|eur[0-9]+)$", var.state_location))
    error_message = "state_location must be null, a Firestore region such as europe-west1, or a multi-region such as nam5 or eur3."
  }
}

variable "state_point_in_time_recovery" {
  description = "Point-in-time recovery of the state database (7 days of versions, billed as storage). Off by default: the state is a cache and ledger, never the reason for a grant (see State in the module README)."
  type        = bool
  default     = false
}

variable "state_delete_protection" {
  description = "Delete protection of the state database: while on, Firestore refuses to delete it (and so does terraform destroy). Turn it off and apply before destroying."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------------------
# Pub/Sub
# ---------------------------------------------------------------------------------------------------------

variable "ack_deadline_seconds" {
  description = "Ack deadline of the push subscription; for push it is also the request timeout, and it is used as the Cloud Run request timeout."
  type        = number
  default     = 120

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be between 10 and 600."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries of one message before it is dead-lettered."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100."
  }
}

variable "retry_minimum_backoff" {
  description = "Minimum redelivery backoff of the push subscription."
  type        = string
  default     = "10s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?s$", var.retry_minimum_backoff)) && try(tonumber(trimsuffix(var.retry_minimum_backoff, "s")) <= 600, false)
    error_message = "retry_minimum_backoff must be a duration in seconds between 0s and 600s (Pub/Sub's limit), such as 10s."
  }
}

variable "retry_maximum_backoff" {
  description = "Maximum redelivery backoff of the push subscription."
  type        = string
  default     = "600s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?s$", var.retry_maximum_backoff)) && try(tonumber(trimsuffix(var.retry_maximum_backoff, "s")) <= 600, false)
    error_message = "retry_maximum_backoff must be a duration in seconds between 0s and 600s (Pub/Sub's limit), such as 600s."
  }
}

variable "dead_letter_retention" {
  description = "How long dead-lettered messages are kept on the dead-letter subscription (max 7 days)."
  type        = string
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.dead_letter_retention)) && try(tonumber(trimsuffix(var.dead_letter_retention, "s")) >= 600 && tonumber(trimsuffix(var.dead_letter_retention, "s")) <= 604800, false)
    error_message = "dead_letter_retention must be a duration in seconds between 600s and 604800s (10 minutes to 7 days), such as 604800s."
  }
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) encrypting the Pub/Sub topics. The Pub/Sub service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be null or projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

variable "enable_asset_feed" {
  description = "Also deliver Cloud Asset Inventory IAM_POLICY changes of projects (at the sink level) to the events topic: a near-real-time alternative trigger to the audit-log sink."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------------------
# Secrets and alerting
# ---------------------------------------------------------------------------------------------------------

variable "notification_secrets" {
  description = "Secret Manager secrets to create (empty; add versions out of band): slack-webhook-url, smtp-password, webhook-hmac-key. Only the runtime service account can read them."
  type        = set(string)
  default     = ["slack-webhook-url", "smtp-password", "webhook-hmac-key"]

  validation {
    condition     = alltrue([for s in var.notification_secrets : contains(["slack-webhook-url", "smtp-password", "webhook-hmac-key"], s)])
    error_message = "notification_secrets may contain only slack-webhook-url, smtp-password, webhook-hmac-key."
  }
}

variable "notification_secrets_with_versions" {
  description = "Secrets (must be a subset of notification_secrets; a precondition says which is not) that already have a version and are passed to the service and job as environment variables. Cloud Run refuses a revision whose secret has no version, so add a version first, then list the secret here."
  type        = set(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.notification_secrets_with_versions : contains(["slack-webhook-url", "smtp-password", "webhook-hmac-key"], s)])
    error_message = "notification_secrets_with_versions may contain only slack-webhook-url, smtp-password, webhook-hmac-key."
  }
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) for the alert policies."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.alert_notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "each alert notification channel must be projects/PROJECT/notificationChannels/NUMBER."
  }
}

variable "notifications" {
  description = "The `notifications:` section of the remediation policy (channels, routes, digest window; see the project README). Secrets reach the service as REMEDIATOR_SLACK_WEBHOOK_URL, REMEDIATOR_SMTP_PASSWORD and REMEDIATOR_WEBHOOK_HMAC_KEY, so channels name those in url_env / password_env / key_env. null: no fan-out (notifications stay on the topic for other consumers)."
  type        = any
  default     = null
}

variable "notify_ack_deadline_seconds" {
  description = "Ack deadline of the notifications push subscription: the service holds a delivery for the digest window plus channel retries."
  type        = number
  default     = 120

  validation {
    condition     = var.notify_ack_deadline_seconds >= 30 && var.notify_ack_deadline_seconds <= 600
    error_message = "notify_ack_deadline_seconds must be between 30 and 600."
  }
}

variable "metric_propagation_wait" {
  description = "How long the alert policies and the dashboard wait, after the log-based metrics are created, before naming them: Cloud Monitoring refuses a metric it does not know yet (\"Cannot find metric(s)\"), and Google says a new one can take up to 10 minutes. The wait runs alongside the rest of the first apply and again only when a metric is replaced. A duration such as 10m or 90s; 0s does not wait."
  type        = string
  default     = "10m"

  validation {
    condition     = can(regex("^[0-9]+(s|m)$", var.metric_propagation_wait)) && try(tonumber(trimsuffix(trimsuffix(var.metric_propagation_wait, "s"), "m")) * (endswith(var.metric_propagation_wait, "m") ? 60 : 1) <= 1800, false)
    error_message = "metric_propagation_wait must be a duration in seconds or minutes of at most 30 minutes, such as 10m, 90s or 0s."
  }
}
