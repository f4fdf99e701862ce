# The Cloud Run service (`serve`: Pub/Sub push) and the Cloud Run job (`job --sweep`), both running the
# image built from the repository's Dockerfile as the runtime service account.

locals {
  # Environment shared by `serve` and `job` (src/app.rs EngineArgs). PORT is set by Cloud Run itself.
  engine_env = merge(
    {
      REMEDIATOR_POLICY       = "${local.policy_dir}/${local.policy_file}"
      REMEDIATOR_NOTIFY_TOPIC = google_pubsub_topic.notifications.id
      REMEDIATOR_SELF_EMAIL   = google_service_account.runtime.email
      REMEDIATOR_SWEEP_SCOPE  = join(",", local.sweep_scope)
      REMEDIATOR_STATE        = local.state_url
      REMEDIATOR_LOG_FORMAT   = "json"
      GOOGLE_CLOUD_PROJECT    = var.project_id
      # The subscription's dead-letter limit: a transient failure is announced only on the last attempt.
      REMEDIATOR_MAX_DELIVERY_ATTEMPTS = tostring(var.max_delivery_attempts)
    },
    var.notify_healthy ? { REMEDIATOR_NOTIFY_HEALTHY = "true" } : {},
    var.policy_troubleshooter ? { REMEDIATOR_TROUBLESHOOTER = "true" } : {},
  )

  # `serve` only (src/app.rs ServeArgs): the push authentication model (variable push_auth). With
  # `cloud-run`, Cloud Run has verified the token's signature and the invoker role before the request
  # reaches the container, which trusts the forwarded token (signature SIGNATURE_REMOVED_BY_GOOGLE) and
  # checks its claims; with `signed`, the container verifies the signature itself.
  serve_env = merge(local.engine_env, {
    REMEDIATOR_PUSH_AUTH           = var.push_auth
    REMEDIATOR_PUSH_AUDIENCE       = local.push_audience
    REMEDIATOR_PUSH_ALLOWED_EMAILS = google_service_account.invoker.email
    # A push still handled this long is answered 503 (Pub/Sub redelivers and gets the verdict), 20 s
    # inside the subscription's ack deadline (at least grace_seconds + 30, so the grace always fits).
    REMEDIATOR_PUSH_DEADLINE_SECS = tostring(var.ack_deadline_seconds - 20)
  })

  # Secrets that have a version are exposed as environment variables. Names outside notification_secrets
  # are left out here and refused by the service's precondition with a clear message.
  secrets_without_secret = setsubtract(var.notification_secrets_with_versions, var.notification_secrets)
  secret_env = {
    for k in var.notification_secrets_with_versions : local.notification_secret_env[k] => google_secret_manager_secret.notification[k].secret_id
    if contains(var.notification_secrets, k)
  }

  # The environment variables the notifications channels read their secrets from (src/notify/routing.rs:
  # url_env, password_env, key_env). The service reads them at start-up, so each must be exposed.
  notification_channel_envs = distinct(flatten([
    for c in try(var.notifications.channels, []) : [
      for f in ["url_env", "password_env", "key_env"] : c[f] if try(c[f], null) != null
    ]
  ]))
  unexposed_channel_envs = [for e in local.notification_channel_envs : e if !contains(keys(local.secret_env), e)]
}

resource "google_cloud_run_v2_service" "this" {
  project             = var.project_id
  name                = var.name
  location            = var.region
  description         = "gke-iam-remediator: restores the IAM bindings GKE needs (Pub/Sub push intake)."
  labels              = local.labels
  deletion_protection = var.deletion_protection

  # Reachable only from inside the project / VPC-SC perimeter; Pub/Sub push from the same project counts
  # as internal, whatever push_auth says. No allUsers invoker: with push_auth = "cloud-run" Cloud Run
  # checks roles/run.invoker (held by the push account only); with "signed" that check is off and the
  # service verifies the token's signature itself.
  ingress              = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  invoker_iam_disabled = var.push_auth == "signed"
  custom_audiences     = [local.push_audience]

  template {
    service_account                  = google_service_account.runtime.email
    max_instance_request_concurrency = var.max_concurrency
    timeout                          = "${var.ack_deadline_seconds}s"
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    labels                           = local.labels

    scaling {
      min_instance_count = var.min_instance_count
      max_instance_count = var.max_instance_count
    }

    volumes {
      name = "policy"
      secret {
        secret = google_secret_manager_secret.policy.secret_id
        items {
          version = google_secret_manager_secret_version.policy.version
          path    = local.policy_file
        }
      }
    }

    containers {
      image = var.image
      args  = ["serve"]

      ports {
        container_port = 8080 # Cloud Run passes it as $PORT, which the binary honours
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.serve_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      volume_mounts {
        name       = "policy"
        mount_path = local.policy_dir
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 2
        failure_threshold = 15
        timeout_seconds   = 1
      }

      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 30
        failure_threshold = 3
        timeout_seconds   = 2
      }
    }
  }

  lifecycle {
    precondition {
      condition     = length(local.unexposed_channel_envs) == 0
      error_message = "notifications channels read ${join(", ", local.unexposed_channel_envs)}, but the service only gets REMEDIATOR_SLACK_WEBHOOK_URL, REMEDIATOR_SMTP_PASSWORD and REMEDIATOR_WEBHOOK_HMAC_KEY from a secret listed in notification_secrets_with_versions (slack-webhook-url, smtp-password, webhook-hmac-key): add a version to the secret, list it there, then configure the channel."
    }
    precondition {
      condition     = length(local.secrets_without_secret) == 0
      error_message = "notification_secrets_with_versions must be a subset of notification_secrets: ${join(", ", sort(tolist(local.secrets_without_secret)))} is listed with a version but not created (add it to notification_secrets, apply, add a version, then list it here)."
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.policy_runtime,
    google_secret_manager_secret_iam_member.notification_runtime,
    google_project_iam_member.runtime_state,
  ]
}

# Only the push identity may invoke the service (Cloud Run's invoker check, push_auth = "cloud-run"; with
# "signed" the check is off and this binding would be meaningless, so it is not created).
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  count = var.push_auth == "cloud-run" ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.this.name
  role     = "roles/run.invoker"
  member   = local.invoker_member
}

resource "google_cloud_run_v2_job" "sweep" {
  project             = var.project_id
  name                = local.job_name
  location            = var.region
  labels              = local.labels
  deletion_protection = var.deletion_protection

  template {
    task_count  = 1
    parallelism = 1
    labels      = local.labels

    template {
      service_account       = google_service_account.runtime.email
      timeout               = "${var.sweep_timeout_seconds}s"
      max_retries           = 1
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"

      volumes {
        name = "policy"
        secret {
          secret = google_secret_manager_secret.policy.secret_id
          items {
            version = google_secret_manager_secret_version.policy.version
            path    = local.policy_file
          }
        }
      }

      containers {
        image = var.image
        # Sweeps REMEDIATOR_SWEEP_SCOPE; exits 1 when a restoration failed, 2 on an error.
        args = ["job", "--sweep"]

        resources {
          limits = {
            cpu    = var.cpu
            memory = var.memory
          }
        }

        dynamic "env" {
          for_each = merge(local.engine_env, {
            # The job is not on anyone's critical path: it may wait for the IAM v2 read quota.
            REMEDIATOR_IAM_V2_WAIT_SECONDS = tostring(var.sweep_deny_read_wait_seconds)
          })
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = local.secret_env
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }

        volume_mounts {
          name       = "policy"
          mount_path = local.policy_dir
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.policy_runtime,
    google_secret_manager_secret_iam_member.notification_runtime,
    google_project_iam_member.runtime_state,
  ]
}

# Only the scheduler identity may run the job (run.jobs.run is in roles/run.invoker).
resource "google_cloud_run_v2_job_iam_member" "scheduler" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.sweep.name
  role     = "roles/run.invoker"
  member   = local.scheduler_member
}
